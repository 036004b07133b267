"""PostgreSQL helpers every part that talks to PostgreSQL shares: the advisory-lock class, a driver
error on one line, a URL with its password hidden."""

from __future__ import annotations

import re

#: the first key of every rollout advisory lock (the second is the environment's hash, or a table's number)
LOCK_CLASS = 0x726F6C6C & 0x7FFFFFFF


def error_text(exc: BaseException) -> str:
    """A driver error on one line (libpq's messages span several), bounded."""
    return " ".join(str(exc).split())[:300]


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
