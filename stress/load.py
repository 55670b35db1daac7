"""The load client: keep-alive HTTP/1.1 submitters on uvloop (one connection each) that cost less CPU than the
server they measure. Shared by bench/submit_jobs.py (as fast as the API takes them) and the stress scenarios,
which also pace submissions and retry 503s and dropped connections with the same Idempotency-Key, as a careful
client does: a retry then returns the original job instead of creating a second one."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson

CSV = "region,amount\nnorth,12.5\nsouth,7\neast,3.25\nwest,9\n"
PRIORITIES = ("high", "normal", "normal", "normal", "low")
# Responses the API gives on purpose when a dependency is down: retry after Retry-After.
RETRYABLE_STATUSES = frozenset({503, 507})


def job_body(index: int) -> bytes:
    return orjson.dumps(
        {"type": "data.csv_summary", "priority": PRIORITIES[index % len(PRIORITIES)], "params": {"csv": CSV}}
    )


@dataclass
class Retrying:
    """How a stress submitter behaves when the platform is degraded (the benchmark does not retry)."""

    give_up_after_seconds: float = 120.0
    """A job not accepted within this is counted as refused, not retried further."""
    pace_per_second: float | None = None
    """Submissions per second of the whole group of submitters; None: as fast as the API answers."""


@dataclass
class Submitter:
    """One keep-alive connection submitting jobs from a shared counter."""

    port: int
    total: int
    counter: list[int]
    key_prefix: str = "bench"
    retrying: Retrying | None = None
    latencies: list[float] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    rejected: dict[int, int] = field(default_factory=dict)
    """Final answers other than 202/200, by status (for a retried job: its last answer)."""
    answers: dict[int, int] = field(default_factory=dict)
    """Every answer, by status, retries included (0: the connection dropped before an answer)."""
    retry_after_missing: int = 0
    """503/507 answers without a Retry-After header."""
    acceptances: list[tuple[float, float]] = field(default_factory=list)
    """(perf_counter at the first try, seconds until accepted, retries included) per accepted job."""

    def _request(self, index: int) -> bytes:
        body = job_body(index)
        head = (
            f"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Client-Id: {self.key_prefix}-{index % 50}\r\nIdempotency-Key: {self.key_prefix}-{index}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def run(self, started: float) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pace = self.retrying.pace_per_second if self.retrying else None
        try:
            while self.counter[0] < self.total:
                index = self.counter[0]
                self.counter[0] += 1
                if pace:  # the whole group submits `pace` jobs per second: job `index` is due at index / pace
                    await asyncio.sleep(max(0.0, started + index / pace - time.perf_counter()))
                connection = await self._submit(index, connection)
        finally:
            if connection is not None:
                connection[1].close()

    async def _submit(
        self, index: int, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        request = self._request(index)
        first_try = time.perf_counter()
        while True:
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = connection
                writer.write(request)
                status, headers, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                if connection is not None:
                    connection[1].close()
                connection, status, headers, body = None, 0, {}, b""
                if self.retrying is None:
                    raise
            self.answers[status] = self.answers.get(status, 0) + 1
            if status in (200, 202):
                self.latencies.append(time.perf_counter() - started)
                self.accepted.append(orjson.loads(body)["id"])
                self.acceptances.append((first_try, time.perf_counter() - first_try))
                return connection
            if status in RETRYABLE_STATUSES and b"retry-after" not in headers:
                self.retry_after_missing += 1
            retryable = status == 0 or status in RETRYABLE_STATUSES
            if (
                self.retrying is None
                or not retryable
                or time.perf_counter() - first_try > self.retrying.give_up_after_seconds
            ):
                self.latencies.append(time.perf_counter() - started)
                self.rejected[status] = self.rejected.get(status, 0) + 1
                return connection
            await asyncio.sleep(_retry_after(headers))


def _retry_after(headers: dict[bytes, bytes]) -> float:
    raw = headers.get(b"retry-after", b"1")
    return float(raw) if raw.isdigit() else 1.0


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    status = int((await reader.readline()).split()[1])
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, await reader.readexactly(int(headers.get(b"content-length", b"0")))


async def submit_all(
    port: int, total: int, concurrency: int, key_prefix: str = "bench", retrying: Retrying | None = None
) -> tuple[list[Submitter], float]:
    counter = [0]
    submitters = [Submitter(port, total, counter, key_prefix, retrying) for _ in range(concurrency)]
    started = time.perf_counter()
    await asyncio.gather(*(s.run(started) for s in submitters))
    return submitters, time.perf_counter() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
