"""Keeps held SQS messages invisible and the current job's lease alive while the worker is busy."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class VisibilityExtender:
    """Every third of the visibility timeout: extend every held message, renew the running job's lease
    and touch the heartbeat (a long job is progress, not a hang)."""

    def __init__(
        self,
        sqs: Any,
        timeout_seconds: int,
        renew_lease: Callable[[str], None],
        heartbeat: Callable[[], None],
    ) -> None:
        self._sqs = sqs
        self._timeout = timeout_seconds
        self._renew_lease = renew_lease
        self._heartbeat = heartbeat
        self._held: dict[str, tuple[str, str]] = {}  # message id -> (queue url, receipt handle)
        self._current_job: str | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="visibility-extender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def hold(self, queue_url: str, message: dict[str, Any]) -> None:
        with self._lock:
            self._held[message["MessageId"]] = (queue_url, message["ReceiptHandle"])

    def drop(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._held.pop(message["MessageId"], None)

    def set_current_job(self, job_id: str | None) -> None:
        with self._lock:
            self._current_job = job_id

    def _loop(self) -> None:
        while not self._stopped.wait(max(1.0, self._timeout / 3)):
            try:
                self.extend_now()
            except Exception:
                log.exception("visibility extension failed; will retry")

    def extend_now(self) -> None:
        with self._lock:
            held = list(self._held.items())
            job_id = self._current_job
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for message_id, (queue_url, receipt) in held:
            by_queue.setdefault(queue_url, []).append(
                {"Id": message_id, "ReceiptHandle": receipt, "VisibilityTimeout": self._timeout}
            )
        for queue_url, entries in by_queue.items():
            for start in range(0, len(entries), 10):
                self._sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries[start : start + 10])
        if job_id is not None:
            self._renew_lease(job_id)
            self._heartbeat()
