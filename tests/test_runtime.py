"""tune_runtime: glibc malloc keeps big blocks in its heap, torch uses the process's cores, and
TINYASC_NO_TUNE=1 leaves the process alone. Each case runs in a fresh interpreter: malloc settings
are process-wide and only apply to allocations made after them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tinyasc.base.runtime import cores, glibc

# 40 MiB: above the 32 MiB that glibc's own adaptive mmap threshold can reach, so an untuned process
# always maps it with mmap (hblks 1) and unmaps it on free.
PROBE = """
import ctypes, json
from tinyasc.base.runtime import glibc, tune_runtime
done = tune_runtime()
assert tune_runtime() == done  # idempotent
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = glibc()
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Info, ctypes.c_void_p, [ctypes.c_void_p]
before = libc.mallinfo2()  # what the imports allocated stays as it is
block = libc.malloc(40 << 20)
mapped = libc.mallinfo2().hblks - before.hblks
libc.free(block)
import torch
print(json.dumps({"done": {k: v for k, v in done.items() if k != "malloc"}, "tuned": "malloc" in done,
                  "mapped": mapped, "kept": libc.mallinfo2().arena - before.arena, "threads": torch.get_num_threads()}))
"""


def probe(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, "TINYASC_NO_TUNE": "", **env})
    return json.loads(out.stdout.splitlines()[-1])


needs_glibc = pytest.mark.skipif(glibc() is None, reason="malloc tuning is for glibc only")


@needs_glibc
def test_tuned_malloc_serves_big_blocks_from_the_heap_and_keeps_them():
    got = probe()
    assert got["tuned"] and got["mapped"] == 0  # from the heap, not a fresh mmap
    assert got["kept"] >= 40 << 20  # freed but not given back: the next step reuses it
    assert got["threads"] == cores() == got["done"]["threads"]


@needs_glibc
def test_no_tune_leaves_malloc_and_threads_alone():
    got = probe(TINYASC_NO_TUNE="1", OMP_NUM_THREADS="1")
    assert got == {"done": {}, "tuned": False, "mapped": 1, "kept": got["kept"], "threads": 1}
    assert got["kept"] < 40 << 20
