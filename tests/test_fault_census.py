"""The fault census (benchmarks/fault_census.py) classes each run as a user would read it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import fault_census as census  # noqa: E402

ERROR = "backend: cpu (asked)\nseedopt: error: prescription_gy: not a number\n"
TRACE = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'


@pytest.mark.parametrize(
    ("rc", "stderr", "outcome"),
    [
        (2, ERROR, "error"),
        (0, "wrote plan.json\n", "accepted"),
        (3, "goals missed\n", "accepted"),
        (1, TRACE, "traceback"),
        (2, TRACE + "seedopt: error: x\n", "traceback"),  # a traceback is never an error line
        (2, "Usage: seedopt plan\n", "traceback"),  # exit 2 without the one line
        (2, "seedopt: error: a\nseedopt: error: b\n", "traceback"),
        (-11, "", "traceback"),  # a segfault
        (None, "", "hang"),
    ],
)
def test_each_ending_is_classed_by_exit_code_and_stderr(rc, stderr, outcome) -> None:
    assert census.classify(rc, stderr) == outcome


def test_a_refused_case_that_computes_a_result_is_a_silent_wrong_result() -> None:
    refuse = census.Case("x", "bad", "refuse", lambda w: [])
    accept = census.Case("x", "good", "accept", lambda w: [])
    assert census.verdict(refuse, "error", None) == "ok"
    assert census.verdict(refuse, "accepted", None) == "silent"
    assert census.verdict(accept, "accepted", None) == "ok"
    assert census.verdict(accept, "accepted", "D90 60 Gy, undamaged 120 Gy") == "silent"
    assert census.verdict(accept, "error", None) == "refused"
    assert census.verdict(accept, "hang", None) == census.verdict(refuse, "hang", None) == "hang"


def test_every_case_says_what_a_careful_tool_does() -> None:
    names = [(c.kind, c.name) for c in census.CASES]
    assert len(names) == len(set(names)) >= 50
    assert {c.expect for c in census.CASES} == {"refuse", "accept"}
