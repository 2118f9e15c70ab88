"""A site's energy source in the layout (`maillage.placement.energy`): declared, validated, kept in the
canonical text only when set (an old layout formats byte for byte as before)."""

from __future__ import annotations

import pytest

from maillage.placement import Layout, LayoutError, Node, Policy, Site, format_layout, parse_layout
from maillage.placement.changes import layout_diff, set_site_energy, set_site_power
from maillage.placement.energy import FileSource, HttpSource, PowerFigures, SolarModel, parse_energy_source, parse_power

OLD_TEXT = """version = 1
partition_bits = 4

[[sites]]
name = "paris-1"
location = "eu/fr/idf"

[[nodes]]
id = "n1"
site = "paris-1"
address = "10.0.0.1:7000"
capacity = "1TB"

[[policies]]
name = "fr"
allow = ["eu/fr"]
replicas = 2
"""


def test_the_three_kinds_of_source() -> None:
    assert parse_energy_source("file:/var/lib/maillage/energy.json") == FileSource("/var/lib/maillage/energy.json")
    assert parse_energy_source("https://bms.local/energy") == HttpSource("https://bms.local/energy")
    assert parse_energy_source("solar:lat=43.6,lon=1.44,peak_w=6000,load_w=2500,carbon=55") == \
        SolarModel(43.6, 1.44, 6000.0, 2500.0, 55.0)
    assert parse_energy_source("solar:lon=2,lat=48.8,peak_w=3000") == SolarModel(48.8, 2.0, 3000.0)


@pytest.mark.parametrize("text, words", [
    ("", "printable"), ("file:relative.json", "absolute"), ("ftp://x", "must start with"),
    ("http:", "URL"), ("solar:lat=43", "lon missing"), ("solar:lat=95,lon=1,peak_w=1", "lat must be"),
    ("solar:lat=1,lon=1,peak_w=nan", "peak_w must be"), ("solar:lat=1,lat=2", "twice"),
    ("solar:lat=1,lon=1,peak_w=1,colour=red", "key=value"), ("file:/a b", "printable"), ("x" * 600, "printable"),
])
def test_a_bad_source_is_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(LayoutError, match=words):
        parse_energy_source(text)
    with pytest.raises(LayoutError, match=r"sites\[0\]\.energy"):
        parse_layout(OLD_TEXT.replace('location = "eu/fr/idf"', f'location = "eu/fr/idf"\nenergy = "{text}"'))


def test_an_old_layout_reads_and_formats_byte_for_byte() -> None:
    layout = parse_layout(OLD_TEXT)
    assert layout.sites[0].energy is None
    assert format_layout(layout) == OLD_TEXT


def test_a_declared_source_round_trips_and_is_set_by_an_admin_edit() -> None:
    layout = parse_layout(OLD_TEXT)
    edited = set_site_energy(layout, "paris-1", "file:/run/energy.json")
    text = format_layout(edited)
    assert 'energy = "file:/run/energy.json"' in text
    assert parse_layout(text) == edited
    assert set_site_energy(edited, "paris-1", None) == layout
    assert layout_diff(layout, edited) == [
        "~ site paris-1 at eu/fr/idf  ->  site paris-1 at eu/fr/idf, energy file:/run/energy.json"]
    with pytest.raises(LayoutError, match="energy"):
        set_site_energy(layout, "paris-1", "nowhere")


def test_a_site_built_in_code_checks_its_source() -> None:
    with pytest.raises(LayoutError, match="energy"):
        Site("a", ("eu",), energy="solar:")
    layout = Layout(version=1, partition_bits=4, sites=(Site("a", ("eu",), energy="solar:lat=1,lon=1,peak_w=1"),),
                    nodes=(Node("n", "10.0.0.1:7000", "a", 1 << 40),), policies=(Policy("p", (("eu",),)),))
    assert parse_layout(format_layout(layout)) == layout


def test_power_figures_are_declared_bounded_and_round_trip() -> None:
    assert parse_power("idle_w=35,read_nj=1.5") == PowerFigures(idle_w=35.0, read_nj=1.5)
    assert parse_power("transfer_nj=0") == PowerFigures(transfer_nj=0.0)
    layout = parse_layout(OLD_TEXT)
    edited = set_site_power(layout, "paris-1", "idle_w=35,write_nj=4")
    text = format_layout(edited)
    assert 'power = "idle_w=35,write_nj=4"' in text and parse_layout(text) == edited
    assert set_site_power(edited, "paris-1", None) == layout and format_layout(layout) == OLD_TEXT
    assert layout_diff(layout, edited) == [
        "~ site paris-1 at eu/fr/idf  ->  site paris-1 at eu/fr/idf, power idle_w=35,write_nj=4"]


@pytest.mark.parametrize("text, words", [
    ("", "printable"), ("idle_w=-1", "idle_w must be"), ("idle_w=1e7", "idle_w must be"), ("read_nj=inf", "read_nj"),
    ("idle_w=1,idle_w=2", "twice"), ("watts=3", "key=value"), ("idle_w", "key=value"), ("idle_w=x", "a number"),
    ("x" * 600, "printable"),
])
def test_bad_power_figures_are_refused_naming_the_field(text: str, words: str) -> None:
    with pytest.raises(LayoutError, match=words):
        parse_power(text)
    with pytest.raises(LayoutError, match=r"sites\[0\]\.power"):
        parse_layout(OLD_TEXT.replace('location = "eu/fr/idf"', f'location = "eu/fr/idf"\npower = "{text}"'))
