"""The dice and passphrase screens, driven with Pilot on the fakes: what is counted and
refused while typing, that the rolls and the passphrase leave the screen, and what the
engine recorded."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from textual.widgets import Input

from ceremony.engine.core import Engine
from ceremony.engine.prompts import ActionReady, DiceNeeded, PassphraseNeeded
from ceremony.errors import AnswersError
from ceremony.headless import run_headless
from ceremony.rehearsal import make_cast, sample_texts, simulated_answers
from ceremony.tui.app import CeremonyApp
from ceremony.tui.entropy import DiceScreen, PassphraseScreen, rolls_status
from ceremony.tui.screens import DistributionScreen
from tests.fakes import SeededRandom
from tests.test_dice_passphrase import ROLLS, entropy_edit, fair_rolls
from tests.tui_helpers import flat_text, open_and_roll_call, settle, sync, type_text


def test_rolls_status_counts_and_names_the_bad_roll() -> None:
    assert rolls_status("3 1 4", 100) == (3, None)
    assert rolls_status("3149", 100) == (0, "the 4th roll is not 1 to 6; a die shows 1 to 6")
    assert rolls_status("1" * 5, 4) == (5, "5 rolls typed: the script asks for exactly 4")


def _stopped_at_the_dice(out: Path) -> tuple[CeremonyApp, str]:
    """A ceremony run headless on the fakes up to the dice (its answers give none), then
    the UI on the same fake token to resume it: it asks for the dice again."""
    from ceremony.model.policy import parse_policy
    from tests.fakes import FakeToken, TickingClock, passing_attestation
    from tests.tui_helpers import fake_opener, fake_setup

    template, policy_text = sample_texts()
    cast = make_cast(template.replace(*entropy_edit()), SeededRandom("participants"))
    token, clock = FakeToken(SeededRandom("token")), TickingClock(step=timedelta(0))
    opener = fake_opener(token, clock)
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(),
                          opener(None).devices, out, rehearsal=True,
                          attestation=passing_attestation(True))
    with pytest.raises(AnswersError, match="needs 100 dice rolls by carol"):
        run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                     lambda _: None)
    engine.writer.close()
    return CeremonyApp(fake_setup(out, cast, policy_text, open_devices=opener)), policy_text


@sync
async def test_dice_and_passphrase_screens(tmp_path: Path) -> None:
    app, _ = _stopped_at_the_dice(tmp_path / "out")
    rolls = fair_rolls(ROLLS, "ui")
    typed = " ".join(str(b) for b in rolls)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_and_roll_call(pilot)
        assert app.engine is not None
        assert isinstance(app.engine.next_prompt(), DiceNeeded)  # asked again on resume
        assert "Type the dice rolls (n)" in flat_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, DiceScreen)
        assert "Carol" in flat_text(app) and "0 of 100 rolls" in flat_text(app)
        await type_text(pilot, "3 14")
        await settle(pilot)
        assert "3 of 100 rolls" in flat_text(app)
        await type_text(pilot, "7")
        await settle(pilot)
        assert "the 4th roll is not 1 to 6" in flat_text(app)
        await pilot.press("enter")  # refused on the screen: nothing reaches the engine
        await settle(pilot)
        assert isinstance(app.screen, DiceScreen)
        assert isinstance(app.engine.next_prompt(), DiceNeeded)
        field = app.screen.query_one("#rolls", Input)
        field.value = typed  # the rest as if pasted
        await settle(pilot)
        assert "100 of 100 rolls" in flat_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert field.value == ""
        assert not isinstance(app.screen, DiceScreen)
        assert typed[:40] not in flat_text(app)  # the rolls are off the screen
        prompt = app.engine.next_prompt()
        assert isinstance(prompt, PassphraseNeeded)
        assert "silently" in flat_text(app)

        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, PassphraseScreen)
        first, repeat = (app.screen.query_one(f"#{n}", Input) for n in ("passphrase",
                                                                         "repeat"))
        await type_text(pilot, "abc")
        await pilot.press("enter")
        assert repeat.has_focus
        repeat.value = "abd"
        await pilot.press("enter")
        await settle(pilot)
        assert "the two typings differ" in flat_text(app)
        assert first.value == repeat.value == "" and first.has_focus
        secret = "horse staple 42"
        first.value = repeat.value = secret
        await settle(pilot)
        assert secret not in flat_text(app)  # masked
        repeat.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.engine.next_prompt(), ActionReady)
        await pilot.press("n")  # the action: the seed from three sources, then the shares
        await settle(pilot)
        assert isinstance(app.screen, DistributionScreen)  # (handing out: test_tui_run)
    lines = (tmp_path / "out" / "transcript.jsonl").read_text().splitlines()
    (collected,) = [json.loads(x)["payload"] for x in lines
                    if json.loads(x)["event"] == "entropy.collected"]
    assert [(s["source"], s["bytes"]) for s in collected["sources"]][-1] == ("dice", ROLLS)
    (shares,) = [json.loads(x)["payload"] for x in lines
                 if json.loads(x)["event"] == "shares.created"]
    assert shares["passphrase"] == "required"
    assert secret not in "\n".join(lines) and typed[:40] not in "\n".join(lines)


@sync
async def test_recovery_asks_for_the_passphrase_again_after_a_wrong_one(
        tmp_path: Path) -> None:
    """A recovery in the UI (fakes): the masked passphrase field comes before the shares; a
    wrong passphrase rebuilds another key, refused with nothing imported, and the screen
    goes back to the passphrase; the right one then recovers the key."""
    from ceremony.adapters.slip39 import Slip39Splitter
    from ceremony.engine.core import Devices
    from ceremony.engine.prompts import ShareOffered, SharesNeeded
    from ceremony.engine.recovery import NoSecretOutput, load_original
    from ceremony.model.policy import parse_policy
    from ceremony.model.script import parse_script
    from ceremony.tui.app import OpenedDevices, RunSetup
    from ceremony.tui.screens import ErrorModal, RecoveryScreen
    from ceremony.tui.shares import PrivateShares
    from tests.fakes import FakeToken, TickingClock, passing_attestation
    from tests.test_dice_passphrase import PASSPHRASE, WRONG, _headless_original
    from tests.test_recovery import recovery_text
    from tests.test_tui_recovery import present

    run, _, _ = _headless_original(tmp_path)
    shares = {n.split("-g")[0]: m for n, m in run.secrets.shares.items()}
    record = load_original(run.bundle).record
    text = recovery_text(run.cast.script_text, record.head, record.fingerprint).replace(
        '[entropy]\ndice_rolls = 100\ndice_roller = "carol"\n\n', "")
    token = FakeToken(SeededRandom("recovery-token"))

    def open_devices(pin: bytearray | None) -> OpenedDevices:
        devices = Devices(TickingClock(step=timedelta(0)), SeededRandom("recovery-os"),
                          token, Slip39Splitter(), NoSecretOutput())
        return OpenedDevices(devices, PrivateShares())

    policy_text = sample_texts()[1]
    setup = RunSetup(parse_script(text, "script.toml"),
                     parse_policy(policy_text, "policy.toml"), text.encode(),
                     policy_text.encode(), tmp_path / "recovery", True, open_devices,
                     run.cast.signers,  # type: ignore[arg-type]
                     device_name="pkcs11:token=fake", original=load_original(run.bundle),
                     attestation=passing_attestation(True))
    # Headless through the approvals to the passphrase (which these answers lack), then the
    # UI resumes there on the same fake token.
    engine = Engine.start(setup.script, setup.policy, setup.script_bytes, setup.policy_bytes,
                          open_devices(None).devices, setup.out, rehearsal=True,
                          original=setup.original, attestation=passing_attestation(True))
    with pytest.raises(AnswersError, match="needs the SLIP-39 passphrase"):
        run_headless(engine, simulated_answers(setup.script), run.cast.signers,  # type: ignore[arg-type]
                     lambda _: None)
    engine.writer.close()
    app = CeremonyApp(setup)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_and_roll_call(pilot)
        assert app.engine is not None
        for passphrase in (WRONG, PASSPHRASE):
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, PassphraseScreen)
            assert not app.screen.query("#repeat")  # once, at a recovery
            app.screen.query_one("#passphrase", Input).value = passphrase.decode()
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.engine.next_prompt(), SharesNeeded)
            if passphrase == PASSPHRASE:  # (presenting on screen: the first round)
                for who in ("alice", "bob"):
                    app.engine.submit(ShareOffered(who, shares[who]))
            await pilot.press("n")
            await settle(pilot)
            assert isinstance(app.screen, RecoveryScreen)
            if passphrase == WRONG:
                for who in ("alice", "bob"):
                    await present(pilot, who, shares[who].split(), keys=False, seen={})
            await pilot.press("r")
            await settle(pilot)
            if passphrase == WRONG:
                assert isinstance(app.screen, ErrorModal)
                assert "the shares and the passphrase rebuild a root key" in flat_text(app)
                assert token.calls == []  # nothing imported
                await pilot.press("enter")
                await settle(pilot)
                assert not isinstance(app.screen, RecoveryScreen)
                assert "Type the passphrase (n)" in flat_text(app)
        assert token.calls == ["import"]  # the original's key (fingerprint checked first)
        recovered = [json.loads(line)["payload"] for line in
                     (tmp_path / "recovery" / "transcript.jsonl").read_text().splitlines()
                     if json.loads(line)["event"] == "root_key.recovered"]
        assert [r["fingerprint"] for r in recovered] == [record.fingerprint]
