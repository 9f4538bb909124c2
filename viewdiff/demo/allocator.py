"""Keep the demo server's memory flat under load: glibc malloc settings made before the models load.

A server that decodes photos and runs models from many request threads grows under glibc's defaults,
and keeps growing after the load has peaked: every thread may get its own malloc arena, and after a
large buffer (a decoded photo, a model's activations) is freed, glibc raises its mmap threshold so
that the next ones come from those arenas, where freed memory is rarely returned to the system.
`benchmarks/load_test.py --clients 16 --seconds 45 --space`: the server grew 917 -> 1009 MiB in
the second of two equal rounds with the defaults, 771 -> 774 MiB with these settings.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8   # mallopt parameters (glibc malloc.h)
# (parameter, value, the environment variable that sets it at start-up and then takes precedence)
SETTINGS = (
    # a fixed threshold also turns off its growth: blocks of 256 KiB and more are mapped, and unmapped when freed
    (M_MMAP_THRESHOLD, 256 * 1024, "MALLOC_MMAP_THRESHOLD_"),
    (M_ARENA_MAX, 2, "MALLOC_ARENA_MAX"),   # two arenas for every thread, not up to 8 per core
)


def bound_native_memory() -> bool:
    """Apply `SETTINGS` with glibc's ``mallopt`` (skipping any set in the environment); False where the C
    library is not glibc (macOS, musl), whose allocators need none of this."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt   # the running process's C library
    for parameter, value, variable in SETTINGS:
        if variable not in os.environ and not mallopt(parameter, value):
            log.warning("mallopt(%d, %d) was refused", parameter, value)
    return True
