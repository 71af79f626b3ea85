"""Logging in to a ceremony's token the way its script says: split, PIN pad or known PIN.

The CLI's one place that turns PIN files, officers' PIN share sheets or a PIN pad into an
open Pkcs11Token whose ``login`` record says how it was opened (the transcript keeps that
record; never a PIN). The PIN lives in a bytearray that is wiped once the token has it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ceremony.errors import UsageError
from ceremony.model.script import Activation, Script

if TYPE_CHECKING:
    from ceremony.adapters.pkcs11_token import Pkcs11Token
    from ceremony.tui.app import TypedPinShares


def read_pin(path: Path | None, what: str = "token user PIN") -> bytearray:
    """A PIN from a file (trailing newline dropped) or typed without echo on a terminal."""
    if path is None:
        import getpass

        if not sys.stdin.isatty():
            raise UsageError("no PIN: pass --pin-file FILE when there is no terminal")
        return bytearray(getpass.getpass(f"{what}: ").encode())
    try:
        pin = bytearray(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read the PIN file {path} ({exc.strerror})") from None
    while pin and pin[-1] in b"\r\n":
        pin.pop()
    if not pin:
        raise UsageError(f"the PIN file {path} is empty")
    return pin


def open_token(activation: Activation, module: str, uri: str, *, pin_file: Path | None,
               pin_shares: list[Path]) -> Pkcs11Token:
    """The logged-in Pkcs11Token for a script whose token is activated by ``activation``.

    A known PIN comes from ``pin_file`` (or the terminal), split knowledge from the
    officers' PIN share sheets, a PIN pad from the token itself; any other combination is
    refused before the token is touched.
    """
    from ceremony.adapters.activation import combine_pin, read_sheets
    from ceremony.adapters.pkcs11_token import Pkcs11Token
    from ceremony.engine.derive import wipe

    if activation.mode == "split":
        if pin_file is not None:
            raise UsageError("the script's token is activated by split knowledge: no one "
                             "knows its PIN, so --pin-file does not apply",
                             hint=f"{activation.threshold} of the officers "
                                  f"({', '.join(activation.officers)}) present their PIN "
                                  "share sheets with --pin-share SHEET",
                             requirement="CER-ACTIVATION")
        pin, record = combine_pin(activation, read_sheets(pin_shares),
                                  where="--pin-share")
        try:
            return Pkcs11Token(module, uri, pin, login=record)
        finally:
            wipe(pin)
    if pin_shares:
        raise UsageError(f"the script's token activation is {activation.mode}, so "
                         "--pin-share does not apply",
                         hint="set [token.activation] mode = \"split\" in the script to "
                              "use PIN shares", requirement="CER-ACTIVATION")
    if activation.mode == "pin-pad":
        if pin_file is not None:
            raise UsageError("the script's token takes its PIN on its own PIN pad, so "
                             "--pin-file does not apply", requirement="CER-ACTIVATION")
        return Pkcs11Token(module, uri, None, login=activation.record())
    pin = read_pin(pin_file)
    try:
        return Pkcs11Token(module, uri, pin, login=activation.record())
    finally:
        wipe(pin)


@dataclass
class UiLogin:
    """What `ceremony run` and `ceremony recover` in the UI need to open the token."""

    signers: dict[str, object]  # rehearsal identity key files from --answers
    uri: str
    pin: bytearray | None  # a known PIN from --pin-file (None: asked on the start screen)
    connect: Callable[[], Pkcs11Token] | None  # logs in by itself (sheets, PIN pad)
    typed: TypedPinShares | None  # officers type their PIN shares on the start screen

    @property
    def needs_pin(self) -> bool:
        return self.pin is None and self.connect is None and self.typed is None


def ui_login(args: argparse.Namespace, script: Script) -> UiLogin:
    """Signers, token URI and login mode for a UI run, from the command line and script."""
    from ceremony.tui.app import TypedPinShares

    signers: dict[str, object] = {}
    if args.answers is not None:
        from ceremony.adapters.identity import KeyFileSigner
        from ceremony.model.answers import load_answers

        answers = load_answers(args.answers, script)
        if answers.identities and not args.rehearsal:
            raise UsageError("plain identity key files are allowed only in a rehearsal",
                             hint="add --rehearsal, or approve with custodian cards",
                             requirement="CER-IDENTITY")
        signers = {pid: KeyFileSigner.load(pid, path)
                   for pid, path in answers.identities.items()}
    uri = args.token or script.token.uri
    if uri is None:
        raise UsageError("no token given", hint="pass --token pkcs11:token=LABEL or set "
                         "token.uri in the script")
    activation = script.token.activation
    if activation.mode == "split" and not args.pin_share:
        # The officers type their PIN shares on the start screen (nobody brings a file).
        if args.pin_file is not None:
            raise UsageError("the script's token is activated by split knowledge: no one "
                             "knows its PIN, so --pin-file does not apply",
                             hint=f"{activation.threshold} of the officers "
                                  f"({', '.join(activation.officers)}) type their PIN "
                                  "shares in the UI (or pass --pin-share SHEET)",
                             requirement="CER-ACTIVATION")
        return UiLogin(signers, uri, None, None, TypedPinShares(activation))
    if activation.mode == "known-pin" and not args.pin_share:
        return UiLogin(signers, uri, read_pin(args.pin_file) if args.pin_file else None,
                       None, None)
    from ceremony.adapters.pkcs11_token import module_path

    def connect() -> Pkcs11Token:
        return open_token(activation, module_path(args.module, script.token.module), uri,
                          pin_file=args.pin_file, pin_shares=args.pin_share)

    return UiLogin(signers, uri, None, connect, None)
