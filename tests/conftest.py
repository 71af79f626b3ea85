"""Shared fixtures: real SoftHSM2 tokens per test, fakes for engine unit tests.

Where a real component is missing a test may skip locally with a loud reason; under CI
(the CI variable is set) a missing component is a failure, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ceremony.rehearsal import Cast, make_cast, sample_texts
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock
from tests.pcsc_fixtures import pcsc_stack, virtual_card

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
REPO = Path(__file__).resolve().parent.parent


def require(available: bool, what: str) -> None:
    """Skip loudly when a real component is missing; fail under CI."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: run scripts/setup.sh")
    pytest.skip(f"{what} is not installed here (scripts/setup.sh installs it)")


@dataclass
class SoftHsm:
    directory: Path
    conf: Path
    label: str
    pin: str  # the user PIN (split activation replaces it; tests keep the new one here)
    so_pin: str = "654321"
    module: str = SOFTHSM_MODULE

    @property
    def uri(self) -> str:
        return f"pkcs11:token={self.label}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def objects(self) -> list[str]:
        """Every object on the token, as pkcs11-tool sees it (independent of our adapter)."""
        tool = shutil.which("pkcs11-tool")
        assert tool, "pkcs11-tool (opensc) is needed to inspect tokens"
        out = subprocess.run(
            [tool, "--module", self.module, "--token-label", self.label, "--login",
             "--pin", self.pin, "--list-objects"], capture_output=True, text=True,
            env=self.env, check=True).stdout
        return [line.strip() for line in out.splitlines() if line.strip().startswith(
            ("Private Key Object", "Public Key Object", "Secret Key Object"))]


@pytest.fixture
def softhsm(tmp_path: Path) -> Iterator[SoftHsm]:
    """A fresh SoftHSM2 token in its own directory, with SOFTHSM2_CONF pointing at it."""
    require(shutil.which("softhsm2-util") is not None and Path(SOFTHSM_MODULE).is_file(),
            "SoftHSM2")
    directory = tmp_path / "softhsm"
    (directory / "tokens").mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    label = f"test-{tmp_path.name[-20:]}"
    token = SoftHsm(directory, conf, label, "123456")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin",
                    token.pin, "--so-pin", token.so_pin], check=True, capture_output=True,
                   env=token.env)
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    yield token
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture
def cast() -> Cast:
    """The sample script with deterministic participant keys (seeded)."""
    script_text, _ = sample_texts()
    return make_cast(script_text, SeededRandom("participants"))


@pytest.fixture
def policy_text() -> str:
    return sample_texts()[1]


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `ceremony` command in a subprocess."""
    return subprocess.run([sys.executable, "-m", "ceremony.cli.main", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
                          check=False)


__all__ = ["FakeToken", "MemorySecrets", "SeededRandom", "TickingClock", "pcsc_stack",
           "run_cli", "virtual_card"]
