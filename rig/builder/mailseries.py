"""A patch series from its mails: a directory of patch files or an mbox.

What `b4 am` or a list archive gives: one file per patch (`git
format-patch` output, `.eml`/`.mbx` files) or one mbox holding them all.
The cover letter (0/N) is skipped; the patches are ordered by their N/M
and checked to be one whole series of one version.
"""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from rig import proc
from rig.builder import patchpick
from rig.errors import SeriesError

# [PATCH v11 2/3], [RFC PATCH 1/4], [PATCH 0/3], [PATCH] (a single patch)
_COUNTER = re.compile(r"\[[^\]]*?\b(\d+)/(\d+)\s*\]")
_VERSION = re.compile(r"\[[^\]]*?\bv(\d+)\b[^\]]*\]", re.I)
# The separator line of an mbox (format-patch writes one per mail).
_MBOX_FROM = re.compile(rb"^From \S+ +\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}$", re.M)
_PATCH_SUFFIXES = (".patch", ".diff", ".eml", ".mbx", ".mbox", ".txt")


@dataclass(frozen=True)
class Mail:
    subject: str
    index: int           # N of N/M; 1 for a patch without a counter
    total: int           # M of N/M; 1 for a patch without a counter
    version: int | None
    text: bytes


@dataclass(frozen=True)
class MailSeries:
    location: str
    patches: tuple[Path, ...]
    subjects: tuple[str, ...]
    skipped_cover: bool
    # With --patches: the numbers taken of `total`, and the subjects of the
    # patches left out (or "N/M" for one the mails lack)
    taken: tuple[int, ...] = ()
    total: int = 0
    left_out: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.left_out:
            return (f"series from mails {self.location} (patches "
                    f"{patchpick.describe(list(self.taken))} of {self.total}; left out: "
                    f"{'; '.join(self.left_out)})")
        return f"series from mails {self.location} ({len(self.patches)} patches)"


def _subject(raw: bytes) -> str:
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw,
                                                                           headersonly=True)
    value = msg.get("Subject")
    if value is None:
        return ""
    text = str(email.header.make_header(email.header.decode_header(str(value))))
    return " ".join(text.split())


def parse(raw: bytes) -> Mail:
    subject = _subject(raw)
    m = _COUNTER.search(subject)
    v = _VERSION.search(subject)
    index, total = (int(m.group(1)), int(m.group(2))) if m else (1, 1)
    return Mail(subject, index, total, int(v.group(1)) if v else None, raw)


def _split_mbox(path: Path, dest: Path) -> list[Path]:
    """git mailsplit: one file per message of the mbox."""
    dest.mkdir(parents=True)
    res = proc.run_captured(["git", "mailsplit", "-b", f"-o{dest}", str(path)], timeout=300,
                            error=SeriesError)
    if res.returncode != 0:
        raise SeriesError(f"{path} is not an mbox git can split: {res.stderr.strip()}",
                          fix="pass an mbox (b4 am -o DIR) or a directory of patch files")
    return sorted(p for p in dest.iterdir() if p.is_file())


def _messages(path: Path, scratch: Path) -> list[bytes]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.name.lower().endswith(_PATCH_SUFFIXES))
        if not files:
            raise SeriesError(f"{path} holds no patch files ({', '.join(_PATCH_SUFFIXES)})",
                              fix="write the series there with git format-patch or b4 am")
        out: list[bytes] = []
        for f in files:
            raw = f.read_bytes()
            # A file of the directory may itself be an mbox of several mails.
            if len(_MBOX_FROM.findall(raw)) > 1:
                out += [p.read_bytes() for p in _split_mbox(f, scratch / f.name)]
            else:
                out.append(raw)
        return out
    if path.is_file():
        return [p.read_bytes() for p in _split_mbox(path, scratch / "mbox")]
    raise SeriesError(f"series {path} does not exist",
                      fix="give a directory of patch files or an mbox")


def order(mails: list[Mail], where: str,
          pick: patchpick.Pick | None = None) -> tuple[list[Mail], bool]:
    """The patches in N order without the cover letter; checked to be one whole
    series, or with `pick` to hold every patch it picks."""
    cover = [m for m in mails if m.index == 0]
    patches = [m for m in mails if m.index != 0]
    if not patches:
        raise SeriesError(f"{where} holds only a cover letter", fix="add the patches")
    versions = {m.version for m in mails}
    if len(versions) > 1:
        shown = ", ".join(sorted(f"v{v}" if v else "unversioned" for v in versions))
        raise SeriesError(f"{where} mixes versions of the series ({shown})",
                          fix="keep the mails of one version only")
    totals = {m.total for m in patches}
    if len(totals) > 1:
        raise SeriesError(f"{where}: the patches disagree on the series length "
                          f"({', '.join(map(str, sorted(totals)))})",
                          fix="keep the mails of one posting only")
    total = totals.pop()
    seen: dict[int, Mail] = {}
    for m in patches:
        if m.index in seen:
            raise SeriesError(f"{where} holds patch {m.index}/{total} twice: "
                              f"{seen[m.index].subject!r} and {m.subject!r}",
                              fix="keep one copy of each patch")
        seen[m.index] = m
    wanted = pick.numbers(total) if pick else list(range(1, total + 1))
    if not wanted:
        raise SeriesError(f"--patches {pick.spec if pick else ''} picks none of the "
                          f"{total} patches of {where}", fix=f"give numbers from 1 to {total}")
    missing = [n for n in wanted if n not in seen]
    if missing:
        raise SeriesError(f"{where} lacks patch(es) {', '.join(f'{n}/{total}' for n in missing)}",
                          fix="fetch the whole series (b4 am MESSAGE-ID)" if not pick else
                          "fetch the whole series (b4 am MESSAGE-ID), or leave them out of "
                          "--patches")
    return [seen[n] for n in wanted], bool(cover)


def _slug(subject: str) -> str:
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", subject)
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:52] or "patch"


def load(path: Path, scratch_root: Path, pick: patchpick.Pick | None = None) -> MailSeries:
    """Split and order the series at `path`, the patches `pick` takes or all; the
    patch files land under scratch_root."""
    path = path.expanduser().resolve()
    h = hashlib.sha256()
    tmp = scratch_root / ".split"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        raws = _messages(path, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for raw in raws:
        h.update(hashlib.sha256(raw).digest())
    if pick:
        h.update(pick.spec.encode())
    mails = [parse(r) for r in raws]
    patches, had_cover = order(mails, str(path), pick)
    dest = scratch_root / h.hexdigest()[:16]
    if not dest.is_dir():
        part = dest.with_name(dest.name + ".partial")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for n, m in enumerate(patches, 1):
            (part / f"{n:04d}-{_slug(m.subject)}.patch").write_bytes(m.text)
        part.rename(dest)
    files = tuple(sorted(dest.glob("*.patch")))
    taken = tuple(m.index for m in patches)
    if not pick or len(taken) == patches[0].total:
        return MailSeries(str(path), files, tuple(m.subject for m in patches), had_cover)
    by_index = {m.index: m.subject for m in mails if m.index}
    total = patches[0].total
    left = tuple(by_index.get(n, f"{n}/{total} (not in the mails)")
                 for n in range(1, total + 1) if n not in taken)
    return MailSeries(str(path), files, tuple(m.subject for m in patches), had_cover,
                      taken, total, left)


__all__ = ["Mail", "MailSeries", "load", "order", "parse"]
