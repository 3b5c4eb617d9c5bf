"""`rig bench`: how fast the bench answers, each figure against its target."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rig import hostfacts, proc
from rig.builder import context, kernel_build, series
from rig.builder.artifacts import Artifacts
from rig.builder.cache import input_key
from rig.errors import RigError
from rig.execution import runner
from rig.guest import bringup, devices, kvm, snapshot
from rig.guest.topology import Topology
from rig.guest.vm import VM
from rig.paths import cache_root, kernel_series_dir, repo_root, run_dir
from rig.progress import Progress
from rig.qdev import device_figures
from rig.scenarios import matrix


@dataclass(frozen=True)
class Figure:
    name: str
    median: float
    low: float
    high: float
    runs: int
    target: float | None       # the median must stay below it
    unit: str = "s"

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median < self.target

    def line(self, width: int = 28) -> str:
        """One row of the table; width: of the name column."""
        mark = "" if self.met is None else ("met" if self.met else "NOT MET")
        tgt = f"< {self.target:g}{self.unit}" if self.target is not None else ""
        spread = f"(min {self.low:.3f}, max {self.high:.3f}, n={self.runs})"
        return (f"{self.name:{width}} {self.median:9.3f}{self.unit:5} {spread:36}  {tgt:10} "
                f"{mark}").rstrip()


def figure(name: str, samples: list[float], target: float | None, unit: str = "s") -> Figure:
    return Figure(name, statistics.median(samples), min(samples), max(samples), len(samples),
                  target, unit)


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cold_builds(progress: Progress) -> list[Figure]:
    """Each component built from nothing in a scratch cache (downloads reused)."""
    with tempfile.TemporaryDirectory(prefix="tphlab-cold-") as tmp:
        root = Path(tmp) / "tphlab"
        root.mkdir()
        (root / "downloads").symlink_to(cache_root() / "downloads")
        progress.note(f"cold build in {root} (about 8 minutes on 2 cores)")
        out = proc.run_captured([sys.executable, "-m", "rig", "build", "all", "--json"],
                                timeout=7200, env={"XDG_CACHE_HOME": tmp},
                                what="the cold build")
        if out.returncode != 0:
            raise RigError(f"the cold build failed: {out.stderr[-2000:]}")
        comps = json.loads(out.stdout)["components"]
    return [figure(f"cold build: {name}", [float(c["seconds"])], None)
            for name, c in comps.items()]


# Edit to verdict: the loop of a kernel developer with their own tree.
EDIT_FILE = "drivers/vfio/pci/vfio_pci_dmabuf.c"
EDIT_CASE = "no-tph"


def _rig(*args: str, timeout: float = 5400) -> subprocess.CompletedProcess[str]:
    return proc.run_captured([sys.executable, "-m", "rig", *args], timeout=timeout,
                             what=f"rig {args[0]}")


def runs_at_once(progress: Progress, n: int = 3) -> list[Figure]:
    """The whole matrix as `n` `rig run` started together, against one alone.

    They share the machine's vCPU budget (guest/budget.py), so the ratio
    shows what waiting for slots costs; every run must still pass.
    """
    argv = [sys.executable, "-m", "rig", "run", "-K", matrix.SELFTESTS]
    progress.note("one rig run alone")
    t = time.monotonic()
    alone = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600)
    one = time.monotonic() - t
    progress.note(f"{n} rig runs at once")
    t = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    outs = [p.communicate(timeout=3600) for p in procs]
    together = time.monotonic() - t
    failed = [i for i, p in enumerate(procs) if p.returncode != 0]
    if alone.returncode != 0 or failed:
        err = alone.stderr if alone.returncode != 0 else outs[failed[0]][1]
        raise RigError(f"{n} runs at once: a run failed: {err[-2000:]}")
    return [figure(f"{n} runs at once", [together], None),
            figure(f"{n} runs at once / one run", [together / one], None, "x")]


def user_kernel_tree(progress: Progress) -> Path:
    """A `rig src kernel` tree kept in the cache, one per version of the series:
    the tree a developer of the series has, for the figures and the tests
    that need one (they share its build directory)."""
    key = input_key({"series": context.series_key(series.series_files(kernel_series_dir()))})
    tree = (cache_root() / "bench" / f"linux-{key[:12]}").resolve()
    if not (tree / ".git").is_dir():
        progress.note(f"making a user kernel tree in {tree}")
        shutil.rmtree(tree, ignore_errors=True)
        made = _rig("src", "kernel", str(tree))
        if made.returncode != 0:
            raise RigError(f"rig src kernel {tree} failed: {made.stderr[-2000:]}")
    return tree


def edit_to_verdict(progress: Progress, runs: int, target: float | None) -> list[Figure]:
    """One uncommitted one-line change in a user kernel tree's vfio-pci file, then
    `rig run -k` of one scenario, as the whole command a user runs.

    The tree (a `rig src kernel` tree) is kept in the cache; the run that
    first builds it is the cold figure.
    """
    tree = user_kernel_tree(progress)
    cold = not kernel_build.build_dir(tree).is_dir()
    path = tree / EDIT_FILE
    original = path.read_text()
    samples: list[float] = []
    first: float | None = None
    try:
        for i in range(runs + (1 if cold else 0)):
            path.write_text(original + f"/* tphlab bench: edit {time.time_ns()} */\n")
            progress.note(f"edit to verdict {i + 1}: rig run -k {EDIT_CASE} --kernel-tree")
            t = time.monotonic()
            res = _rig("run", "-k", EDIT_CASE, "--kernel-tree", str(tree))
            secs = time.monotonic() - t
            if res.returncode != 0:
                raise RigError(f"edit to verdict: rig run failed ({res.returncode}): "
                               f"{res.stderr[-2000:]}")
            if cold and first is None:
                first = secs
            else:
                samples.append(secs)
    finally:
        path.write_text(original)
    figs = [figure("edit to verdict", samples, target)]
    if first is not None:
        figs.append(figure("edit to verdict, cold tree", [first], None))
    return figs


def edit_to_full_verdict(progress: Progress, boot: float,
                         target: float | None) -> list[Figure]:
    """One uncommitted one-line change in the user kernel tree's vfio-pci file,
    then `rig run --kernel-tree` of the whole matrix (without the kernel's
    selftests, as the matrix figures), as one command; and its ratio to one
    boot to SSH of this bench (what an edit costs, counted in boots)."""
    tree = user_kernel_tree(progress)
    path = tree / EDIT_FILE
    original = path.read_text()
    try:
        path.write_text(original + f"/* tphlab bench: full {time.time_ns()} */\n")
        progress.note("edit to full verdict: rig run --kernel-tree (the whole matrix)")
        t = time.monotonic()
        res = _rig("run", "--kernel-tree", str(tree), "-K", matrix.SELFTESTS)
        secs = time.monotonic() - t
    finally:
        path.write_text(original)
    if res.returncode != 0:
        raise RigError(f"edit to full verdict: rig run failed ({res.returncode}): "
                       f"{res.stderr[-2000:]}")
    return [figure("edit to full verdict", [secs], None),
            figure("edit to full verdict / boot to SSH", [secs / boot], target, "x")]


def targets(accel: str) -> dict[str, float]:
    with (repo_root() / "bench" / "targets.toml").open("rb") as f:
        data = tomllib.load(f)
    return {k: float(v) for k, v in data.get(accel, {}).items()}


def measure(arts: Artifacts, accel: kvm.Accel, runs: int, cold: bool,
            progress: Progress) -> tuple[kvm.Accel, list[Figure]]:
    """Every figure, `runs` times each; the accelerator they ran under (auto may fall back)."""
    tg = targets(accel.name)
    figs: list[Figure] = []

    noop = []
    for _ in range(runs):
        # The whole command, as a user runs it: interpreter start-up included.
        t = time.monotonic()
        res = proc.run_captured([sys.executable, "-m", "rig", "build", "all"], timeout=600,
                                what="the no-op build")
        if res.returncode != 0:
            raise RigError(f"the no-op build failed ({res.returncode}): {res.stderr[-2000:]}")
        noop.append(time.monotonic() - t)
    figs.append(figure("no-op build", noop, tg.get("noop_build")))
    if cold:
        figs += cold_builds(progress)

    boots, rss = [], []
    for i in range(runs):
        progress.note(f"boot {i + 1}/{runs}")
        vm, used = bringup.start_vm(arts, Topology(), run_dir("bench") / f"boot{i}",
                                   accel)
        if used != accel:
            progress.note(f"accelerator: {used.name} ({used.reason})")
            accel = used
        boots.append(vm.boot_seconds)
        try:
            assert vm.proc is not None
            devices.bind_devices(vm)
            rss.append(peak_rss_mib(vm.proc.pid))
        finally:
            vm.stop()
    figs.append(figure("boot to SSH", boots, tg.get("boot_to_ssh")))
    figs.append(figure("QEMU peak RSS", rss, tg.get("qemu_rss_mib"), "MiB"))
    restores = restore_ready(arts, accel, runs, progress)
    figs.append(figure("guest ready (restore)", restores, tg.get("restore_ready")))
    figs.append(figure("boot / restore", [statistics.median(boots) /
                                          statistics.median(restores)], None, "x"))

    progress.note("device: DMA into the recording BAR and into RAM")
    rates = [device_figures.dma_rates(arts.qemu, arts.datadir) for _ in range(runs)]
    figs.append(figure("DMA into recording BAR", [r.bar_mb_s for r in rates], None, "MB/s"))
    figs.append(figure("DMA into RAM", [r.ram_mb_s for r in rates], None, "MB/s"))
    figs.append(figure("recording overhead", [r.ratio for r in rates],
                       None, "x"))   # no target: see bench/targets.toml
    progress.note(f"device: x-query-tph-hints of {device_figures.QUERY_RECORDS} records")
    figs.append(figure(f"query {device_figures.QUERY_RECORDS} records",
                       device_figures.query_latency(arts.qemu, arts.datadir, max(runs, 5)),
                       tg.get("query_4096")))

    boot = statistics.median(boots)
    accel, matrix_figs = matrix_figures(arts, accel, runs, boot, tg, progress)
    figs += matrix_figs
    figs += edit_to_verdict(progress, runs, tg.get("edit_to_verdict"))
    figs += edit_to_full_verdict(progress, boot, tg.get("edit_to_full_verdict_per_boot"))
    figs += runs_at_once(progress)
    figs += fuzz_figures(progress, tg.get("device_lines_not_covered"))
    figs += uapi_fuzz_figures(progress)

    return accel, figs


@dataclass(frozen=True)
class WarmRun:
    """One restored run of the matrix: its seconds, whether a guest had to
    boot (no snapshot yet), and each scenario's seconds."""
    seconds: float
    booted: bool
    scenarios: dict[str, float]


def warm_samples(warm: Callable[[bool, int], WarmRun], runs: int
                 ) -> tuple[dict[bool, list[float]], dict[str, list[float]]]:
    """`runs` timed samples each of the packed (True) and unpacked (False)
    matrix, alternated; a first round that had to boot a guest (and save its
    snapshot) is not a sample, for either arrangement on its own. Returns the
    samples per arrangement and the packed samples per scenario."""
    wholes: dict[bool, list[float]] = {True: [], False: []}
    per_case: dict[str, list[float]] = {}
    i = 0
    while any(len(w) < runs for w in wholes.values()):
        i += 1
        for pack in (True, False):
            if len(wholes[pack]) >= runs:
                continue
            r = warm(pack, i)
            if r.booted and i == 1:
                continue
            wholes[pack].append(r.seconds)
            if pack:
                for name, secs in r.scenarios.items():
                    per_case.setdefault(name, []).append(secs)
    return wholes, per_case


def matrix_figures(arts: Artifacts, accel: kvm.Accel, runs: int, boot: float,
                   tg: dict[str, float], progress: Progress) -> tuple[kvm.Accel, list[Figure]]:
    """The matrix (without the kernel's selftests) as the rig packs it into
    guests and unpacked, a guest per topology, alternated: every guest booted,
    then restored from snapshots `runs` times; and the median scenario."""
    cases = matrix.without_selftests()
    guests = {pack: len(runner.groups(cases, pack)) for pack in (True, False)}
    figs = [figure("guests per matrix", [guests[True]], None, " gst"),
            figure("guests per matrix, unpacked", [guests[False]], None, " gst")]
    booted: dict[bool, float] = {}
    work: dict[bool, float] = {}
    for pack in (True, False):
        progress.note(f"matrix, every guest booted ({guests[pack]} guests)")
        t = time.monotonic()
        run = runner.run_matrix(cases, arts, accel, run_dir("bench"),
                                opts=runner.Options(pack=pack))
        booted[pack] = time.monotonic() - t
        accel = _followed(run.passed, run.accel, run.accel_reason, accel, progress)
        if pack:
            work[pack] = sum(run.boots.values()) + sum(o.seconds for o in run.outcomes)
    store = snapshot.Store()

    def warm(pack: bool, i: int) -> WarmRun:
        what = "" if pack else ", unpacked"
        progress.note(f"warm matrix{what} {i}: guests restored from their snapshots")
        nonlocal accel
        t = time.monotonic()
        run = runner.run_matrix(cases, arts, accel, run_dir("bench"),
                                opts=runner.Options(snapshots=store, pack=pack))
        secs = time.monotonic() - t
        accel = _followed(run.passed, run.accel, run.accel_reason, accel, progress)
        booted_any = "boot" in run.started.values()
        if booted_any and i == 1:
            progress.note("  (a guest had no snapshot yet: saved now, this run not counted)")
        return WarmRun(secs, booted_any, {o.name: o.seconds for o in run.outcomes})

    wholes, per_case = warm_samples(warm, runs)
    figs += [figure("warm matrix", wholes[True], tg.get("warm_matrix")),
             figure("warm matrix, unpacked", wholes[False], None),
             figure("warm matrix, booting", [booted[True]], None),
             figure("warm matrix, booting, unpacked", [booted[False]], None),
             figure("warm matrix, booting / boot to SSH", [booted[True] / boot],
                    tg.get("booting_matrix_per_boot"), "x"),
             figure("  unpacked / boot to SSH", [booted[False] / boot], None, "x"),
             # What no scheduling can beat: every guest's boot and every
             # scenario's seconds, spread over the cores without a gap
             figure("  packed work / cores / boot to SSH",
                    [work[True] / hostfacts.jobs() / boot], None, "x"),
             figure("one scenario (matrix median)",
                    [statistics.median(s) for s in zip(*per_case.values(), strict=True)],
                    tg.get("one_scenario"))]
    figs += [figure(f"  {name}", s, None) for name, s in per_case.items()]
    return accel, figs


FUZZ_SECONDS = 30


def _rig_json(*args: str) -> dict[str, Any]:
    """`rig ARGS --json FILE` as a user runs it, and the document it wrote."""
    with tempfile.TemporaryDirectory(prefix="tphlab-bench-") as tmp:
        out = Path(tmp) / "out.json"
        res = _rig(*args, "--json", str(out), timeout=3600)
        if res.returncode != 0 or not out.is_file():
            raise RigError(f"rig {' '.join(args)} failed ({res.returncode}): "
                           f"{res.stdout[-2000:]}{res.stderr[-2000:]}",
                           fix=f"run `rig {' '.join(args)}` by hand to see why")
        doc: dict[str, Any] = json.loads(out.read_text())
        return doc


def fuzz_figures(progress: Progress, max_missed: float | None) -> list[Figure]:
    """`rig fuzz device` for FUZZ_SECONDS from an empty corpus: executions per
    second of each configuration, and the share of the device's
    guest-reachable lines and branches its corpus leaves uncovered (printed
    so, as every target is a ceiling)."""
    progress.note(f"fuzz: generic-fuzz on tph-testdev for {FUZZ_SECONDS} s, then coverage")
    with tempfile.TemporaryDirectory(prefix="tphlab-bench-corpus-") as corpus:
        doc = _rig_json("fuzz", "device", "--time", str(FUZZ_SECONDS), "--corpus", corpus)
    figs = [figure(f"generic-fuzz exec/s, {r['config']}", [float(r["execs_per_sec"])], None,
                   "/s") for r in doc["runs"]]
    cov = doc["coverage"]
    missed = 100.0 - float(cov["guest_lines"]["percent"])
    figs.append(figure("device lines not covered", [missed], max_missed, "%"))
    figs.append(figure("device branches not covered",
                       [100.0 - float(cov["guest_branches"]["percent"])], None, "%"))
    return figs


UAPI_OPS = 5000


def uapi_fuzz_figures(progress: Progress) -> list[Figure]:
    """`rig fuzz uapi` of UAPI_OPS operations on the debug kernel: operations
    per second of its scenario (the guest command and its checks; the
    guest's boot apart)."""
    progress.note(f"fuzz: {UAPI_OPS} uAPI and importer operations on the debug kernel")
    doc = _rig_json("fuzz", "uapi", "--ops", str(UAPI_OPS))
    secs = float(doc["scenarios"][0]["seconds"])
    return [figure("uAPI fuzz operations/s (debug kernel)", [UAPI_OPS / secs], None, "/s")]


def _followed(passed: bool, used: str, reason: str, accel: kvm.Accel,
              progress: Progress) -> kvm.Accel:
    """The accelerator the next runs use: the one a run (that `passed` or not)
    fell back to (`used`, for `reason`), if any."""
    if not passed:
        progress.note("warning: a scenario failed during the bench")
    if used == accel.name:
        return accel
    progress.note(f"accelerator: {used} ({reason})")
    return kvm.Accel(used, reason, auto=True)


def restore_ready(arts: Artifacts, accel: kvm.Accel, runs: int,
                  progress: Progress) -> list[float]:
    """Seconds from QEMU's start to SSH for the default guest restored from a
    snapshot (saved once, booted and bound, in a scratch store)."""
    with tempfile.TemporaryDirectory(prefix="tphlab-bench-snap-") as tmp:
        store = snapshot.Store(Path(tmp))
        progress.note("restore: saving the default guest")
        logs = run_dir("bench")
        vm, used = bringup.start_vm(arts, Topology(), logs / "save", accel)
        try:
            devices.bind_devices(vm)
            key = snapshot.key_of(snapshot.inputs(arts, vm.topo, used.name))
            snap = store.save(vm, key, {})
        finally:
            vm.stop()
        out = []
        for i in range(runs):
            progress.note(f"restore {i + 1}/{runs}")
            guest = VM(arts, Topology(), logs / f"restore{i}", used.name)
            try:
                guest.restore(snap.state)
                out.append(guest.boot_seconds)
            finally:
                guest.stop()
    return out


def render(accel: kvm.Accel, runs: int, figs: list[Figure]) -> str:
    width = max(len(f.name) for f in figs)
    return "\n".join([f"rig bench ({accel.name}: {accel.reason}; {runs} runs each)",
                      *(f.line(width) for f in figs)])


def to_json(accel: kvm.Accel, figs: list[Figure]) -> str:
    return json.dumps({"accel": accel.name, "accel_reason": accel.reason,
                       "figures": [{**asdict(f), "met": f.met} for f in figs]}, indent=2)
