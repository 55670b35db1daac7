"""The worker loop: long-poll SQS (high before normal before low), claim the job in PostgreSQL, process it,
write the result atomically, record the transition, then delete the message.

Delivery is at-least-once, processing effectively once: the claim only succeeds for a queued job or a
running job whose lease expired (its worker died), and completion only for the lease owner. A message
is deleted only after its job reached a final status, so a SIGKILL at any point loses nothing.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from services.common.jobs import TERMINAL
from services.common.logging import job_context
from services.common.processors import JobInputError, run_job
from services.common.settings import Settings
from services.common.sqs import SQS_BATCH_LIMIT, parse_job_message
from services.common.storage import Storage, result_key
from services.worker import repository as repo
from services.worker.events import SnapshotPublisher
from services.worker.visibility import VisibilityExtender

log = logging.getLogger(__name__)
MAX_VISIBILITY_SECONDS = 43_200
SHUTDOWN_MARGIN_SECONDS = 5.0
INFRA_RETRY_SECONDS = 5


class Action(enum.Enum):
    DELETE = "delete"  # the job is final (or the message is a duplicate of a final job)
    DELAY = "delay"  # retry later: make the message visible again after `delay` seconds
    LEAVE = "leave"  # keep as is (poison message: SQS dead-letters it after MAX_RECEIVES)


@dataclass(frozen=True)
class Outcome:
    action: Action
    delay: int = 0


@dataclass(frozen=True)
class Received:
    queue_url: str
    message: dict[str, Any]

    @property
    def receive_count(self) -> int:
        return int(self.message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))


def backoff_seconds(attempt: int, base: float, cap: float) -> int:
    """Exponential backoff with equal jitter, in whole seconds as SQS wants them."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return min(MAX_VISIBILITY_SECONDS, round(delay / 2 + random.uniform(0, delay / 2)))  # noqa: S311 - jitter


class Worker:
    def __init__(self, settings: Settings, pool: ConnectionPool[Any], sqs: Any, publisher: SnapshotPublisher) -> None:
        self.settings = settings
        self.pool = pool
        self.sqs = sqs
        self.publisher = publisher
        self.storage = Storage(settings.STORAGE_PATH)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.extender = VisibilityExtender(sqs, settings.VISIBILITY_TIMEOUT_SECONDS, self._renew_lease, self.heartbeat)
        self._queue_urls = list(settings.queue_urls.values())
        self._dlq_url = settings.require_dlq_url()
        self._next_dlq_sweep = 0.0
        self._current: tuple[str, Received] | None = None

    # --- Lifecycle ---

    def run(self) -> None:
        self.storage.ensure_layout()
        self.extender.start()
        log.info("worker started", extra={"worker": self.worker_id})
        try:
            while not self.stopping.is_set():
                self.heartbeat()
                self._maybe_sweep_dlq()
                try:
                    batch = self.receive()
                except Exception:
                    log.exception("receive failed; retrying")
                    self.stopping.wait(1)
                    continue
                self.process_batch(batch)
        finally:
            self.extender.stop()
            log.info("worker stopped", extra={"worker": self.worker_id})

    def request_stop(self) -> None:
        """SIGTERM: take no new work, finish the current job; a watchdog releases it if time runs out."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        deadline = max(1.0, self.settings.SHUTDOWN_TIMEOUT_SECONDS - SHUTDOWN_MARGIN_SECONDS)
        watchdog = threading.Timer(deadline, self._release_and_exit)
        watchdog.daemon = True
        watchdog.start()

    def _release_and_exit(self) -> None:
        current = self._current
        if current is not None:
            job_id, received = current
            log.warning("shutdown timeout reached; releasing the current job", extra={"job_id": job_id})
            self._release(job_id, "released by worker shutdown")
            self._change_visibility(received, 0)
        os._exit(1)

    def heartbeat(self) -> None:
        self.settings.HEARTBEAT_FILE.touch()

    # --- Receiving ---

    def _receive_from(self, queue_url: str, wait_seconds: int) -> list[Received]:
        response = self.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=self.settings.VISIBILITY_TIMEOUT_SECONDS,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [Received(queue_url, message) for message in response.get("Messages", [])]

    def receive(self) -> list[Received]:
        for queue_url in self._queue_urls:
            messages = self._receive_from(queue_url, 0)
            if messages:
                return messages
        # Nothing anywhere: long-poll the high-priority queue so urgent work is picked up at once.
        return self._receive_from(self._queue_urls[0], self.settings.IDLE_WAIT_SECONDS)

    # --- Processing ---

    def process_batch(self, batch: list[Received]) -> None:
        for received in batch:
            self.extender.hold(received.queue_url, received.message)
        done: list[Received] = []
        try:
            for index, received in enumerate(batch):
                if self.stopping.is_set():
                    for pending in batch[index:]:
                        self._change_visibility(pending, 0)  # hand back what we will not start
                    break
                outcome = self._handle_safely(received)
                if outcome.action is Action.DELETE:
                    done.append(received)
                elif outcome.action is Action.DELAY:
                    self._change_visibility(received, outcome.delay)
        finally:
            for received in batch:
                self.extender.drop(received.message)
            self._delete(done)

    def _handle_safely(self, received: Received) -> Outcome:
        try:
            return self._handle(received)
        except Exception as exc:
            # Typically PostgreSQL unreachable: nothing was decided, so look at the message again soon.
            log.exception(
                "could not handle message; retrying it shortly",
                extra={"message_id": received.message.get("MessageId")},
            )
            if isinstance(exc, psycopg.OperationalError):
                # A failover or restart killed every pooled connection: drop the dead idle ones now, so that
                # after recovery each does not fail one more job attempt.
                self.pool.check()
            time.sleep(1)
            return Outcome(Action.DELAY, delay=INFRA_RETRY_SECONDS)

    def _handle(self, received: Received) -> Outcome:
        job_id = parse_job_message(received.message.get("Body", ""))
        if job_id is None:
            log.error(
                "poison message (not a job message); leaving it for the DLQ",
                extra={"message_id": received.message.get("MessageId")},
            )
            return Outcome(Action.LEAVE)
        with job_context(job_id):
            with self.pool.connection() as conn:
                row = repo.run_transition(
                    conn,
                    repo.CLAIM,
                    id=job_id,
                    worker=self.worker_id,
                    lease_seconds=self.settings.VISIBILITY_TIMEOUT_SECONDS,
                )
                if row is None:
                    return self._not_claimed(conn, job_id)
            self.publisher.publish(row)
            self._current = (job_id, received)
            self.extender.set_current_job(job_id)
            try:
                return self._execute(row, received)
            finally:
                self.extender.set_current_job(None)
                self._current = None

    def _not_claimed(self, conn: repo.Conn, job_id: str) -> Outcome:
        state = repo.job_state(conn, job_id)
        if state is None:
            log.error("message for an unknown job; leaving it for the DLQ")
            return Outcome(Action.LEAVE)
        if state["status"] in TERMINAL:
            log.info("duplicate delivery of a finished job; deleting the message")
            return Outcome(Action.DELETE)
        # Another live worker holds the lease: look again once it would have expired.
        return Outcome(Action.DELAY, delay=min(MAX_VISIBILITY_SECONDS, int(state["lease_left"]) + 1))

    def _load_input(self, row: dict[str, Any]) -> bytes:
        key = row["input_key"]
        if key is None:
            raise JobInputError("job has no input file")
        return self.storage.path(key).read_bytes()

    def _execute(self, row: dict[str, Any], received: Received) -> Outcome:
        job_id = str(row["id"])
        started = time.monotonic()
        try:
            output = run_job(row["type"], row["params"], lambda: self._load_input(row))
            key = result_key(job_id, output.extension)
            if not self.storage.write_once(key, output.data):
                log.info("result already written by an earlier attempt; keeping it", extra={"key": key})
        except JobInputError as exc:
            log.warning("job input rejected; failing the job", extra={"error": str(exc)})
            self._finish(repo.FAIL, job_id, error=str(exc))
            return Outcome(Action.DELETE)
        except Exception as exc:
            return self._retry_or_give_up(job_id, received, exc)
        self._finish(repo.SUCCEED, job_id, result_key=key, summary=output.summary)
        log.info("job succeeded", extra={"job_type": row["type"], "ms": round((time.monotonic() - started) * 1000)})
        return Outcome(Action.DELETE)

    def _retry_or_give_up(self, job_id: str, received: Received, exc: Exception) -> Outcome:
        reason = f"{type(exc).__name__}: {exc}"
        attempts = received.receive_count
        if attempts >= self.settings.MAX_RECEIVES:
            log.error("job failed on its last attempt; the message goes to the DLQ", extra={"error": reason})
            self._finish(repo.FAIL, job_id, error=f"failed after {attempts} attempts: {reason}")
            # Visible again at once: the next receive finds it over maxReceiveCount and SQS dead-letters it.
            return Outcome(Action.DELAY, delay=0)
        delay = backoff_seconds(
            attempts, self.settings.RETRY_BACKOFF_BASE_SECONDS, self.settings.RETRY_BACKOFF_MAX_SECONDS
        )
        log.warning("job attempt failed; retrying", extra={"error": reason, "attempt": attempts, "delay_s": delay})
        self._release(job_id, reason)
        return Outcome(Action.DELAY, delay=delay)

    def _finish(self, statement: str, job_id: str, **params: Any) -> None:
        with self.pool.connection() as conn:
            row = repo.run_transition(conn, statement, id=job_id, worker=self.worker_id, **params)
        if row is None:
            log.warning("lease lost before the job finished; another worker owns it now")
            return
        self.publisher.publish(row)

    def _release(self, job_id: str, reason: str) -> None:
        self._finish(repo.RELEASE, job_id, error=reason)

    def _renew_lease(self, job_id: str) -> None:
        with self.pool.connection() as conn:
            repo.renew_lease(conn, job_id, self.worker_id, self.settings.VISIBILITY_TIMEOUT_SECONDS)

    # --- SQS bookkeeping ---

    def _change_visibility(self, received: Received, seconds: int) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=received.queue_url,
                ReceiptHandle=received.message["ReceiptHandle"],
                VisibilityTimeout=seconds,
            )
        except Exception:
            log.exception("could not change message visibility; it reappears after the timeout")

    def _delete(self, done: list[Received]) -> None:
        by_queue: dict[str, list[Received]] = {}
        for received in done:
            by_queue.setdefault(received.queue_url, []).append(received)
        for queue_url, items in by_queue.items():
            entries = [{"Id": str(i), "ReceiptHandle": r.message["ReceiptHandle"]} for i, r in enumerate(items)]
            response = self.sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
            for failure in response.get("Failed", []):
                # Harmless: the message comes back and is recognised as a duplicate of a final job.
                log.warning("could not delete a processed message", extra={"failure": failure})

    # --- Dead-letter reconciliation ---

    def _maybe_sweep_dlq(self) -> None:
        now = time.monotonic()
        if now < self._next_dlq_sweep:
            return
        self._next_dlq_sweep = now + self.settings.DLQ_SWEEP_SECONDS
        try:
            self.sweep_dlq()
        except Exception:
            log.exception("dead-letter sweep failed; will retry")

    def sweep_dlq(self) -> int:
        """Mark jobs whose messages were dead-lettered as failed. The messages stay in the DLQ (hidden for
        12 h per sweep) for operators to inspect or redrive."""
        response = self.sqs.receive_message(
            QueueUrl=self._dlq_url,
            MaxNumberOfMessages=SQS_BATCH_LIMIT,
            WaitTimeSeconds=0,
            VisibilityTimeout=MAX_VISIBILITY_SECONDS,
        )
        failed = 0
        for message in response.get("Messages", []):
            job_id = parse_job_message(message.get("Body", ""))
            if job_id is None:
                continue
            with job_context(job_id), self.pool.connection() as conn:
                row = repo.run_transition(
                    conn,
                    repo.DEAD_LETTER,
                    id=job_id,
                    worker=self.worker_id,
                    error=f"dead-lettered after {self.settings.MAX_RECEIVES} receives",
                )
            if row is not None:
                log.error("job dead-lettered; marked failed")
                self.publisher.publish(row)
                failed += 1
        return failed
