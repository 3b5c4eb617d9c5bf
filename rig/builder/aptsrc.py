"""A private apt configuration for Debian source and download-only fetches.

It never touches the system's apt sources: the mirror is read from them and
a separate configuration (sources list, lists, cache) lives in the rig
cache, so adding a newer suite here cannot upgrade anything installed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from debian import deb822

from rig import proc
from rig.errors import SourceError

DEBIAN_SUITES = {"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
                 "oldstable", "stable", "testing", "unstable"}
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: str


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    """The stanzas of a deb822 .sources file, keys lower-cased (python-debian's parser)."""
    return [{k.lower(): v for k, v in para.items()}
            for para in deb822.Deb822.iter_paragraphs(text.splitlines(keepends=True))]


_ONE_LINE = re.compile(r"^(deb|deb-src)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$")


def parse_sources(files: dict[str, str]) -> list[Mirror]:
    """Debian mirrors (not security archives) named in apt source files.

    `files` maps a file name to its text; both the one-line (.list) and
    deb822 (.sources) formats are read.
    """
    found: list[Mirror] = []
    for name, text in files.items():
        entries: list[tuple[str, list[str], str]] = []
        if name.endswith(".sources"):
            for st in _deb822_stanzas(text):
                if st.get("enabled", "yes").lower() == "no":
                    continue
                for uri in st.get("uris", "").split():
                    entries.append((uri, st.get("suites", "").split(),
                                    st.get("signed-by", "").strip()))
        else:
            for line in text.splitlines():
                m = _ONE_LINE.match(line.strip())
                if not m:
                    continue
                opts = m.group(2) or ""
                km = re.search(r"signed-by=(\S+?)[\s\]]", opts)
                entries.append((m.group(3), [m.group(4)], km.group(1) if km else ""))
        for uri, suites, keyring in entries:
            bases = {s.split("-")[0] for s in suites if not s.endswith("-security")}
            if not bases & DEBIAN_SUITES:
                continue
            if not keyring.startswith("/"):
                keyring = DEFAULT_KEYRING
            mirror = Mirror(uri.rstrip("/"), keyring)
            if mirror not in found:
                found.append(mirror)
    return found


def system_mirror(etc: Path = Path("/etc/apt")) -> Mirror:
    files: dict[str, str] = {}
    main = etc / "sources.list"
    if main.is_file():
        files[str(main)] = main.read_text(errors="replace")
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for p in sorted(parts.iterdir()):
            if p.suffix in (".list", ".sources") and p.is_file():
                files[str(p)] = p.read_text(errors="replace")
    mirrors = parse_sources(files)
    if not mirrors:
        raise SourceError(
            "no Debian mirror found in this machine's apt sources (/etc/apt)",
            fix="pass a source instead: --qemu-tarball/--kernel-tarball PATH_OR_URL with "
                "--qemu-sha256/--kernel-sha256, or --qemu-tree/--kernel-tree DIR")
    return mirrors[0]


class PrivateApt:
    """apt-get with its own sources, lists and cache under `root`."""

    def __init__(self, root: Path, mirror: Mirror, log: Path) -> None:
        self.root = root
        self.mirror = mirror
        self.log = log
        self.conf = root / "apt.conf"

    def _write_config(self, lines: list[str]) -> None:
        for sub in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                    "etc/preferences.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/sources.list").write_text("\n".join(lines) + "\n")
        r = self.root
        self.conf.write_text(
            f'Dir::Etc::SourceList "{r}/etc/sources.list";\n'
            f'Dir::Etc::SourceParts "{r}/etc/sources.list.d";\n'
            f'Dir::Etc::Preferences "{r}/etc/preferences";\n'
            f'Dir::Etc::PreferencesParts "{r}/etc/preferences.d";\n'
            f'Dir::State::Lists "{r}/lists";\n'
            f'Dir::State::status "/dev/null";\n'
            f'Dir::Cache "{r}/cache";\n'
            'APT::Architecture "amd64";\n'
            'APT::Sandbox::User "root";\n'
        )

    def _env(self) -> dict[str, str]:
        return {"APT_CONFIG": str(self.conf), "DEBIAN_FRONTEND": "noninteractive"}

    def update(self, deb_src: list[str], deb: list[str]) -> None:
        """Point the private sources at the suites asked for and fetch their lists."""
        m = self.mirror
        lines = [f"deb-src [signed-by={m.keyring}] {m.uri} {s} main" for s in deb_src]
        lines += [f"deb [signed-by={m.keyring}] {m.uri} {s} main" for s in deb]
        stamp = self.root / "etc/sources.list"
        wanted = "\n".join(lines) + "\n"
        lists_ok = stamp.is_file() and stamp.read_text() == wanted and any(
            (self.root / "lists").glob("*_InRelease"))
        if lists_ok:
            return
        self._write_config(lines)
        proc.run(["apt-get", "update"], log=self.log, env=self._env(), timeout=600,
                 error=SourceError, what=f"apt-get update of {m.uri} ({', '.join(deb_src + deb)})",
                 fix=f"check that {m.uri} is reachable, or pass --qemu-tarball/--kernel-tarball")

    def source(self, package: str, version: str, dest: Path) -> None:
        proc.run(["apt-get", "source", "--download-only", f"{package}={version}"],
                 cwd=dest, log=self.log, env=self._env(), timeout=1800, error=SourceError,
                 what=f"apt-get source {package}={version}",
                 fix="check the pinned version in rig/data/sources.toml exists in the suite")

    def download(self, package: str, version: str, dest: Path) -> None:
        proc.run(["apt-get", "download", f"{package}={version}"],
                 cwd=dest, log=self.log, env=self._env(), timeout=1800, error=SourceError,
                 what=f"apt-get download {package}={version}",
                 fix="check the pinned version in rig/data/sources.toml exists in the suite")


def apt_available() -> bool:
    return os.path.exists("/usr/bin/apt-get")
