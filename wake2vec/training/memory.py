"""Peak memory of a stretch of a run (a phase's training, its analysis): the peak resident set on
the CPU side and, when CUDA is in use, the peak of the caching allocator.

The resident set is sampled by a background thread (``/proc/self/statm``, every
:data:`INTERVAL_S`) while the stretch runs, so each stretch has its own peak without touching the
kernel's record of the process's peak, which tools outside (``/usr/bin/time``, the benchmarks)
read; that peak (``VmHWM``) is reported beside it as ``process_peak_mib``. Where ``/proc`` is
missing only the process's peak so far is known (``getrusage``), and ``scope`` says so.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path
from typing import Any

INTERVAL_S = 0.02
_STATM = Path("/proc/self/statm")
_STATUS = Path("/proc/self/status")
MIB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class PeakMemory:
    """``start()`` then ``read()`` (as often as wanted): the peaks since ``start``."""

    def __init__(self) -> None:
        self._peak = self._start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scope = "sampled" if _rss_bytes() is not None else "process"

    def start(self) -> PeakMemory:
        self.stop()
        self._stop = threading.Event()
        self._peak = self._start = _rss_bytes() or 0
        if self.scope == "sampled":
            self._thread = threading.Thread(target=self._sample, name="wake2vec-memory",
                                            daemon=True)
            self._thread.start()
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            now = _rss_bytes() or 0
            if now > self._peak:
                self._peak = now

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def read(self) -> dict[str, Any]:
        """The peaks since :meth:`start`; sampling goes on until :meth:`stop` or the next start."""
        process = _process_peak_mib()
        if self.scope == "sampled":
            self._peak = max(self._peak, _rss_bytes() or 0)
            rss = round(self._peak / MIB, 1)
        else:
            rss = process
        found: dict[str, Any] = {"rss_mib": rss, "scope": self.scope, "process_peak_mib": process}
        if self._start:
            found["start_rss_mib"] = round(self._start / MIB, 1)  # held before the stretch
        cuda = _cuda()
        if cuda is not None:
            found["cuda_allocated_mib"] = round(cuda.max_memory_allocated() / MIB, 1)
            found["cuda_reserved_mib"] = round(cuda.max_memory_reserved() / MIB, 1)
        return found


def release_memory() -> None:
    """Hand freed memory back to the system: collect garbage, then ask glibc's allocator to
    return its free arenas (``malloc_trim``), which it otherwise keeps after a phase's large
    temporary tensors are gone, so the next stretch's resident set starts low."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def _rss_bytes() -> int | None:
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _process_peak_mib() -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (MIB if sys.platform == "darwin" else 1024), 1)  # bytes on macOS


def _cuda() -> Any:
    """torch.cuda when this process has initialised CUDA, else None (never initialises it)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


def describe(peak: dict[str, Any] | None) -> str:
    """One line for logs and reports: "1,234 MiB RSS" (and CUDA when measured)."""
    if not isinstance(peak, dict):
        return "—"
    parts = []
    if isinstance(peak.get("rss_mib"), (int, float)):
        parts.append(f"{peak['rss_mib']:,.0f} MiB RSS"
                     + (" (process peak)" if peak.get("scope") == "process" else ""))
    if isinstance(peak.get("cuda_allocated_mib"), (int, float)):
        parts.append(f"{peak['cuda_allocated_mib']:,.0f} MiB CUDA")
    return ", ".join(parts) or "—"
