"""`ceremony verify` on the named tamper vectors: exit 1, NOT VERIFIED, the right step and line.

Each tests/vectors/tamper/<attack>/ holds a bundle (the golden one with one attack applied
by scripts/make_vectors.py) and expect.json: the step that must fail first, the transcript
line it must name (null when the attack is not on the transcript) and a piece of its detail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceremony.verify import verify_bundle
from ceremony.verify.core import STEP_NAMES
from tests.conftest import run_cli

VECTORS = Path(__file__).resolve().parent / "vectors"
TAMPER = sorted(p for p in (VECTORS / "tamper").iterdir() if p.is_dir())
GOLDEN = VECTORS / "golden"

# The attacks the issue names; each must have a vector (more may exist).
REQUIRED_ATTACKS = {
    "byte-flipped-entry", "dropped-entry", "reordered-entries", "duplicated-entry",
    "truncated-tail", "truncated-mid-line", "spliced-entry", "replayed-approval",
    "forged-seal", "altered-script", "extra-file", "missing-sha256sums-sig"}
TRANSCRIPT_ATTACKS = {
    "byte-flipped-entry", "byte-flipped-syntax", "dropped-entry", "reordered-entries",
    "duplicated-entry", "truncated-tail", "truncated-mid-line", "spliced-entry",
    "spliced-entry-rechained", "replayed-approval", "replayed-approval-resigned",
    "forged-seal", "respelled-seal-signature"}


def expect(vector: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((vector / "expect.json").read_text())
    return value


def test_every_named_attack_has_a_vector() -> None:
    assert {p.name for p in TAMPER} >= REQUIRED_ATTACKS


@pytest.mark.parametrize("vector", TAMPER, ids=[p.name for p in TAMPER])
def test_verify_names_the_failure(vector: Path) -> None:
    exp = expect(vector)
    assert exp["step"] in STEP_NAMES
    if vector.name in TRANSCRIPT_ATTACKS:
        assert exp["line"] is not None, "a transcript attack must be named by its line"
    report = verify_bundle(vector / "bundle")
    failed = report.first_failure
    assert not report.ok and failed is not None
    assert (failed.name, failed.line) == (exp["step"], exp["line"]), failed
    assert exp["detail"] in failed.detail
    # fail closed: nothing after the first failure is reported as passing
    assert all(s.ok is None for s in report.steps[failed.number:])


@pytest.mark.parametrize("vector", TAMPER, ids=[p.name for p in TAMPER])
def test_cli_exit_1_and_line_named(vector: Path) -> None:
    exp = expect(vector)
    result = run_cli("verify", str(vector / "bundle"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT VERIFIED" in result.stdout
    number = STEP_NAMES.index(exp["step"]) + 1
    assert f"NOT VERIFIED: step {number} ({exp['step']}) failed" in result.stdout
    fail_line = next(ln for ln in result.stdout.splitlines() if "FAIL" in ln)
    if exp["line"] is not None:
        assert f"transcript.jsonl line {exp['line']}" in fail_line, fail_line
    else:
        assert "line" not in fail_line.split(":")[0], fail_line


@pytest.mark.parametrize("vector", TAMPER, ids=[p.name for p in TAMPER])
def test_cli_json(vector: Path) -> None:
    exp = expect(vector)
    result = run_cli("verify", "--json", str(vector / "bundle"))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is False
    results = {s["name"]: s for s in report["steps"]}
    failed = [s for s in report["steps"] if s["result"] == "fail"]
    assert [s["name"] for s in failed] == [exp["step"]]
    assert failed[0]["line"] == exp["line"]
    assert exp["detail"] in failed[0]["detail"]
    before = STEP_NAMES[: STEP_NAMES.index(exp["step"])]
    assert all(results[name]["result"] == "pass" for name in before)


@pytest.mark.parametrize(("directory", "outcome"), [
    ("bundle", "completed"), ("aborted-bundle", "aborted"), ("other-bundle", "completed")])
def test_cli_verifies_golden(directory: str, outcome: str) -> None:
    result = run_cli("verify", str(GOLDEN / directory))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "VERIFIED REHEARSAL" in result.stdout
    assert f"outcome {outcome}" in result.stdout
    assert "NOT VERIFIED" not in result.stdout
    as_json = json.loads(run_cli("verify", "--json", str(GOLDEN / directory)).stdout)
    assert as_json["verified"] is True and as_json["outcome"] == outcome
    assert all(s["result"] == "pass" for s in as_json["steps"])


def test_module_entry_point_matches_cli() -> None:
    """`python -m ceremony.verify` (the device-free entry point) gives the same verdicts."""
    import subprocess
    import sys

    vector = VECTORS / "tamper" / "truncated-tail"
    result = subprocess.run([sys.executable, "-m", "ceremony.verify", str(vector / "bundle")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"transcript.jsonl line {expect(vector)['line']}" in result.stdout


@pytest.mark.parametrize("spelling", ["respelled", "trailing-space", "no-newline"])
def test_checksum_signature_has_one_spelling(tmp_path: Path, spelling: str) -> None:
    import base64
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(GOLDEN / "bundle", bundle)
    sig_path = bundle / "SHA256SUMS.sig"
    text = sig_path.read_text()
    assert verify_bundle(bundle).ok
    if spelling == "respelled":
        # The last base64 digit of a 64-byte value carries 4 unused bits: flip one.
        body = text.rstrip("\n")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        last = body[-3]
        other = alphabet[alphabet.index(last) ^ 1]
        changed = body[:-3] + other + body[-2:]
        assert base64.b64decode(changed) == base64.b64decode(body)
        sig_path.write_text(changed + "\n")
    elif spelling == "trailing-space":
        sig_path.write_text(text.rstrip("\n") + " \n")
    else:
        sig_path.write_text(text.rstrip("\n"))
    report = verify_bundle(bundle)
    failure = report.first_failure
    assert failure is not None
    assert failure.name == "checksums"
    assert "canonical base64" in failure.detail
