"""What every row records about where and how it was measured: peak memory, versions, device, commit.

Peak RSS is the kernel's high-water mark (``VmHWM``), reset before each measured step by writing 5
to ``/proc/self/clear_refs`` (Linux >= 4.0); where that is not possible the process's lifetime peak
(``ru_maxrss``) is reported instead and the row says so (``rss_peak_scope``). Before the reset, memory the
C allocator holds but no tensor uses is given back to the system (``malloc_trim``), so one step's freed
tensors do not count in the next step's peak. CUDA peaks come from ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import os
import platform
import resource
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

import tokenzip


def _vm_status(field: str = "VmHWM") -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _vm_hwm() -> int | None:
    return _vm_status("VmHWM")


def set_apart_long_lived() -> None:
    """Move every object alive now (imported modules, the loaded model and tokenizer) out of the collector's sight
    (``gc.freeze``), so the full collection before each measured step scans only what the steps made: with
    transformers imported one ``gc.collect()`` took 0.35 s on a 2-core CPU, two per row. Undone by
    :func:`bring_back_long_lived` (a process that only runs rows need not)."""
    gc.collect()
    gc.freeze()


def bring_back_long_lived() -> None:
    """Undo :func:`set_apart_long_lived`: frozen objects are collected again once they become garbage."""
    gc.unfreeze()


def release_free_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the system (glibc ``malloc_trim``)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.rss`` / ``peak.cuda`` (bytes) over the block;
    ``peak.start_rss``: the RSS when the block began (so ``rss - start_rss`` is what the block added)."""

    def __init__(self, device: Any = None) -> None:
        self.cuda_device = device if device is not None and torch.device(device).type == "cuda" else None
        self.rss = 0
        self.start_rss: int | None = None
        self.cuda: int | None = None
        self.scope = "step"

    def __enter__(self) -> PeakMemory:
        release_free_memory()
        self.start_rss = _vm_status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.scope = "process"
        if self.cuda_device is not None:
            torch.cuda.synchronize(self.cuda_device)
            torch.cuda.reset_peak_memory_stats(self.cuda_device)
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _vm_hwm() if self.scope == "step" else None
        if hwm is None:
            self.scope = "process"
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.rss = hwm
        if self.cuda_device is not None:
            torch.cuda.synchronize(self.cuda_device)
            self.cuda = int(torch.cuda.max_memory_allocated(self.cuda_device))


def synchronize(device: Any) -> None:
    """Wait for queued GPU work so wall-clock timings are real."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache
def versions() -> dict[str, str]:
    return {"tokenzip": tokenzip.__version__, "torch": torch.__version__, "transformers": version("transformers"),
            "tokenizers": version("tokenizers"), "python": platform.python_version()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: Any) -> str:
    """E.g. ``cpu: AMD EPYC 7B13 (2 threads)`` or ``cuda: NVIDIA H100 80GB HBM3``."""
    if device is not None and torch.device(device).type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cpu_name()} ({torch.get_num_threads()} threads)"


@functools.cache
def git_commit() -> str | None:
    """The commit of the tokenzip checkout this code runs from (``+dirty`` with local changes), else None."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src/tokenzip"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment(device: Any) -> dict[str, Any]:
    """Fields describing where a row was measured."""
    return {"versions": versions(), "device": device_description(device), "host": platform.node(),
            "pid": os.getpid()}
