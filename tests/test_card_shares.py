"""SLIP-39 shares on custodians' OpenPGP cards (docs/card-shares.md, CER-SHARE-CARD).

First the packed format and the script's [shares.delivery] alone; then the card through the
real PC/SC stack (pcscd, vpcd, our virtual card): a share written to DO 0103 and read back,
the PIN guarding it, a wrong card or a card without (big enough) private DOs refused before
any PIN is spent. Last, a whole SoftHSM2 ceremony through the CLI that sends carol's share
to her card (a wrong card first: the step is rolled back, then resumed), `ceremony shares
check --card`, and a recovery that reads her share back from the card. The words never show
in a bundle, a transcript or any output.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import shamir_mnemonic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.adapters.activation import activate, combine_pin, read_sheets
from ceremony.adapters.card_shares import (
    CardHolder,
    CardShareOutput,
    ceremony_tag,
    pack_share,
    read_from_card,
    recovery_share,
    unpack_share,
    write_to_card,
)
from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.openpgp_card import OpenPgpCard
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import sha256_hex
from ceremony.engine.core import Devices, Engine
from ceremony.errors import CardError, CheckFailed, InputError, Kind
from ceremony.headless import run_headless
from ceremony.model.answers import parse_answers
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import Cast, answers_toml, simulated_answers
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.pcsc_fixtures import VirtualCard
from tests.test_crash import prepare_ceremony
from tests.test_recovery import assert_no_share_words, recovery_text
from tests.test_rsa import add_token
from tests.vcard.card import ED25519_ATTRIBUTES, KeySlot

PIN = b"123456"
MEMBERS = 'members = ["alice", "bob", "carol"]'
CAROL_ON_CARD = MEMBERS + '\n\n[shares.delivery]\ncarol = ["card"]'


def mnemonics(secret_bytes: int) -> list[str]:
    groups = shamir_mnemonic.generate_mnemonics(1, [(2, 3)], bytes(range(secret_bytes)), b"")
    return list(groups[0])


# ------------------------------------------------------------------------ the format


@pytest.mark.parametrize(("secret", "words", "body"), [(16, 20, 25), (32, 33, 42)])
def test_the_packed_share_round_trips_in_ten_bits_a_word(secret: int, words: int,
                                                         body: int) -> None:
    share = mnemonics(secret)[1]
    assert len(share.split()) == words
    packed = pack_share(share, "sample-root-2026", "carol")
    # magic, version, 8-byte ceremony tag, participant (length + 5), word count, the words
    assert len(packed) == 2 + 1 + 8 + 1 + 5 + 1 + body
    assert packed[:3] == b"CS\x01" and packed[3:11] == ceremony_tag("sample-root-2026")
    back = unpack_share(packed)
    assert (back.mnemonic, back.participant) == (share, "carol")
    assert back.is_for("sample-root-2026") and not back.is_for("other-root-2026")
    assert share not in repr(back)
    # The longest participant id and share still fit the 254 bytes any card gives.
    assert len(pack_share(share, "x" * 64, "p" * 32)) <= 254


def test_malformed_card_data_is_one_sentence_without_a_word() -> None:
    share = mnemonics(32)[0]  # 33 words: 330 bits, 6 of padding
    good = bytes(pack_share(share, "sample-root-2026", "carol"))
    cases = {
        b"": "the card holds no share (its data object 0103 is empty)",
        b"XX" + good[2:]: "does not start with the share format's mark",
        good[:2] + b"\x02" + good[3:]: "format version 2; this tool reads version 1",
        good[:-1]: "its word count and length disagree",
        good[:-1] + bytes([good[-1] | 0x01]): "its padding is not zero",
        good[:11] + b"\x00" + good[12:]: "the participant field is malformed",
    }
    for data, says in cases.items():
        with pytest.raises(InputError) as caught:
            unpack_share(data)
        assert says in caught.value.message
        assert caught.value.kind is Kind.BAD_INPUT
        # SLIP-39 words are English ("object", "card"...): what must not appear is a word the
        # sentence does not have in its own right, or two of the share's words in a row.
        sentence = caught.value.describe()
        own = set(says.split()) | set(caught.value.hint.split())
        assert not (set(share.split()) & set(sentence.split())) - own, sentence
        assert not any(" ".join(pair) in sentence
                       for pair in itertools.pairwise(share.split())), sentence


def test_delivery_is_part_of_the_provisioning_step_digest(cast: Cast) -> None:
    text = cast.script_text.replace(MEMBERS, CAROL_ON_CARD)
    script = parse_script(text, "script.toml")
    assert script.shares.delivery_of("carol") == ("card",)
    assert script.shares.delivery_of("alice") == ("sheet",)
    step = next(s for s in script.steps if s.action == "provision_root_key")
    assert script.step_definition(step)["shares"]["delivery"] == {"carol": ["card"]}
    plain = cast.script
    assert "delivery" not in plain.step_definition(
        next(s for s in plain.steps if s.action == "provision_root_key"))["shares"]
    both = parse_script(cast.script_text.replace(
        MEMBERS, MEMBERS + '\n\n[shares.delivery]\ncarol = ["sheet", "card"]'), "script.toml")
    assert both.shares.delivery_of("carol") == ("card", "sheet")


def test_the_engine_refuses_card_delivery_without_cards(tmp_path: Path, cast: Cast,
                                                        policy_text: str) -> None:
    """A front end that cannot write cards (the UI, sheets alone) never hands carol's share
    to a sheet instead: the step is refused before the split and rolled back."""
    text = cast.script_text.replace(MEMBERS, CAROL_ON_CARD)
    script = parse_script(text, "script.toml")
    secrets = MemorySecrets()
    token = FakeToken(SeededRandom("token"))
    devices = Devices(TickingClock(), SeededRandom("os"), token,
                      Slip39Splitter(SeededRandom("slip39")), secrets)
    engine = Engine.start(script, parse_policy(policy_text, "policy.toml"), text.encode(),
                          policy_text.encode(), devices, tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    with pytest.raises(CheckFailed) as caught:
        run_headless(engine, simulated_answers(script), cast.signers,  # type: ignore[arg-type]
                     lambda _: None)
    assert caught.value.message == ("the script sends the shares of carol to their cards, "
                                    "but this run has no cards set up for them")
    assert caught.value.requirement == "CER-SHARE-CARD"
    assert secrets.shares == {}
    events = [json.loads(line)["event"] for line in
              (tmp_path / "bundle" / "transcript.jsonl").read_text().splitlines()]
    assert "shares.created" not in events and events[-1] == "action.rolled_back"


class CardsInMemory(MemorySecrets):
    """Shares "delivered" to cards in memory, recorded as naming the card ``key`` holds."""

    places = ("sheet", "card")

    def __init__(self, key: bytes) -> None:
        super().__init__()
        self.key = key
        self.cards: dict[str, str] = {}

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        if "card" in context["delivery"]:
            self.cards[participant] = mnemonic
            return f"OpenPGP card with key fingerprint {sha256_hex(self.key)} (serial 0)"
        return super().write_share(participant, name, group, member, mnemonic, context)


@pytest.mark.parametrize("whose", ["carol", "alice"])
def test_the_verifier_checks_the_card_a_share_went_to(tmp_path: Path, cast: Cast,
                                                      policy_text: str, whose: str) -> None:
    """The engine hands carol's share to the card output only (no sheet), and the verifier
    accepts its record only when it names the card with carol's key."""
    text = cast.script_text.replace(MEMBERS, CAROL_ON_CARD)
    script = parse_script(text, "script.toml")
    participant = script.participant(whose)
    assert participant is not None
    secrets = CardsInMemory(participant.public_key_bytes)
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), secrets)
    engine = Engine.start(script, parse_policy(policy_text, "policy.toml"), text.encode(),
                          policy_text.encode(), devices, tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    run_headless(engine, simulated_answers(script), cast.signers,  # type: ignore[arg-type]
                 lambda _: None)
    assert list(secrets.cards) == ["carol"] and sorted(secrets.shares) == ["alice-g1m1",
                                                                          "bob-g1m2"]
    failure = verify_bundle(tmp_path / "bundle").first_failure
    if whose == "carol":
        assert failure is None
    else:
        assert failure is not None and failure.requirement == "CER-SHARE-CARD", failure
        assert failure.detail == ("the script sends carol's share to their card, but the "
                                  "transcript does not record it delivered to the card with "
                                  "carol's key")


def test_answers_present_a_share_from_a_card_only_with_its_card(cast: Cast,
                                                                tmp_path: Path) -> None:
    recovery = parse_script(recovery_text(cast.script_text, "a" * 64, "b" * 64),
                            "script.toml")
    base = f'ceremony_id = "{recovery.ceremony_id}"\nsteps = []\n'
    good = parse_answers(base + '[cards.carol]\npin_file = "carol.pin"\n\n[[shares]]\n'
                         'participant = "carol"\ncard = true\n', "answers.toml", recovery,
                         tmp_path)
    assert good.shares[0].card and good.shares[0].file is None
    for body, says in (
            ('[[shares]]\nparticipant = "carol"\ncard = true\n',
             "shares[0].card: carol's share is on their card, but [cards] "
             "names no card for carol"),
            ('[cards.carol]\npin_file = "p"\n\n[[shares]]\nparticipant = "carol"\n'
             'card = true\nfile = "sheet.txt"\n',
             "shares[0].file: carol's share is read from their card (card = true), so it "
             "has no file")):
        with pytest.raises(InputError) as caught:
            parse_answers(base + body, "answers.toml", recovery, tmp_path)
        assert says in caught.value.message


# --------------------------------------------------------------------- on the card


def card_holding(card: VirtualCard, key: Ed25519PrivateKey | None = None,
                 **factory: object) -> tuple[VirtualCard, bytes]:
    """A card whose signature key is ``key`` (a new one if None), inserted; its public key."""
    key = key or Ed25519PrivateKey.generate()
    card.create(algorithm="ed25519", **factory)
    state = card.state()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    state.keys["sig"] = KeySlot(ED25519_ATTRIBUTES.hex(), status=1, private=seed.hex())
    state.save(card.state_file)
    card.insert()
    return card, key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)


def holder(public: bytes, pins: list[bytes], reader: str, who: str = "carol") -> CardHolder:
    """A CardHolder whose PINs come from ``pins`` in order (each handed out is recorded)."""
    return CardHolder(who, public, lambda: bytearray(pins.pop(0)), reader)


@pytest.mark.pcsc
def test_a_share_on_the_card_behind_its_pin(virtual_card: VirtualCard) -> None:
    card, public = card_holding(virtual_card)
    share = mnemonics(32)[2]
    pins = [PIN]
    started = time.perf_counter()
    where = write_to_card(holder(public, pins, card.reader), share, "sample-root-2026")
    elapsed = time.perf_counter() - started
    print(f"\nshare to the virtual card through pcscd (session, key check, PIN, write, "
          f"read-back): {elapsed * 1000:.0f} ms")
    assert pins == []  # one PIN for the write and its read-back
    assert where == (f"OpenPGP card with key fingerprint {sha256_hex(public)} (serial "
                     f"{card.state().serial.upper()}), data object 0103, read back")
    stored = bytes.fromhex(card.state().private_dos["0103"])
    assert stored == bytes(pack_share(share, "sample-root-2026", "carol"))
    for word in share.split():
        assert word.encode() not in card.state_file.read_bytes()

    # Without the PIN the card gives nothing; with it, the share comes back.
    with OpenPgpCard(card.reader) as session:
        assert session.transmit(0xCA, 0x01, 0x03)[1] == 0x6982
        assert session.transmit(0xCA, 0x01, 0x01)[1] == 0x9000  # 0101: anyone may read
        assert session.transmit(0xDA, 0x01, 0x03, b"x", le=False)[1] == 0x6982
        session.verify(bytearray(PIN), data=True)
        assert session.transmit(0xCA, 0x01, 0x04)[1] == 0x6982  # 0104 needs the admin PIN
        assert session.transmit(0xDA, 0x01, 0x02, b"x", le=False)[1] == 0x6982  # so does 0102
    assert recovery_share(holder(public, [PIN], card.reader), "sample-root-2026") == share
    with pytest.raises(CheckFailed, match=r"^the share on carol's card is not from ceremony "
                       r"other-root-2026$"):
        recovery_share(holder(public, [PIN], card.reader), "other-root-2026")
    with pytest.raises(CheckFailed, match=r"^the share on bob's card says it is carol's$"):
        read_from_card(holder(public, [PIN], card.reader, who="bob"))

    # The card output: to the card and a sheet; a rollback empties the card and the sheets.
    sheets = MemorySecrets()
    output = CardShareOutput(sheets, {"carol": holder(public, [PIN, PIN], card.reader)},
                             "sample-root-2026")
    where = output.write_share("carol", "Carol", 1, 3, share, {"delivery": ["card", "sheet"]})
    assert where.endswith("data object 0103, read back and memory carol-g1m3")
    assert output.remove_all() == ["carol-g1m3"] and sheets.shares == {}
    assert card.state().private_dos["0103"] == ""
    stored = bytes(pack_share(share, "sample-root-2026", "carol"))
    write_to_card(holder(public, [PIN], card.reader), share, "sample-root-2026")

    # A wrong PIN: one try gone, the share untouched, one sentence without the share.
    with pytest.raises(CardError) as wrong:
        read_from_card(holder(public, [b"654321"], card.reader))
    assert wrong.value.message == "the card refused the PIN; 2 tries left"
    assert card.state().pw1_tries == 2
    with pytest.raises(CardError, match="refused the PIN; 1 try left"):
        write_to_card(holder(public, [b"654321"], card.reader), mnemonics(16)[0], "x-y-z")
    assert bytes.fromhex(card.state().private_dos["0103"]) == stored


@pytest.mark.pcsc
def test_cards_that_cannot_hold_the_share_are_refused_before_the_pin(
        virtual_card: VirtualCard, tmp_path: Path) -> None:
    share = mnemonics(32)[0]
    card, public = card_holding(virtual_card, private_dos=False)
    pins = [PIN]
    with pytest.raises(CardError) as absent:
        write_to_card(holder(public, pins, card.reader), share, "sample-root-2026")
    assert absent.value.message == (f"the card in reader {card.reader!r} has no private data "
                                    "objects (OpenPGP card DO 0101-0104) to hold a share")
    assert card.state().pw1_tries == 3
    with OpenPgpCard(card.reader) as session:  # the card itself says 6A88
        assert session.transmit(0xCA, 0x01, 0x03)[1] == 0x6A88
    card.remove()

    small = VirtualCard(card.stack, tmp_path / "small.json")
    try:
        _, public = card_holding(small, max_special_do=48)
        with pytest.raises(CardError, match=r"^the card's private data objects hold 48 bytes; "
                           r"the share needs 60$"):
            write_to_card(holder(public, [PIN], small.reader), share, "sample-root-2026")
        assert small.state().pw1_tries == 3 and small.state().private_dos == {}
        # Someone else's card: refused by its key, before any PIN.
        someone = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        with pytest.raises(CardError, match=r"is not carol's card$"):
            write_to_card(holder(someone, [], small.reader), share, "sample-root-2026")
    finally:
        small.remove()


# ------------------------------------------------- a whole ceremony, then its recovery


def _carol_key(directory: Path) -> Ed25519PrivateKey:
    return KeyFileSigner.load("carol", directory / "identities" / "carol.pem")._key


def _card_answers(text: str, directory: Path) -> str:
    """carol signs nothing here: her key file goes, her card (PIN file) comes."""
    (directory / "carol.pin").write_text(PIN.decode() + "\n")
    text = re.sub(r'^carol = ".*"\n', "", text, flags=re.M)
    return text + '\n[cards.carol]\npin_file = "carol.pin"\nwait_seconds = 1\n'


@pytest.mark.pcsc
def test_a_ceremony_sends_a_share_to_a_card_and_recovers_from_it(
        virtual_card: VirtualCard, tmp_path: Path, softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "original", softhsm, script_edit=(MEMBERS, CAROL_ON_CARD))
    c.answers_path.write_text(_card_answers(c.answers_path.read_text(), c.directory))

    # A card that is nobody's: the step is refused and rolled back, nothing is left.
    stranger, _ = card_holding(virtual_card)
    failed = c.run()
    assert failed.returncode == 3, failed.stdout + failed.stderr
    assert "the card in reader 'Virtual PCD 00 00' belongs to no participant of this " \
        "ceremony; carol's is needed [CER-SHARE-CARD]" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert [e["event"] for e in c.entries()][-1] == "action.rolled_back"
    assert not list(c.secret.glob("share-*")) and stranger.state().private_dos == {}
    stranger.remove()

    carols = VirtualCard(virtual_card.stack, tmp_path / "carol-card.json")
    try:
        card_holding(carols, _carol_key(c.directory))
        resumed = c.run("--resume")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert verify_bundle(c.out).ok
        (created,) = [e["payload"] for e in c.entries() if e["event"] == "shares.created"]
        where = {h["participant"]: h["delivered_to"] for h in created["holders"]}
        fingerprint = sha256_hex(c.script.participant("carol").public_key_bytes)  # type: ignore[union-attr]
        assert where["carol"].startswith(f"OpenPGP card with key fingerprint {fingerprint}")
        assert where["alice"].startswith("share sheet")
        assert [p.name for p in c.secret.glob("share-*-carol-*")] == []  # card only
        carol_share = unpack_share(bytes.fromhex(carols.state().private_dos["0103"])).mnemonic

        checked = run_cli("shares", "check", str(c.out), "--card", "--pin-file",
                          str(c.directory / "carol.pin"), env=softhsm.env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("your share is intact: custodian carol, group 1 "
                                         "member 3")

        # The recovery: carol's share from her card, alice's from her sheet.
        rec = tmp_path / "recovery"
        rec.mkdir()
        report = verify_bundle(c.out)
        assert report.head and report.root_fingerprint
        text = recovery_text(c.script_path.read_text(), report.head, report.root_fingerprint)
        (rec / "script.toml").write_text(text)
        shutil.copy(c.directory / "policy.toml", rec / "policy.toml")
        script = parse_script(text, "script.toml")
        target = add_token(softhsm, softhsm.label + "-new")
        done = activate(target.module, target.uri, script, bytearray(target.so_pin.encode()),
                        rec / "officers")
        sheets = [done.sheets / f"pin-share-{o}.txt" for o in ("alice", "bob")]
        pin, _ = combine_pin(script.token.activation, read_sheets(sheets))
        target.pin = pin.decode()
        identities = {p: c.directory / "identities" / f"{p}.pem"
                      for p in ("alice", "bob", "wendy")}
        (alice_sheet,) = c.secret.glob("share-*-alice-*.txt")
        answers = answers_toml(script, simulated_answers(script, identities))
        answers = _card_answers(answers, rec) + (
            '\n[[shares]]\nparticipant = "carol"\ncard = true\n'
            f'\n[[shares]]\nparticipant = "alice"\nfile = "{alice_sheet}"\n')
        (rec / "answers.toml").write_text(answers)
        recovered = run_cli("recover", str(rec / "script.toml"), "--original", str(c.out),
                            "--out", str(rec / "bundle"), "--headless", "--answers",
                            str(rec / "answers.toml"), "--rehearsal", "--token", target.uri,
                            "--module", target.module,
                            *(a for s in sheets for a in ("--pin-share", str(s))),
                            env=target.env)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert "carol presented their share from their card" in recovered.stdout
        assert verify_bundle(rec / "bundle").ok
    finally:
        carols.remove()

    sheets_words = [re.findall(r"^\s*\d+\. (\S+)$", p.read_text(), re.M)
                    for p in c.secret.glob("share-*.txt")]
    haystacks = {"run": failed.stdout.encode() + failed.stderr.encode(),
                 "resume": resumed.stdout.encode() + resumed.stderr.encode(),
                 "check": checked.stdout.encode() + checked.stderr.encode(),
                 "recover": recovered.stdout.encode() + recovered.stderr.encode()}
    for bundle in (c.out, rec / "bundle"):
        haystacks |= {str(p): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert_no_share_words([carol_share, *(" ".join(w) for w in sheets_words)], haystacks)

