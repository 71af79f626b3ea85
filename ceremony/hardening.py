"""Process hardening the CLI applies before anything else (issue 5, memory hygiene).

Seeds, shares, PINs and private keys pass through this process's memory, and some of it
(Python strings, library copies) cannot be wiped (docs/threat-model.md, R1). A core file
would write all of it to disk, so the process forbids them twice: the core-size limit is 0
(soft and hard, so nothing in the process can raise it again), and the process is marked
not dumpable, which also stops a core-dump helper that the kernel would otherwise feed
through a pipe (core(5): a piped core_pattern ignores RLIMIT_CORE) and stops other
processes of the same user from attaching with ptrace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3


def _prctl(option: int, value: int = 0) -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(option, value, 0, 0, 0))


def forbid_core_dumps() -> None:
    """No core file of this process, ever; raises OSError if the kernel refuses."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _prctl(PR_SET_DUMPABLE, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def dumpable() -> bool:
    """Whether the kernel would write a core file of this process (PR_GET_DUMPABLE)."""
    return _prctl(PR_GET_DUMPABLE) != 0
