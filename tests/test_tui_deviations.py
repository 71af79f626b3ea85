"""The UI with Pilot (ADR 15): after the last step the witnesses co-sign the seal on screen;
the operator declares a deviation (key d) and the custodians approve it on the approval
list. On the fakes; what the engine records is checked, and the bundle verifies."""

from __future__ import annotations

import json
from pathlib import Path

from textual.widgets import Static

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.core import Devices, Engine
from ceremony.engine.prompts import ApprovalNeeded, Finished
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import make_cast
from ceremony.tui.app import CeremonyApp
from ceremony.tui.deviation import DeviationModal
from ceremony.tui.screens import CeremonyScreen
from ceremony.verify import verify_bundle
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.test_deviations import to_action, to_seal, witnessed_texts
from tests.test_engine import Run
from tests.tui_helpers import (
    fake_opener,
    fake_setup,
    flat_text,
    open_and_roll_call,
    settle,
    sync,
    type_text,
)

SIZE = (80, 24)
REASON = "Walter stands in for Wanda"


def step_title(app: CeremonyApp) -> str:
    return str(app.screen.query_one("#step-title", Static).content)


@sync
async def test_deviation_and_seal_cosigned_on_screen(tmp_path: Path) -> None:
    """The steps run on the engine directly (the share hand-out has its own UI tests); the
    UI resumes at the seal, where the operator declares a deviation (d), the custodians
    approve it and the witnesses co-sign the seal, each picked on the approval list."""
    template, policy_text = witnessed_texts(seal=2, quorum=2)
    cast = make_cast(template, SeededRandom("participants"))
    bundle = tmp_path / "bundle"
    token, clock = FakeToken(SeededRandom("token")), TickingClock()
    devices = Devices(clock, SeededRandom("os"), token, Slip39Splitter(SeededRandom("slip39")),
                      MemorySecrets())
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(), devices, bundle,
                          rehearsal=True, attestation=passing_attestation(True))
    run = Run(engine, cast, token, MemorySecrets(), bundle)
    to_action(run)
    to_seal(run)
    engine.writer.close()
    app = CeremonyApp(fake_setup(bundle, cast, policy_text,
                                 open_devices=fake_opener(token, clock)))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        resumed = app.engine
        assert resumed is not None
        prompt = resumed.next_prompt()
        assert isinstance(prompt, ApprovalNeeded) and prompt.kind == "seal"
        assert step_title(app) == "Seal: the witnesses co-sign"
        assert "seal co-signatures collected 0 of 2: none yet" in flat_text(app)
        await pilot.press("enter")  # wendy
        await settle(pilot)
        assert "seal co-signatures collected 1 of 2: Wendy Witness (wendy)" in flat_text(app)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, DeviationModal)
        await pilot.press("down", "enter")  # a person substituted
        await type_text(pilot, REASON)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        prompt = resumed.next_prompt()
        assert isinstance(prompt, ApprovalNeeded) and prompt.kind == "deviation"
        assert step_title(app) == f"Deviation at entry {prompt.template['seq']}"
        text = flat_text(app)
        assert "(person-substituted)" in text and "declared by Ada Administrator" in text
        assert "approvals of the deviation collected 0 of 2: none yet" in text
        await pilot.press("enter")  # alice
        await settle(pilot)
        assert "approvals of the deviation collected 1 of 2: Alice Custodian (alice)" in \
            flat_text(app)
        await pilot.press("enter")  # bob
        await settle(pilot)
        assert step_title(app) == "Seal: the witnesses co-sign"
        assert "seal co-signatures collected 1 of 2: Wendy Witness (wendy)" in flat_text(app)
        await pilot.press("enter")  # walter
        await settle(pilot)
        assert isinstance(resumed.next_prompt(), Finished)
        assert "Ceremony COMPLETED and sealed" in flat_text(app)
    entries = [json.loads(x) for x in (bundle / "transcript.jsonl").read_text().splitlines()]
    assert [(e["event"], e["actor"]) for e in entries
            if e["event"] in ("deviation", "deviation.approved", "seal.witnessed")] == [
        ("seal.witnessed", "wendy"), ("deviation", "ada"), ("deviation.approved", "alice"),
        ("deviation.approved", "bob"), ("seal.witnessed", "walter")]
    report = verify_bundle(bundle)
    assert report.ok, report.first_failure
