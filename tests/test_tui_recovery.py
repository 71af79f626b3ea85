"""`ceremony recover` in the terminal UI: a real recovery on SoftHSM2, driven with Pilot.

The original ceremony runs through the real CLI on one token; the recovery's RunSetup is
built by cli/recover.py exactly as the command builds it (a second token, logged in with
two officers' PIN share sheets). Custodians present their shares on the recovery screen:
one typed key by key (four letters a word, about 10 s under Pilot), the others pasted into
the same field (the same path through it, word by word). A share of another custodian is
refused with the engine's sentence; a mistyped one never reaches the engine; an extra share
over the threshold is accepted; the rebuilt key is the original's and `ceremony verify`
passes. No run of share words is ever on the screen, nor in the bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.cli.main import _load, build_parser
from ceremony.cli.recover import load_recovery, ui_setup
from ceremony.engine.core import ROOT_PEM_FILE, TRANSCRIPT_FILE, Devices
from ceremony.engine.prompts import BeginStep, SharesNeeded
from ceremony.engine.recovery import NoSecretOutput
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.tui.app import EXIT_AFTER_FIRST_SCREEN, CeremonyApp, OpenedDevices, RunSetup
from ceremony.tui.replay import load_replay
from ceremony.tui.screens import (
    AbortedModal,
    CeremonyScreen,
    PresentShareScreen,
    PrivacyModal,
    RecoveryScreen,
    RollCallScreen,
)
from ceremony.tui.shares import PrivateShares
from ceremony.verify.core import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.fakes import FakeToken, SeededRandom, TickingClock, passing_attestation
from tests.test_recovery import (
    ORIGINAL_ID,
    RECOVERY_ID,
    FakeOriginal,
    Recovery,
    broken_checksum,
    fake_original,
    original_root,
    prepare_recovery,
    recovery_text,
)
from tests.tui_helpers import (
    drive,
    flat_text,
    open_and_roll_call,
    prefixes,
    screen_text,
    settle,
    shown,
    sync,
    type_text,
)

SIZE = (80, 24)
DUMP = os.environ.get("CEREMONY_TEST_DUMP_SCREENS")  # a file to write the screens to
CUSTODIANS = ("alice", "bob", "carol")


def recover_args(rec: Recovery) -> list[str]:
    """`ceremony recover` without --headless: the UI; --answers gives only the signers."""
    return ["recover", str(rec.script_path), "--original", str(rec.original.out), "--out",
            str(rec.out), "--rehearsal", "--token", rec.target.uri, "--module",
            rec.target.module, *rec.login, "--answers", str(rec.answers([]))]


def runs(share: str, length: int = 3) -> list[re.Pattern[str]]:
    """Every run of ``length`` consecutive words of a share, with any separator."""
    words = share.split()
    return [re.compile(r"(?<![a-z])" + r"[^a-z]+".join(map(re.escape, words[k:k + length]))
                       + r"(?![a-z])") for k in range(len(words) - length + 1)]


def leaks(shares: dict[str, str], texts: dict[str, str], length: int = 3) -> list[str]:
    return [f"{who}'s share in {where}" for who, share in shares.items()
            for pattern in runs(share, length) for where, text in texts.items()
            if pattern.search(text)]


async def present(pilot: Pilot[Any], who: str, words: list[str], *, keys: bool,
                  seen: dict[str, str]) -> PresentShareScreen:
    """On the recovery screen: ``who`` picks their name, nobody else is looking, and types
    ``words`` (key by key, or pasted: the field takes a paste word by word as typed)."""
    app = pilot.app
    assert isinstance(app, CeremonyApp)
    screen = app.screen
    assert isinstance(screen, RecoveryScreen)
    custodians = screen.query_one("#custodians", OptionList)
    custodians.highlighted = custodians.get_option_index(who)
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(app.screen, PrivacyModal)
    assert "Nobody else is looking: type my share (y)" in flat_text(app)
    await pilot.press("y")
    await settle(pilot)
    private = app.screen
    assert isinstance(private, PresentShareScreen)
    seen[f"{len(seen)}: private screen of {who}"] = screen_text(app)
    if keys:
        half = len(words) // 2
        await type_text(pilot, prefixes(words[:half]))
        await settle(pilot)
        # Mid-share: the marks say how far, the field holds nothing typed, no word is shown.
        assert private.typed.count == half
        assert private.query_one("#word", Input).value == ""
        seen[f"{len(seen)}: {who} typing, word {half + 1}"] = screen_text(app)
        await type_text(pilot, prefixes(words[half:]))
    else:
        private.query_one("#word", Input).post_message(events.Paste(prefixes(words)))
    await settle(pilot)
    return private


@pytest.mark.softhsm
@sync
async def test_recovery_in_the_ui_on_softhsm(tmp_path: Path, softhsm: SoftHsm) -> None:
    rec = prepare_recovery(tmp_path, softhsm)
    shares = {who: rec.mnemonic(who) for who in CUSTODIANS}
    assert all(len(s.split()) == 33 for s in shares.values())
    created = original_root(rec)

    # The command itself: without --headless it opens the UI (here closed at once).
    first = run_cli(*recover_args(rec), env={**rec.target.env, EXIT_AFTER_FIRST_SCREEN: "1"})
    assert first.returncode == 130, first.stdout + first.stderr
    assert f"original: ceremony {ORIGINAL_ID} verified" in first.stdout
    assert "the ceremony was not started" in first.stderr
    assert "Traceback" not in first.stderr and not rec.out.exists()

    args = build_parser().parse_args(recover_args(rec))
    assert isinstance(args, argparse.Namespace) and not args.headless
    setup = ui_setup(args, load_recovery(args, _load))
    assert setup.original is not None and setup.device_name == rec.target.uri
    app = CeremonyApp(setup)
    seen: dict[str, str] = {}  # every screen shown, for the leak check at the end
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        start = flat_text(app)
        assert f"RECOVERY of ceremony {ORIGINAL_ID} (its bundle verified)" in start
        assert created["fingerprint"] in start
        seen["start"] = screen_text(app)
        await open_and_roll_call(pilot)
        await drive(pilot, stop=lambda p, i: isinstance(p, SharesNeeded))
        assert isinstance(app.screen, CeremonyScreen)
        text = flat_text(app)
        assert "✗ share groups complete 0 of 1 needed … group 1: 0 of 2" in text
        assert await shown(pilot, "Present the shares (n)"), flat_text(app)
        seen["step"] = screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, RecoveryScreen)
        text = flat_text(app)
        assert "2 more shares needed before the root key can be rebuilt" in text
        assert "Carol Custodian (carol), group 1 member 3: … press Enter to present" in text
        seen["recovery"] = screen_text(app)
        engine = app.engine
        assert engine is not None
        transcript = rec.out / TRANSCRIPT_FILE

        # Carol types Alice's share: valid words and checksum, refused by the engine by name.
        before = transcript.read_bytes()
        private = await present(pilot, "carol", shares["alice"].split(), keys=False, seen=seen)
        assert isinstance(app.screen, RecoveryScreen)
        assert not any(private.typed._data) and private.typed.count == 0
        text = flat_text(app)
        assert ("✗ the share presented as carol's is recorded as alice's (group 1 member 1), "
                "not carol's") in text
        assert "hint: each custodian presents their own share, under their own name" in text
        assert transcript.read_bytes() == before  # nothing recorded for a refused share
        seen["refused"] = screen_text(app)

        # Alice mistypes hers: the checksum stops it on her private screen, never offered.
        private = await present(pilot, "alice", broken_checksum(shares["alice"]).split(),
                                keys=False, seen=seen)
        assert app.screen is private
        assert "fails the SLIP-39 checksum" in flat_text(app)
        assert private.typed.count == 0 and not any(private.typed._data)
        seen["checksum"] = screen_text(app)
        await type_text(pilot, "qzxv ")  # not a SLIP-39 word: marked, not taken
        await settle(pilot)
        assert "word 1 of 33: ✗ not a SLIP-39 word" in flat_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RecoveryScreen)
        assert "Alice Custodian (alice) stopped: nothing was presented" in flat_text(app)
        assert transcript.read_bytes() == before

        # Carol types her own share key by key: accepted.
        private = await present(pilot, "carol", shares["carol"].split(), keys=True, seen=seen)
        assert isinstance(app.screen, RecoveryScreen)
        assert not any(private.typed._data)
        text = flat_text(app)
        assert "✓ Carol Custodian (carol) presented their share" in text
        assert "… group 1: 1 of 2 (carol)" in text
        assert "1 more share needed" in text
        await pilot.press("r")  # not yet: nothing happens
        await settle(pilot)
        assert isinstance(engine.next_prompt(), SharesNeeded)

        # Alice, then Bob over the threshold (pasted).
        await present(pilot, "alice", shares["alice"].split(), keys=False, seen=seen)
        text = flat_text(app)
        assert "✓ group 1: 2 of 2 (carol, alice), complete" in text
        assert "enough groups are complete: press r to rebuild" in text
        await present(pilot, "bob", shares["bob"].split(), keys=False, seen=seen)
        text = flat_text(app)
        assert "✓ group 1: 3 of 2 (carol, alice, bob), complete" in text
        seen["ready"] = screen_text(app)

        # The rebuild: fingerprint check, import, pairwise test, in the worker.
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        assert isinstance(engine.next_prompt(), BeginStep)
        await drive(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        finished = str(app.screen.query_one("#instructions").render())
        fingerprint = created["fingerprint"]
        grouped = " ".join(fingerprint[i:i + 4] for i in range(0, 64, 4))
        assert "Root key fingerprint, recovered into the token:" in " ".join(finished.split())
        assert grouped.replace(" ", "") in finished.replace(" ", "").replace("\n", "")
        assert finished.replace(" ", "").replace("\n", "").count(
            grouped.replace(" ", "")) == 2  # the recovered key's and the original's
        assert "✓ the same: the recovered root key is the original's" in " ".join(
            finished.split())
        seen["finished"] = screen_text(app)
    assert app.finish_message().startswith("sealed: outcome completed")

    # `ceremony verify` on the new bundle: a recovery, the original's key.
    verified = run_cli("verify", str(rec.out), env=rec.target.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"VERIFIED REHEARSAL: ceremony {RECOVERY_ID}, outcome completed" in verified.stdout
    assert f"RECOVERY of ceremony {ORIGINAL_ID} (head " in verified.stdout
    assert "rebuilt from the shares of carol, alice, bob" in verified.stdout
    assert f"root key fingerprint: {fingerprint}" in verified.stdout
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo

    def der(pem: bytes) -> bytes:
        return serialization.load_pem_public_key(pem[pem.index(b"-----BEGIN"):]).public_bytes(
            *spki)

    assert der((rec.out / ROOT_PEM_FILE).read_bytes()) == der(
        (rec.original.out / ROOT_PEM_FILE).read_bytes())
    assert sorted(o.split(";")[0] for o in rec.target.objects()) == [
        "Private Key Object", "Public Key Object"]
    # The replay marks the seal's root-key signature as checked (root_key.recovered).
    replay = load_replay(rec.out)
    seal = replay.entries[-1]
    assert seal.entry is not None and seal.entry.event == "seal"
    assert [(s.who, s.verified) for s in seal.signers] == [
        ("transcript key", True), ("root key (proof of possession)", True)]

    # No run of three share words on any screen (the private ones included: the field
    # holds one word at most), none of four anywhere in the bundle or the output.
    assert len(seen) == 13
    if DUMP:
        Path(DUMP).write_text("\n\n".join(f"== {k}\n{v}" for k, v in seen.items()))
    assert leaks(shares, seen) == []
    bundle = {str(p): p.read_bytes().decode("utf-8", "replace") for p in rec.out.rglob("*")
              if p.is_file()}
    assert leaks(shares, bundle | {"verify": verified.stdout, "first": first.stdout +
                                   first.stderr}, length=4) == []


# ------------------------------------------------------------------ on the fakes


def fake_recovery_setup(tmp_path: Path) -> tuple[RunSetup, FakeOriginal]:
    """The sample ceremony's recovery on the fakes, as cli/recover.py would set it up."""
    original = fake_original(tmp_path)
    record = original.original.record
    text = recovery_text(original.cast.script_text, record.head, record.fingerprint)

    def open_devices(pin: bytearray | None) -> OpenedDevices:
        devices = Devices(TickingClock(step=timedelta(0)), SeededRandom("recovery-os"),
                          FakeToken(SeededRandom("recovery-token")), Slip39Splitter(),
                          NoSecretOutput())
        return OpenedDevices(devices, PrivateShares())

    setup = RunSetup(parse_script(text, "script.toml"),
                     parse_policy(original.policy_text, "policy.toml"), text.encode(),
                     original.policy_text.encode(), tmp_path / "recovery", True, open_devices,
                     original.cast.signers,  # type: ignore[arg-type]
                     device_name="pkcs11:token=fake", original=original.original,
                     attestation=passing_attestation(True))
    return setup, original


@sync
async def test_absent_custodian_then_abort_while_shares_are_presented(tmp_path: Path) -> None:
    """Someone marked absent cannot present (the sentence says so); an abort on the recovery
    screen forgets the shares presented, rolls back and seals the recovery as aborted."""
    setup, original = fake_recovery_setup(tmp_path)
    app = CeremonyApp(setup)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await drive(pilot, stop=lambda p, i: isinstance(p, SharesNeeded))
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, RecoveryScreen)
        await present(pilot, "alice", original.shares["alice"].split(), keys=False, seen={})
        assert "… group 1: 1 of 2 (alice)" in flat_text(app)
        await pilot.press("p")  # the roll call: Bob leaves the room
        await settle(pilot)
        assert isinstance(app.screen, RollCallScreen)
        people = app.screen.query_one("#people", OptionList)
        people.highlighted = people.get_option_index("bob")
        await pilot.press("space", "b")
        await settle(pilot)
        assert isinstance(app.screen, RecoveryScreen)
        assert "Bob Custodian (bob), group 1 member 2: ✗ ABSENT (roll call: p)" in \
            flat_text(app)
        custodians = app.screen.query_one("#custodians", OptionList)
        custodians.highlighted = custodians.get_option_index("bob")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RecoveryScreen)  # no private screen for him
        assert "✗ Bob Custodian (bob) is not marked present: mark them present in the roll " \
            "call (p)" in flat_text(app)
        await pilot.press("a")
        await settle(pilot)
        await type_text(pilot, "ABORT")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AbortedModal)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        assert "Ceremony ABORTED and sealed" in flat_text(app)
        assert app.engine is not None and not app.engine._shares
    events = [json.loads(line)["event"] for line in
              (tmp_path / "recovery" / TRANSCRIPT_FILE).read_text().splitlines()]
    assert events[-4:] == ["action.started", "share.presented", "ceremony.aborted", "seal"]
    report = verify_bundle(tmp_path / "recovery")
    assert report.ok and report.outcome == "aborted", report.first_failure
