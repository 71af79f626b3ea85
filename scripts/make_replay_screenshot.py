"""Write the replay view's screenshots for docs/auditor-guide.md (deterministic SVG).

    python scripts/make_replay_screenshot.py

docs/screenshots/replay.svg is the golden bundle (tests/vectors/golden/bundle) at 80x24;
docs/screenshots/replay-not-verified.svg is the dropped-entry tamper vector after `f`.
Both come from fixed test vectors, so re-running this only changes them when the view does.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ceremony.tui.replay import ReplayApp

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
SHOTS = (
    ("replay.svg", REPO / "tests" / "vectors" / "golden" / "bundle", ()),
    ("replay-not-verified.svg",
     REPO / "tests" / "vectors" / "tamper" / "dropped-entry" / "bundle", ("f",)),
)


async def shoot(bundle: Path, keys: tuple[str, ...]) -> str:
    app = ReplayApp(bundle)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if keys:
            await pilot.press(*keys)
            await pilot.pause()
        return app.export_screenshot(title="ceremony replay")


def main() -> None:
    os.environ.pop("NO_COLOR", None)  # Textual reads it when an App is made: shoot in colour
    OUT.mkdir(parents=True, exist_ok=True)
    for name, bundle, keys in SHOTS:
        (OUT / name).write_text(asyncio.run(shoot(bundle, keys)), encoding="utf-8")
        print(f"wrote {(OUT / name).relative_to(REPO)}")


if __name__ == "__main__":
    main()
