"""Files a user names on the command line (``--out``, ``--junit``): checked first, written whole.

A bad path is one :class:`~rollout.util.errors.ConfigError` naming the option (exit 2). Nothing is
half-written: the text goes to a temporary file beside the target, is fsynced, then renamed over
it. Folders are never created for the user, and a device or folder is never replaced.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rollout.util.errors import ConfigError


def check_output_path(path: Path | str, option: str) -> Path:
    """Refuse an output path that cannot work; return it as a :class:`Path`."""
    raw = str(path)
    if not raw.strip():
        raise ConfigError(f"{option}: the path is empty")
    target = Path(raw)
    try:
        if target.exists() and not target.is_file():
            raise ConfigError(f"{option}: {target} exists and is not a regular file")
        folder = target.parent
        if not folder.is_dir():
            raise ConfigError(f"{option}: folder {folder} does not exist (rollout does not create it)")
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"{option}: folder {folder} is not writable")
    except OSError as exc:  # a name too long for the file system, a loop of links
        raise ConfigError(f"{option}: cannot write {target} ({exc.strerror or type(exc).__name__})") from exc
    return target


def write_output(path: Path | str, text: str, option: str) -> Path:
    """Write ``text`` to ``path`` atomically after :func:`check_output_path`; raise ConfigError on failure."""
    target = check_output_path(path, option)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rollout-", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise ConfigError(f"{option}: cannot write {target} ({exc.strerror or type(exc).__name__})") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return target
