from __future__ import annotations

import json
import shutil
from pathlib import Path

import filelock
import pytest

from rig.builder import cache, compilecache, kernel_build, qemu_build, sources
from rig.errors import BuildError, CacheError, ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_key_is_stable_and_order_free() -> None:
    assert cache.input_key({"a": 1, "b": [1, 2]}) == cache.input_key({"b": [1, 2], "a": 1})
    assert cache.input_key({"a": 1}) != cache.input_key({"a": 2})


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's inputs the test may change."""
    root = tmp_path / "repo"
    for d in ("qemu-device", "kernel-patches", "guest-image", "importer"):
        shutil.copytree(REPO / d, root / d)
    qd = root / "qemu-device"
    if not list(qd.glob("*.patch")):
        (qd / "0001-test.patch").write_text("Subject: [PATCH] x\n\n---\n")
    monkeypatch.setenv("TPHLAB_REPO", str(root))
    return root


def _qemu_key() -> str:
    src = sources.resolve("qemu")
    return cache.input_key(qemu_build.key_inputs(src))


def _kernel_key(config: str = "default") -> str:
    src = sources.resolve("kernel")
    return cache.input_key(kernel_build.key_inputs(src, config))


def test_a_changed_patch_byte_changes_the_key(repo_copy: Path) -> None:
    before = _qemu_key()
    patch = sorted((repo_copy / "qemu-device").glob("*.patch"))[0]
    data = bytearray(patch.read_bytes())
    data[-2] ^= 0x01
    patch.write_bytes(bytes(data))
    assert _qemu_key() != before


def test_an_unrelated_file_does_not_change_the_key(repo_copy: Path) -> None:
    before = _qemu_key()
    (repo_copy / "qemu-device" / "NOTES.md").write_text("notes\n")
    (repo_copy / "README.md").write_text("changed\n")
    assert _qemu_key() == before


def test_fragment_change_changes_only_the_kernel_key(repo_copy: Path) -> None:
    frag = repo_copy / "kernel-patches/tphlab.config"
    if not frag.exists():
        frag.write_text("CONFIG_PCI=y\n")
    q, k, d = _qemu_key(), _kernel_key(), _kernel_key("debug")
    frag.write_text(frag.read_text() + "CONFIG_FOO=y\n")
    assert _qemu_key() == q
    assert _kernel_key() != k
    assert _kernel_key("debug") != d


def test_debug_fragment_changes_only_the_debug_kernel_key(repo_copy: Path) -> None:
    k, d = _kernel_key(), _kernel_key("debug")
    assert k != d
    debug = repo_copy / "kernel-patches/debug.config"
    debug.write_text(debug.read_text() + "CONFIG_FOO=y\n")
    assert _kernel_key() == k
    assert _kernel_key("debug") != d


def test_the_incbin_guard_is_an_input_of_the_kernel_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard decides which objects ccache may give the kernel build: a new
    guard is a new kernel, not a cache hit on what the old one let through."""
    guard = tmp_path / "guard.sh"
    guard.write_bytes(compilecache.INCBIN_GUARD.read_bytes())
    monkeypatch.setattr(compilecache, "INCBIN_GUARD", guard)
    q, k = _qemu_key(), _kernel_key()
    guard.write_text(guard.read_text() + "# changed\n")
    assert _kernel_key() != k
    assert _qemu_key() == q


def test_sanitized_qemu_is_cached_apart() -> None:
    src = sources.resolve("qemu")
    assert (cache.input_key(qemu_build.key_inputs(src, sanitize=True))
            != cache.input_key(qemu_build.key_inputs(src)))


def test_unknown_kernel_config_names_the_choices() -> None:
    with pytest.raises(ConfigError) as exc:
        kernel_build.fragments("fast")
    fix = exc.value.fix or ""
    assert "default" in fix and "debug" in fix


def test_interrupted_build_leaves_no_entry(tmp_path: Path) -> None:
    c = cache.Cache(tmp_path)
    with pytest.raises(BuildError), c.new_entry("qemu", "k1") as tmp:
        (tmp / "qemu-system-x86_64").write_text("half")
        raise BuildError("compile failed")
    assert c.lookup("qemu", "k1") is None
    assert not any((tmp_path / "artifacts" / "qemu").iterdir())


def test_complete_entry_is_a_hit_and_missing_artifact_is_not(tmp_path: Path) -> None:
    c = cache.Cache(tmp_path)
    with c.new_entry("kernel", "k2") as tmp:
        (tmp / "bzImage").write_text("img")
        cache.write_meta(tmp, {"artifacts": {"kernel": "bzImage"}})
    hit = c.lookup("kernel", "k2")
    assert hit is not None and hit.artifact("bzImage").read_text() == "img"
    (hit.path / "bzImage").unlink()
    assert c.lookup("kernel", "k2") is None


def test_partial_dirs_are_purged(tmp_path: Path) -> None:
    c = cache.Cache(tmp_path)
    stale = tmp_path / "artifacts" / "qemu" / ".abc.partial-123"
    stale.mkdir(parents=True)
    (stale / "meta.json").write_text(json.dumps({"artifacts": {}}))
    assert c.lookup("qemu", "abc") is None
    c.purge_partials()
    assert not stale.exists()


def test_a_build_that_waits_for_the_cache_lock_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    held = filelock.FileLock(tmp_path / "lock")
    # Another holder of the lock: the build waits (saying so), then times out.
    with held, pytest.raises(CacheError, match="locked by another rig build"), \
            cache.Cache(tmp_path).locked(timeout=0.2, on_wait=said.append):
        pass
    assert len(said) == 1 and "waiting for another rig's build" in said[0]
    said.clear()
    with cache.Cache(tmp_path).locked(on_wait=said.append):
        pass
    assert said == [], "a free lock is taken without a word"


def test_run_directories_made_in_the_same_second_are_apart(cache_home: Path) -> None:
    from rig.paths import run_dir
    made = [run_dir("bench") for _ in range(3)]
    assert len(set(made)) == 3 and all(d.is_dir() for d in made)
