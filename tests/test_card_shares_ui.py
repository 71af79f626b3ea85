"""A share delivered to a custodian's card from the Textual UI (CER-SHARE-CARD, ADR 17).

The real stack: a SoftHSM2 token, pcscd + vpcd and our virtual OpenPGP cards, Pilot
pressing the keys. The script sends carol's share to her card; when the provisioning
action splits the seed, the UI asks for her card. Leaving that screen rolls the step back
with nothing recorded; the step again: bob's card is named as the wrong one before any PIN,
a wrong PIN counts down and records nothing, then her share is written, read back and
recorded as delivered to her card. Her share is never on a screen, in the bundle or on a sheet,
and it reads back from her card intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceremony.adapters.card_shares import CardHolder, read_from_card
from ceremony.adapters.identity import KeyFileSigner
from ceremony.canonical import sha256_hex
from ceremony.engine.core import share_commitment
from ceremony.engine.prompts import ActionReady
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import make_cast
from ceremony.tui.app import CeremonyApp, RunSetup
from ceremony.tui.cards import CardApprovals, CardShareScreen
from ceremony.tui.devices import token_opener
from ceremony.tui.screens import DistributionScreen, ErrorModal
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm
from tests.fakes import SeededRandom, passing_attestation
from tests.pcsc_fixtures import VirtualCard
from tests.test_card_shares import CAROL_ON_CARD, MEMBERS, PIN, card_holding
from tests.test_crash import known_pin_texts
from tests.test_recovery import assert_no_share_words
from tests.tui_helpers import (
    drive,
    flat_text,
    hand_out_shares,
    open_and_roll_call,
    screen_text,
    settle,
    sync,
    type_text,
)

pytestmark = [pytest.mark.pcsc, pytest.mark.softhsm]


def entries(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (bundle / "transcript.jsonl").read_text().splitlines()]


@sync
async def test_ui_writes_carols_share_to_her_card(virtual_card: VirtualCard, softhsm: SoftHsm,
                                                  tmp_path: Path) -> None:
    template, policy_text = known_pin_texts()
    assert MEMBERS in template
    cast = make_cast(template.replace(MEMBERS, CAROL_ON_CARD), SeededRandom("ui-card-share"))
    keys = {p: s._key for p, s in cast.signers.items() if isinstance(s, KeyFileSigner)}
    carols, carol_public = card_holding(virtual_card, keys["carol"])
    carols.remove()
    bobs, _ = card_holding(VirtualCard(virtual_card.stack, tmp_path / "bob-card.json"),
                           keys["bob"])
    bobs.remove()
    bundle, secret = tmp_path / "bundle", tmp_path / "secret"
    opener = token_opener(softhsm.module, softhsm.uri, cast.script.ceremony_id, secret)
    setup = RunSetup(cast.script, parse_policy(policy_text, "policy.toml"),
                     cast.script_text.encode(), policy_text.encode(), bundle, True, opener,
                     cast.signers, needs_pin=True,  # type: ignore[arg-type]
                     device_name=softhsm.uri, attestation=passing_attestation(True),
                     cards=CardApprovals(None))
    app = CeremonyApp(setup)
    screens: list[str] = []

    async def until(text: str, seconds: float = 15.0) -> None:
        for _ in range(int(seconds / 0.05)):
            await pilot.pause(0.05)
            shown = flat_text(app)
            if text in shown:
                screens.append(shown)
                return
        raise AssertionError(f"{text!r} not on the screen:\n{flat_text(app)}")

    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await open_and_roll_call(pilot, pin=softhsm.pin)
            await drive(pilot, stop=lambda p, i: isinstance(p, ActionReady))
            await pilot.press("n")  # the provisioning action; it waits for carol's card
            await until("insert your card to receive your share (group 1 member 3)")
            assert isinstance(app.screen, CardShareScreen)
            await until("there is no card in any reader; carol's card is needed")
            # Carol is not there: Esc, and the step is rolled back with nothing recorded.
            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, ErrorModal)
            await until("carol's share was not written to their card: the card screen was "
                        "left [CER-SHARE-CARD]")
            events = [e["event"] for e in entries(bundle)]
            assert "shares.created" not in events and events[-1] == "action.rolled_back"
            assert app.shares is not None and app.shares.slots == []  # alice's, bob's wiped
            assert not list(secret.glob("share-*"))
            await pilot.press("enter")
            await settle(pilot)
            await drive(pilot, stop=lambda p, i: isinstance(p, ActionReady))
            await pilot.press("n")  # again; carol is here now
            await until("there is no card in any reader; carol's card is needed")
            bobs.insert()
            await until("this is bob's card; carol's is needed")
            assert bobs.state().pw1_tries == 3 and bobs.state().private_dos == {}
            bobs.remove()
            carols.insert()
            await until("carol's card is in the reader (3 PIN tries left)")
            await type_text(pilot, "000000")
            await pilot.press("enter")
            await until("the card refused the PIN; 2 tries left")
            await until("The share was not delivered; nothing was recorded.")
            await until("(2 PIN tries left)")
            assert isinstance(app.screen, CardShareScreen)
            assert "shares.created" not in [e["event"] for e in entries(bundle)]
            assert carols.state().private_dos.get("0103", "") == ""
            await type_text(pilot, PIN.decode())
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, DistributionScreen)
            assert app.shares is not None
            assert [s.participant for s in app.shares.slots] == ["alice", "bob"]
            screens.append(flat_text(app))
            await hand_out_shares(pilot)
            await drive(pilot)
            screens.append(flat_text(app))
            assert "COMPLETED and sealed" in screen_text(app)
        assert carols.state().pw1_tries == 3  # the right PIN reset the counter

        # The transcript names her card by its key; the bundle verifies.
        (created,) = [e["payload"] for e in entries(bundle) if e["event"] == "shares.created"]
        where = {h["participant"]: h for h in created["holders"]}
        assert where["carol"]["delivered_to"] == (
            f"OpenPGP card with key fingerprint {sha256_hex(carol_public)} (serial "
            f"{carols.state().serial.upper()}), data object 0103, read back")
        assert where["alice"]["delivered_to"].startswith("private screen and share sheet")
        report = verify_bundle(bundle)
        assert report.ok, report.first_failure
        assert sorted(p.name.split("-")[-2] for p in secret.glob("share-*.txt")) == \
            ["alice", "bob"]  # no sheet for carol: her share went to her card only

        # Her card (still in the reader) gives the share back intact, behind her PIN.
        share = read_from_card(CardHolder("carol", carol_public, lambda: bytearray(PIN),
                                          carols.reader))
        assert share.is_for(cast.script.ceremony_id)
        assert share_commitment(cast.script.ceremony_id, share.mnemonic) == \
            where["carol"]["commitment"]
    finally:
        carols.remove()
        bobs.remove()
    haystacks = {str(p): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    haystacks |= {str(p): p.read_bytes() for p in secret.rglob("*") if p.is_file()}
    haystacks |= {f"screen {i}": text.encode() for i, text in enumerate(screens)}
    assert_no_share_words([share.mnemonic], haystacks)

