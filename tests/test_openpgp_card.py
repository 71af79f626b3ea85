"""Custodian cards through the real PC/SC stack: pcscd, vsmartcard's vpcd, our virtual card.

What a custodian and the administrator notice: the card's key is read and made, it signs
what the engine asks and the signature verifies (alone, and as approvals in a whole
ceremony the independent verifier checks), a wrong PIN says how many tries are left, the
third blocks the card, and `ceremony custodian enroll` prints the identity to paste.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ceremony.adapters.openpgp_card import CardSigner, OpenPgpCard, openpgp_fingerprint
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import sha256_hex
from ceremony.display import grouped_hex, words
from ceremony.engine.core import Devices, Engine
from ceremony.errors import CardError, Kind
from ceremony.headless import run_headless
from ceremony.model import statements as st
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import Cast, simulated_answers
from ceremony.verify import verify_bundle
from tests.conftest import run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.pcsc_fixtures import VirtualCard

pytestmark = pytest.mark.pcsc

PIN = b"123456"
ADMIN_PIN = b"12345678"


def card_public_key(card: VirtualCard) -> bytes:
    """The public key of the card's signature key, from its state file (not through PC/SC)."""
    seed = bytes.fromhex(card.state().keys["sig"].private)
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def enrolled(card: VirtualCard) -> VirtualCard:
    """A card with an Ed25519 signature key made through the adapter, inserted."""
    card.insert()
    with OpenPgpCard(card.reader) as session:
        session.generate(bytearray(ADMIN_PIN), now=1_750_000_000)
    return card


def test_select_and_read_a_factory_card(virtual_card: VirtualCard) -> None:
    virtual_card.create(serial="0A1B2C3D").insert()
    with OpenPgpCard() as card:  # the one reader with a card is found without a name
        info = card.info()
        assert card.reader == virtual_card.reader
        assert (info.version, info.manufacturer_name, info.serial) == ("3.4", "test card",
                                                                       "0A1B2C3D")
        assert (info.pin_tries, info.admin_tries, info.pin_once) == (3, 3, True)
        assert info.algorithm == "rsa2048" and not info.has_fingerprint
        assert info.chaining and info.extended == 0x0800
        with pytest.raises(CardError, match=r"signature key is rsa2048, not Ed25519"):
            card.public_key()


def test_generate_makes_an_ed25519_key_that_survives_reinsertion(
        virtual_card: VirtualCard) -> None:
    virtual_card.insert()
    with OpenPgpCard(virtual_card.reader) as card:
        identity = card.generate(bytearray(ADMIN_PIN), now=1_750_000_000)
    assert identity.public_key == card_public_key(virtual_card)
    assert identity.encoded == st.encode_key(identity.public_key)
    assert identity.fingerprint == sha256_hex(identity.public_key)
    # GnuPG's fingerprint of the same key, recorded on the card with its date.
    state = virtual_card.state()
    assert state.keys["sig"].fingerprint == openpgp_fingerprint(identity.public_key,
                                                                1_750_000_000).hex()
    assert state.keys["sig"].generated == 1_750_000_000
    assert state.keys["sig"].attributes == "162b06010401da470f01"  # switched from RSA
    assert identity.openpgp_fingerprint == state.keys["sig"].fingerprint.upper()

    virtual_card.remove()  # the card's process ends: only its file remains
    virtual_card.insert()
    with OpenPgpCard(virtual_card.reader) as card:
        again = card.identity()
    assert again.public_key == identity.public_key
    assert again.info.generated == 1_750_000_000


def test_generate_needs_the_admin_pin(virtual_card: VirtualCard) -> None:
    virtual_card.insert()
    with OpenPgpCard(virtual_card.reader) as card, \
            pytest.raises(CardError, match=r"^the card refused the admin PIN; 2 tries left$"):
        card.generate(bytearray(b"87654321"))
    state = virtual_card.state()
    assert state.pw3_tries == 2 and not state.keys["sig"].private


def test_card_signatures_verify_with_cryptography(virtual_card: VirtualCard) -> None:
    enrolled(virtual_card)
    public = Ed25519PublicKey.from_public_bytes(card_public_key(virtual_card))
    short, long = b"approve step 3", bytes(range(256)) * 3  # 768 bytes: a command chain
    with OpenPgpCard(virtual_card.reader) as card:
        for message in (short, long):
            pin = bytearray(PIN)
            card.verify(pin)
            assert pin == bytearray(len(PIN))  # wiped once the card had it
            signature = card.sign(message)
            public.verify(signature, message)  # raises if it does not verify
        assert card.info().signature_counter == 2


def test_the_pin_is_good_for_one_signature(virtual_card: VirtualCard) -> None:
    enrolled(virtual_card)
    with OpenPgpCard(virtual_card.reader) as card:
        with pytest.raises(CardError, match="will not sign before its PIN is verified"):
            card.sign(b"no PIN yet")
        card.verify(bytearray(PIN))
        card.sign(b"first")
        with pytest.raises(CardError, match="will not sign before its PIN is verified"):
            card.sign(b"second, same PIN")
    assert virtual_card.state().signature_counter == 1


def test_wrong_pins_count_down_then_block_the_card(virtual_card: VirtualCard) -> None:
    enrolled(virtual_card)
    with OpenPgpCard(virtual_card.reader) as card:
        with pytest.raises(CardError, match=r"^the card refused the PIN; 2 tries left$"):
            card.verify(bytearray(b"000000"))
        assert virtual_card.state().pw1_tries == 2
        card.verify(bytearray(PIN))  # a right PIN restores the counter
        assert virtual_card.state().pw1_tries == 3
        for left in ("2 tries", "1 try"):
            with pytest.raises(CardError, match=rf"^the card refused the PIN; {left} left$"):
                card.verify(bytearray(b"000000"))
        with pytest.raises(CardError) as blocked:
            card.verify(bytearray(b"000000"))
    assert blocked.value.message == "the card's PIN is blocked after too many wrong tries"
    assert "unblock" in blocked.value.hint and blocked.value.kind is Kind.DEVICE
    assert virtual_card.state().pw1_tries == 0

    # Blocked in the card itself, not only in our adapter: the right PIN is refused (6983).
    with OpenPgpCard(virtual_card.reader) as card:
        _, sw = card.transmit(0x20, 0x00, 0x81, PIN, le=False)
        assert sw == 0x6983
        with pytest.raises(CardError, match="PIN is blocked"):
            card.verify(bytearray(PIN))


def test_card_approvals_verify_in_a_whole_ceremony(
        virtual_card: VirtualCard, tmp_path: Path, cast: Cast, policy_text: str) -> None:
    """alice approves with her card; the engine checks each approval as it is given and the
    independent verifier checks them all again in the bundle."""
    enrolled(virtual_card)
    asked: list[str] = []

    def pin_source() -> bytearray:
        asked.append("pin")
        return bytearray(PIN)

    signer = CardSigner("alice", pin_source, reader=virtual_card.reader)
    alice = cast.script.participant("alice")
    assert alice is not None
    script_text = cast.script_text.replace(alice.public_key, signer.public_key)
    assert script_text != cast.script_text
    parsed = parse_script(script_text, "script.toml")
    signers = {**cast.signers, "alice": signer}
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    policy = parse_policy(policy_text, "policy.toml")
    engine = Engine.start(parsed, policy, script_text.encode(), policy_text.encode(), devices,
                          tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    finished = run_headless(engine, simulated_answers(parsed), signers,  # type: ignore[arg-type]
                            lambda _: None)
    assert finished.outcome == "completed"
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.first_failure

    approvals = [json.loads(line) for line in
                 (tmp_path / "bundle" / "transcript.jsonl").read_text().splitlines()]
    by_alice = [e for e in approvals if e["event"] == "approval" and e["actor"] == "alice"]
    assert by_alice, "the sample script should ask alice to approve"
    public = st.decode_key(signer.public_key)
    for entry in by_alice:
        statement = entry["payload"]["statement"]
        assert statement["type"] == st.APPROVAL
        assert st.verify_ed25519(public, st.unb64(entry["payload"]["signature"]),
                                 st.message(statement))
    # One PIN and one card signature per approval, nothing more.
    assert len(asked) == len(by_alice) == virtual_card.state().signature_counter


def test_a_signer_refuses_another_custodians_card_before_the_pin(
        virtual_card: VirtualCard) -> None:
    enrolled(virtual_card)
    someone_else = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    asked: list[str] = []
    signer = CardSigner("bob", lambda: asked.append("pin") or bytearray(PIN),  # type: ignore[func-returns-value]
                        reader=virtual_card.reader, public_key=someone_else)
    with pytest.raises(CardError, match=r"^the card in the reader is not bob's card$"):
        signer.sign(b"statement")
    assert asked == [] and virtual_card.state().pw1_tries == 3


def test_long_messages_use_extended_apdus_without_chaining(virtual_card: VirtualCard) -> None:
    enrolled(virtual_card.create(chaining=False))
    message = b"x" * 700
    with OpenPgpCard(virtual_card.reader) as card:
        assert not card.info().chaining
        card.verify(bytearray(PIN))
        signature = card.sign(message)
    Ed25519PublicKey.from_public_bytes(card_public_key(virtual_card)).verify(signature, message)


def test_a_card_with_neither_chaining_nor_extended_apdus(virtual_card: VirtualCard) -> None:
    enrolled(virtual_card.create(chaining=False, extended=False))
    with OpenPgpCard(virtual_card.reader) as card:
        card.verify(bytearray(PIN))
        with pytest.raises(CardError, match=r"cannot take 700 bytes in one command"):
            card.sign(b"x" * 700)


def test_status_words_of_the_virtual_card(virtual_card: VirtualCard) -> None:
    """The card answers like the specification says; the adapter relies on these."""
    virtual_card.insert()
    with OpenPgpCard(virtual_card.reader) as card:
        def sw(ins: int, p1: int, p2: int, data: bytes = b"", le: bool = True) -> int:
            return card.transmit(ins, p1, p2, data, le=le)[1]

        assert sw(0x20, 0x00, 0x81, le=False) == 0x63C3  # not verified, 3 tries left
        assert sw(0x20, 0x00, 0x81, b"1" * 128, le=False) == 0x6700  # longer than 127
        assert virtual_card.state().pw1_tries == 3  # a malformed PIN costs no try
        assert sw(0xCA, 0x00, 0x6E, b"\x00") == 0x6700  # GET DATA takes no data
        assert sw(0xCA, 0x5F, 0x50) == 0x6A88  # a data object this card does not have
        assert sw(0x2A, 0x9E, 0x9A, b"sign me") == 0x6982  # no PIN verified
        assert sw(0x47, 0x80, 0x00, b"\xb6\x00") == 0x6982  # generation needs PW3
        assert sw(0x20, 0x00, 0x83, ADMIN_PIN, le=False) == 0x9000
        assert sw(0x47, 0x80, 0x00, b"\xb6\x00") == 0x6985  # RSA attributes: cannot generate
        assert sw(0x47, 0x81, 0x00, b"\xb6\x00") == 0x6A88  # no key to read
        assert sw(0x47, 0x80, 0x00, b"\xb6") == 0x6700
        assert sw(0xDA, 0x00, 0xC7, b"\x01" * 19, le=False) == 0x6700  # a fingerprint is 20
        assert sw(0xDA, 0x00, 0xC1, b"\x13\x2a", le=False) == 0x6A80  # unknown attributes
        assert sw(0x44, 0x00, 0x00, le=False) == 0x6D00  # ACTIVATE FILE: not implemented
        assert sw(0xA4, 0x04, 0x00, bytes.fromhex("A000000527471117"), le=False) == 0x6A82
        assert sw(0xCA, 0x00, 0x6E) == 0x6985  # nothing selected any more
        # Response chaining: ask for 16 bytes of the application data, get the rest after.
        card.transmit(0xA4, 0x04, 0x00, bytes.fromhex("D27600012401"), le=False)
        data, status = card._transmit_raw([0x00, 0xCA, 0x00, 0x6E, 0x10])
        assert len(data) == 16 and status >> 8 == 0x61
        rest, status = card._transmit_raw([0x00, 0xC0, 0x00, 0x00, status & 0xFF])
        assert status == 0x9000 and (data + rest).startswith(b"\x4f\x10\xd2\x76\x00\x01\x24")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data + b"\n")
    return path


def test_enroll_prints_the_identity_to_paste(virtual_card: VirtualCard, tmp_path: Path) -> None:
    virtual_card.insert()
    pin = _write(tmp_path / "pin", PIN)
    admin = _write(tmp_path / "admin-pin", ADMIN_PIN)
    made = run_cli("custodian", "enroll", "--generate", "--admin-pin-file", str(admin),
                   "--pin-file", str(pin))
    assert made.returncode == 0, made.stderr
    public = card_public_key(virtual_card)
    line = f'public_key = "ed25519:{base64.b64encode(public).decode()}"'
    assert line in made.stdout.splitlines()
    fingerprint = sha256_hex(public)
    assert f"  {grouped_hex(fingerprint)}" in made.stdout
    assert f"  words: {words(fingerprint)}" in made.stdout
    assert grouped_hex(virtual_card.state().keys["sig"].fingerprint.upper()) in made.stdout
    assert "generated now" in made.stdout and "1 signature made" in made.stdout
    assert _qr_text(made.stdout, tmp_path) == line + "\n"

    # Enrolling again (no --generate) shows the same identity; the key is not replaced.
    again = run_cli("custodian", "enroll", "--reader", virtual_card.reader, "--pin-file",
                    str(pin))
    assert again.returncode == 0, again.stderr
    assert line in again.stdout.splitlines()
    assert card_public_key(virtual_card) == public


def test_enroll_failures_are_one_sentence_and_exit_3(virtual_card: VirtualCard,
                                                     tmp_path: Path) -> None:
    enrolled(virtual_card)
    wrong = _write(tmp_path / "pin", b"654321")
    refused = run_cli("custodian", "enroll", "--pin-file", str(wrong))
    assert refused.returncode == Kind.DEVICE.value
    assert refused.stderr.startswith("ceremony: the card refused the PIN; 2 tries left\n")
    assert "Traceback" not in refused.stderr and refused.stdout == ""

    virtual_card.remove()
    empty = run_cli("custodian", "enroll", "--pin-file", str(wrong))
    assert empty.returncode == Kind.DEVICE.value
    assert empty.stderr.startswith("ceremony: there is no card in any reader\n")

    named = run_cli("custodian", "enroll", "--reader", "No Such Reader", "--pin-file",
                    str(wrong))
    assert named.returncode == Kind.DEVICE.value
    assert "there is no reader named 'No Such Reader'" in named.stderr
    assert virtual_card.state().pw1_tries == 2  # only the one wrong PIN reached the card


def _qr_text(stdout: str, tmp_path: Path) -> str:
    """Scan the QR drawn in the terminal output with zbar, and reassemble its payload."""
    import shutil

    from PIL import Image

    from ceremony.qrframe import reassemble

    zbar = shutil.which("zbarimg")
    assert zbar, "zbarimg (zbar-tools) is needed to read the enrolment QR back"
    rows = [line for line in stdout.splitlines() if line and set(line) <= set(" ▀▄█")]
    assert rows, "no QR drawing in the output"
    width = max(len(r) for r in rows)
    scale = 6
    image = Image.new("L", (width * scale, len(rows) * 2 * scale), 255)
    for y, row in enumerate(rows):
        for x, char in enumerate(row):
            for half, dark in ((0, char in "▀█"), (1, char in "▄█")):
                if dark:
                    image.paste(0, (x * scale, (2 * y + half) * scale,
                                    (x + 1) * scale, (2 * y + half + 1) * scale))
    path = tmp_path / "enroll-qr.png"
    image.save(path)
    scanned = subprocess.run([zbar, "--quiet", "--raw", str(path)], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert re.fullmatch(r"CQR:1:TEXT:1/1:[0-9A-F]{64}:[A-Z2-7]+", scanned)
    return reassemble([(str(path), scanned)]).data.decode()


def test_a_card_with_the_pin_kdf_on(virtual_card: VirtualCard) -> None:
    """Cards set up with `gpg --card-edit` kdf-setup compare a hash of the PIN, not the PIN."""
    enrolled(virtual_card.create(kdf=True))
    state = virtual_card.state()
    assert state.kdf and bytes.fromhex(state.pw1) != PIN  # the card holds no plain PIN
    with OpenPgpCard(virtual_card.reader) as card:
        with pytest.raises(CardError, match=r"^the card refused the PIN; 2 tries left$"):
            card.verify(bytearray(b"000000"))
        card.verify(bytearray(PIN))
        signature = card.sign(b"with kdf")
    Ed25519PublicKey.from_public_bytes(card_public_key(virtual_card)).verify(signature,
                                                                             b"with kdf")


def test_a_card_pulled_out_mid_session(virtual_card: VirtualCard) -> None:
    enrolled(virtual_card)
    with OpenPgpCard(virtual_card.reader) as card:
        card.verify(bytearray(PIN))
        virtual_card.remove()
        with pytest.raises(CardError) as gone:
            card.sign(b"too late")
    assert gone.value.message == f"there is no card in reader {virtual_card.reader!r}"
    assert gone.value.kind is Kind.DEVICE


def test_no_pcscd_is_one_sentence(tmp_path: Path) -> None:
    """pcsc-lite's client looks for the daemon where PCSCLITE_CSOCK_NAME says: nowhere."""
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": str(tmp_path / "no-pcscd.comm")}
    result = run_cli("custodian", "enroll", "--pin-file", str(_write(tmp_path / "pin", PIN)),
                     env=env)
    assert result.returncode == Kind.DEVICE.value
    assert result.stderr == ("ceremony: the smartcard service (pcscd) is not running\n"
                             "  hint: start it (systemctl start pcscd.socket, or pcscd as "
                             "root) and try again\n")
