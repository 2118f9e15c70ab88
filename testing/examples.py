"""How many examples a property test runs: hypothesis settings profiles, chosen by one variable.

``tests/conftest.py`` calls `load_profile()` once, before any test module is imported, so every
``@settings`` in the tests is built on the chosen profile:

* ``ci`` (the default): what CI runs, 100 examples a test, hypothesis' default deadline;
* ``thorough``: ten times the examples and no deadline, for a long run before a release or after
  touching a parser (``HYPOTHESIS_PROFILE=thorough python3 -m pytest -p no:cacheprovider``).

A test whose examples are expensive (each one starts a mesh, walks a big layout) or cheap runs a
share of the profile's count, `examples(0.4)`, never a literal, so ``thorough`` scales it too.
"""

from __future__ import annotations

import os

from hypothesis import settings

__all__ = ["PROFILES", "examples", "load_profile"]

PROFILES = {
    "ci": settings(max_examples=100),
    "thorough": settings(max_examples=1000, deadline=None),
}
VARIABLE = "HYPOTHESIS_PROFILE"


def load_profile() -> str:
    """Register the profiles and load the one `HYPOTHESIS_PROFILE` names (default ``ci``)."""
    for name, profile in PROFILES.items():
        settings.register_profile(name, profile)
    name = os.environ.get(VARIABLE, "ci")
    if name not in PROFILES:
        raise ValueError(f"{VARIABLE}={name!r}: the profiles are {', '.join(PROFILES)}")
    settings.load_profile(name)
    return name


def examples(share: float, minimum: int = 5) -> int:
    """`share` of the loaded profile's examples per test (0.4: 40 under ``ci``, 400 under
    ``thorough``), at least `minimum`. Read when the test's ``@settings`` is built, so the profile
    must be loaded before the test module is imported (the root conftest does it)."""
    return max(minimum, round(settings().max_examples * share))  # settings(): the loaded profile
