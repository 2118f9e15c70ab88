"""The four-site mesh of the admin tests: three French regions and one German site."""

from __future__ import annotations

from maillage.placement import Policy
from maillage.testing.localmesh import SiteSpec

SITES = (
    SiteSpec("paris-1", "eu/fr/idf"),
    SiteSpec("toulouse-1", "eu/fr/occitanie"),
    SiteSpec("lyon-1", "eu/fr/ara"),
    SiteSpec("munich-1", "eu/de/bayern"),
)
POLICIES = (
    Policy(name="france-only", allow=(("eu", "fr"),), replicas=2, spread=3),
    # spread 2 over eu/fr and eu/de: every EU-wide partition keeps one copy on munich-1
    Policy(name="eu-wide", allow=(("eu",),), replicas=2, spread=2),
)
