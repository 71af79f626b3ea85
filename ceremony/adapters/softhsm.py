"""Throwaway SoftHSM2 tokens for rehearsals and tests (never for a real ceremony)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ceremony.errors import TokenError

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass
class ThrowawayToken:
    """A SoftHSM2 token in its own directory; its config must be in SOFTHSM2_CONF first."""

    directory: Path
    label: str
    pin: bytearray  # the transport user PIN (split activation replaces it)
    so_pin: bytearray  # the transport SO PIN
    module: str = SOFTHSM_MODULE

    @property
    def uri(self) -> str:
        return f"pkcs11:token={self.label}"

    @property
    def conf(self) -> Path:
        return self.directory / "softhsm2.conf"


def create_token(directory: Path, label: str) -> ThrowawayToken:
    """Create a fresh token with random PINs and point SOFTHSM2_CONF at it.

    SOFTHSM2_CONF must be set before the module is loaded in this process, so call this
    before opening any PKCS#11 session.
    """
    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).is_file():
        raise TokenError("SoftHSM2 is not installed",
                         hint="run scripts/setup.sh (or apt-get install softhsm2)")
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin = bytearray(secrets.token_hex(8).encode())
    so_pin = bytearray(secrets.token_hex(8).encode())
    result = subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", pin.decode(),
         "--so-pin", so_pin.decode()], capture_output=True, text=True, check=False,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)})
    if result.returncode != 0:
        raise TokenError(f"softhsm2-util could not create the token ({result.stderr.strip()})")
    return ThrowawayToken(directory, label, pin, so_pin)
