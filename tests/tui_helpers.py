"""Helpers for the UI tests: a RunSetup on the fakes, and a Pilot driver for the prompts."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec

from textual.pilot import Pilot

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
from ceremony.tui.screens import DistributionScreen, PrivacyModal, PrivateShareScreen
from ceremony.tui.shares import PrivateShares
from tests.fakes import FakeToken, SeededRandom, TickingClock


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


async def hand_out_shares(pilot: Pilot[Any], seen: list[str] | None = None) -> None:
    app = pilot.app
    assert isinstance(app, CeremonyApp) and app.shares is not None
    assert isinstance(app.screen, DistributionScreen)
    while app.shares.pending():
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PrivacyModal)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, PrivateShareScreen)
        if seen is not None:
            seen.append(screen_text(app))
        await pilot.press("w")
        await settle(pilot)
    await pilot.press("c")
    await settle(pilot)


async def drive(pilot: Pilot[Any], stop: Callable[[Prompt, int], bool] | None = None,
                max_steps: int = 60) -> None:
    """Answer prompts through the keyboard, as the people in the room would."""
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
            await hand_out_shares(pilot)
    raise AssertionError("the ceremony did not finish")
