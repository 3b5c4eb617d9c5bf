"""Device-level tests of tph-testdev under QEMU's qtest accelerator."""

import pytest

# Helpers assert too: have pytest show the compared values, as in test modules.
pytest.register_assert_rewrite(*(f"{__name__}.{m}" for m in ("hints", "pci", "rigs", "tphdev")))
