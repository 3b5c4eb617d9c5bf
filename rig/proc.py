"""Running host commands with a log file, a timeout and line callbacks.

Every command runs in a process group of its own: on a timeout (or an
interrupt) the whole group is killed, so the children of make or ninja
cannot keep the output pipe open, and the caller gets the stage's error
(a RigError with the fix), never subprocess.TimeoutExpired.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rig.errors import BuildError, RigError, ToolError
from rig.tools import install_hint

LineHook = Callable[[str], None]

# How long to wait for a killed process group's leader to be reaped.
REAP_TIMEOUT = 10.0


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to process group `pgid`; a group that is gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_unreaped(proc: subprocess.Popen[str]) -> None:
    """Kill proc's whole group unless proc was reaped (until then its pid, the
    group's id, cannot be reused), then reap it within REAP_TIMEOUT."""
    if proc.returncode is None:
        kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_TIMEOUT)


def _timeout_fix(fix: str | None, what: str) -> str:
    return fix or f"see why {what} hangs (its log), or allow it more time"


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
    never loses its output. At `timeout` s the command's whole process
    group is killed and `error` raised.
    """
    args = [str(a) for a in argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    tail: deque[str] = deque(maxlen=25)
    timed_out = threading.Event()
    with log.open("a", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {shlex.join(args)}\n")
        out.flush()
        try:
            proc = subprocess.Popen(
                args, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                errors="replace", process_group=0,
            )
        except FileNotFoundError as exc:
            raise ToolError(f"{args[0]} is not installed", fix=install_hint(args[0])) from exc
        assert proc.stdout is not None

        def expire() -> None:
            timed_out.set()
            if proc.returncode is None:
                kill_group(proc.pid)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            for line in proc.stdout:
                out.write(line)
                tail.append(line.rstrip("\n"))
                if on_line:
                    on_line(line.rstrip("\n"))
            # Output is at its end; the timer still bounds a child that closed it early.
            rc = proc.wait()
        finally:
            timer.cancel()
            _kill_unreaped(proc)
            proc.stdout.close()
    if timed_out.is_set():
        name = what or args[0]
        raise error(f"{name} timed out after {timeout:.0f} s (its process group was killed)",
                    fix=_timeout_fix(fix, name), log=str(log))
    if rc != 0:
        last = "\n".join(f"    | {t}" for t in tail)
        raise error(f"{what or shlex.join(args)} failed (exit {rc}); last lines:\n{last}",
                    fix=fix, log=str(log))


def run_captured(argv: Sequence[str | os.PathLike[str]], *, timeout: float,
                 cwd: Path | None = None, env: Mapping[str, str] | None = None,
                 input: str | None = None, error: type[RigError] = RigError,
                 what: str | None = None, fix: str | None = None,
                 ) -> subprocess.CompletedProcess[str]:
    """subprocess.run(capture_output=True, text=True), bounded: the command runs in
    its own process group, killed whole at `timeout` s, and `error` is raised.

    Its exit status is the caller's to judge (no check).
    """
    args = [str(a) for a in argv]
    try:
        proc = subprocess.Popen(
            args, cwd=cwd, env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            process_group=0)
    except FileNotFoundError as exc:
        raise ToolError(f"{args[0]} is not installed", fix=install_hint(args[0])) from exc
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_unreaped(proc)
        name = what or shlex.join(args)
        raise error(f"{name} timed out after {timeout:.0f} s (its process group was "
                    f"killed)", fix=_timeout_fix(fix, name)) from None
    except BaseException:
        _kill_unreaped(proc)
        raise
    finally:
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def capture(argv: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
            timeout: float = 60.0, check: bool = True,
            error: type[RigError] = RigError) -> str:
    """Run a short command and return its stdout (stderr folded in on error)."""
    res = run_captured(argv, cwd=cwd, timeout=timeout, error=error)
    if check and res.returncode != 0:
        raise error(f"{shlex.join(res.args)} failed (exit {res.returncode}): "
                    f"{(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout
