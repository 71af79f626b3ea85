"""The auditor's verifier: checks a ceremony bundle end to end, offline.

It imports only the data model, the canonical encoding, the transcript reader, the errors
and ``cryptography``: no device library, no engine, no UI. It fails closed: a step that
cannot run (because an earlier one failed) is reported as not verified, and a step with
nothing to check where something is required (no approvals on a quorum step) fails.

The steps, in order (docs/transcript-format.md specifies each rule):

1. bundle     the bundle's required files are present
2. parse      script and policy parse strictly; every transcript line is canonical JSON
3. chain      seq counts from 0, each prev is the SHA-256 of the line before, one ceremony
4. time       every timestamp is UTC with microseconds and never goes backwards
5. start      the first entry starts the ceremony and pins the script and policy digests;
               the authorizers' signatures over the script (script.toml.sigs) verify and
               reach the policy's quorum, or a rehearsal waived them; the rollback check
               is recorded for the script's own version;
               a recovery carries a copy of its original bundle, which verifies and is the
               one its script names
6. signatures approvals, acknowledgements, checkpoints and the seal verify
7. quorum     the token was logged in to as the script requires (split-knowledge officers);
               each completed step had its approvals, witnesses and confirmation, in order;
               a recovery's key was rebuilt from recorded shares that reach the thresholds
8. policy     the script complies with its policy (for a rehearsal, as recorded)
9. seal       the last entry is the seal, covering everything before it, with a valid outcome
10. checksums SHA256SUMS lists every file with its digest and is signed by the transcript key;
               the printed transcript inside the bundle (transcript.pdf, when the ceremony
               made one) names this transcript's head on its pages

The seal runs before the checksums so that every check of the transcript's own content
comes first: a transcript attack (a removed seal, say) is reported at the line it breaks,
not as a stale SHA256SUMS digest, which names no line.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ceremony import health
from ceremony.canonical import sha256_hex
from ceremony.errors import BundleFormatError, CeremonyError
from ceremony.model import statements as st
from ceremony.model.attestation import GATE, attestation_problem
from ceremony.model.authorization import BUNDLE_SIGS_FILE, record_problem
from ceremony.model.policy import Policy, parse_policy
from ceremony.model.recovery import (
    FINGERPRINT_CHECK,
    ORIGINAL_DIR,
    SEED_CHECK,
    NotRecoverable,
    Original,
    quorum_reached,
    read_original,
    recovery_problem,
)
from ceremony.model.rules import check_policy
from ceremony.model.script import Script, Step, card_delivery, parse_script
from ceremony.transcript import (
    GENESIS,
    TIME_SHAPE,
    Entry,
    Line,
    check_time,
    parse_lines,
    parse_time,
)
from ceremony.verify.certificates import CertificateProblem, check_certificates

SCRIPT_FILE = "script.toml"
POLICY_FILE = "policy.toml"
TRANSCRIPT_FILE = "transcript.jsonl"
ROOT_PEM_FILE = "root-public-key.pem"
CHECKSUMS_FILE = "SHA256SUMS"
CHECKSUMS_SIG_FILE = "SHA256SUMS.sig"
PRINTED_FILE = "transcript.pdf"  # the printed transcript, made after the seal (ADR 16)
REQUIRED_FILES = (SCRIPT_FILE, POLICY_FILE, TRANSCRIPT_FILE, CHECKSUMS_FILE, CHECKSUMS_SIG_FILE)
STEP_NAMES = ("bundle", "parse", "chain", "time", "start", "signatures", "quorum", "policy",
              "seal", "checksums")

# The exact payload fields of every event the format defines.
PAYLOAD_FIELDS: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in {
    "ceremony.started": ("tool", "script_id", "script_version", "script_sha256", "policy_id",
                         "policy_version", "policy_sha256", "rehearsal", "transcript_key",
                         "token", "leftovers_destroyed", "authorization", "rollback",
                         "attestation"),
    "ceremony.resumed": ("after_seq", "repaired_bytes", "attestation"),
    "step.started": ("index", "title", "action", "step_digest"),
    "approval": ("statement", "signature"),
    "witness.ack": ("statement", "signature"),
    "confirmation": ("phrase",),
    "note": ("text",),
    "action.started": ("action", "will_create"),
    "entropy.collected": ("sources", "combiner", "seed_bytes"),
    "root_key.created": ("kind", "label", "id", "public_key", "fingerprint", "pairwise_check",
                         "attributes", "derivation", "wrapped"),
    "share.presented": ("participant", "group", "member", "commitment"),
    "root_key.recovered": ("kind", "label", "id", "public_key", "fingerprint",
                           "original_ceremony", "original_head", "contributors",
                           "fingerprint_check", "seed_check", "pairwise_check", "attributes",
                           "derivation"),
    "shares.created": ("scheme", "identifier", "group_threshold", "groups", "holders",
                       "seed_fingerprint", "reconstruction_check", "iteration_exponent",
                       "extendable", "passphrase"),
    "certificate.created": ("file", "serial", "subject", "not_before", "not_after",
                            "validity_days", "public_key", "signature_algorithm",
                            "fingerprint", "check"),
    "csr.created": ("file", "subject", "public_key", "signature_algorithm", "fingerprint",
                    "check"),
    "action.completed": ("action", "created", "files"),
    "action.rolled_back": ("reason", "destroyed_objects", "removed_share_sheets",
                           "removed_files"),
    "step.completed": ("index",),
    "checkpoint": ("statement", "signature"),
    "ceremony.aborted": ("reason", "destroyed_objects", "removed_share_sheets",
                         "removed_files"),
    "seal": ("statement", "transcript_signature", "root_key_signature"),
    # ADR 15: a deviation from the script, its custodians' approvals, the seal's witnesses.
    "deviation": ("kind", "reason", "quorum"),
    "deviation.approved": ("statement", "signature"),
    "seal.witnessed": ("statement", "signature"),
}.items()}
OPTIONAL_FIELDS = {"seal": frozenset({"root_key_signature"}),
                   "ceremony.resumed": frozenset({"attestation"}),  # a resume that attested
                   "root_key.created": frozenset({"wrapped"})}  # RSA only


# The requirement (docs/requirements.md) each step proves.
STEP_REQUIREMENTS = {
    "bundle": "CER-CHECKSUMS", "parse": "CER-STRICT-INPUT", "chain": "CER-CHAIN",
    "time": "CER-TIME", "start": "CER-SCRIPT-PIN", "signatures": "CER-APPROVAL-SIG",
    "quorum": "CER-QUORUM", "policy": "CER-POLICY-KEY", "seal": "CER-SEAL",
    "checksums": "CER-CHECKSUMS",
}


@dataclass
class StepResult:
    number: int
    name: str
    ok: bool | None = None  # None: not run, because an earlier step failed
    detail: str = ""
    line: int | None = None
    seq: int | None = None
    requirement: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.number, "name": self.name,
                "requirement": self.requirement or STEP_REQUIREMENTS[self.name],
                "result": {True: "pass", False: "fail", None: "not run"}[self.ok],
                "detail": self.detail, "line": self.line, "seq": self.seq}


@dataclass
class Report:
    bundle: str
    steps: list[StepResult] = field(default_factory=lambda: [
        StepResult(i + 1, name) for i, name in enumerate(STEP_NAMES)])
    ceremony_id: str | None = None
    rehearsal: bool | None = None
    outcome: str | None = None
    head: str | None = None
    root_public_key: str | None = None
    root_fingerprint: str | None = None
    entries: int = 0
    approvals: list[dict[str, str]] = field(default_factory=list)
    # A recovery: the original ceremony (id, head, root fingerprint) and who gave shares.
    original: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return all(s.ok is True for s in self.steps)

    @property
    def first_failure(self) -> StepResult | None:
        return next((s for s in self.steps if s.ok is False), None)

    def as_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "verified": self.ok, "ceremony_id": self.ceremony_id,
                "rehearsal": self.rehearsal, "outcome": self.outcome, "head": self.head,
                "entries": self.entries, "root_public_key": self.root_public_key,
                "root_fingerprint": self.root_fingerprint, "approvals": self.approvals,
                "original": self.original, "steps": [s.as_dict() for s in self.steps]}


class _Fail(Exception):
    def __init__(self, detail: str, line: Line | None = None, *,
                 number: int | None = None, requirement: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line
        self.number = number  # a transcript line too malformed to be a Line (no seq)
        self.requirement = requirement


def verify_bundle(bundle: Path, *, sealing: bool = False) -> Report:
    """Run every step on ``bundle``; the first failure stops the steps after it.

    ``sealing``: the engine's own check of a just-sealed bundle, before its checksum list
    exists (to print the transcript into the bundle, ADR 16): step 1 does not ask for the
    list and step 10 is not run, so the report is never ``ok``; steps 1 to 9 are.
    """
    report = Report(str(bundle))
    ctx: dict[str, Any] = {"bundle": bundle, "sealing": sealing}
    checks = (_bundle, _parse, _chain, _time, _start, _signatures, _quorum, _policy,
              _seal, _checksums)
    for result, check in zip(report.steps, checks, strict=True):
        if sealing and check is _checksums:
            result.detail = "not run: the checksum list is signed after the printout"
            break
        try:
            check(ctx, report)
        except _Fail as exc:
            result.ok = False
            result.detail = exc.detail
            result.requirement = exc.requirement or STEP_REQUIREMENTS[result.name]
            if exc.line is not None:
                result.line, result.seq = exc.line.number, exc.line.entry.seq
            elif exc.number is not None:
                result.line = exc.number
            break
        result.ok = True
    return report


# ---------------------------------------------------------------- 1. bundle

def _bundle(ctx: dict[str, Any], report: Report) -> None:
    bundle: Path = ctx["bundle"]
    if not bundle.is_dir():
        raise _Fail(f"{bundle} is not a directory")
    required = REQUIRED_FILES[:3] if ctx.get("sealing") else REQUIRED_FILES
    missing = [name for name in required if not (bundle / name).is_file()]
    if missing:
        raise _Fail(f"missing {', '.join(missing)}")


# ---------------------------------------------------------------- 2. parse

def _parse(ctx: dict[str, Any], report: Report) -> None:
    bundle: Path = ctx["bundle"]
    try:
        script_text = (bundle / SCRIPT_FILE).read_bytes().decode("utf-8")
        policy_text = (bundle / POLICY_FILE).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise _Fail("the script or policy is not UTF-8") from None
    try:
        ctx["script"] = parse_script(script_text, SCRIPT_FILE)
        ctx["policy"] = parse_policy(policy_text, POLICY_FILE)
    except CeremonyError as exc:
        raise _Fail(exc.message) from None
    try:
        lines = parse_lines((bundle / TRANSCRIPT_FILE).read_bytes(), TRANSCRIPT_FILE)
    except BundleFormatError as exc:
        raise _Fail(exc.message, number=exc.line) from None
    ctx["script_text"] = script_text
    for line in lines:
        event, keys = line.entry.event, line.entry.payload.keys()
        expected = PAYLOAD_FIELDS.get(event)
        if expected is None:
            raise _Fail(f"unknown event {event!r}", line)
        if keys != expected and keys != expected - OPTIONAL_FIELDS.get(event, frozenset()):
            raise _Fail(f"{event} payload has fields {sorted(keys)}, expected "
                        f"{sorted(expected)}", line)
    ctx["lines"] = lines
    report.entries = len(lines)


# ---------------------------------------------------------------- 3. chain

def _chain(ctx: dict[str, Any], report: Report) -> None:
    lines: list[Line] = ctx["lines"]
    script: Script = ctx["script"]
    prev = GENESIS
    for expected_seq, line in enumerate(lines):
        entry = line.entry
        if entry.seq != expected_seq:
            raise _Fail(f"seq is {entry.seq}, expected {expected_seq} (an entry was dropped, "
                        "duplicated or moved)", line)
        if entry.prev != prev:
            what = "the genesis value" if expected_seq == 0 else \
                f"the hash of line {line.number - 1}"
            raise _Fail(f"prev does not match {what} (an entry before it was altered, "
                        "removed or replaced)", line)
        if entry.ceremony != script.ceremony_id:
            raise _Fail(f"entry belongs to ceremony {entry.ceremony!r}, not "
                        f"{script.ceremony_id!r} (spliced in from another transcript)", line)
        prev = line.hash
    report.head = prev
    report.ceremony_id = script.ceremony_id


# ---------------------------------------------------------------- 4. time

def _time(ctx: dict[str, Any], report: Report) -> None:
    last = ""
    for line in ctx["lines"]:
        text = line.entry.time
        # A timestamp on the same day as the one before only needs its shape checked (the
        # pattern bounds hours, minutes, seconds); a new day is checked against the calendar.
        if text[:10] != last[:10] or TIME_SHAPE.fullmatch(text) is None:
            try:
                check_time(text)
            except ValueError as exc:
                raise _Fail(str(exc), line) from None
        if text < last:  # in the one fixed-width form, string order is time order
            raise _Fail("timestamp goes backwards", line)
        last = text


# ---------------------------------------------------------------- 5. start

def _start(ctx: dict[str, Any], report: Report) -> None:
    lines: list[Line] = ctx["lines"]
    script: Script = ctx["script"]
    policy: Policy = ctx["policy"]
    first = lines[0]
    p = first.entry.payload
    if first.entry.event != "ceremony.started":
        raise _Fail("the first entry is not ceremony.started", first)
    if p["script_sha256"] != script.sha256:
        raise _Fail("the transcript was made with another script than the bundle's", first)
    if p["policy_sha256"] != policy.sha256:
        raise _Fail("the transcript was made with another policy than the bundle's", first)
    if type(p["rehearsal"]) is not bool:
        raise _Fail("rehearsal must be true or false", first)
    try:
        ctx["transcript_key"] = st.decode_key(p["transcript_key"])
        Ed25519PublicKey.from_public_bytes(ctx["transcript_key"])
    except (ValueError, TypeError, binascii.Error):
        raise _Fail("the transcript key is not a valid Ed25519 public key", first) from None
    for line in lines[1:]:
        if line.entry.event == "ceremony.started":
            raise _Fail("a second ceremony.started entry", line)
    report.rehearsal = p["rehearsal"]
    _check_authorization(ctx, first)
    _check_attestation(ctx, lines)
    if script.recovery is not None:
        _check_original(ctx, report, first)


def _check_authorization(ctx: dict[str, Any], first: Line) -> None:
    """The script's authorizers' signatures (the bundle's script.toml.sigs) verify and reach
    the policy's quorum, as ceremony.started records; the rollback check is recorded."""
    p, path = first.entry.payload, ctx["bundle"] / BUNDLE_SIGS_FILE
    problem = record_problem(ctx["script"], ctx["policy"], rehearsal=p["rehearsal"],
                             authorization=p["authorization"], rollback=p["rollback"],
                             sigs=path.read_bytes() if path.is_file() else None)
    if problem:
        raise _Fail(problem[0], first, requirement=problem[1])


# Entries that show a secret existed: a seed made, a share taken in, a key rebuilt.
SECRET_EVENTS = ("entropy.collected", "share.presented", "root_key.recovered")


def _check_attestation(ctx: dict[str, Any], lines: list[Line]) -> None:
    """CER-ATTEST: ceremony.started's attestation record passes (every check passed, or
    was waived by the rehearsal in a rehearsal bundle or by a quorum whose signatures
    verify with the script's identity keys, bound to this ceremony and script), and every
    session that made or took in a secret attested: the start, or a resume that
    recorded its own passing attestation."""
    script, policy = ctx["script"], ctx["policy"]
    rehearsal = lines[0].entry.payload["rehearsal"]
    attested: Line | None = None
    for line in lines:
        e = line.entry
        if e.event == "ceremony.started" or (e.event == "ceremony.resumed" and
                                             "attestation" in e.payload):
            problem = attestation_problem(e.payload["attestation"], policy, rehearsal,
                                          script=script, at=e.time)
            if problem:
                raise _Fail(f"the environment attestation in {e.event} does not hold: "
                            f"{problem[0]}", line, requirement=problem[1])
            attested = line
        elif e.event == "ceremony.resumed":
            attested = None
        elif e.event in SECRET_EVENTS and attested is None:
            raise _Fail(f"{e.event} after a resume that did not attest the environment "
                        "again: a secret existed on a machine that was not attested", line,
                        requirement=GATE)


def _check_original(ctx: dict[str, Any], report: Report, first: Line) -> None:
    """A recovery bundle's copy of the original verifies and is what its script names."""
    script: Script = ctx["script"]
    path: Path = ctx["bundle"] / ORIGINAL_DIR
    if not path.is_dir():
        raise _Fail(f"a recovery bundle carries a copy of the original bundle in "
                    f"{ORIGINAL_DIR}/, and this one has none", first,
                    requirement="CER-RECOVERY")
    inner = verify_bundle(path)
    failure = inner.first_failure
    if failure is not None:
        raise _Fail(f"the copy of the original bundle in {ORIGINAL_DIR}/ does not verify "
                    f"(step {failure.number}, {failure.name}: {failure.detail})", first,
                    requirement="CER-RECOVERY")
    try:
        original = read_original(
            parse_script((path / SCRIPT_FILE).read_bytes().decode("utf-8"), SCRIPT_FILE),
            parse_lines((path / TRANSCRIPT_FILE).read_bytes(), TRANSCRIPT_FILE))
    except NotRecoverable as exc:
        raise _Fail(exc.message, first, requirement="CER-RECOVERY") from None
    except (OSError, UnicodeDecodeError, CeremonyError):
        raise _Fail(f"the copy of the original bundle in {ORIGINAL_DIR}/ cannot be read",
                    first, requirement="CER-RECOVERY") from None
    problem = recovery_problem(script, original, rehearsal=report.rehearsal is True)
    if problem:
        raise _Fail(problem, first, requirement="CER-RECOVERY")
    ctx["original"] = original
    report.original = {"ceremony_id": original.ceremony_id, "head": original.head,
                       "root_fingerprint": original.fingerprint, "contributors": []}


# ---------------------------------------------------------------- 6. signatures

def _sig(text: Any, line: Line) -> bytes:
    try:
        raw = st.unb64(text)
    except (binascii.Error, TypeError, ValueError):
        raise _Fail("a signature is not valid base64", line) from None
    # Only the canonical spelling (RFC 4648 section 3.5: unused bits zero): otherwise the
    # seal line, which no later line hashes, could be re-spelled without any check noticing.
    if st.b64(raw) != text:
        raise _Fail("a signature is not in canonical base64", line)
    return raw


def _signatures(ctx: dict[str, Any], report: Report) -> None:
    script: Script = ctx["script"]
    policy: Policy = ctx["policy"]
    transcript_key: bytes = ctx["transcript_key"]
    root: tuple[str, bytes] | None = None  # (kind, public key bytes)
    witnessed: list[dict[str, Any]] = []  # the seal's co-signatures, as the seal names them
    for line in ctx["lines"]:
        e, p = line.entry, line.entry.payload
        if e.event in ("approval", "witness.ack", "deviation.approved", "seal.witnessed"):
            statement = p["statement"]
            if not isinstance(statement, dict):
                raise _Fail("the approval statement is not an object", line)
            participant = script.participant(str(statement.get("participant")))
            if participant is None or participant.id != e.actor:
                raise _Fail(f"the approval is from {e.actor!r}, who is not the participant "
                            "named in its statement or not in the script", line)
            if not st.verify_ed25519(participant.public_key_bytes, _sig(p["signature"], line),
                                     st.message(statement)):
                raise _Fail(f"the signature of {e.actor!r} does not verify with their "
                            "identity key", line, requirement=_SIGNED_RULE.get(e.event, ""))
            if e.event == "seal.witnessed":
                witnessed.append({"participant": e.actor, "seq": e.seq})
        elif e.event == "checkpoint":
            expected = st.checkpoint_statement(ceremony=e.ceremony, seq=e.seq - 1, head=e.prev)
            if p["statement"] != expected:
                raise _Fail("the checkpoint does not cover the entry before it", line)
            if not st.verify_ed25519(transcript_key, _sig(p["signature"], line),
                                     st.message(expected)):
                raise _Fail("the checkpoint signature does not verify with the transcript "
                            "key", line)
        elif e.event in ("root_key.created", "root_key.recovered"):
            root = _root_key(script, line)
            report.root_public_key = p["public_key"]
            report.root_fingerprint = sha256_hex(root[1])
            if p["fingerprint"] != report.root_fingerprint:
                raise _Fail("the root key fingerprint does not match its public key", line)
            if e.event == "root_key.created":
                ctx["wrapped"] = _wrapped_record(root[0], line)
            else:  # the original's key, whose wrapped export (RSA) stays in original/
                ctx["wrapped"] = None
                original: Original | None = ctx.get("original")
                if original is None or (p["public_key"], p["fingerprint"]) != (
                        original.public_key, original.fingerprint):
                    raise _Fail("the recovered root key is not the root key of the original "
                                "ceremony", line, requirement="CER-RECOVERY")
        elif e.event in ("action.rolled_back", "ceremony.aborted"):
            if e.event == "ceremony.aborted" or not _certify_step(script, e.step):
                root = None  # (undoing a certification leaves the root key in place)
                report.root_public_key = report.root_fingerprint = None
        elif e.event == "seal":
            statement = p["statement"]
            outcome = statement.get("outcome") if isinstance(statement, dict) else None
            named = witnessed if outcome == "completed" and policy.seal_witnesses else None
            expected = st.seal_statement(
                ceremony=e.ceremony, script_sha256=script.sha256, policy_sha256=policy.sha256,
                head=e.prev, entries=e.seq, outcome=str(outcome), time=e.time,
                witnesses=named)
            if statement != expected or e.actor != "engine" or e.step is not None:
                raise _Fail("the seal statement does not match the transcript it closes", line)
            if not st.verify_ed25519(transcript_key, _sig(p["transcript_signature"], line),
                                     st.message(statement)):
                raise _Fail("the seal's transcript-key signature does not verify", line)
            if outcome == "completed":
                if root is None or "root_key_signature" not in p:
                    raise _Fail("a completed ceremony's seal must be signed by the root key",
                                line)
                if not st.verify_signature(*root, _sig(p["root_key_signature"], line),
                                           st.message(statement)):
                    raise _Fail("the seal's root-key signature (proof of possession) does "
                                "not verify", line)
    ctx["root"] = root


# The requirement a bad signature on these entries breaks (docs/requirements.md).
_SIGNED_RULE = {"deviation.approved": "CER-DEVIATION", "seal.witnessed": "CER-SEAL-WITNESS"}


def _wrapped_record(kind: str, line: Line) -> str | None:
    """The SHA-256 of the wrapped root key an RSA root_key.created records; None otherwise."""
    p = line.entry.payload
    if kind not in st.RSA_BITS:
        if "wrapped" in p:
            raise _Fail(f"an {kind} root key is derived from the seed: it has no wrapped "
                        "export", line, requirement="CER-RSA-WRAP")
        return None
    wrapped = p.get("wrapped")
    digest = wrapped.get("sha256") if isinstance(wrapped, dict) else None
    if not isinstance(digest, str) or len(digest) != 64 or \
            digest.strip("0123456789abcdef") or wrapped != st.wrapped_record(digest):
        raise _Fail(f"an {kind} root key must record its wrapped export exactly as the "
                    "format says", line, requirement="CER-RSA-WRAP")
    return digest


def _root_key(script: Script, line: Line) -> tuple[str, bytes]:
    """The recorded root key: a kind the format knows, the script's kind, a valid key."""
    p = line.entry.payload
    try:
        kind, raw = st.decode_public_key(p["public_key"])
        st.public_key_object(kind, raw)  # on the curve / a valid encoding
    except (ValueError, TypeError, binascii.Error):
        raise _Fail("the root public key is malformed", line,
                    requirement="CER-ROOT-KEY-KINDS") from None
    if kind != p["kind"] or kind != script.root_key.kind:
        raise _Fail(f"the root key is recorded as {p['kind']!r} with an {kind} public key, "
                    f"but the script's root key is {script.root_key.kind}", line,
                    requirement="CER-ROOT-KEY-KINDS")
    return kind, raw


# ---------------------------------------------------------------- 7. quorum

@dataclass
class _Attempt:
    step: Step
    started: Line
    approvals: list[str] = field(default_factory=list)
    witnesses: list[str] = field(default_factory=list)
    confirmed: bool = False
    action_open: bool = False
    action_done: bool = False
    presented: list[tuple[str, int, int]] = field(default_factory=list)  # recovery shares
    recovered: bool = False
    failures: int = 0  # rollbacks of the action, and the step-retried deviations for them
    retries: int = 0


@dataclass
class _OpenDeviation:
    """A deviation waiting for its custodians' approvals (ADR 15)."""

    line: Line
    quorum: int
    approvals: list[str] = field(default_factory=list)


def _step_digest(script: Script, step: Step) -> str:
    return st.step_digest(script.step_definition(step))


def _quorum(ctx: dict[str, Any], report: Report) -> None:
    script: Script = ctx["script"]
    steps = script.steps
    index = 0
    attempt: _Attempt | None = None
    aborted = False
    dev: _OpenDeviation | None = None
    witnesses: list[str] = []
    ctx["seal_witnesses"] = witnesses
    steps_done_at = ""
    for line in ctx["lines"]:
        e, p = line.entry, line.entry.payload
        if e.event == "seal" and dev is not None and not aborted:
            raise _Fail(f"the ceremony was sealed while the deviation at line "
                        f"{dev.line.number} had {len(dev.approvals)} of {dev.quorum} "
                        "custodian approvals", line, requirement="CER-DEVIATION")
        if e.event == "ceremony.started":
            token = p["token"]
            problem = script.token.activation.problem(
                token.get("activation") if isinstance(token, dict) else None)
            if problem:
                raise _Fail(f"the token was not activated as the script requires: {problem}",
                            line, requirement="CER-ACTIVATION")
        if e.event in ("ceremony.started", "ceremony.resumed", "checkpoint", "note", "seal"):
            continue
        if e.event == "ceremony.aborted":
            aborted = True
            continue
        if aborted:
            raise _Fail(f"{e.event} after the ceremony was aborted", line)
        if e.event in ("deviation", "deviation.approved"):
            dev = _check_deviation(ctx, attempt, dev, line)
            continue
        if dev is not None and e.event != "action.rolled_back":
            raise _Fail(f"{e.event} while the deviation at line {dev.line.number} had "
                        f"{len(dev.approvals)} of {dev.quorum} custodian approvals (the "
                        "ceremony went on before they were given)", line,
                        requirement="CER-DEVIATION")
        if e.event == "seal.witnessed":
            if attempt is not None or index < len(steps) or e.step is not None:
                raise _Fail("a seal co-signature before the last step completed", line,
                            requirement="CER-SEAL-WITNESS")
            _check_seal_witness(script, witnesses, steps_done_at, line)
            witnesses.append(e.actor)
            continue
        if e.event == "step.started":
            if index >= len(steps):
                raise _Fail("a step starts after the last step of the script", line)
            step = steps[index]
            if e.step != step.id or p["index"] != index:
                raise _Fail(f"step {e.step!r} starts out of order (expected {step.id!r})", line)
            if attempt is not None:
                raise _Fail(f"step {e.step!r} starts again before it completed", line)
            if p["step_digest"] != _step_digest(script, step) or p["action"] != step.action:
                raise _Fail(f"step {step.id!r} was run with another definition than the "
                            "script's", line)
            attempt = _Attempt(step, line)
            continue
        if attempt is None or e.step != attempt.step.id:
            raise _Fail(f"{e.event} outside the step it names ({e.step!r})", line)
        step = attempt.step
        if e.event in ("approval", "witness.ack"):
            _check_approval(script, step, attempt, line)
            role = "custodian" if e.event == "approval" else "witness"
            (attempt.approvals if role == "custodian" else attempt.witnesses).append(e.actor)
            report.approvals.append({"step": step.id, "participant": e.actor, "role": role,
                                     "time": e.time})
        elif e.event == "confirmation":
            if step.confirm is None or p["phrase"] != step.confirm:
                raise _Fail(f"the confirmation phrase is not the script's for {step.id!r}",
                            line)
            attempt.confirmed = True
        elif e.event == "action.started":
            if step.action == "none" or p["action"] != step.action:
                raise _Fail(f"action {p['action']!r} is not the action of step {step.id!r}",
                            line)
            _require_authorized(step, attempt, line)
            if attempt.failures > attempt.retries:
                raise _Fail(f"the action of step {step.id!r} ran again after it was rolled "
                            "back, without a step-retried deviation", line,
                            requirement="CER-DEVIATION")
            attempt.action_open, attempt.action_done = True, False
            attempt.presented, attempt.recovered = [], False
        elif e.event in ACTION_EVENTS or e.event == "action.completed":
            if not attempt.action_open:
                raise _Fail(f"{e.event} outside an action", line)
            if ACTION_EVENTS.get(e.event, step.action) != step.action:
                raise _Fail(f"{e.event} in a {step.action} step", line)
            if e.event == "entropy.collected":
                _check_entropy(p, line)
                _check_dice(script, p, line)
            if e.event == "shares.created":
                _check_share_proof(script, p, line)
                _check_card_delivery(script, p, line)
            if e.event == "share.presented":
                _check_presented(ctx["original"], attempt, line)
            if e.event == "root_key.recovered":
                _check_recovered(script, attempt, line, report)
            if e.event == "action.completed":
                if step.action == "recover_root_key" and not attempt.recovered:
                    raise _Fail(f"step {step.id!r} completed its action without recovering "
                                "the root key", line, requirement="CER-RECOVERY")
                attempt.action_open, attempt.action_done = False, True
        elif e.event == "action.rolled_back":
            attempt.failures += 1
            attempt.action_open = attempt.action_done = False
            attempt.presented, attempt.recovered = [], False
        elif e.event == "step.completed":
            _require_authorized(step, attempt, line)
            if step.action != "none" and not attempt.action_done:
                raise _Fail(f"step {step.id!r} completed without its action completing", line)
            index += 1
            attempt = None
            steps_done_at = e.time
    ctx["completed_steps"] = index
    ctx["aborted"] = aborted


# The events that happen only inside an action, and the action each belongs to.
ACTION_EVENTS = {"entropy.collected": "provision_root_key", "root_key.created":
                 "provision_root_key", "shares.created": "provision_root_key",
                 "certificate.created": "certify_root_key", "csr.created": "certify_root_key",
                 "share.presented": "recover_root_key",
                 "root_key.recovered": "recover_root_key"}


def _check_deviation(ctx: dict[str, Any], attempt: _Attempt | None,
                     dev: _OpenDeviation | None, line: Line) -> _OpenDeviation | None:
    """A deviation, or a custodian's approval of the open one (ADR 15); the deviation still
    open after it (None once its quorum is reached)."""
    script: Script = ctx["script"]
    policy: Policy = ctx["policy"]
    e, p = line.entry, line.entry.payload
    here = attempt.step.id if attempt is not None else None
    if e.event == "deviation":
        if dev is not None:
            raise _Fail(f"a deviation declared while the one at line {dev.line.number} "
                        "was not yet approved", line, requirement="CER-DEVIATION")
        reason = p["reason"]
        if p["kind"] not in st.DEVIATION_KINDS or not isinstance(reason, str) or \
                not reason.strip() or len(reason) > 400 or \
                script.participant(e.actor) is None or e.step != here:
            raise _Fail("the deviation does not name a known kind, a reason, a participant "
                        "who declared it and the step it was declared in", line,
                        requirement="CER-DEVIATION")
        if type(p["quorum"]) is not int or p["quorum"] != policy.deviation_quorum:
            raise _Fail(f"the deviation asks for {p['quorum']!r} approvals, but the policy's "
                        f"[deviations] quorum is {policy.deviation_quorum}", line,
                        requirement="CER-DEVIATION")
        if p["kind"] == "step-retried":
            if attempt is None or attempt.failures <= attempt.retries:
                raise _Fail("a step-retried deviation where no action was rolled back", line,
                            requirement="CER-DEVIATION")
            attempt.retries += 1
        return _OpenDeviation(line, p["quorum"]) if p["quorum"] > 0 else None
    if dev is None:
        raise _Fail(f"{e.actor!r} approved a deviation, but none is waiting for approval",
                    line, requirement="CER-DEVIATION")
    declared, statement = dev.line.entry, p["statement"]
    who = script.participant(e.actor)
    if who is None or who.role != "custodian" or e.step != declared.step:
        raise _Fail(f"{e.actor!r} is not a custodian, who approve deviations", line,
                    requirement="CER-DEVIATION")
    if e.actor in dev.approvals:
        raise _Fail(f"{e.actor!r} approved the deviation at line {dev.line.number} twice",
                    line, requirement="CER-DEVIATION")
    expected = st.deviation_statement(
        ceremony=script.ceremony_id, script_sha256=script.sha256, deviation=dev.line.hash,
        seq=declared.seq, step=declared.step, kind=declared.payload["kind"],
        reason=declared.payload["reason"], participant=e.actor,
        time=str(statement.get("time")))
    if statement != expected:
        raise _Fail(f"the approval of {e.actor!r} is bound to another deviation, ceremony "
                    f"or script than the deviation at line {dev.line.number} (replayed?)",
                    line, requirement="CER-DEVIATION")
    _check_window(statement, declared.time, line)
    dev.approvals.append(e.actor)
    return None if len(dev.approvals) >= dev.quorum else dev


def _check_seal_witness(script: Script, witnesses: list[str], since: str,
                        line: Line) -> None:
    """A witness's co-signature of the seal: a named witness, once, bound to the transcript
    as it stood (head and entry count) when they signed (ADR 15)."""
    e, statement = line.entry, line.entry.payload["statement"]
    who = script.participant(e.actor)
    if who is None or who.role != "witness":
        raise _Fail(f"{e.actor!r} is not a witness of the script, who co-sign the seal",
                    line, requirement="CER-SEAL-WITNESS")
    if e.actor in witnesses:
        raise _Fail(f"{e.actor!r} co-signed the seal twice", line,
                    requirement="CER-SEAL-WITNESS")
    expected = st.seal_witness_statement(
        ceremony=script.ceremony_id, script_sha256=script.sha256, head=e.prev,
        entries=e.seq, outcome="completed", participant=e.actor,
        time=str(statement.get("time")))
    if statement != expected:
        raise _Fail(f"the seal co-signature of {e.actor!r} is bound to another ceremony, "
                    "script or transcript head (replayed?)", line,
                    requirement="CER-SEAL-WITNESS")
    _check_window(statement, since, line)


def _check_window(statement: dict[str, Any], since: str, line: Line) -> None:
    try:
        signed = parse_time(str(statement["time"]))
        opened = parse_time(since)
    except ValueError:
        raise _Fail("the signature's time is malformed", line) from None
    if not opened <= signed <= parse_time(line.entry.time):
        raise _Fail(f"the signature of {line.entry.actor!r} was made outside its window",
                    line)


def _check_presented(original: Original, attempt: _Attempt, line: Line) -> None:
    """A share presented in a recovery is a holder's, as the original recorded it, once."""
    e, p = line.entry, line.entry.payload
    holder = original.holder(e.actor)
    if p["participant"] != e.actor or holder is None or (
            p["group"], p["member"], p["commitment"]) != (holder.group, holder.member,
                                                          holder.commitment):
        raise _Fail(f"{e.actor!r} presented a share that is not the one ceremony "
                    f"{original.ceremony_id} recorded for them", line,
                    requirement="CER-RECOVERY")
    if any(who == e.actor for who, _, _ in attempt.presented):
        raise _Fail(f"{e.actor!r} presented a share twice", line, requirement="CER-RECOVERY")
    attempt.presented.append((e.actor, holder.group, holder.member))


def _check_recovered(script: Script, attempt: _Attempt, line: Line, report: Report) -> None:
    """The recovered key names its contributors and original, from shares that suffice."""
    p = line.entry.payload
    expected = [{"participant": who, "group": group, "member": member}
                for who, group, member in attempt.presented]
    if p["contributors"] != expected:
        raise _Fail("root_key.recovered names other contributors than the custodians who "
                    "presented shares", line, requirement="CER-RECOVERY")
    if not quorum_reached(script, attempt.presented):
        raise _Fail(f"the root key was recovered from {len(expected)} share(s), which do not "
                    "reach the share thresholds", line, requirement="CER-RECOVERY")
    spec = script.recovery
    if spec is None or (p["original_ceremony"], p["original_head"]) != (
            spec.ceremony, spec.transcript_head):
        raise _Fail("root_key.recovered names another original than the script's [recovery]",
                    line, requirement="CER-RECOVERY")
    if (p["fingerprint_check"], p["seed_check"]) != (FINGERPRINT_CHECK, SEED_CHECK):
        raise _Fail("root_key.recovered does not record that the key was checked against the "
                    "original before the token was used", line, requirement="CER-RECOVERY")
    attempt.recovered = True
    if report.original is not None:
        report.original["contributors"] = [who for who, _, _ in attempt.presented]


def _check_share_proof(script: Script, payload: dict[str, Any], line: Line) -> None:
    """The share set is the script's and every minimal quorum was proven to rebuild it."""
    scheme = script.shares
    expected = scheme.quorums
    check = payload["reconstruction_check"]
    if (payload["iteration_exponent"], payload["extendable"],
            payload.get("passphrase", "none")) != (
            scheme.iteration_exponent, scheme.extendable,
            "required" if scheme.passphrase else "none"):
        raise _Fail("the shares were made with other SLIP-39 parameters than the script's",
                    line, requirement="CER-SHARES-PROOF")
    if not isinstance(check, dict) or check.get("result") != "passed" or \
            check.get("quorums") != expected:
        raise _Fail(f"the share set was not proven: all {expected} minimal quorums must "
                    "rebuild the seed", line, requirement="CER-SHARES-PROOF")


def _check_card_delivery(script: Script, payload: dict[str, Any], line: Line) -> None:
    """Each share the script's [shares.delivery] sends to a card is recorded as delivered to
    the card holding that custodian's identity key (CER-SHARE-CARD)."""
    holders = payload["holders"]
    for holder, places in script.shares.delivery:
        participant = script.participant(holder)
        if "card" not in places or participant is None:
            continue
        record = next((h for h in holders if isinstance(h, dict)
                       and h.get("participant") == holder), {})
        where = record.get("delivered_to")
        if not isinstance(where, str) or not where.startswith(
                card_delivery(sha256_hex(participant.public_key_bytes)) + " "):
            raise _Fail(f"the script sends {holder}'s share to their card, but the transcript "
                        f"does not record it delivered to the card with {holder}'s key", line,
                        requirement="CER-SHARE-CARD")


_HEALTH_SPECS = {"os": health.os_spec, "token": health.token_spec,  # made when used
                 "dice": health.dice_spec}


def _check_dice(script: Script, payload: dict[str, Any], line: Line) -> None:
    """The seed took exactly the dice the script's [entropy] asks for, from its roller, and
    no dice when it asks for none."""
    sources = payload["sources"]
    dice = [s for s in sources if isinstance(s, dict) and s.get("source") == "dice"]
    entropy = script.entropy
    if not entropy.dice_rolls:
        if dice:
            raise _Fail("entropy.collected lists dice, but the script asks for none", line,
                        requirement="CER-DICE")
        return
    if len(dice) != 1 or (dice[0].get("bytes"), dice[0].get("rolled_by")) != (
            entropy.dice_rolls, entropy.dice_roller):
        raise _Fail(f"the seed did not take the {entropy.dice_rolls} dice rolls of "
                    f"{entropy.dice_roller} that the script's [entropy] asks for", line,
                    requirement="CER-DICE")


def _check_entropy(payload: dict[str, Any], line: Line) -> None:
    """Each seed source passed both SP 800-90B health tests with the documented cutoffs."""
    sources = payload["sources"]
    if not isinstance(sources, list) or not sources:
        raise _Fail("entropy.collected names no sources", line, requirement="CER-ENTROPY-HEALTH")
    for source in sources:
        name = source.get("source") if isinstance(source, dict) else None
        make = _HEALTH_SPECS.get(name) if isinstance(name, str) else None
        record = source.get("health") if isinstance(source, dict) else None
        if make is None or not isinstance(record, dict):
            raise _Fail(f"entropy source {name!r} has no health-test record", line,
                        requirement="CER-ENTROPY-HEALTH")
        rct, apt = record.get("repetition_count"), record.get("adaptive_proportion")
        if not (isinstance(rct, dict) and isinstance(apt, dict)):
            raise _Fail(f"entropy source {name!r} has an incomplete health-test record", line,
                        requirement="CER-ENTROPY-HEALTH")
        spec = make()
        expected = (source.get("bytes"), spec.rct_cutoff, spec.apt_window, spec.apt_cutoff,
                    True, True, True)
        found = (record.get("samples"), rct.get("cutoff"), apt.get("window"),
                 apt.get("cutoff"), rct.get("passed"), apt.get("passed"), record.get("passed"))
        if found != expected:
            raise _Fail(f"entropy source {name!r} did not pass the SP 800-90B health tests "
                        "with the documented cutoffs", line, requirement="CER-ENTROPY-HEALTH")


def _require_authorized(step: Step, attempt: _Attempt, line: Line) -> None:
    if len(attempt.approvals) < step.approvals:
        raise _Fail(f"step {step.id!r} went ahead with {len(attempt.approvals)} of "
                    f"{step.approvals} custodian approvals", line)
    if len(attempt.witnesses) < step.witnesses:
        raise _Fail(f"step {step.id!r} went ahead with {len(attempt.witnesses)} of "
                    f"{step.witnesses} witness acknowledgements", line)
    if step.confirm and not attempt.confirmed:
        raise _Fail(f"step {step.id!r} went ahead without its typed confirmation", line)


def _check_approval(script: Script, step: Step, attempt: _Attempt, line: Line) -> None:
    e, statement = line.entry, line.entry.payload["statement"]
    role = "custodian" if e.event == "approval" else "witness"
    eligible = step.approvers if role == "custodian" else tuple(
        p.id for p in script.with_role("witness"))
    if e.actor not in eligible:
        raise _Fail(f"{e.actor!r} is not eligible to approve step {step.id!r} as {role}", line)
    if e.actor in attempt.approvals + attempt.witnesses:
        raise _Fail(f"{e.actor!r} approved step {step.id!r} twice", line)
    expected = st.approval_statement(
        ceremony=script.ceremony_id, script_sha256=script.sha256, step=step.id,
        step_digest=_step_digest(script, step), head=e.prev, role=role, participant=e.actor,
        time=str(statement.get("time")))
    if statement != expected:
        raise _Fail(f"the approval of {e.actor!r} is bound to another ceremony, script, step "
                    "or transcript head (replayed?)", line)
    try:
        signed = parse_time(str(statement["time"]))
    except ValueError:
        raise _Fail("the approval time is malformed", line) from None
    if not parse_time(attempt.started.entry.time) <= signed <= parse_time(e.time):
        raise _Fail(f"the approval of {e.actor!r} was signed outside the step's window", line)


# ---------------------------------------------------------------- 8. policy

def _policy(ctx: dict[str, Any], report: Report) -> None:
    violations = check_policy(ctx["script"], ctx["policy"], rehearsal=bool(report.rehearsal),
                              script_text=ctx["script_text"])
    if violations:
        raise _Fail(violations[0].message, requirement=violations[0].requirement)


# ---------------------------------------------------------------- 10. checksums

def _checksums(ctx: dict[str, Any], report: Report) -> None:
    bundle: Path = ctx["bundle"]
    sums = (bundle / CHECKSUMS_FILE).read_bytes()
    listed: dict[str, str] = {}
    for number, raw in enumerate(sums.decode("utf-8", "replace").splitlines(), start=1):
        digest, sep, name = raw.partition("  ")
        if not sep or len(digest) != 64 or name in listed or not name:
            raise _Fail(f"{CHECKSUMS_FILE} line {number} is malformed")
        listed[name] = digest
    present = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    present -= {CHECKSUMS_FILE, CHECKSUMS_SIG_FILE}
    if present - listed.keys():
        raise _Fail(f"files not in {CHECKSUMS_FILE}: {', '.join(sorted(present - listed.keys()))}")
    if listed.keys() - present:
        raise _Fail(f"files missing from the bundle: "
                    f"{', '.join(sorted(listed.keys() - present))}")
    for name, digest in sorted(listed.items()):
        if sha256_hex((bundle / name).read_bytes()) != digest:
            raise _Fail(f"{name} does not match its digest in {CHECKSUMS_FILE}")
    sig_file = (bundle / CHECKSUMS_SIG_FILE).read_bytes()
    try:
        signature = base64.b64decode(sig_file[:-1], validate=True)
    except binascii.Error:
        signature = b""
    if base64.b64encode(signature) + b"\n" != sig_file:
        raise _Fail(f"{CHECKSUMS_SIG_FILE} is not exactly one line of canonical base64")
    statement = st.checksums_statement(ceremony=ctx["script"].ceremony_id, checksums=sums)
    if not st.verify_ed25519(ctx["transcript_key"], signature, st.message(statement)):
        raise _Fail(f"{CHECKSUMS_SIG_FILE} does not verify with the transcript key")
    if PRINTED_FILE in listed:
        _check_printed(bundle / PRINTED_FILE, str(report.head))


def _check_printed(path: Path, head: str) -> None:
    """The printed transcript is a PDF whose pages name this transcript head.

    Its bytes are already covered by the signed checksum list; this binds its content to
    the transcript: the head printed in every page's footer is read from the page content
    streams (inflated with zlib, as a PDF reader would), so a printout of another
    transcript, signed into the list by mistake, is refused. The verifier needs no PDF
    library for it (ADR 16).
    """
    data = path.read_bytes()
    if not data.startswith(b"%PDF-"):
        raise _Fail(f"{PRINTED_FILE} is not a PDF", requirement="CER-PRINT")
    if head.encode() not in pdf_page_text(data):
        raise _Fail(f"{PRINTED_FILE} does not name the transcript head {head} on its pages "
                    "(the printout of another transcript?)", requirement="CER-PRINT")


_STREAM = re.compile(rb"<<(?:[^<>]|<<[^<>]*>>)*>>\s*stream\r?\n")
_MAX_INFLATED = 64 * 2**20


def pdf_page_text(data: bytes) -> bytes:
    """The PDF's streams, inflated when FlateDecode, concatenated (bounded in size)."""
    out = bytearray()
    for match in _STREAM.finditer(data):
        end = data.find(b"endstream", match.end())
        if end < 0:
            break
        body = data[match.end():end]
        if b"/FlateDecode" in match.group(0):
            try:
                body = zlib.decompressobj().decompress(body, _MAX_INFLATED - len(out))
            except zlib.error:
                continue
        out += body
        if len(out) >= _MAX_INFLATED:
            break
    return bytes(out)


# ---------------------------------------------------------------- 9. seal

def _seal(ctx: dict[str, Any], report: Report) -> None:
    lines: list[Line] = ctx["lines"]
    script: Script = ctx["script"]
    last = lines[-1]
    seals = [ln for ln in lines if ln.entry.event == "seal"]
    if not seals:
        raise _Fail(f"the transcript ends at line {last.number} without a seal (truncated?)",
                    last)
    if seals[0] is not last:
        raise _Fail("entries follow the seal", lines[seals[0].number])
    outcome = last.entry.payload["statement"]["outcome"]
    if outcome == "completed":
        if ctx["aborted"] or ctx["completed_steps"] != len(script.steps):
            raise _Fail(f"the seal says completed but {ctx['completed_steps']} of "
                        f"{len(script.steps)} steps completed", last)
        witnessed, needed = len(ctx["seal_witnesses"]), ctx["policy"].seal_witnesses
        if witnessed < needed:
            raise _Fail(f"the seal was made with {witnessed} of the {needed} witness "
                        "co-signatures the policy's [seal] asks for", last,
                        requirement="CER-SEAL-WITNESS")
        _check_root_pem(ctx, last)
        _check_wrapped(ctx, last)
        try:
            check_certificates(ctx["bundle"], script, ctx["policy"], lines, ctx["root"], last)
        except CertificateProblem as exc:
            raise _Fail(exc.detail, exc.line, requirement="CER-CERTIFICATE") from None
    elif outcome == "aborted":
        if not ctx["aborted"]:
            raise _Fail("the seal says aborted but no ceremony.aborted entry precedes it", last)
    else:
        raise _Fail(f"unknown outcome {outcome!r}", last)
    report.outcome = outcome


def _certify_step(script: Script, step_id: str | None) -> bool:
    step = script.step(step_id) if step_id else None
    return step is not None and step.action == "certify_root_key"


def _check_root_pem(ctx: dict[str, Any], last: Line) -> None:
    path: Path = ctx["bundle"] / ROOT_PEM_FILE
    if not path.is_file():
        raise _Fail(f"the bundle has no {ROOT_PEM_FILE}", last)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError:
        raise _Fail(f"{ROOT_PEM_FILE} is not a PEM public key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    # The SubjectPublicKeyInfo names the algorithm and curve, so equal DER is the same key.
    if ctx["root"] is None or key.public_bytes(*spki) != st.public_key_object(
            *ctx["root"]).public_bytes(*spki):
        raise _Fail(f"{ROOT_PEM_FILE} is not the root key the transcript records")


def _check_wrapped(ctx: dict[str, Any], last: Line) -> None:
    """An RSA root key's wrapped export is in the bundle, with the digest recorded."""
    digest: str | None = ctx.get("wrapped") if ctx["root"] is not None else None
    if digest is None:
        return
    path: Path = ctx["bundle"] / st.WRAPPED_FILE
    if not path.is_file():
        raise _Fail(f"the bundle has no {st.WRAPPED_FILE}, the RSA root key's wrapped export",
                    last, requirement="CER-RSA-WRAP")
    if sha256_hex(path.read_bytes()) != digest:
        raise _Fail(f"{st.WRAPPED_FILE} is not the wrapped root key root_key.created records "
                    "(its SHA-256 differs)", last, requirement="CER-RSA-WRAP")


def entry_summary(entry: Entry) -> str:
    """One line per entry, for people reading a verification report."""
    step = f" [{entry.step}]" if entry.step else ""
    return f"#{entry.seq} {entry.time} {entry.actor}{step} {entry.event}"
