"""Logging in to a ceremony's token the way its script says: split, PIN pad or known PIN.

The CLI's one place that turns PIN files, officers' PIN share sheets or a PIN pad into an
open Pkcs11Token whose ``login`` record says how it was opened (the transcript keeps that
record; never a PIN). The PIN lives in a bytearray that is wiped once the token has it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ceremony.errors import UsageError
from ceremony.model.script import Activation

if TYPE_CHECKING:
    from ceremony.adapters.pkcs11_token import Pkcs11Token


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
