"""Signed scripts and rollback protection (ADR 12, docs/script-signing.md).

A script runs only when a quorum of its authorizers has signed its exact bytes: each
signature is over a canonical statement binding the script's SHA-256, its ceremony id and
version, and the signer (participant and role). The policy's [authorization] says who the
authorizers are (the script's participants with the roles it names) and how many must
sign. The signatures live in a detached file beside the script, ``SCRIPT.sigs``, one
canonical JSON line per authorizer; the engine copies it into the bundle as
``script.toml.sigs`` and the verifier checks it again from there (CER-SCRIPT-SIGNED).

Rollback: a script whose version is not greater than the last version sealed for the same
ceremony id, as a local state file records it, is refused (CER-SCRIPT-ROLLBACK). The front
end reads the state file; the engine checks and records what it says in ceremony.started.

Shared by `ceremony script sign`, the engine and the verifier, so the three cannot drift.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

from ceremony.canonical import CanonicalError, digest, parse_strict, sha256_hex
from ceremony.errors import CeremonyError, CheckFailed, InputError, QuorumError
from ceremony.model import statements as st
from ceremony.model.policy import Policy
from ceremony.model.script import Script, article
from ceremony.transcript import check_time

SIGS_SUFFIX = ".sigs"  # SCRIPT.sigs beside SCRIPT
BUNDLE_SIGS_FILE = "script.toml.sigs"  # its copy in the bundle
VERIFIED = "verified"
WAIVED = "waived (rehearsal)"
NOT_REQUIRED = "not required by the policy"
CHECKED = "checked"
SIGNED = "CER-SCRIPT-SIGNED"
ROLLBACK = "CER-SCRIPT-ROLLBACK"
LINE_FIELDS = frozenset({"signature", "statement"})
STATEMENT_FIELDS = frozenset(st.script_authorization_statement(
    ceremony="", version=0, script_sha256="", participant="", role="", time=""))
AUTHORIZATION_FIELDS = frozenset({"status", "policy", "file", "file_sha256", "signatures"})
ROLLBACK_FIELDS = frozenset({"status", "ceremony", "version", "last_version", "last_head"})
FORMAT_HINT = ("each line is one signature as `ceremony script sign` writes it "
               "(docs/script-signing.md)")


class SignaturesFileError(InputError):
    """A .sigs file is malformed (exit 2)."""


@dataclass(frozen=True)
class ScriptSignature(st.SignedLine):
    """One authorizer's signature, as read from line ``line`` of a .sigs file."""

    def summary(self) -> dict[str, Any]:
        """What the transcript records of it: who, as what, when, and the statement's digest."""
        return {"participant": self.participant, "role": self.statement["role"],
                "time": self.statement["time"], "statement_sha256": digest(self.statement)}


def statement_for(script: Script, participant: str, role: str, time: str) -> dict[str, Any]:
    """The statement an authorizer of ``script`` signs."""
    return st.script_authorization_statement(
        ceremony=script.ceremony_id, version=script.version, script_sha256=script.sha256,
        participant=participant, role=role, time=time)


signature_line = st.signed_line  # one line of a .sigs file


def parse_signatures(data: bytes, name: str) -> list[ScriptSignature]:
    """Strictly parse a .sigs file: each line one canonical JSON object (exit 2 otherwise)."""
    if data and not data.endswith(b"\n"):
        raise SignaturesFileError("the last line is not terminated (a torn write?)",
                                  file=name, line=data.count(b"\n") + 1, hint=FORMAT_HINT)
    out: list[ScriptSignature] = []
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        out.append(_parse_line(raw, name, number))
    return out


def _parse_line(raw: bytes, name: str, number: int) -> ScriptSignature:
    def bad(message: str) -> SignaturesFileError:
        return SignaturesFileError(message, file=name, line=number, hint=FORMAT_HINT)

    try:
        value = parse_strict(raw)
    except CanonicalError as exc:
        raise bad(f"is not one canonical JSON object ({exc})") from None
    if not isinstance(value, dict) or set(value) != LINE_FIELDS:
        raise bad("must be an object with exactly the members signature and statement")
    statement = value["statement"]
    if not isinstance(statement, dict) or set(statement) != STATEMENT_FIELDS:
        raise bad(f"the statement must have exactly the members "
                  f"{', '.join(sorted(STATEMENT_FIELDS))}")
    if statement["type"] != st.SCRIPT_AUTHORIZATION:
        raise bad(f"the statement's type is not {st.SCRIPT_AUTHORIZATION}")
    for key in ("ceremony", "script_sha256", "participant", "role", "time"):
        if not isinstance(statement[key], str):
            raise bad(f"the statement's {key} must be a string")
    if type(statement["version"]) is not int:
        raise bad("the statement's version must be an integer")
    try:
        check_time(statement["time"])
    except ValueError as exc:
        raise bad(f"the statement's time is malformed ({exc})") from None
    text = value["signature"]
    try:
        signature = st.unb64(text) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64 or st.b64(signature) != text:
        raise bad("the signature is not 64 bytes in canonical base64")
    return ScriptSignature(number, statement, signature)


def roles_text(policy: Policy) -> str:
    roles = [f"{r}s" for r in policy.authorization.roles]
    return roles[0] if len(roles) == 1 else ", ".join(roles[:-1]) + " and " + roles[-1]


def check_signatures(script: Script, policy: Policy, signatures: list[ScriptSignature],
                     name: str) -> list[ScriptSignature]:
    """Every signature must authorize exactly this script; refuse the file otherwise.

    Refused, naming the line: a signer who is not in the script or whose role may not
    authorize, a statement for other bytes (another version, another ceremony), a role
    that is not the signer's, a signature that does not verify, a second signature by one
    authorizer. A file with a bad line is refused whole: it was tampered with or is stale.
    """
    seen: dict[str, int] = {}
    for sig in signatures:
        where, who, statement = f"{name}:{sig.line}", sig.participant, sig.statement
        participant = script.participant(who)
        if participant is None:
            raise QuorumError(f"{where}: the signature is by {who!r}, who is not a "
                              f"participant of script {script.ceremony_id}",
                              hint="only the script's authorizers sign it", requirement=SIGNED)
        if participant.role not in policy.authorization.roles:
            raise QuorumError(f"{where}: {who} is {article(participant.role)}, and policy "
                              f"{policy.policy_id!r} lets only {roles_text(policy)} "
                              "authorize scripts", hint=f"remove line {sig.line}",
                              requirement=SIGNED)
        expected = statement_for(script, who, participant.role, str(statement["time"]))
        if statement != expected:
            if {k: statement[k] for k in ("ceremony", "version", "script_sha256")} != {
                    k: expected[k] for k in ("ceremony", "version", "script_sha256")}:
                raise QuorumError(
                    f"{where}: {who}'s signature is over other script bytes (ceremony "
                    f"{statement['ceremony']} version {statement['version']}, SHA-256 "
                    f"{str(statement['script_sha256'])[:16]}...), not over this script "
                    f"(version {script.version}, SHA-256 {script.sha256[:16]}...)",
                    hint="the script changed after it was signed: review it again and "
                         "collect new signatures (remove the old .sigs file first)",
                    requirement=SIGNED)
            raise QuorumError(f"{where}: {who}'s signature names the role "
                              f"{statement['role']!r}, but the script makes them "
                              f"{article(participant.role)}", requirement=SIGNED)
        if not st.verify_ed25519(participant.public_key_bytes, sig.signature,
                                 st.message(statement)):
            raise QuorumError(f"{where}: {who}'s signature does not verify with their "
                              "identity key", hint="the signature or the script's key was "
                              "altered; sign again with the key the script names",
                              requirement=SIGNED)
        if who in seen:
            raise QuorumError(f"{where}: {who} signed the script twice (also on line "
                              f"{seen[who]})", hint="keep one of the two lines",
                              requirement=SIGNED)
        seen[who] = sig.line
    return signatures


def quorum_problem(script: Script, policy: Policy,
                   signatures: list[ScriptSignature]) -> str | None:
    """Why ``signatures`` (already checked) fall short of the policy's quorum, if they do."""
    auth = policy.authorization
    if not auth.required or len(signatures) >= auth.signers:
        return None
    who = ", ".join(s.participant for s in signatures) or "no one"
    return (f"script {script.ceremony_id} version {script.version} is authorized by "
            f"{len(signatures)} of the {auth.signers} authorizers policy {policy.policy_id!r} "
            f"requires (signed: {who})")


def authorizers(script: Script, policy: Policy) -> list[str]:
    """The participants of ``script`` who may authorize it under ``policy``."""
    return [p.id for p in script.participants if p.role in policy.authorization.roles]


SIGN_HINT = ("each authorizer reviews the script and signs it: `ceremony script sign SCRIPT "
             "--as NAME --card` (docs/script-signing.md)")


# ------------------------------------------------------------------ what the engine gets


@dataclass(frozen=True)
class LastRun:
    """What the local version state says was last sealed for a ceremony id."""

    version: int
    head: str
    outcome: str
    sealed: str


@dataclass(frozen=True)
class Presented:
    """What a front end gives the engine about a script's authorization and version.

    ``sigs`` is the .sigs file's bytes (None: there is none); ``state_checked`` says a
    version state file was read (only a rehearsal may go without), ``last`` what it holds
    for this ceremony id, ``state_name`` where it is (for messages; never recorded).
    """

    sigs: bytes | None = None
    sigs_name: str = BUNDLE_SIGS_FILE
    state_checked: bool = False
    last: LastRun | None = None
    state_name: str = ""


def authorization_record(script: Script, policy: Policy, presented: Presented, *,
                         rehearsal: bool) -> dict[str, Any]:
    """Check the script's authorizations; what ceremony.started records of them.

    Without a .sigs file a rehearsal waives the check, and a run under a policy that does
    not require it records so; otherwise every signature is checked, and (when the policy
    requires it) the quorum, in a rehearsal as well: signatures presented count only valid.
    """
    base: dict[str, Any] = {"policy": policy.authorization.record(), "file": None,
                            "file_sha256": None, "signatures": []}
    if presented.sigs is None:
        if rehearsal:
            return {**base, "status": WAIVED}
        if policy.authorization.required:
            auth = policy.authorization
            raise QuorumError(f"script {script.ceremony_id} version {script.version} is not "
                              f"authorized: there is no {presented.sigs_name}, and policy "
                              f"{policy.policy_id!r} requires the signatures of "
                              f"{auth.signers} of its {roles_text(policy)}; nothing was "
                              "written", hint=SIGN_HINT, requirement=SIGNED)
        return {**base, "status": NOT_REQUIRED}
    signatures = check_signatures(script, policy,
                                  parse_signatures(presented.sigs, presented.sigs_name),
                                  presented.sigs_name)
    problem = quorum_problem(script, policy, signatures)
    if problem:
        raise QuorumError(f"{problem}; nothing was written", hint=SIGN_HINT,
                          requirement=SIGNED)
    return {**base, "status": VERIFIED, "file": BUNDLE_SIGS_FILE,
            "file_sha256": sha256_hex(presented.sigs),
            "signatures": [s.summary() for s in signatures]}


def rollback_record(script: Script, presented: Presented, *,
                    rehearsal: bool) -> dict[str, Any]:
    """Refuse a version not newer than the last one sealed; what ceremony.started records."""
    record: dict[str, Any] = {"status": CHECKED, "ceremony": script.ceremony_id,
                              "version": script.version, "last_version": None,
                              "last_head": None}
    if not presented.state_checked:
        if not rehearsal:
            raise CheckFailed("no version state was read, so a rollback to an older script "
                              "could not be detected; nothing was written",
                              hint="run it with `ceremony run` (it reads the state file, "
                                   "or --state FILE)", requirement=ROLLBACK)
        return {**record, "status": WAIVED}
    last = presented.last
    if last is not None:
        if script.version <= last.version:
            where = f" ({presented.state_name})" if presented.state_name else ""
            again = "the same version" if script.version == last.version else "an older one"
            raise CheckFailed(f"script {script.ceremony_id} version {script.version} is not "
                              f"newer than version {last.version}, which was already run and "
                              f"sealed here on {last.sealed[:10]} (outcome {last.outcome}); "
                              f"{again} is refused, so nothing was written", hint="run the "
                              "current script: a changed script needs a higher version "
                              f"and new signatures{where}", requirement=ROLLBACK)
        record.update(last_version=last.version, last_head=last.head)
    return record


# ------------------------------------------------------------------ what the verifier checks


def record_problem(script: Script, policy: Policy, *, rehearsal: bool, authorization: Any,
                   rollback: Any, sigs: bytes | None) -> tuple[str, str] | None:
    """Why ceremony.started's ``authorization`` and ``rollback`` records (and the bundle's
    copy of the signatures, ``sigs``) do not hold: (sentence, requirement), or None."""
    problem = _authorization_problem(script, policy, rehearsal, authorization, sigs)
    if problem:
        return problem, SIGNED
    problem = _rollback_problem(script, rehearsal, rollback)
    return (problem, ROLLBACK) if problem else None


def _authorization_problem(script: Script, policy: Policy, rehearsal: bool, record: Any,
                           sigs: bytes | None) -> str | None:
    if not isinstance(record, dict) or set(record) != AUTHORIZATION_FIELDS:
        return "the script's authorization record is malformed"
    if record["policy"] != policy.authorization.record():
        return "the authorization record names another [authorization] than the policy's"
    status = record["status"]
    if status != VERIFIED:
        if (record["file"], record["file_sha256"], record["signatures"]) != (None, None, []):
            return f"an authorization record with status {status!r} lists signatures"
        if sigs is not None:
            return (f"the bundle holds {BUNDLE_SIGS_FILE}, but the transcript records no "
                    "authorization checked with it")
        if status == WAIVED:
            return None if rehearsal else "only a rehearsal may waive the script's " \
                                          "authorization"
        if status == NOT_REQUIRED:
            return "the policy requires a signed script, and none was checked" \
                if policy.authorization.required else None
        return f"unknown authorization status {status!r}"
    if record["file"] != BUNDLE_SIGS_FILE:
        return f"the authorization record must name {BUNDLE_SIGS_FILE}"
    if sigs is None:
        return (f"the bundle has no {BUNDLE_SIGS_FILE}, whose signatures the transcript says "
                "authorized the script")
    if sha256_hex(sigs) != record["file_sha256"]:
        return (f"{BUNDLE_SIGS_FILE} is not the file the ceremony checked (its SHA-256 "
                "differs from the transcript's)")
    try:
        signatures = check_signatures(script, policy,
                                      parse_signatures(sigs, BUNDLE_SIGS_FILE), BUNDLE_SIGS_FILE)
    except CeremonyError as exc:
        return exc.message
    problem = quorum_problem(script, policy, signatures)
    if problem:
        return problem
    if record["signatures"] != [s.summary() for s in signatures]:
        return f"the transcript lists other authorizations than {BUNDLE_SIGS_FILE} holds"
    return None


def _rollback_problem(script: Script, rehearsal: bool, record: Any) -> str | None:
    if not isinstance(record, dict) or set(record) != ROLLBACK_FIELDS:
        return "the rollback record is malformed"
    if (record["ceremony"], record["version"]) != (script.ceremony_id, script.version):
        return "the rollback record names another ceremony or version than the script's"
    last, head = record["last_version"], record["last_head"]
    if record["status"] == WAIVED:
        if not rehearsal:
            return "only a rehearsal may waive the rollback check"
        return None if (last, head) == (None, None) else \
            "a waived rollback check records no last version"
    if record["status"] != CHECKED:
        return f"unknown rollback status {record['status']!r}"
    if last is None:
        return None if head is None else "the rollback record has a head but no version"
    if type(last) is not int or not isinstance(head, str) or len(head) != 64 or \
            head.strip("0123456789abcdef"):
        return "the rollback record's last version or head is malformed"
    if last >= script.version:
        return (f"the script's version {script.version} is not newer than version {last}, "
                "which the state file said had already run")
    return None
