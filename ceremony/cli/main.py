"""The `ceremony` command: the only module that decides exit codes.

Exit codes (docs/exit-codes.md): 0 success; 1 a check failed (verification, policy,
quorum); 2 bad usage or malformed input; 3 device error (HSM, card, printer); 130
interrupted; 70 an internal error (a bug). Every failure prints one plain sentence on
stderr, never a traceback. Heavy imports happen inside the commands so `--help` is fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ceremony import __version__
from ceremony.cli.qr import add_qr_commands, cmd_qr
from ceremony.errors import CeremonyError, Kind, UsageError

if TYPE_CHECKING:
    from ceremony.model.policy import Policy
    from ceremony.model.script import Script
    from ceremony.verify.core import Report

EXIT_OK = 0
EXIT_INTERNAL = 70


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}", hint=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ceremony", description="Scripted root-key ceremonies for "
                     "air-gapped workstations.")
    parser.add_argument("--version", action="version", version=f"ceremony {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("rehearse", help="run the sample ceremony on a throwaway SoftHSM2 "
                       "token with simulated custodians, then verify it")
    p.add_argument("--out", type=Path, help="directory for the bundle and the rehearsal's "
                   "secrets (default: ./rehearsal-<time>; never overwritten)")
    p.add_argument("--tui", action="store_true", help="run it in the Textual UI, with you "
                   "acting for the simulated participants")

    p = sub.add_parser("lint", help="check a script against its policy before the day")
    p.add_argument("script", type=Path)
    p.add_argument("--policy", type=Path, help="policy file (default: the script's "
                   "policy.path, relative to the script)")

    p = sub.add_parser("run", help="run a ceremony in the Textual UI (headless with "
                       "--headless --answers)")
    p.add_argument("script", type=Path)
    p.add_argument("--policy", type=Path)
    p.add_argument("--headless", action="store_true", help="no UI: answers come from a file")
    p.add_argument("--answers", type=Path, help="answers file for --headless (in the UI "
                   "with --rehearsal, only its [identities] are used, as signers)")
    p.add_argument("--out", type=Path, required=True, help="the bundle directory")
    p.add_argument("--secret-out", type=Path, help="where share sheets go (never inside "
                   "the bundle; default: OUT.secret)")
    p.add_argument("--resume", action="store_true", help="continue the unfinished ceremony "
                   "recorded in --out")
    p.add_argument("--rehearsal", action="store_true", help="mark this run a rehearsal "
                   "(allows plain identity key files)")
    p.add_argument("--module", help="PKCS#11 module path (default: the script's token.module)")
    p.add_argument("--token", help="PKCS#11 URI of the token (default: the script's token.uri)")
    p.add_argument("--pin-file", type=Path, help="file holding the token's user PIN, for "
                   "a known-PIN token (default: asked on the terminal)")
    p.add_argument("--pin-share", type=Path, action="append", default=[],
                   help="a crypto officer's PIN share sheet, for a split-knowledge token "
                   "(repeat for each officer present; in the UI, without it, the officers "
                   "type their PIN shares on the start screen)")
    p.add_argument("--reader", help="PC/SC reader the participants insert their cards in "
                   "to approve (default: whichever reader holds a card)")
    from ceremony.cli.script import add_parsers as add_script_parsers
    from ceremony.cli.script import add_state_argument

    add_state_argument(p)
    add_script_parsers(sub, _Parser)

    from ceremony.cli.recover import add_parser as add_recover_parser

    add_recover_parser(sub)

    p = sub.add_parser("verify", help="the auditor's check of a bundle")
    p.add_argument("bundle", type=Path)
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("replay", help="the auditor's step-by-step view of a bundle, with "
                       "the verifier's result on every step (exit 1 if it does not verify)")
    p.add_argument("bundle", type=Path)

    p = sub.add_parser("sample", help="write the sample script and policy to copy from")
    p.add_argument("directory", type=Path)

    hsm = sub.add_parser("hsm", help="look at a PKCS#11 token").add_subparsers(
        dest="hsm_command", required=True, parser_class=_Parser)
    p = hsm.add_parser("inventory", help="list the token's objects; with --bundle, flag "
                       "drift from what ceremonies recorded (exit 1 on drift)")
    p.add_argument("--token", required=True, help="PKCS#11 URI of the token "
                   "(pkcs11:token=LABEL;serial=...)")
    p.add_argument("--module", help="PKCS#11 module path (default: $CEREMONY_PKCS11_MODULE "
                   "or SoftHSM2's)")
    p.add_argument("--pin-file", type=Path, help="file holding the token's user PIN "
                   "(default: asked on the terminal)")
    p.add_argument("--pin-share", type=Path, action="append", default=[],
                   help="a crypto officer's PIN share sheet, for a split-knowledge token "
                   "(repeatable; needs --bundle, whose script names the officers)")
    p.add_argument("--bundle", type=Path, action="append", default=[],
                   help="a ceremony bundle to compare with (repeatable; each must verify)")
    p.add_argument("--json", action="store_true", help="print the inventory as JSON")

    p = hsm.add_parser("activate", help="give a token random user and SO PINs that no one "
                       "sees, each split among the script's crypto officers")
    p.add_argument("script", type=Path, help="the ceremony script ([token.activation] names "
                   "the officers and the threshold)")
    p.add_argument("--policy", type=Path)
    p.add_argument("--secret-out", type=Path, required=True, help="directory for the "
                   "officers' PIN share sheets (DIR/pin-shares; never overwritten)")
    p.add_argument("--module", help="PKCS#11 module path (default: the script's token.module)")
    p.add_argument("--token", help="PKCS#11 URI of the token (default: the script's token.uri)")
    p.add_argument("--so-pin-file", type=Path, help="file holding the token's current SO "
                   "PIN (its transport PIN; default: asked on the terminal)")
    p.add_argument("--so-pin-share", type=Path, action="append", default=[],
                   help="instead of --so-pin-file: an officer's PIN share sheet from the "
                   "last activation (repeat for each officer present), to re-activate")
    p.add_argument("--rehearsal", action="store_true", help="mark the sheets REHEARSAL")

    shares = sub.add_parser("shares", help="a custodian's own share").add_subparsers(
        dest="shares_command", required=True, parser_class=_Parser)
    p = shares.add_parser("check", help="check your SLIP-39 share against a bundle: intact, "
                          "and whose it is (exit 1 if not)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--share-file", type=Path, help="file holding the share's words "
                   "(default: typed on the terminal, not shown)")
    p.add_argument("--card", action="store_true", help="read the share from your OpenPGP "
                   "card instead (docs/card-shares.md)")
    p.add_argument("--reader", help="with --card: the reader (default: the one with a card)")
    p.add_argument("--pin-file", type=Path, help="with --card: file holding the card's PIN "
                   "(default: typed, not shown)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    add_qr_commands(sub, _Parser)

    from ceremony.cli.attest import add_parsers as add_attest_parsers

    add_attest_parsers(sub)

    from ceremony.cli.lineage import add_parsers as add_lineage_parsers
    from ceremony.cli.printing import add_print_parser

    add_print_parser(sub)
    add_lineage_parsers(sub, _Parser)

    from ceremony.cli.status import add_parser as add_status_parser

    add_status_parser(sub)

    custodian = sub.add_parser("custodian", help="a custodian's identity card").add_subparsers(
        dest="custodian_command", required=True, parser_class=_Parser)
    p = custodian.add_parser("enroll", help="print the public identity of the custodian's "
                             "OpenPGP card (its Ed25519 signature key) for the script, after "
                             "a test signature with the card's PIN")
    p.add_argument("--reader", help="PC/SC reader name (default: the one reader with a card)")
    p.add_argument("--generate", action="store_true", help="make a new Ed25519 signature "
                   "key on the card first, replacing any (needs the admin PIN)")
    p.add_argument("--admin-pin-file", type=Path, help="file holding the card's admin PIN "
                   "(PW3), for --generate (default: asked on the terminal)")
    p.add_argument("--pin-file", type=Path, help="file holding the card's PIN (PW1), or "
                   "with --token the token's user PIN (default: asked on the terminal)")
    p.add_argument("--token", metavar="URI", help="enrol an Ed25519 key on the custodian's "
                   "own PKCS#11 token instead of a card (pkcs11:token=LABEL)")
    p.add_argument("--key-label", metavar="LABEL", help="with --token: the label of the "
                   "identity key on the token")
    p.add_argument("--key-id", metavar="HEX", help="with --token: the key's id (CKA_ID, "
                   "hex), when several keys share the label")
    p.add_argument("--module", help="with --token: the token's PKCS#11 module (default: "
                   "$CEREMONY_PKCS11_MODULE, else SoftHSM2's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from ceremony.hardening import forbid_core_dumps

    try:
        forbid_core_dumps()  # before any secret can exist in this process
    except OSError as exc:
        print(f"ceremony: cannot forbid core dumps of this process ({exc.strerror}); "
              "secrets could reach the disk", file=sys.stderr)
        return Kind.CHECK_FAILED.value
    try:
        args = build_parser().parse_args(argv)
        handler = {"rehearse": cmd_rehearse, "lint": cmd_lint, "run": cmd_run,
                   "verify": cmd_verify, "replay": cmd_replay,
                   "sample": cmd_sample, "hsm": cmd_hsm, "shares": cmd_shares,
                   "qr": cmd_qr, "recover": cmd_recover,
                   "custodian": cmd_custodian, "attest": cmd_attest,
                   "selftest": cmd_selftest, "script": cmd_script, "waiver": cmd_waiver,
                   "print": cmd_print, "lineage": cmd_lineage,
                   "status": cmd_status}[args.command]
        return handler(args)
    except CeremonyError as exc:
        print(f"ceremony: {exc.describe()}", file=sys.stderr)
        return exc.kind.value
    except KeyboardInterrupt:
        print("ceremony: interrupted; `ceremony run --resume` continues an unfinished "
              "ceremony", file=sys.stderr)
        return Kind.INTERRUPTED.value
    except Exception as exc:
        print(f"ceremony: internal error ({type(exc).__name__}); this is a bug, please "
              "report it with the command you ran", file=sys.stderr)
        if os.environ.get("CEREMONY_DEBUG"):
            raise
        return EXIT_INTERNAL


def _load(script_path: Path, policy_path: Path | None) -> tuple[Script, Policy, bytes, bytes]:
    from ceremony.model.policy import parse_policy
    from ceremony.model.script import load_script

    script = load_script(script_path)
    path = policy_path or (script_path.parent / script.policy_path)
    if policy_path is None and not path.is_file():
        from ceremony.errors import ScriptError
        from ceremony.model.strict import Locator

        text = script_path.read_text(encoding="utf-8")
        raise ScriptError(f"the policy file {path} does not exist", file=str(script_path),
                          line=Locator(text).line(("policy", "path")), field="policy.path",
                          hint="fix policy.path (relative to the script) or pass --policy")
    policy = parse_policy(_read_text(path), str(path))
    return script, policy, script_path.read_bytes(), path.read_bytes()


def _read_text(path: Path) -> str:
    from ceremony.errors import PolicyFileError
    from ceremony.model.strict import read_source

    return read_source(path, PolicyFileError, "policy").text


def cmd_lint(args: argparse.Namespace) -> int:
    from ceremony.model.rules import check_policy

    script, policy, script_bytes, _ = _load(args.script, args.policy)
    violations = check_policy(script, policy, rehearsal=False,
                              script_text=script_bytes.decode())
    for v in violations:
        print(f"ceremony: {v.describe()}", file=sys.stderr)
    if violations:
        print(f"{script.source_name}: {len(violations)} policy violation(s)", file=sys.stderr)
        return Kind.CHECK_FAILED.value
    print(f"{script.source_name}: ok (ceremony {script.ceremony_id} v{script.version}, "
          f"{len(script.steps)} steps, policy {policy.policy_id} v{policy.version})")
    return EXIT_OK


def cmd_script(args: argparse.Namespace) -> int:
    """`ceremony script sign` (ceremony/cli/script.py)."""
    from ceremony.cli.script import cmd_script as script

    return script(args, _load)


def cmd_recover(args: argparse.Namespace) -> int:
    """`ceremony recover` (ceremony/cli/recover.py)."""
    from ceremony.cli.recover import cmd_recover as recover

    return recover(args, _load)


def cmd_sample(args: argparse.Namespace) -> int:
    from ceremony.rehearsal import sample_recovery_text, sample_texts

    script_text, policy_text = sample_texts()
    args.directory.mkdir(parents=True, exist_ok=True)
    files = (("script.toml", script_text), ("policy.toml", policy_text),
             ("recovery.toml", sample_recovery_text()))
    for name, _ in files:
        if (args.directory / name).exists():
            raise UsageError(f"{args.directory / name} already exists",
                             hint="choose an empty directory")
    for name, text in files:
        (args.directory / name).write_text(text)
    print(f"wrote {args.directory / 'script.toml'} and {args.directory / 'policy.toml'}; "
          "edit them, then run `ceremony lint`\n"
          f"wrote {args.directory / 'recovery.toml'}: the sample recovery script "
          "(docs/recovery-guide.md)")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from ceremony.verify.__main__ import render
    from ceremony.verify.core import verify_bundle

    if not args.bundle.is_dir():
        raise UsageError(f"{args.bundle} is not a bundle directory",
                         hint="give the directory a ceremony wrote (it holds transcript.jsonl)")
    report = verify_bundle(args.bundle)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(render(report))
        if report.ok:
            print(_digest_lines(report))
    return EXIT_OK if report.ok else Kind.CHECK_FAILED.value


def cmd_hsm(args: argparse.Namespace) -> int:
    """`ceremony hsm inventory` (exit 1 on drift) and `ceremony hsm activate`."""
    if args.hsm_command == "activate":
        return _hsm_activate(args)
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.cli.login import open_token
    from ceremony.inventory import build_inventory, load_bundle, render
    from ceremony.model.script import Activation, load_script

    # Bundles first: an unverifiable one is refused before the token is touched.
    bundles = [load_bundle(b) for b in args.bundle]
    activation = Activation()
    if args.pin_share:
        if not args.bundle:
            raise UsageError("--pin-share needs --bundle: the bundle's script names the "
                             "officers and the threshold")
        activation = load_script(args.bundle[0] / "script.toml").token.activation
    token = open_token(activation, module_path(args.module, None), args.token,
                       pin_file=args.pin_file, pin_shares=args.pin_share)
    try:
        inventory = build_inventory(token.describe(), token.inventory(), bundles)
    finally:
        token.close()
    print(json.dumps(inventory.as_dict(), indent=2) if args.json else render(inventory))
    return Kind.CHECK_FAILED.value if inventory.drift else EXIT_OK


def _hsm_activate(args: argparse.Namespace) -> int:
    """`ceremony hsm activate`: random PINs, split among officers; prints no PIN."""
    from ceremony.adapters.activation import activate, combine_pin, read_sheets
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.cli.login import read_pin
    from ceremony.engine.derive import wipe
    from ceremony.model.rules import check_policy

    script, policy, _, _ = _load(args.script, args.policy)
    violations = [v for v in check_policy(script, policy, rehearsal=args.rehearsal)
                  if v.requirement == "CER-ACTIVATION"]
    if violations:
        raise violations[0]
    uri = args.token or script.token.uri
    if uri is None:
        raise UsageError("no token given", hint="pass --token pkcs11:token=LABEL or set "
                         "token.uri in the script")
    from ceremony.cli.attest import attest_ceremony

    # Before any PIN is read or drawn: the workstation must pass attestation (CER-ATTEST).
    attest_ceremony(args.script, script, policy, rehearsal=args.rehearsal,
                    module=module_path(args.module, script.token.module))
    if args.so_pin_share:
        if args.so_pin_file is not None:
            raise UsageError("give either --so-pin-file or --so-pin-share, not both")
        so_pin, _ = combine_pin(script.token.activation, read_sheets(args.so_pin_share, "so"),
                                where="--so-pin-share")
    else:
        so_pin = read_pin(args.so_pin_file, "token's current SO PIN")
    try:
        done = activate(module_path(args.module, script.token.module), uri, script, so_pin,
                        args.secret_out, rehearsal=args.rehearsal)
    finally:
        wipe(so_pin)
    print(f"activated token {done.token}: its user and SO PINs are random and split "
          f"{done.threshold} of {len(done.officers)} among {', '.join(done.officers)}\n"
          f"  PIN share sheets: {done.sheets} (hand each officer their own sheet, sealed; "
          "no one else reads them)\n"
          f"  share sets: user PIN {done.user_share_set}, SO PIN {done.so_share_set}")
    return EXIT_OK


def cmd_attest(args: argparse.Namespace) -> int:
    """`ceremony attest`: exit 0 when the workstation passes, 1 when a check fails."""
    from ceremony.cli.attest import cmd_attest as attest

    return attest(args)


def cmd_selftest(args: argparse.Namespace) -> int:
    """`ceremony selftest`: exit 0, or 1 when a file differs from the manifest or a test fails."""
    from ceremony.cli.attest import cmd_selftest as selftest

    return selftest(args)


def cmd_waiver(args: argparse.Namespace) -> int:
    """`ceremony waiver sign` (ceremony/cli/attest.py): 1 when the waiver is refused."""
    from ceremony.cli.attest import cmd_waiver as waiver

    return waiver(args, _load)


def cmd_custodian(args: argparse.Namespace) -> int:
    """`ceremony custodian enroll`: exit 0, or 3 when the card (or identity token), reader
    or PIN refuses."""
    from ceremony.cli.custodian import enroll

    return enroll(args)


def cmd_status(args: argparse.Namespace) -> int:
    """`ceremony status` (ceremony/cli/status.py): 0 all fine, 1 overdue or not verifying."""
    from ceremony.cli.status import cmd_status as status

    return status(args)


def cmd_print(args: argparse.Namespace) -> int:
    """`ceremony print` (ceremony/cli/printing.py): 0, 1 unverifiable bundle or QR read-back,
    3 printer or renderer."""
    from ceremony.cli.printing import cmd_print as print_bundle

    return print_bundle(args)


def cmd_lineage(args: argparse.Namespace) -> int:
    """`ceremony lineage make|show|verify` (ceremony/cli/lineage.py): 1 when a link breaks."""
    from ceremony.cli.lineage import cmd_lineage as lineage

    return lineage(args)


def _print_after_seal(bundle: Path) -> int:
    """The printable transcript next to a just-sealed bundle (ceremony/cli/printing.py)."""
    from ceremony.cli.printing import print_after_seal

    return print_after_seal(bundle)


def cmd_shares(args: argparse.Namespace) -> int:
    """`ceremony shares check`: exit 0 intact, 1 not intact or the bundle does not verify."""
    from ceremony.sharecheck import check_share, load_reference, read_share

    if not args.bundle.is_dir():
        raise UsageError(f"{args.bundle} is not a bundle directory",
                         hint="give the directory a ceremony wrote (it holds transcript.jsonl)")
    if args.card and args.share_file is not None:
        raise UsageError("give --share-file or --card, not both")
    # The bundle first: the share is not asked for when there is nothing to trust.
    reference = load_reference(args.bundle)
    if args.card:
        from ceremony.cli.cardshares import check_card_share

        result = check_card_share(reference, args.reader, args.pin_file)
    else:
        result = check_share(reference, read_share(args.share_file))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    elif result.intact:
        print(result.message)
    else:
        hint = f"\n  hint: {result.hint}" if result.hint else ""
        print(f"ceremony: {result.message}{hint}", file=sys.stderr)
    return EXIT_OK if result.intact else Kind.CHECK_FAILED.value


def cmd_replay(args: argparse.Namespace) -> int:
    if not args.bundle.is_dir():
        raise UsageError(f"{args.bundle} is not a bundle directory; give the directory a "
                         "ceremony wrote (it holds transcript.jsonl)")
    from ceremony.tui.replay import ReplayApp

    app = ReplayApp(args.bundle)
    app.run()
    return EXIT_OK if app.verified else Kind.CHECK_FAILED.value


def _digest_lines(report: Report) -> str:
    from ceremony.display import words

    out = []
    if report.root_fingerprint:
        out.append(f"root key fingerprint: {report.root_fingerprint}\n"
                   f"                 words: {words(report.root_fingerprint)}")
    if report.head:
        out.append(f"transcript head:      {report.head}\n"
                   f"                 words: {words(report.head)}")
    return "\n".join(out)


def cmd_rehearse(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from ceremony.rehearsal import rehearse
    from ceremony.verify.__main__ import render
    from ceremony.verify.core import verify_bundle

    out = args.out or Path(f"rehearsal-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    if args.tui:
        return _rehearse_tui(out)
    bundle, secret = rehearse(out)
    report = verify_bundle(bundle)
    print()
    print(render(report))
    if not report.ok:
        return Kind.CHECK_FAILED.value
    print()
    print("REHEARSAL summary")
    print(f"  ceremony:   {report.ceremony_id} ({report.outcome})")
    print(_digest_lines(report).replace("\n", "\n  ").join(["  ", ""]))
    print(f"  bundle:     {bundle}  (public; check it with `ceremony verify {bundle}`)")
    print(f"  secrets:    {secret}  (rehearsal share sheets and identity keys; never "
          "publish)")
    print(f"  lineage:    `ceremony lineage make {bundle} --identities {secret}/identities`")
    return _print_after_seal(bundle)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.headless:
        return _run_tui(args)
    if args.answers is None:
        raise UsageError("--headless needs --answers FILE")
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.adapters.qrcodes import BundleCodes
    from ceremony.adapters.sharesheets import ShareSheetDirectory
    from ceremony.adapters.slip39 import Slip39Splitter
    from ceremony.adapters.system import OsRandomness, SystemClock
    from ceremony.adapters.transcript_pdf import BundlePrinter
    from ceremony.cli.attest import attest_ceremony, resume_rehearsal
    from ceremony.cli.cards import headless_signers
    from ceremony.cli.cardshares import share_output
    from ceremony.cli.login import open_token
    from ceremony.cli.script import authorize, record_sealed
    from ceremony.engine.core import Devices, Engine
    from ceremony.headless import run_headless
    from ceremony.model.answers import load_answers

    script, policy, script_bytes, policy_bytes = _load(args.script, args.policy)
    answers = load_answers(args.answers, script)
    # Cards under [cards] (a TurnSigner each); key files under [identities] in a rehearsal.
    signers = headless_signers(answers, script, rehearsal=args.rehearsal, reader=args.reader)
    uri = args.token or script.token.uri
    if uri is None:
        raise UsageError("no token given", hint="pass --token pkcs11:token=LABEL or set "
                         "token.uri in the script")
    secret_out = args.secret_out or args.out.with_name(args.out.name + ".secret")
    if secret_out.resolve().is_relative_to(args.out.resolve()):
        raise UsageError("--secret-out must not be inside the bundle",
                         requirement="CER-NO-SECRET")
    authorization = authorize(args.script, script, policy, rehearsal=args.rehearsal,
                              state=args.state, resume=args.resume)
    module = module_path(args.module, script.token.module)
    attestation = attest_ceremony(args.script, script, policy, module=module,
                                  rehearsal=resume_rehearsal(args.out, args.rehearsal,
                                                             args.resume))
    token = open_token(script.token.activation, module,
                       uri, pin_file=args.pin_file, pin_shares=args.pin_share)
    try:
        sheets = ShareSheetDirectory(secret_out, script.ceremony_id)
        devices = Devices(SystemClock(), OsRandomness(), token, Slip39Splitter(),
                          share_output(script, answers, sheets), BundleCodes(),
                          BundlePrinter())
        if args.resume:
            engine = Engine.resume(script, policy, devices, args.out, attestation=attestation)
        else:
            engine = Engine.start(script, policy, script_bytes, policy_bytes, devices,
                                  args.out, rehearsal=args.rehearsal,
                                  authorization=authorization, attestation=attestation)
        finished = run_headless(engine, answers, signers)
    finally:
        token.close()
    record_sealed(args.state, script, args.out)
    print(f"sealed: outcome {finished.outcome}, head {finished.head}; bundle {args.out}")
    return _print_after_seal(args.out)


def _run_tui(args: argparse.Namespace) -> int:
    """`ceremony run SCRIPT` without --headless: the ceremony in the Textual UI."""
    from ceremony.cli.login import ui_login
    from ceremony.cli.script import authorize, record_sealed
    from ceremony.tui.app import RunSetup
    from ceremony.tui.cards import CardApprovals
    from ceremony.tui.devices import token_opener

    script, policy, script_bytes, policy_bytes = _load(args.script, args.policy)
    # (a share the script sends to a card goes there through the card screen: tui/cards.py)
    # (an unfinished ceremony in --out is resumed in the UI: it was authorized at its start)
    authorization = authorize(args.script, script, policy, rehearsal=args.rehearsal,
                              state=args.state,
                              resume=(args.out / "transcript.jsonl").is_file())
    if args.secret_out is not None and args.secret_out.resolve().is_relative_to(
            args.out.resolve()):
        raise UsageError("--secret-out must not be inside the bundle",
                         requirement="CER-NO-SECRET")
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.cli.attest import attest_ceremony, resume_rehearsal

    resume = (args.out / "transcript.jsonl").is_file()
    attestation = attest_ceremony(args.script, script, policy,
                                  module=module_path(args.module, script.token.module),
                                  rehearsal=resume_rehearsal(args.out, args.rehearsal, resume))
    login = ui_login(args, script)
    opener = token_opener(args.module, login.uri, script.ceremony_id, args.secret_out,
                          login.pin, script_module=script.token.module,
                          connect=login.connect, typed_shares=login.typed)
    setup = RunSetup(script, policy, script_bytes, policy_bytes, args.out, args.rehearsal,
                     opener, login.signers,  # type: ignore[arg-type]
                     needs_pin=login.needs_pin, typed_shares=login.typed,
                     device_name=login.uri, authorization=authorization,
                     attestation=attestation, cards=CardApprovals(args.reader))
    code = _run_app(setup)
    if code == EXIT_OK:
        record_sealed(args.state, script, args.out)
        code = _print_after_seal(args.out)
    return code


def _run_app(setup: object) -> int:
    from ceremony.tui.app import EXIT_AFTER_FIRST_SCREEN, CeremonyApp, RunSetup

    assert isinstance(setup, RunSetup)
    app = CeremonyApp(setup)
    app.run(headless=bool(os.environ.get(EXIT_AFTER_FIRST_SCREEN)))
    engine = app.engine
    if engine is None or engine.status().phase != "finished":
        hint = ("run the same command again: it offers to resume from the transcript"
                if engine is not None else "run the command again to start")
        print(f"ceremony: {app.finish_message()}\n  hint: {hint}", file=sys.stderr)
        return Kind.INTERRUPTED.value
    print(app.finish_message())
    return EXIT_OK


def _rehearse_tui(out: Path) -> int:
    """`ceremony rehearse --tui`: the sample ceremony in the UI, on a throwaway token."""
    from ceremony.tui.devices import rehearsal_setup

    setup, prepared, stack = rehearsal_setup(out)
    try:
        code = _run_app(setup)
    finally:
        stack.close()
    if code != EXIT_OK:
        return code
    from ceremony.verify.__main__ import render
    from ceremony.verify.core import verify_bundle

    report = verify_bundle(prepared.bundle)
    print(render(report))
    print(f"  bundle:     {prepared.bundle}\n  secrets:    {prepared.secret}  (rehearsal share "
          "sheets and identity keys; never publish)")
    if not report.ok:
        return Kind.CHECK_FAILED.value
    return _print_after_seal(prepared.bundle)


def _read_pin(path: Path | None) -> bytearray:
    from ceremony.cli.login import read_pin

    return read_pin(path)


if __name__ == "__main__":
    sys.exit(main())
