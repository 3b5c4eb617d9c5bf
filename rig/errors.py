"""Error classes, one per stage, each carrying the fix to print."""

from __future__ import annotations


def render(message: str, log: str | None = None, fix: str | None = None) -> str:
    """An error as the CLI prints it: what failed, its log, and the fix."""
    lines = [f"error: {message}"]
    if log:
        lines.append(f"  log: {log}")
    if fix:
        lines.append(f"  fix: {fix}")
    return "\n".join(lines)


def first_line(text: str) -> str:
    """A message's first line (the whole text when it is blank)."""
    return text.splitlines()[0] if text.strip() else text


class RigError(Exception):
    """A failure the user can act on: what went wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None, log: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.log = log

    def render(self) -> str:
        return render(self.message, self.log, self.fix)


class ToolError(RigError):
    """A host program or library the stage needs is missing."""


class SourceError(RigError):
    """A source could not be found, fetched or verified."""


class SeriesError(RigError):
    """A patch of a series does not apply."""


class ConfigError(RigError):
    """A configuration (kernel fragment, configure flags) is not as asked."""


class BuildError(RigError):
    """A compile step failed."""


class CacheError(RigError):
    """The build cache is unusable (locked, unwritable)."""


class AccelError(RigError):
    """The accelerator asked for (`--accel kvm`) cannot run the guests here."""


class GuestError(RigError):
    """The guest panicked, hung or became unreachable."""

    exit_code = 3
