"""Share sheets: a text sheet and a printable one-page PDF per share, in the secret directory.

The PDF is read back with poppler (`pdftotext -layout`, `pdftoppm`), independently of the
library that wrote it. The end-to-end test runs `ceremony rehearse` and looks at where the
sheets went, and that none went to the bundle.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ceremony.adapters.sharesheets import ShareSheetDirectory
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.display import grouped_hex, words
from tests.conftest import SOFTHSM_MODULE, SeededRandom, require, run_cli
from tests.test_crash import share_mnemonics

CEREMONY = "sample-root-2026"
FINGERPRINT = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
NUMBERED = re.compile(r"(?<![\d.])(\d{1,2})\. ([a-z]+)(?![a-z])")


def split(secret_bytes: int, group_threshold: int,
          groups: list[tuple[int, int]]) -> tuple[int, list[list[str]]]:
    """A real SLIP-39 split, reproducible (seeded)."""
    splitter = Slip39Splitter(SeededRandom(f"sheets {secret_bytes}"))
    secret = bytearray(SeededRandom("secret").random_bytes(secret_bytes))
    return splitter.split(secret, group_threshold, groups)


@pytest.fixture(scope="module")
def share_set() -> tuple[int, list[list[str]]]:
    """Two groups, any two needed: group 1 is 2-of-3, group 2 is 1-of-1; 33-word shares."""
    return split(32, 2, [(2, 3), (1, 1)])


def context(rehearsal: bool = True, **extra: Any) -> dict[str, Any]:
    return {"ceremony": CEREMONY, "rehearsal": rehearsal, "key_label": "sample root key",
            "fingerprint": FINGERPRINT, "created": "2026-03-01T10:00:00Z", **extra}


def pdftotext(path: Path) -> str:
    tool = shutil.which("pdftotext")
    require(tool is not None, "poppler-utils (pdftotext)")
    assert tool
    return subprocess.run([tool, "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def numbered(text: str) -> dict[int, str]:
    """Number -> word for every "N. word" on the page; a number seen twice is an error."""
    found: dict[int, str] = {}
    for number, word in NUMBERED.findall(text):
        assert int(number) not in found, f"word {number} appears twice"
        found[int(number)] = word
    return found


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The permissions must not depend on the operator's umask."""
    saved = os.umask(0)
    try:
        yield
    finally:
        os.umask(saved)


@pytest.mark.parametrize(("secret_bytes", "count", "columns"), [(32, 33, 3), (16, 20, 4)])
def test_pdf_has_the_words_numbered_in_columns_and_the_facts(
        tmp_path: Path, secret_bytes: int, count: int, columns: int) -> None:
    identifier, groups = split(secret_bytes, 2, [(2, 3), (1, 1)])
    mnemonic = groups[0][1]  # group 1, member 2
    sheets = ShareSheetDirectory(tmp_path / "shares", CEREMONY)
    where = sheets.write_share("bob", "Bob Custodian", 1, 2, mnemonic, context())
    assert where == f"share sheet share-{CEREMONY}-bob-g1m2.txt and .pdf"
    text = pdftotext(tmp_path / "shares" / f"share-{CEREMONY}-bob-g1m2.pdf")

    share_words = mnemonic.split()
    assert len(share_words) == count
    assert numbered(text) == dict(enumerate(share_words, start=1))
    # Read down each column: a line of the grid holds word r, r + rows, r + 2 * rows, ...
    rows = -(-count // columns)
    grid = [[int(n) for n, _ in NUMBERED.findall(line)] for line in text.splitlines()
            if NUMBERED.search(line)]
    assert grid == [list(range(r, count + 1, rows)) for r in range(1, rows + 1)]

    flat = " ".join(text.split())
    for fact in ("Custodian Bob Custodian (id bob)", f"Ceremony {CEREMONY}",
                 "Key sample root key", f"Share set identifier {identifier}",
                 "group 1 of 2 (any 2 of the 2 groups are needed)",
                 "member 2 (any 2 members of this group are needed)",
                 f"As words {words(FINGERPRINT)}", "Written 2026-03-01 10:00 UTC",
                 "ceremony shares check BUNDLE", "Never photograph", "sealed",
                 "Custodian's signature", "Date"):
        assert fact in flat, fact
    hex_groups = grouped_hex(FINGERPRINT).split()
    assert f"Fingerprint {' '.join(hex_groups[:8])} {' '.join(hex_groups[8:])}" in flat


def test_pdf_holds_no_other_share(tmp_path: Path,
                                  share_set: tuple[int, list[list[str]]]) -> None:
    _, groups = share_set
    sheets = ShareSheetDirectory(tmp_path, CEREMONY)
    for gi, group in enumerate(groups, start=1):
        for mi, mnemonic in enumerate(group, start=1):
            sheets.write_share(f"p{gi}{mi}", f"P {gi} {mi}", gi, mi, mnemonic, context())
    for gi, group in enumerate(groups, start=1):
        for mi, mnemonic in enumerate(group, start=1):
            text = pdftotext(tmp_path / f"share-{CEREMONY}-p{gi}{mi}-g{gi}m{mi}.pdf")
            assert numbered(text) == dict(enumerate(mnemonic.split(), start=1))
            others = [m for g in groups for m in g if m != mnemonic]
            assert all(" ".join(other.split()[4:]) not in " ".join(text.split())
                       for other in others)


def test_page_renders_as_one_a4_page(tmp_path: Path,
                                     share_set: tuple[int, list[list[str]]]) -> None:
    tool = shutil.which("pdftoppm")
    require(tool is not None, "poppler-utils (pdftoppm)")
    assert tool
    ShareSheetDirectory(tmp_path / "shares", CEREMONY).write_share(
        "alice", "Alice " + "Long-Named " * 8, 1, 1, share_set[1][0][0],
        context(key_label="a long key label " * 5))
    out = tmp_path / "png"
    out.mkdir()
    subprocess.run([tool, "-r", "100", "-png", str(tmp_path / "shares" /
                    f"share-{CEREMONY}-alice-g1m1.pdf"), str(out / "page")], check=True)
    pages = sorted(out.iterdir())
    assert [p.name for p in pages] == ["page-1.png"]
    png = pages[0].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (827, 1170)  # A4 at 100 dpi


@pytest.mark.parametrize("rehearsal", [True, False])
def test_rehearsal_is_marked_when_and_only_when_it_is_one(
        tmp_path: Path, share_set: tuple[int, list[list[str]]], rehearsal: bool) -> None:
    ShareSheetDirectory(tmp_path, CEREMONY).write_share(
        "bob", "Bob", 1, 2, share_set[1][0][1], context(rehearsal))
    text = pdftotext(tmp_path / f"share-{CEREMONY}-bob-g1m2.pdf")
    assert ("REHEARSAL" in text) is rehearsal
    if rehearsal:
        assert "REHEARSAL - NOT A REAL SHARE - PROTECTS NOTHING" in text
    plain = (tmp_path / f"share-{CEREMONY}-bob-g1m2.txt").read_text()
    assert plain.startswith("REHEARSAL: not a real share\n") is rehearsal
    assert ("REHEARSAL" in plain) is rehearsal


def test_text_sheet_is_kept_beside_the_pdf(tmp_path: Path,
                                          share_set: tuple[int, list[list[str]]]) -> None:
    identifier, groups = share_set
    ShareSheetDirectory(tmp_path, CEREMONY).write_share(
        "carol", "Carol", 1, 3, groups[0][2], context())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"share-{CEREMONY}-carol-g1m3.pdf", f"share-{CEREMONY}-carol-g1m3.txt"]
    assert share_mnemonics(tmp_path) == [groups[0][2]]
    plain = (tmp_path / f"share-{CEREMONY}-carol-g1m3.txt").read_text()
    assert f"fingerprint: {FINGERPRINT}\n" in plain
    assert f"share set: {identifier}\n" in plain
    assert "group 1, member 3, 33 words\n" in plain


def test_files_are_private_and_durable(tmp_path: Path, umask_zero: None,
                                       share_set: tuple[int, list[list[str]]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    directory = tmp_path / "out" / "secret" / "shares"
    ShareSheetDirectory(directory, CEREMONY).write_share(
        "alice", "Alice", 1, 1, share_set[1][0][0], context())
    for created in (tmp_path / "out", tmp_path / "out" / "secret", directory):
        assert stat.S_IMODE(created.stat().st_mode) == 0o700, created
    written = sorted(directory.iterdir())
    assert len(written) == 2
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(set(synced)) == sorted([str(directory), *map(str, written)])


def test_an_open_directory_is_closed_and_a_wider_file_narrowed(
        tmp_path: Path, share_set: tuple[int, list[list[str]]]) -> None:
    directory = tmp_path / "shares"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    earlier = directory / f"share-{CEREMONY}-alice-g1m1.pdf"
    earlier.write_bytes(b"an earlier sheet")
    earlier.chmod(0o644)
    ShareSheetDirectory(directory, CEREMONY).write_share(
        "alice", "Alice", 1, 1, share_set[1][0][0], context())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(earlier.stat().st_mode) == 0o600
    assert earlier.read_bytes().startswith(b"%PDF-")


def test_remove_all_removes_both_files_of_every_sheet(
        tmp_path: Path, share_set: tuple[int, list[list[str]]]) -> None:
    directory = tmp_path / "shares"
    sheets = ShareSheetDirectory(directory, CEREMONY)
    assert sheets.remove_all() == []  # nothing written yet (the directory is not there)
    for mi, mnemonic in enumerate(share_set[1][0], start=1):
        sheets.write_share(f"c{mi}", f"C{mi}", 1, mi, mnemonic, context())
    other = directory / "share-another-ceremony-c1-g1m1.pdf"
    other.write_bytes(b"not this ceremony's")
    assert len(list(directory.iterdir())) == 7
    # One entry per sheet (the engine records how many sheets it removed), both files gone.
    assert sheets.remove_all() == [f"share-{CEREMONY}-c{mi}-g1m{mi}" for mi in (1, 2, 3)]
    assert list(directory.iterdir()) == [other]
    assert sheets.remove_all() == []


def test_nothing_is_written_outside_the_directory(
        tmp_path: Path, share_set: tuple[int, list[list[str]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "transcript.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    before = files(tmp_path)
    directory = tmp_path / "secret" / "shares"
    ShareSheetDirectory(directory, CEREMONY).write_share(
        "alice", "Alice", 1, 1, share_set[1][0][0], context())
    after = files(tmp_path)
    new = {k: v for k, v in after.items() if k not in before or before[k] != v}
    assert sorted(new) == [f"secret/shares/share-{CEREMONY}-alice-g1m1.{ext}"
                           for ext in ("pdf", "txt")]
    assert all(after[k] == v for k, v in before.items())


def test_output_is_deterministic_and_dated_from_the_context(
        tmp_path: Path, share_set: tuple[int, list[list[str]]]) -> None:
    mnemonic = share_set[1][0][0]
    outputs = []
    for run in ("a", "b"):
        ShareSheetDirectory(tmp_path / run, CEREMONY).write_share(
            "alice", "Alice", 1, 1, mnemonic, context())
        outputs.append((tmp_path / run / f"share-{CEREMONY}-alice-g1m1.pdf").read_bytes())
    assert outputs[0] == outputs[1]
    assert b"/CreationDate (D:20260301100000Z" in outputs[0]
    undated = {k: v for k, v in context().items() if k != "created"}
    ShareSheetDirectory(tmp_path / "c", CEREMONY).write_share(
        "alice", "Alice", 1, 1, mnemonic, undated)
    fixed = (tmp_path / "c" / f"share-{CEREMONY}-alice-g1m1.pdf").read_bytes()
    assert b"/CreationDate (D:20000101000000Z" in fixed
    assert "Written" not in pdftotext(tmp_path / "c" / f"share-{CEREMONY}-alice-g1m1.pdf")


def test_missing_fingerprint_and_identifier_fall_back(
        tmp_path: Path, share_set: tuple[int, list[list[str]]]) -> None:
    identifier, groups = share_set
    bare = {"ceremony": CEREMONY, "rehearsal": False, "key_label": "sample root key"}
    ShareSheetDirectory(tmp_path, CEREMONY).write_share("dan", "Dan", 2, 1, groups[1][0], bare)
    flat = " ".join(pdftotext(tmp_path / f"share-{CEREMONY}-dan-g2m1.pdf").split())
    assert "Fingerprint not given to this sheet: read it from the bundle" in flat
    assert "As words" not in flat
    # The share-set identifier and thresholds are the share's own.
    assert f"Share set identifier {identifier}" in flat
    assert "group 2 of 2 (any 2 of the 2 groups are needed)" in flat
    assert "member 1 (this group needs only 1 member's share)" in flat


def test_a_wrong_identifier_is_refused_before_anything_is_written(
        tmp_path: Path, share_set: tuple[int, list[list[str]]]) -> None:
    identifier, groups = share_set
    sheets = ShareSheetDirectory(tmp_path / "shares", CEREMONY)
    with pytest.raises(ValueError, match="identifier"):
        sheets.write_share("bob", "Bob", 1, 2, groups[0][1],
                           context(identifier=identifier ^ 1))
    assert not (tmp_path / "shares").exists()
    sheets.write_share("bob", "Bob", 1, 2, groups[0][1], context(identifier=identifier))
    assert len(list((tmp_path / "shares").iterdir())) == 2


def test_a_name_outside_latin1_is_printed_without_accents(
        tmp_path: Path, share_set: tuple[int, list[list[str]]]) -> None:
    ShareSheetDirectory(tmp_path, CEREMONY).write_share(
        "lukasz", "Łukasz Żółć Müller", 1, 1, share_set[1][0][0], context())
    text = pdftotext(tmp_path / f"share-{CEREMONY}-lukasz-g1m1.pdf")
    assert "Lukasz Zólc Müller (id lukasz)" in text  # ó and ü are Latin-1; Ł, Ż, ł, ć not
    plain = (tmp_path / f"share-{CEREMONY}-lukasz-g1m1.txt").read_text()
    assert "SLIP-39 share for Łukasz Żółć Müller (lukasz)\n" in plain


def test_a_lone_share_that_is_a_quorum_says_so(tmp_path: Path) -> None:
    _, groups = split(16, 1, [(1, 1)])
    ShareSheetDirectory(tmp_path, CEREMONY).write_share(
        "solo", "Solo", 1, 1, groups[0][0], context())
    flat = " ".join(pdftotext(tmp_path / f"share-{CEREMONY}-solo-g1m1.pdf").split())
    assert "This share alone can rebuild the key" in flat
    assert "group 1 of 1 Member" in flat


# ------------------------------------------------------------------ end to end (rehearsal)


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(Path(SOFTHSM_MODULE).is_file(), "SoftHSM2")
    base = tmp_path_factory.mktemp("sheets-rehearse")
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    result = run_cli("rehearse", "--out", str(base / "out"), env=env, cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "out"


def test_rehearsal_writes_one_pdf_per_custodian(rehearsed: Path) -> None:
    shares = rehearsed / "secret" / "shares"
    pdfs = sorted(shares.glob("*.pdf"))
    entries = [json.loads(line) for line in
               (rehearsed / "bundle" / "transcript.jsonl").read_text().splitlines()]
    recorded = {
        "fingerprint": next(e for e in entries if e["event"] == "root_key.created")[
            "payload"]["fingerprint"],
        "identifier": next(e for e in entries if e["event"] == "shares.created")[
            "payload"]["identifier"]}
    assert [p.name for p in pdfs] == [f"share-{CEREMONY}-{who}-g1m{i}.pdf"
                                      for i, who in enumerate(("alice", "bob", "carol"), 1)]
    assert [p.with_suffix(".txt") for p in pdfs] == sorted(shares.glob("*.txt"))
    for pdf, mnemonic in zip(pdfs, share_mnemonics(shares), strict=True):
        assert stat.S_IMODE(pdf.stat().st_mode) == 0o600
        text = pdftotext(pdf)
        assert numbered(text) == dict(enumerate(mnemonic.split(), start=1))
        assert "REHEARSAL - NOT A REAL SHARE" in text
        # The engine gives each sheet the key it protects and the share set it belongs to.
        plain = pdf.with_suffix(".txt").read_text()
        assert f"fingerprint: {recorded['fingerprint']}\n" in plain
        assert f"share set: {recorded['identifier']}\n" in plain
        assert recorded["fingerprint"][:4] in text and "identifier " + str(
            recorded["identifier"]) in text
    assert stat.S_IMODE(shares.stat().st_mode) == 0o700


def test_rehearsal_bundle_holds_no_share_sheet_and_no_share(rehearsed: Path) -> None:
    bundle = files(rehearsed / "bundle")
    assert "transcript.jsonl" in bundle
    # The one PDF in a bundle is its printed transcript (ADR 0016); its words are searched
    # as text below, like every other file's.
    printed = pdftotext(rehearsed / "bundle" / "transcript.pdf")
    for name, data in bundle.items():
        if name == "transcript.pdf":
            continue
        assert not name.endswith((".pdf", ".PDF")) and not data.startswith(b"%PDF"), name
        assert not Path(name).name.startswith("share-"), name
        assert b"/FlateDecode" not in data, name
    listed = [line.split()[-1] for line in bundle["SHA256SUMS"].splitlines()
              if b".pdf" in line]
    assert listed == [b"transcript.pdf"], listed
    # Single SLIP-39 words are ordinary English (the transcript says "group", "member",
    # "public"...), so look for the shares as shares: a word with its number, or any three
    # words in a row with any separator (test_rehearse.py looks for runs of four).
    hay = "\n".join([printed.lower()] + [data.decode("latin-1").lower()
                                           for name, data in bundle.items()
                                           if name != "transcript.pdf"])
    for mnemonic in share_mnemonics(rehearsed / "secret" / "shares"):
        share_words = mnemonic.split()
        for i, word in enumerate(share_words, start=1):
            assert not re.search(rf"(?<![\w.]){i}\.\s*{word}(?![a-z])", hay), (i, word)
        for k in range(len(share_words) - 2):
            run = r"[^a-z]+".join(share_words[k:k + 3])
            assert not re.search(rf"(?<![a-z]){run}(?![a-z])", hay), share_words[k:k + 3]
