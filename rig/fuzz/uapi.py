"""`rig fuzz uapi`: the uAPI and the test importer under tphctl's fuzz step,
in a guest of its own (rig.scenarios.uapi_fuzz says what fails it)."""

from __future__ import annotations

from pathlib import Path

from rig.builder.artifacts import Artifacts
from rig.execution import runner
from rig.guest.kvm import Accel
from rig.results.run import Run
from rig.scenarios import matrix
from rig.scenarios.uapi_fuzz import UapiFuzz

# The configuration users deploy: VFIO with an IOMMU, every device in an
# IOMMU group of its own, and a second device whose dma-bufs get passed around
DEFAULT_TOPOLOGY = "iommu-rootports"
# Seconds per 1000 operations the guest command may take under TCG and a
# debug kernel (measured about 4 s per 1000 with KASAN and lockdep), doubled
SECONDS_PER_1000 = 10.0


def case(topology: str, seed: int, ops: int, threads: int) -> UapiFuzz:
    return UapiFuzz(f"fuzz-uapi-seed{seed}", matrix.topology(topology), seed, ops, threads)


def run(arts: Artifacts, accel: Accel, fuzz: UapiFuzz, rundir: Path) -> Run:
    """The fuzz as the one scenario of a guest of its own, booted fresh."""
    timeout = 120.0 + SECONDS_PER_1000 * fuzz.ops / 1000
    return runner.run_matrix([fuzz], arts, accel, rundir,
                             opts=runner.Options(case_timeout=timeout, pack=False))
