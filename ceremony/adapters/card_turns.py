"""Custodians taking turns at the card reader: whose card is in it, and waiting for the next.

A ceremony's approvals come from the participants' OpenPGP cards (ADR 20): one reader on
the workstation, each custodian inserting their own card when their approval is needed.
Before any PIN is asked, the card in the reader is identified by its signature key against
the script's participants, so a wrong card is named ("this is bob's card; alice's is
needed") and costs no PIN try. The headless runner waits here for the right card
(:class:`TurnSigner`); the UI's insert-your-card screen uses :func:`look` and
:func:`wait_for_change` from a worker thread.

Every failure is a ``CardError`` (exit 3) with one plain sentence; nothing here holds a PIN
longer than the card needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ceremony.adapters.openpgp_card import CardSigner, OpenPgpCard, _pcsc_sentence, _scard
from ceremony.errors import CardError
from ceremony.model.statements import encode_key

EMPTY = "empty"  # no card in the reader
HOLDER = "holder"  # a card whose signature key is a participant's
STRANGER = "stranger"  # an OpenPGP card with a key the script does not name
UNUSABLE = "unusable"  # a card that cannot sign for anyone (no OpenPGP app, no key ...)

POLL = 0.5  # seconds between looks for a stop request while waiting for a card
REQUIREMENT = "CER-CARD-APPROVAL"


@dataclass(frozen=True)
class Look:
    """What is in the reader now, read without a PIN."""

    state: str  # EMPTY, HOLDER, STRANGER or UNUSABLE
    reader: str | None  # the reader looked at (None: no card in any reader)
    holder: str | None = None  # the participant whose key the card holds
    serial: str = ""
    pin_tries: int = -1  # -1: not known
    problem: str = ""  # UNUSABLE: the card's own sentence

    def sentence(self, wanted: str) -> str:
        """One sentence for the custodian ``wanted`` (a participant id) standing there."""
        where = f"reader {self.reader!r}" if self.reader else "any reader"
        if self.state == EMPTY:
            return f"there is no card in {where}; {wanted}'s card is needed"
        if self.state == HOLDER and self.holder != wanted:
            return f"this is {self.holder}'s card; {wanted}'s is needed"
        if self.state == STRANGER:
            return (f"the card in {where} belongs to no participant of this ceremony; "
                    f"{wanted}'s is needed")
        if self.state == UNUSABLE:
            return f"{self.problem}; {wanted}'s card is needed"
        if self.pin_tries == 0:
            return f"{wanted}'s card is in {where}, but its PIN is blocked"
        return f"{wanted}'s card is in {where}"


def owners_of(keys: Mapping[str, bytes]) -> dict[bytes, str]:
    """participant -> raw public key, turned round to identify a card by its key."""
    return {key: pid for pid, key in keys.items()}


def _context(scard: Any) -> Any:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        message, hint = _pcsc_sentence(scard, hresult, None)
        raise CardError(message, hint=hint)
    return context


def _states(scard: Any, context: Any, readers: list[str]) -> list[tuple[str, int]]:
    hresult, states = scard.SCardGetStatusChange(
        context, 0, [(r, scard.SCARD_STATE_UNAWARE) for r in readers])
    if hresult != scard.SCARD_S_SUCCESS:
        message, hint = _pcsc_sentence(scard, hresult, readers[0] if readers else None)
        raise CardError(message, hint=hint)
    return [(str(s[0]), int(s[1])) for s in states]


def _readers(scard: Any, context: Any, reader: str | None) -> list[str]:
    hresult, found = scard.SCardListReaders(context, [])
    if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
        raise CardError("no smartcard reader is connected", hint="plug in the card reader")
    if hresult != scard.SCARD_S_SUCCESS:
        message, hint = _pcsc_sentence(scard, hresult, reader)
        raise CardError(message, hint=hint)
    readers = [str(r) for r in found]
    if reader is None:
        return readers
    if reader not in readers:
        raise CardError(f"there is no reader named {reader!r}",
                        hint="connected readers: " + "; ".join(readers))
    return [reader]


def _with_card(reader: str | None) -> str | None:
    """The reader holding a card (of ``reader`` alone, or of every reader); None if none."""
    scard = _scard()
    context = _context(scard)
    try:
        readers = _readers(scard, context, reader)
        holding = [name for name, state in _states(scard, context, readers)
                   if state & scard.SCARD_STATE_PRESENT]
    finally:
        scard.SCardReleaseContext(context)
    if len(holding) > 1:
        raise CardError("more than one reader holds a card",
                        hint="custodians take turns: leave one card in one reader "
                             "(or name the reader with --reader)")
    return holding[0] if holding else None


def look(reader: str | None, owners: Mapping[bytes, str]) -> Look:
    """Whose card is in ``reader`` (None: whichever reader holds one), without any PIN."""
    found = _with_card(reader)
    if found is None:
        return Look(EMPTY, reader)
    try:
        with OpenPgpCard(found) as card:
            public = card.public_key()
            info = card.info()
    except CardError as exc:
        if _with_card(found) is None:  # pulled out while we looked
            return Look(EMPTY, reader)
        return Look(UNUSABLE, found, problem=exc.message)
    holder = owners.get(public)
    return Look(HOLDER if holder else STRANGER, found, holder, info.serial, info.pin_tries)


def wait_for_change(reader: str | None, timeout: float, present: bool) -> bool:
    """Block until a card goes in or out of ``reader`` (any reader when None), or
    ``timeout`` seconds pass; True when something changed. ``present`` is whether a card
    was in when the caller last looked: a card that came or went since counts at once.
    Holds no connection to any card while it waits."""
    scard = _scard()
    context = _context(scard)
    try:
        readers = _readers(scard, context, reader)
        current = _states(scard, context, readers)
        if any(state & scard.SCARD_STATE_PRESENT for _, state in current) != present:
            return True
        hresult, _ = scard.SCardGetStatusChange(
            context, max(0, int(timeout * 1000)),
            [(name, state & ~scard.SCARD_STATE_CHANGED) for name, state in current])
        if hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
            message, hint = _pcsc_sentence(scard, hresult, reader)
            raise CardError(message, hint=hint)
        return bool(hresult == scard.SCARD_S_SUCCESS)
    finally:
        scard.SCardReleaseContext(context)


class TurnSigner:
    """A participant's card as a headless run's approval signer (``KeyFileSigner``'s
    interface): each signature waits, up to ``wait`` seconds, for the participant's own
    card in the reader, says what it sees (``say``) while it waits, then asks
    ``pin_source`` for the PIN of this one signature and lets the card sign.

    A card still wrong when the time is up is refused with the sentence that names it;
    nothing is signed, so the engine records nothing for the approval.
    """

    def __init__(self, participant: str, public_key: bytes, owners: Mapping[bytes, str],
                 pin_source: Callable[[], bytearray], *, reader: str | None = None,
                 wait: float = 300.0, say: Callable[[str], None] = print) -> None:
        self.participant = participant
        self.reader = reader
        self._public = public_key
        self._owners = owners
        self._pin_source = pin_source
        self._wait = wait
        self._say = say

    @property
    def public_key(self) -> str:
        return encode_key(self._public)

    def await_card(self) -> Look:
        """The look at the reader once it holds this participant's card (CardError if
        it does not within the wait)."""
        deadline = time.monotonic() + self._wait
        said = ""
        while True:
            seen = look(self.reader, self._owners)
            if seen.state == HOLDER and seen.holder == self.participant:
                return seen
            sentence = seen.sentence(self.participant)
            left = deadline - time.monotonic()
            if left <= 0:
                raise CardError(sentence, hint=f"{self.participant} inserts their own card "
                                "and the run is resumed (--resume); nothing was recorded for "
                                "this approval", requirement=REQUIREMENT)
            if sentence != said:
                self._say(f"      {sentence}: waiting up to {left:.0f} s for "
                          f"{self.participant} to insert it")
                said = sentence
            wait_for_change(seen.reader if seen.state != EMPTY else self.reader,
                            min(left, POLL * 20), seen.state != EMPTY)

    def sign(self, message: bytes) -> bytes:
        seen = self.await_card()
        if seen.pin_tries == 0:
            raise CardError(f"{self.participant}'s card is blocked after too many wrong PIN "
                            "tries", hint="the card's administrator can unblock it with the "
                            "admin PIN (gpg --card-edit, admin, passwd, unblock PIN); nothing "
                            "was recorded for this approval")
        signer = CardSigner(self.participant, self._pin_source, reader=seen.reader,
                            public_key=self._public)
        return signer.sign(message)
