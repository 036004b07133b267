"""What a flag-off works with when its flag backend cannot even be opened: the write fails loudly,
nothing asks the target to confirm, and the incident report still carries what the target says of
itself (the embedded service's samples of the errors), whether the service answers or is dead."""

from __future__ import annotations

import json

import pytest

from rollout.util.serving import free_port
from tests.cli.test_cli_engine import rollout, state_of
from tests.flags.test_fleet_flags import FLEET_PLAYBOOK
from tests.support.harness import PHONE

DB_PASSWORD = "flagdb-pw-7c41e9"


@pytest.mark.slow  # two CLI processes
def test_an_unopenable_flag_database_still_gives_a_report_with_the_services_error_samples(
    make_service, sandbox, tmp_path
):
    service = make_service()
    # three sends the provider refuses (131049, never retried): the service's error samples
    sandbox.faults(reject_phones=[PHONE.lstrip("+")], reject_code=131049)
    for n in range(1, 4):
        assert service.wait_status(service.book(n)["id"], "failed")["reason"] == "not_delivered_by_meta"
    (tmp_path / "p.yaml").write_text(FLEET_PLAYBOOK)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(
        f"name: production\nservice_url: {service.url}\nenv_file: {service.env_file}\n"
        "variables:\n  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
    )
    # a flag database nobody listens on: the backend cannot even be opened
    db_url = f"postgresql://rollout:{DB_PASSWORD}@127.0.0.1:{free_port()}/flags"

    def rollback(reason: str) -> tuple[dict, str, str]:
        done = rollout(
            tmp_path, "rollback", "--playbook", "p.yaml", "--env", "production", "--reason", reason, "--json",
            FLAG_DB_URL=db_url,
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        answer = json.loads(done.stdout)
        return answer, done.stdout + done.stderr, open(answer["incident_report"]).read()

    answer, said, report = rollback("pager")
    assert answer["status"] == "flag_off_failed" and answer["confirmed"] is False
    assert "cannot open the flag database" in answer["problem"]
    actions = [a["action"] for a in state_of(tmp_path)[1]]
    # the write failed loudly and nothing tried to confirm it
    assert "flag_off_failed" in actions and "incident_report" in actions
    assert not {"flag_off", "flag_off_confirmed", "flag_off_unconfirmed"} & set(actions)
    assert "NOT turned off (the flag-off FAILED)" in report
    # the service's own section: its failures by reason, the provider's last error, the fallback outbox
    assert "Failures in the last 3600 s, by reason: `not_delivered_by_meta` 3." in report
    assert "3 sent to the fallback outbox" in report
    assert "Last error: `not_delivered_by_meta: (#131049) Message Undeliverable.`" in report
    assert report.count("| +91******3210 | not_delivered_by_meta |") == 3
    assert "NB-000001" in report and "9876543210" not in report
    assert "could not be asked for samples" not in report
    assert "are in the fallback outbox (3 in the sample window)" in report  # the customer impact, pre-filled
    for text in (said, report, json.dumps(state_of(tmp_path)[1])):
        assert DB_PASSWORD not in text

    # the service dead as well: the report still comes, at once, and says why it has no samples
    service.close()
    answer, said, report = rollback("pager again")
    assert answer["status"] == "flag_off_failed"
    assert "The service could not be asked for samples" in report and "ConnectError" in report
    assert DB_PASSWORD not in said + report
    audit = state_of(tmp_path)[1]
    failed = [a for a in audit if a["action"] == "flag_off_failed"][-1]
    written = [a for a in audit if a["action"] == "incident_report"][-1]
    assert written["ts"] - failed["ts"] < 3.0 + 1.0  # within the service client's 3 s, measured by the record
