"""Counts how often each result file is written, from the kernel's own record (inotify): the worker publishes a
result by hard-linking a finished temp file as `results/<job id>.<ext>` (IN_CREATE; a rename onto it would be
IN_MOVED_TO, also counted), so every write is one event, also when a second write would replace the first and
leave nothing else to see on disk."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
from collections import Counter
from pathlib import Path

IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of NUL-padded name


class ResultWrites:
    """Start with `with ResultWrites(directory) as writes:`; `rewritten()` counts names written more than once."""

    def __init__(self, directory: Path) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._directory = directory
        self.counts: Counter[str] = Counter()
        self.overflowed = False
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def __enter__(self) -> ResultWrites:
        self._fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        # A name appears by a rename onto it (IN_MOVED_TO) or a new link or file (IN_CREATE).
        if self._libc.inotify_add_watch(self._fd, bytes(self._directory), IN_MOVED_TO | IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch failed on {self._directory}")
        self._thread = threading.Thread(target=self._read, name="result-writes", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self._fd)

    def settle(self) -> None:
        """Read every event already queued (call before reading the counts)."""
        self._drain()

    def rewritten(self) -> int:
        self.settle()
        return sum(1 for count in self.counts.values() if count > 1)

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.2)
            if ready:
                self._drain()

    def _drain(self) -> None:
        with self._lock:
            while True:
                try:
                    data = os.read(self._fd, 65536)
                except BlockingIOError:
                    return
                offset = 0
                while offset < len(data):
                    _, mask, _, length = _EVENT.unpack_from(data, offset)
                    name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0").decode()
                    offset += _EVENT.size + length
                    if mask & IN_Q_OVERFLOW:
                        self.overflowed = True
                    elif mask & (IN_MOVED_TO | IN_CREATE):
                        self.counts[name] += 1
