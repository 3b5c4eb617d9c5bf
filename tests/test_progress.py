from __future__ import annotations

import io
import re
import threading
import time

import pytest

from rig.progress import Progress, kbuild_step, ninja_step


def test_ninja_step_parses_counts() -> None:
    assert ninja_step("[17/2541] Compiling C object foo.o") == (17, 2541)
    assert ninja_step("ninja: no work to do.") is None


def test_kbuild_step_counts_compile_lines_only() -> None:
    assert kbuild_step("  CC      drivers/pci/tph.o")
    assert kbuild_step("  LD [M]  drivers/misc/tph_importer.ko")
    assert not kbuild_step("make[1]: Entering directory '/x'")
    assert not kbuild_step("drivers/pci/tph.c:12: warning: unused")


def test_progress_prints_stage_steps_and_summary() -> None:
    out = io.StringIO()
    p = Progress(out, interval=0.0)
    p.begin("qemu: ninja")
    p.step(5, 10)
    p.done("10 steps")
    text = out.getvalue()
    assert "qemu: ninja" in text
    assert "step 5/10  50%" in text
    assert "qemu: ninja: 10 steps (" in text


class _OneWriterOnly(io.StringIO):
    """A stream that notes when two threads are inside write/flush at once."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty
        self.inside = 0
        self.overlaps = 0

    def isatty(self) -> bool:
        return self._tty

    def write(self, s: str) -> int:
        self.inside += 1
        if self.inside > 1:
            self.overlaps += 1
        time.sleep(0.0002)   # widen the window a missing lock would leave
        n = super().write(s)
        self.inside -= 1
        return n


@pytest.mark.parametrize("tty", [False, True])
def test_progress_from_threads_never_interleaves(tty: bool) -> None:
    out = _OneWriterOnly(tty)
    p = Progress(out, interval=0.0)
    p.begin("matrix")

    def guest(n: int) -> None:
        for i in range(40):
            p.note(f"guest {n}: line {i}")
            p.step(i, 40, f"guest {n}")

    threads = [threading.Thread(target=guest, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.done("all")
    assert out.overlaps == 0
    notes = [ln for ln in out.getvalue().replace("\r\033[K", "\n").splitlines()
             if "line" in ln]
    assert len(notes) == 6 * 40
    assert all(re.fullmatch(r"  guest \d: line \d+", ln) for ln in notes)
