"""Snapshots of the key screens at 80x24, on the fakes (fixed clock, seeded keys and token).

Regenerate with `pytest tests/test_tui_snapshots.py --snapshot-update` and review the SVGs
under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from ceremony.engine.prompts import ApprovalNeeded
from ceremony.rehearsal import Cast
from ceremony.tui.app import CeremonyApp
from ceremony.tui.screens import PrivateShareScreen
from ceremony.tui.shares import ShareSlot
from tests.tui_helpers import (
    drive,
    fake_setup,
    open_and_roll_call,
    settle,
    type_back,
    type_text,
)

# SLIP-39 test vector 1 (a public test share): a fixed "share" for the private screen.
FAKE_SHARE = ("duckling enlarge academic academic agency result length solution fridge "
              "kidney coal piece deal husband erode duke ajar critical decision keyboard")

Compare = Callable[..., bool]


@pytest.fixture(autouse=True)
def colour_and_fixed_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Snapshots are in colour, and the bundle path is relative (the same on every run)."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    yield


def make_app(cast: Cast, policy_text: str, **extra: Any) -> CeremonyApp:
    app = CeremonyApp(fake_setup(Path("bundle"), cast, policy_text, **extra))
    # An animated scroll still under way when the picture is taken made snapshots flaky.
    app.animation_level = "none"
    return app


async def pin_step_pane(pilot: Pilot[Any]) -> None:
    """Put the step pane at its top before the picture is taken.

    Known cosmetic race (noted, not fixed): after an answer, the step pane sometimes ends one
    line further down, depending on when the layout settles. The snapshot is about what the
    screen shows, so it is taken from a fixed scroll position.
    """
    from textual.containers import VerticalScroll

    for screen in pilot.app.screen_stack:  # the pane may be under a modal
        for pane in screen.query("#main").results(VerticalScroll):
            pane.scroll_home(animate=False)
    await settle(pilot)


async def at_quorum(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await open_and_roll_call(pilot)
    await drive(pilot, stop=lambda p, i: isinstance(p, ApprovalNeeded) and i == 1)
    await pilot.press("enter")  # alice approves: 1 of 2
    await settle(pilot)
    await pin_step_pane(pilot)


def test_start_screen(snap_compare: Compare, cast: Cast, policy_text: str) -> None:
    assert snap_compare(make_app(cast, policy_text), run_before=settle)


def test_quorum_step(snap_compare: Compare, cast: Cast, policy_text: str) -> None:
    assert snap_compare(make_app(cast, policy_text), run_before=at_quorum)


def test_private_share_screen(snap_compare: Compare, cast: Cast, policy_text: str) -> None:
    slot = ShareSlot("alice", "Alice Custodian", 1, 1, bytearray(FAKE_SHARE.encode()))

    async def show(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(PrivateShareScreen(slot))
        await settle(pilot)

    assert snap_compare(make_app(cast, policy_text), run_before=show)


def test_type_back_screen(snap_compare: Compare, cast: Cast, policy_text: str) -> None:
    """Half the share typed back, a word refused, the next one completed from 4 letters."""
    slot = ShareSlot("alice", "Alice Custodian", 1, 1, bytearray(FAKE_SHARE.encode()))
    words = FAKE_SHARE.split()

    async def typing(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(PrivateShareScreen(slot))
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        await type_back(pilot, words[:9], keys=False)
        await type_text(pilot, "qzxv ")  # not a SLIP-39 word: word 10 is refused
        await type_text(pilot, words[9][:4])  # the field completes it
        await settle(pilot)

    assert snap_compare(make_app(cast, policy_text), run_before=typing)


def test_error_modal(snap_compare: Compare, cast: Cast, policy_text: str) -> None:
    """A custodian with no signing device: the plain sentence and the hint, as the CLI."""
    signers = {k: v for k, v in cast.signers.items() if k != "bob"}

    async def refused(pilot: Pilot[Any]) -> None:
        await at_quorum(pilot)
        await pilot.press("enter")  # bob
        await settle(pilot)
        await pin_step_pane(pilot)

    assert snap_compare(make_app(cast, policy_text, signers=signers), run_before=refused)
