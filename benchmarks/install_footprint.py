"""What the product's own dependencies cost the tool's users: disk, install time, import time.

The product (the booking service, `rollout serve` and `rollout demo`) needs packages the tool's other
commands never import: aiohttp, UnleashClient, openfeature-sdk, mmh3, httptools, and what only they
pull in. Should they be an extra? This prints:

(a) the size on disk of those packages (their files as installed, from each distribution's RECORD),
    against everything `pip install rollout` brings;
(b) the time of a fresh virtualenv's install from a local wheelhouse (no network in the timing), with
    and without them (median of --runs);
(c) the time of a tool command (`rollout validate` of the shipped playbook) and of `rollout serve
    --help`, and which of those packages each one imports.

Usage: python benchmarks/install_footprint.py [--runs 3]
Run it from the repository's virtualenv (the one `pip install -e '.[test]'` made).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the packages only the product imports (rollout/booking, `rollout serve`)
PRODUCT_ONLY = ["aiohttp", "UnleashClient", "openfeature-sdk", "mmh3", "httptools"]


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def closure(roots: list[str]) -> set[str]:
    """The installed distributions ``roots`` need, themselves included (extras not followed)."""
    seen: set[str] = set()
    todo = [_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        seen.add(name)
        todo += [_name(r) for r in dist.requires or [] if "extra ==" not in r]
    return seen


def size_mb(names: set[str]) -> float:
    total = 0
    for name in names:
        dist = md.distribution(name)
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def timed(args: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - started


def imported(args: list[str], names: list[str]) -> tuple[float, list[str]]:
    """Wall time of a command under ``-X importtime``, and which of ``names`` it imported."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    modules = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    top = {"UnleashClient": "UnleashClient", "openfeature-sdk": "openfeature"}
    return elapsed, [n for n in names if top.get(n, n) in modules]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    own = [r for r in md.requires("rollout") or [] if "extra ==" not in r]
    everything = closure(own)
    tool = closure([r for r in own if _name(r) not in {p.lower() for p in PRODUCT_ONLY}])
    product = everything - tool
    print(f"(a) on disk: everything {size_mb(everything):.1f} MB in {len(everything)} distributions;")
    print(f"    the product's own {size_mb(product):.1f} MB in {len(product)}: {', '.join(sorted(product))}")

    with tempfile.TemporaryDirectory(prefix="rollout-footprint-") as tmp:
        house = Path(tmp) / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house), str(REPO)], check=True, capture_output=True
        )
        wheel = next(house.glob("rollout-*.whl"))
        tool_reqs = [r.split(";")[0] for r in own if _name(r) in tool]
        times: dict[str, list[float]] = {"with": [], "without": []}
        for i in range(runs):
            for label in ("with", "without"):
                venv = Path(tmp) / f"venv-{label}-{i}"
                subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
                pip = [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-index",
                    "--find-links",
                    str(house),
                ]
                if label == "with":
                    times[label].append(timed([*pip, str(wheel)]))
                else:
                    times[label].append(timed([*pip, *tool_reqs]) + timed([*pip, "--no-deps", str(wheel)]))
        with_s, without_s = statistics.median(times["with"]), statistics.median(times["without"])
        print(
            f"(b) fresh install from a local wheelhouse (median of {runs}): {with_s:.1f} s with them, "
            f"{without_s:.1f} s without (+{with_s - without_s:.1f} s)"
        )

    playbook = str(REPO / "playbooks" / "whatsapp.yaml")
    for label, args in (
        ("rollout validate (a tool command)", ["-m", "rollout", "validate", playbook]),
        ("rollout serve --help", ["-m", "rollout", "serve", "--help"]),
        ("import of the service (what `rollout serve` loads)", ["-c", "import rollout.booking.service.app"]),
    ):
        samples = [imported(args, PRODUCT_ONLY) for _ in range(max(runs, 3))]
        names = samples[0][1]
        median = statistics.median(s[0] for s in samples)
        print(f"(c) {label}: {median * 1000:.0f} ms; imports of them: {', '.join(names) or 'none'}")


if __name__ == "__main__":
    main()
