from __future__ import annotations

import io

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
