"""The result-write counter sees a rename onto an existing name, which leaves nothing else to see on disk."""

from __future__ import annotations

import os
from pathlib import Path

from stress.writes import ResultWrites


def test_a_result_replaced_by_a_second_rename_counts_as_written_twice(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    with ResultWrites(results) as writes:
        for name in ("a.json", "b.json", "a.json"):
            temp = tmp_path / "part"
            temp.write_bytes(b"{}")
            os.replace(temp, results / name)
        writes.settle()  # the kernel queued each event before os.replace returned
        assert writes.counts == {"a.json": 2, "b.json": 1}
        assert writes.rewritten() == 1
        assert not writes.overflowed
