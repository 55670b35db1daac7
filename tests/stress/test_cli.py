"""`./platform stress`: the JSON row shape, the table, the exit code."""

from __future__ import annotations

import json

import pytest

from stress.__main__ import main
from stress.report import Result, table

FIELDS = ["scenario", "jobs", "accepted", "succeeded", "failed_as_designed", "lost", "duplicated", "errors_5xx",
          "recovery_seconds", "notes"]  # fmt: skip


def test_json_is_only_a_list_of_rows_with_the_issue_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "security-incident", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [list(row) for row in rows] == [FIELDS]
    assert rows[0]["scenario"] == "security-incident"


def test_unknown_scenario_is_refused_with_the_allowed_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--only", "blackfriday"])
    assert raised.value.code == 2
    assert "black-friday" in capsys.readouterr().err


def test_a_missed_expectation_is_a_problem_in_the_notes_and_fails_the_run() -> None:
    result = Result("worker-failure", jobs=10, accepted=10, succeeded=9, lost=1)
    result.expect_clean()
    assert result.as_json()["notes"] == "PROBLEM: 1 accepted job(s) lost"
    assert "PROBLEM: 1 accepted job(s) lost" in table([result])
