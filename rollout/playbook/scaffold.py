"""A first playbook and its environments for someone's own service, as YAML text (``rollout init``).

Pure: it takes what ``init`` asked and found (:class:`Scaffold`) and returns the files' text, with
comments on every line a person should review. The text is written by hand rather than dumped, for
those comments; ``rollout init`` validates it with the real loader before anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

#: the first line of every generated file: VS Code's YAML extension (yaml-language-server) checks the
#: file against the schema written beside it as it is typed
MODELINE = "# yaml-language-server: $schema={schema}"
PLAYBOOK_SCHEMA = "playbook.schema.json"
ENVIRONMENT_SCHEMA = "environment.schema.json"


@dataclass
class Proposal:
    """One gate metric proposed from what a metrics source holds."""

    metric: str
    kind: str  # rate | latency | compare
    query: str
    samples: str
    target: str
    alert: str
    #: what it was built from, said in a comment above it
    source: str
    #: what a person should check, said in a REVIEW comment
    review: str
    cohorts: tuple[str, str] | None = None
    #: what the query returned when ``init`` ran it once (set by the caller)
    measured: str = "not run"


@dataclass
class Flag:
    """The flag backend and its settings, as ``init`` was told them."""

    backend: str = "envfile"
    variable: str = "FEATURE_ENABLED"
    percent_variable: str = "FEATURE_PERCENT"
    url: str | None = None
    token_env: str | None = None
    database_env: str | None = None
    command: list[str] = field(default_factory=list)
    feature: str | None = None


@dataclass
class Scaffold:
    name: str
    service_url: str
    environments: list[str]
    flag: Flag
    health_path: str
    health_note: str
    prometheus_url: str | None
    proposals: list[Proposal]
    #: why there are no proposals, when there are none (a placeholder gate is written instead)
    no_proposals: str = ""
    env_file: str | None = None


def _q(value: Any) -> str:
    """A YAML scalar for ``value``: JSON's quoting is valid YAML and keeps PromQL's braces and quotes."""
    return json.dumps(value)


def _comment(text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}# {line}".rstrip() for line in text.splitlines()]


def playbook_text(s: Scaffold) -> str:
    lines = [
        MODELINE.format(schema=PLAYBOOK_SCHEMA),
        f"# A first playbook for {s.service_url}, written by `rollout init`.",
        "# Every line marked REVIEW is a guess from what init could see: check it before the first advance.",
        "# `rollout validate` checks this file; `rollout plan --env ENV` shows what it would do.",
        "version: 1",
        f"name: {_q(s.name)}",
        "target:",
        "  kind: http",
        *_comment(s.health_note, 2),
        f"  health: {{url: {_q(s.health_path)}, expect: {{status: 200}}}}",
        *_flag_lines(s.flag),
    ]
    lines += _provider_lines(s)
    lines += _gate_lines(s)
    lines.append("watch: {gate: guardrails, interval: 1m}")
    lines.append("phases:")
    for index, env in enumerate(s.environments):
        last = index == len(s.environments) - 1
        lines += [f"  - name: {env}", f"    environment: {env}", "    steps:"]
        if last:
            lines += [
                "      - kind: configure",
                "        name: deploy with the flag off",
                f'        set: {{{s.flag.variable}: "false", {s.flag.percent_variable}: "0"}}',
                "      - {kind: health, name: healthy}",
                "      - kind: ramp",
                "        name: gradual rollout",
                "        percentages: [10, 25, 50, 100]",
                "        # REVIEW: how long each percentage holds, and how long a hold may wait before a person decides",
                "        hold: 30m",
                "        gate: guardrails",
                "        max_hold: 2h",
                "        on_hold_timeout: approve",
            ]
        else:
            lines += [
                "      - kind: configure",
                "        name: the flag on for everyone here",
                f'        set: {{{s.flag.variable}: "true", {s.flag.percent_variable}: "100"}}',
                "      - {kind: health, name: healthy}",
                "      - {kind: gate, name: the numbers hold, gate: guardrails}",
            ]
    return "\n".join(lines) + "\n"


def _flag_lines(flag: Flag) -> list[str]:
    head = [
        "# The flag: what configure steps set and a ramp moves; a flag-off writes it first.",
        "flag:",
        f"  backend: {flag.backend}",
        f"  variable: {flag.variable}",
        f"  percent_variable: {flag.percent_variable}",
    ]
    if flag.backend == "envfile":
        return [
            *head,
            "  # the environment's env_file is written (only these variables change); the service re-reads it",
        ]
    if flag.backend == "http":
        lines = [
            *head,
            f"  url: {_q(flag.url)}",
            "  method: PUT",
            f"  token: ${{{flag.token_env or 'FLAG_ADMIN_TOKEN'}}}",
            "  # REVIEW: the body your endpoint expects ($enabled -> true/false, $percent -> 0-100)",
            '  body: {"enabled": $enabled, "percent": $percent}',
            "  # REVIEW: add `read: {url, enabled, percent}` (or target.flag_state) so a flag-off is confirmed:",
            "  # without either, every flag-off is reported unconfirmed",
        ]
        return lines
    if flag.backend == "command":
        return [
            *head,
            "  # REVIEW: the command that sets the flag ({enabled} -> true/false, {percent} -> 0-100)",
            f"  command: {json.dumps(flag.command)}",
        ]
    if flag.backend == "postgres":
        return [*head, f"  database: ${{{flag.database_env or 'FLAG_DB_URL'}}}"]
    if flag.backend != "unleash":
        return [*head, f"  # REVIEW: the {flag.backend} backend's own keys (`rollout schema` lists them)"]
    return [
        *head,
        f"  url: {_q(flag.url)}",
        f"  token: ${{{flag.token_env or 'UNLEASH_ADMIN_TOKEN'}}}",
        f"  feature: {_q(flag.feature)}",
    ]


def _provider_lines(s: Scaffold) -> list[str]:
    if s.proposals and s.prometheus_url:
        return [
            "providers:",
            f"  prom: {{kind: prometheus, url: {_q(s.prometheus_url)}}}",
        ]
    return [
        "providers:",
        "  # REVIEW: no metrics were found (see the gate below); point this at where your numbers are",
        "  stats: {kind: http}",
    ]


def _gate_lines(s: Scaffold) -> list[str]:
    lines = [
        "gates:",
        "  guardrails:",
        "    # REVIEW: how much traffic a verdict needs, and over which window",
        "    window: 5m",
        "    min_samples: 50",
        "    metrics:",
    ]
    if not s.proposals:
        return [
            *lines,
            *_comment(f"REVIEW: a placeholder. {s.no_proposals}", 6),
            "      - metric: error_rate",
            "        provider: stats",
            "        kind: rate",
            '        query: {url: "/stats?window=$window", value: "errors.rate", samples: "errors.requests"}',
            "        target: 1%",
            "        alert: 5%",
        ]
    for p in s.proposals:
        lines += _comment(f"{p.source}\nran once at init: {p.measured}\nREVIEW: {p.review}", 6)
        lines += [
            f"      - metric: {p.metric}",
            "        provider: prom",
            f"        kind: {p.kind}",
            f"        query: {_q(p.query)}",
            f"        samples: {_q(p.samples)}",
        ]
        if p.cohorts:
            lines.append(f"        cohorts: {{treatment: {_q(p.cohorts[0])}, control: {_q(p.cohorts[1])}}}")
        lines += [f"        target: {p.target}", f"        alert: {p.alert}"]
    return lines


def environment_text(s: Scaffold, env: str) -> str:
    lines = [
        MODELINE.format(schema=ENVIRONMENT_SCHEMA),
        f"# The {env} environment, written by `rollout init`. No secret here: a secret is a ${{REFERENCE}},",
        "# read from the process environment or --secrets-file when it is used.",
        f"name: {env}",
    ]
    if len(s.environments) > 1 and env != s.environments[-1]:
        lines.append(f"# REVIEW: {env}'s own address (init was given one service URL for every environment)")
    lines.append(f"service_url: {_q(s.service_url)}")
    if s.flag.backend == "envfile":
        lines += [
            "# REVIEW: the env file your service reads and re-reads (the envfile flag backend writes it)",
            f"env_file: {_q(s.env_file or f'.rollout/{env}/service.env')}",
        ]
    lines.append("variables: {}")
    return "\n".join(lines) + "\n"
