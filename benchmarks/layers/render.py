"""Render the JSON results of ``encoders.py`` as the markdown tables of ``benchmarks/layers.md``.

    python benchmarks/layers/render.py benchmarks/layers/results/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

_COMMON = [("method", "method"), ("schedule", "schedule"), ("ratio", "ratio"), ("achieved_ratio", "achieved"),
           ("compute_fraction", "tokens/layer")]
_SPEED = [("speedup", "speed-up"), ("cpu_speedup", "CPU-time speed-up")]
COLUMNS = {
    "minilm": _COMMON + [("throughput", "texts/s"), ("baseline_throughput", "base texts/s")] + _SPEED
    + [("cosine", "cosine"), ("cosine_min", "min cosine"), ("top10_agreement", "top-10 agreement")],
    "dinov2": _COMMON + [("throughput", "images/s"), ("baseline_throughput", "base images/s")] + _SPEED
    + [("cls_cosine", "CLS cosine"), ("cls_cosine_min", "min CLS cosine"), ("saliency_corr", "saliency corr.")],
}


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell(v)}" for k, v in value.items())
    return str(value)


def render(path: Path) -> str:
    result = json.loads(path.read_text())
    columns = COLUMNS[result["model"]]
    lines = [f"`{result['command']}`", "",
             f"device {result['device']}, {result.get('threads', '?')} threads; load average before "
             f"{cell(result['load_average_before'][0])}, after {cell(result['load_average_after'][0])}", "",
             "| " + " | ".join(title for _, title in columns) + " |",
             "|" + "---|" * len(columns)]
    for row in result["rows"]:
        lines.append("| " + " | ".join(cell(row.get(key, "")) for key, _ in columns) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(render(Path(name)))
