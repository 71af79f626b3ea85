#!/usr/bin/env python3
"""Export SVG screenshots of the ceremony UI into docs/screenshots/ (80x24, deterministic).

    .venv/bin/python scripts/make_screenshots.py

The sample ceremony runs on the test fakes (seeded participant keys, a clock that stands
still, a seeded FakeToken), so the digests, words and transcript heads are the same on every
run; the share on the private screen is SLIP-39 test vector 1, not a real share.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.pop("NO_COLOR", None)  # before Textual reads it: the screenshots are in colour

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.fakes

from ceremony.engine.prompts import ApprovalNeeded, BeginStep, ConfirmationNeeded  # noqa: E402
from ceremony.rehearsal import make_cast, sample_texts  # noqa: E402
from ceremony.tui.app import CeremonyApp  # noqa: E402
from ceremony.tui.screens import PrivateShareScreen  # noqa: E402
from ceremony.tui.shares import ShareSlot  # noqa: E402
from tests.fakes import SeededRandom  # noqa: E402
from tests.test_tui_snapshots import FAKE_SHARE  # noqa: E402
from tests.tui_helpers import (  # noqa: E402
    drive,
    fake_setup,
    hand_out_shares,
    settle,
    type_text,
)

OUT = REPO / "docs" / "screenshots"


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    template, policy_text = sample_texts()
    cast = make_cast(template, SeededRandom("participants"))
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        app = CeremonyApp(fake_setup(Path("bundle"), cast, policy_text))

        def save(name: str) -> None:
            app.save_screenshot(f"{name}.svg", str(OUT))
            print(OUT / f"{name}.svg")

        async with app.run_test(size=(80, 24)) as pilot:
            p: Any = pilot
            await settle(p)
            save("01-start")
            await p.press("o")
            await settle(p)
            await p.press("c")
            await settle(p)
            for _ in cast.script.participants[:-1]:
                await p.press("space", "down")
            save("02-roll-call")
            await p.press("space", "b")
            await settle(p)
            save("03-step")
            await drive(p, stop=lambda q, i: isinstance(q, ApprovalNeeded) and i == 1)
            await p.press("enter")
            await settle(p)
            save("04-quorum")
            await p.press("question_mark")
            await settle(p)
            save("05-help")
            await p.press("escape")
            await drive(p, stop=lambda q, i: isinstance(q, ConfirmationNeeded))
            await type_text(p, "PROVISION ROOT KEY")
            save("06-confirmation")
            await p.press("enter")
            await settle(p)
            await p.press("n")
            await settle(p)
            save("07-shares")
            await p.press("enter")
            await settle(p)
            save("08-anyone-looking")
            await p.press("escape")
            await settle(p)
            await hand_out_shares(p)  # the real (fake-token) shares, not shown here
            app.push_screen(PrivateShareScreen(ShareSlot(
                "alice", "Alice Custodian", 1, 1, bytearray(FAKE_SHARE.encode()))))
            await settle(p)
            save("09-private-share")
            await p.press("w")  # written down: now type it back
            await settle(p)
            await type_text(p, " ".join(w[:4] for w in FAKE_SHARE.split()[:5]) + " ")
            await settle(p)
            save("09b-type-back")
            await p.press("escape")  # back to the shown share, then hide it
            await settle(p)
            await p.press("escape")
            await settle(p)
            await drive(p, stop=lambda q, i: isinstance(q, BeginStep) and i == 2)
            await p.press("t", "enter")
            await settle(p)
            save("10-transcript-entry")
            await p.press("escape")
            await p.press("a")
            await settle(p)
            await type_text(p, "ABORT")
            await p.press("enter")
            await settle(p)
            save("11-aborted")
            await p.press("enter")
            await settle(p)
            save("12-sealed")
            await p.press("r")  # the QR viewer: an aborted ceremony has its head and seal
            await settle(p)
            save("13-qr-codes")


if __name__ == "__main__":
    asyncio.run(main())
