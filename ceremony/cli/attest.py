"""`ceremony attest`, `ceremony selftest` and `ceremony waiver sign`; the attestation
every ceremony front end runs before the engine starts (:func:`attest_ceremony`).

Exit 0 when every check passes (or is waived by a rehearsal), 1 when any fails; the exit
codes stay owned by cli/main.py (these return its values).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceremony.cli.script import add_token_arguments
from ceremony.durable import write_atomically
from ceremony.errors import CheckFailed, Kind, UsageError

if TYPE_CHECKING:
    from ceremony.model.policy import Policy
    from ceremony.model.script import Script

EXIT_OK = 0


def _digest(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex SHA-256 (64 hex digits)")
    return value


def add_parsers(sub: Any) -> None:
    """Add the `attest` and `selftest` sub-commands to the `ceremony` parser."""
    p = sub.add_parser("attest", help="check this workstation before any secret exists: "
                       "no network, radios or writable removable media, the tool's files "
                       "against its signed manifest, the live image, the PKCS#11 module, "
                       "Python and the clock (exit 1 if a check fails)")
    p.add_argument("--json", action="store_true", help="print the attestation record as "
                   "JSON (what a ceremony writes into ceremony.started)")
    p.add_argument("--manifest", type=Path, help="the signed manifest to check the installed "
                   "tool against (default: the one installed with it)")
    p.add_argument("--module", help="the PKCS#11 module to hash (default: "
                   "$CEREMONY_PKCS11_MODULE or SoftHSM2's)")
    p.add_argument("--module-sha256", type=_digest, action="append", default=[],
                   help="a SHA-256 the module must have (repeatable; the policy's "
                   "[attestation] module_sha256 are added)")
    p.add_argument("--image-sha256", type=_digest, help="the image digest read aloud before "
                   "the day: the live medium must have it")
    p.add_argument("--policy", type=Path, help="the ceremony's policy: says which failed "
                   "checks it lets a quorum waive, and pins module digests")
    p.add_argument("--rehearsal", action="store_true", help="attest for a rehearsal: the "
                   "network and machine checks are waived, and say so")

    _add_waiver_parser(sub)

    p = sub.add_parser("selftest", help="check the installed tool against its signed "
                       "manifest (naming any modified file) and run the known-answer tests "
                       "(exit 1 if any fails)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--manifest", type=Path, help="the signed manifest (default: the "
                   "installed one)")


def cmd_attest(args: argparse.Namespace) -> int:
    from ceremony.attest import Environment, render, run_checks
    from ceremony.model.attestation import apply_waivers, attestation_record

    policy = None
    if args.policy is not None:
        from ceremony.model.policy import load_policy

        policy = load_policy(args.policy)
    pinned = tuple(args.module_sha256) + (policy.attestation.module_sha256 if policy else ())
    if args.manifest is not None and not args.manifest.is_file():
        raise UsageError(f"the manifest {args.manifest} does not exist",
                         hint="give the MANIFEST.json of the release")
    env = Environment(manifest=args.manifest, module=args.module, module_sha256=pinned,
                      image_sha256=args.image_sha256)
    results = apply_waivers(run_checks(env), policy, rehearsal=args.rehearsal)
    record = attestation_record(results, rehearsal=args.rehearsal)
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        print(render(results))
        failed = [r.id for r in results if r.result == "fail"]
        if failed and policy is not None:
            waivable = [cid for cid in failed if cid in policy.attestation.waivable]
            if waivable:
                print(f"policy {policy.policy_id!r} lets a quorum waive: {', '.join(waivable)}")
        verdict = "FAILED: no secret may be provisioned" if failed else "passed"
        waived = f" ({len(record['waived'])} waived)" if record["waived"] else ""
        print(f"attestation {verdict}{waived}")
    return EXIT_OK if record["passed"] else Kind.CHECK_FAILED.value


def cmd_selftest(args: argparse.Namespace) -> int:
    from ceremony.selftest import run_selftest

    if args.manifest is not None and not args.manifest.is_file():
        raise UsageError(f"the manifest {args.manifest} does not exist",
                         hint="give the MANIFEST.json of the release")
    results = run_selftest(manifest=args.manifest)
    ok = all(t.ok for t in results)
    if args.json:
        print(json.dumps({"passed": ok, "tests": [t.as_dict() for t in results]}, indent=2))
    else:
        for t in results:
            print(f"[{'pass' if t.ok else 'fail':<4}] {t.id:<15}  {t.sentence}")
        print("selftest passed" if ok else "selftest FAILED")
    return EXIT_OK if ok else Kind.CHECK_FAILED.value


# ------------------------------------------------------------------ waivers


def _add_waiver_parser(sub: Any) -> None:
    waiver = sub.add_parser("waiver", help="sign the waiver of a failed attestation check "
                            "that the policy lets a quorum waive").add_subparsers(
        dest="waiver_command", required=True, parser_class=sub._parser_class)
    p = waiver.add_parser("sign", help="sign, as one of the script's authorizers, the waiver "
                          "of one check for this ceremony's script; the signature is appended "
                          "to SCRIPT.waivers, which `run` and `recover` read")
    p.add_argument("script", type=Path)
    p.add_argument("--check", required=True, metavar="ID", help="the failed check's id "
                   "(CER-ATTEST-...), one the policy's [attestation] waivable lists")
    p.add_argument("--reason", required=True, help="why the room goes on without it (every "
                   "signer signs the same words)")
    p.add_argument("--as", dest="participant", required=True, metavar="PARTICIPANT",
                   help="the signer (a participant id of the script)")
    p.add_argument("--card", action="store_true", help="sign with the participant's "
                   "OpenPGP card (its PIN is asked for, or read from --pin-file)")
    p.add_argument("--reader", help="PC/SC reader name, for --card")
    p.add_argument("--pin-file", type=Path, help="file holding the card's or token's PIN, "
                   "for --card or --token")
    add_token_arguments(p)
    p.add_argument("--key", type=Path, help="sign with a rehearsal identity key file "
                   "(needs --rehearsal)")
    p.add_argument("--rehearsal", action="store_true", help="allow a plain identity key "
                   "file (--key); such a waiver is for rehearsals only")
    p.add_argument("--policy", type=Path, help="policy file (default: the script's "
                   "policy.path, relative to the script)")


def waivers_path(script_path: Path) -> Path:
    """SCRIPT.waivers: the signed waivers beside the script."""
    from ceremony.model.waivers import WAIVERS_SUFFIX

    return script_path.with_name(script_path.name + WAIVERS_SUFFIX)


def _now_text() -> str:
    from ceremony.adapters.system import SystemClock
    from ceremony.transcript import format_time

    return format_time(SystemClock().now())


def cmd_waiver(args: argparse.Namespace, load: Any) -> int:
    """`ceremony waiver sign`: exit 0 signed; 1 refused (a check the policy does not let
    anyone waive, a signer who may not, a file holding a bad line); 2 bad usage; 3 card."""
    from ceremony.canonical import digest
    from ceremony.cli.script import _signer
    from ceremony.model import statements as st
    from ceremony.model.attestation import CHECKS, GATE, NEVER_WAIVABLE, waiver_quorum
    from ceremony.model.waivers import (
        MAX_REASON,
        check_waivers,
        parse_waivers,
        signature_line,
        statement_for,
        waiver_roles,
    )

    script, policy, _, _ = load(args.script, args.policy)
    if args.check not in CHECKS:
        raise UsageError(f"{args.check!r} is not an attestation check",
                         hint=f"the checks: {', '.join(CHECKS)}")
    if args.check in NEVER_WAIVABLE or args.check not in policy.attestation.waivable:
        listed = ", ".join(policy.attestation.waivable) or "none"
        raise CheckFailed(f"policy {policy.policy_id!r} does not allow waiving {args.check} "
                          f"({CHECKS[args.check]}); it lets a quorum waive: {listed}",
                          hint="fix the machine and attest again", requirement=args.check)
    participant = script.participant(args.participant)
    if participant is None or participant.role not in waiver_roles(policy):
        who = ", ".join(p.id for p in script.participants if p.role in waiver_roles(policy))
        raise CheckFailed(f"{args.participant!r} may not sign a waiver of script "
                          f"{script.ceremony_id}", hint=f"the signers are {who}",
                          requirement=GATE)
    reason = " ".join(args.reason.split())
    if not reason or len(reason) > MAX_REASON:
        raise UsageError(f"the --reason must be 1 to {MAX_REASON} characters",
                         hint="say in a few words why the room goes on (it is printed on "
                              "every page of the transcript)")
    path = waivers_path(args.script)
    existing = path.read_bytes() if path.is_file() else b""
    now = _now_text()
    found = check_waivers(script, policy, parse_waivers(existing, str(path)), str(path), at=now)
    for waiver in found:
        if waiver.check_id == args.check and participant.id in waiver.approved_by:
            raise UsageError(f"{participant.id} has already signed the waiver of "
                             f"{args.check} in {path}", hint="each signer signs once")
    signer = _signer(args, participant.id, participant.public_key, participant.public_key_bytes)
    statement = statement_for(script, args.check, reason, participant.id, participant.role,
                              now)
    signature = signer.sign(st.message(statement))
    if not st.verify_ed25519(participant.public_key_bytes, signature, st.message(statement)):
        raise CheckFailed(f"the signature does not verify with {participant.id}'s identity key",
                          hint="the card or key is faulty; do not use it", requirement=GATE)
    data = existing + signature_line(statement, signature)
    found = check_waivers(script, policy, parse_waivers(data, str(path)), str(path), at=now)
    write_atomically(path, data)
    have = next(w for w in found if w.check_id == args.check).approved_by
    need = waiver_quorum(policy)
    print(f"{participant.id} ({participant.role}) signed the waiver of {args.check} "
          f"({CHECKS[args.check]}) for ceremony {script.ceremony_id} version "
          f"{script.version}\n"
          f"  reason: {reason}\n"
          f"  statement SHA-256: {digest(statement)}\n"
          f"  {path}: {len(have)} of the {need} signatures policy {policy.policy_id!r} "
          f"needs ({', '.join(have)})" + ("; the check may be waived" if len(have) >= need
                                          else ""))
    return EXIT_OK


def resume_rehearsal(out: Path, rehearsal: bool, resume: bool) -> bool:
    """Whether to attest for a rehearsal: on a resume, as the transcript's start says."""
    from ceremony.errors import CeremonyError
    from ceremony.transcript import parse_lines

    path = out / "transcript.jsonl"
    if not resume or not path.is_file():
        return rehearsal
    try:
        lines = parse_lines(path.read_bytes(), str(path))
    except CeremonyError:
        return rehearsal  # (the engine refuses the resume and says why)
    return bool(lines and lines[0].entry.payload.get("rehearsal") is True)


def attest_ceremony(script_path: Path | None, script: Script, policy: Policy, *,
                    rehearsal: bool, module: str | None,
                    say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Attest this workstation for a ceremony: the record the engine gets (CER-ATTEST).

    Runs every check (ceremony/attest.py) against the ceremony's PKCS#11 module and the
    policy's pins, applies the signed waivers in SCRIPT.waivers (if there is one) and the
    rehearsal's, and refuses now, before any token is opened or PIN read, unless the
    record passes: the failed checks are listed on stderr, each with its id and sentence,
    and the error names the first. The engine checks the record again when it starts, and
    before any secret exists. ``say`` (if given) gets a one-line summary when it passes.
    """
    from ceremony.attest import Environment, render, run_checks
    from ceremony.model.attestation import (
        AttestationError,
        apply_waivers,
        attestation_record,
        require_attested,
    )
    from ceremony.model.waivers import check_waivers, parse_waivers

    now = _now_text()
    waivers: tuple[Any, ...] = ()
    path = waivers_path(script_path) if script_path is not None else None
    if path is not None and path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
        waivers = check_waivers(script, policy, parse_waivers(data, str(path)), str(path),
                                at=now)
    env = Environment(module=module, module_sha256=policy.attestation.module_sha256)
    results = apply_waivers(run_checks(env), policy, rehearsal=rehearsal, waivers=waivers)
    record = attestation_record(results, rehearsal=rehearsal)
    try:
        require_attested(record, policy, rehearsal, script=script, at=now)
    except AttestationError:
        failed = [r for r in results if r.result == "fail"]
        if failed:
            print(render(failed), file=sys.stderr)
        raise
    waived = [f"{c['id']} ({c['waived_by']})" for c in record["checks"]
              if c["result"] == "waived"]
    if say is not None:
        say(f"environment attested: {len(results) - len(waived)} of {len(results)} checks "
            "passed" + (f", waived: {', '.join(waived)}" if waived else ""))
    return record
