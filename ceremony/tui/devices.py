"""How the UI opens real devices: called inside the worker that opens the token.

Every device library (python-pkcs11, shamir-mnemonic) is imported here, inside the
function the worker runs, never when the UI starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ceremony.tui.app import OpenedDevices, RunSetup, TypedPinShares
from ceremony.tui.shares import PrivateShares

if TYPE_CHECKING:
    from ceremony.adapters.pkcs11_token import Pkcs11Token
    from ceremony.engine.ports import SecretOutput
    from ceremony.rehearsal import Rehearsal


def token_opener(module: str | None, uri: str, ceremony_id: str, sheets: Path | None,
                 pin: bytearray | None = None,
                 before: Callable[[], tuple[str, bytearray, dict[str, object]]] | None = None,
                 after: Callable[[], None] | None = None,
                 script_module: str | None = None,
                 connect: Callable[[], Pkcs11Token] | None = None,
                 typed_shares: TypedPinShares | None = None,
                 recovery: bool = False,
                 ) -> Callable[[bytearray | None], OpenedDevices]:
    """A function that opens the PKCS#11 token and builds the engine's devices.

    ``module`` is the --module option (None: the script's token.module, then the default).

    ``pin`` is a PIN read from a file (else the UI asks for one); ``before`` may make the
    token first (a rehearsal's throwaway SoftHSM2 token: it returns the URI, the PIN and
    the login record) and ``after`` cleans up once the token is closed. ``connect``, when
    given, logs in by itself (split activation from PIN share sheets, or a PIN pad).
    ``typed_shares`` (split activation, the same object as the RunSetup's) holds the PIN
    shares the officers typed on the start screen: the PIN is rebuilt from them here, in
    the worker, and the shares and the PIN are wiped once the token has it. A ``recovery``
    hands out no shares: its engine gets the SecretOutput that refuses to write one.
    """

    def open_devices(typed: bytearray | None) -> OpenedDevices:
        from ceremony.adapters.pkcs11_token import Pkcs11Token, module_path
        from ceremony.adapters.qrcodes import BundleCodes
        from ceremony.adapters.sharesheets import ShareSheetDirectory
        from ceremony.adapters.slip39 import Slip39Splitter
        from ceremony.adapters.system import OsRandomness, SystemClock
        from ceremony.adapters.transcript_pdf import BundlePrinter
        from ceremony.engine.core import Devices

        try:
            if connect is not None:
                token = connect()
            elif typed_shares is not None:
                token = _open_with_shares(module_path(module, script_module), uri,
                                          typed_shares)
            else:
                token_uri, token_pin, login = (before() if before else
                                               (uri, pin or typed or bytearray(), None))
                token = Pkcs11Token(module_path(module, script_module), token_uri, token_pin,
                                    login=login)
        except BaseException:
            if after:
                after()
            raise
        shares = PrivateShares(ShareSheetDirectory(sheets, ceremony_id)
                               if sheets and not recovery else None)
        output: SecretOutput = shares
        if recovery:
            from ceremony.engine.recovery import NoSecretOutput

            output = NoSecretOutput()
        devices = Devices(SystemClock(), OsRandomness(), token, Slip39Splitter(), output,
                          BundleCodes(), BundlePrinter())

        def close() -> None:
            token.close()
            if after:
                after()

        return OpenedDevices(devices, shares, close)

    return open_devices


def _open_with_shares(module: str, uri: str, typed: TypedPinShares) -> Pkcs11Token:
    """Log in with the PIN rebuilt from the typed shares (combine_pin checks them again)."""
    from ceremony.adapters.pkcs11_token import Pkcs11Token
    from ceremony.engine.derive import wipe

    pin, record = typed.combine()
    try:
        return Pkcs11Token(module, uri, pin, login=record)
    finally:
        wipe(pin)


def rehearsal_setup(out: Path) -> tuple[RunSetup, Rehearsal, contextlib.ExitStack]:
    """What `ceremony rehearse --tui` runs: the sample ceremony with simulated participants.

    The throwaway SoftHSM2 token is made when the UI opens it and removed when the returned
    stack is closed (the caller closes it after the app ends).
    """
    from ceremony.adapters.softhsm import SOFTHSM_MODULE
    from ceremony.model.authorization import Presented
    from ceremony.model.policy import parse_policy
    from ceremony.rehearsal import (
        prepare_rehearsal,
        rehearsal_attestation,
        rehearsal_login,
        throwaway_token,
    )

    prepared = prepare_rehearsal(out)
    cast = prepared.cast
    policy = parse_policy(prepared.policy_text, "policy.toml")
    attestation = rehearsal_attestation(cast.script, policy)
    stack = contextlib.ExitStack()

    def make_token() -> tuple[str, bytearray, dict[str, object]]:
        throwaway = stack.enter_context(throwaway_token(say=lambda _: None))
        pin, login = rehearsal_login(throwaway, cast.script, prepared.secret)
        return throwaway.uri, pin, login

    opener = token_opener(SOFTHSM_MODULE, "", cast.script.ceremony_id, prepared.shares,
                          before=make_token, after=stack.close)
    setup = RunSetup(cast.script, policy,
                     cast.script_text.encode(), prepared.policy_text.encode(),
                     prepared.bundle, True, opener, cast.signers,  # type: ignore[arg-type]
                     device_name="a throwaway SoftHSM2 token (made when opened)",
                     authorization=Presented(prepared.sigs, str(prepared.sigs_path)),
                     attestation=attestation)
    return setup, prepared, stack
