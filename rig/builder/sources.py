"""Where a component's source comes from, and getting it onto disk.

Preference: a user tree (used as is), a tarball (path or URL with a pinned
sha256), Debian's packages. The chosen source is recorded in the build's
metadata and its identity feeds the cache key.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rig import proc
from rig.builder import aptsrc, mailseries, patchpick, treestate
from rig.errors import SourceError
from rig.paths import DATA_DIR, cache_root

Component = Literal["qemu", "kernel", "sparse"]
Kind = Literal["tree", "tarball", "debian"]

# Which pin a component's source comes from when no option names one:
# "debian" (the default: Debian's packages, through the mirror this machine
# already uses) or "upstream" (the release tarballs of [*.upstream], for
# machines without Debian's archive, such as GitHub's Ubuntu runners).
SOURCES_ENV = "TPHLAB_SOURCES"
ORIGINS = ("debian", "upstream")


def origin() -> str:
    value = os.environ.get(SOURCES_ENV, "debian")
    if value not in ORIGINS:
        raise SourceError(f"{SOURCES_ENV}={value!r} is not a source origin",
                          fix=f"set {SOURCES_ENV} to one of: {', '.join(ORIGINS)}")
    return value


@dataclass(frozen=True)
class Source:
    """A component's source: where its base comes from and which patches go on it.

    `tree` is set for a user's tree (built as is, keyed by its content);
    `mails` for a series from its mails, applied on the pinned base
    instead of the repository's own series.
    """

    component: Component
    kind: Kind
    location: str            # tree path, tarball path/URL, or "package=version"
    version: str              # upstream version, or "tree" for user trees
    sha256: str = ""
    debian: dict[str, str] = field(default_factory=dict)
    tree: treestate.TreeState | None = None
    mails: mailseries.MailSeries | None = None

    def identity(self) -> dict[str, str]:
        """What the cache key hashes of the base: a tree's content, a tarball's digest."""
        if self.tree is not None:
            return self.tree.identity()
        return {"kind": self.kind, "version": self.version, "sha256": self.sha256}

    @property
    def cacheable(self) -> bool:
        """False for a tree whose content has no cheap identity (not a git work tree)."""
        return self.tree is None or self.tree.cacheable

    def describe(self) -> str:
        if self.tree is not None:
            return self.tree.describe()
        if self.kind == "debian":
            return f"Debian {self.location} ({self.debian.get('suite')})"
        return f"{self.kind} {self.location}"

    def detail(self, ours: int = 0) -> dict[str, object]:
        """What was tested, for reports: `ours` is the length of the repository's series."""
        if self.tree is not None:
            return {**self.tree.detail(), "describe": self.describe()}
        doc: dict[str, object] = {"kind": self.kind, "base": self.describe()}
        if self.mails is not None:
            doc.update(series="mails", series_location=self.mails.location,
                       subjects=list(self.mails.subjects))
            if self.mails.left_out:
                doc.update(patches_taken=list(self.mails.taken),
                           patches_left_out=list(self.mails.left_out))
            doc["describe"] = f"{self.describe()} + {self.mails.describe()}"
        else:
            doc.update(series="ours", patches=ours)
            doc["describe"] = f"{self.describe()} + our series ({ours} patches)"
        return doc


def load_pins(path: Path | None = None) -> dict[str, Any]:
    with (path or DATA_DIR / "sources.toml").open("rb") as f:
        return tomllib.load(f)


def resolve(component: Component, tree: str | None = None, tarball: str | None = None,
            sha256: str | None = None, pins: dict[str, Any] | None = None,
            series: str | None = None, patches: str | None = None) -> Source:
    """Pick the source for `component` from the options and the pins.

    series: a directory of patch files or an mbox, applied on the pinned
    base instead of the repository's series; patches: which of them (b4's
    -P lists and ranges, rig.builder.patchpick), all when None.
    """
    if patches and not series:
        raise SourceError(f"--{component}-patches {patches} picks patches of a series given "
                          f"with --{component}-series, and there is none",
                          fix=f"add --{component}-series DIR_OR_MBOX, or drop the pick")
    pins = pins if pins is not None else load_pins()
    pin = pins.get(component, {})
    if tree:
        if series:
            raise SourceError(f"--{component}-tree and --{component}-series both given",
                              fix=f"a tree is built as is; apply the series there, or drop "
                                  f"--{component}-tree to apply it on the pinned base")
        path = Path(tree).expanduser().resolve()
        marker = "Makefile" if component == "kernel" else "configure"
        if not (path / marker).is_file():
            raise SourceError(f"--{component}-tree {tree}: no {marker} there, not a "
                              f"{component} source tree",
                              fix=f"point --{component}-tree at the top of a {component} tree")
        state = treestate.read(path, exclude=[cache_root()])
        return Source(component, "tree", str(path), "tree", tree=state)
    base = _resolve_base(component, pin, tarball, sha256)
    if series:
        pick = patchpick.parse(patches) if patches else None
        mails = mailseries.load(Path(series), cache_root() / "work" / f"{component}-mails",
                                pick)
        return Source(base.component, base.kind, base.location, base.version, base.sha256,
                      base.debian, mails=mails)
    return base


def _resolve_base(component: Component, pin: dict[str, Any], tarball: str | None,
                  sha256: str | None) -> Source:
    tb = pin.get("tarball", {})
    location = tarball or tb.get("url", "")
    if location:
        digest = (sha256 or (tb.get("sha256", "") if not tarball else "")).lower()
        if not digest:
            raise SourceError(f"--{component}-tarball {location} has no sha256 pinned",
                              fix=f"add --{component}-sha256 HEX (sha256sum of the tarball)")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SourceError(f"--{component}-sha256 {digest!r} is not a sha256 hex digest",
                              fix="give the 64 hex digits sha256sum prints")
        return Source(component, "tarball", location, pin.get("version", "unknown"), digest)
    if origin() == "upstream":
        up = pin.get("upstream")
        if not up:
            raise SourceError(f"{SOURCES_ENV}=upstream but {component} has no [{component}."
                              "upstream] pin", fix="add its url, version and sha256 to "
                              "rig/data/sources.toml, or unset " + SOURCES_ENV)
        return Source(component, "tarball", up["url"], up["version"], up["sha256"].lower())
    deb = pin.get("debian")
    if not deb:
        raise SourceError(f"no source for {component}: no tree, tarball or Debian pin",
                          fix=f"pass --{component}-tree DIR or --{component}-tarball PATH")
    return Source(component, "debian", f"{deb['package']}={deb['version']}",
                  pin.get("version", "unknown"), deb["sha256"].lower(),
                  {k: str(v) for k, v in deb.items()})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise SourceError(f"{what}: sha256 mismatch: expected {expected}, got {actual}",
                          fix="check the file is the pinned release; if the pin is wrong, "
                              "fix the sha256 you passed or rig/data/sources.toml")


def fetch(src: Source, downloads: Path, log: Path, apt_root: Path) -> Path:
    """Return a verified tarball for a tarball or Debian source."""
    downloads.mkdir(parents=True, exist_ok=True)
    if src.kind == "tarball":
        return _fetch_tarball(src, downloads)
    if src.kind == "debian":
        return _fetch_debian(src, downloads, log, apt_root)
    raise SourceError(f"{src.describe()} is a tree, nothing to fetch")


def _fetch_tarball(src: Source, downloads: Path) -> Path:
    loc = src.location
    if "://" not in loc:
        path = Path(loc).expanduser()
        if not path.is_file():
            raise SourceError(f"tarball {loc} does not exist",
                              fix="give the path of a downloaded release tarball")
        _verify(path, src.sha256, f"tarball {loc}")
        return path.resolve()
    name = loc.rstrip("/").rsplit("/", 1)[-1]
    final = downloads / f"{src.sha256[:12]}-{name}"
    if final.is_file():
        return final
    partial = final.with_name(final.name + ".partial")
    try:
        with urllib.request.urlopen(loc, timeout=60) as resp, partial.open("wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise SourceError(f"cannot download {loc}: {exc}",
                          fix="check the network or download it yourself and pass the "
                              "path instead of the URL") from exc
    try:
        _verify(partial, src.sha256, f"download {loc}")
    except SourceError:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(final)
    return final


def _fetch_debian(src: Source, downloads: Path, log: Path, apt_root: Path) -> Path:
    deb = src.debian
    final_name = deb.get("member", deb["file"]).rsplit("/", 1)[-1]
    final = downloads / f"{src.sha256[:12]}-{final_name}"
    if final.is_file():
        return final
    fetched = downloads / deb["file"]
    if not (fetched.is_file() and sha256_file(fetched) == src.sha256):
        if not aptsrc.apt_available():
            raise SourceError("apt-get is not available to fetch Debian's packages",
                              fix=f"pass --{src.component}-tarball PATH --{src.component}-sha256 "
                                  "HEX instead")
        apt = aptsrc.PrivateApt(apt_root, aptsrc.system_mirror(), log)
        if deb["kind"] == "source":
            apt.update(deb_src=[deb["suite"]], deb=[])
            apt.source(deb["package"], deb["version"], downloads)
        else:
            apt.update(deb_src=[], deb=[deb["suite"]])
            apt.download(deb["package"], deb["version"], downloads)
        if not fetched.is_file():
            raise SourceError(f"apt fetched {src.location} but {deb['file']} is not there",
                              fix="check the pinned file name in rig/data/sources.toml",
                              log=str(log))
    _verify(fetched, src.sha256, f"Debian {deb['file']}")
    member = deb.get("member")
    if not member:
        fetched.rename(final)
        return final
    partial = final.with_name(final.name + ".partial")
    proc.run(["sh", "-c", f'dpkg-deb --fsys-tarfile "$1" | tar -xO "./{member}" > "$2"',
              "sh", str(fetched), str(partial)],
             log=log, error=SourceError, what=f"extracting {member} from {deb['file']}")
    partial.rename(final)
    fetched.unlink()
    return final


def extract(tarball: Path, dest: Path, log: Path) -> Path:
    """Unpack `tarball` into dest (its single top directory becomes dest)."""
    tmp = dest.with_name(dest.name + ".extracting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    proc.run(["tar", "-xf", tarball, "--no-same-owner", "-C", tmp], log=log,
             error=SourceError, what=f"unpacking {tarball.name}",
             fix="the tarball is damaged: delete it and fetch again")
    entries = list(tmp.iterdir())
    top = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    shutil.rmtree(dest, ignore_errors=True)
    top.rename(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    return dest


__all__ = ["Source", "extract", "fetch", "load_pins", "resolve", "sha256_file"]
