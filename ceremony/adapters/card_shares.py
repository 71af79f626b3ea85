"""SLIP-39 shares on custodians' OpenPGP cards: the packed format, the card output, reading.

A share goes to the card's private use data object 0103, which the card guards with the
custodian's own PIN (PW1, VERIFY 82) for reading and for writing. The words are stored as
their SLIP-39 indices, 10 bits each, behind a small header (docs/card-shares.md), so the
largest share this tool makes (33 words, 42 bytes) and the longest participant id fit in
87 bytes, well inside the 254 bytes any OpenPGP card 3.x gives a private DO:

    offset  size         field
    0       2            magic "CS"
    2       1            format version, 1
    3       8            SHA-256("ceremony.card-share.v1|" + ceremony id), first 8 bytes
    11      1            length n of the participant id (1 to 32)
    12      n            the participant id, ASCII
    12+n    1            number of words w (20 to 255)
    13+n    ceil(10w/8)  the word indices, 10 bits each, most significant bit first,
                         the last byte padded with zero bits

A card is the custodian's when its signature key is the identity key the script names for
them: it is checked before any PIN is spent, at distribution and at recovery. The share
counts as delivered only once it has been read back from the card and compared. Nothing
here prints, logs or puts in an error a byte or a word of a share; the packed bytes live in
bytearrays that are wiped after use (the words themselves are Python strings elsewhere in
the ceremony, which cannot be wiped).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shamir_mnemonic.wordlist import WORD_INDEX_MAP, WORDLIST

from ceremony.adapters.openpgp_card import SHARE_DO, OpenPgpCard, _wipe
from ceremony.canonical import sha256_hex
from ceremony.engine.ports import SecretOutput
from ceremony.errors import CardError, CeremonyError, CheckFailed, InputError
from ceremony.model.script import card_delivery

MAGIC = b"CS"
VERSION = 1
TAG_BYTES = 8
MIN_WORDS, MAX_WORDS = 20, 255
MAX_PARTICIPANT = 32
# Every card that has private use DOs gives them at least this many bytes (OpenPGP card 3.x).
CARD_DO_MIN = 254
REQUIREMENT = "CER-SHARE-CARD"


def ceremony_tag(ceremony_id: str) -> bytes:
    """The first 8 bytes of SHA-256("ceremony.card-share.v1|" + id): which ceremony."""
    return hashlib.sha256(b"ceremony.card-share.v1|" + ceremony_id.encode()).digest()[:TAG_BYTES]


@dataclass(frozen=True)
class CardShare:
    """A share read from a card: whose, for which ceremony (by tag), and its words."""

    tag: bytes
    participant: str
    mnemonic: str = field(repr=False)

    def is_for(self, ceremony_id: str) -> bool:
        return self.tag == ceremony_tag(ceremony_id)


def pack_share(mnemonic: str, ceremony_id: str, participant: str) -> bytearray:
    """The share's bytes for the card (format version 1)."""
    words = mnemonic.split()
    name = participant.encode("ascii")
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not 1 <= len(name) <= MAX_PARTICIPANT:
        raise ValueError("a share of 20 to 255 words and a participant id of 1 to 32 bytes")
    out = bytearray(MAGIC) + bytes([VERSION]) + ceremony_tag(ceremony_id) + \
        bytes([len(name)]) + name + bytes([len(words)])
    acc = bits = 0
    for word in words:
        acc = acc << 10 | WORD_INDEX_MAP[word]  # KeyError: not a SLIP-39 word (a bug)
        bits += 10
        while bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
        acc &= (1 << bits) - 1
    if bits:
        out.append(acc << (8 - bits) & 0xFF)
    acc = 0
    return out


def unpack_share(data: bytes | bytearray) -> CardShare:
    """Read the packed format; InputError (one sentence, never a word) when it is not one."""
    def bad(why: str) -> InputError:
        return InputError(f"the card's data object {SHARE_DO:04X} does not hold a ceremony "
                          f"share ({why})", hint="is it the custodian's card, written by "
                          "`ceremony run`? (docs/card-shares.md)", requirement=REQUIREMENT)

    if not data:
        raise InputError(f"the card holds no share (its data object {SHARE_DO:04X} is empty)",
                         hint="is it the custodian's card? a rolled-back ceremony empties it",
                         requirement=REQUIREMENT)
    if len(data) < 13 or bytes(data[:2]) != MAGIC:
        raise bad("it does not start with the share format's mark")
    if data[2] != VERSION:
        raise bad(f"format version {data[2]}; this tool reads version {VERSION}")
    n = data[11]
    if not 1 <= n <= MAX_PARTICIPANT or len(data) < 13 + n:
        raise bad("the participant field is malformed")
    try:
        participant = bytes(data[12:12 + n]).decode("ascii")
    except UnicodeDecodeError:
        raise bad("the participant field is not ASCII") from None
    count = data[12 + n]
    body = data[13 + n:]
    if count < MIN_WORDS or len(body) != (count * 10 + 7) // 8:
        raise bad("its word count and length disagree")
    indices: list[int] = []
    acc = bits = 0
    for byte in body:
        acc = acc << 8 | byte
        bits += 8
        if bits >= 10:
            bits -= 10
            indices.append(acc >> bits & 0x3FF)
            acc &= (1 << bits) - 1
    if acc:  # the padding bits of the last byte must be zero
        raise bad("its padding is not zero")
    mnemonic = " ".join(WORDLIST[i] for i in indices[:count])
    indices.clear()
    return CardShare(bytes(data[3:3 + TAG_BYTES]), participant, mnemonic)


@dataclass(frozen=True)
class CardHolder:
    """A custodian whose share is on (or goes to) their card.

    ``public_key`` is the identity key the script names for them (the card's signature
    key); ``pin`` gives their PIN afresh at each call (a file or a masked prompt), and
    ``reader`` names the reader (None: the one that holds a card). ``await_card``, when
    given, returns once their card is in the reader (custodians take turns at one reader:
    adapters/card_turns.py) or raises CardError naming what is there instead.
    """

    participant: str
    public_key: bytes
    pin: Callable[[], bytearray]
    reader: str | None = None
    await_card: Callable[[], object] | None = None


def _session(holder: CardHolder, wait: bool = True) -> tuple[OpenPgpCard, str]:
    """An open session with the holder's card (``wait``: once it is inserted), checked to be
    theirs before any PIN; the card's key fingerprint (SHA-256 of its public key, hex), as
    the ceremony names keys."""
    if wait and holder.await_card is not None:
        try:
            holder.await_card()
        except CardError as exc:  # (its hint speaks of approvals)
            raise CardError(exc.message, hint=f"{holder.participant} inserts their own card, "
                            "then the step is retried (--resume)",
                            requirement=REQUIREMENT) from None
    card = OpenPgpCard(holder.reader)
    try:
        found = card.public_key()
        if found != holder.public_key:
            raise CardError(f"the card in reader {card.reader!r} is not "
                            f"{holder.participant}'s card",
                            hint=f"insert {holder.participant}'s card: its key fingerprint is "
                                 f"{sha256_hex(holder.public_key)}", requirement=REQUIREMENT)
    except BaseException:
        card.close()
        raise
    return card, sha256_hex(found)


def write_to_card(holder: CardHolder, mnemonic: str, ceremony_id: str) -> str:
    """Write the share to the holder's card, read it back and compare; return the public
    description of where it went (the card's key fingerprint and serial, never the share)."""
    packed = pack_share(mnemonic, ceremony_id, holder.participant)
    try:
        card, fingerprint = _session(holder)
        with card:
            card.write_share(packed, holder.pin())
            serial = card.info().serial
    finally:
        _wipe(packed)
    return f"{card_delivery(fingerprint)} (serial {serial}), data object {SHARE_DO:04X}, read back"


def read_from_card(holder: CardHolder) -> CardShare:
    """The share on the holder's card, checked to be theirs by its header."""
    card, _ = _session(holder)
    with card:
        data = card.read_share(holder.pin())
    try:
        share = unpack_share(data)
    finally:
        _wipe(data)
    if share.participant != holder.participant:
        raise CheckFailed(f"the share on {holder.participant}'s card says it is "
                          f"{share.participant}'s", hint="the card was written for someone "
                          "else; present the right card or the share sheet",
                          requirement=REQUIREMENT)
    return share


def read_any_card(reader: str | None, pin: bytearray) -> CardShare:
    """The share on whatever custodian card is in the reader (`ceremony shares check
    --card`: the bundle then says whose it is)."""
    with OpenPgpCard(reader) as card:
        data = card.read_share(pin)
    try:
        return unpack_share(data)
    finally:
        _wipe(data)


def recovery_share(holder: CardHolder, ceremony_id: str) -> str:
    """The words of the holder's share for ``ceremony_id`` (the original's), read from
    their card for a recovery; the engine then checks them as it checks typed ones."""
    share = read_from_card(holder)
    if not share.is_for(ceremony_id):
        raise CheckFailed(f"the share on {holder.participant}'s card is not from ceremony "
                          f"{ceremony_id}", hint="the card holds a share of another "
                          "ceremony; present the share sheet of this one",
                          requirement=REQUIREMENT)
    return share.mnemonic


class CardShareOutput:
    """The SecretOutput of a ceremony that writes shares to cards: each custodian's share
    goes where the script's ``[shares.delivery]`` says (the engine passes it in
    ``context["delivery"]``): "card", "sheet" (the wrapped output) or both.

    A rollback (``remove_all``) removes the sheets and empties the DO of every card written
    in this process that is still in its reader; a card taken away keeps a share of a seed
    that no longer protects anything (its set is withdrawn in the transcript).
    """

    places = ("sheet", "card")

    def __init__(self, sheets: SecretOutput, cards: dict[str, CardHolder],
                 ceremony_id: str) -> None:
        self.sheets = sheets
        self.cards = cards
        self.ceremony_id = ceremony_id
        self._written: list[str] = []

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        delivery = tuple(context.get("delivery") or ("sheet",))
        places = []
        if "card" in delivery:
            holder = self.cards.get(participant)
            if holder is None:
                raise CheckFailed(f"{participant}'s share goes to their card, but no card "
                                  "was set up for them", hint=f"add [cards.{participant}] "
                                  "with pin_file to the answers file", requirement=REQUIREMENT)
            places.append(write_to_card(holder, mnemonic, self.ceremony_id))
            self._written.append(participant)
        if "sheet" in delivery:
            places.append(self.sheets.write_share(participant, name, group, member, mnemonic,
                                                  context))
        return " and ".join(places)

    def remove_all(self) -> list[str]:
        removed = self.sheets.remove_all()
        for participant in self._written:
            holder = self.cards[participant]
            try:
                card, _ = _session(holder, wait=False)  # (a rollback waits for no one)
                with card:
                    card.write_share(b"", holder.pin())
            except CeremonyError:
                pass  # not in the reader any more (or no PIN): the withdrawn set protects nothing
        self._written.clear()
        return removed
