"""Load a playbook file into a :class:`~rollout.playbook.model.Playbook`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rollout.playbook.model import Playbook
from rollout.playbook.templates import expand_templates
from rollout.util.errors import PlaybookError
from rollout.util.yamlfile import load_model


def load_playbook(path: Path | str, environ: Mapping[str, str] | None = None) -> Playbook:
    """Validate ``path`` (its metric templates expanded first); a problem raises
    :class:`PlaybookError` naming file, line and field path."""
    return load_model(Path(path), Playbook, PlaybookError, environ, expand=expand_templates)
