"""The lineage record: one signed, canonical record per root key, tracing it to the seed.

A record states what a verified, completed ceremony bundle says about its root key: the
key (kind, label, id, public key, fingerprint), the SLIP-39 share set that rebuilds it
(identifier, seed commitment), the certificates made for it, the ceremony (id, script and
policy digests, transcript head, seal), the previous link (a recovery names its original
and embeds the original's record; a rotation, whose script's ``[previous]`` names the key
it replaces, embeds that key's record), and the key's lifecycle state with
dated transitions (NIST SP 800-57 Part 1, 5.3). It is signed by a quorum of the custodians
who could authorize the key: the approvers of the script's key step, at least as many as
that step requires (docs/adr/0011-lineage-signed-by-custodians.md says why not the root key).

The document (docs/print-and-lineage.md), written as RFC 8785 canonical JSON and a newline:

    {"record": {"type": "ceremony.lineage.v1", "key", "share_set", "certificates",
                "ceremony", "previous", "lifecycle", "signers"},
     "signatures": [{"participant", "signature"}]}

Each signature is Ed25519 over the canonical bytes of ``record``. Verification walks the
chain back to the seed's ceremony: each link is recomputed from its bundle (the recovery
bundle's ``original/`` copy for the link before it; the replaced key's bundle, given, for
the link before a rotation) and must be exactly the record, and its signatures must reach
the threshold.

After the record, the key's state changes only by signed lifecycle events, appended to
``BUNDLE.lineage.events.jsonl`` and chained to the record by digest (ADR 14, the last
section of this module): :func:`make_event`, :func:`verify_events`, and for ``ceremony
status`` :func:`load_events`, :func:`current_state` and :func:`rotation_due`. Pure: like
the verifier, only the model, the canonical encoding, the transcript reader and
``cryptography``.
"""

from __future__ import annotations

import binascii
import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from ceremony.bundlefacts import Facts, load_verified
from ceremony.canonical import CanonicalError, canonical_bytes, digest, parse_strict
from ceremony.errors import CheckFailed, InputError
from ceremony.model import statements as st
from ceremony.model.lifecycle import Lifecycle
from ceremony.model.policy import Policy
from ceremony.model.recovery import ORIGINAL_DIR
from ceremony.model.script import Participant, Script, Step
from ceremony.transcript import check_time, format_time, parse_time

LINEAGE = "ceremony.lineage.v1"
REQUIREMENT = "CER-LINEAGE"
LIFECYCLE_REQUIREMENT = "CER-LIFECYCLE"
STATES = ("pre-activation", "active", "suspended", "deactivated", "compromised", "destroyed")
# NIST SP 800-57 Part 1 Rev. 5, 5.3 (figure 3): the transitions between key states.
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"pre-activation"}),
    "pre-activation": frozenset({"active", "compromised", "destroyed"}),
    "active": frozenset({"suspended", "deactivated", "compromised"}),
    "suspended": frozenset({"active", "deactivated", "compromised"}),
    "deactivated": frozenset({"compromised", "destroyed"}),
    "compromised": frozenset({"destroyed"}),
    "destroyed": frozenset(),
}
_HEX = frozenset("0123456789abcdef")
# The link a script's [previous] reason makes: a scheduled rotation, or the replacement of
# a compromised key (ceremony.model.previous); a recovery's link is "recovery".
RELATIONS = {"rotation": "rotation", "compromise": "replacement"}


class LineageError(CheckFailed):
    """A lineage record does not verify, or cannot be made (exit 1)."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message, hint=hint, requirement=REQUIREMENT)


class LifecycleError(LineageError):
    """A lifecycle event does not verify, or cannot be made (exit 1, ADR 14)."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        CheckFailed.__init__(self, message, hint=hint, requirement=LIFECYCLE_REQUIREMENT)


class LineageFormatError(InputError):
    """A file is not a well-formed lineage record (exit 2)."""


class Signer(Protocol):
    """A custodian's identity key: a rehearsal key file or an OpenPGP card."""

    participant: str

    @property
    def public_key(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


# ------------------------------------------------------------------ the record from a bundle


def signing_rule(script: Script) -> tuple[Step, tuple[Participant, ...]]:
    """The key step (provision or recover) and its approvers: who signs the lineage."""
    step = next(s for s in script.steps if s.action == script.key_action)
    people = tuple(p for a in step.approvers if (p := script.participant(a)) is not None)
    return step, people


def _signers(script: Script) -> dict[str, Any]:
    step, people = signing_rule(script)
    return {"step": step.id, "threshold": step.approvals,
            "eligible": [{"participant": p.id, "name": p.name, "public_key": p.public_key}
                         for p in people]}


def _created_lifecycle(facts: Facts) -> dict[str, Any]:
    assert facts.root is not None
    return {"state": "active", "transitions": [
        {"state": "pre-activation", "time": facts.root.time, "ceremony": facts.ceremony_id,
         "reason": f"generated and installed in the token (transcript seq {facts.root.seq})"},
        {"state": "active", "time": facts.seal.entry.time, "ceremony": facts.ceremony_id,
         "reason": "the ceremony completed and was sealed"}]}


def expected_record(facts: Facts, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The record a verified, completed bundle makes; ``previous`` is the original's
    document for a recovery, the replaced key's document for a rotation (a script with
    ``[previous]``; embedded as it is), None for a creation."""
    if facts.root is None or facts.shares is None:
        raise LineageError(f"ceremony {facts.ceremony_id} did not complete (outcome "
                           f"{facts.outcome}), so it left no key to record the lineage of",
                           hint="give the bundle of a completed ceremony")
    rk, shares, seal = facts.root, facts.shares, facts.seal_statement
    link: dict[str, Any] | None = None
    if facts.script.previous is not None:
        link = _rotation_link(facts, previous)
    elif facts.original is not None:
        if previous is None:
            raise LineageError(f"ceremony {facts.ceremony_id} recovered the key of ceremony "
                               f"{facts.original.ceremony_id}: its lineage continues the "
                               "original's record, which was not given",
                               hint="pass --previous FILE, the original's lineage record "
                                    "(`ceremony lineage make ORIGINAL_BUNDLE` makes it)")
        original = facts.original
        link = {"relation": "recovery", "ceremony": original.ceremony_id,
                "transcript_head": original.head, "root_fingerprint": original.fingerprint,
                "lineage": previous}
    elif previous is not None:
        raise LineageError(f"ceremony {facts.ceremony_id} made its key from a new seed: its "
                           "lineage starts there and has no previous record",
                           hint="give --previous only for a recovery, or for a rotation "
                                "(a script with a [previous] table)")
    kind = "creation" if link is None else link["relation"]
    lifecycle = previous_lifecycle(previous) if kind == "recovery" else \
        _created_lifecycle(facts)
    return {
        "type": LINEAGE,
        "key": {"kind": rk.kind, "label": rk.label, "id": rk.key_id,
                "public_key": rk.public_key, "fingerprint": rk.fingerprint},
        "share_set": {"scheme": "slip39", "identifier": shares.identifier,
                      "seed_fingerprint": shares.seed_fingerprint,
                      "group_threshold": shares.group_threshold,
                      "groups": [{"threshold": t, "count": n} for t, n in shares.groups]},
        "certificates": [{"type": c.kind, "file": c.file, "sha256": c.sha256,
                          "fingerprint": c.fingerprint, "subject": c.subject,
                          "serial": c.serial, "not_before": c.not_before,
                          "not_after": c.not_after} for c in facts.certificates],
        "ceremony": {"id": facts.ceremony_id,
                     "kind": kind,
                     "rehearsal": facts.rehearsal,
                     "script_sha256": facts.script.sha256,
                     "policy_sha256": facts.policy.sha256,
                     "transcript_head": facts.head,
                     "seal": {"outcome": seal["outcome"], "time": seal["time"],
                              "entries": seal["entries"], "sha256": facts.seal_digest}},
        "previous": link,
        "lifecycle": lifecycle,
        "signers": _signers(facts.script),
    }


def key_maker(document: dict[str, Any]) -> str:
    """The id of the ceremony that made the record's key: back through its recoveries (a
    recovery rebuilds the same key), to a creation or a rotation."""
    while isinstance(link := document["record"]["previous"], dict) and \
            link["relation"] == "recovery":
        document = link["lineage"]
    ceremony: str = document["record"]["ceremony"]["id"]
    return ceremony


def replaced_heads(document: dict[str, Any]) -> list[str]:
    """The transcript heads of the records the chain's rotations embed, newest first: the
    ceremonies whose bundles :func:`verify_chain` needs as ``earlier``."""
    out: list[str] = []
    while isinstance(link := document["record"]["previous"], dict):
        if link["relation"] != "recovery":
            out.append(link["transcript_head"])
        document = link["lineage"]
    return out


def _rotation_link(facts: Facts, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The link of a rotation (or a compromised key's replacement): the script's
    ``[previous]`` names the replaced key, and ``previous`` must be a record of that key,
    made by that ceremony (or by a recovery of it)."""
    named = facts.script.previous
    assert named is not None and facts.root is not None
    replaced = f"root key {named.root_fingerprint} of ceremony {named.ceremony}"
    if previous is None:
        raise LineageError(f"ceremony {facts.ceremony_id} made a new key that replaces "
                           f"{replaced} (the [previous] table of its script): its lineage "
                           "continues the old key's record, which was not given",
                           hint="pass --previous FILE, the old key's lineage record")
    record = previous["record"]
    key, maker = record["key"]["fingerprint"], key_maker(previous)
    if (key, maker) != (named.root_fingerprint, named.ceremony):
        raise LineageError(f"the previous lineage record given is of root key {key} made by "
                           f"ceremony {maker}, not of {replaced} that the script of ceremony "
                           f"{facts.ceremony_id} replaces", hint="give the lineage record "
                           "of the key its [previous] table names")
    if facts.root.fingerprint == key:
        raise LineageError(f"ceremony {facts.ceremony_id} says it replaces root key {key}, "
                           "but its own root key is that key",
                           hint="a rotation makes a new key from a new seed")
    return {"relation": RELATIONS[named.reason], "ceremony": record["ceremony"]["id"],
            "transcript_head": record["ceremony"]["transcript_head"],
            "root_fingerprint": key, "lineage": previous}


def previous_lifecycle(previous: dict[str, Any] | None) -> dict[str, Any]:
    """A recovery does not change the key's state: its lifecycle is the original's."""
    record = previous.get("record") if isinstance(previous, dict) else None
    lifecycle = record.get("lifecycle") if isinstance(record, dict) else None
    return lifecycle if isinstance(lifecycle, dict) else {}


def make(facts: Facts, signers: Sequence[Signer], previous: dict[str, Any] | None = None,
         earlier: Sequence[Path] = ()) -> dict[str, Any]:
    """The signed document for ``facts``: refuses ineligible, mismatched or too few signers.

    For a recovery, ``previous`` (the original's document) must itself verify against the
    copy of the original in the recovery bundle before it is embedded; for a rotation, the
    replaced key's document must be the key the script's ``[previous]`` names and verify
    against that key's bundle, ``earlier[0]``. ``earlier``: the bundles of the keys the
    chain's rotations replaced, newest first (:func:`verify_chain`).
    """
    if previous is not None and facts.original is not None:
        verify_chain(previous, facts.bundle / ORIGINAL_DIR, earlier)
    record = expected_record(facts, previous)
    link = record["previous"]
    if previous is not None and link is not None and link["relation"] != "recovery":
        if not earlier:
            raise LineageError(f"the replaced key's record (ceremony {link['ceremony']}) "
                               "cannot be checked: the bundle of its ceremony was not given",
                               hint="pass --previous-bundle BUNDLE (by default the bundle "
                                    "next to the --previous file)")
        verify_chain(previous, earlier[0], earlier[1:])
    step, eligible = signing_rule(facts.script)
    keys = {p.id: p.public_key for p in eligible}
    names = ", ".join(keys) or "nobody"
    chosen: dict[str, Signer] = {}
    for signer in signers:
        who = signer.participant
        if who not in keys:
            raise LineageError(f"{who} cannot sign the lineage of ceremony "
                               f"{facts.ceremony_id}: its signers are the approvers of step "
                               f"{step.id} ({names})", hint="sign with those custodians' keys")
        if signer.public_key != keys[who]:
            raise LineageError(f"the key given for {who} is not {who}'s identity key in the "
                               "script of the bundle", hint=f"use {who}'s own key file or card")
        chosen[who] = signer
    if len(chosen) < step.approvals:
        given = ", ".join(sorted(chosen)) or "none"
        raise LineageError(f"the lineage of ceremony {facts.ceremony_id} needs the signatures "
                           f"of {step.approvals} of the approvers of step {step.id} ({names}); "
                           f"{len(chosen)} given ({given})",
                           hint="add the missing custodians' keys or cards")
    message = canonical_bytes(record)
    document = {"record": record, "signatures": [
        {"participant": who, "signature": st.b64(chosen[who].sign(message))}
        for who in sorted(chosen)]}
    check_signatures(document, "the new record")
    return document


# ------------------------------------------------------------------ reading and checking


def encode(document: dict[str, Any]) -> bytes:
    """The file's bytes: the canonical encoding and one newline."""
    return canonical_bytes(document) + b"\n"


def parse(data: bytes, source: str) -> dict[str, Any]:
    """A lineage document from its file, which must be canonical and well formed (exit 2)."""
    if not data.endswith(b"\n") or data.count(b"\n") != 1:
        raise LineageFormatError("is not a lineage record: one line of canonical JSON and a "
                                 "newline", file=source)
    try:
        document: dict[str, Any] = parse_strict(data[:-1])
    except CanonicalError as exc:
        raise LineageFormatError(f"is not a lineage record: {exc}", file=source) from None
    problem = shape_problem(document, "")
    if problem:
        raise LineageFormatError(f"is not a well-formed lineage record: {problem}",
                                 file=source, hint="see docs/print-and-lineage.md")
    return document


def is_lineage(value: Any) -> bool:
    """Whether a JSON value claims to be a lineage document (for `qr decode`)."""
    return isinstance(value, dict) and isinstance(value.get("record"), dict) and \
        value["record"].get("type") == LINEAGE


_TEXT, _INT, _BOOL, _HEX64 = "text", "int", "bool", "hex64"
_CERT = {"type": _TEXT, "file": _TEXT, "sha256": _HEX64, "fingerprint": _HEX64,
         "subject": _TEXT, "serial": (_TEXT, None), "not_before": (_TEXT, None),
         "not_after": (_TEXT, None)}
_RECORD: dict[str, Any] = {
    "type": _TEXT,
    "key": {"kind": _TEXT, "label": _TEXT, "id": _TEXT, "public_key": _TEXT,
            "fingerprint": _HEX64},
    "share_set": {"scheme": _TEXT, "identifier": _INT, "seed_fingerprint": _HEX64,
                  "group_threshold": _INT, "groups": [{"threshold": _INT, "count": _INT}]},
    "certificates": [_CERT],
    "ceremony": {"id": _TEXT, "kind": _TEXT, "rehearsal": _BOOL, "script_sha256": _HEX64,
                 "policy_sha256": _HEX64, "transcript_head": _HEX64,
                 "seal": {"outcome": _TEXT, "time": _TEXT, "entries": _INT, "sha256": _HEX64}},
    "previous": ({"relation": _TEXT, "ceremony": _TEXT, "transcript_head": _HEX64,
                  "root_fingerprint": _HEX64, "lineage": "document"}, None),
    "lifecycle": {"state": _TEXT, "transitions": [
        {"state": _TEXT, "time": _TEXT, "ceremony": _TEXT, "reason": _TEXT}]},
    "signers": {"step": _TEXT, "threshold": _INT, "eligible": [
        {"participant": _TEXT, "name": _TEXT, "public_key": _TEXT}]},
}
_DOCUMENT = {"record": _RECORD, "signatures": [{"participant": _TEXT, "signature": _TEXT}]}


def _type_problem(value: Any, spec: Any, path: str) -> str | None:
    if isinstance(spec, tuple):  # one of several
        problems = [_type_problem(value, s, path) for s in spec]
        return None if None in problems else problems[0]
    if spec is None:
        return None if value is None else f"{path} must be null"
    if spec == "document":
        return shape_problem(value, path + ".")
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{path} must be an object"
        if value.keys() != spec.keys():
            missing, extra = sorted(spec.keys() - value.keys()), sorted(value.keys() - spec)
            return f"{path} has members {sorted(value)} (missing {missing}, unknown {extra})"
        for name, sub in spec.items():
            problem = _type_problem(value[name], sub, f"{path}.{name}")
            if problem:
                return problem
        return None
    if isinstance(spec, list):
        if not isinstance(value, list):
            return f"{path} must be an array"
        for i, item in enumerate(value):
            problem = _type_problem(item, spec[0], f"{path}[{i}]")
            if problem:
                return problem
        return None
    ok = {_TEXT: isinstance(value, str), _INT: type(value) is int,
          _BOOL: type(value) is bool,
          _HEX64: isinstance(value, str) and len(value) == 64 and set(value) <= _HEX}[spec]
    return None if ok else f"{path} must be {'64 hex digits' if spec == _HEX64 else spec}"


def shape_problem(document: Any, prefix: str) -> str | None:
    """Why ``document`` is not a well-formed lineage document (a phrase), or None."""
    problem = _type_problem(document, _DOCUMENT, prefix.rstrip(".") or "the document")
    if problem:
        return problem
    record = document["record"]
    if record["type"] != LINEAGE:
        return f"{prefix}record.type is not {LINEAGE}"
    relations = ("recovery", *RELATIONS.values())
    if isinstance(record["previous"], dict) and record["previous"]["relation"] not in relations:
        return f"{prefix}record.previous.relation is not one of {', '.join(relations)}"
    return _lifecycle_problem(record["lifecycle"], f"{prefix}record.lifecycle")


def _lifecycle_problem(lifecycle: dict[str, Any], path: str) -> str | None:
    state: str | None = None
    last = ""
    for i, transition in enumerate(lifecycle["transitions"]):
        to, time = transition["state"], transition["time"]
        try:
            check_time(time)
        except ValueError:
            return f"{path}.transitions[{i}].time is not a transcript time"
        if to not in TRANSITIONS.get(state, frozenset()) or time < last:
            return (f"{path}.transitions[{i}] goes from {state or 'nothing'} to {to} at "
                    f"{time}, which NIST SP 800-57 does not allow (or is out of order)")
        state, last = to, time
    if lifecycle["state"] != state:
        return f"{path}.state is not the state of its last transition"
    return None


def check_signatures(document: dict[str, Any], where: str) -> None:
    """The record's signatures: at least ``threshold`` distinct eligible signers, each
    verifying under the key the record lists for them, and no other signature.

    Self-contained (the keys come from the record), so a record read from QR codes can be
    checked anywhere; against its bundle, :func:`verify_chain` also checks that the listed
    signers are the script's.
    """
    record = document["record"]
    signers = record["signers"]
    keys = {e["participant"]: e["public_key"] for e in signers["eligible"]}
    _check_signed(canonical_bytes(record), document["signatures"], keys,
                  signers["threshold"], where,
                  f"of the approvers of step {signers['step']}")


def _check_signed(message: bytes, signatures: list[dict[str, Any]], keys: dict[str, str],
                  threshold: int, where: str, among: str,
                  error: type[LineageError] = LineageError) -> None:
    """At least ``threshold`` distinct signers of ``keys`` signed ``message``, each signature
    verifies, and no one else signed (``among`` names the signers for the refusal)."""
    seen: list[str] = []
    for item in signatures:
        who = item["participant"]
        if who not in keys:
            raise error(f"{where} is signed by {who}, who is not among its signers "
                        f"({', '.join(keys) or 'nobody'})")
        if who in seen:
            raise error(f"{where} carries two signatures of {who}")
        try:
            key = st.decode_key(keys[who])
            signature = st.unb64(item["signature"])
        except (ValueError, TypeError, binascii.Error):
            raise error(f"{where}: the key or signature of {who} is malformed") \
                from None
        if st.b64(signature) != item["signature"] or not st.verify_ed25519(key, signature,
                                                                             message):
            raise error(f"{where}: the signature of {who} does not verify (it was "
                        "altered after it was signed, or signed by another key)")
        seen.append(who)
    if threshold < 1 or len(seen) < threshold:
        raise error(f"{where} carries {len(seen)} valid signature(s); it needs "
                    f"{threshold} {among}")


def chain(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The documents of the chain, the seed's ceremony first."""
    out = [document]
    while isinstance(out[-1]["record"].get("previous"), dict):
        out.append(out[-1]["record"]["previous"]["lineage"])
    return list(reversed(out))


def first_difference(found: Any, expected: Any, path: str) -> str | None:
    """The path of the first member where ``found`` differs from ``expected``, or None."""
    if isinstance(found, dict) and isinstance(expected, dict):
        for name in sorted(found.keys() | expected.keys()):
            if name not in found or name not in expected:
                return f"{path}.{name}"
            sub = first_difference(found[name], expected[name], f"{path}.{name}")
            if sub:
                return sub
        return None
    if isinstance(found, list) and isinstance(expected, list):
        if len(found) != len(expected):
            return path
        for i, (a, b) in enumerate(zip(found, expected, strict=True)):
            sub = first_difference(a, b, f"{path}[{i}]")
            if sub:
                return sub
        return None
    return None if (type(found) is type(expected) and found == expected) else path


@dataclass(frozen=True)
class Link:
    """One verified link of a chain."""

    number: int
    ceremony: str
    kind: str
    rehearsal: bool
    bundle: Path
    signed_by: tuple[str, ...]
    threshold: int
    head: str


def verify_chain(document: dict[str, Any], bundle: Path, earlier: Sequence[Path] = ()
                 ) -> list[Link]:
    """Verify every link, the seed's ceremony first, against its bundle: ``bundle`` for the
    document itself, each recovery bundle's ``original/`` for the link before it, and for
    the link before a rotation the next of ``earlier`` (the bundles of the replaced keys'
    records, newest first: a rotation's bundle does not carry its predecessor's).

    Raises LineageError naming the first broken link (its number, counted from the seed's
    ceremony, and its ceremony); returns the links.
    """
    problem = shape_problem(document, "")
    if problem:
        raise LineageError(f"the lineage record is not well formed: {problem}")
    documents = chain(document)
    bundles: list[Path | None] = [bundle]
    given = list(earlier)
    for doc in reversed(documents[1:]):
        here = bundles[-1]
        if doc["record"]["previous"]["relation"] == "recovery":
            bundles.append(None if here is None else here / ORIGINAL_DIR)
        else:
            bundles.append(given.pop(0) if given else None)
    if given:
        raise InputError(f"{len(earlier)} previous bundle(s) given, but the lineage record "
                         f"has {len(earlier) - len(given)} rotation link(s) that need one",
                         hint="give one --previous-bundle for each key a rotation replaced, "
                              "newest first", requirement=REQUIREMENT)
    bundles.reverse()
    total = len(documents)

    def link_name(number: int) -> str:
        ceremony = documents[number - 1]["record"]["ceremony"]
        return f"lineage link {number} of {total} (ceremony {ceremony['id']}, " \
               f"{ceremony['kind']})"

    if None in bundles:  # name the newest: the record a rotation embeds
        number = max(i for i, path in enumerate(bundles, start=1) if path is None)
        raise LineageError(f"{link_name(number)} has no bundle to check it against: it is "
                           f"the record of the key link {number + 1} replaced, and that "
                           "key's bundle was not given", hint="pass --previous-bundle BUNDLE "
                           "for each key a rotation replaced, newest first")
    links = []
    for number, (doc, path) in enumerate(zip(documents, bundles, strict=True), start=1):
        record = doc["record"]
        name = link_name(number)
        assert path is not None
        if not path.is_dir():
            raise LineageError(f"{name} has no bundle to check it against: {path} does not "
                               "exist", hint="give the bundle of the record's ceremony")
        try:
            facts = load_verified(path, f"so {name} cannot be checked")
        except CheckFailed as exc:
            raise LineageError(exc.message, hint=exc.hint) from None
        previous = record["previous"]["lineage"] if isinstance(record["previous"], dict) \
            else None
        continues = facts.original is not None or facts.script.previous is not None
        try:
            expected = expected_record(facts, previous if continues else None)
        except LineageError as exc:
            raise LineageError(f"{name} is broken: {exc.message}") from None
        differs = first_difference(record, expected, "record")
        if differs:
            raise LineageError(f"{name} is broken: {differs} is not what the bundle {path} "
                               "records", hint="the record was altered, or belongs to another "
                                               "bundle")
        check_signatures(doc, name)
        links.append(Link(number, facts.ceremony_id, record["ceremony"]["kind"],
                          facts.rehearsal, path,
                          tuple(s["participant"] for s in doc["signatures"]),
                          record["signers"]["threshold"], facts.head))
    return links


def record_digest(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical record (what the custodians signed)."""
    return digest(document["record"])


# ------------------------------------------------------------------ for people


def describe(document: dict[str, Any]) -> str:
    """The chain in words, the seed's ceremony first (``lineage show``)."""
    from ceremony.display import words

    record = document["record"]
    key = record["key"]
    lifecycle = record["lifecycle"]
    since = lifecycle["transitions"][-1]["time"] if lifecycle["transitions"] else "-"
    out = [f"lineage of root key {key['fingerprint']}",
           f"  words: {words(key['fingerprint'])}",
           f"  {key['kind']} key \"{key['label']}\", id {key['id']}",
           f"  state: {lifecycle['state']} since {since}",
           f"  record sha256 {record_digest(document)}",
           "chain, from the seed's ceremony:"]
    documents = chain(document)
    for number, doc in enumerate(documents, start=1):
        r = doc["record"]
        c = r["ceremony"]
        kind = c["kind"] if c["kind"] == "creation" else f"{c['kind']} of link {number - 1}"
        mark = " (REHEARSAL)" if c["rehearsal"] else ""
        shares = r["share_set"]
        groups = ", ".join(f"{g['threshold']} of {g['count']}" for g in shares["groups"])
        signers = r["signers"]
        try:
            check_signatures(doc, "it")
            signed = "signatures valid"
        except LineageError as exc:
            signed = f"SIGNATURES DO NOT VERIFY: {exc.message}"
        out += [f"  {number}. {kind}: ceremony {c['id']}{mark}, {c['seal']['outcome']} "
                f"{c['seal']['time']}",
                *([f"       new root key {r['key']['fingerprint']}, replacing root key "
                   f"{r['previous']['root_fingerprint']} of link {number - 1}"]
                  if isinstance(r["previous"], dict)
                  and r["previous"]["relation"] != "recovery" else []),
                f"       transcript head {c['transcript_head']}",
                f"       seal sha256 {c['seal']['sha256']}; script sha256 {c['script_sha256']}",
                f"       share set {shares['identifier']}: {shares['group_threshold']} of "
                f"{len(shares['groups'])} group(s) ({groups}), seed fingerprint "
                f"{shares['seed_fingerprint']}"]
        for cert in r["certificates"]:
            out.append(f"       {cert['type']} {cert['file']}: {cert['subject']}, sha256 "
                       f"{cert['fingerprint']}")
        out.append(f"       signed by {', '.join(s['participant'] for s in doc['signatures'])}"
                   f" ({signers['threshold']} of "
                   f"{', '.join(e['participant'] for e in signers['eligible'])} needed, the "
                   f"approvers of step {signers['step']}): {signed}")
    out.append("lifecycle (NIST SP 800-57):")
    for t in lifecycle["transitions"]:
        out.append(f"  {t['time']}  {t['state']}: {t['reason']} (ceremony {t['ceremony']})")
    return "\n".join(out)


# ------------------------------------------------------------------ lifecycle events
#
# A lifecycle event (docs/print-and-lineage.md, ADR 14) is a canonical statement about the
# record's key: its fingerprint, the digest of what it follows (the record for the first
# event, the event before it otherwise), the state it leaves and the state it enters, why,
# when, and the quorum the policy names; signed by that many of the record's signers. The
# events of a record live next to it, one canonical JSON document a line, in
# ``BUNDLE.lineage.events.jsonl``: an append-only hash chain like the transcript.

EVENT = "ceremony.lineage.event.v1"
EVENTS_SUFFIX = ".events.jsonl"
# Each event and the state it enters (None: it keeps the state).
EVENT_STATES: dict[str, str | None] = {
    "activation": "active",
    "rotation-due": None,
    "suspension": "suspended",
    "deactivation": "deactivated",
    "revocation": "deactivated",
    "compromise": "compromised",
    "destruction": "destroyed",
}
# Events that revoke every certificate of the key (the event lists them).
REVOKING = ("revocation", "compromise")
# States in which a key is in use, and so has a rotation date.
IN_USE = ("active", "suspended")
MAX_REASON = 300
CLOCK_SKEW = timedelta(minutes=5)

_EVENT: dict[str, Any] = {
    "type": _TEXT, "seq": _INT, "key": _HEX64, "previous": _HEX64, "event": _TEXT,
    "from": _TEXT, "state": _TEXT, "reason": _TEXT, "time": _TEXT, "revokes": [_HEX64],
    "due": (_TEXT, None), "drill": _BOOL,
    "quorum": {"threshold": _INT, "rule": _TEXT, "policy_sha256": _HEX64},
}
_EVENT_DOCUMENT = {"event": _EVENT, "signatures": [{"participant": _TEXT, "signature": _TEXT}]}


def events_path(record: Path) -> Path:
    """Where the events of the record file ``record`` are: ``X.lineage.events.jsonl`` for
    ``X.lineage.json``."""
    name = record.name[:-5] if record.name.endswith(".json") else record.name
    return record.with_name(name + EVENTS_SUFFIX)


def event_shape_problem(document: Any) -> str | None:
    """Why ``document`` is not a well-formed lifecycle event document (a phrase), or None."""
    problem = _type_problem(document, _EVENT_DOCUMENT, "the event")
    if problem:
        return problem
    event = document["event"]
    if event["type"] != EVENT:
        return f"event.type is not {EVENT}"
    if event["event"] not in EVENT_STATES:
        return f"event.event is not one of {', '.join(EVENT_STATES)}"
    for name in ("from", "state"):
        if event[name] not in STATES:
            return f"event.{name} is not one of {', '.join(STATES)}"
    try:
        check_time(event["time"])
        if event["due"] is not None:
            check_time(event["due"])
    except ValueError:
        return "event.time or event.due is not a transcript time (YYYY-MM-DDTHH:MM:SS.ffffffZ)"
    return None


def parse_events(data: bytes, source: str) -> list[dict[str, Any]]:
    """The events of an events file: each line one canonical, well-formed event (exit 2,
    naming the line). An empty file holds no event."""
    if data and not data.endswith(b"\n"):
        raise LineageFormatError("does not end with a newline (a line was cut off?)",
                                 file=source, hint="each event is one line of canonical JSON")
    out = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            document: dict[str, Any] = parse_strict(line)
        except CanonicalError as exc:
            raise LineageFormatError(f"is not a lifecycle event: {exc}", file=source,
                                     line=number) from None
        problem = event_shape_problem(document)
        if problem:
            raise LineageFormatError(f"is not a well-formed lifecycle event: {problem}",
                                     file=source, line=number,
                                     hint="see docs/print-and-lineage.md")
        out.append(document)
    return out


def load_events(record: Path) -> list[dict[str, Any]]:
    """The events next to the record file ``record`` (none if there is no events file);
    parsed, not verified (:func:`verify_events` does that)."""
    path = events_path(record)
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LineageFormatError(f"cannot be read: {exc.strerror or exc}", file=str(path)) \
            from None
    return parse_events(data, str(path))


def event_digest(event_document: dict[str, Any]) -> str:
    """SHA-256 of the canonical event statement (what its signers signed; the next event
    names it as ``previous``)."""
    return digest(event_document["event"])


def current_state(document: dict[str, Any], events: Sequence[dict[str, Any]] = ()) -> str:
    """The key's state now: the record's lifecycle state, changed by each event in turn.

    Trusts its input (``ceremony status`` and ``lineage show`` read it; ``lineage verify``
    runs :func:`verify_events` first). ``events`` as :func:`load_events` returns them.
    """
    state: str = document["record"]["lifecycle"]["state"]
    for item in events:
        state = item["event"]["state"]
    return state


def history(document: dict[str, Any], events: Sequence[dict[str, Any]] = ()
            ) -> list[tuple[str, str, str, str]]:
    """Every dated state of the key, oldest first: (time, state, what, reason), from the
    record's transitions and then each event."""
    out = [(t["time"], t["state"], f"ceremony {t['ceremony']}", t["reason"])
           for t in document["record"]["lifecycle"]["transitions"]]
    for item in events:
        e = item["event"]
        what = f"event {e['seq']} ({e['event']}{', DRILL' if e['drill'] else ''})"
        out.append((e["time"], e["state"], what, e["reason"]))
    return out


def activated_at(document: dict[str, Any], events: Sequence[dict[str, Any]] = ()
                 ) -> str | None:
    """When the key first became active (its cryptoperiod starts there), or None."""
    for time, state, _, _ in history(document, events):
        if state == "active":
            return time
    return None


def _add_months(moment: datetime, months: int) -> datetime:
    """The same day ``months`` calendar months later (the month's last day if it is
    shorter: 31 January + 1 month is 28 or 29 February)."""
    years, month0 = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month0 + 1
    return moment.replace(year=year, month=month,
                          day=min(moment.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Rotation:
    """When the key must be replaced, from the policy's cadence (:func:`rotation_due`)."""

    state: str  # the key's current state
    activated: str | None  # when it first became active (the cadence counts from there)
    due: str | None  # when it must be replaced (transcript time), None if never activated
    notice: str | None  # from when rotation is "due" (notice_days before ``due``)
    status: str  # "not-due", "due", "overdue", or "ended" (no longer in use) or "inactive"
    days: int | None  # calendar days from now until ``due`` (negative once overdue)
    cadence: str  # the rule, in words: "24 months (policy lifecycle.rotation_months)"
    acknowledged: str | None  # the time of a signed rotation-due event, if there is one

    def describe(self) -> str:
        """One line for people: "rotation due 2028-01-02 (in 412 days; every 24 months...)"."""
        if self.due is None:
            return f"rotation: none (the key was never activated); cadence {self.cadence}"
        day = self.due[:10]
        if self.status == "ended":
            return f"rotation: none needed, the key is {self.state} (it was due {day})"
        assert self.days is not None
        when = {"not-due": f"in {self.days} days", "due": f"DUE in {self.days} days",
                "overdue": f"OVERDUE by {-self.days} days"}[self.status]
        ack = f"; recorded as due by a signed event at {self.acknowledged}" \
            if self.acknowledged else ""
        return f"rotation due {day} ({when}; cadence {self.cadence}, from activation " \
               f"{(self.activated or '-')[:10]}){ack}"


def due_date(activated: str, lifecycle: Lifecycle, lifetime_days: int) -> str:
    """The rotation date of a key activated at ``activated`` (a transcript time)."""
    start = parse_time(activated)
    if lifecycle.rotation_months:
        end = _add_months(start, lifecycle.rotation_months)
    else:
        end = start + timedelta(days=lifetime_days)
    return format_time(end)


def cadence(policy: Policy) -> str:
    """The policy's rotation cadence in words."""
    if policy.lifecycle.rotation_months:
        return f"{policy.lifecycle.rotation_months} months (policy lifecycle.rotation_months)"
    return f"{policy.max_key_lifetime_days} days (policy max_key_lifetime_days)"


def rotation_due(document: dict[str, Any], policy: Policy,
                 events: Sequence[dict[str, Any]] = (), *, now: datetime) -> Rotation:
    """When the record's key is due for rotation under ``policy`` (the policy of the
    record's ceremony, ``BUNDLE/policy.toml``), as seen at ``now`` (an aware datetime).

    The cadence counts from the key's first activation: ``[lifecycle] rotation_months``
    calendar months, or ``max_key_lifetime_days`` without it. Rotation is "due" from
    ``notice_days`` before that date and "overdue" from the date on; a key no longer in
    use (deactivated, compromised, destroyed) has status "ended".
    """
    state = current_state(document, events)
    activated = activated_at(document, events)
    rule = cadence(policy)
    acknowledged = next((e["event"]["time"] for e in events
                         if e["event"]["event"] == "rotation-due"), None)
    if activated is None:
        return Rotation(state, None, None, None, "inactive", None, rule, acknowledged)
    due = due_date(activated, policy.lifecycle, policy.max_key_lifetime_days)
    end = parse_time(due)
    notice = format_time(end - timedelta(days=policy.lifecycle.notice_days))
    days = (end.date() - now.astimezone(UTC).date()).days  # calendar days, as people count
    if state not in IN_USE:
        status = "ended"
    elif now >= end:
        status = "overdue"
    elif now >= parse_time(notice):
        status = "due"
    else:
        status = "not-due"
    return Rotation(state, activated, due, notice, status, days, rule, acknowledged)


def _last_time(document: dict[str, Any], events: Sequence[dict[str, Any]]) -> str:
    times = history(document, events)
    return times[-1][0] if times else ""


def _expected_revokes(document: dict[str, Any], event: str) -> list[str]:
    chain_docs = chain(document)
    if event not in REVOKING:
        return []
    return sorted({c["fingerprint"] for d in chain_docs for c in d["record"]["certificates"]})


def make_event(document: dict[str, Any], events: Sequence[dict[str, Any]], event: str,
               reason: str, time: str, signers: Sequence[Signer], policy: Policy, *,
               drill: bool = False) -> dict[str, Any]:
    """The next signed event of the record ``document`` after ``events`` (verified).

    Refuses a transition NIST SP 800-57 does not allow from the key's current state, a time
    before the last one, signers outside the record's, and fewer than the policy's quorum
    (``[lifecycle]``, ADR 14). ``drill`` marks the event of a compromise drill, which is
    never appended to a record's own events.
    """
    if event not in EVENT_STATES:
        raise LineageFormatError(f"{event!r} is not a lifecycle event",
                                 hint=f"one of {', '.join(EVENT_STATES)}")
    record = document["record"]
    key = record["key"]["fingerprint"]
    state = current_state(document, events)
    target = EVENT_STATES[event] or state
    if EVENT_STATES[event] is None and state not in IN_USE:
        raise LifecycleError(f"root key {key} is {state}: a {event} event applies only to a "
                             "key in use (active or suspended)")
    if EVENT_STATES[event] is not None and target not in TRANSITIONS[state]:
        raise LifecycleError(f"root key {key} is {state}: NIST SP 800-57 allows no {event} "
                             f"({state} to {target}); from {state} it may go to "
                             f"{', '.join(sorted(TRANSITIONS[state])) or 'nothing'}",
                             hint="see the transitions in docs/print-and-lineage.md")
    last = _last_time(document, events)
    if time < last:
        raise LifecycleError(f"the event's time {time} is before the key's last recorded "
                             f"change at {last}", hint="check the workstation's clock")
    threshold, rule = policy.lifecycle.quorum(event, record["signers"]["threshold"])
    eligible = {e["participant"]: e["public_key"] for e in record["signers"]["eligible"]}
    names = ", ".join(eligible) or "nobody"
    if threshold > len(eligible):
        raise LifecycleError(f"the policy asks {threshold} signatures for a {event} event "
                             f"({rule}), but the record has only {len(eligible)} signers "
                             f"({names})", hint="fix the policy's [lifecycle] quorums")
    chosen: dict[str, Signer] = {}
    for signer in signers:
        who = signer.participant
        if who not in eligible:
            raise LifecycleError(f"{who} cannot sign a lifecycle event of root key {key}: its "
                                 f"signers are the record's ({names})",
                                 hint="sign with those custodians' keys")
        if signer.public_key != eligible[who]:
            raise LifecycleError(f"the key given for {who} is not {who}'s identity key in the "
                                 "lineage record", hint=f"use {who}'s own key file or card")
        chosen[who] = signer
    if len(chosen) < threshold:
        given = ", ".join(sorted(chosen)) or "none"
        raise LifecycleError(f"a {event} event of root key {key} needs the signatures of "
                             f"{threshold} of the record's signers ({names}) by {rule}; "
                             f"{len(chosen)} given ({given})",
                             hint="add the missing custodians' keys or cards")
    due = None
    if event == "rotation-due":
        rotation = rotation_due(document, policy, events, now=parse_time(time))
        if rotation.notice is None or time < rotation.notice:
            raise LifecycleError(f"the rotation of root key {key} is not due yet: "
                                   f"{rotation.describe()}", hint="record rotation-due from "
                                   f"{(rotation.notice or '-')[:10]} on (the policy's "
                                   "notice_days before the date)")
        due = rotation.due
    previous = event_digest(events[-1]) if events else record_digest(document)
    statement = {
        "type": EVENT, "seq": len(events) + 1, "key": key, "previous": previous,
        "event": event, "from": state, "state": target, "reason": reason, "time": time,
        "revokes": _expected_revokes(document, event), "due": due, "drill": drill,
        "quorum": {"threshold": threshold, "rule": rule, "policy_sha256": policy.sha256},
    }
    message = canonical_bytes(statement)
    new = {"event": statement, "signatures": [
        {"participant": who, "signature": st.b64(chosen[who].sign(message))}
        for who in sorted(chosen)]}
    verify_events(document, [*events, new], policy, now=parse_time(time), drill=drill)
    return new


def encode_event(event_document: dict[str, Any]) -> bytes:
    """An event's line in the events file: canonical JSON and a newline."""
    return canonical_bytes(event_document) + b"\n"


@dataclass(frozen=True)
class CheckedEvent:
    """One verified event."""

    seq: int
    event: str
    state: str
    time: str
    drill: bool
    signed_by: tuple[str, ...]
    threshold: int


def verify_events(document: dict[str, Any], events: Sequence[dict[str, Any]],
                  policy: Policy | None, *, now: datetime | None = None,
                  drill: bool = False) -> list[CheckedEvent]:
    """Verify the record's events in order; raise LifecycleError naming the first broken one.

    Each event must be numbered in turn, name the record's key, follow the record (the
    first) or the event before it by digest, leave the state the key was in for one NIST
    SP 800-57 allows, be dated no earlier than the key's last change (and not after
    ``now``), list what it revokes, and carry the signatures of at least the quorum the
    policy names (``[lifecycle]``; without ``policy``, the quorum the event states). A
    drill's events (``drill``) may only follow the record's own, and only there.
    """
    record = document["record"]
    key = record["key"]["fingerprint"]
    eligible = {e["participant"]: e["public_key"] for e in record["signers"]["eligible"]}
    state: str = record["lifecycle"]["state"]
    last = _last_time(document, [])
    previous, what = record_digest(document), "the lineage record"
    total = len(events)
    checked: list[CheckedEvent] = []
    in_drill = False
    for number, item in enumerate(events, start=1):
        problem = event_shape_problem(item)
        if problem:
            raise LifecycleError(f"lineage event {number} of {total} is not well formed: "
                                 f"{problem}")
        e = item["event"]
        name = f"lineage event {number} of {total} ({e['event']}, {e['time']})"

        def broken(why: str, name: str = name) -> LifecycleError:
            return LifecycleError(f"{name} is broken: {why}",
                                  hint="the events file was altered, or an event of another "
                                       "record was put in it")

        if e["seq"] != number:
            raise broken(f"it is numbered {e['seq']}: an event is missing, repeated or out "
                         "of order")
        if e["key"] != key:
            raise broken(f"it names root key {e['key']}, not this record's key {key} (it is "
                         "an event of another key)")
        if e["previous"] != previous:
            raise broken(f"it does not follow {what}: it names {e['previous']} as what it "
                         f"follows, and {what} is {previous} (an event before it was "
                         "altered, removed or reordered)")
        if e["drill"] and not drill:
            raise broken("it is a compromise drill's event, and a drill never changes a "
                         "key's own lifecycle")
        if in_drill and not e["drill"]:
            raise broken("a real event cannot follow a drill's event")
        in_drill = in_drill or e["drill"]
        if e["from"] != state:
            raise broken(f"it says the key was {e['from']}, but it was {state}")
        target = EVENT_STATES[e["event"]]
        if target is None:
            if e["state"] != state or state not in IN_USE:
                raise broken(f"a {e['event']} event keeps the state of a key in use; it goes "
                             f"from {state} to {e['state']}")
        elif e["state"] != target:
            raise broken(f"a {e['event']} event makes the key {target}, not {e['state']}")
        elif target not in TRANSITIONS[state]:
            raise broken(f"it goes from {state} to {target}, which NIST SP 800-57 does not "
                         "allow", )
        if e["time"] < last:
            raise broken(f"it is dated {e['time']}, before the key's last change at {last}")
        if now is not None and parse_time(e["time"]) > now.astimezone(UTC) + CLOCK_SKEW:
            raise broken(f"it is dated {e['time']}, in the future")
        if e["revokes"] != _expected_revokes(document, e["event"]):
            raise broken("its list of revoked certificates is not every certificate of the "
                         "key" if e["event"] in REVOKING else "it revokes certificates, "
                         f"which a {e['event']} event does not")
        threshold = e["quorum"]["threshold"]
        if policy is not None:
            needed, rule = policy.lifecycle.quorum(e["event"], record["signers"]["threshold"])
            if threshold < needed or e["quorum"]["policy_sha256"] != policy.sha256:
                raise broken(f"it states a quorum of {threshold} under policy "
                             f"{e['quorum']['policy_sha256'][:16]}..., and the policy of the "
                             f"record's ceremony ({policy.sha256[:16]}...) needs {needed} "
                             f"({rule})")
            if e["event"] == "rotation-due":
                rotation = rotation_due(document, policy, events[:number - 1],
                                        now=parse_time(e["time"]))
                if e["due"] != rotation.due:
                    raise broken(f"it says rotation is due at {e['due']}; the policy's "
                                 f"cadence makes it {rotation.due}")
                if rotation.notice is None or e["time"] < rotation.notice:
                    raise broken(f"it records rotation as due before the policy's notice "
                                 f"period starts ({rotation.notice})")
        if e["due"] is not None and e["event"] != "rotation-due":
            raise broken(f"a {e['event']} event has no due date")
        _check_signed(canonical_bytes(e), item["signatures"], eligible, threshold, name,
                      "of the lineage record's signers", LifecycleError)
        checked.append(CheckedEvent(number, e["event"], e["state"], e["time"], e["drill"],
                                    tuple(s["participant"] for s in item["signatures"]),
                                    threshold))
        state, last = e["state"], e["time"]
        previous, what = event_digest(item), f"event {number}"
    return checked


def describe_events(document: dict[str, Any], events: Sequence[dict[str, Any]],
                    rotation: Rotation | None) -> str:
    """The state history and the rotation date in words (``lineage show``)."""
    out = [f"state now: {current_state(document, events)} "
           f"({len(events)} lifecycle event(s) after the record)",
           "state history:"]
    for time, state, what, reason in history(document, events):
        out.append(f"  {time}  {state}: {reason} ({what})")
    if rotation is not None:
        out.append(rotation.describe())
    return "\n".join(out)
