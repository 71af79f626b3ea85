"""How the UI opens real devices: called inside the worker that opens the token.

Every device library (python-pkcs11, shamir-mnemonic) is imported here, inside the
function the worker runs, never when the UI starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ceremony.tui.app import OpenedDevices
from ceremony.tui.shares import PrivateShares


def token_opener(module: str | None, uri: str, ceremony_id: str, sheets: Path | None,
                 pin: bytearray | None = None,
                 before: Callable[[], tuple[str, bytearray]] | None = None,
                 after: Callable[[], None] | None = None,
                 script_module: str | None = None) -> Callable[[bytearray | None], OpenedDevices]:
    """A function that opens the PKCS#11 token and builds the engine's devices.

    ``module`` is the --module option (None: the script's token.module, then the default).

    ``pin`` is a PIN read from a file (else the UI asks for one); ``before`` may make the
    token first (a rehearsal's throwaway SoftHSM2 token: it returns the URI and PIN) and
    ``after`` cleans up once the token is closed.
    """

    def open_devices(typed: bytearray | None) -> OpenedDevices:
        from ceremony.adapters.pkcs11_token import Pkcs11Token, module_path
        from ceremony.adapters.sharesheets import ShareSheetDirectory
        from ceremony.adapters.slip39 import Slip39Splitter
        from ceremony.adapters.system import OsRandomness, SystemClock
        from ceremony.engine.core import Devices

        token_uri, token_pin = (before() if before else (uri, pin or typed or bytearray()))
        try:
            token = Pkcs11Token(module_path(module, script_module), token_uri, token_pin)
        except BaseException:
            if after:
                after()
            raise
        shares = PrivateShares(ShareSheetDirectory(sheets, ceremony_id) if sheets else None)
        devices = Devices(SystemClock(), OsRandomness(), token, Slip39Splitter(), shares)

        def close() -> None:
            token.close()
            if after:
                after()

        return OpenedDevices(devices, shares, close)

    return open_devices
