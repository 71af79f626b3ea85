"""Property tests: any change to the golden transcript fails verification, naming a line.

Hypothesis alters the committed golden transcript (one byte replaced, a truncation, an
entry dropped, duplicated, swapped or spliced in from another ceremony) in a copy of the
golden bundle. Every such change must fail at a transcript step (parse, chain, time, start,
signatures, quorum or seal) with the report naming a transcript line: never pass, and
never be left to the SHA256SUMS digest, which names no line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from ceremony.verify import Report, verify_bundle

GOLDEN = Path(__file__).resolve().parent / "vectors" / "golden"
TRANSCRIPT = (GOLDEN / "bundle" / "transcript.jsonl").read_bytes()
LINES = TRANSCRIPT.splitlines(keepends=True)
OTHER_LINES = (GOLDEN / "other-bundle" / "transcript.jsonl").read_bytes().splitlines(
    keepends=True)
TRANSCRIPT_STEPS = {"parse", "chain", "time", "start", "signatures", "quorum", "seal"}
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the golden bundle; each example overwrites its transcript."""
    target = tmp_path_factory.mktemp("tamper") / "bundle"
    shutil.copytree(GOLDEN / "bundle", target)
    return target


def verify_with(bundle: Path, transcript: bytes) -> Report:
    (bundle / "transcript.jsonl").write_bytes(transcript)
    return verify_bundle(bundle)


def assert_named(report: Report, lines: set[int] | None = None) -> int:
    """The report fails at a transcript step that names a line; return that line."""
    failed = report.first_failure
    assert not report.ok and failed is not None, "the altered transcript verified"
    assert failed.name in TRANSCRIPT_STEPS, f"caught only by {failed.name}: {failed.detail}"
    assert failed.line is not None, f"{failed.name} names no line: {failed.detail}"
    if lines is not None:
        assert failed.line in lines, (failed.line, failed.detail)
    return failed.line


def test_golden_copy_verifies(bundle: Path) -> None:
    assert verify_with(bundle, TRANSCRIPT).ok


def line_of(pos: int) -> int:
    """1-based number of the line holding byte ``pos`` (its newline included)."""
    return TRANSCRIPT.count(b"\n", 0, pos) + 1


@SETTINGS
@given(hs.data())
def test_any_byte_replaced(bundle: Path, data: hs.DataObject) -> None:
    index = data.draw(hs.integers(0, len(LINES) - 1), label="line")  # each line alike
    start = sum(len(ln) for ln in LINES[:index])
    pos = start + data.draw(hs.integers(0, len(LINES[index]) - 1), label="offset")
    new = data.draw(hs.integers(0, 255).filter(lambda b: b != TRANSCRIPT[pos]), label="byte")
    changed = TRANSCRIPT[:pos] + bytes([new]) + TRANSCRIPT[pos + 1:]
    number = line_of(pos)
    # the changed line itself (malformed, or a field checked where it stands) or the one
    # after it (whose prev no longer matches)
    assert_named(verify_with(bundle, changed), {number, number + 1})


B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@pytest.mark.parametrize("field", [b'"root_key_signature":"', b'"transcript_signature":"'])
@pytest.mark.parametrize("low_bits", [1, 2, 3])
def test_seal_signature_respelled(bundle: Path, field: bytes, low_bits: int) -> None:
    """The seal is the one line no later prev protects: every byte must be fixed by a check.

    A 64-byte signature is 86 base64 digits and "=="; the last digit carries 4 unused bits,
    so changing them gives another spelling of the same signature. Before the verifier
    required canonical base64 only the SHA256SUMS digest caught this (no line named).
    """
    seal_start = len(TRANSCRIPT) - len(LINES[-1])
    pos = TRANSCRIPT.index(field, seal_start) + len(field) + 85
    assert TRANSCRIPT[pos + 1:pos + 3] == b"=="
    digit = B64[B64.index(chr(TRANSCRIPT[pos])) ^ low_bits].encode()
    changed = TRANSCRIPT[:pos] + digit + TRANSCRIPT[pos + 1:]
    assert_named(verify_with(bundle, changed), {len(LINES)})


@SETTINGS
@given(hs.integers(1, len(TRANSCRIPT) - 1))
def test_any_truncation(bundle: Path, cut: int) -> None:
    report = verify_with(bundle, TRANSCRIPT[:cut])
    kept = TRANSCRIPT[:cut]
    # a torn last line is named; a cut at a line boundary loses the seal, named at the end
    assert_named(report, {kept.count(b"\n") + (0 if kept.endswith(b"\n") else 1)})


def test_empty_transcript_fails_at_parse(bundle: Path) -> None:
    """The one truncation that has no line to name."""
    failed = verify_with(bundle, b"").first_failure
    assert failed is not None and failed.name == "parse" and "empty" in failed.detail


@SETTINGS
@given(hs.integers(0, len(LINES) - 1))
def test_any_entry_dropped(bundle: Path, i: int) -> None:
    lines = LINES[:i] + LINES[i + 1:]
    # the line now at position i has the wrong seq; dropping the seal leaves none
    expected = i + 1 if i < len(LINES) - 1 else len(lines)
    assert_named(verify_with(bundle, b"".join(lines)), {expected})


@SETTINGS
@given(hs.integers(0, len(LINES) - 1), hs.integers(0, len(LINES)))
def test_any_entry_duplicated(bundle: Path, i: int, at: int) -> None:
    lines = [*LINES[:at], LINES[i], *LINES[at:]]
    assert_named(verify_with(bundle, b"".join(lines)))


@SETTINGS
@given(hs.integers(0, len(LINES) - 1), hs.integers(0, len(LINES) - 1))
def test_any_entries_swapped(bundle: Path, i: int, j: int) -> None:
    if i == j:
        return
    i, j = min(i, j), max(i, j)
    lines = list(LINES)
    lines[i], lines[j] = lines[j], lines[i]
    assert_named(verify_with(bundle, b"".join(lines)), {i + 1})


@SETTINGS
@given(hs.integers(0, len(OTHER_LINES) - 1), hs.integers(0, len(LINES)), hs.booleans())
def test_any_entry_spliced_from_another_ceremony(bundle: Path, k: int, at: int,
                                                 replace: bool) -> None:
    if replace and at == len(LINES):
        at -= 1
    lines = [*LINES[:at], OTHER_LINES[k], *LINES[at + 1 if replace else at:]]
    # never earlier than the splice: everything before it is the golden transcript
    assert assert_named(verify_with(bundle, b"".join(lines))) >= at + 1


@SETTINGS
@given(hs.permutations(range(len(LINES))))
def test_any_reordering(bundle: Path, order: list[int]) -> None:
    if order == sorted(order):
        return
    first_moved = next(n for n, i in enumerate(order) if n != i)
    lines = [LINES[i] for i in order]
    assert_named(verify_with(bundle, b"".join(lines)), {first_moved + 1})
