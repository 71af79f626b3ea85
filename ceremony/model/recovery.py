"""What a recovery needs from the original ceremony's bundle, and whether a script fits it.

A recovery is a ceremony of its own whose script has a ``[recovery]`` table naming the
original ceremony (its id, transcript head and root key fingerprint). The engine checks
every share presented against the original's ``shares.created`` commitments and the key it
rebuilds against the original's ``root_key.created``; the verifier checks a recovery bundle
against the copy of the original bundle it carries (in ``original/``). Both read the
original through :func:`read_original` and compare it with the script through
:func:`recovery_problem`, so they cannot disagree. Only the model and the transcript reader
are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ceremony.model.script import Script
from ceremony.transcript import Line

# Where a recovery bundle keeps its copy of the original bundle (covered by SHA256SUMS).
ORIGINAL_DIR = "original"
# What root_key.recovered records of the two checks made before the token was touched.
FINGERPRINT_CHECK = "passed (the original's root key fingerprint, before the token was used)"
SEED_CHECK = "passed (the original's seed fingerprint, before the token was used)"


class NotRecoverable(Exception):
    """The original bundle cannot be the reference of this recovery; ``message`` says why."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Holder:
    """One custodian's share as the original recorded it: never the share, its commitment."""

    participant: str
    group: int  # 1-based
    member: int  # 1-based
    commitment: str


@dataclass(frozen=True)
class Original:
    """The facts of a verified, completed original ceremony that a recovery relies on."""

    ceremony_id: str
    head: str  # transcript head: the SHA-256 of its seal line
    rehearsal: bool
    script: Script
    kind: str
    label: str
    key_id: str
    public_key: str  # as root_key.created records it ("ed25519:...")
    fingerprint: str
    wrapped_sha256: str | None  # RSA root keys: the SHA-256 of root-key.wrapped
    identifier: int  # the SLIP-39 share set's identifier
    group_threshold: int
    iteration_exponent: int
    extendable: bool
    seed_fingerprint: str
    holders: tuple[Holder, ...]
    # Whether the share set was made with a SLIP-39 passphrase (shares.created "required").
    passphrase: bool = False

    def holder(self, participant: str) -> Holder | None:
        return next((h for h in self.holders if h.participant == participant), None)

    def holder_with(self, commitment: str) -> Holder | None:
        return next((h for h in self.holders if h.commitment == commitment), None)


def read_original(script: Script, lines: list[Line]) -> Original:
    """The original's root key and share set from its (already verified) transcript.

    The root key is the last ``root_key.created`` not undone by a rollback of its step or
    an abort, the share set the last ``shares.created`` likewise; the ceremony must have
    completed. Raises NotRecoverable with one sentence otherwise.
    """
    ceremony = script.ceremony_id
    if script.recovery is not None:
        raise NotRecoverable(
            f"ceremony {ceremony} is itself a recovery (of {script.recovery.ceremony}), not "
            "the ceremony that made the shares", hint="give the bundle of the ceremony that "
            f"made the shares: a copy of it is in {ORIGINAL_DIR}/ of this recovery bundle")
    root: dict[str, Any] | None = None
    shares: dict[str, Any] | None = None
    outcome = None
    for line in lines:
        e, p = line.entry, line.entry.payload
        step = script.step(e.step) if e.step else None
        if e.event == "root_key.created":
            root = p
        elif e.event == "shares.created":
            shares = p
        elif e.event == "ceremony.aborted" or (
                e.event == "action.rolled_back" and step is not None
                and step.action == "provision_root_key"):
            root = shares = None
        elif e.event == "seal" and isinstance(p.get("statement"), dict):
            outcome = p["statement"].get("outcome")
    if outcome != "completed" or root is None or shares is None:
        raise NotRecoverable(f"ceremony {ceremony} did not complete, so it left no root key "
                             "to recover", hint="give the bundle of the ceremony that "
                             "provisioned the root key")
    first = lines[0].entry.payload
    try:
        holders = tuple(Holder(_text(h, "participant"), _integer(h, "group"),
                               _integer(h, "member"), _text(h, "commitment"))
                        for h in _items(shares, "holders"))
        wrapped = root.get("wrapped")
        return Original(
            ceremony, lines[-1].hash, first.get("rehearsal") is True, script,
            _text(root, "kind"), _text(root, "label"), _text(root, "id"),
            _text(root, "public_key"), _text(root, "fingerprint"),
            _text(wrapped, "sha256") if isinstance(wrapped, dict) else None,
            _integer(shares, "identifier"), _integer(shares, "group_threshold"),
            _integer(shares, "iteration_exponent"), shares.get("extendable") is True,
            _text(shares, "seed_fingerprint"), holders,
            _text(shares, "passphrase") == "required")
    except (KeyError, TypeError):
        raise NotRecoverable(f"the transcript of ceremony {ceremony} does not record its root "
                             "key and shares as the format says") from None


def _text(data: Any, name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(name)
    return value


def _integer(data: Any, name: str) -> int:
    value = data[name]
    if type(value) is not int:
        raise TypeError(name)
    return value


def _items(data: Any, name: str) -> list[Any]:
    value = data[name]
    if not isinstance(value, list):
        raise TypeError(name)
    return value


def recovery_problem(script: Script, original: Original, *, rehearsal: bool) -> str | None:
    """Why ``script`` cannot recover ``original``'s root key (one sentence), or None.

    The script's [recovery] table must name the original exactly (id, transcript head, root
    fingerprint), its root key must be the original's (kind, label, id: the kind and id are
    inputs of the derivation), its share scheme the original's (the same groups, thresholds
    and members in the same order, so each custodian is the holder the original recorded),
    and the recovery of a rehearsal's key is a rehearsal too.
    """
    spec = script.recovery
    if spec is None:
        return "the script has no [recovery] table naming the ceremony to recover"
    name = f"ceremony {original.ceremony_id}"
    if spec.ceremony != original.ceremony_id:
        return (f"the script recovers ceremony {spec.ceremony}, but the original bundle is "
                f"of {name}")
    if spec.transcript_head != original.head:
        return (f"recovery.transcript_head is not the transcript head of {name} "
                f"({original.head}): this is another bundle of that ceremony, or the script "
                "was written for another one")
    if spec.root_fingerprint != original.fingerprint:
        return (f"recovery.root_fingerprint is not the root key fingerprint of {name} "
                f"({original.fingerprint})")
    rk = script.root_key
    if (rk.kind, rk.label, rk.key_id) != (original.kind, original.label, original.key_id):
        return (f"the script's root key ({rk.kind}, label {rk.label!r}, id {rk.key_id}) is not "
                f"the root key of {name} ({original.kind}, label {original.label!r}, id "
                f"{original.key_id})")
    ours, theirs = script.shares, original.script.shares
    if ours.passphrase != original.passphrase:
        return (f"the shares of {name} were made " + ("with" if original.passphrase else
                                                      "without") + " a SLIP-39 passphrase, "
                "but the script's [shares] say " + ("passphrase = true" if ours.passphrase
                                                    else "none is needed")
                + " (set passphrase in [shares] as the original's script does)")
    if (ours.group_threshold, ours.groups) != (theirs.group_threshold, theirs.groups) or (
            ours.iteration_exponent, ours.extendable) != (original.iteration_exponent,
                                                          original.extendable):
        return (f"the script's [shares] are not those of {name}: the groups, thresholds and "
                "members (in order) must be the original's, so that each custodian presents "
                "the share recorded for them")
    for holder in original.holders:
        group = ours.groups[holder.group - 1] if 0 < holder.group <= len(ours.groups) else None
        if group is None or not 0 < holder.member <= len(group.members) or \
                group.members[holder.member - 1] != holder.participant:
            return (f"{name} recorded {holder.participant}'s share as group {holder.group} "
                    f"member {holder.member}, which the script's [shares] do not say")
    if original.rehearsal and not rehearsal:
        return (f"{name} was a rehearsal: its key can only be recovered in a rehearsal, never "
                "into production")
    return None


def share_progress(script: Script, presented: list[tuple[str, int, int]]
                   ) -> list[tuple[int, tuple[str, ...], tuple[str, ...]]]:
    """Per group of ``script``'s shares: (threshold, members, who presented, in order)."""
    return [(g.threshold, g.members,
             tuple(p for p, group, _ in presented if group == i + 1))
            for i, g in enumerate(script.shares.groups)]


def quorum_reached(script: Script, presented: list[tuple[str, int, int]]) -> bool:
    """Whether at least ``group_threshold`` groups have their threshold of presented shares."""
    complete = sum(len(who) >= threshold
                   for threshold, _, who in share_progress(script, presented))
    return complete >= script.shares.group_threshold
