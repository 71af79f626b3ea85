"""Signed waivers of failed attestation checks (ADR 19, docs/workstation-guide.md).

When a check fails and the policy's ``[attestation] waivable`` lists it, the room may go on
only if ``waiver_quorum`` of the script's authorizers (the participants whose role the
policy's ``[authorization] roles`` names, custodians by default) each sign a waiver: a
canonical statement (``ceremony.attestation-waiver.v1``) binding the ceremony id, the
script's SHA-256, the check's id, the reason and the time, signed with the identity key the
script lists for them (their card; a key file in a rehearsal). The signatures are
collected one at a time with `ceremony waiver sign` into ``SCRIPT.waivers`` beside the
script, one canonical JSON line each (the form of ``SCRIPT.sigs``). Before a ceremony
starts the front end reads the file; :func:`check_waivers` refuses it whole, naming the
line, if any signature is for another ceremony or script, a check the policy does not let
anyone waive, by someone who may not waive, or does not verify. The waived check's result
in the attestation record carries its signatures, so the engine (``require_attested``) and
the verifier check them again from the transcript alone (:func:`recorded_waiver_problem`).

Pure: shared by the CLI, the engine and the verifier.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ceremony.canonical import CanonicalError, parse_strict
from ceremony.errors import InputError
from ceremony.model import statements as st
from ceremony.model.attestation import CHECKS, GATE, NEVER_WAIVABLE, AttestationError, Waiver
from ceremony.transcript import check_time, parse_time

if TYPE_CHECKING:
    from ceremony.model.policy import Policy
    from ceremony.model.script import Script

WAIVER = "ceremony.attestation-waiver.v1"
WAIVERS_SUFFIX = ".waivers"  # SCRIPT.waivers beside SCRIPT
# A waiver is signed on the day: one older than this when the ceremony starts (or resumes)
# is refused, so an old waiver cannot be kept for a later run of the same script.
MAX_AGE = timedelta(hours=24)
# A signature time may run this far ahead of the workstation's clock (signers' clocks).
SKEW = timedelta(minutes=5)
MAX_REASON = 100  # characters: the reason is printed on every page of the transcript
LINE_FIELDS = frozenset({"signature", "statement"})
STATEMENT_FIELDS = frozenset({"type", "ceremony", "script_sha256", "check", "reason",
                              "participant", "role", "time"})
FORMAT_HINT = ("each line is one waiver signature as `ceremony waiver sign` writes it "
               "(docs/workstation-guide.md)")


class WaiversFileError(InputError):
    """A .waivers file is malformed (exit 2)."""


def waiver_statement(*, ceremony: str, script_sha256: str, check: str, reason: str,
                     participant: str, role: str, time: str) -> dict[str, Any]:
    """What one signer of a waiver signs."""
    return {"type": WAIVER, "ceremony": ceremony, "script_sha256": script_sha256,
            "check": check, "reason": reason, "participant": participant, "role": role,
            "time": time}


def statement_for(script: Script, check: str, reason: str, participant: str, role: str,
                  time: str) -> dict[str, Any]:
    return waiver_statement(ceremony=script.ceremony_id, script_sha256=script.sha256,
                            check=check, reason=reason, participant=participant, role=role,
                            time=time)


@dataclass(frozen=True)
class SignedWaiver(st.SignedLine):
    """One signature of a waiver, as read from line ``line`` of a .waivers file."""

    @property
    def check(self) -> str:
        return str(self.statement["check"])

    def as_record(self) -> dict[str, Any]:
        """How the attestation record keeps it: the statement and the signature."""
        return {"signature": st.b64(self.signature), "statement": self.statement}


signature_line = st.signed_line  # one line of a .waivers file


def parse_waivers(data: bytes, name: str) -> list[SignedWaiver]:
    """Strictly parse a .waivers file: one canonical JSON object a line (exit 2 otherwise)."""
    if data and not data.endswith(b"\n"):
        raise WaiversFileError("the last line is not terminated (a torn write?)", file=name,
                               line=data.count(b"\n") + 1, hint=FORMAT_HINT)
    out = []
    for number, raw in enumerate(data.split(b"\n")[:-1], start=1):
        try:
            value = parse_strict(raw)
        except CanonicalError as exc:
            raise WaiversFileError(f"is not one canonical JSON object ({exc})", file=name,
                                   line=number, hint=FORMAT_HINT) from None
        problem = _line_problem(value)
        if problem:
            raise WaiversFileError(problem, file=name, line=number, hint=FORMAT_HINT)
        out.append(SignedWaiver(number, value["statement"], st.unb64(value["signature"])))
    return out


def _line_problem(value: Any) -> str | None:
    """Why a line (or a recorded signature) is not a well-formed waiver signature."""
    if not isinstance(value, dict) or set(value) != LINE_FIELDS:
        return "must be an object with exactly the members signature and statement"
    statement = value["statement"]
    if not isinstance(statement, dict) or set(statement) != STATEMENT_FIELDS:
        return f"the statement must have exactly the members {', '.join(sorted(STATEMENT_FIELDS))}"
    if statement["type"] != WAIVER:
        return f"the statement's type is not {WAIVER}"
    if not all(isinstance(v, str) for v in statement.values()):
        return "every member of the statement must be a string"
    if not statement["reason"].strip() or len(statement["reason"]) > MAX_REASON:
        return (f"the reason must be 1 to {MAX_REASON} characters (it is printed on every "
                "page of the transcript)")
    try:
        check_time(statement["time"])
    except ValueError as exc:
        return f"the statement's time is malformed ({exc})"
    text = value["signature"]
    try:
        signature = st.unb64(text) if isinstance(text, str) else b""
    except (binascii.Error, ValueError):
        signature = b""
    if len(signature) != 64 or st.b64(signature) != text:
        return "the signature is not 64 bytes in canonical base64"
    return None


def waiver_roles(policy: Policy) -> tuple[str, ...]:
    """Who may sign a waiver: the roles that authorize scripts ([authorization] roles)."""
    return policy.authorization.roles


def _signature_problem(script: Script, policy: Policy, statement: Mapping[str, Any],
                       signature: bytes, *, at: str) -> tuple[str, str] | None:
    """Why one waiver signature does not hold for ``script`` at time ``at``:
    (sentence, requirement), or None."""
    who, check = str(statement["participant"]), str(statement["check"])
    if statement["ceremony"] != script.ceremony_id or \
            statement["script_sha256"] != script.sha256:
        return (f"{who}'s waiver of {check} was signed for ceremony "
                f"{statement['ceremony']} (script SHA-256 "
                f"{str(statement['script_sha256'])[:16]}...), not for this one "
                f"(ceremony {script.ceremony_id}, script SHA-256 {script.sha256[:16]}...): "
                "a waiver cannot be carried over from another ceremony or script", GATE)
    if check not in CHECKS:
        return f"{who}'s waiver names {check!r}, which is not an attestation check", GATE
    if check in NEVER_WAIVABLE or check not in policy.attestation.waivable:
        return (f"policy {policy.policy_id!r} does not allow waiving {check} "
                f"({CHECKS[check]})", check)
    participant = script.participant(who)
    if participant is None or participant.role not in waiver_roles(policy):
        roles = ", ".join(f"{r}s" for r in waiver_roles(policy))
        return (f"{who!r} may not sign a waiver of {check}: only the script's {roles} "
                "(the policy's [authorization] roles) may", GATE)
    if statement["role"] != participant.role:
        return (f"{who}'s waiver of {check} names the role {statement['role']!r}, but the "
                f"script makes them a {participant.role}", GATE)
    signed, moment = parse_time(str(statement["time"])), parse_time(at)
    if signed > moment + SKEW or signed < moment - MAX_AGE:
        return (f"{who}'s waiver of {check} was signed at {statement['time']}, not within "
                f"the {int(MAX_AGE.total_seconds() // 3600)} hours before the attestation "
                f"at {at}", GATE)
    if not st.verify_ed25519(participant.public_key_bytes, signature, st.message(
            dict(statement))):
        return (f"{who}'s signature on the waiver of {check} does not verify with their "
                "identity key", GATE)
    return None


def check_waivers(script: Script, policy: Policy, signed: list[SignedWaiver], name: str,
                  *, at: str) -> tuple[Waiver, ...]:
    """The waivers a .waivers file proves, one per check; refuse the file if a line fails.

    Every signature must bind this ceremony and script, a check the policy lets a quorum
    waive, a signer whose role may waive, the signer's role, a time within MAX_AGE before
    ``at``, and verify with the signer's identity key; the signatures of one check must
    give the same reason and be by distinct people. The quorum is counted later, against
    the failures (``apply_waivers``).
    """
    by_check: dict[str, list[SignedWaiver]] = {}
    for sig in signed:
        problem = _signature_problem(script, policy, sig.statement, sig.signature, at=at)
        if problem:
            raise AttestationError(f"{name}:{sig.line}: {problem[0]}",
                                   hint="remove that line; each waiver is signed for this "
                                        "ceremony's script on the day", requirement=problem[1])
        same = by_check.setdefault(sig.check, [])
        if same and same[0].statement["reason"] != sig.statement["reason"]:
            raise AttestationError(f"{name}:{sig.line}: {sig.participant}'s waiver of "
                                   f"{sig.check} gives another reason than line "
                                   f"{same[0].line}", hint="every signer of a waiver signs "
                                   "the same reason, word for word", requirement=GATE)
        if any(s.participant == sig.participant for s in same):
            raise AttestationError(f"{name}:{sig.line}: {sig.participant} signed the waiver "
                                   f"of {sig.check} twice", hint="keep one of the two lines",
                                   requirement=GATE)
        same.append(sig)
    return tuple(Waiver(check, tuple(s.participant for s in sigs),
                        str(sigs[0].statement["reason"]),
                        tuple(s.as_record() for s in sigs))
                 for check, sigs in by_check.items())


def recorded_waiver_problem(script: Script, policy: Policy, check: Mapping[str, Any], *,
                            at: str) -> tuple[str, str] | None:
    """Why a policy-waived check in an attestation record does not hold, or None.

    Checks what the record's ``signatures`` prove from the script alone: each well formed,
    for this check and reason, by a distinct signer who may waive, verifying with their
    identity key, at least the policy's waiver quorum of them, and ``approved_by`` naming
    exactly them.
    """
    from ceremony.model.attestation import waiver_quorum

    cid = str(check.get("id"))
    signatures = check.get("signatures")
    if not isinstance(signatures, list):
        return f"the waiver of {cid} carries no signatures", cid
    signers: list[str] = []
    for value in signatures:
        problem = _line_problem(value)
        if problem:
            return f"a signature on the waiver of {cid} is malformed: {problem}", cid
        statement = value["statement"]
        if statement["check"] != cid or statement["reason"] != check.get("reason"):
            return (f"a signature recorded for the waiver of {cid} is over another check or "
                    "reason", cid)
        found = _signature_problem(script, policy, statement, st.unb64(value["signature"]),
                                   at=at)
        if found:
            return found
        if statement["participant"] in signers:
            return f"{statement['participant']} is counted twice in the waiver of {cid}", cid
        signers.append(str(statement["participant"]))
    if check.get("approved_by") != signers:
        return f"the waiver of {cid} names other approvers than its signatures", cid
    need = waiver_quorum(policy)
    if len(signers) < need:
        return (f"the waiver of {cid} has {len(signers)} valid signatures, the policy needs "
                f"{need}", cid)
    return None

