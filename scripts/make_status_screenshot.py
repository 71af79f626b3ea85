"""Write the status screen's screenshot for docs/status.md (deterministic SVG).

    python scripts/make_status_screenshot.py

docs/screenshots/status.svg is `ceremony status --tui` at 80x24 over a directory holding
the golden bundle, the golden aborted bundle and the dropped-entry tamper vector, as seen
on 2046-01-15 (after the golden key's rotation date). The inputs are fixed test vectors
copied into a temporary directory shown by its relative name, so re-running this only
changes the picture when the screen does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ceremony.status import status
from ceremony.tui.status import StatusApp

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots" / "status.svg"
VECTORS = REPO / "tests" / "vectors"
BUNDLES = (("root-2026", VECTORS / "golden" / "bundle"),
           ("aborted", VECTORS / "golden" / "aborted-bundle"),
           ("tampered", VECTORS / "tamper" / "dropped-entry" / "bundle"))
AT = datetime(2046, 1, 15, tzinfo=UTC)


async def shoot(directory: Path) -> str:
    app = StatusApp(status(directory, AT))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        return app.export_screenshot(title="ceremony status")


def main() -> None:
    os.environ.pop("NO_COLOR", None)  # Textual reads it when an App is made: shoot in colour
    with tempfile.TemporaryDirectory() as tmp:
        for name, bundle in BUNDLES:
            shutil.copytree(bundle, Path(tmp) / "ceremonies" / name)
        os.chdir(tmp)
        OUT.write_text(asyncio.run(shoot(Path("ceremonies"))), encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
