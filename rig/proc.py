"""Running host commands with a log file, a timeout and line callbacks."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rig.errors import BuildError, RigError, ToolError
from rig.tools import install_hint

LineHook = Callable[[str], None]


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    log: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    on_line: LineHook | None = None,
    timeout: float = 3600.0,
    error: type[RigError] = BuildError,
    what: str | None = None,
    fix: str | None = None,
) -> None:
    """Run argv, appending its output to `log`; raise `error` on failure.

    The error names the command, the log and its last lines, so a failure
    never loses its output.
    """
    args = [str(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    tail: deque[str] = deque(maxlen=25)
    with log.open("a", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {shlex.join(args)}\n")
        out.flush()
        try:
            proc = subprocess.Popen(
                args, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                errors="replace",
            )
        except FileNotFoundError as exc:
            raise ToolError(f"{args[0]} is not installed", fix=install_hint(args[0])) from exc
        assert proc.stdout is not None
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                out.write(line)
                tail.append(line.rstrip("\n"))
                if on_line:
                    on_line(line.rstrip("\n"))
            rc = proc.wait()
        finally:
            timed_out = not timer.is_alive()
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if timed_out:
        raise error(f"{what or args[0]} timed out after {timeout:.0f} s", fix=fix, log=str(log))
    if rc != 0:
        last = "\n".join(f"    | {t}" for t in tail)
        raise error(f"{what or shlex.join(args)} failed (exit {rc}); last lines:\n{last}",
                    fix=fix, log=str(log))


def capture(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
            timeout: float = 60.0, check: bool = True) -> str:
    """Run a short command and return its stdout (stderr folded in on error)."""
    args = [str(a) for a in argv]
    try:
        res = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ToolError(f"{args[0]} is not installed", fix=install_hint(args[0])) from exc
    if check and res.returncode != 0:
        raise RigError(f"{shlex.join(args)} failed (exit {res.returncode}): "
                       f"{(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout
