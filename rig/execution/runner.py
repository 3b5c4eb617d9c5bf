"""Running the scenario matrix: the scenarios grouped by topology, the
topologies packed into machines (rig.guest.packing; one per topology with
Options.pack off), one guest per machine booted (or restored) on as many
workers as the host's budget of busy vCPUs allows, each machine's
scenarios run one at a time in it, each on its own placement's devices.

Every scenario ends as an Outcome (rig.results.run): PASS or FAIL by its
check; ERROR when the rig or the check broke (the traceback goes to
RUNDIR/run.log), and the next scenario still runs; CRASHED when its guest
died or hung, and then its machine's remaining scenarios are NOT_RUN
while the other machines keep going. Ctrl-C stops the guests and leaves
what had not finished NOT_RUN. run_matrix always returns the Run, so its
reports can be written however it ended. With a Keeper (--keep-guest) the
guest of the first machine with a failing scenario is left running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from rig import hostfacts
from rig.builder.artifacts import Artifacts
from rig.errors import AccelError, GuestError, RigError, first_line
from rig.execution.control import Control
from rig.execution.request import RunRequest
from rig.execution.runlog import RUN_LOG, RunLog
from rig.execution.scenario_run import AFTER, not_run, outcome_of, run_case
from rig.guest import bringup, budget, devices, faults, packing, snapshot, topology
from rig.guest.devices import Benches
from rig.guest.interface import GuestVM, VMFactory
from rig.guest.kvm import Accel
from rig.guest.vm import VM
from rig.results.run import EXIT_GUEST, EXIT_INTERNAL, Outcome, Problem, Run, Status, own_message
from rig.scenarios.kit import Scenario


def groups(cases: Sequence[Scenario],
           pack: bool = True) -> list[tuple[topology.Topology, list[Scenario]]]:
    """Cases by machine: their topologies in the order they first appear, packed
    (or one machine each), each machine's cases in the order of `cases`."""
    placements: list[topology.Topology] = []
    for c in cases:
        if c.topo not in placements:
            placements.append(c.topo)
    machines = packing.pack(placements) if pack else placements
    return [(m, [c for c in cases if c.topo in m.pairs()]) for m in machines]


@dataclass(frozen=True)
class Options:
    boot_timeout: float = 120.0        # seconds from QEMU's start to SSH
    case_timeout: float = 60.0         # seconds for one scenario's guest command
    fault: str | None = None           # see faults.FAULTS
    # Only into the machine holding this topology, right before its first scenario
    fault_into: str | None = None
    jobs: int | None = None            # guests booted side by side
    vm_factory: VMFactory | None = None  # makes the guests; None: rig.guest.vm.VM
    keeper: Keeper | None = None       # --keep-guest: where a failing topology's guest goes
    snapshots: snapshot.Store | None = None   # restore guests from (and save them to) it
    # The kernel is the reference series (rig.builder.reference): a difference
    # of its uAPI contract is a FAIL; on another series it is a DIFFERS
    reference: bool = True
    # Topologies that can share a guest share one (rig.guest.packing)
    pack: bool = True

    @classmethod
    def of(cls, request: RunRequest, keeper: Keeper | None = None) -> Options:
        """The options of a `rig run` request: the cache's snapshots unless it
        asks for none; `keeper` for its --keep-guest."""
        return cls(boot_timeout=request.boot_timeout, case_timeout=request.case_timeout,
                   fault=request.fault, fault_into=request.fault_into, keeper=keeper,
                   snapshots=snapshot.Store() if request.snapshots else None,
                   pack=request.pack)


@dataclass(frozen=True)
class Kept:
    """A guest --keep-guest left running: a scenario of its machine failed."""

    vm: GuestVM
    topo: topology.Topology            # its machine
    bench: Benches
    accel: Accel
    failed: tuple[str, ...]            # its scenarios that ended FAIL or ERROR


class Keeper:
    """--keep-guest: the first guest whose topology had a scenario end FAIL or
    ERROR is not stopped when its scenarios are done (the later ones still run
    first) but left running for inspection; one guest at most, the others stop
    as usual. A guest that died, or a run interrupted before its guest was
    kept, keeps nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.kept: Kept | None = None
        self.stopped: list[str] = []   # topologies with a failure whose guest stopped anyway

    def offer(self, candidate: Kept, ctl: Control) -> bool:
        """Keep `candidate` if no guest is kept yet and the run is not halting
        (then stop_all no longer stops it)."""
        with self._lock:
            if self.kept is None and ctl.untrack(candidate.vm):
                self.kept = candidate
                return True
            self.stopped.append(candidate.topo.name)
            return False

    def pass_over(self, topo: str) -> None:
        """A topology with a failure whose guest cannot be kept (it died)."""
        with self._lock:
            self.stopped.append(topo)


@dataclass
class GroupResult:
    accel: Accel                       # the accelerator its guest ran under
    boot: float | None = None          # seconds to SSH, None if it did not boot
    outcomes: list[Outcome] = field(default_factory=list)   # one per member, in order
    problems: list[Problem] = field(default_factory=list)
    started: str = "boot"              # "snapshot": restored from one


def _explain(vm: GuestVM, where: str, exc: BaseException) -> GuestError:
    """faults.explain for any error of a dead or silent guest (faults reads a VM's
    console, rundir and proc, which every guest has)."""
    text = exc.message if isinstance(exc, RigError) else f"{type(exc).__name__}: {exc}"
    # The after-checks appended to every scenario's command say nothing here.
    for after in (AFTER, repr(AFTER)[1:-1]):      # as is, and as a command's repr shows it
        text = text.replace(f"; {after}", "")
    err = RigError(text, fix=getattr(exc, "fix", None))
    return faults.explain(cast(VM, vm), where, err)


def run_group(topo: topology.Topology, members: list[Scenario], arts: Artifacts,
              accel: Accel, rundir: Path, report: Callable[[Outcome], None] | None = None,
              on_stage: Callable[[str, str, float], None] | None = None,
              opts: Options = Options(), control: Control | None = None) -> GroupResult:
    """run_guest() with a slot of the machine's budget of busy vCPUs (guest/budget.py),
    shared with every other rig on this machine: one while the guest boots, and
    for each scenario as many as it keeps busy."""

    def waiting(msg: str) -> None:
        if on_stage:
            on_stage(topo.name, msg, 0.0)

    slots = budget.Slots(waiting)
    try:
        slots.hold(1)
    except GuestError as exc:
        result = GroupResult(accel)
        log = (control.log if control is not None else RunLog(rundir / RUN_LOG))
        result.problems.append(log.problem(exc, f"guest {topo.name}", topo.name))
        for c in members:
            result.outcomes.append(replace(not_run(c, first_line(exc.message)), guest=topo.name))
            if report:
                report(result.outcomes[-1])
        return result
    with slots:
        return run_guest(topo, members, arts, accel, rundir, report, on_stage, opts, control,
                         slots)


def run_guest(topo: topology.Topology, members: list[Scenario], arts: Artifacts,
              accel: Accel, rundir: Path, report: Callable[[Outcome], None] | None = None,
              on_stage: Callable[[str, str, float], None] | None = None,
              opts: Options = Options(), control: Control | None = None,
              slots: budget.Slots | None = None) -> GroupResult:
    """Boot one topology and run its cases: an outcome for every member, never a raise.

    A guest that does not boot, or whose devices do not bind, leaves every
    member NOT_RUN; one that dies or hangs makes the running case CRASHED
    and the rest NOT_RUN. Each outcome goes to `report` as it is known.
    With `slots`, each scenario first holds as many as it keeps vCPUs busy.
    """
    ctl = control if control is not None else Control(RunLog(rundir / RUN_LOG))
    log = ctl.log
    result = GroupResult(accel)
    if opts.fault_into is not None and opts.fault_into not in {p.name for p in topo.pairs()}:
        opts = replace(opts, fault=None)

    def done(o: Outcome) -> None:
        o.guest = topo.name
        result.outcomes.append(o)
        log.write(f"{topo.name}: {o.name}: {o.status.value} ({o.seconds:.2f}s)"
                  + "".join(f"\n    {f}" for f in o.failures))
        if report:
            report(o)

    def skip_rest(why: str) -> None:
        for c in members[len(result.outcomes):]:
            done(not_run(c, why))

    def stage(name: str, secs: float) -> None:
        if on_stage:
            on_stage(topo.name, name, secs)

    def interrupted() -> bool:
        if ctl.halted is None:
            return False
        skip_rest(ctl.halted)
        return True

    if interrupted():
        return result
    if ctl.no_boot is not None:
        skip_rest(ctl.no_boot)
        return result
    # A guest --keep-guest may keep must not die with the rig when it exits.
    base: VMFactory = opts.vm_factory or bringup.real_guests()
    factory = ctl.track(bringup.outliving(base) if opts.keeper is not None else base)
    store = opts.snapshots if opts.fault is None else None
    restored = (bringup.restore(factory, store, arts, topo, rundir, accel, stage, log.write)
                if store is not None else None)
    ready: Benches | None = None
    if restored is not None:
        (vm, ready), used = restored, accel
    else:
        log.write(f"{topo.name}: booting")
        try:
            vm, used = bringup.boot(factory, arts, faults.boot_topology(topo, opts.fault),
                            rundir / topo.name, accel, stage, opts.boot_timeout)
        except Exception as exc:
            if interrupted():
                return result
            problem = log.problem(exc, f"guest {topo.name}", topo.name)
            result.problems.append(problem)
            if isinstance(exc, AccelError):    # --accel kvm: no guest will boot under KVM
                ctl.refuse_boots(f"no guest was booted after: {first_line(exc.message)}")
            skip_rest(f"the guest ({topo.name}) did not boot: {first_line(own_message(exc))}")
            return result
    result.accel, result.boot = used, round(vm.boot_seconds, 3)
    result.started = "snapshot" if ready is not None else "boot"
    bench: Benches | None = None
    try:
        save = None if store is None or ready is not None else (
            lambda b: bringup.save(store, vm, arts, used.name, b, stage, log.write))
        bench = _run_members(vm, topo, members, rundir, opts, ctl, result, done, skip_rest,
                             ready, save, slots)
    except Exception as exc:      # a bug of the loop itself; the outcomes so far stand
        result.problems.append(log.problem(exc, f"guest {topo.name}", topo.name))
        skip_rest(f"the rig broke in guest {topo.name} (see {log.path})")
    finally:
        if not _keep(vm, topo, bench, used, result, opts, ctl):
            try:
                vm.stop()
            except Exception as exc:
                log.exception(f"{topo.name}: stopping the guest", exc)
    return result


def _keep(vm: GuestVM, topo: topology.Topology, bench: Benches | None, accel: Accel,
          result: GroupResult, opts: Options, ctl: Control) -> bool:
    """Whether --keep-guest keeps this guest running (see Keeper)."""
    failed = tuple(o.name for o in result.outcomes
                   if o.status in (Status.FAIL, Status.DIFFERS, Status.ERROR))
    if opts.keeper is None or bench is None or not failed:
        return False
    try:
        alive = vm.alive()
    except Exception:
        alive = False
    if not alive:
        opts.keeper.pass_over(topo.name)
        return False
    if not opts.keeper.offer(Kept(vm, topo, bench, accel, failed), ctl):
        ctl.log.write(f"{topo.name}: not kept (--keep-guest keeps one guest, or the run "
                      "is halting): stopping it")
        return False
    ctl.log.write(f"{topo.name}: guest left running for inspection (--keep-guest; failed: "
                  f"{', '.join(failed)})")
    return True


def _run_members(vm: GuestVM, topo: topology.Topology, members: list[Scenario],
                 rundir: Path, opts: Options, ctl: Control, result: GroupResult,
                 done: Callable[[Outcome], None],
                 skip_rest: Callable[[str], None], ready: Benches | None = None,
                 save: Callable[[Benches], None] | None = None,
                 slots: budget.Slots | None = None) -> Benches | None:
    """Bind the devices (unless `ready`: a restored guest's are bound), then
    save() the guest, and run the members, each once `slots` holds as many
    as it keeps vCPUs busy; the Bench, None if binding failed."""
    log = ctl.log

    def guest_died(where: str, exc: BaseException) -> GuestError:
        err = _explain(vm, where, exc)
        result.problems.append(Problem(EXIT_GUEST, err.message, err.log, err.fix, topo.name))
        log.write(f"{where}: {err.message}")
        return err

    try:
        if ready is not None:
            bench = ready
        else:
            bench = devices.bind_devices(vm, clear_log=True)
            if save is not None:
                save(bench)
        if opts.fault and opts.fault_into is None:
            faults.inject(cast(VM, vm), opts.fault)
    except Exception as exc:
        if ctl.halted is not None:
            skip_rest(ctl.halted)
            return None
        where = f"guest {topo.name}, binding the devices"
        if isinstance(exc, GuestError) or not vm.alive():
            err = guest_died(where, exc)
            skip_rest(first_line(err.message))
        else:
            result.problems.append(log.problem(exc, where, topo.name))
            skip_rest(f"{where} failed: {first_line(own_message(exc))}")
        return None
    for case in members:
        if ctl.halted is not None:
            skip_rest(ctl.halted)
            return bench
        where = f"guest {topo.name}, scenario {case.name}"
        if slots is not None:
            try:
                slots.hold(min(case.busy_vcpus, topo.cpus))
            except GuestError as exc:
                result.problems.append(log.problem(exc, where, topo.name))
                skip_rest(first_line(exc.message))
                return bench
        started = time.monotonic()
        outdir = rundir / topo.name / "scenarios" / case.name
        try:
            if opts.fault and case.topo.name == opts.fault_into:
                # --inject-into: right before that topology's first scenario
                faults.inject(cast(VM, vm), opts.fault)
                opts = replace(opts, fault_into=None)
            o = run_case(vm, case, bench.of(case.topo.name), opts.case_timeout, outdir, log,
                         opts.reference)
        except Exception as exc:
            if ctl.halted is not None:
                skip_rest(ctl.halted)
                return bench
            if isinstance(exc, GuestError) or not vm.alive():
                err = guest_died(where, exc)
                done(outcome_of(case, Status.CRASHED, time.monotonic() - started,
                                [f"{first_line(err.message)}; console {vm.console}"],
                                output=outdir))
                skip_rest(f"the guest ({topo.name}) died in scenario {case.name}")
                return bench
            # The rig broke, not the guest: this case has no verdict, the next may.
            result.problems.append(log.problem(exc, where, topo.name))
            suffix = "" if isinstance(exc, RigError) else f" (traceback in {log.path})"
            done(outcome_of(case, Status.ERROR, time.monotonic() - started,
                            [f"{own_message(exc)}{suffix}"], output=outdir))
            continue
        if ctl.halted is not None and not vm.alive():
            skip_rest(ctl.halted)         # stopped under it by Ctrl-C: no verdict
            return bench
        if o.status is Status.ERROR:
            result.problems.append(Problem(EXIT_INTERNAL, f"{where}: {o.failures[-1]}",
                                           str(log.path), "this is a bug of the rig or of "
                                           "the scenario's check: report it with the log",
                                           topo.name))
        if not vm.alive():
            # Its output came back, then QEMU went: it took the guest down with it.
            err = guest_died(where, RigError("QEMU is gone"))
            o.status = Status.CRASHED
            o.failures.append(f"{first_line(err.message)}; console {vm.console}")
            done(o)
            skip_rest(f"the guest ({topo.name}) died in scenario {case.name}")
            return bench
        done(o)
    return bench


def run_matrix(cases: Sequence[Scenario], arts: Artifacts, accel: Accel, rundir: Path,
               report: Callable[[Outcome], None] | None = None,
               on_stage: Callable[[str, str, float], None] | None = None,
               opts: Options = Options()) -> Run:
    """Boot once per topology and run its cases; the run directory keeps every log.

    Topologies run side by side, one guest per core (a TCG guest keeps one
    core busy); the outcomes keep the order of `cases`, one each, whatever
    happened. The Run names the accelerator and why: TCG if any guest fell
    back to it (`auto`). Ctrl-C stops the guests, marks the run interrupted
    and returns it.
    """
    log = RunLog(rundir / RUN_LOG)
    ctl = Control(log)
    run = Run(accel.name, logs=rundir, accel_reason=accel.reason)
    run.outcomes = [not_run(c, "its guest never reported it (a bug of the rig)") for c in cases]
    slot = {c.name: i for i, c in enumerate(cases)}
    reported: set[str] = set()
    lock = threading.Lock()

    def record(o: Outcome) -> None:
        with lock:
            run.outcomes[slot[o.name]] = o
            reported.add(o.name)
        if report:
            report(o)

    gs = groups(cases, opts.pack)
    log.write(f"{len(cases)} scenarios in {len(gs)} guests, accel {accel.name} "
              f"({accel.reason})")
    workers = max(1, min(opts.jobs or hostfacts.jobs(), len(gs)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="guest")
    futures: list[Future[GroupResult]] = [
        pool.submit(run_group, topo, members, arts, accel, rundir, record, on_stage, opts, ctl)
        for topo, members in gs]
    try:
        wait_futures(futures)
    except KeyboardInterrupt as stop:
        run.interrupt(stop)
        ctl.halt(f"the run was {run.interruption}")
        log.write(f"{run.interruption}: stopping the guests")
        for f in futures:
            f.cancel()
        ctl.stop_all()
        try:
            wait_futures(futures)
        except KeyboardInterrupt:
            log.write("interrupted again: not waiting for the guests")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    fell_back: list[str] = []
    on_kvm: list[str] = []
    for (topo, members), f in zip(gs, futures, strict=True):
        if not f.done() or f.cancelled():
            with lock:
                unreported = [c for c in members if c.name not in reported]
            for c in unreported:
                run.outcomes[slot[c.name]] = not_run(c, ctl.halted or "cancelled")
            continue
        exc = f.exception()
        if exc is not None:   # run_group never raises: if it did, that is a bug
            run.problems.append(log.problem(exc, f"guest {topo.name}", topo.name))
            continue
        res = f.result()
        for o in res.outcomes:
            if o.name not in reported:
                run.outcomes[slot[o.name]] = o
        run.problems += res.problems
        if res.boot is None:
            continue
        run.boots[topo.name] = res.boot
        run.started[topo.name] = res.started
        if res.accel.name != accel.name:
            fell_back.append(res.accel.reason)
        elif res.accel.name == "kvm":
            on_kvm.append(topo.name)
    if fell_back:
        why = [r.removeprefix("auto: ") for r in fell_back]
        if on_kvm:
            why.append(f"{', '.join(on_kvm)} ran under KVM")
        run.accel, run.accel_reason = "tcg", "auto: " + "; ".join(why)
    log.write(f"done: {run.count(Status.PASS)}/{len(run.outcomes)} passed, "
              f"exit code {run.exit_code}")
    return run


def unrun(cases: Sequence[Scenario], accel: str, why: str, problem: Problem | None = None,
          logs: Path | None = None) -> Run:
    """The Run of a run that never started (a set-up error, Ctrl-C): all NOT_RUN."""
    return Run(accel, [not_run(c, why) for c in cases], logs=logs,
               problems=[problem] if problem is not None else [])
