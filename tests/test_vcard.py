"""The virtual OpenPGP card's own logic, without PC/SC: framing, chaining, power, tearing.

The card is test equipment; these tests keep it honest where the adapter tests through
pcscd would not notice (a card that accepted anything would let a wrong adapter pass).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vcard.card import CardState, CardStatus, OpenPgpCard, create_card, parse_apdu, s2k

SELECT = bytes.fromhex("00A4040006D27600012401")


@pytest.fixture
def card(tmp_path: Path) -> OpenPgpCard:
    create_card(tmp_path / "card.json", serial="01020304")
    card = OpenPgpCard(tmp_path / "card.json")
    assert card.process(SELECT) == b"\x90\x00"
    return card


@pytest.mark.parametrize(("raw", "data", "le", "extended"), [
    ("00CA006E", "", None, False),  # case 1
    ("00CA006E00", "", 256, False),  # case 2S, Le 00 means 256
    ("0020008103313233", "313233", None, False),  # case 3S
    ("002A9E9A0261620A", "6162", 10, False),  # case 4S
    ("00CA006E000000", "", 65536, True),  # case 2E
    ("002A9E9A0000026162", "6162", None, True),  # case 3E
    ("002A9E9A00000261620100", "6162", 256, True),  # case 4E
])
def test_apdu_cases(raw: str, data: str, le: int | None, extended: bool) -> None:
    apdu = parse_apdu(bytes.fromhex(raw))
    assert (apdu.data.hex().upper(), apdu.le, apdu.extended) == (data.upper(), le, extended)


@pytest.mark.parametrize("raw", ["00CA00", "00200081033132", "002A9E9A0000036162",
                                 "002A9E9A0000"])
def test_malformed_lengths_are_6700(raw: str) -> None:
    with pytest.raises(CardStatus) as status:
        parse_apdu(bytes.fromhex(raw))
    assert status.value.sw == b"\x67\x00"


def test_command_chaining(card: OpenPgpCard) -> None:
    card.process(bytes.fromhex("0020008308") + b"12345678")  # PW3, for PUT DATA
    name = b"Custodian, Alice"
    assert card.process(bytes([0x10, 0xDA, 0x00, 0x5B, 8]) + name[:8]) == b"\x90\x00"
    assert card.process(bytes([0x00, 0xDA, 0x00, 0x5B, 8]) + name[8:]) == b"\x90\x00"
    assert card.state.name == name.decode()
    # A chain must end with the same command it started with.
    assert card.process(bytes([0x10, 0xDA, 0x00, 0x5B, 1]) + b"x") == b"\x90\x00"
    assert card.process(bytes([0x00, 0xDA, 0x00, 0x5E, 1]) + b"x") == b"\x68\x83"


def test_a_card_without_chaining_says_so(tmp_path: Path) -> None:
    create_card(tmp_path / "card.json", chaining=False)
    card = OpenPgpCard(tmp_path / "card.json")
    card.process(SELECT)
    assert card.process(bytes([0x10, 0xDA, 0x00, 0x5B, 1]) + b"x") == b"\x68\x84"
    assert card.historical_bytes()[6] & 0x80 == 0


def test_response_chaining_and_get_response(card: OpenPgpCard) -> None:
    whole = card.process(bytes.fromhex("00CA006E00"))
    assert whole[-2:] == b"\x90\x00"
    first = card.process(bytes.fromhex("00CA006E20"))
    assert first[:-2] == whole[:32] and first[-2] == 0x61
    rest = card.process(bytes([0x00, 0xC0, 0x00, 0x00, first[-1]]))
    assert first[:-2] + rest[:-2] == whole[:-2] and rest[-2:] == b"\x90\x00"


def test_power_off_forgets_the_pin_not_the_counter(card: OpenPgpCard) -> None:
    assert card.process(bytes.fromhex("0020008106") + b"000000") == b"\x69\x82"
    assert card.process(bytes.fromhex("0020008106") + b"123456") == b"\x90\x00"
    assert card.process(bytes.fromhex("00200081")) == b"\x90\x00"  # verified
    card.process(bytes.fromhex("0020008106") + b"000000")
    card.power_cycle()
    assert card.process(bytes.fromhex("00200081")) == b"\x69\x85"  # nothing selected
    card.process(SELECT)
    assert card.process(bytes.fromhex("00200081")) == b"\x63\xc2"  # not verified, 2 left
    assert CardState.load(card.path).pw1_tries == 2


def test_the_try_is_counted_before_the_comparison(card: OpenPgpCard,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulling the card while it compares must not give a free guess."""
    def torn(*args: object) -> bool:
        raise RuntimeError("power lost during the comparison")

    monkeypatch.setattr("tests.vcard.card.hmac.compare_digest", torn)
    with pytest.raises(RuntimeError):
        card.process(bytes.fromhex("0020008106") + b"000000")
    assert CardState.load(card.path).pw1_tries == 2


def test_s2k_is_the_openpgp_iterated_salted_hash() -> None:
    # Hashing stops at ``count`` bytes of salt || PIN repeated; a count below one repetition
    # still hashes it whole.
    import hashlib

    salt, pin = b"saltsalt", b"123456"
    assert s2k(pin, salt, 20) == hashlib.sha256((salt + pin) + (salt + pin)[:6]).digest()
    assert s2k(pin, salt, 1) == hashlib.sha256(salt + pin).digest()


def test_the_atr_has_a_valid_check_byte(card: OpenPgpCard) -> None:
    atr = card.atr()
    check = 0
    for b in atr[1:]:
        check ^= b
    assert atr[0] == 0x3B and check == 0
    assert atr[3:-1] == card.historical_bytes()
