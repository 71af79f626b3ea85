"""The approval signers of `ceremony run`: participants' cards, or rehearsal key files.

A real ceremony's participants sign with their OpenPGP cards (ADR 20): the answers file
names them under ``[cards]`` (reader, PIN file, how long to wait for the card), and each
approval waits for that participant's card in the reader. An identity key on the
participant's own PKCS#11 token, under ``[tokens]``, is allowed too (a ``TokenSigner``).
Plain key files under ``[identities]`` are for rehearsals only (CER-IDENTITY). A card's or
token's PIN comes from its file or is typed at the terminal without echo, once per
signature; it is never on the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ceremony.errors import UsageError

if TYPE_CHECKING:
    from ceremony.headless import Signer
    from ceremony.model.answers import Answers, CardAnswer, TokenAnswer
    from ceremony.model.script import Script


def headless_signers(answers: Answers, script: Script, *, rehearsal: bool,
                     reader: str | None = None,
                     say: Callable[[str], None] = print) -> dict[str, Signer]:
    """One signer per participant the answers file lists: a ``TurnSigner`` per card, a
    ``TokenSigner`` per identity token, a ``KeyFileSigner`` per rehearsal key file (refused
    outside a rehearsal). Checked before any token is opened: a card or identity token
    whose PIN can come from nowhere is refused here."""
    if answers.identities and not rehearsal:
        raise UsageError("plain identity key files are allowed only in a rehearsal",
                         hint="add --rehearsal, or approve with custodian cards under "
                              "[cards] of the answers file", requirement="CER-IDENTITY")
    signers: dict[str, Signer] = {}
    if answers.identities:
        from ceremony.adapters.identity import KeyFileSigner

        for pid, path in answers.identities.items():
            signers[pid] = KeyFileSigner.load(pid, path)
    if answers.cards:
        from ceremony.adapters.card_turns import TurnSigner, owners_of

        owners = owners_of({p.id: p.public_key_bytes for p in script.participants})
        for pid, card in answers.cards.items():
            participant = script.participant(pid)
            assert participant is not None  # parse_answers checked it
            _check_pin_source(card, answers.source_name)
            signers[pid] = TurnSigner(pid, participant.public_key_bytes, owners,
                                      _pin_source(card), reader=card.reader or reader,
                                      wait=card.wait_seconds, say=say)
    if answers.tokens:
        from ceremony.adapters.pkcs11_token import module_path
        from ceremony.adapters.token_identity import TokenKey, TokenSigner

        for pid, token in answers.tokens.items():
            participant = script.participant(pid)
            assert participant is not None  # parse_answers checked it
            _check_token_pin_source(token, answers.source_name)
            where = TokenKey(module_path(token.module, None), token.uri, token.key_label,
                             token.key_id)
            signers[pid] = TokenSigner(pid, where, _token_pin_source(token),
                                       public_key=participant.public_key_bytes)
    return signers


def _check_token_pin_source(token: TokenAnswer, source: str) -> None:
    if token.pin_file is None and not sys.stdin.isatty():
        raise UsageError(f"{source}: tokens.{token.participant}: no PIN file, and no "
                         "terminal to type the identity token's PIN on",
                         hint=f"add pin_file = \"...\" to {token.participant}'s token, or "
                              "run on a terminal")


def _token_pin_source(token: TokenAnswer) -> Callable[[], bytearray]:
    def pin() -> bytearray:
        from ceremony.cli.login import read_pin

        return read_pin(token.pin_file, f"{token.participant}'s identity token PIN")

    return pin


def _check_pin_source(card: CardAnswer, source: str) -> None:
    if card.pin_file is None:
        if not sys.stdin.isatty():
            raise UsageError(f"{source}: cards.{card.participant}: no PIN file, and no "
                             "terminal to type the card's PIN on",
                             hint=f"add pin_file = \"...\" to {card.participant}'s card, or "
                                  "run on a terminal")
    elif not card.pin_file.is_file():
        raise UsageError(f"{source}: cards.{card.participant}.pin_file: {card.pin_file} "
                         "does not exist", hint="give the path of the file holding the "
                         "card's PIN (relative to the answers file)")


def _pin_source(card: CardAnswer) -> Callable[[], bytearray]:
    def pin() -> bytearray:
        from ceremony.cli.login import read_pin

        return read_pin(card.pin_file, f"{card.participant}'s card PIN")

    return pin
