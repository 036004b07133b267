"""``rollout ARGS`` run inside the test's own process, for the many short commands the tests make.

A ``python -m rollout`` spends about 0.6 s of CPU on imports and on building the playbook's models
before it does anything, and the suite starts a few hundred of them on two cores. :func:`run` calls
the same entry point (:func:`rollout.cli.main.main`: the same error boundary, the same exit codes)
with the environment, working folder and standard streams a subprocess would have (no terminal,
stdin at its end), and gives back what ``subprocess.run(..., capture_output=True, text=True)``
gives.

What only a process can show stays a process, here or in the tests that need it:

- a command meant to crash (``ROLLOUT_CRASH_AT``: ``os._exit``) and one that must find plugins on
  another ``PYTHONPATH`` (the registry reads installed plugins once per process) run as
  ``python -m rollout`` through this same function;
- a command that meets a writer lock this process holds (the test took it, or runs the engine in a
  thread) is given ``process=True``: the lock is keyed on the process id, and a command in the same
  process would take it as its own;
- a command that is interrupted, killed, timed or followed while it runs is started with
  :class:`subprocess.Popen` by its test, and the entry points themselves (``python -m rollout``,
  the installed ``rollout`` script, the wheel) keep tests of their own.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from rollout.engine.crashpoints import VARIABLE as CRASH_AT

#: how a test starts ``rollout`` as a process of its own
COMMAND = (sys.executable, "-m", "rollout")

# the streams, the environment and the folder are the process's: one command at a time
_ONE_AT_A_TIME = threading.Lock()


def needs_a_process(environ: Mapping[str, str]) -> str | None:
    """Why a command with ``environ`` cannot run in this process (None: it can)."""
    if environ.get(CRASH_AT):
        return f"{CRASH_AT} ends the process"
    if environ.get("PYTHONPATH", "") != os.environ.get("PYTHONPATH", ""):
        return "plugins are read from PYTHONPATH once per process"
    return None


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float | None = None,
    input: str | None = None,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``rollout *argv`` with ``env`` (default: this process's) in ``cwd``, as a finished process:
    its exit code and what it wrote on stdout and stderr. ``process``: run it as ``python -m
    rollout`` (see the module's list). ``timeout`` bounds a command run as a process (an in-process
    one is bounded by the test's own timeout)."""
    environ = dict(os.environ if env is None else env)
    command = [*COMMAND, *argv]
    if process or needs_a_process(environ):
        return subprocess.run(
            command, capture_output=True, text=True, env=environ, cwd=cwd, timeout=timeout, input=input or ""
        )
    # text streams over bytes, in the encoding a child would get, as a pipe is
    encoding = environ.get("PYTHONIOENCODING", "").split(":")[0] or "utf-8"
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors="replace") for _ in range(2))
    with _ONE_AT_A_TIME, _as_a_process(environ, cwd, io.StringIO(input or ""), out, err):
        code = _exit_code(list(argv), err)
    return subprocess.CompletedProcess(command, code, _text(out), _text(err))


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    raw = stream.buffer
    assert isinstance(raw, io.BytesIO)
    return raw.getvalue().decode(stream.encoding, errors="replace").replace("\r\n", "\n")


def _exit_code(argv: list[str], err: io.TextIOWrapper) -> int:
    from rollout.cli.main import main

    try:
        main(argv)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        err.write(f"{exc.code}\n")  # what the interpreter does with sys.exit("text")
        return 1
    return 0


@contextlib.contextmanager
def _as_a_process(
    environ: dict[str, str], cwd: str | Path | None, stdin: io.StringIO, out: io.TextIOWrapper, err: io.TextIOWrapper
) -> Iterator[None]:
    saved_environ, saved_cwd = dict(os.environ), os.getcwd()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    os.environ.clear()
    os.environ.update(environ)
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = stdin, out, err
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
