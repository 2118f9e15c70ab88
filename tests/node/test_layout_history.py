"""The layouts a node applied before its current one (`LayoutState.history`): what repair and
bucket lookups ask the earlier owners by. Bounded, newest first, kept across restarts."""

from __future__ import annotations

from maillage.node.trust.layout_state import HISTORY, LayoutState
from maillage.placement import changes, format_layout

from .conftest import make_layout


def test_the_history_keeps_the_last_layouts_newest_first_across_a_restart(tmp_path):
    path = tmp_path / "layout.toml"
    state = LayoutState(path, make_layout())
    assert state.history() == []
    built = state.table("france-only")
    layout = make_layout()
    for version in range(2, HISTORY + 4):
        layout = changes.bump(layout, version)
        assert state.offer(layout)
        if version == 2:  # the table of the layout replaced is kept for it, not built again
            assert state.history_table(state.history()[0], "france-only") is built
    assert not state.offer(make_layout(version=3))  # an older one changes nothing
    versions = [h.version for h in state.history()]
    assert versions == list(range(HISTORY + 2, 2, -1))  # the newest HISTORY before the current one
    again = LayoutState(path)
    assert [h.version for h in again.history()] == versions and again.current.version == HISTORY + 3
    assert again.history_table(again.history()[0], "france-only") is not None
    assert again.history_table(again.history()[0], "germany-only") is None  # one German site: unplaceable


def test_a_newer_layout_given_at_start_puts_the_stored_one_in_the_history(tmp_path):
    path = tmp_path / "layout.toml"
    LayoutState(path, make_layout())
    state = LayoutState(path, make_layout(version=5))
    assert state.current.version == 5 and [h.version for h in state.history()] == [1]
    assert LayoutState(path, make_layout(version=2)).current.version == 5  # an older one given: kept stored


def test_layouts_learnt_from_a_peer_join_the_history_in_order_once(tmp_path):
    state = LayoutState(tmp_path / "layout.toml", make_layout(version=HISTORY + 5))
    for version in (3, 1, 3, HISTORY + 5, *range(4, HISTORY + 5)):
        state.add_history(make_layout(version=version), b"sig", format_layout(make_layout(version=version)))
    assert [h.version for h in state.history()] == list(range(HISTORY + 4, 4, -1))[:HISTORY]
    assert state.history_doc(HISTORY + 5) == (HISTORY + 4, format_layout(make_layout(version=HISTORY + 4)), b"sig")
    assert state.history_doc(5) is None  # older ones fell off


def test_get_layout_before_any_version_answers_one_kept_layout_or_none(tmp_path):
    """`GetLayout(before=...)` from any caller: any uint64 is a comparison against the kept
    versions, the answer one layout as it was signed, or none (never an error, never more)."""
    state = LayoutState(tmp_path / "layout.toml", make_layout())
    layout = make_layout()
    for version in (2, 3, 4):
        layout = changes.bump(layout, version)
        assert state.offer(layout, b"sig-%d" % version)
    assert state.history_doc(0) is None and state.history_doc(1) is None   # nothing below version 1
    assert state.history_doc(2)[0] == 1
    assert [state.history_doc(b)[0] for b in (3, 4)] == [2, 3]
    for huge in (5, 2**32, 2**64 - 1):   # above every kept version: the newest kept, the current never
        assert state.history_doc(huge)[0] == 3
