"""Shared storage (the EFS mount in AWS, a local directory here).

Layout under STORAGE_PATH: `uploads/<uuid>` (client files), `results/<job id>.<ext>` (job outputs) and
`tmp/` for partial writes. Temporary files live on the same filesystem as their destination so that
`os.replace` is an atomic rename: readers see either nothing or the whole file, never a partial one.
Every key is server-chosen (uuids); nothing a client sends becomes part of a path.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

UPLOADS = "uploads"
RESULTS = "results"
TMP = "tmp"


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_layout(self) -> None:
        for sub in (UPLOADS, RESULTS, TMP):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def is_writable(self) -> bool:
        probe = self.root / TMP / f".ready-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
        except OSError:
            return False
        finally:
            # On a full disk the file is created and the write fails: remove it either way.
            with contextlib.suppress(OSError):
                probe.unlink()
        return True

    def path(self, key: str) -> Path:
        return self.root / key

    def new_temp(self) -> tuple[Path, BinaryIO]:
        path = self.root / TMP / f"{uuid.uuid4().hex}.part"
        return path, path.open("xb")

    def publish(self, temp: Path, key: str) -> None:
        """Atomically move a finished temp file to its final key."""
        os.replace(temp, self.root / key)

    def discard(self, temp: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()

    def write_once(self, key: str, data: bytes) -> bool:
        """Write `data` under `key` unless `key` exists; returns whether this call wrote it. Results are write-once:
        an earlier attempt of the same job that was killed between publishing its result and recording it wrote
        the same output (processors are deterministic), and replacing it would be a second write of one result
        (measured by `./platform stress`, docs/stress.md). A hard link publishes atomically without replacing
        (EFS supports hard links: its quotas page allows 175 per file; this makes one)."""
        temp = self._durable_temp(data)
        try:
            try:
                os.link(temp, self.root / key)
            except FileExistsError:
                return False
            return True
        finally:
            self.discard(temp)

    def write_atomic(self, key: str, data: bytes) -> None:
        temp = self._durable_temp(data)
        try:
            self.publish(temp, key)
        except BaseException:
            self.discard(temp)
            raise

    def _durable_temp(self, data: bytes) -> Path:
        """`data` in a new temp file, on disk before it is published (a partial file is removed)."""
        temp, handle = self.new_temp()
        try:
            with handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            self.discard(temp)
            raise
        return temp


def upload_key(file_id: uuid.UUID) -> str:
    return f"{UPLOADS}/{file_id}"


def result_key(job_id: str, extension: str) -> str:
    return f"{RESULTS}/{job_id}.{extension}"
