"""The UI loads no device library until a step needs one (the token is opened in a worker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEVICE_LIBRARIES = ("pkcs11", "shamir_mnemonic", "smartcard", "qrcode")
# SLIP-39 test vector 1 (a public share), as in tests/test_tui_snapshots.py.
SHARE = ("duckling enlarge academic academic agency result length solution fridge kidney coal "
         "piece deal husband erode duke ajar critical decision keyboard")

# Imports the UI and paints its first screen (the start screen, digests as words included),
# has a share typed back, then reports which device libraries are loaded.
CODE = """
import asyncio, json, sys
from pathlib import Path
from ceremony.rehearsal import make_cast, sample_texts
import ceremony.tui.app, ceremony.tui.screens, ceremony.tui.widgets, ceremony.tui.shares
import ceremony.tui.devices, ceremony.tui.typeback
after_import = sorted(m for m in sys.modules if m.split(".")[0] in {libs!r})
from ceremony.model.policy import parse_policy
from ceremony.tui.app import CeremonyApp, RunSetup
from ceremony.tui.screens import StartScreen

def never(pin):
    raise AssertionError("the token must not be opened")

async def main():
    import os
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, os.urandom)
    setup = RunSetup(cast.script, parse_policy(policy_text, "p"), b"", b"",
                     Path({out!r}), True, never)
    app = CeremonyApp(setup)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, StartScreen)
        # A share typed back (completion, word marks, checksum) loads no library either.
        from ceremony.tui.screens import PrivateShareScreen, TypeBackScreen
        from ceremony.tui.shares import ShareSlot
        slot = ShareSlot("alice", "Alice", 1, 1, bytearray({share!r}.encode()))
        app.push_screen(PrivateShareScreen(slot))
        await pilot.pause()
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, TypeBackScreen)
        app.screen.query_one("#word").value = " ".join(w[:4] for w in {share!r}.split()) + " "
        await pilot.pause()
        await pilot.pause()
        assert slot.delivered and not any(slot.secret)
asyncio.run(main())
after_screen = sorted(m for m in sys.modules if m.split(".")[0] in {libs!r})
print(json.dumps([after_import, after_screen]))
"""


def test_ui_start_loads_no_device_library(tmp_path: Path) -> None:
    code = CODE.format(libs=DEVICE_LIBRARIES, out=str(tmp_path / "bundle"), share=SHARE)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    after_import, after_screen = json.loads(result.stdout.strip().splitlines()[-1])
    assert after_import == []
    assert after_screen == []


def test_the_check_sees_a_device_library() -> None:
    """The same sys.modules check does report a library once the token adapter is loaded."""
    code = ("import sys, ceremony.adapters.pkcs11_token, ceremony.adapters.slip39\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DEVICE_LIBRARIES!r}"
            " and '.' not in m))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60, check=True)
    assert "pkcs11" in result.stdout and "shamir_mnemonic" in result.stdout
