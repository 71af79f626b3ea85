"""`ceremony shares check`: one custodian checks their SLIP-39 share against a bundle.

Nothing is reconstructed and no other share is needed. The bundle is verified first (all
ten steps of ceremony.verify), so a tampered transcript is never the reference. Then the
share's words are checked against the SLIP-39 wordlist and its RS1024 checksum, and the
commitment the ceremony recorded for it (engine.core.share_commitment, bound to the
ceremony id) is looked up among the transcript's ``shares.created`` holders.

The share itself is never printed, logged, written or put in an error message: errors name
a word by its position only. (A Python string cannot be wiped; the share lives in this
process's memory until it exits.) This module imports shamir_mnemonic, which the core may
not (pyproject.toml's import contracts), so it sits outside the core, like the adapters.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shamir_mnemonic
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from ceremony.engine.core import TRANSCRIPT_FILE, share_commitment
from ceremony.errors import BundleFormatError, InputError, UsageError, VerificationError
from ceremony.model.sheet import share_words
from ceremony.transcript import parse_lines

# SLIP-39: 7 metadata words (identifier, parameters, checksum) plus the share value.
_METADATA_WORDS = 7
_MIN_WORDS = 20


@dataclass(frozen=True)
class ShareSet:
    """One ``shares.created`` entry: the set's identifier and its holders' commitments."""

    line: int
    step: str | None
    identifier: int
    holders: tuple[dict[str, Any], ...]
    withdrawn_at: int | None = None  # the line of the rollback or abort that removed it


@dataclass(frozen=True)
class Reference:
    """What a verified bundle says about the shares its ceremony made."""

    bundle: Path
    ceremony_id: str
    rehearsal: bool
    head: str
    sets: tuple[ShareSet, ...]
    seed_bytes: int | None = None

    @property
    def in_force(self) -> list[ShareSet]:
        return [s for s in self.sets if s.withdrawn_at is None]


@dataclass(frozen=True)
class ShareCheck:
    """The verdict on one share: one plain sentence, and what the transcript says."""

    outcome: str  # intact | checksum | other-set | no-match | withdrawn | no-shares |
    #               other-ceremony (a card's share names another ceremony: cli/cardshares.py)
    message: str
    reference: Reference
    hint: str = ""
    share_identifier: int | None = None
    holder: dict[str, Any] = field(default_factory=dict)
    line: int | None = None

    @property
    def intact(self) -> bool:
        return self.outcome == "intact"

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``: never the share, nor its commitment."""
        sets = self.reference.in_force
        return {"bundle": str(self.reference.bundle), "ceremony_id": self.reference.ceremony_id,
                "rehearsal": self.reference.rehearsal, "bundle_verified": True,
                "head": self.reference.head, "outcome": self.outcome, "intact": self.intact,
                "message": self.message, "hint": self.hint,
                "share_set": sets[-1].identifier if sets else None,
                "share_identifier": self.share_identifier,
                "participant": self.holder.get("participant"),
                "group": self.holder.get("group"), "member": self.holder.get("member"),
                "line": self.line}


def load_reference(bundle: Path) -> Reference:
    """Verify ``bundle`` and fold its transcript's share sets; refuse one that does not verify."""
    from ceremony.verify.core import verify_bundle

    report = verify_bundle(bundle)
    if not report.ok or report.ceremony_id is None or report.head is None:
        failure = report.first_failure
        why = f" ({failure.name}: {failure.detail})" if failure else ""
        raise VerificationError(
            f"the bundle {bundle} does not verify{why}, so it cannot be the reference for "
            "your share", hint=f"run `ceremony verify {bundle}` to see why; nothing was "
            "compared and your share was not asked for")
    lines = parse_lines((bundle / TRANSCRIPT_FILE).read_bytes(), TRANSCRIPT_FILE)
    if lines[-1].hash != report.head:
        raise VerificationError(f"{bundle / TRANSCRIPT_FILE} changed while it was being "
                                "verified", hint="run the check again on a bundle nobody "
                                "is writing to")
    sets: list[ShareSet] = []
    seed_bytes = None
    for line in lines:
        entry = line.entry
        if entry.event == "entropy.collected" and isinstance(
                entry.payload.get("seed_bytes"), int):
            seed_bytes = entry.payload["seed_bytes"]
        elif entry.event == "shares.created":
            sets.append(_share_set(line.number, entry.step, entry.payload))
        elif entry.event in ("action.rolled_back", "ceremony.aborted"):
            # A rollback of the step that made the shares, or any abort, removes them.
            sets = [s if s.withdrawn_at is not None
                    or (entry.event == "action.rolled_back" and s.step != entry.step)
                    else ShareSet(s.line, s.step, s.identifier, s.holders, line.number)
                    for s in sets]
    return Reference(bundle, report.ceremony_id, bool(report.rehearsal), report.head,
                     tuple(sets), seed_bytes)


def _share_set(number: int, step: str | None, payload: dict[str, Any]) -> ShareSet:
    identifier, holders = payload.get("identifier"), payload.get("holders")
    if (not isinstance(identifier, int) or not isinstance(holders, list) or not all(
            isinstance(h, dict) and isinstance(h.get("commitment"), str) for h in holders)):
        raise BundleFormatError("shares.created does not have the identifier and holders "
                                "the format defines", file=TRANSCRIPT_FILE, line=number)
    return ShareSet(number, step, identifier, tuple(holders))


def read_share(path: Path | None) -> str:
    """The share from ``path`` (one mnemonic) or typed on the terminal without echo."""
    if path is None:
        import getpass

        if not sys.stdin.isatty():
            raise UsageError("no terminal to type the share on",
                             hint="pass --share-file FILE when there is no terminal")
        return getpass.getpass("your share (its words in order, separated by spaces; "
                               "not shown): ")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the share file {path} ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"the share file {path} is not UTF-8 text",
                         hint="put the share's words in it, separated by spaces") from None
    if not text.strip():
        raise InputError(f"the share file {path} is empty",
                         hint="put the share's words in it, separated by spaces")
    return share_words(text)  # the text share sheet itself, or just the words


def check_share(reference: Reference, text: str) -> ShareCheck:
    """The verdict on the share ``text``; a malformed share raises InputError (exit 2)."""
    words = [w.lower() for w in text.split()]
    if not words:
        raise InputError("no share was given", hint="type the words of your share, in order")
    unknown = [i for i, w in enumerate(words, start=1) if w not in WORD_INDEX_MAP]
    if unknown:
        names = ", ".join(str(i) for i in unknown[:-1])
        which = (f"word {unknown[0]} is not a SLIP-39 word" if len(unknown) == 1 else
                 f"words {names} and {unknown[-1]} are not SLIP-39 words")
        raise InputError(which, hint="compare it with your share sheet; every word is from "
                         "the SLIP-39 list of 1024 words")
    if len(words) < _MIN_WORDS or (10 * (len(words) - _METADATA_WORDS)) % 16 > 8:
        expected = ""
        if reference.seed_bytes:
            count = _METADATA_WORDS + -(-reference.seed_bytes * 8 // 10)
            expected = f"; this ceremony's shares have {count} words"
        raise InputError(f"the share has {len(words)} words, which is not the length of a "
                         f"SLIP-39 share{expected}",
                         hint="look for a missing or repeated word")
    try:
        share = shamir_mnemonic.Share.from_mnemonic(" ".join(words))
    except shamir_mnemonic.MnemonicError as exc:
        # The library's message quotes the first words: it is never shown.
        if "checksum" in str(exc):
            return ShareCheck(
                "checksum", "this share fails its SLIP-39 checksum: a word is wrong or words "
                "are out of order", reference,
                hint="compare each word with your share sheet, in order; it was not compared "
                "with the ceremony")
        raise InputError("the words do not form a valid SLIP-39 share",
                         hint="compare each word with your share sheet, in order") from None
    return _look_up(reference, share)


def _look_up(reference: Reference, share: shamir_mnemonic.Share) -> ShareCheck:
    ceremony = reference.ceremony_id
    commitment = share_commitment(ceremony, share.mnemonic())
    rehearsal = " (a rehearsal)" if reference.rehearsal else ""
    for share_set in reference.sets:
        for holder in share_set.holders:
            if holder["commitment"] != commitment:
                continue
            if share_set.withdrawn_at is None:
                return ShareCheck(
                    "intact", f"your share is intact: custodian {holder.get('participant')}, "
                    f"group {holder.get('group')} member {holder.get('member')} of share set "
                    f"{share_set.identifier} of ceremony {ceremony}{rehearsal}", reference,
                    share_identifier=share.identifier, holder=holder, line=share_set.line)
            return ShareCheck(
                "withdrawn", f"this share was withdrawn: ceremony {ceremony} removed the "
                f"shares it belongs to (transcript line {share_set.withdrawn_at}), so it "
                "protects nothing", reference,
                hint="keep only the share handed out after the rollback, if there was one",
                share_identifier=share.identifier, holder=holder, line=share_set.withdrawn_at)
    in_force = reference.in_force
    if not in_force:
        withdrawn = [s.withdrawn_at for s in reference.sets]
        why = (f"its shares were removed (transcript line {withdrawn[-1]})" if withdrawn
               else "it recorded none")
        return ShareCheck("no-shares", f"ceremony {ceremony} has no shares to compare with: "
                          f"{why}", reference, hint="check that this is the bundle of the "
                          "ceremony your share sheet names",
                          share_identifier=share.identifier)
    if share.identifier not in {s.identifier for s in in_force}:
        return ShareCheck("other-set", f"this share belongs to another share set (id "
                          f"{share.identifier}), not to ceremony {ceremony}", reference,
                          hint="check that this is the bundle of the ceremony your share "
                          "sheet names", share_identifier=share.identifier)
    return ShareCheck("no-match", "this share has the right set but does not match any "
                      "recorded share: it may have been altered (words in the right order?)",
                      reference, hint="compare it word by word with your share sheet; if the "
                      "sheet reads the same, tell the ceremony's administrator",
                      share_identifier=share.identifier, line=in_force[-1].line)
