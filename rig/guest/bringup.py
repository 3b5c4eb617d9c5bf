"""Bringing a guest up: booting it (KVM, or TCG when KVM cannot run it under
`--accel auto`), or restoring it from its snapshot, and saving it once its
devices are bound. `rig boot`, `rig bench` and `rig run` take their guests
from here."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rig.builder.artifacts import Artifacts
from rig.errors import AccelError, GuestError, RigError, first_line
from rig.guest import snapshot, topology
from rig.guest import vm as guest_vm
from rig.guest.devices import Benches, bench_of, bind_command
from rig.guest.interface import G, GuestVM, VMFactory
from rig.guest.kvm import FIX as KVM_FIX
from rig.guest.kvm import Accel
from rig.guest.vm import VM

RESTORE_TIMEOUT = 15.0   # seconds from QEMU's start to SSH, for a restored guest


def boot(factory: Callable[[Artifacts, topology.Topology, Path, str], G], arts: Artifacts,
         topo: topology.Topology, rundir: Path, accel: Accel,
         on_stage: Callable[[str, float], None] | None = None,
         timeout: float = 120.0) -> tuple[G, Accel]:
    """Boot to SSH under `accel`; return the guest and the accelerator it runs under.

    A KVM that creates VMs and runs a few instructions can still hang a real
    guest (nested virtualization). A guest that does not reach /init under
    KVM is an AccelError (exit 2) for `--accel kvm`; under `--accel auto` it
    is retried under TCG, and the returned Accel says why (on_stage is told
    too, and rundir/kvm-fallback.txt keeps the console). A boot that fails
    leaves no QEMU behind.
    """
    vm = factory(arts, topo, rundir, accel.name)
    started = time.monotonic()
    try:
        vm.start(timeout=timeout if accel.name == "tcg" else min(timeout, 30.0),
                 on_stage=on_stage)
        return vm, accel
    except RigError as exc:
        vm.stop()
        if accel.name != "kvm" or vm.stage not in ("qemu", "kernel"):
            raise
        stage = vm.stage
        if not accel.auto:
            raise AccelError(f"--accel kvm: the guest ({topo.name}) did not reach /init under "
                             f"KVM (last boot stage: {stage}): {exc.message}",
                             log=exc.log or str(vm.console), fix=KVM_FIX) from exc
        note = rundir / "kvm-fallback.txt"
        note.write_text(f"KVM boot failed at stage {stage}; using TCG.\n{exc.message}\n")
        accel = accel.fallen_back(f"the guest ({topo.name}) did not reach /init under KVM "
                                  f"(last boot stage: {stage}; console in {note}); "
                                  "fell back to TCG")
        if on_stage:
            on_stage(f"KVM failed, falling back to TCG ({accel.reason})",
                     time.monotonic() - started)
    except BaseException:
        vm.stop()
        raise
    vm = factory(arts, topo, rundir / "tcg", "tcg")
    try:
        vm.start(timeout=timeout, on_stage=on_stage)
    except BaseException:
        vm.stop()
        raise
    return vm, accel


def start_vm(arts: Artifacts, topo: topology.Topology, rundir: Path, accel: Accel,
             on_stage: Callable[[str, float], None] | None = None,
             timeout: float = 120.0, outlive_rig: bool = False) -> tuple[VM, Accel]:
    """boot() a real guest (rig.guest.vm.VM); with `outlive_rig`, one that the
    rig may leave running when it exits (`rig boot`)."""
    return boot(outliving(VM) if outlive_rig else VM, arts, topo, rundir, accel, on_stage,
                timeout)


def real_guests() -> VMFactory:
    """The factory of real guests, rig.guest.vm.VM (where the tests put fakes)."""
    return VM


def outliving(factory: Callable[[Artifacts, topology.Topology, Path, str], G],
               ) -> Callable[[Artifacts, topology.Topology, Path, str], G]:
    """The factory, its real guests made to outlive the rig (VM.outlive_rig)."""
    def make(arts: Artifacts, topo: topology.Topology, rundir: Path, accel: str) -> G:
        vm = factory(arts, topo, rundir, accel)
        if isinstance(vm, guest_vm.VM):     # (tests stand fakes in for VM)
            vm.outlive_rig = True
        return vm
    return make


def restore(factory: VMFactory, store: snapshot.Store, arts: Artifacts,
            topo: topology.Topology, rundir: Path, accel: Accel,
            stage: Callable[[str, float], None],
            note: Callable[[str], None]) -> tuple[GuestVM, Benches] | None:
    """The topology's guest restored from its snapshot, with its devices as bound
    there; None when it has none, or the snapshot did not restore (it is
    deleted then, and stage() and note() say so)."""
    try:
        snap = store.find(snapshot.key_of(snapshot.inputs(arts, topo, accel.name)))
    except OSError as exc:
        note(f"{topo.name}: no snapshot lookup ({exc}): booting")
        return None
    if snap is None:
        note(f"{topo.name}: no snapshot of this guest yet")
        return None
    vm = factory(arts, topo, rundir / topo.name, accel.name)
    if not isinstance(vm, snapshot.Savable):
        note(f"{topo.name}: this guest cannot be restored ({type(vm).__name__})")
        vm.stop()
        return None
    try:
        vm.restore(snap.state, timeout=RESTORE_TIMEOUT)
        bench = bench_of(vm)
        if bind_command(bench, topo.vfio) != snap.meta().get("bind"):
            raise RigError("its devices were bound at other addresses")
    except (RigError, OSError, ValueError) as exc:
        vm.stop()
        store.delete(snap)
        err = exc if isinstance(exc, RigError) else RigError(f"{type(exc).__name__}: {exc}")
        msg = snapshot.describe_failure(snap, err)
        note(f"{topo.name}: {msg}")
        stage(msg, 0.0)
        return None
    note(f"{topo.name}: restored from snapshot {snap.key[:12]} in {vm.boot_seconds:.2f}s")
    stage(f"restored from snapshot {snap.key[:12]}", vm.boot_seconds)
    return vm, bench


def save(store: snapshot.Store, vm: GuestVM, arts: Artifacts, accel: str, bench: Benches,
         stage: Callable[[str, float], None], note: Callable[[str], None]) -> None:
    """Save the guest, booted and bound, for the next run; a guest QEMU cannot
    save runs on unsaved (note() and stage() say why)."""
    if not isinstance(vm, snapshot.Savable):
        return
    started = time.monotonic()
    try:
        data = snapshot.inputs(arts, vm.topo, accel)
        snap = store.save(vm, snapshot.key_of(data),
                          {"inputs": data, "bind": bind_command(bench, vm.topo.vfio),
                           "boot_seconds": round(vm.boot_seconds, 3)})
    except GuestError:
        raise
    except (RigError, OSError) as exc:
        msg = exc.message if isinstance(exc, RigError) else f"{type(exc).__name__}: {exc}"
        note(f"{vm.topo.name}: no snapshot saved: {msg}")
        stage(f"no snapshot saved: {first_line(msg)}", time.monotonic() - started)
        return
    note(f"{vm.topo.name}: saved snapshot {snap.key[:12]} in "
              f"{time.monotonic() - started:.2f}s")
    stage(f"saved snapshot {snap.key[:12]}", time.monotonic() - started)

