"""Storage exhaustion: the storage directory is a small tmpfs of its own, which mid-run is filled to the last
byte by a ballast file (really full: every write fails with ENOSPC). Uploads then get 507 with Retry-After and
leave no partial file; a job whose result cannot be written is retried with backoff, and fails as designed when
its retries run out; no result file is ever partial. When the ballast goes, uploads and jobs work again.

Mounting needs CAP_SYS_ADMIN: root (this machine, CI) mounts directly; anyone else runs this scenario inside
`unshare --user --map-root-user --mount`, a user namespace where the mount is allowed and private.

In AWS the storage is EFS, which is elastic and does not fill up; what runs out there is a task's own disk or
the file system's throughput. What fires (see docs/stress.md): the API's `target-5xx` alarm (507 is a 5XX to the
load balancer), the worker's `errors-alarm` and `dlq-not-empty` when jobs fail, and with bursting throughput the
storage's `burst-credits-low`; every stack uses elastic throughput, which has no EFS alarm at all."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from stress.load import Retrying
from stress.platform import REPO_ROOT, LocalPlatform, PlatformConfig
from stress.report import Load, Result, fill
from stress.servers import small_filesystem, wait_until

UPLOAD_BYTES = 512 * 1024
EXPECTED_ROWS = 4  # stress.load.CSV


def run(short: bool) -> Result:
    if os.geteuid() != 0:
        return _in_user_namespace(short)
    size, jobs, rate, full_seconds = (8, 80, 40.0, 1.5) if short else (64, 1500, 30.0, 25.0)
    result = Result("storage-exhaustion")
    with small_filesystem(size * 1024 * 1024) as storage:
        config = PlatformConfig("storage-exhaustion", storage=storage, env={"RETRY_BACKOFF_BASE_SECONDS": "1"})
        with LocalPlatform(config) as platform:
            platform.start(2)
            port = platform.api_port
            result.expect(_upload(port)[0] == 201, "upload refused before the disk filled")
            load = Load(port, jobs, 8, Retrying(pace_per_second=rate), key_prefix="se")
            time.sleep(jobs / rate / 4)
            ballast = storage / "ballast"
            _fill(ballast)
            # A job that wrote its result just before may still be recording it; after that, nothing completes.
            really_full_at = datetime.now(UTC) + timedelta(seconds=1)
            before = _entries(storage)
            uploads = [_upload(port) for _ in range(3)]
            statuses = sorted({status for status, _ in uploads})
            result.expect(statuses == [507], f"uploads on a full disk answered {statuses}, not 507")
            result.expect(all("retry-after" in headers for _, headers in uploads), "507 without Retry-After")
            result.expect(_entries(storage) == before, "an upload on a full disk left a file behind")
            ready = _get(port, "/ready")
            result.expect(ready[0] == 503, f"/ready answered {ready[0]} on a full disk, not 503")
            time.sleep(full_seconds)
            ballast.unlink()
            back, back_at = time.perf_counter(), datetime.now(UTC)
            while_full = platform.completions_since(really_full_at, until=back_at)
            wait_until(lambda: _upload(port)[0] == 201, timeout=30, what="uploads to work again", interval=0.2)
            uploading = time.perf_counter()
            wait_until(lambda: platform.completions_since(back_at) > 0, timeout=60,
                       what="a job to complete after space returned", interval=0.1)  # fmt: skip
            completing = time.perf_counter()
            load.join(timeout=300)
            platform.wait_for_jobs(len(load.accepted), timeout=240)
            fill(result, load, platform.outcome(load.accepted), platform.duplicates())
            corrupt, wrong_errors = _check_results(platform)
            leftovers = list((storage / "tmp").iterdir())
    result.recovery_seconds = round(max(uploading, completing) - back, 1)
    result.notes.append(
        f"{size} MiB tmpfs full for {full_seconds:g} s ({while_full} jobs completed meanwhile);"
        f" uploads on it: {statuses} with Retry-After;"
        f" uploads work {uploading - back:.1f} s and jobs complete {completing - back:.1f} s after space returned;"
        f" {result.failed_as_designed} job(s) failed after their retries (ENOSPC)"
    )
    result.expect(while_full == 0, f"{while_full} job(s) completed while the disk was full")
    result.expect(corrupt == 0, f"{corrupt} result file(s) missing or corrupt")
    result.expect(wrong_errors == 0, f"{wrong_errors} failed job(s) failed for another reason than ENOSPC")
    result.expect(not leftovers, f"{len(leftovers)} partial file(s) left in tmp/")
    result.expect_clean()
    result.expect(result.succeeded + result.failed_as_designed == result.accepted == jobs, "not every job final")
    return result


def _fill(ballast: Path) -> None:
    """Write until the file system has no block left (short writes included)."""
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    chunk = b"\0" * (1024 * 1024)
    try:
        while True:
            try:
                os.write(descriptor, chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]
    finally:
        os.close(descriptor)


def _entries(storage: Path) -> set[str]:
    return {str(path.relative_to(storage)) for sub in ("uploads", "tmp") for path in (storage / sub).iterdir()}


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "text/csv", "X-Client-Id": "stress-uploads"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()


def _upload(port: int) -> tuple[int, dict[str, str]]:
    return _request(port, "POST", "/files", b"a,b\n" + b"1,2\n" * (UPLOAD_BYTES // 4 - 1))


def _get(port: int, path: str) -> tuple[int, dict[str, str]]:
    return _request(port, "GET", path)


def _check_results(platform: LocalPlatform) -> tuple[int, int]:
    """(succeeded jobs whose result file is missing or not the full summary, failed jobs not failed by ENOSPC)."""
    with platform.connect() as conn:
        rows = conn.execute("SELECT status, result_key, error FROM jobs WHERE status IN ('succeeded', 'failed')")
        corrupt = wrong = 0
        for row in rows.fetchall():
            if row["status"] == "failed":
                wrong += "No space left on device" not in (row["error"] or "")
                continue
            try:
                corrupt += orjson.loads((platform.storage / row["result_key"]).read_bytes())["rows"] != EXPECTED_ROWS
            except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
                corrupt += 1
    return corrupt, wrong


def _in_user_namespace(short: bool) -> Result:
    """Run this scenario as root of a private user and mount namespace (no privileges needed on the host)."""
    argv = ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m", "stress",
            "--only", "storage-exhaustion", "--json", *(["--short"] if short else [])]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)  # noqa: S603
    with contextlib.suppress(json.JSONDecodeError, IndexError, TypeError):
        row = json.loads(completed.stdout)[0]
        notes = [note for note in row.pop("notes").split("; ") if note]
        problems = [note.removeprefix("PROBLEM: ") for note in notes if note.startswith("PROBLEM: ")]
        return Result(**row, notes=[note for note in notes if not note.startswith("PROBLEM: ")], problems=problems)
    result = Result("storage-exhaustion")
    result.problems.append(f"could not run in a user namespace: {completed.stderr.strip()[-300:]}")
    return result
