"""Process memory: keep the buffers torch frees from staying in the resident set.

torch on CPU allocates tensors with the C library's ``malloc``. glibc serves a large request with
its own ``mmap``, handed back to the OS on ``free``, but after each such free it raises its mmap
threshold to the freed size (up to 32 MiB). From then on the activations of a training step, a
few MB each, come from the heap, and the freed ones stay resident as fragments between live
blocks. Measured on the quickstart's LoRA step (PromptEOL SmolLM2-135M, 16 triplets of <= 64
tokens, activation checkpointing): torch held ~1.3 GB, the process peaked at 4.7 GB; with the
threshold fixed at glibc's starting value, 1.4 GB (``MALLOC_MMAP_THRESHOLD_`` does the same from
the environment).
"""

from __future__ import annotations

import ctypes
import logging
import platform
import sys

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's starting value; setting it also stops the raising


def fix_malloc_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold so freed tensor buffers return to the OS; False (nothing done)
    off Linux/glibc. Affects allocations made after the call, in the whole process."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        done = ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold) == 1
    except (OSError, AttributeError):  # no mallopt in this process's C library
        return False
    if not done:
        logger.debug("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
    return done
