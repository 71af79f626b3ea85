"""`ceremony recover`: rebuild a root key from a quorum of shares into a new token.

A recovery is a ceremony of its own (a script with a ``[recovery]`` table and a
``recover_root_key`` step; docs/recovery-guide.md). The original bundle is verified first,
before any token is opened or any share asked for; the token is logged in to exactly as
``ceremony run`` does (cli/login.py). Without ``--headless`` the recovery runs in the
Textual UI (the CeremonyApp of ``ceremony run``, with a RunSetup built here): the custodians
present their shares on the recovery screen. Headless, the answers file says who approves
and, under ``[[shares]]``, which custodian presents which share file. Exit codes are
main.py's.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceremony.errors import Kind, UsageError

if TYPE_CHECKING:
    from ceremony.engine.recovery import OriginalBundle
    from ceremony.model.policy import Policy
    from ceremony.model.script import Script
    from ceremony.tui.app import RunSetup

EXIT_OK = 0


def add_parser(sub: Any) -> None:
    """The `recover` subcommand's arguments."""
    p = sub.add_parser("recover", help="rebuild a root key from its custodians' shares into "
                       "a new token, as a ceremony of its own, in the terminal UI (headless "
                       "with --headless --answers)")
    p.add_argument("script", type=Path, help="the recovery script (with a [recovery] table "
                   "and a recover_root_key step)")
    p.add_argument("--original", type=Path, help="the bundle of the ceremony that made the "
                   "root key and its shares (verified before anything else)")
    p.add_argument("--out", type=Path, required=True, help="the recovery's bundle directory")
    p.add_argument("--policy", type=Path)
    p.add_argument("--headless", action="store_true", help="no UI: approvals and shares come "
                   "from the answers file")
    p.add_argument("--answers", type=Path, help="answers file for --headless: approvals, "
                   "the typed phrases and, under [[shares]], each custodian's share file (in "
                   "the UI with --rehearsal, only its [identities] are used, as signers)")
    p.add_argument("--resume", action="store_true", help="continue the unfinished recovery "
                   "recorded in --out (its copy of the original is used; the UI offers it "
                   "by itself)")
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
    from ceremony.cli.script import add_state_argument

    add_state_argument(p)


@dataclass(frozen=True)
class Loaded:
    """A recovery script, its policy and the verified original, before any token is opened."""

    script: Script
    policy: Policy
    script_bytes: bytes
    policy_bytes: bytes
    original: OriginalBundle
    resume: bool  # an unfinished recovery in --out goes on (--resume; the UI offers it)


def load_recovery(args: argparse.Namespace, load: Any) -> Loaded:
    """The script and the original, checked: the original first, verified (all ten steps),
    then the script against it; nothing is opened and no share is read before this."""
    from ceremony.engine.recovery import ORIGINAL_DIR, load_original

    script, policy, script_bytes, policy_bytes = load(args.script, args.policy)
    if script.recovery is None:
        raise UsageError(f"{args.script} is not a recovery script: it has no [recovery] "
                         "table", hint="see docs/recovery-guide.md, or `ceremony sample DIR` "
                         "for recovery.toml")
    if args.headless and args.answers is None:
        raise UsageError("--headless needs --answers FILE")
    # In the UI an unfinished recovery in --out is resumed (its start screen says so), as
    # `ceremony run` does; headless, only with --resume.
    resume = args.resume or (not args.headless and (args.out / "transcript.jsonl").is_file())
    if resume:
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
    if not resume:  # (a resume checks with the rehearsal flag it recorded)
        from ceremony.errors import CheckFailed
        from ceremony.model.recovery import recovery_problem

        problem = recovery_problem(script, original.record, rehearsal=args.rehearsal)
        if problem:
            raise CheckFailed(f"{problem}; nothing was written", hint="the [recovery] table, "
                              "[root_key] and [shares] of the script must name the original "
                              f"bundle {original.path} (docs/recovery-guide.md)",
                              requirement="CER-RECOVERY")
    return Loaded(script, policy, script_bytes, policy_bytes, original, resume)


def cmd_recover(args: argparse.Namespace, load: Any) -> int:
    """Verify the original, log in to the new token, run the recovery (UI or headless)."""
    loaded = load_recovery(args, load)
    if not args.headless:
        return _run_ui(args, loaded)
    script, policy, original = loaded.script, loaded.policy, loaded.original
    script_bytes, policy_bytes = loaded.script_bytes, loaded.policy_bytes

    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.adapters.qrcodes import BundleCodes
    from ceremony.adapters.slip39 import Slip39Splitter
    from ceremony.adapters.system import OsRandomness, SystemClock
    from ceremony.adapters.transcript_pdf import BundlePrinter
    from ceremony.cli.cards import headless_signers
    from ceremony.cli.login import open_token
    from ceremony.engine.core import Devices, Engine
    from ceremony.engine.recovery import NoSecretOutput
    from ceremony.headless import run_headless
    from ceremony.model.answers import load_answers

    answers = load_answers(args.answers, script)
    # Cards under [cards] (one reader, in turns); key files under [identities] in a rehearsal.
    signers = headless_signers(answers, script, rehearsal=args.rehearsal)
    uri = args.token or script.token.uri
    if uri is None:
        raise UsageError("no token given", hint="pass --token pkcs11:token=LABEL or set "
                         "token.uri in the script")
    from ceremony.cli.script import authorize, record_sealed

    authorization = authorize(args.script, script, policy, rehearsal=args.rehearsal,
                              state=args.state, resume=args.resume)
    attestation = _attest(args, loaded)
    token = open_token(script.token.activation, module_path(args.module, script.token.module),
                       uri, pin_file=args.pin_file, pin_shares=args.pin_share)
    try:
        devices = Devices(SystemClock(), OsRandomness(), token, Slip39Splitter(),
                          NoSecretOutput(), BundleCodes(), BundlePrinter())
        if args.resume:
            engine = Engine.resume(script, policy, devices, args.out, attestation=attestation)
        else:
            engine = Engine.start(script, policy, script_bytes, policy_bytes, devices,
                                  args.out, rehearsal=args.rehearsal, original=original,
                                  authorization=authorization, attestation=attestation)
        from ceremony.cli.cardshares import recovery_card_reader

        finished = run_headless(engine, answers, signers,
                                card_share=recovery_card_reader(script, answers))
    finally:
        token.close()
    record_sealed(args.state, script, args.out)
    if finished.outcome == "completed":
        _say_recovered(original, uri)
    print(f"sealed: outcome {finished.outcome}, head {finished.head}; bundle {args.out}")
    from ceremony.cli.printing import print_after_seal

    return print_after_seal(args.out)


def _attest(args: argparse.Namespace, loaded: Loaded) -> dict[str, Any]:
    """The workstation's attestation for the recovery (cli/attest.py; CER-ATTEST): refused
    here, before the token is opened, unless it passes; a resume attests as it started."""
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.cli.attest import attest_ceremony, resume_rehearsal

    return attest_ceremony(args.script, loaded.script, loaded.policy,
                           module=module_path(args.module, loaded.script.token.module),
                           rehearsal=resume_rehearsal(args.out, args.rehearsal,
                                                      loaded.resume))


def _say_recovered(original: OriginalBundle, uri: str) -> None:
    from ceremony.display import words

    print(f"recovered: the root key of ceremony {original.record.ceremony_id} "
          f"(fingerprint {original.record.fingerprint}) is on {uri}\n"
          f"  fingerprint words: {words(original.record.fingerprint)}")


def ui_setup(args: argparse.Namespace, loaded: Loaded) -> RunSetup:
    """The RunSetup of the recovery UI: as `ceremony run` builds it (the same login choices:
    typed PIN shares, a PIN typed or read from a file, sheets or a PIN pad), with the
    original, and devices that hand out no shares."""
    from ceremony.cli.login import ui_login
    from ceremony.cli.script import authorize
    from ceremony.tui.app import RunSetup
    from ceremony.tui.cards import CardApprovals
    from ceremony.tui.devices import token_opener

    script = loaded.script
    authorization = authorize(args.script, script, loaded.policy, rehearsal=args.rehearsal,
                              state=args.state, resume=loaded.resume)
    attestation = _attest(args, loaded)
    login = ui_login(args, script)
    opener = token_opener(args.module, login.uri, script.ceremony_id, None, login.pin,
                          script_module=script.token.module, connect=login.connect,
                          typed_shares=login.typed, recovery=True)
    return RunSetup(script, loaded.policy, loaded.script_bytes, loaded.policy_bytes, args.out,
                    args.rehearsal, opener, login.signers,  # type: ignore[arg-type]
                    needs_pin=login.needs_pin, typed_shares=login.typed,
                    device_name=login.uri, original=loaded.original,
                    authorization=authorization, attestation=attestation,
                    cards=CardApprovals())


def _run_ui(args: argparse.Namespace, loaded: Loaded) -> int:
    """The recovery in the Textual UI; what it did is printed once the UI has closed."""
    from ceremony.cli.script import record_sealed
    from ceremony.tui.app import EXIT_AFTER_FIRST_SCREEN, CeremonyApp

    setup = ui_setup(args, loaded)
    app = CeremonyApp(setup)
    app.run(headless=bool(os.environ.get(EXIT_AFTER_FIRST_SCREEN)))
    engine = app.engine
    if engine is None or engine.status().phase != "finished":
        hint = ("run the same command again: it offers to resume from the transcript (the "
                "shares are presented again)" if engine is not None else
                "run the command again to start")
        print(f"ceremony: {app.finish_message()}\n  hint: {hint}", file=sys.stderr)
        return Kind.INTERRUPTED.value
    record_sealed(args.state, loaded.script, args.out)
    if engine.status().outcome == "completed":
        _say_recovered(loaded.original, setup.device_name)
    print(app.finish_message())
    from ceremony.cli.printing import print_after_seal

    return print_after_seal(args.out)
