"""Ceremonies approved with custodians' cards, on the real PC/SC stack and a real token.

pcscd + vpcd + our virtual OpenPGP card (tests/vcard), one reader, the cards inserted one
at a time as custodians take turns; SoftHSM2 tokens; `ceremony run --headless` as a
subprocess and the UI with Pilot. What a custodian notices: the run asks for their card,
names a wrong card before any PIN is spent, says how many PIN tries are left, that a card
is blocked or was pulled out; a failed approval records nothing, and the ceremony goes on
(or resumes) to a bundle that verifies.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.adapters.card_turns import TurnSigner, owners_of
from ceremony.adapters.openpgp_card import OpenPgpCard
from ceremony.cli.main import main
from ceremony.cli.script import authorize
from ceremony.engine.prompts import ApprovalNeeded
from ceremony.errors import AnswersError, CardError, Kind
from ceremony.model import statements as st
from ceremony.model.answers import parse_answers
from ceremony.model.authorization import signature_line, statement_for
from ceremony.model.policy import parse_policy
from ceremony.model.script import Script, parse_script
from ceremony.rehearsal import answers_toml, make_cast, simulated_answers
from ceremony.tui.app import CeremonyApp, RunSetup
from ceremony.tui.cards import CardApprovals, CardScreen
from ceremony.tui.devices import token_opener
from ceremony.tui.screens import CeremonyScreen
from ceremony.verify import verify_bundle
from tests.conftest import REPO, SoftHsm
from tests.fakes import SeededRandom, passing_attestation
from tests.pcsc_fixtures import PcscStack, VirtualCard
from tests.test_crash import known_pin_texts
from tests.tui_helpers import drive, flat_text, open_and_roll_call, settle, sync, type_text

pytestmark = pytest.mark.pcsc

PIN = b"123456"
ADMIN_PIN = b"12345678"
CARD_HOLDERS = ("alice", "bob", "carol", "wendy")  # three custodians and the witness
INSERT = re.compile(r"waiting up to \d+ s for (\w+) to insert it")


@dataclass
class Prepared:
    """The sample ceremony (known-PIN token) with its participants' keys on cards."""

    directory: Path  # the module's: card templates, script, policy
    script_text: str
    policy_text: str
    script: Script
    keys: dict[str, bytes]  # participant -> the card's public key

    def cards(self, stack: PcscStack, where: Path) -> dict[str, VirtualCard]:
        """Fresh copies of the enrolled cards for one test (PIN counters at 3)."""
        where.mkdir(parents=True, exist_ok=True)
        out = {}
        for pid in CARD_HOLDERS:
            state = where / f"{pid}.json"
            state.write_bytes((self.directory / f"{pid}.json").read_bytes())
            out[pid] = VirtualCard(stack, state)
        return out


@pytest.fixture(scope="module")
def prepared(pcsc_stack: PcscStack, tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """Four cards enrolled through the adapter (an Ed25519 key made on each card), and the
    script naming their keys: made once for the module."""
    directory = tmp_path_factory.mktemp("cards")
    keys: dict[str, bytes] = {}
    for pid in CARD_HOLDERS:
        card = VirtualCard(pcsc_stack, directory / f"{pid}.json")
        card.create(serial=f"C0DE000{len(keys)}")
        card.insert()
        try:
            with OpenPgpCard(card.reader) as session:
                keys[pid] = session.generate(bytearray(ADMIN_PIN), now=1_750_000_000).public_key
        finally:
            card.remove()
    template, policy_text = known_pin_texts()
    cast = make_cast(template, SeededRandom("card-participants"))
    text = cast.script_text
    for pid, key in keys.items():
        participant = cast.script.participant(pid)
        assert participant is not None
        text = text.replace(participant.public_key, st.encode_key(key))
    script = parse_script(text, "script.toml")
    assert all(script.participant(p).public_key_bytes == k  # type: ignore[union-attr]
               for p, k in keys.items())
    (directory / "script.toml").write_text(text)
    (directory / "policy.toml").write_text(policy_text)
    return Prepared(directory, text, policy_text, script, keys)


def write_answers(path: Path, prepared: Prepared, pins: dict[str, bytes] | None = None,
                  wait: dict[str, int] | None = None,
                  approvers: tuple[str, str] = ("alice", "bob")) -> Path:
    """The answers file: every step as simulated, each card holder under [cards] with a PIN
    file (never the PIN itself) and, where given, how long to wait for their card."""
    text = answers_toml(prepared.script, simulated_answers(prepared.script))
    text = text.replace('approvals = ["alice", "bob"]',
                        "approvals = [" + ", ".join(f'"{a}"' for a in approvers) + "]")
    lines = [text, "[cards]"]
    for pid in CARD_HOLDERS:
        pin = path.parent / f"{pid}.pin"
        pin.write_bytes((pins or {}).get(pid, PIN) + b"\n")
        extra = f", wait_seconds = {wait[pid]}" if wait and pid in wait else ""
        lines.append(f'{pid} = {{ pin_file = "{pin.name}"{extra} }}')
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    asked: list[str]  # whose card the run asked for, in order


class Room:
    """One test's ceremony directory, token and cards; runs `ceremony run --headless` and
    hands over the card the run asks for (the one reader holds one card at a time)."""

    def __init__(self, prepared: Prepared, stack: PcscStack, softhsm: SoftHsm,
                 tmp_path: Path) -> None:
        self.prepared = prepared
        self.softhsm = softhsm
        self.directory = tmp_path
        self.cards = prepared.cards(stack, tmp_path / "cards")
        self.inserted: VirtualCard | None = None
        self.holding: tuple[str, int | None] | None = None  # whose card is in, pulled at
        self.script = tmp_path / "script.toml"
        self.script.write_text(prepared.script_text)
        (tmp_path / "policy.toml").write_text(prepared.policy_text)
        (tmp_path / "token.pin").write_text(softhsm.pin + "\n")
        self.answers = tmp_path / "answers.toml"
        self.out = tmp_path / "bundle"

    def insert(self, pid: str | None, *, pull_at: int | None = None) -> None:
        if self.inserted is not None:
            if self.holding == (pid, pull_at) and self.inserted.process is not None \
                    and self.inserted.process.poll() is None:
                return  # asked again while the card was being read: it is in already
            self.inserted.remove()
            self.inserted = self.holding = None
        if pid is not None:
            self.inserted = self.cards[pid].insert(pull_at=pull_at)
            self.holding = (pid, pull_at)

    def close(self) -> None:
        self.insert(None)

    def run(self, *extra: str, hand_over: dict[str, tuple[str, int | None]] | None = None,
            rehearsal: bool = True) -> Run:
        """The headless run; when it asks for X's card, X's card goes in (or, per
        ``hand_over``, another card or one pulled out mid-command). The reader starts empty:
        the last run's custodian took their card back."""
        self.insert(None)
        env = {**self.softhsm.env, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "ceremony.cli.main", "run", str(self.script),
                   "--headless", "--answers", str(self.answers), "--out", str(self.out),
                   "--token", self.softhsm.uri, "--module", self.softhsm.module,
                   "--pin-file", str(self.directory / "token.pin"),
                   *(("--rehearsal",) if rehearsal else ()), *extra]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=env, cwd=REPO)
        assert process.stdout is not None and process.stderr is not None
        lines: list[str] = []
        asked: list[str] = []
        try:
            for line in process.stdout:
                lines.append(line)
                wanted = INSERT.search(line)
                if wanted:
                    if asked[-1:] != [wanted[1]]:
                        asked.append(wanted[1])
                    pid, pull_at = (hand_over or {}).get(wanted[1], (wanted[1], None))
                    self.insert(pid, pull_at=pull_at)
            stderr = process.stderr.read()
            process.wait(60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        return Run(process.returncode, "".join(lines), stderr, asked)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in
                (self.out / "transcript.jsonl").read_text().splitlines()]

    def approvals(self) -> list[tuple[str, str]]:
        return [(e["event"], e["actor"]) for e in self.entries()
                if e["event"] in ("approval", "witness.ack")]


@pytest.fixture
def room(prepared: Prepared, pcsc_stack: PcscStack, softhsm: SoftHsm,
         tmp_path: Path) -> Iterator[Room]:
    r = Room(prepared, pcsc_stack, softhsm, tmp_path)
    try:
        yield r
    finally:
        r.close()


def no_secret_in(room: Room, *texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text
        for pid in CARD_HOLDERS:
            pin = (room.directory / f"{pid}.pin").read_text().strip()
            assert pin not in text, f"{pid}'s PIN appears in the output"


@pytest.mark.softhsm
def test_a_ceremony_approved_with_cards_verifies(room: Room, prepared: Prepared) -> None:
    """`ceremony run --headless` asks for each card in turn. alice's wrong PIN stops the run
    with one sentence (exit 3) and nothing recorded for her; resumed, with bob and carol
    approving, every approval and acknowledgement is a card signature and the bundle
    verifies."""
    write_answers(room.answers, prepared, pins={"alice": b"654321"})
    wrong_pin = room.run()
    assert wrong_pin.returncode == Kind.DEVICE.value, wrong_pin.stdout
    assert wrong_pin.stderr.startswith("ceremony: the card refused the PIN; 2 tries left\n")
    assert wrong_pin.asked == ["wendy", "alice"]  # the witness opens, then alice's turn
    assert room.approvals() == [("witness.ack", "wendy")]  # nothing for alice
    assert room.cards["alice"].state().pw1_tries == 2

    write_answers(room.answers, prepared, approvers=("bob", "carol"))  # carol steps in
    done = room.run("--resume")
    assert done.returncode == 0, done.stderr
    assert done.asked[:3] == ["bob", "carol", "wendy"]  # custodians take turns
    no_secret_in(room, wrong_pin.stdout, wrong_pin.stderr, done.stdout, done.stderr)
    report = verify_bundle(room.out)
    assert report.ok, report.first_failure
    signed = [e for e in room.entries() if e["event"] in ("approval", "witness.ack")]
    assert [e["actor"] for e in signed if e["event"] == "approval"] == ["bob", "carol"]
    for entry in signed:
        key = prepared.keys[entry["actor"]]
        assert st.verify_ed25519(key, st.unb64(entry["payload"]["signature"]),
                                 st.message(entry["payload"]["statement"]))
    for pid, card in room.cards.items():  # one card signature per recorded one, no more
        made = sum(1 for e in signed if e["actor"] == pid)
        assert card.state().signature_counter == made, pid


def test_a_turn_names_the_wrong_card_the_blocked_one_and_the_one_pulled_out(
        prepared: Prepared, pcsc_stack: PcscStack, tmp_path: Path) -> None:
    """What the headless runner's signer says, card by card: each failure one sentence,
    no PIN spent on a wrong card, no PIN asked of a blocked one, nothing signed."""
    cards = prepared.cards(pcsc_stack, tmp_path / "cards")
    owners = owners_of(prepared.keys)
    said: list[str] = []
    pins: list[str] = []

    def signer(pid: str, wait: float = 1.0) -> TurnSigner:
        return TurnSigner(pid, prepared.keys[pid], owners,
                          lambda: pins.append(pid) or bytearray(PIN),  # type: ignore[func-returns-value]
                          wait=wait, say=said.append)

    with pytest.raises(CardError) as empty:
        signer("alice", wait=0.2).sign(b"statement")
    assert empty.value.message == "there is no card in any reader; alice's card is needed"
    cards["bob"].insert()
    try:
        with pytest.raises(CardError) as wrong:
            signer("alice").sign(b"statement")
        assert wrong.value.describe().startswith(
            "this is bob's card; alice's is needed [CER-CARD-APPROVAL]\n  hint: alice "
            "inserts their own card")
        assert said[-1] == ("      this is bob's card; alice's is needed: waiting up to 1 s "
                            "for alice to insert it")
    finally:
        cards["bob"].remove()
    assert pins == [] and cards["bob"].state().pw1_tries == 3

    state = cards["carol"].state()
    state.pw1_tries = 0
    state.save(cards["carol"].state_file)
    cards["carol"].insert()
    try:
        with pytest.raises(CardError) as blocked:
            signer("carol").sign(b"statement")
    finally:
        cards["carol"].remove()
    assert blocked.value.message == "carol's card is blocked after too many wrong PIN tries"
    assert pins == []

    cards["alice"].insert(pull_at=0x2A)  # out of the reader in the middle of PSO:CDS
    try:
        with pytest.raises(CardError) as pulled:
            signer("alice").sign(b"statement")
    finally:
        cards["alice"].remove()
    assert pulled.value.message == (f"the card was taken out of reader "
                                    f"'{cards['alice'].reader}' in the middle of a command")
    assert cards["alice"].state().signature_counter == 0
    cards["alice"].insert()  # the reader takes cards again, and alice's signs
    try:
        signature = signer("alice").sign(b"statement")
    finally:
        cards["alice"].remove()
    assert st.verify_ed25519(prepared.keys["alice"], signature, b"statement")
    assert pins == ["alice", "alice"]


def test_a_real_run_takes_cards_and_refuses_key_files(
        room: Room, prepared: Prepared, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without --rehearsal: [identities] is refused (CER-IDENTITY); [cards] is accepted,
    and the run goes on to the next check (here, the unsigned script)."""
    write_answers(room.answers, prepared)
    common = ["run", str(room.script), "--headless", "--out", str(room.out), "--state",
              str(tmp_path / "state.json")]
    assert main([*common, "--answers", str(room.answers)]) == Kind.CHECK_FAILED.value
    cards = capsys.readouterr().err
    assert "CER-IDENTITY" not in cards and "[CER-SCRIPT-SIGNED]" in cards

    key = tmp_path / "alice.pem"
    key.write_text("not read")
    text = room.answers.read_text().replace("[identities]\n", f'[identities]\nalice = "{key}"\n')
    (tmp_path / "keys.toml").write_text(text.replace("\nalice = { pin_file", "\n# { pin_file"))
    assert main([*common, "--answers", str(tmp_path / "keys.toml")]) == Kind.BAD_INPUT.value
    assert capsys.readouterr().err.startswith(
        "ceremony: plain identity key files are allowed only in a rehearsal [CER-IDENTITY]")
    assert not room.out.exists()


def test_the_answers_file_names_cards_strictly(prepared: Prepared, tmp_path: Path) -> None:
    base = answers_toml(prepared.script, simulated_answers(prepared.script))
    (tmp_path / "alice.pin").write_bytes(PIN)

    def parse(cards: str) -> Any:
        return parse_answers(base + cards, "answers.toml", prepared.script, tmp_path)

    def refused(cards: str) -> str:
        with pytest.raises(AnswersError) as error:
            parse(cards)
        return error.value.message

    full = "".join(f'{p} = {{ pin_file = "alice.pin" }}\n' for p in CARD_HOLDERS)
    answers = parse("[cards]\n" + full.replace(
        'alice = { pin_file = "alice.pin" }',
        'alice = { reader = "Virtual PCD 00 00", pin_file = "alice.pin", wait_seconds = 9 }'))
    alice = answers.cards["alice"]
    assert (alice.reader, alice.pin_file, alice.wait_seconds) == (
        "Virtual PCD 00 00", tmp_path / "alice.pin", 9)
    assert answers.cards["bob"].reader is None and answers.cards["bob"].wait_seconds == 300
    assert "'bob' has no card under [cards]" in refused(
        "[cards]\nalice = {}\ncarol = {}\nwendy = {}\n")
    assert re.search(r"cards\.zed: 'zed' is not a participant",
                     refused("[cards]\n" + full + "zed = {}\n"))
    assert re.search(r"cards\.alice\.pin: is not a known field",
                     refused("[cards]\n" + full.replace('alice = { pin_file = "alice.pin" }',
                                                        'alice = { pin = "123456" }')))
    assert re.search(r"cards\.bob\.wait_seconds: 0 is out of range",
                     refused("[cards]\n" + full.replace('bob = { pin_file = "alice.pin" }',
                                                        "bob = { wait_seconds = 0 }")))


@pytest.mark.softhsm
@sync
async def test_ui_insert_your_card_then_pin(prepared: Prepared, pcsc_stack: PcscStack,
                                            softhsm: SoftHsm, tmp_path: Path) -> None:
    """A real (not rehearsal) ceremony in the UI: the witness acknowledges with her card;
    alice is asked for hers, bob's card is named as the wrong one, the PIN tries count
    down, the card pulled out mid-signature records nothing, then her approval is recorded
    with the live count; bob's blocked card is named. The ceremony is aborted and the
    bundle verifies."""
    cards = prepared.cards(pcsc_stack, tmp_path / "cards")
    blocked = cards["bob"].state()
    blocked.pw1_tries = 0
    blocked.save(cards["bob"].state_file)
    script_path = tmp_path / "script.toml"
    script_path.write_text(prepared.script_text)
    sigs = b""
    for pid in ("alice", "bob"):  # the authorizers sign the script (with their cards' keys)
        statement = statement_for(prepared.script, pid, "custodian", "2026-01-01T00:00:00.000000Z")
        key = Ed25519PrivateKey.from_private_bytes(
            bytes.fromhex(cards[pid].state().keys["sig"].private))
        sigs += signature_line(statement, key.sign(st.message(statement)))
    (tmp_path / "script.toml.sigs").write_bytes(sigs)
    policy = parse_policy(prepared.policy_text, "policy.toml")
    authorization = authorize(script_path, prepared.script, policy, rehearsal=False,
                              state=tmp_path / "versions.json")
    opener = token_opener(softhsm.module, softhsm.uri, prepared.script.ceremony_id,
                          tmp_path / "secret")
    setup = RunSetup(prepared.script, policy, prepared.script_text.encode(),
                     prepared.policy_text.encode(), tmp_path / "bundle", False, opener,
                     needs_pin=True, device_name=softhsm.uri, authorization=authorization,
                     attestation=passing_attestation(False), cards=CardApprovals(None))
    app = CeremonyApp(setup)
    inserted: list[VirtualCard] = []

    def insert(pid: str | None, pull_at: int | None = None) -> None:
        while inserted:
            inserted.pop().remove()
        if pid is not None:
            inserted.append(cards[pid].insert(pull_at=pull_at))

    async def until(text: str, seconds: float = 10.0) -> str:
        for _ in range(int(seconds / 0.1)):
            await pilot.pause(0.1)
            shown = flat_text(app)
            if text in shown:
                return shown
        raise AssertionError(f"{text!r} not on the screen:\n{flat_text(app)}")

    def recorded() -> list[str]:
        return [json.loads(line)["actor"] for line in
                (tmp_path / "bundle" / "transcript.jsonl").read_text().splitlines()
                if json.loads(line)["event"] == "approval"]

    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await open_and_roll_call(pilot, pin=softhsm.pin)
            await drive(pilot, stop=lambda p, i: isinstance(p, ApprovalNeeded))
            await pilot.press("enter")  # wendy acknowledges the opening with her card
            await settle(pilot)
            assert isinstance(app.screen, CardScreen)
            insert("wendy")
            await until("wendy's card is in the reader (3 PIN tries left)")
            await type_text(pilot, PIN.decode())
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, CeremonyScreen)
            insert(None)  # wendy takes her card back
            await drive(pilot, stop=lambda p, i: i == 1 and isinstance(p, ApprovalNeeded))
            await pilot.press("enter")  # alice approves
            await settle(pilot)
            assert isinstance(app.screen, CardScreen)
            await until("there is no card in any reader; alice's card is needed")
            assert "approvals 0 of 2: none yet; 2 more needed (from alice, bob, carol)" in \
                flat_text(app)
            insert("bob")
            await until("this is bob's card; alice's is needed")
            insert("alice")
            await until("alice's card is in the reader (3 PIN tries left)")
            await type_text(pilot, "000000")
            await pilot.press("enter")
            await until("the card refused the PIN; 2 tries left")
            await until("(2 PIN tries left)")
            assert recorded() == []
            insert("alice", pull_at=0x2A)
            await until("(2 PIN tries left)")
            await type_text(pilot, PIN.decode())
            await pilot.press("enter")
            await until("the card was taken out of reader")
            await until("Nothing was recorded")
            assert recorded() == [] and cards["alice"].state().signature_counter == 0
            insert("alice")
            await until("(3 PIN tries left)")  # the right PIN reset the counter
            await type_text(pilot, PIN.decode())
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, CeremonyScreen)
            assert recorded() == ["alice"]
            assert "approvals collected 1 of 2: Alice Custodian (alice)" in flat_text(app)
            await pilot.press("enter")  # bob, whose card is blocked
            await settle(pilot)
            assert isinstance(app.screen, CardScreen)
            insert("bob")
            await until("bob's card is blocked after too many wrong PIN tries")
            assert "approvals 1 of 2: Alice Custodian (alice); 1 more needed" in flat_text(app)
            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, CeremonyScreen)
            await pilot.press("a")
            await settle(pilot)
            await type_text(pilot, "ABORT")
            await pilot.press("enter")
            await settle(pilot)
    finally:
        insert(None)
    assert recorded() == ["alice"]
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.first_failure
    assert report.outcome == "aborted"
