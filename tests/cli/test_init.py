"""`rollout init`'s command line: what it says when the files it made do not validate."""

from __future__ import annotations

import os

from tests.support import inprocess


def test_files_that_do_not_validate_are_named_where_they_would_be_written_not_in_a_scratch_folder(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}
    done = inprocess.run(
        [
            "init",
            "--service-url",
            "http://127.0.0.1:1",
            "--prometheus",
            "",
            "--flag-variable",
            "A",
            "--percent-variable",
            "A",
        ],
        cwd=tmp_path,
        env=environ,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rollout: the files init made do not validate; nothing written: playbooks/my-service.yaml:40: "
        "phases.0.steps.0.set.A: duplicate key (first at line 40)"
    ]
    assert not (tmp_path / "playbooks").exists()
