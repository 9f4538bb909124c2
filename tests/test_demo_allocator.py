"""glibc malloc settings of the demo server (viewdiff.demo.allocator), observed in a fresh interpreter."""
import json
import os
import platform
import subprocess
import sys

import pytest

from viewdiff.paths import REPO_ROOT

# Free a 4 MiB block (glibc's defaults then raise the mmap threshold to 4 MiB), then malloc 300 KiB:
# mapped (mallinfo2's hblks + 1) under a fixed 256 KiB threshold, taken from the heap under the defaults.
PROBE = """
import ctypes, json, sys
from viewdiff.demo.allocator import bound_native_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks "
                                               "fordblks keepcost").split()]
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
libc.mallinfo2.restype = Info
applied = bound_native_memory() if sys.argv[1] == "bound" else None
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(300 << 10)
print(json.dumps({"applied": applied, "mapped": libc.mallinfo2().hblks - before}))
libc.free(block)
"""

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


def probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}, check=True)
    return json.loads(out.stdout)


@glibc
def test_large_blocks_are_mapped_once_bound_and_not_under_the_defaults():
    assert probe("bound") == {"applied": True, "mapped": 1}
    assert probe("defaults") == {"applied": None, "mapped": 0}   # what the setting changes


@glibc
def test_a_setting_from_the_environment_takes_precedence():
    assert probe("bound", MALLOC_MMAP_THRESHOLD_=str(8 << 20)) == {"applied": True, "mapped": 0}

