"""The command line's side of shares on cards (docs/card-shares.md): which custodians' cards
a headless run writes to or reads from, their PINs from the answers file's ``[cards]``, and
`ceremony shares check --card`.

PINs come only from a file the answers file names or from a prompt without echo
(cli/login.py ``read_pin``), afresh for each card session, and are wiped by the card
adapter once the card has them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ceremony.adapters.card_shares import CardHolder, CardShare
    from ceremony.engine.ports import SecretOutput
    from ceremony.model.answers import Answers
    from ceremony.model.script import Script
    from ceremony.sharecheck import Reference, ShareCheck


def _pin_source(path: Path | None, participant: str) -> Callable[[], bytearray]:
    from ceremony.cli.login import read_pin

    return lambda: read_pin(path, f"{participant}'s card PIN")


def card_holders(script: Script, answers: Answers,
                 say: Callable[[str], None] = print) -> dict[str, CardHolder]:
    """Every participant the answers file gives a card for, as a CardHolder: their card
    must hold the identity key the script names for them; a session waits (the answers'
    ``wait_seconds``) for it to be inserted, saying whose card is there meanwhile."""
    from ceremony.adapters.card_shares import CardHolder
    from ceremony.adapters.card_turns import TurnSigner, owners_of

    owners = owners_of({p.id: p.public_key_bytes for p in script.participants})
    out = {}
    for pid, card in answers.cards.items():
        participant = script.participant(pid)
        assert participant is not None  # (the answers parser checked)
        pin = _pin_source(card.pin_file, pid)
        turn = TurnSigner(pid, participant.public_key_bytes, owners, pin, reader=card.reader,
                          wait=card.wait_seconds, say=say)
        out[pid] = CardHolder(pid, participant.public_key_bytes, pin, card.reader,
                              turn.await_card)
    return out


def share_output(script: Script, answers: Answers, sheets: SecretOutput) -> SecretOutput:
    """The sheets alone, or, when the script's [shares.delivery] sends a share to a card,
    the card output around them."""
    if not any("card" in places for _, places in script.shares.delivery):
        return sheets
    from ceremony.adapters.card_shares import CardShareOutput

    return CardShareOutput(sheets, card_holders(script, answers), script.ceremony_id)


def recovery_card_reader(script: Script, answers: Answers) -> Callable[[str], str] | None:
    """For a recovery whose answers present a share from a card: participant -> the words
    on their card (checked to be theirs and the original's before the engine sees them)."""
    if not any(s.card for s in answers.shares) or script.recovery is None:
        return None
    from ceremony.adapters.card_shares import recovery_share

    holders = card_holders(script, answers)
    original = script.recovery.ceremony
    return lambda participant: recovery_share(holders[participant], original)


def read_card_for_check(reader: str | None, pin_file: Path | None) -> CardShare:
    """`ceremony shares check --card`: the share on the card in the reader."""
    from ceremony.adapters.card_shares import read_any_card
    from ceremony.cli.login import read_pin

    return read_any_card(reader, read_pin(pin_file, "your card's PIN"))


def check_card_share(reference: Reference, reader: str | None,
                     pin_file: Path | None) -> ShareCheck:
    """The verdict on the share on the card in the reader, by the same checks as a typed
    share (wordlist, checksum, the commitment recorded for its holder), after its header:
    the ceremony it names must be the bundle's, and the holder the one it names."""
    from ceremony.sharecheck import ShareCheck, check_share

    share = read_card_for_check(reader, pin_file)
    if not share.is_for(reference.ceremony_id):
        return ShareCheck("other-ceremony", "the share on this card is not from ceremony "
                          f"{reference.ceremony_id}", reference,
                          hint="check that this is the bundle of the ceremony that wrote "
                               "the card")
    result = check_share(reference, share.mnemonic)
    if result.intact and result.holder.get("participant") != share.participant:
        return ShareCheck("no-match", f"the share on this card says it is "
                          f"{share.participant}'s, but the ceremony recorded it for "
                          f"{result.holder.get('participant')}", reference,
                          hint="tell the ceremony's administrator",
                          share_identifier=result.share_identifier, line=result.line)
    return result
