"""The environment attestation record, its waivers, and the gate before any secret exists.

``ceremony/attest.py`` looks at the machine (interfaces, routes, radios, media, the tool's
files, the OS image, the PKCS#11 module, Python, the clock) and returns one
:class:`CheckResult` per check. This module is pure: it applies waivers (a rehearsal's, or
the policy's with a quorum), turns the results into the record the engine writes into
``ceremony.started`` (:func:`attestation_record`), and refuses secret provisioning unless
that record passes (:func:`require_attested`). The engine and the verifier can both import
it: it reads no file and touches no device.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ceremony.errors import CheckFailed, QuorumError
from ceremony.model.strict import Fields

if TYPE_CHECKING:
    from ceremony.model.policy import Policy
    from ceremony.model.script import Script

RECORD_FORMAT = "ceremony-attestation/1"

NET = "CER-ATTEST-NET"
ROUTE = "CER-ATTEST-ROUTE"
RADIO = "CER-ATTEST-RADIO"
MEDIA = "CER-ATTEST-MEDIA"
TOOL = "CER-ATTEST-TOOL"
IMAGE = "CER-ATTEST-IMAGE"
MODULE = "CER-ATTEST-MODULE"
PYTHON = "CER-ATTEST-PYTHON"
CLOCK = "CER-ATTEST-CLOCK"
# The gate itself: no secret before a passing record (require_attested).
GATE = "CER-ATTEST"

# Every check, in the order they run and are shown; a record must hold each exactly once.
CHECKS: Mapping[str, str] = {
    NET: "network interfaces",
    ROUTE: "default routes",
    RADIO: "wireless and Bluetooth",
    MEDIA: "writable removable media",
    TOOL: "installed tool files",
    IMAGE: "operating system image",
    MODULE: "PKCS#11 module",
    PYTHON: "Python version",
    CLOCK: "clock",
}
NETWORK_CHECKS = (NET, ROUTE, RADIO)
# A rehearsal runs on an ordinary machine: it waives the network checks and the other
# checks of the machine itself (media, live image), and says so in every waived result.
REHEARSAL_WAIVES = (*NETWORK_CHECKS, MEDIA, IMAGE)
# Neither a policy nor a rehearsal waives a tool whose files differ from its signed
# manifest: a modified tool could fake every other result, waivers included. (A rehearsal
# does waive the check on a development tree that has no manifest at all: TOOL_UNSIGNED.)
NEVER_WAIVABLE = (TOOL,)
TOOL_UNSIGNED = "unsigned"

RESULTS = ("pass", "fail", "waived")


@dataclass(frozen=True)
class AttestationPolicy:
    """The policy's ``[attestation]`` table (all optional)."""

    # Checks the room may go on without, each with a waiver approved by waiver_quorum people.
    waivable: tuple[str, ...] = ()
    # Distinct approvals a waiver needs; 0 means the policy's quorum.min_approvals.
    waiver_quorum: int = 0
    # SHA-256 digests of the PKCS#11 modules the organization approved (empty: any, recorded).
    module_sha256: tuple[str, ...] = ()


def read_attestation(table: Fields | None, min_approvals: int) -> AttestationPolicy:
    """Strictly read the policy's ``[attestation]`` table (CER-STRICT-INPUT)."""
    if table is None:
        return AttestationPolicy()
    waivable = table.str_list("waivable", required=False, max_len=len(CHECKS), default=())
    for cid in waivable:
        if cid not in CHECKS:
            raise table.fail("waivable", f"{cid!r} is not an attestation check",
                             hint=f"use some of: {', '.join(CHECKS)}")
        if cid in NEVER_WAIVABLE:
            raise table.fail("waivable", f"{cid} ({CHECKS[cid]}) can never be waived: a "
                             "modified tool could fake every other check",
                             hint=f"remove {cid} from the list")
    quorum = table.integer("waiver_quorum", low=1, high=16, required=False,
                           default=min_approvals)
    if quorum < min_approvals:
        raise table.fail("waiver_quorum", f"{quorum} is below quorum.min_approvals "
                         f"({min_approvals}): a waiver needs at least the quorum of a "
                         "sensitive step")
    digests = table.str_list("module_sha256", required=False, default=())
    for digest in digests:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise table.fail("module_sha256", f"{digest!r} is not a lower-case hex SHA-256")
    table.done()
    return AttestationPolicy(tuple(waivable), quorum, tuple(digests))


class AttestationError(CheckFailed):
    """The environment did not pass attestation, so no secret may be provisioned (exit 1)."""


@dataclass(frozen=True)
class CheckResult:
    """One check: its requirement id, pass/fail/waived, one plain sentence, public facts."""

    id: str
    result: str
    sentence: str
    hint: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)
    # Why a failing result may be waived in a rehearsal beyond REHEARSAL_WAIVES (the tool
    # check sets "unsigned" for a development tree with no manifest).
    state: str = ""
    waived_by: str = ""  # "rehearsal" or "policy"
    approved_by: tuple[str, ...] = ()
    waiver_reason: str = ""
    # A policy waiver's signatures, as model/waivers.py records them (statement, signature).
    waiver_signatures: tuple[Mapping[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return CHECKS[self.id]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "check": self.name, "result": self.result,
                               "sentence": self.sentence, "facts": dict(self.facts)}
        if self.state:
            out["state"] = self.state
        if self.result == "fail" and self.hint:
            out["hint"] = self.hint
        if self.result == "waived":
            out["waived_by"] = self.waived_by
            if self.waived_by == "policy":
                out["approved_by"] = list(self.approved_by)
                out["reason"] = self.waiver_reason
                out["signatures"] = [dict(s) for s in self.waiver_signatures]
        return out


@dataclass(frozen=True)
class Waiver:
    """A failed check the people in the room agree to go on without.

    ``approved_by`` are the participants whose signed waivers were verified
    (model/waivers.py ``check_waivers``), ``signatures`` those signatures as the record
    keeps them; this module counts distinct ids against the policy's waiver quorum.
    """

    check_id: str
    approved_by: tuple[str, ...]
    reason: str
    signatures: tuple[Mapping[str, Any], ...] = ()


def waiver_quorum(policy: Policy) -> int:
    """How many distinct approvals a policy waiver needs: [attestation] waiver_quorum."""
    return policy.attestation.waiver_quorum or policy.min_approvals


def rehearsal_may_waive(check_id: str, state: str) -> bool:
    return check_id in REHEARSAL_WAIVES or (check_id == TOOL and state == TOOL_UNSIGNED)


def apply_waivers(results: Iterable[CheckResult], policy: Policy | None, *, rehearsal: bool,
                  waivers: Sequence[Waiver] = ()) -> tuple[CheckResult, ...]:
    """The results with failed checks waived: by a rehearsal, or by the policy and a quorum.

    A waiver for a check the policy does not list, or with fewer distinct approvals than
    the policy's waiver quorum, is refused with an error rather than ignored.
    """
    out = list(results)
    by_id = {r.id: i for i, r in enumerate(out)}
    for waiver in waivers:
        if waiver.check_id not in CHECKS:
            raise AttestationError(f"{waiver.check_id} is not an attestation check",
                                   hint=f"checks: {', '.join(CHECKS)}", requirement=GATE)
        if policy is None or waiver.check_id in NEVER_WAIVABLE or \
                waiver.check_id not in policy.attestation.waivable:
            name = f"policy {policy.policy_id!r}" if policy else "no policy"
            raise AttestationError(f"{name} does not allow waiving "
                                   f"{waiver.check_id} ({CHECKS[waiver.check_id]})",
                                   hint="fix the machine and attest again",
                                   requirement=waiver.check_id)
        need = waiver_quorum(policy)
        have = tuple(dict.fromkeys(waiver.approved_by))
        if len(have) < need:
            raise QuorumError(f"waiving {waiver.check_id} needs {need} approvals by policy, "
                              f"not {len(have)} ({', '.join(have) or 'none'})",
                              hint="collect the signatures the policy names with `ceremony "
                              "waiver sign`, or fix the machine", requirement=waiver.check_id)
        if not waiver.reason.strip():
            raise AttestationError(f"the waiver of {waiver.check_id} gives no reason",
                                   hint="write down why the room goes on", requirement=GATE)
        i = by_id.get(waiver.check_id)
        if i is not None and out[i].result == "fail":
            out[i] = replace(out[i], result="waived", waived_by="policy", approved_by=have,
                             waiver_reason=waiver.reason,
                             waiver_signatures=waiver.signatures)
    if rehearsal:
        for i, r in enumerate(out):
            if r.result == "fail" and rehearsal_may_waive(r.id, r.state):
                out[i] = replace(out[i], result="waived", waived_by="rehearsal",
                                 sentence=f"{r.sentence} (waived: this is a rehearsal)")
    return tuple(out)


def attestation_record(results: Iterable[CheckResult], *, rehearsal: bool) -> dict[str, Any]:
    """The public record of an attestation, for ``ceremony.started`` (canonical JSON safe).

    Holds every check's id, result and sentence and the facts it saw (interface names,
    digests, versions; never a secret); ``passed`` is false when any check failed;
    ``waived`` lists the waived ids, to be printed on every page of the transcript.
    """
    checks = [r.as_dict() for r in results]
    return {
        "format": RECORD_FORMAT,
        "rehearsal": rehearsal,
        "checks": checks,
        "passed": all(c["result"] != "fail" for c in checks),
        "waived": [c["id"] for c in checks if c["result"] == "waived"],
    }


RECORD_FIELDS = frozenset({"format", "rehearsal", "checks", "passed", "waived"})


def require_attested(record: Mapping[str, Any] | None, policy: Policy,
                     rehearsal: bool, *, script: Script | None = None,
                     at: str | None = None) -> None:
    """Refuse secret provisioning unless ``record`` shows an environment that passed.

    Fails closed: no record, a record of another format or mode, a missing or repeated
    check, a failed check, or a waiver the record cannot justify (a rehearsal waiver
    outside a rehearsal or of a check a rehearsal does not waive; a policy waiver of a
    check the policy does not list, or with fewer approvals than its waiver quorum) each
    raise :class:`AttestationError` naming the check's requirement id. With ``script`` (the
    engine and the verifier), a policy waiver's signatures are checked too, as made within
    the day before ``at`` (the attestation's time) for this ceremony and script
    (model/waivers.py ``recorded_waiver_problem``).
    """
    def refuse(message: str, requirement: str = GATE, hint: str = "") -> AttestationError:
        return AttestationError(f"secret provisioning refused: {message}",
                                hint=hint or "run `ceremony attest` on the workstation, fix "
                                "what it names, and start again", requirement=requirement)

    if not record:
        raise refuse("the environment was not attested")
    if record.get("format") != RECORD_FORMAT:
        raise refuse(f"the attestation record is not of format {RECORD_FORMAT}")
    if set(record) != RECORD_FIELDS:
        raise refuse("the attestation record has members other than "
                     f"{', '.join(sorted(RECORD_FIELDS))}")
    if record.get("rehearsal") is not rehearsal:
        raise refuse("the attestation was made for a "
                     f"{'rehearsal' if record.get('rehearsal') else 'real ceremony'}, "
                     f"not for this {'rehearsal' if rehearsal else 'ceremony'}")
    checks = record.get("checks")
    if not isinstance(checks, list) or not checks:
        raise refuse("the attestation record holds no checks")
    seen: dict[str, Mapping[str, Any]] = {}
    for check in checks:
        cid = check.get("id") if isinstance(check, Mapping) else None
        if not isinstance(cid, str) or cid not in CHECKS or cid in seen:
            raise refuse(f"the attestation record holds an unknown or repeated check {cid!r}")
        seen[cid] = check
    missing = [cid for cid in CHECKS if cid not in seen]
    if missing:
        raise refuse(f"the attestation record lacks {', '.join(missing)}", missing[0])
    for cid, check in seen.items():
        result = check.get("result")
        if result == "pass":
            continue
        if result == "fail":
            raise refuse(f"{CHECKS[cid]}: {check.get('sentence', 'failed')}", cid,
                         str(check.get("hint", "")))
        if result != "waived":
            raise refuse(f"{cid} has no pass, fail or waived result", cid)
        by = check.get("waived_by")
        if by == "rehearsal":
            if not rehearsal or not rehearsal_may_waive(cid, str(check.get("state", ""))):
                raise refuse(f"{cid} ({CHECKS[cid]}) is waived as for a rehearsal", cid)
        elif by == "policy":
            approved = check.get("approved_by")
            count = len(set(approved)) if isinstance(approved, list) else 0
            if cid in NEVER_WAIVABLE or cid not in policy.attestation.waivable:
                raise refuse(f"policy {policy.policy_id!r} does not allow waiving {cid} "
                             f"({CHECKS[cid]})", cid)
            if count < waiver_quorum(policy):
                raise refuse(f"the waiver of {cid} has {count} approvals, the policy needs "
                             f"{waiver_quorum(policy)}", cid)
            if script is not None:
                from ceremony.model.waivers import recorded_waiver_problem

                if at is None:
                    raise ValueError("checking a waiver's signatures needs the time")
                problem = recorded_waiver_problem(script, policy, check, at=at)
                if problem:
                    raise refuse(problem[0], problem[1])
        else:
            raise refuse(f"{cid} is waived without saying by whom", cid)
    waived = [cid for cid in seen if seen[cid].get("result") == "waived"]
    if record.get("passed") is not True or record.get("waived") != waived:
        raise refuse("the attestation record's passed and waived members do not match its "
                     "checks")


def policy_waived(record: Mapping[str, Any] | None) -> bool:
    """Whether ``record`` holds a policy waiver (whose signatures need a time to check)."""
    checks = record.get("checks") if isinstance(record, Mapping) else None
    return isinstance(checks, list) and any(
        isinstance(c, Mapping) and c.get("waived_by") == "policy" for c in checks)


def attestation_problem(record: Any, policy: Policy, rehearsal: bool, *, script: Script,
                        at: str) -> tuple[str, str] | None:
    """Why ``record`` does not allow provisioning: (sentence, requirement id), or None."""
    try:
        require_attested(record if isinstance(record, Mapping) else None, policy, rehearsal,
                         script=script, at=at)
    except AttestationError as exc:
        return exc.message.removeprefix("secret provisioning refused: "), exc.requirement
    return None
