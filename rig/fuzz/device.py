"""`rig fuzz device`: QEMU's generic-fuzz (libFuzzer) on tph-testdev.

Each configuration of generic_fuzz_configs.h that holds the device (see
CONFIGS) runs for its share of the time on the sanitized fuzz build, from
a corpus kept in the cache (seeded by rig.fuzz.generic_input) so that runs
build on each other. A crash is kept with its input, the fuzzer's report and
a qtest reproducer (rig.fuzz.reproducer) that replays it on the sanitized
qemu-system-x86_64.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import ConfigError, ToolError
from rig.fuzz import generic_input, reproducer, sanitizers
from rig.paths import cache_root
from rig.progress import Progress

# The configurations of generic_fuzz_configs.h (qemu-device/ patch 12)
CONFIGS = ("tph-testdev-switch", "tph-testdev-rootports", "tph-testdev-no-prefix-path")
INPUT_TIMEOUT = 10          # seconds one input may take before it counts as a hang
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_COV = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.M)
_REPORT = re.compile(r"^(==\d+==ERROR: \S+: .*|SUMMARY: .*|.*runtime error: .*|"
                     r"ALARM: working on the last Unit for \d+ seconds)$", re.M)


@dataclass
class Crash:
    """One input that made the fuzzer stop: what it saved and what it said."""

    config: str
    input: str              # the input file, in the run's directory
    report: str             # the sanitizer's or libFuzzer's first line
    log: str                # the fuzzer's output
    reproducer: str = ""    # qtest commands that replay it ("" if none came out)
    replays: bool = False   # the reproducer, run on qemu-system-x86_64, crashes too


@dataclass
class ConfigRun:
    """One configuration's run: its figures and its crashes."""

    config: str
    seconds: float
    executions: int
    execs_per_sec: float
    edges: int              # libFuzzer's "cov:" at the end
    corpus: int             # inputs in the corpus afterwards
    new_inputs: int
    crashes: list[Crash] = field(default_factory=list)


@dataclass
class DeviceFuzz:
    runs: list[ConfigRun]
    rundir: str

    @property
    def crashes(self) -> list[Crash]:
        return [c for r in self.runs for c in r.crashes]

    def to_dict(self) -> dict[str, Any]:
        return {"rundir": self.rundir, "runs": [asdict(r) for r in self.runs]}


def seeds_dir(rundir: Path, config: str) -> Path:
    """Where a run writes a configuration's seeds (libFuzzer reads them
    beside the corpus, and adds to the corpus only what they lead to)."""
    return rundir / config / "seeds"


def corpus_dir(config: str) -> Path:
    """Where a configuration's corpus lives between runs."""
    return cache_root() / "fuzz" / "device" / config / "corpus"


def run(fuzzer: Path, qemu: Path, datadir: Path, seconds: float, rundir: Path,
        progress: Progress, configs: tuple[str, ...] = CONFIGS,
        corpus_root: Path | None = None) -> DeviceFuzz:
    """generic-fuzz for `seconds` in all, shared among `configs`; the corpora
    under `corpus_root` (default: the cache's), the crashes in `rundir`."""
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise ConfigError(f"no generic-fuzz configuration {', '.join(unknown)}",
                          fix=f"pick among {', '.join(CONFIGS)}")
    if not fuzzer.is_file():
        raise ToolError(f"{fuzzer} is missing", fix="rig build qemu --sanitize")
    rundir.mkdir(parents=True, exist_ok=True)
    share = max(1, int(seconds / len(configs)))
    out = []
    for config in configs:
        corpus = (corpus_root / config if corpus_root else corpus_dir(config))
        out.append(run_config(fuzzer, qemu, datadir, config, share, corpus, rundir, progress))
    return DeviceFuzz(out, str(rundir))


def run_config(fuzzer: Path, qemu: Path, datadir: Path, config: str, seconds: int,
               corpus: Path, rundir: Path, progress: Progress) -> ConfigRun:
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = seeds_dir(rundir, config)
    generic_input.write_seeds(seeds)
    crashes_dir = rundir / config / "crashes"
    crashes_dir.mkdir(parents=True, exist_ok=True)
    log = rundir / config / "fuzz.log"
    argv = [str(fuzzer), f"--fuzz-target=generic-fuzz-{config}", str(corpus), str(seeds),
            f"-max_total_time={seconds}", f"-timeout={INPUT_TIMEOUT}",
            f"-artifact_prefix={crashes_dir}/", "-print_final_stats=1"]
    progress.begin(f"fuzz device: {config} for {seconds} s")
    started = time.monotonic()
    with log.open("w") as f:
        try:
            subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, env=sanitizers.env(),
                           timeout=seconds + 600, check=False)
        except subprocess.TimeoutExpired:
            f.write(f"\n(rig: the fuzzer outlived its {seconds} s by 600 s and was killed)\n")
    secs = time.monotonic() - started
    text = log.read_text(errors="replace")
    stats = {k: int(v) for k, v in _STAT.findall(text)}
    covs = _COV.findall(text)
    crashes = [_crash(fuzzer, qemu, datadir, config, p, text, rundir)
               for p in sorted(crashes_dir.iterdir()) if p.suffix != ".qtest"]
    if not stats and not crashes:
        raise ToolError(f"generic-fuzz-{config} printed no statistics: see {log}",
                        fix="run the command of the log's first lines by hand")
    result = ConfigRun(config, round(secs, 1), stats.get("number_of_executed_units", 0),
                       float(stats.get("average_exec_per_sec", 0)),
                       int(covs[-1][1]) if covs else 0, len(list(corpus.iterdir())),
                       stats.get("new_units_added", 0), crashes)
    progress.done(f"{result.executions} executions, {result.execs_per_sec:.0f}/s, "
                  f"{result.edges} edges, {len(crashes)} crash(es)")
    return result


def _crash(fuzzer: Path, qemu: Path, datadir: Path, config: str, path: Path, text: str,
           rundir: Path) -> Crash:
    m = _REPORT.search(text)
    report = m.group(1) if m else "the fuzzer stopped on this input (see the log)"
    repro = reproducer.make(fuzzer, config, path, path.with_name(f"{path.name}.qtest"))
    replays = repro is not None and reproducer.check_replays(repro, qemu, datadir)
    return Crash(config, str(path), report, str(rundir / config / "fuzz.log"),
                 str(repro) if repro else "", replays)


def render(result: DeviceFuzz) -> str:
    lines = [f"{'configuration':26} {'seconds':>8} {'executions':>11} {'exec/s':>8} "
             f"{'edges':>6} {'corpus':>7}  crashes"]
    for r in result.runs:
        lines.append(f"{r.config:26} {r.seconds:8.1f} {r.executions:11d} "
                     f"{r.execs_per_sec:8.0f} {r.edges:6d} {r.corpus:7d}  {len(r.crashes)}")
    for c in result.crashes:
        lines.append(f"crash in {c.config}: {c.report}\n  input: {c.input}\n"
                     f"  reproducer: {c.reproducer or '(none: see the log)'}"
                     f"{' (replays on qemu-system-x86_64)' if c.replays else ''}\n  log: {c.log}")
    return "\n".join(lines)
