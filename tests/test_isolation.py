"""The verifier runs with no device or UI library, and the core never imports one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "vectors" / "golden"
BLOCKED = ("pkcs11", "smartcard", "textual", "qrcode", "shamir_mnemonic")

# Installed before anything else: importing a blocked library (or a submodule) fails as if
# it were not installed, as on an auditor's machine with only Python and cryptography.
RUN_BLOCKED = """
import runpy, sys
BLOCKED = {blocked!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
sys.argv = ["python -m ceremony.verify", *{args!r}]
runpy.run_module("ceremony.verify", run_name="__main__", alter_sys=True)
"""


def run_blocked(*args: str, also: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    code = RUN_BLOCKED.format(blocked=BLOCKED + also, args=list(args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)


def test_blocker_blocks() -> None:
    """The finder really refuses the libraries (or a pass below would prove nothing)."""
    code = RUN_BLOCKED.split("sys.argv")[0] + "import shamir_mnemonic\n"
    result = subprocess.run([sys.executable, "-c", code.format(blocked=BLOCKED)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "shamir_mnemonic is blocked in this test" in result.stderr


@pytest.mark.parametrize("also", [(), ("orjson",)], ids=["with-orjson", "without-orjson"])
@pytest.mark.parametrize(("directory", "outcome"), [("bundle", "completed"),
                                                    ("aborted-bundle", "aborted")])
def test_verify_without_device_libraries(directory: str, outcome: str,
                                         also: tuple[str, ...]) -> None:
    """orjson only speeds the canonical check up: without it the verdict is the same."""
    result = run_blocked(str(GOLDEN / directory), also=also)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED" in result.stdout and "NOT VERIFIED" not in result.stdout
    assert f"outcome {outcome}" in result.stdout


def test_verify_json_and_failure_without_device_libraries() -> None:
    result = run_blocked("--json", str(GOLDEN / "bundle"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verified"] is True
    tampered = REPO / "tests" / "vectors" / "tamper" / "dropped-entry" / "bundle"
    result = run_blocked(str(tampered), also=("orjson",))
    assert result.returncode == 1, result.stderr
    assert "NOT VERIFIED" in result.stdout


def test_core_imports_no_device_or_ui_library() -> None:
    code = (
        "import sys, json\n"
        "import ceremony.verify, ceremony.verify.__main__, ceremony.engine.core\n"
        "import ceremony.model.script, ceremony.canonical\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert "ceremony" in loaded
    assert not loaded & {"textual", "pkcs11", "smartcard", "qrcode"}, loaded
