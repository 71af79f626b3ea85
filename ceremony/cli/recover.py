"""`ceremony recover`: rebuild a root key from a quorum of shares into a new token.

A recovery is a ceremony of its own (a script with a ``[recovery]`` table and a
``recover_root_key`` step; docs/recovery-guide.md). The original bundle is verified first,
before any token is opened or any share asked for; the token is logged in to exactly as
``ceremony run`` does (cli/login.py); the answers file says who approves and, under
``[[shares]]``, which custodian presents which share file. Exit codes are main.py's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ceremony.errors import UsageError

EXIT_OK = 0


def add_parser(sub: Any) -> None:
    """The `recover` subcommand's arguments."""
    p = sub.add_parser("recover", help="rebuild a root key from its custodians' shares into "
                       "a new token, as a ceremony of its own (headless with --headless "
                       "--answers)")
    p.add_argument("script", type=Path, help="the recovery script (with a [recovery] table "
                   "and a recover_root_key step)")
    p.add_argument("--original", type=Path, help="the bundle of the ceremony that made the "
                   "root key and its shares (verified before anything else)")
    p.add_argument("--out", type=Path, required=True, help="the recovery's bundle directory")
    p.add_argument("--policy", type=Path)
    p.add_argument("--headless", action="store_true", help="no UI: approvals and shares come "
                   "from the answers file")
    p.add_argument("--answers", type=Path, help="answers file for --headless: approvals, "
                   "the typed phrases and, under [[shares]], each custodian's share file")
    p.add_argument("--resume", action="store_true", help="continue the unfinished recovery "
                   "recorded in --out (its copy of the original is used)")
    p.add_argument("--rehearsal", action="store_true", help="mark this recovery a rehearsal "
                   "(allows plain identity key files; required for a rehearsal's key)")
    p.add_argument("--module", help="PKCS#11 module path (default: the script's token.module)")
    p.add_argument("--token", help="PKCS#11 URI of the new token (default: the script's "
                   "token.uri)")
    p.add_argument("--pin-file", type=Path, help="file holding the new token's user PIN, "
                   "for a known-PIN token")
    p.add_argument("--pin-share", type=Path, action="append", default=[],
                   help="a crypto officer's PIN share sheet of the new token, for a "
                   "split-knowledge token (repeat for each officer present)")


def cmd_recover(args: argparse.Namespace, load: Any) -> int:
    """Verify the original, log in to the new token, run the recovery headless, seal it."""
    from ceremony.engine.recovery import ORIGINAL_DIR, load_original

    script, policy, script_bytes, policy_bytes = load(args.script, args.policy)
    if script.recovery is None:
        raise UsageError(f"{args.script} is not a recovery script: it has no [recovery] "
                         "table", hint="see docs/recovery-guide.md, or `ceremony sample DIR` "
                         "for recovery.toml")
    if not args.headless:
        raise UsageError("the recovery UI is not there yet; use --headless",
                         hint="ceremony recover SCRIPT --original BUNDLE --out DIR "
                              "--headless --answers FILE")
    if args.answers is None:
        raise UsageError("--headless needs --answers FILE")
    # The original first: nothing is opened and no share is read before it verifies.
    if args.resume:
        original = load_original(args.out / ORIGINAL_DIR)
        if args.original is not None and \
                load_original(args.original).record != original.record:
            raise UsageError(f"{args.original} is not the original the unfinished recovery "
                             f"in {args.out} started with", requirement="CER-RECOVERY")
    elif args.original is None:
        raise UsageError(f"the script recovers ceremony {script.recovery.ceremony}: give its "
                         "bundle with --original BUNDLE", requirement="CER-RECOVERY")
    else:
        original = load_original(args.original)
    if args.out.resolve().is_relative_to(original.path.resolve()):
        raise UsageError("--out must not be inside the original bundle")
    print(f"original: ceremony {original.record.ceremony_id} verified; root key fingerprint "
          f"{original.record.fingerprint}")
    if not args.resume:  # (a resume checks with the rehearsal flag it recorded)
        from ceremony.errors import CheckFailed
        from ceremony.model.recovery import recovery_problem

        problem = recovery_problem(script, original.record, rehearsal=args.rehearsal)
        if problem:
            raise CheckFailed(f"{problem}; nothing was written", hint="the [recovery] table, "
                              "[root_key] and [shares] of the script must name the original "
                              f"bundle {original.path} (docs/recovery-guide.md)",
                              requirement="CER-RECOVERY")

    from ceremony.adapters.identity import KeyFileSigner
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.adapters.qrcodes import BundleCodes
    from ceremony.adapters.slip39 import Slip39Splitter
    from ceremony.adapters.system import OsRandomness, SystemClock
    from ceremony.cli.login import open_token
    from ceremony.engine.core import Devices, Engine
    from ceremony.engine.recovery import NoSecretOutput
    from ceremony.headless import run_headless
    from ceremony.model.answers import load_answers

    answers = load_answers(args.answers, script)
    if answers.identities and not args.rehearsal:
        raise UsageError("plain identity key files are allowed only in a rehearsal",
                         hint="add --rehearsal, or approve with custodian cards",
                         requirement="CER-IDENTITY")
    signers = {pid: KeyFileSigner.load(pid, path) for pid, path in answers.identities.items()}
    uri = args.token or script.token.uri
    if uri is None:
        raise UsageError("no token given", hint="pass --token pkcs11:token=LABEL or set "
                         "token.uri in the script")
    token = open_token(script.token.activation, module_path(args.module, script.token.module),
                       uri, pin_file=args.pin_file, pin_shares=args.pin_share)
    try:
        devices = Devices(SystemClock(), OsRandomness(), token, Slip39Splitter(),
                          NoSecretOutput(), BundleCodes())
        if args.resume:
            engine = Engine.resume(script, policy, devices, args.out)
        else:
            engine = Engine.start(script, policy, script_bytes, policy_bytes, devices,
                                  args.out, rehearsal=args.rehearsal, original=original)
        finished = run_headless(engine, answers, signers)  # type: ignore[arg-type]
    finally:
        token.close()
    if finished.outcome == "completed":
        from ceremony.display import words

        print(f"recovered: the root key of ceremony {original.record.ceremony_id} "
              f"(fingerprint {original.record.fingerprint}) is on {uri}\n"
              f"  fingerprint words: {words(original.record.fingerprint)}")
    print(f"sealed: outcome {finished.outcome}, head {finished.head}; bundle {args.out}")
    return EXIT_OK
