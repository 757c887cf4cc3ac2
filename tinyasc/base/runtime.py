"""The process settings tinyasc runs best with, set by tinyasc itself at start-up (``tune_runtime``).

glibc's malloc hands blocks above its mmap threshold (128 KiB at first, at most 32 MiB as it adapts)
straight to the kernel and unmaps them on free; torch's CPU allocator goes through malloc, so every
training step unmaps its activation buffers and the next step faults in fresh zeroed pages. Measured
on the 2-core EPYC (benchmarks/training.py, batch 256, machine shared): the DCASE 2024 baseline's bare
step spent 8.6 of 22.1 CPU seconds in the kernel; with the threshold above any activation and no
trimming 0.1 s, and the step ran 1.6x faster. A 32 MiB threshold was not enough (8.7 s system time).
The cost: freed memory stays with the process (peak RSS ~2.2 -> ~3.2 GB at batch 256).

Settings only apply to allocations made after them, so ``tinyasc.cli.main`` and the tests' conftest
call this first. ``TINYASC_NO_TUNE=1`` leaves the process as it was. Other C libraries: a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import torch

# mallopt parameters (glibc malloc.h) and the values chosen for them.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MALLOC_SETTINGS = {
    M_MMAP_THRESHOLD: 1 << 30,  # blocks up to 1 GiB come from the heap and are reused (32 MiB left sys time at 8.7 s)
    M_TRIM_THRESHOLD: 1 << 30,  # keep up to 1 GiB of free heap top instead of giving it back at once
    M_TOP_PAD: 64 << 20,  # grow the heap 64 MiB at a time: fewer brk calls
}

_state: dict = {}


def glibc():
    """The C library when it is glibc (has mallopt and mallinfo2), else None."""
    if "libc" not in _state:
        libc = None
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(lib, "mallopt") and hasattr(lib, "gnu_get_libc_version"):
                libc = lib
        except OSError:  # musl, macOS, Windows: nothing to tune
            pass
        _state["libc"] = libc
    return _state["libc"]


def cores() -> int:
    """CPU cores this process may run on (its affinity: a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def tune_runtime() -> dict:
    """Tune malloc (glibc) and set torch's thread count to ``cores()``. Returns what was set; idempotent.
    Nothing is changed with ``TINYASC_NO_TUNE=1``."""
    if os.environ.get("TINYASC_NO_TUNE", "") not in ("", "0"):
        return {}
    if "done" in _state:
        return _state["done"]
    done = {}
    libc = glibc()
    if libc is not None:
        done["malloc"] = {k: v for k, v in MALLOC_SETTINGS.items() if libc.mallopt(ctypes.c_int(k), ctypes.c_int(v)) == 1}
    if torch.get_num_threads() != cores():
        torch.set_num_threads(cores())
    done["threads"] = torch.get_num_threads()
    _state["done"] = done
    return done
