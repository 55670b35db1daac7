"""One row per scenario (the `--json` objects), the table, and the load a scenario drives while it breaks things."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import uvloop

from stress.load import RETRYABLE_STATUSES, Retrying, Submitter, submit_all

if TYPE_CHECKING:
    from stress.platform import Duplicates, Outcome

COLUMNS = ("scenario", "jobs", "accepted", "succeeded", "failed_as_designed", "lost", "duplicated", "errors_5xx",
           "recovery_seconds")  # fmt: skip


@dataclass
class Result:
    scenario: str
    jobs: int = 0
    """Jobs the scenario tried to submit."""
    accepted: int = 0
    """Answered 202 (or 200, a replay of an accepted one): committed in PostgreSQL."""
    succeeded: int = 0
    failed_as_designed: int = 0
    """Accepted jobs that ended `failed` on purpose (retries exhausted by the fault), with their error recorded."""
    lost: int = 0
    """Accepted jobs not in a final status when the scenario's time was up (or missing altogether)."""
    duplicated: int = 0
    """Jobs completed twice (the audit trail) plus result files written more than once (inotify on results/)."""
    errors_5xx: int = 0
    """5xx answers the API did not mean: anything but a 503/507 with Retry-After (those are in the notes)."""
    recovery_seconds: float | None = None
    """From the end of the fault until the API accepts and the workers complete jobs again (see each scenario)."""
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Expectations the run did not meet; the command exits 1 if any row has one (not in the JSON)."""

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def expect_clean(self) -> None:
        """What every scenario promises: nothing lost, nothing done twice, no unintended 5xx."""
        self.expect(self.lost == 0, f"{self.lost} accepted job(s) lost")
        self.expect(self.duplicated == 0, f"{self.duplicated} job(s) duplicated")
        self.expect(self.errors_5xx == 0, f"{self.errors_5xx} unintended 5xx answer(s)")

    def as_json(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("problems")
        notes = [*self.notes, *(f"PROBLEM: {problem}" for problem in self.problems)]
        row["notes"] = "; ".join(notes)
        return row


def table(results: list[Result]) -> str:
    rows = [[_cell(getattr(result, column)) for column in COLUMNS] for result in results]
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(COLUMNS)]
    lines = ["  ".join(column.ljust(widths[i]) for i, column in enumerate(COLUMNS))]
    lines.append("  ".join("-" * width for width in widths))
    for result, row in zip(results, rows, strict=True):
        lines.append("  ".join(cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row)))
        lines.extend(f"    {note}" for note in result.as_json()["notes"].split("; ") if note)
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


class Load:
    """Submissions running in a background thread (its own event loop) while the scenario breaks things."""

    def __init__(self, port: int, jobs: int, concurrency: int, retrying: Retrying, key_prefix: str) -> None:
        self.jobs = jobs
        self.submitters: list[Submitter] = []
        self.seconds = 0.0
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self.submitters, self.seconds = uvloop.run(
                    submit_all(port, jobs, concurrency, key_prefix=key_prefix, retrying=retrying)
                )
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="stress-load", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"submissions did not finish within {timeout:.0f}s")
        if self._error is not None:
            raise self._error

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    @property
    def accepted(self) -> list[str]:
        return [job_id for submitter in self.submitters for job_id in submitter.accepted]

    def answers(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for submitter in self.submitters:
            for status, count in submitter.answers.items():
                total[status] = total.get(status, 0) + count
        return total

    def unintended_5xx(self) -> int:
        designed = sum(self.answers().get(status, 0) for status in RETRYABLE_STATUSES)
        missing = sum(submitter.retry_after_missing for submitter in self.submitters)
        return sum(count for status, count in self.answers().items() if status >= 500) - designed + missing

    def acceptances(self) -> list[tuple[float, float]]:
        return [item for submitter in self.submitters for item in submitter.acceptances]

    def describe_answers(self) -> str:
        return "answers " + ", ".join(
            f"{status or 'dropped'}x{count}" for status, count in sorted(self.answers().items())
        )


def fill(result: Result, load: Load, outcome: Outcome, duplicates: Duplicates) -> None:
    """Copy the load's and the database's counts into the row."""
    result.jobs = load.jobs
    result.accepted = len(set(load.accepted))
    result.succeeded = outcome.succeeded
    result.failed_as_designed = outcome.failed
    result.lost = outcome.lost
    result.duplicated = duplicates.total
    result.errors_5xx = load.unintended_5xx()
    result.notes.append(load.describe_answers())
    refused = sum(count for submitter in load.submitters for count in submitter.rejected.values())
    result.expect(refused == 0, f"{refused} submission(s) never accepted")
    if duplicates.total:
        result.notes.append(
            f"duplicated: {duplicates.completed_twice} completed twice,"
            f" {duplicates.results_written_twice} result(s) written twice"
        )
    result.expect(not duplicates.writes_unmeasured, "inotify's queue overflowed: result writes not all counted")
    result.expect(duplicates.results_seen >= outcome.succeeded, "fewer result writes seen than jobs succeeded")
