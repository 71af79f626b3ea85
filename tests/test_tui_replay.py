"""`ceremony replay`: the auditor's view shows the verifier's verdict on every entry and step.

Pilot tests at 80x24 assert on what the widgets hold (marks, names, the selected row), one
snapshot guards the layout of the golden bundle's view.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TabbedContent

from ceremony.tui.replay import EntryScreen, HelpScreen, ReplayApp, load_replay
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "vectors" / "golden"
TAMPER = REPO / "tests" / "vectors" / "tamper"
SIZE = (80, 24)


def _sync(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test without an async pytest plugin (none is installed)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """NO_COLOR in the environment changes snapshots; the Pilot tests do not depend on it."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    yield


async def _loaded(pilot: Pilot[None]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _text(app: ReplayApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).content)


def _marks(app: ReplayApp) -> list[str]:
    table = app.query_one(DataTable)
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@_sync
async def test_golden_bundle_is_verified_with_every_step_completed_and_its_approvals() -> None:
    app = ReplayApp(GOLDEN / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        header = _text(app, "#header")
        assert "✓ VERIFIED" in header
        assert "REHEARSAL" in header
        assert "outcome: completed" in header
        assert app.replay is not None
        head = app.replay.report.head
        assert head is not None and head in header
        assert app.replay.root_fingerprint is not None
        assert app.replay.root_fingerprint in header
        assert set(_marks(app)) == {"✓"}
        await pilot.press("2")
        steps = [str(s.content) for s in app.query(".step").results(Static)]
        assert len(steps) == 3
        assert all(s.startswith("✓ completed") for s in steps), steps
        assert "custodian alice (Alice Custodian)" in steps[1]
        assert "custodian bob (Bob Custodian)" in steps[1]
        assert "witness   wendy (Wendy Witness)" in steps[1]
        assert "Carol" not in "".join(steps)  # she did not approve
        assert all("✓ signed" in s for s in steps)
        await pilot.press("3")
        assert "Nothing failed verification." in _text(app, "#failures")
    assert app.verified


@_sync
async def test_aborted_bundle_shows_outcome_aborted() -> None:
    app = ReplayApp(GOLDEN / "aborted-bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        header = _text(app, "#header")
        assert "✓ VERIFIED" in header
        assert "outcome: aborted" in header
        await pilot.press("2")
        steps = [str(s.content) for s in app.query(".step").results(Static)]
        assert steps[0].startswith("✓ completed")
        assert steps[2].startswith("⊘ aborted")


@_sync
async def test_tampered_bundle_is_not_verified_and_f_jumps_to_the_failing_line() -> None:
    expect = json.loads((TAMPER / "dropped-entry" / "expect.json").read_text())
    app = ReplayApp(TAMPER / "dropped-entry" / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        header = _text(app, "#header")
        assert "✗ NOT VERIFIED: step 3 (chain) failed at line 9 [CER-CHAIN]" in header
        assert "head?" in header  # recorded, not vouched for
        marks = _marks(app)
        line = expect["line"]
        assert marks[line - 1] == "✗"
        assert set(marks[:line - 1]) == {"·"}
        assert set(marks[line:]) == {"…"}
        table = app.query_one(DataTable)
        assert table.cursor_row == 0
        await pilot.press("f")
        assert table.cursor_row == line - 1
        assert "✗ FAILED verification" in _text(app, "#position")
        assert "provision-root-key: ✗ failed verification" in _text(app, "#position")
        await pilot.press("3")
        failures = _text(app, "#failures")
        assert "✗ step 3 (chain) [CER-CHAIN]" in failures
        assert "transcript.jsonl line 9" in failures
        assert expect["detail"] in failures
        assert "steps 4 to 10 did not run" in failures
    assert not app.verified


@_sync
async def test_failure_without_a_line_opens_the_verifier_summary() -> None:
    app = ReplayApp(TAMPER / "missing-sha256sums-sig" / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        assert set(_marks(app)) == {"…"}  # the verifier checked no entry
        await pilot.press("f")
        assert app.query_one(TabbedContent).active == "verifier"
        assert "missing SHA256SUMS.sig" in _text(app, "#failures")


@_sync
async def test_unparseable_bundle_still_opens_with_the_verifier_report(tmp_path: Path) -> None:
    bundle = tmp_path / "broken"
    shutil.copytree(GOLDEN / "bundle", bundle)
    (bundle / "script.toml").unlink()
    data = (bundle / "transcript.jsonl").read_bytes()
    (bundle / "transcript.jsonl").write_bytes(b"X" + data[1:])  # line 1 is not JSON
    app = ReplayApp(bundle)
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        assert "✗ NOT VERIFIED: step 1 (bundle)" in _text(app, "#header")
        table = app.query_one(DataTable)
        assert table.row_count == 22
        assert "line 1 unreadable" in str(table.get_row_at(0)[5])
        await pilot.press("2")
        assert "script.toml cannot be read" in "".join(
            str(s.content) for s in app.query(".step").results(Static))
        await pilot.press("3")
        report = _text(app, "#report")
        assert "✗ FAIL     1. bundle: missing script.toml" in report
        assert "… not run  2. parse" in report


@_sync
async def test_navigation_keys_move_the_selection() -> None:
    app = ReplayApp(GOLDEN / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        table = app.query_one(DataTable)
        await pilot.press("n", "n", "n")
        assert table.cursor_row == 3
        await pilot.press("p")
        assert table.cursor_row == 2
        await pilot.press("s")  # the next script step starts at seq 5
        assert table.cursor_row == 5
        assert "step 2/3 provision-root-key: ✓ completed" in _text(app, "#position")
        await pilot.press("s")
        assert table.cursor_row == 17
        await pilot.press("p", "p", "p", "3", "n")  # n comes back to the entries
        assert app.query_one(TabbedContent).active == "entries"
        assert table.cursor_row == 15
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@_sync
async def test_entry_detail_shows_the_json_and_who_signed() -> None:
    app = ReplayApp(GOLDEN / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press(*"nnnnnn", "enter")  # seq 6: alice's approval
        assert isinstance(app.screen, EntryScreen)
        assert len(app.screen_stack) == 2
        body = _text(app, "#entry-json")
        entry = json.loads(body)
        raw = (GOLDEN / "bundle" / "transcript.jsonl").read_text().splitlines()[6]
        assert entry == json.loads(raw)
        meta = _text(app, "#entry-meta")
        assert "approval by alice" in meta
        assert "alice (Alice Custodian, custodian): ✓ signature verifies" in meta
        await pilot.press("escape")
        assert not isinstance(app.screen, EntryScreen)
        table = app.query_one(DataTable)
        table.move_cursor(row=table.row_count - 1)
        await pilot.press("enter")
        meta = _text(app, "#entry-meta")
        assert "seal by engine" in meta
        assert "seal outcome: completed" in meta
        assert "transcript key: ✓ signature verifies" in meta
        assert "root key (proof of possession): ✓ signature verifies" in meta


@_sync
async def test_forged_seal_shows_which_signature_fails() -> None:
    app = ReplayApp(TAMPER / "forged-seal" / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await _loaded(pilot)
        await pilot.press("f", "enter")
        meta = _text(app, "#entry-meta")
        assert "verification: ✗ FAILED verification" in meta
        assert "transcript key: ✗ signature does NOT verify" in meta


def test_recovery_bundle_checks_the_seal_with_the_recovered_root_key(tmp_path: Path) -> None:
    """A recovery records its key in root_key.recovered (not root_key.created): the replay
    checks the seal's proof of possession with it, as `ceremony verify` does."""
    from tests.test_recovery import fake_original, fake_recovery, to_shares

    original = fake_original(tmp_path)
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    rec.offer("carol")
    rec.offer("alice")
    assert rec.finish().outcome == "completed"
    replay = load_replay(rec.bundle)
    assert replay.report.ok, replay.report.first_failure
    seal = replay.entries[-1]
    assert seal.entry is not None and seal.entry.event == "seal"
    assert [s.describe() for s in seal.signers] == [
        "transcript key: ✓ signature verifies",
        "root key (proof of possession): ✓ signature verifies"]
    assert replay.root_fingerprint == original.original.record.fingerprint


def test_snapshot_of_the_golden_bundle(snap_compare: Callable[..., bool]) -> None:
    # The view shows only the bundle directory's name, so the snapshot does not depend on
    # where the repository is checked out.
    assert snap_compare(ReplayApp(GOLDEN / "bundle"), terminal_size=SIZE, run_before=_loaded)


def test_replay_of_a_missing_directory_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "ceremony.cli.main", "replay",
                             "/nonexistent"], capture_output=True, text=True, cwd=REPO,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ceremony: /nonexistent is not a bundle directory")
    assert "Traceback" not in result.stderr
