"""Offline inputs for the layers-stage benchmarks: nothing is downloaded.

Texts: documents of natural English cut from the docstrings of Python's standard library (read
from the running interpreter's own files, in sorted order), each long enough to fill 256 MiniLM
tokens. Images: the photographs that ship inside installed packages (matplotlib's
``grace_hopper.jpg``, scikit-learn's ``china.jpg`` and ``flower.jpg``), cut into 224 px crops at
several positions and scales, so every image is a real photograph region.
"""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path


def stdlib_documents(n: int = 256, min_chars: int = 1600, max_chars: int = 2400) -> list[str]:
    """``n`` documents of ``min_chars``..``max_chars`` characters from stdlib docstrings, in a fixed order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    current = ""
    for path in sorted(root.rglob("*.py")):
        if any(part in ("test", "tests", "idlelib", "site-packages", "lib2to3") for part in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc or len(doc) < 300 or ">>>" in doc:
                continue
            text = re.sub(r"\s+", " ", doc).strip()
            current = f"{current} {text}".strip()
            if len(current) >= min_chars:
                docs.append(current[:max_chars])
                current = ""
                if len(docs) == n:
                    return docs
    if len(docs) < n:
        raise RuntimeError(f"only {len(docs)} documents found in {root}")
    return docs


def photo_paths() -> list[Path]:
    """The photographs shipped inside installed packages."""
    paths = []
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    try:
        import sklearn

        images = Path(sklearn.__file__).parent / "datasets" / "images"
        paths += [images / "china.jpg", images / "flower.jpg"]
    except ImportError:
        pass
    found = [p for p in paths if p.is_file()]
    if not found:
        raise RuntimeError("no offline photographs found (install matplotlib or scikit-learn)")
    return found


def photo_crops(n: int = 64, size: int = 224) -> list:
    """``n`` RGB crops (PIL images, ``size`` px) from the offline photographs at 3 scales and a grid of positions."""
    from PIL import Image

    crops = []
    photos = [Image.open(p).convert("RGB") for p in photo_paths()]
    for scale in (1.0, 0.7, 0.5):
        for photo in photos:
            w, h = photo.size
            side = int(min(w, h) * scale)
            steps = 4
            for i in range(steps):
                for j in range(steps):
                    x = (w - side) * i // max(steps - 1, 1)
                    y = (h - side) * j // max(steps - 1, 1)
                    crops.append(photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC))
    if len(crops) < n:
        raise RuntimeError(f"only {len(crops)} crops available")
    step = len(crops) / n
    return [crops[int(i * step)] for i in range(n)]
