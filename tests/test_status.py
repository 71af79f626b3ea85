"""`ceremony status` over a directory of bundles, and the printed transcript inside a bundle.

One real rehearsal (SoftHSM2, the fpdf2 printer, zbar read-back) is made per module and
shared: its bundle carries ``transcript.pdf`` under the signed checksum list. Around it the
directory gets an aborted ceremony and engine faults (seeded fakes with the stand-in
printer), a tampered copy, and lineage records (a valid one, an unsigned one). The clock
is fixed with ``--at`` / ``now``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.display import words
from ceremony.engine.core import Devices, Engine
from ceremony.engine.prompts import Abort
from ceremony.errors import CeremonyError, DeviceError
from ceremony.headless import run_headless
from ceremony.model.authorization import BUNDLE_SIGS_FILE, Presented
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import make_cast, sample_texts, sign_script, simulated_answers
from ceremony.status import status
from ceremony.tui.status import StatusApp
from ceremony.verify import verify_bundle
from tests.conftest import SOFTHSM_MODULE, require, run_cli
from tests.fakes import (
    FakeToken,
    MemorySecrets,
    SeededRandom,
    StandInPrinter,
    TickingClock,
    passing_attestation,
)

REHEARSAL_ONLY = ("rehearsal",)


@dataclass
class Fleet:
    root: Path
    good: Path  # the real rehearsal's bundle (its lineage record next to it)
    aborted: Path
    tampered: Path
    unsigned: Path  # a lineage record with no signature
    created: datetime  # when the good key was made
    head: str
    fingerprint: str


def _engine(bundle: Path, printer: object, token: FakeToken | None = None) -> Engine:
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    policy = parse_policy(policy_text, "policy.toml")
    sigs = sign_script(cast.script, policy, cast.signers, "2026-01-01T00:00:00.000000Z")
    devices = Devices(TickingClock(), SeededRandom("os"),
                      token or FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets(),
                      printer=printer)  # type: ignore[arg-type]
    return Engine.start(cast.script, policy, cast.script_text.encode(), policy_text.encode(),
                        devices, bundle, rehearsal=True,
                        authorization=Presented(sigs, BUNDLE_SIGS_FILE, state_checked=True,
                                                state_name="(a fresh state)"),
                        attestation=passing_attestation(True))


def _finish(engine: Engine) -> None:
    script_text, _ = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                 lambda _: None)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    require(Path(SOFTHSM_MODULE).is_file(), "SoftHSM2")
    root = tmp_path_factory.mktemp("status")
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    made = run_cli("rehearse", "--out", str(root / "good"), env=env)
    assert made.returncode == 0, made.stdout + made.stderr
    good = root / "good" / "bundle"
    signed = run_cli("lineage", "make", str(good), "--identities",
                     str(root / "good" / "secret" / "identities"))
    assert signed.returncode == 0, signed.stdout + signed.stderr
    aborted = root / "aborted" / "bundle"
    engine = _engine(aborted, StandInPrinter())
    engine.submit(Abort("the room was not ready"))
    tampered = root / "tampered" / "bundle"
    shutil.copytree(good, tampered)
    pdf = tampered / "transcript.pdf"
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of the printout
    pdf.write_bytes(bytes(data))
    unsigned = root / "elsewhere" / "bundle.lineage.json"
    unsigned.parent.mkdir()
    record = json.loads((root / "good" / "bundle.lineage.json").read_text())
    record["signatures"] = []
    unsigned.write_text(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    report = verify_bundle(good)
    assert report.ok and report.head and report.root_fingerprint
    lines = [json.loads(x) for x in (good / "transcript.jsonl").read_text().splitlines()]
    created = next(e["time"] for e in lines if e["event"] == "root_key.created")
    return Fleet(root, good, aborted, tampered, unsigned,
                 datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
                 report.head, report.root_fingerprint)


# ------------------------------------------------------------------ the bundle's PDF


def test_the_printed_transcript_is_inside_and_covered(fleet: Fleet) -> None:
    pdf = fleet.good / "transcript.pdf"
    sums = (fleet.good / "SHA256SUMS").read_text().splitlines()
    digest = hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert f"{digest}  transcript.pdf" in sums
    tool = shutil.which("pdftotext")
    require(tool is not None, "poppler-utils (pdftotext)")
    assert tool is not None
    text = subprocess.run([tool, str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert text.count(fleet.head) >= 2  # the footer of every page
    assert not (fleet.good.parent / "bundle.transcript.pdf").exists()  # nothing beside
    # `ceremony print` answers with the bundle's own file, byte for byte.
    printed = run_cli("print", str(fleet.good))
    assert printed.returncode == 0, printed.stderr
    assert f"the bundle's own {pdf}" in printed.stdout


@pytest.mark.parametrize("change", ["removed", "replaced"])
def test_verify_fails_without_the_bundles_own_pdf(fleet: Fleet, tmp_path: Path,
                                                   change: str) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(fleet.good, bundle)
    pdf = bundle / "transcript.pdf"
    if change == "removed":
        pdf.unlink()
        expected = "files missing from the bundle: transcript.pdf"
    else:  # another ceremony's printout, a perfectly good PDF
        pdf.write_bytes(b"%PDF-1.4\n% another transcript\n")
        expected = "transcript.pdf does not match its digest in SHA256SUMS"
    result = run_cli("verify", str(bundle))
    assert result.returncode == 1
    assert expected in result.stdout + result.stderr


def test_verify_names_a_printout_of_another_transcript(tmp_path: Path) -> None:
    """Signed into the checksum list, yet naming another head: the verifier reads the
    page text and refuses it (CER-PRINT)."""
    bundle = tmp_path / "bundle"
    _finish(_engine(bundle, StandInPrinter(head="0" * 64)))
    report = verify_bundle(bundle)
    failure = report.first_failure
    assert failure is not None and failure.name == "checksums"
    assert failure.requirement == "CER-PRINT"
    assert f"transcript.pdf does not name the transcript head {report.head}" in failure.detail
    good = tmp_path / "good"
    _finish(_engine(good, StandInPrinter()))
    assert verify_bundle(good).ok


def test_a_printer_failure_leaves_the_bundle_unfinished_and_resume_finishes_it(
        tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    token = FakeToken(SeededRandom("token"))
    failing = StandInPrinter(fail=DeviceError("pdftoppm (poppler-utils) is not installed",
                                              hint="install poppler-utils"))
    engine = _engine(bundle, failing, token)
    with pytest.raises(CeremonyError) as raised:
        _finish(engine)
    message = raised.value.describe()
    assert message.startswith("the ceremony is sealed, but its printed transcript could "
                              "not be made, so the bundle is not finished: pdftoppm")
    assert "resume the ceremony (--resume)" in message
    assert not (bundle / "SHA256SUMS").exists() and not (bundle / "transcript.pdf").exists()
    assert not list(bundle.glob(".*tmp"))
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    devices = Devices(TickingClock(datetime(2026, 1, 3, tzinfo=UTC)), SeededRandom("os"),
                      token, Slip39Splitter(SeededRandom("slip39")), MemorySecrets(),
                      printer=StandInPrinter())
    Engine.resume(cast.script, parse_policy(policy_text, "policy.toml"), devices, bundle,
                  attestation=passing_attestation(True))
    assert verify_bundle(bundle).ok
    assert (bundle / "transcript.pdf").is_file()


# ------------------------------------------------------------------ status


def test_status_lists_the_key_and_highlights_what_is_wrong(fleet: Fleet) -> None:
    at = (fleet.created + timedelta(days=1)).strftime("%Y-%m-%d")
    result = run_cli("status", str(fleet.root), "--at", at)
    assert result.returncode == 1, result.stdout + result.stderr  # the tampered bundle
    text = result.stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert f"{fleet.fingerprint[:16]}  ed25519     active" in text, text
    # Long findings wrap at 80 columns, long paths anywhere in them (the temporary
    # directory's length varies): compare without the whitespace.
    flat = "".join(text.split())

    def shows(sentence: str) -> bool:
        return "".join(sentence.split()) in flat

    assert shows("made by ceremony sample-root-2026 (REHEARSAL)")
    assert shows(f"! FAIL the bundle {fleet.tampered} does not verify (step 10, checksums:")
    assert shows(f"{fleet.tampered}: DOES NOT VERIFY")
    assert shows(f"NOTE ceremony sample-root-2026 ({fleet.aborted}) was aborted on")
    assert shows(f"* WARN ceremony sample-root-2026 ({fleet.good}) is a REHEARSAL")
    assert shows(f"! FAIL the lineage record {fleet.unsigned} does not verify"), text
    assert "OVERDUE" not in text and "2 problem(s)" in text
    assert result.stderr == ""


def test_rotation_overdue_on_a_fixed_clock(fleet: Fleet) -> None:
    """The sample policy's cadence is max_key_lifetime_days (7300 days) from activation."""
    good_only = fleet.good.parent
    warned = run_cli("status", str(good_only))
    assert warned.returncode == 0  # a rehearsal: warned, not failed
    assert warned.stdout.endswith("nothing fails; 1 finding(s) to look at above\n"), warned.stdout
    later = fleet.created + timedelta(days=7301)
    report = status(good_only, later)
    assert not report.ok
    (key,) = report.keys
    assert key.rotation_status == "overdue" and key.rotation_days == -1
    assert key.lineage == str(good_only / "bundle.lineage.json")
    assert [f.code for f in report.findings if f.level == "fail"] == ["rotation-overdue"]
    soon = status(good_only, fleet.created + timedelta(days=7300 - 30))
    assert sorted(f.code for f in soon.findings) == ["rehearsal", "rotation-due"]
    assert soon.ok
    result = run_cli("status", str(good_only), "--at", later.strftime("%Y-%m-%d"))
    assert result.returncode == 1
    assert "OVERDUE" in result.stdout and "was due for rotation on" in result.stdout


def test_status_json_has_stable_keys(fleet: Fleet) -> None:
    result = run_cli("status", str(fleet.root), "--json", "--at", "2030-01-01")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert set(data) == {"format", "directory", "time", "ok", "keys", "bundles", "lineage",
                         "findings"}
    assert data["format"] == "ceremony.status.v1" and data["ok"] is False
    assert data["time"] == "2030-01-01T00:00:00.000000Z"
    (key,) = data["keys"]
    assert set(key) == {"fingerprint", "words", "algorithm", "label", "state", "created",
                        "age_days", "ceremony", "rehearsal", "last_ceremony", "rotation",
                        "lineage", "bundles", "findings"}
    assert set(key["rotation"]) == {"due", "status", "days", "cadence"}
    assert set(key["last_ceremony"]) == {"id", "kind", "sealed"}
    assert key["fingerprint"] == fleet.fingerprint and key["state"] == "active"
    assert key["bundles"] == [str(fleet.good)]
    # The unsigned record names this key: it is marked with the key, as failing.
    assert sorted(key["findings"]) == ["lineage-not-verified", "rehearsal"]
    assert {b["path"]: b["verified"] for b in data["bundles"]} == {
        str(fleet.aborted): True, str(fleet.good): True, str(fleet.tampered): False}
    assert all(set(b) == {"path", "ceremony", "outcome", "rehearsal", "verified", "sealed",
                          "detail", "printed"} for b in data["bundles"])
    assert {r["path"]: r["valid"] for r in data["lineage"]} == {
        str(fleet.unsigned): False, str(fleet.good.parent / "bundle.lineage.json"): True}
    assert sorted((f["level"], f["code"]) for f in data["findings"]) == [
        ("fail", "bundle-not-verified"), ("fail", "lineage-not-verified"),
        ("note", "aborted"), ("warn", "rehearsal"), ("warn", "rehearsal")]
    assert all(set(f) == {"level", "code", "subject", "message"} for f in data["findings"])


@pytest.mark.parametrize(("args", "message"), [
    (("/nonexistent/ceremonies",), "ceremony: /nonexistent/ceremonies is not a directory"),
    ((".", "--at", "next tuesday"), "ceremony: --at 'next tuesday' is not a UTC date"),
])
def test_bad_input_is_one_sentence(args: tuple[str, ...], message: str) -> None:
    result = run_cli("status", *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and "Traceback" not in result.stderr


def test_the_status_screen(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    report = status(fleet.root, fleet.created + timedelta(days=7301))

    async def drive() -> None:
        app = StatusApp(report)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            keys = app.query_one("#keys", DataTable)
            assert keys.row_count == 1
            row = [str(c) for c in keys.get_row_at(0)]
            assert row[0] == "!" and row[1] == fleet.fingerprint[:16]
            assert row[3] == "active" and row[5].endswith("OVERDUE")
            bundles = app.query_one("#bundles", DataTable)
            marks = {str(bundles.get_row_at(i)[1]): str(bundles.get_row_at(i)[2])
                     for i in range(bundles.row_count)}
            assert marks[str(fleet.tampered)] == "DOES NOT VERIFY"
            detail = str(app.query_one("#detail", Static).content)
            assert words(fleet.fingerprint) in detail and "lineage signed" in detail
            findings = str(app.query_one("#findings", Static).content)
            assert "! FAIL root key" in findings and "was due for rotation" in findings
            summary = str(app.query_one("#summary", Static).content)
            assert "3 failing" in summary
            await pilot.press("b")
            assert app.focused is bundles
            await pilot.press("q")
        assert app.return_code in (0, None)

    asyncio.run(drive())


def test_a_recovered_key_is_one_row_whose_last_ceremony_is_the_recovery(
        tmp_path: Path) -> None:
    """The original (seeded fakes) and its recovery: the same key, one row; made by the
    original, last ceremony the recovery; its creation time read from the copy of the
    original inside the recovery bundle when the original itself is not there."""
    from tests.test_recovery import fake_original, fake_recovery, to_shares

    original = fake_original(tmp_path / "o")
    rec = fake_recovery(tmp_path / "r", original)
    to_shares(rec)
    rec.offer("carol")
    rec.offer("alice")
    assert rec.finish().outcome == "completed"
    for directory in (tmp_path, tmp_path / "r"):  # with and without the original beside
        report = status(directory, datetime(2026, 2, 1, tzinfo=UTC))
        (key,) = report.keys
        assert key.fingerprint == original.original.record.fingerprint
        assert (key.ceremony, key.last_kind) == ("sample-root-2026", "recovery")
        assert key.last_ceremony == rec.script.ceremony_id
        assert key.created is not None and key.created.startswith("2026-01-02")
        assert key.state == "active" and key.rotation_status == "not-due"
        assert report.ok
