"""`rollout load`'s command line: a URL that is not one is a usage error, not a load of failures."""

from __future__ import annotations

import pytest

from tests.support import inprocess


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1:1", "http://"])
def test_load_refuses_a_url_that_is_not_http_with_exit_2_and_sends_nothing(tmp_path, url):
    done = inprocess.run(["load", "--url", url, "--bookings", "1"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"Error: Invalid value for --url: {url!r} is not an http(s):// URL"
    assert "bookings in" not in done.stdout
