"""The exit code and status enums stay the plain ints and strings they replaced, in every output."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from rollout.engine.outcome import RunOutcome
from rollout.engine.state import HELD, ROLLED_BACK
from rollout.util.errors import EXIT_HELD, EXIT_ROLLED_BACK
from rollout.util.outcomes import ExitCode, Status

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_json_of_an_outcome_is_what_the_literals_gave() -> None:
    outcome = RunOutcome(ROLLED_BACK, EXIT_ROLLED_BACK, "gate failed", "production", "ramp")
    literal = RunOutcome("rolled_back", 1, "gate failed", "production", "ramp")
    assert json.dumps(outcome.as_dict()) == json.dumps(literal.as_dict())
    assert json.dumps([Status.HELD, ExitCode.HELD]) == '["held", 3]'
    assert f"{HELD}: {EXIT_HELD}" == "held: 3"


def test_a_status_round_trips_through_sqlite_as_text(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("CREATE TABLE t (status TEXT, code INTEGER)")
    db.execute("INSERT INTO t VALUES (?, ?)", (Status.AWAITING_APPROVAL, ExitCode.INTERRUPTED))
    row = db.execute("SELECT status, code, typeof(status), typeof(code) FROM t").fetchone()
    db.close()
    assert row == ("awaiting_approval", 130, "text", "integer")


def test_the_documented_exit_codes_are_the_enum() -> None:
    said = re.search(r"^Exit codes: (.*?)\n\n", DOCS.read_text(), re.S | re.M)
    assert said, "docs/cli.md lost its Exit codes paragraph"
    documented = {int(n) for n in re.findall(r"\b(\d+) ", said.group(1))}
    assert documented == {int(code) for code in ExitCode}
