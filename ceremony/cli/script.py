"""`ceremony script sign`, and what `run` and `recover` need of signed scripts and versions.

An authorizer signs the exact bytes of a script (a canonical statement binding its SHA-256,
ceremony id, version and the signer) with their card, or in a rehearsal with a key file;
the signature is appended to ``SCRIPT.sigs`` beside the script (docs/script-signing.md).
Before a ceremony starts, :func:`authorize` reads that file and the local version state for
the engine, which refuses a script without the policy's quorum of signatures or not newer
than the last version sealed; :func:`record_sealed` updates the state once it is sealed.
Exit codes are main.py's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceremony.durable import write_atomically
from ceremony.errors import CheckFailed, UsageError

if TYPE_CHECKING:
    from ceremony.model.authorization import Presented
    from ceremony.model.policy import Policy
    from ceremony.model.script import Script

EXIT_OK = 0


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """The `script` command and its `sign` subcommand."""
    script = sub.add_parser("script", help="authorize a script before the day").add_subparsers(
        dest="script_command", required=True, parser_class=parser_class)
    p = script.add_parser("sign", help="sign the script's exact bytes as one of its "
                          "authorizers; the signature is appended to SCRIPT.sigs")
    p.add_argument("script", type=Path)
    p.add_argument("--as", dest="participant", required=True, metavar="PARTICIPANT",
                   help="the authorizer signing (a participant id of the script)")
    p.add_argument("--card", action="store_true", help="sign with the participant's "
                   "OpenPGP card (its PIN is asked for, or read from --pin-file)")
    p.add_argument("--reader", help="PC/SC reader name, for --card (default: the one reader "
                   "with a card)")
    p.add_argument("--pin-file", type=Path, help="file holding the card's or token's PIN, "
                   "for --card or --token (default: asked on the terminal)")
    add_token_arguments(p)
    p.add_argument("--key", type=Path, help="sign with a rehearsal identity key file "
                   "(needs --rehearsal)")
    p.add_argument("--rehearsal", action="store_true", help="allow a plain identity key "
                   "file (--key); such a signature is for rehearsals only")
    p.add_argument("--policy", type=Path, help="policy file (default: the script's "
                   "policy.path, relative to the script)")


def add_token_arguments(p: argparse.ArgumentParser) -> None:
    """--token, --key-label, --module: an identity key on the signer's own PKCS#11 token."""
    p.add_argument("--token", metavar="URI", help="sign with the participant's identity key "
                   "on their own PKCS#11 token (pkcs11:token=LABEL), found by --key-label")
    p.add_argument("--key-label", help="with --token: the identity key's label")
    p.add_argument("--module", help="with --token: the PKCS#11 module (default: SoftHSM2's, "
                   "or $CEREMONY_PKCS11_MODULE)")


def add_state_argument(p: argparse.ArgumentParser) -> None:
    """--state FILE for `run` and `recover`."""
    p.add_argument("--state", type=Path, help="the version state file that refuses an older "
                   "script (default: $XDG_STATE_HOME/ceremony/versions.json or "
                   "~/.local/state/ceremony/versions.json; a rehearsal uses none unless given)")


def sigs_path(script_path: Path) -> Path:
    """SCRIPT.sigs: the detached signatures beside the script."""
    from ceremony.model.authorization import SIGS_SUFFIX

    return script_path.with_name(script_path.name + SIGS_SUFFIX)


def authorize(script_path: Path, script: Script, policy: Policy, *, rehearsal: bool,
              state: Path | None, resume: bool = False) -> Presented:
    """Read SCRIPT.sigs and the version state for the engine, and check them now.

    The engine checks again when the ceremony starts; checking here too refuses an
    unauthorized or outdated script before any token is opened or PIN share read. A
    rehearsal reads no version state unless ``state`` is given (so rehearsing never blocks
    the real run of a version), and a rehearsal without SCRIPT.sigs is waived. A resume
    was checked when it started (its transcript says how); nothing is read for it.
    """
    from ceremony.adapters.versions import VersionState, default_path
    from ceremony.model.authorization import (
        Presented,
        authorization_record,
        rollback_record,
    )

    if resume:
        return Presented()
    path = sigs_path(script_path)
    try:
        sigs = path.read_bytes() if path.is_file() else None
    except OSError as exc:
        raise UsageError(f"{path} cannot be read ({exc.strerror})") from None
    versions = None
    if state is not None or not rehearsal:
        versions = VersionState(state or default_path())
    presented = Presented(sigs, str(path), versions is not None,
                          versions.last(script.ceremony_id) if versions is not None else None,
                          str(versions.path) if versions is not None else "")
    authorization_record(script, policy, presented, rehearsal=rehearsal)
    rollback_record(script, presented, rehearsal=rehearsal)
    return presented


def record_sealed(state: Path | None, script: Script, bundle: Path) -> None:
    """Once the ceremony in ``bundle`` is sealed, record its version in the state file.

    Reads the seal from the transcript (its last line), so it serves every front end and
    a resume that only finishes a sealed bundle. Does nothing when the ceremony is not
    sealed or its start did not check the version (a waived rehearsal); a rehearsal's
    state is only ever the ``--state`` file named, never the default.
    """
    from ceremony.adapters.versions import VersionState, default_path
    from ceremony.model.authorization import CHECKED
    from ceremony.transcript import parse_lines

    path = bundle / "transcript.jsonl"
    lines = parse_lines(path.read_bytes(), str(path)) if path.is_file() else []
    if not lines or lines[-1].entry.event != "seal":
        return
    first, seal = lines[0].entry.payload, lines[-1]
    rollback = first.get("rollback")
    if not isinstance(rollback, dict) or rollback.get("status") != CHECKED:
        return
    if first.get("rehearsal") is not False and state is None:
        return
    outcome = str(seal.entry.payload["statement"]["outcome"])
    VersionState(state or default_path()).record_sealed(
        script.ceremony_id, script.version, seal.hash, outcome, seal.entry.time, bundle)


def cmd_script(args: argparse.Namespace, load: Any) -> int:
    """`ceremony script sign`: exit 0 signed; 1 the script, the signer or the file refused;
    2 bad usage; 3 the card refused."""
    from ceremony.adapters.system import SystemClock
    from ceremony.canonical import digest, sha256_hex
    from ceremony.display import words
    from ceremony.model import statements as st
    from ceremony.model.authorization import (
        SIGNED,
        authorizers,
        check_signatures,
        parse_signatures,
        quorum_problem,
        roles_text,
        signature_line,
        statement_for,
    )
    from ceremony.model.rules import check_policy
    from ceremony.model.script import article
    from ceremony.transcript import format_time

    script, policy, script_bytes, _ = load(args.script, args.policy)
    participant = script.participant(args.participant)
    if participant is None:
        raise UsageError(f"{args.participant!r} is not a participant of {args.script}",
                         hint=f"the authorizers are {', '.join(authorizers(script, policy))}")
    if participant.role not in policy.authorization.roles:
        raise CheckFailed(f"{participant.id} is {article(participant.role)}, and policy "
                          f"{policy.policy_id!r} lets only {roles_text(policy)} authorize "
                          "scripts", hint=f"the authorizers are "
                          f"{', '.join(authorizers(script, policy))}", requirement=SIGNED)
    violations = check_policy(script, policy, rehearsal=args.rehearsal,
                              script_text=script_bytes.decode())
    if violations:
        for v in violations[1:]:
            print(f"ceremony: {v.describe()}", file=sys.stderr)
        raise CheckFailed(f"{violations[0].message} [{violations[0].requirement}]; a script "
                          "that breaks its policy is not signed", hint="fix it and run "
                          "`ceremony lint` until it is clean")
    path = sigs_path(args.script)
    existing = path.read_bytes() if path.is_file() else b""
    found = check_signatures(script, policy, parse_signatures(existing, str(path)), str(path))
    if any(s.participant == participant.id for s in found):
        raise UsageError(f"{participant.id} has already signed this script in {path}",
                         hint="each authorizer signs once")
    signer = _signer(args, participant.id, participant.public_key, participant.public_key_bytes)
    statement = statement_for(script, participant.id, participant.role,
                              format_time(SystemClock().now()))
    signature = signer.sign(st.message(statement))
    if not st.verify_ed25519(participant.public_key_bytes, signature, st.message(statement)):
        raise CheckFailed(f"the signature does not verify with {participant.id}'s identity key",
                          hint="the card or key is faulty; do not use it", requirement=SIGNED)
    write_atomically(path, existing + signature_line(statement, signature))
    found = parse_signatures(path.read_bytes(), str(path))
    auth = policy.authorization
    missing = quorum_problem(script, policy, found)
    print(f"{participant.id} ({participant.role}) signed script {script.ceremony_id} version "
          f"{script.version}\n"
          f"  script SHA-256: {sha256_hex(script_bytes)}\n"
          f"           words: {words(sha256_hex(script_bytes))}\n"
          f"  statement SHA-256: {digest(statement)}\n"
          f"  {path}: {len(found)} signature(s) ({', '.join(s.participant for s in found)})"
          + ("" if not auth.required else f" of the {auth.signers} policy "
             f"{policy.policy_id!r} requires" + ("" if missing else "; the script may run")))
    return EXIT_OK


def _signer(args: argparse.Namespace, pid: str, public_key: str, raw: bytes) -> Any:
    """The card (--card), identity token (--token) or rehearsal key file (--key) that
    signs for ``pid``."""
    if [bool(args.card), args.token is not None, args.key is not None].count(True) != 1:
        raise UsageError("give one of --card, --token URI or --key FILE", hint="authorizers "
                         "sign with their card or identity token; key files are for "
                         "rehearsals")
    if args.token is not None:
        return _token_signer(args, pid, raw)
    if args.key is not None:
        from ceremony.adapters.identity import KeyFileSigner

        if not args.rehearsal:
            raise UsageError("plain identity key files are allowed only in a rehearsal",
                             hint="add --rehearsal, or sign with the authorizer's card "
                                  "(--card)", requirement="CER-IDENTITY")
        signer = KeyFileSigner.load(pid, args.key)
        if signer.public_key != public_key:
            raise CheckFailed(f"the key in {args.key} is not {pid}'s identity key (the script "
                              f"names {public_key})", hint=f"give {pid}'s own key file",
                              requirement="CER-SCRIPT-SIGNED")
        return signer
    from ceremony.adapters.openpgp_card import CardSigner
    from ceremony.cli.login import read_pin

    return CardSigner(pid, lambda: read_pin(args.pin_file, "card PIN"), reader=args.reader,
                      public_key=raw)


def _token_signer(args: argparse.Namespace, pid: str, raw: bytes) -> Any:
    """``pid``'s identity key on their PKCS#11 token: checked against the script's key
    before the PIN is asked for (ceremony/adapters/token_identity.py, ADR 0020)."""
    from ceremony.adapters.pkcs11_token import module_path
    from ceremony.adapters.token_identity import TokenKey, TokenSigner
    from ceremony.cli.login import read_pin

    if not args.key_label:
        raise UsageError("--token needs --key-label LABEL",
                         hint="the label the key was enrolled with (custodian enroll --token)")
    where = TokenKey(module_path(args.module, None), args.token, args.key_label)
    return TokenSigner(pid, where, lambda: read_pin(args.pin_file, "identity token PIN"),
                       public_key=raw, reset=True)
