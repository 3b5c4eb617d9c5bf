"""How sanitized QEMU runs under the fuzzers: options and what a report looks like."""

from __future__ import annotations

import os

# An error report ends the process at once (libFuzzer saves the input); a
# leak at exit is QEMU's teardown, not an input's fault
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:symbolize=1",
                 "UBSAN_OPTIONS": "halt_on_error=1:abort_on_error=1:print_stacktrace=1"}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "SUMMARY: ")


def env() -> dict[str, str]:
    """The environment of a sanitized QEMU: this one's, with SANITIZER_ENV."""
    return {**os.environ, **SANITIZER_ENV}
