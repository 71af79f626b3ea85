"""`ceremony attest` and `ceremony selftest`: the workstation and the tool, checked.

Exit 0 when every check passes (or is waived by a rehearsal), 1 when any fails; the exit
codes stay owned by cli/main.py (these return its values).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ceremony.errors import Kind, UsageError

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
