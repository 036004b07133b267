"""The embedded target in one folder: outside it, the tool does not speak the product's vocabulary.

``grep -ri whatsapp`` over ``rollout/`` finds the word only in the places that are the product, run
it, or are its plan; each exemption below says why. Anything else that names it (a metric, a flag
variable, an API path, a report sentence) belongs in ``rollout/targets/embedded/``.

Exempt, and why:

- ``rollout/targets/embedded/``: the target's folder, the one place the tool knows the service
  (its client, checks, scenarios, load, provider, report section);
- ``rollout/booking/``: the product itself (it imports nothing of the tool);
- ``rollout/demo/``: ``rollout demo`` runs the product, and ``rollout/demo/shipped/`` holds the
  shipped playbook and environments: data files that are the product's own plan;
- ``rollout/cli/serve.py``: ``rollout serve`` and ``rollout sandbox`` start the product and its sandbox,
  and ``rollout load`` sends it bookings;
- the shipped playbook's file name, ``playbooks/whatsapp.yaml`` (``--playbook``'s default, examples
  in docstrings): the name of a shipped data file, not vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import rollout

PACKAGE = Path(rollout.__file__).parent
WORD = "whatsapp"
EXEMPT_FOLDERS = ("targets/embedded", "booking", "demo")
EXEMPT_FILES = ("cli/serve.py",)
SHIPPED_PLAYBOOK = "playbooks/whatsapp.yaml"


def _files() -> list[Path]:
    return [p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]


def _mentions(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8", errors="replace").lower().replace(SHIPPED_PLAYBOOK, "")
    return [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if WORD in line
    ]


def _exempt(path: Path) -> bool:
    relative = path.relative_to(PACKAGE).as_posix()
    return relative in EXEMPT_FILES or any(relative.startswith(f"{folder}/") for folder in EXEMPT_FOLDERS)


def test_only_the_embedded_target_the_product_and_its_runners_say_whatsapp():
    found = [line for path in _files() if not _exempt(path) for line in _mentions(path)]
    assert found == [], "the product's vocabulary outside rollout/targets/embedded:\n" + "\n".join(found)


def test_the_search_sees_the_product_where_it_is():
    # the exemptions name places that exist and do speak of it: a moved folder or a search that reads
    # nothing would otherwise pass the test above
    for folder in EXEMPT_FOLDERS:
        assert any(_mentions(p) for p in (PACKAGE / folder).rglob("*") if p.is_file()), folder
    for name in EXEMPT_FILES:
        assert _mentions(PACKAGE / name), name
    assert any(_mentions(p) for p in (PACKAGE / "targets" / "embedded").glob("*.py"))
