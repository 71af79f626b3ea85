"""The lineage record: one signed, canonical record per root key, tracing it to the seed.

A record states what a verified, completed ceremony bundle says about its root key: the
key (kind, label, id, public key, fingerprint), the SLIP-39 share set that rebuilds it
(identifier, seed commitment), the certificates made for it, the ceremony (id, script and
policy digests, transcript head, seal), the previous ceremony of the same key (a recovery
names its original and embeds the original's record), and the key's lifecycle state with
dated transitions (NIST SP 800-57 Part 1, 5.3). It is signed by a quorum of the custodians
who could authorize the key: the approvers of the script's key step, at least as many as
that step requires (docs/adr/0011-lineage-signed-by-custodians.md says why not the root key).

The document (docs/print-and-lineage.md), written as RFC 8785 canonical JSON and a newline:

    {"record": {"type": "ceremony.lineage.v1", "key", "share_set", "certificates",
                "ceremony", "previous", "lifecycle", "signers"},
     "signatures": [{"participant", "signature"}]}

Each signature is Ed25519 over the canonical bytes of ``record``. Verification walks the
chain back to the seed's ceremony: each link is recomputed from its bundle (the recovery
bundle's ``original/`` copy for the link before it) and must be exactly the record, and its
signatures must reach the threshold. Pure: like the verifier, only the model, the canonical
encoding, the transcript reader and ``cryptography``.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ceremony.bundlefacts import Facts, load_verified
from ceremony.canonical import CanonicalError, canonical_bytes, digest, parse_strict
from ceremony.errors import CheckFailed, InputError
from ceremony.model import statements as st
from ceremony.model.recovery import ORIGINAL_DIR
from ceremony.model.script import Participant, Script, Step
from ceremony.transcript import check_time

LINEAGE = "ceremony.lineage.v1"
REQUIREMENT = "CER-LINEAGE"
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


class LineageError(CheckFailed):
    """A lineage record does not verify, or cannot be made (exit 1)."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message, hint=hint, requirement=REQUIREMENT)


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
    document for a recovery (embedded as it is), None for the ceremony that made the key."""
    if facts.root is None or facts.shares is None:
        raise LineageError(f"ceremony {facts.ceremony_id} did not complete (outcome "
                           f"{facts.outcome}), so it left no key to record the lineage of",
                           hint="give the bundle of a completed ceremony")
    rk, shares, seal = facts.root, facts.shares, facts.seal_statement
    link: dict[str, Any] | None = None
    if facts.original is not None:
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
                           hint="give --previous only for a recovery")
    lifecycle = _created_lifecycle(facts) if link is None else previous_lifecycle(previous)
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
                     "kind": "creation" if link is None else "recovery",
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


def previous_lifecycle(previous: dict[str, Any] | None) -> dict[str, Any]:
    """A recovery does not change the key's state: its lifecycle is the original's."""
    record = previous.get("record") if isinstance(previous, dict) else None
    lifecycle = record.get("lifecycle") if isinstance(record, dict) else None
    return lifecycle if isinstance(lifecycle, dict) else {}


def make(facts: Facts, signers: Sequence[Signer], previous: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    """The signed document for ``facts``: refuses ineligible, mismatched or too few signers.

    For a recovery, ``previous`` (the original's document) must itself verify against the
    copy of the original in the recovery bundle before it is embedded.
    """
    if previous is not None and facts.original is not None:
        verify_chain(previous, facts.bundle / ORIGINAL_DIR)
    record = expected_record(facts, previous)
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
    message = canonical_bytes(record)
    seen: list[str] = []
    for item in document["signatures"]:
        who = item["participant"]
        if who not in keys:
            raise LineageError(f"{where} is signed by {who}, who is not among its signers "
                               f"({', '.join(keys) or 'nobody'})")
        if who in seen:
            raise LineageError(f"{where} carries two signatures of {who}")
        try:
            key = st.decode_key(keys[who])
            signature = st.unb64(item["signature"])
        except (ValueError, TypeError, binascii.Error):
            raise LineageError(f"{where}: the key or signature of {who} is malformed") \
                from None
        if st.b64(signature) != item["signature"] or not st.verify_ed25519(key, signature,
                                                                             message):
            raise LineageError(f"{where}: the signature of {who} does not verify (the record "
                               "was altered after it was signed, or signed by another key)")
        seen.append(who)
    if signers["threshold"] < 1 or len(seen) < signers["threshold"]:
        raise LineageError(f"{where} carries {len(seen)} valid signature(s); it needs "
                           f"{signers['threshold']} of the approvers of step "
                           f"{signers['step']}")


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


def verify_chain(document: dict[str, Any], bundle: Path) -> list[Link]:
    """Verify every link, the seed's ceremony first, against its bundle: ``bundle`` for the
    document itself, each recovery bundle's ``original/`` for the link before it.

    Raises LineageError naming the first broken link (its number, counted from the seed's
    ceremony, and its ceremony); returns the links.
    """
    problem = shape_problem(document, "")
    if problem:
        raise LineageError(f"the lineage record is not well formed: {problem}")
    documents = chain(document)
    bundles = [bundle]
    for _ in documents[1:]:
        bundles.append(bundles[-1] / ORIGINAL_DIR)
    bundles.reverse()
    total = len(documents)
    links = []
    for number, (doc, path) in enumerate(zip(documents, bundles, strict=True), start=1):
        record = doc["record"]
        name = (f"lineage link {number} of {total} (ceremony {record['ceremony']['id']}, "
                f"{record['ceremony']['kind']})")
        if not path.is_dir():
            raise LineageError(f"{name} has no bundle to check it against: {path} does not "
                               "exist", hint="give the bundle of the record's ceremony")
        try:
            facts = load_verified(path, f"so {name} cannot be checked")
        except CheckFailed as exc:
            raise LineageError(exc.message, hint=exc.hint) from None
        previous = record["previous"]["lineage"] if isinstance(record["previous"], dict) \
            else None
        try:
            expected = expected_record(facts, previous if facts.original else None)
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
