"""The ceremony UI driven with Pilot: what the engine records, not only what is drawn.

The full ceremony and the abort run on a real SoftHSM2 token, through the same worker that
`ceremony run` uses (ceremony.tui.devices.token_opener); the other tests use the fakes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ceremony.engine.prompts import (
    ApprovalNeeded,
    BeginStep,
    ConfirmationNeeded,
    Prompt,
)
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import Cast, make_cast
from ceremony.tui.app import CeremonyApp, RunSetup
from ceremony.tui.devices import rehearsal_setup, token_opener
from ceremony.tui.screens import (
    AbortedModal,
    CeremonyScreen,
    DistributionScreen,
    EntryModal,
    ErrorModal,
    HelpModal,
    PrivateShareScreen,
    RollCallScreen,
    TypeBackScreen,
)
from ceremony.verify.core import verify_bundle
from tests.conftest import SoftHsm, require
from tests.fakes import FakeToken, SeededRandom, TickingClock, passing_attestation
from tests.test_crash import known_pin_texts
from tests.tui_helpers import (
    drive,
    fake_opener,
    fake_setup,
    flat_text,
    open_and_roll_call,
    screen_text,
    settle,
    sync,
    type_back,
    type_text,
)

SIZE = (80, 24)
FULL_RUN = ["ceremony.started", "step.started", "witness.ack", "step.completed", "checkpoint",
            "step.started", "approval", "approval", "witness.ack", "confirmation",
            "action.started", "entropy.collected", "root_key.created", "shares.created",
            "action.completed", "step.completed", "checkpoint", "step.started", "witness.ack",
            "step.completed", "checkpoint", "seal"]


def entries(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (bundle / "transcript.jsonl").read_text().splitlines()]


def softhsm_setup(tmp_path: Path, softhsm: SoftHsm, cast: Cast, policy_text: str) -> RunSetup:
    """As `ceremony run SCRIPT --rehearsal --secret-out DIR` builds it; PIN asked in the UI.

    The sample is changed to a known-PIN token (its policy allowing that), so the PIN is
    typed on the start screen; split activation in the UI has its own tests.
    """
    template, policy_text = known_pin_texts()
    cast = make_cast(template, SeededRandom("participants"))
    opener = token_opener(softhsm.module, softhsm.uri, cast.script.ceremony_id,
                          tmp_path / "secret")
    return RunSetup(cast.script, parse_policy(policy_text, "policy.toml"),
                    cast.script_text.encode(), policy_text.encode(), tmp_path / "bundle", True,
                    opener, cast.signers, needs_pin=True,  # type: ignore[arg-type]
                    device_name=softhsm.uri, attestation=passing_attestation(True))


def after_provisioning(prompt: Prompt, index: int) -> bool:
    return isinstance(prompt, BeginStep) and index == 2


@pytest.mark.softhsm
@sync
async def test_full_ceremony_on_softhsm(tmp_path: Path, softhsm: SoftHsm, cast: Cast,
                                        policy_text: str) -> None:
    """Start screen -> PIN -> roll call -> every step -> shares shown and typed back ->
    sealed, verified bundle."""
    app = CeremonyApp(softhsm_setup(tmp_path, softhsm, cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "… waiting token" in screen_text(app)
        await open_and_roll_call(pilot, pin=softhsm.pin)
        assert isinstance(app.screen, CeremonyScreen)
        await drive(pilot, keys=1)  # the first share typed back key by key, with completion
        text = screen_text(app)
        assert "COMPLETED and sealed" in text
    bundle = tmp_path / "bundle"
    recorded = entries(bundle)
    assert [e["event"] for e in recorded] == FULL_RUN
    assert [e["actor"] for e in recorded if e["event"] == "approval"] == ["alice", "bob"]
    assert [e["payload"]["phrase"] for e in recorded if e["event"] == "confirmation"] == [
        "PROVISION ROOT KEY"]
    holders = next(e for e in recorded if e["event"] == "shares.created")["payload"]["holders"]
    assert all(h["delivered_to"].startswith("private screen and share sheet") for h in holders)
    report = verify_bundle(bundle)
    assert report.ok, report.first_failure
    assert report.outcome == "completed" and report.rehearsal is True
    assert len(softhsm.objects()) == 2  # the root key pair; the transcript key is gone
    assert len(list((tmp_path / "secret").glob("*.txt"))) == 3


@pytest.mark.softhsm
@sync
async def test_abort_after_provisioning_rolls_back(tmp_path: Path, softhsm: SoftHsm,
                                                   cast: Cast, policy_text: str) -> None:
    """ABORT typed -> the engine destroys the key and sheets; the UI shows what went."""
    app = CeremonyApp(softhsm_setup(tmp_path, softhsm, cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot, pin=softhsm.pin)
        await drive(pilot, stop=after_provisioning)
        assert len(softhsm.objects()) == 4  # root key pair + transcript key pair
        await pilot.press("a")
        await settle(pilot)
        await type_text(pilot, "abort")  # not in capitals: refused by the dialog
        await pilot.press("enter")
        await settle(pilot)
        assert "type ABORT exactly" in flat_text(app)
        await type_text(pilot, "ABORT")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AbortedModal)
        text = flat_text(app)
        assert "destroyed on the token: 2 object(s)" in text
        assert "share sheets removed: 3" in text
        assert "root-public-key.pem" in text
    assert softhsm.objects() == []
    assert not list((tmp_path / "secret").iterdir())
    recorded = entries(tmp_path / "bundle")
    assert [e["event"] for e in recorded][-2:] == ["ceremony.aborted", "seal"]
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.first_failure
    assert report.outcome == "aborted"


@sync
async def test_share_is_wiped_from_screen_and_memory(tmp_path: Path, cast: Cast,
                                                     policy_text: str) -> None:
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await drive(pilot, stop=lambda p, i: isinstance(p, ConfirmationNeeded))
        await type_text(pilot, "PROVISION ROOT KEY")
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("n")  # run the provisioning
        await settle(pilot)
        assert isinstance(app.screen, DistributionScreen)
        assert app.shares is not None
        slot = app.shares.slots[0]
        secret = slot.secret  # the very bytearray the private screen shows
        share = slot.words()
        assert len(share) == 33  # a 256-bit seed
        before = screen_text(app)  # not before the custodian asks (single words such as
        # "group" are SLIP-39 words that the screen may also use, so look for runs)
        assert not any(f"{i}. {w}" in before for i, w in enumerate(share, start=1))
        assert not any(" ".join(share[i:i + 3]) in before for i in range(len(share) - 2))
        await pilot.press("enter")
        await settle(pilot)
        assert "Is anyone else looking?" in flat_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, PrivateShareScreen)
        shown = screen_text(app)
        assert all(f"{i}. {w}" in shown for i, w in enumerate(share, start=1))
        await pilot.press("w")  # written down: now it is typed back, the words hidden
        await settle(pilot)
        assert isinstance(app.screen, TypeBackScreen)
        typing = screen_text(app)
        assert not any(f"{i}. {w}" in typing for i, w in enumerate(share, start=1))
        assert not any(" ".join(share[i:i + 3]) in typing for i in range(len(share) - 2))
        assert any(secret) and not slot.delivered  # kept until it is typed back
        await type_back(pilot, share, keys=False)
        assert isinstance(app.screen, DistributionScreen)
        after = screen_text(app)
        assert not any(f"{i}. {w}" in after for i, w in enumerate(share, start=1))
        assert not any(" ".join(share[i:i + 3]) in after for i in range(len(share) - 2))
        assert secret == bytearray(len(secret)) and len(secret) > 0
        assert slot.delivered
        transcript = (tmp_path / "bundle" / "transcript.jsonl").read_text()
        assert " ".join(share[:3]) not in transcript


@sync
async def test_wrong_phrase_is_refused_then_retried(tmp_path: Path, cast: Cast,
                                                    policy_text: str) -> None:
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await drive(pilot, stop=lambda p, i: isinstance(p, ConfirmationNeeded))
        assert app.engine is not None
        seq = app.engine.writer.seq
        await type_text(pilot, "PROVISION ROOT KEYS")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        text = flat_text(app)
        assert "the typed confirmation does not match" in text
        assert "hint: type the phrase exactly, in capitals" in text
        assert app.engine.writer.seq == seq  # nothing recorded for a refused answer
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        await type_text(pilot, "PROVISION ROOT KEY")
        await pilot.press("enter")
        await settle(pilot)
        assert entries(tmp_path / "bundle")[-1]["event"] == "confirmation"


@sync
async def test_quorum_screen_and_missing_signer(tmp_path: Path, cast: Cast,
                                                policy_text: str) -> None:
    """Approvals 1 of 2 with the name; a custodian without a signer gets a plain error."""
    signers = {k: v for k, v in cast.signers.items() if k != "bob"}
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text, signers=signers))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await drive(pilot, stop=lambda p, i: isinstance(p, ApprovalNeeded) and i == 1)
        await pilot.press("enter")  # alice approves
        await settle(pilot)
        text = flat_text(app)
        assert "approvals collected 1 of 2: Alice Custodian (alice)" in text
        await pilot.press("enter")  # bob: no signing device
        await settle(pilot)
        assert isinstance(app.screen, ErrorModal)
        assert "the signing device of Bob Custodian (bob) is not available" in flat_text(app)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("down", "enter")  # carol instead
        await settle(pilot)
    assert [e["actor"] for e in entries(tmp_path / "bundle") if e["event"] == "approval"] == [
        "alice", "carol"]


@sync
async def test_roll_call_blocks_begin_until_needed_people_are_present(
        tmp_path: Path, cast: Cast, policy_text: str) -> None:
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, RollCallScreen)
        await pilot.press("space")  # only the administrator
        await pilot.press("b")
        await settle(pilot)
        assert app.engine is None
        assert "✗ MISSING 1 witness(es)" in flat_text(app)
        assert not (tmp_path / "bundle").exists()


@sync
async def test_resume_offers_where_it_stopped(tmp_path: Path, cast: Cast,
                                              policy_text: str) -> None:
    token, clock = FakeToken(SeededRandom("token")), TickingClock()
    opener = fake_opener(token, clock)
    first = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text,
                                   open_devices=opener))
    async with first.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await drive(pilot, stop=lambda p, i: isinstance(p, ApprovalNeeded) and i == 1)
        await pilot.press("q")
    assert "run the same command again to resume" in first.finish_message()
    second = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text,
                                    open_devices=opener))
    async with second.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = flat_text(second)
        assert "RESUME: an unfinished ceremony is recorded here; it stopped at step 2 of 3" \
            in text
        assert "step.started" in text
        await open_and_roll_call(pilot)
        await drive(pilot)
    events = [e["event"] for e in entries(tmp_path / "bundle")]
    assert "ceremony.resumed" in events and events[-1] == "seal"
    assert verify_bundle(tmp_path / "bundle").ok


@sync
async def test_help_and_transcript_entry(tmp_path: Path, cast: Cast, policy_text: str) -> None:
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpModal)
        assert "Step 1 of 3: Open the ceremony" in flat_text(app)
        await pilot.press("escape")
        await pilot.press("t", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EntryModal)
        assert '"event": "ceremony.started"' in screen_text(app)


@sync
async def test_no_color_keeps_the_marks(tmp_path: Path, cast: Cast, policy_text: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    assert app.no_color
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "✓ ok" in text and "… waiting token" in text
        await open_and_roll_call(pilot)
        text = screen_text(app)
        assert "▶ 1. Open the" in text and "… 2. Generate" in text
        await drive(pilot)
        assert "✓ 1. Open the" in screen_text(app)


@pytest.mark.softhsm
@sync
async def test_rehearse_tui_runs_to_a_verified_bundle(tmp_path: Path) -> None:
    """What `ceremony rehearse --tui` runs: throwaway token made on open, removed after."""
    require(shutil.which("softhsm2-util") is not None, "SoftHSM2")
    setup, prepared, stack = rehearsal_setup(tmp_path / "r")
    saved = os.environ.get("SOFTHSM2_CONF")
    try:
        app = CeremonyApp(setup)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await open_and_roll_call(pilot)
            conf = Path(os.environ["SOFTHSM2_CONF"])
            assert conf.is_file()
            await drive(pilot)
            assert "COMPLETED and sealed" in screen_text(app)
    finally:
        stack.close()
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved
    assert not conf.parent.exists()  # the throwaway token is gone
    report = verify_bundle(prepared.bundle)
    assert report.ok, report.first_failure
    assert report.rehearsal is True and report.outcome == "completed"
    assert len(list(prepared.shares.glob("*.txt"))) == 3
