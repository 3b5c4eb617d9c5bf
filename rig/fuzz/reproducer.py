"""A generic-fuzz input as a qtest reproducer, and its replay.

The fuzzer, given one input with QTEST_LOG=1 and FUZZ_SERIALIZE_QTEST=1
(commands through the qtest protocol rather than straight calls), prints
QEMU's arguments and every qtest command it sends (the bridge set-up, the DMA data it fills in,
the input's accesses). Those commands piped into qemu-system-x86_64
-qtest stdio, with the same arguments, replay the input without the fuzzer:
the form QEMU's scripts/oss-fuzz/output_reproducer.py prints and bug reports
carry.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from rig.errors import ToolError
from rig.fuzz import sanitizers

_ARGS = re.compile(r"^Starting \S+ with Arguments: (.*)$", re.M)
_SENT = re.compile(r"\[R \+[0-9.]+\] ([^\n]*)")   # a command, at any point of a line


def make(fuzzer: Path, config: str, data: Path, out: Path) -> Path | None:
    """The reproducer of input `data` at `out`, or None when the fuzzer
    printed no commands for it."""
    res = subprocess.run([str(fuzzer), f"--fuzz-target=generic-fuzz-{config}", str(data)],
                         capture_output=True, text=True, errors="replace", timeout=300,
                         check=False, env={**sanitizers.env(), "QTEST_LOG": "1",
                              "FUZZ_SERIALIZE_QTEST": "1"})
    text = res.stdout + res.stderr
    m = _ARGS.search(text)
    commands = _SENT.findall(text)
    if m is None or not commands:
        return None
    out.write_text(render(qemu_args(m.group(1)), commands))
    return out


def qemu_args(fuzzer_args: str) -> list[str]:
    """QEMU's arguments under the fuzzer, for -qtest stdio instead."""
    words = shlex.split(fuzzer_args)
    keep: list[str] = []
    i = 0
    while i < len(words):
        if words[i] in ("-qtest", "-qtest-log") and i + 1 < len(words):
            i += 2
            continue
        keep.append(words[i])
        i += 1
    return keep


def render(args: list[str], commands: list[str]) -> str:
    body = "\n".join(commands)
    return (f"cat << EOF | qemu-system-x86_64 {shlex.join(args)} -qtest stdio\n"
            f"{body}\nEOF\n")


def parse(text: str) -> tuple[list[str], list[str]]:
    """A reproducer's QEMU arguments (without -qtest stdio) and its commands."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("cat << EOF | qemu-system-x86_64 "):
        raise ToolError("not a reproducer: its first line must be "
                        "`cat << EOF | qemu-system-x86_64 ARGS -qtest stdio`",
                        fix="regenerate it with `rig fuzz device --replay INPUT`")
    args = shlex.split(lines[0].removeprefix("cat << EOF | qemu-system-x86_64 "))
    if args[-2:] == ["-qtest", "stdio"]:
        args = args[:-2]
    end = lines.index("EOF") if "EOF" in lines else len(lines)
    return args, lines[1:end]


def replay(path: Path, qemu: Path, datadir: Path, timeout: float = 300) -> tuple[bool, str]:
    """Run a reproducer on `qemu`: (True, its output) when QEMU answered every
    command and stopped cleanly when asked, with no sanitizer report; (False,
    its output) otherwise. QEMU does not end when its qtest input does: once
    every command has its answer, it is asked to stop (SIGTERM)."""
    args, commands = parse(path.read_text())
    with tempfile.TemporaryDirectory(prefix="tphlab-replay-") as tmp:
        inp, out, err = (Path(tmp) / n for n in ("in", "out", "err"))
        inp.write_text("\n".join(commands) + "\n")
        with inp.open() as fin, out.open("w") as fout, err.open("w") as ferr:
            proc = subprocess.Popen([str(qemu), "-L", str(datadir), *args, "-qtest", "stdio"],
                                    stdin=fin, stdout=fout, stderr=ferr, env=sanitizers.env())
            answered = _wait_answers(proc, out, len(commands), timeout)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    text = stdout[-4000:] + stderr[-8000:]
    if not answered:
        text += f"\n(QEMU answered fewer than the {len(commands)} commands)"
    reported = any(m in stderr for m in sanitizers.SANITIZER_MARKS)
    return answered and not reported and proc.returncode in (0, -signal.SIGTERM), text


def _wait_answers(proc: subprocess.Popen[bytes], out: Path, count: int,
                  timeout: float) -> bool:
    """Whether QEMU wrote an answer to each of `count` commands before it
    exited or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answers = sum(1 for ln in out.read_text(errors="replace").splitlines()
                      if ln.startswith(("OK", "FAIL", "ERR")))
        if answers >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def check_replays(path: Path, qemu: Path, datadir: Path) -> bool:
    """Whether the reproducer reproduces (QEMU does not end cleanly)."""
    clean, _out = replay(path, qemu, datadir)
    return not clean
