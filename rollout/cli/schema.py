"""``rollout schema``: the JSON Schema of the playbook (or environment) file, for editors."""

from __future__ import annotations

import json

import click

from rollout.cli.main import cli


@cli.command("schema")
@click.argument("kind", type=click.Choice(["playbook", "environment"]), default="playbook")
def schema_cmd(kind: str) -> None:
    """Print the JSON Schema of a playbook (or an environment) file.

    Save it beside your files and point your editor at it: a YAML file whose first line is
    `# yaml-language-server: $schema=playbook.schema.json` is then checked as you type (VS Code's YAML
    extension, and any editor with yaml-language-server)."""
    from rollout.playbook.schema import environment_schema, playbook_schema

    click.echo(json.dumps(playbook_schema() if kind == "playbook" else environment_schema(), indent=2))
