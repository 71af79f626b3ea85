"""Helpers for the UI tests: a RunSetup on the fakes, and a Pilot driver for the prompts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec

from textual import events
from textual.pilot import Pilot
from textual.widgets import Input

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.core import Devices
from ceremony.engine.prompts import (
    ActionReady,
    ApprovalNeeded,
    BeginStep,
    ConfirmationNeeded,
    Finished,
    Prompt,
)
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import Cast
from ceremony.tui.app import CeremonyApp, OpenedDevices, RunSetup
from ceremony.tui.screens import (
    DistributionScreen,
    PrivacyModal,
    PrivateShareScreen,
    TypeBackScreen,
)
from ceremony.tui.shares import PrivateShares
from tests.fakes import FakeToken, SeededRandom, TickingClock, passing_attestation


def fake_opener(token: FakeToken | None = None, clock: TickingClock | None = None
                ) -> Callable[[bytearray | None], OpenedDevices]:
    """Opens the fakes; pass the same token and clock to a second app to resume."""
    def open_devices(pin: bytearray | None) -> OpenedDevices:
        shares = PrivateShares()
        # A clock that stands still: the engine reads it on every next_prompt(), and the UI
        # asks for the prompt as often as it redraws, so a ticking clock would make the
        # transcript (and the snapshots) depend on how often the screen was drawn.
        devices = Devices(clock or TickingClock(step=timedelta(0)), SeededRandom("os"),
                          token or FakeToken(SeededRandom("token")),
                          Slip39Splitter(SeededRandom("slip39")), shares)
        return OpenedDevices(devices, shares)

    return open_devices


def fake_setup(out: Path, cast: Cast, policy_text: str, **extra: Any) -> RunSetup:
    """The sample ceremony on the fakes: fixed clock, seeded randomness, fake token."""
    policy = parse_policy(policy_text, "policy.toml")
    open_devices = extra.pop("open_devices", None) or fake_opener()

    options: dict[str, Any] = {"signers": cast.signers, "device_name": "pkcs11:token=fake",
                               "attestation": passing_attestation(True),
                               "clock_text": lambda: "2026-01-02 03:04:05 UTC"}
    options.update(extra)
    return RunSetup(cast.script, policy, cast.script_text.encode(), policy_text.encode(), out,
                    True, open_devices, **options)


P = ParamSpec("P")


def sync(test: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async Pilot test with asyncio (no pytest async plugin is installed)."""
    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def settle(pilot: Pilot[Any]) -> None:
    """Wait for the engine's worker and the screen updates that follow it."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()
    # On a loaded machine a layout change (a line of text appearing) can reach the screen a
    # refresh later than the message queue goes idle: wait until two looks agree.
    seen = pilot.app.export_screenshot()
    for _ in range(20):
        await pilot.pause(0.01)
        now = pilot.app.export_screenshot()
        if now == seen:
            break
        seen = now


async def shown(pilot: Pilot[Any], needle: str, timeout: float = 5.0) -> bool:
    """Whether ``needle`` reaches the screen within ``timeout`` seconds: for text that a
    scroll scheduled after the next refresh brings into view (a loaded machine may take
    several refreshes)."""
    app = pilot.app
    assert isinstance(app, CeremonyApp)
    deadline = asyncio.get_running_loop().time() + timeout
    while needle not in flat_text(app):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await pilot.pause(0.05)
    return True


async def type_text(pilot: Pilot[Any], text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


def svg_lines(svg: str) -> list[str]:
    """The terminal's lines, rebuilt from a Textual SVG screenshot (12.2 px per cell)."""
    import html
    import re

    rows: dict[int, dict[int, str]] = {}
    for m in re.finditer(r'<text class="[^"]*-r\d+" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)'
                         r"</text>", svg):
        col, row = round(float(m[1]) / 12.2), round((float(m[2]) - 20) / 24.4)
        rows.setdefault(row, {})[col] = html.unescape(m[3]).replace("\xa0", " ")
    out = []
    for row in range(max(rows, default=-1) + 1):
        line = ""
        for col, text in sorted(rows.get(row, {}).items()):
            line = line.ljust(col) + text
        out.append(line.rstrip())
    return out


def screen_text(app: CeremonyApp) -> str:
    """Everything on the terminal now, as plain text."""
    return "\n".join(svg_lines(app.export_screenshot()))


def flat_text(app: CeremonyApp) -> str:
    """The screen's words in one line (borders dropped), for sentences that wrap."""
    return " ".join(screen_text(app).translate(str.maketrans("", "", "┃│▊▎▕")).split())


async def open_and_roll_call(pilot: Pilot[Any], pin: str | None = None) -> None:
    """Start screen -> open the token -> everyone present -> begin."""
    app = pilot.app
    assert isinstance(app, CeremonyApp)
    if pin is not None:
        await type_text(pilot, pin)
        await pilot.press("enter")
    else:
        await pilot.press("o")
    await settle(pilot)
    assert app.opened is not None, app.token_error
    await pilot.press("c")
    await settle(pilot)
    for _ in app.setup.script.participants:
        await pilot.press("space", "down")
    await pilot.press("b")
    await settle(pilot)
    assert app.engine is not None


def prefixes(share: list[str]) -> str:
    """A share as a custodian types it back: each word's first four letters, then a space
    (the field completes the word)."""
    return "".join(f"{word[:4]} " for word in share)


async def type_back(pilot: Pilot[Any], share: list[str], *, keys: bool = True) -> None:
    """Type ``share`` (or a part of it) into the type-back field: key by key (about 60 ms a
    key under Pilot: four letters and a space a word), or pasted at once (the field takes a
    paste as typed: every whole word in it, in order)."""
    app = pilot.app
    assert isinstance(app.screen, TypeBackScreen)
    if keys:
        await type_text(pilot, prefixes(share))
    else:
        app.screen.query_one("#word", Input).post_message(events.Paste(prefixes(share)))
    await settle(pilot)


async def hand_out_shares(pilot: Pilot[Any], seen: list[str] | None = None,
                          keys: int = 0) -> None:
    """Every custodian in turn: Enter, nobody else looking, the share, w, the share typed
    back (four letters a word). The first ``keys`` shares are typed key by key, the others
    pasted, which takes the same path through the field but saves ~9 s a 33-word share."""
    app = pilot.app
    assert isinstance(app, CeremonyApp) and app.shares is not None
    assert isinstance(app.screen, DistributionScreen)
    handed = 0
    while app.shares.pending():
        slot = app.shares.pending()[0]
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PrivacyModal)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, PrivateShareScreen)
        if seen is not None:
            seen.append(screen_text(app))
        share = slot.words()
        await pilot.press("w")
        await settle(pilot)
        assert isinstance(app.screen, TypeBackScreen)
        assert not slot.delivered  # nothing advances before the share is typed back
        await type_back(pilot, share, keys=handed < keys)
        assert slot.delivered and not any(slot.secret), "the typed-back share did not match"
        assert isinstance(app.screen, DistributionScreen)
        handed += 1
    await pilot.press("c")
    await settle(pilot)


async def drive(pilot: Pilot[Any], stop: Callable[[Prompt, int], bool] | None = None,
                max_steps: int = 60, keys: int = 0) -> None:
    """Answer prompts through the keyboard, as the people in the room would; every share
    is typed back (the first ``keys`` key by key, see hand_out_shares)."""
    app = pilot.app
    assert isinstance(app, CeremonyApp) and app.engine is not None
    for _ in range(max_steps):
        prompt = app.engine.next_prompt()
        if isinstance(prompt, Finished) or (
                stop is not None and stop(prompt, app.engine.status().step_index)):
            return
        if isinstance(prompt, BeginStep):
            await pilot.press("n")
        elif isinstance(prompt, ApprovalNeeded):
            await pilot.press("enter")
        elif isinstance(prompt, ConfirmationNeeded):
            await type_text(pilot, prompt.phrase)
            await pilot.press("enter")
        elif isinstance(prompt, ActionReady):
            await pilot.press("n")
        await settle(pilot)
        if isinstance(app.screen, DistributionScreen):
            await hand_out_shares(pilot, keys=keys)
    raise AssertionError("the ceremony did not finish")
