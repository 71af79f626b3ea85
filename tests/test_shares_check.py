"""`ceremony shares check BUNDLE`: one custodian checks their share, alone, against a bundle.

Two real rehearsals run once per module (the second is "another ceremony's" share set).
Shares are read from the rehearsal's share sheets. Every subprocess run also checks that no
run of the share's words (and no share word outside the command's own wording) appears on
stdout or stderr.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import shamir_mnemonic
from shamir_mnemonic.wordlist import WORD_INDEX_MAP, WORDLIST

import ceremony.sharecheck as sharecheck
from ceremony.cli import main as cli_main
from ceremony.engine.core import share_commitment
from ceremony.errors import InputError
from ceremony.sharecheck import Reference, ShareSet, check_share
from ceremony.verify import core as verify_core
from tests.conftest import SOFTHSM_MODULE, require, run_cli
from tests.test_crash import share_mnemonics

CEREMONY = "sample-root-2026"
HOLDERS = (("alice", 1, 1), ("bob", 1, 2), ("carol", 1, 3))


@dataclass
class Rehearsal:
    out: Path

    @property
    def bundle(self) -> Path:
        return self.out / "bundle"

    def shares(self) -> dict[str, str]:
        """participant -> mnemonic, from the sheets (share-CEREMONY-PARTICIPANT-gXmY.txt)."""
        sheets = sorted((self.out / "secret" / "shares").glob("share-*.txt"))
        mnemonics = share_mnemonics(self.out / "secret" / "shares")
        return {sheet.name.split("-")[-2]: m for sheet, m in zip(sheets, mnemonics, strict=True)}

    def identifier(self) -> int:
        entries = [json.loads(line) for line in
                   (self.bundle / "transcript.jsonl").read_text().splitlines()]
        payload = [e["payload"] for e in entries if e["event"] == "shares.created"][-1]
        return int(payload["identifier"])


def _rehearse(base: Path) -> Rehearsal:
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    result = run_cli("rehearse", "--out", str(base / "out"), env=env, cwd=base)
    assert result.returncode == 0, result.stdout + result.stderr
    return Rehearsal(base / "out")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    require(Path(SOFTHSM_MODULE).is_file(), "SoftHSM2")
    return _rehearse(tmp_path_factory.mktemp("shares-check"))


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    require(Path(SOFTHSM_MODULE).is_file(), "SoftHSM2")
    return _rehearse(tmp_path_factory.mktemp("shares-check-other"))


# The command's own wording may use words that happen to be SLIP-39 words.
_OWN_TEXT = " ".join(Path(m.__file__ or "").read_text() for m in (sharecheck, cli_main,
                                                                   verify_core))


def assert_no_share_in(output: str, mnemonic: str, *public: str) -> None:
    """No two consecutive words of the share, and no share word but the command's own."""
    words = mnemonic.split()
    text = " ".join(output.lower().split())
    for a, b in itertools.pairwise(words):
        assert f"{a} {b}" not in text, "two consecutive share words were printed"
    allowed = set(re.findall(r"[a-z]+", " ".join((_OWN_TEXT, *public)).lower()))
    leaked = set(re.findall(r"[a-z]+", text)) & set(words) - allowed
    assert not leaked, "a share word was printed"


def check(bundle: Path, share_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("shares", "check", str(bundle), "--share-file", str(share_file), *extra)


def write_share(tmp_path: Path, mnemonic: str, name: str = "share.txt") -> Path:
    path = tmp_path / name
    path.write_text(mnemonic + "\n")
    return path


def with_word(mnemonic: str, position: int, word: str) -> str:
    words = mnemonic.split()
    words[position - 1] = word
    return " ".join(words)


@pytest.mark.parametrize(("participant", "group", "member"), HOLDERS)
def test_intact_share_names_its_custodian(rehearsal: Rehearsal, tmp_path: Path,
                                          participant: str, group: int, member: int) -> None:
    mnemonic = rehearsal.shares()[participant]
    result = check(rehearsal.bundle, write_share(tmp_path, mnemonic))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == (
        f"your share is intact: custodian {participant}, group {group} member {member} of "
        f"share set {rehearsal.identifier()} of ceremony {CEREMONY} (a rehearsal)\n")
    assert_no_share_in(result.stdout + result.stderr, mnemonic, str(tmp_path))


def test_the_text_share_sheet_itself_is_accepted(rehearsal: Rehearsal) -> None:
    """A custodian passes the sheet they were handed: only its numbered words count."""
    sheet = next((rehearsal.out / "secret" / "shares").glob("*-carol-*.txt"))
    assert "fingerprint" in sheet.read_text()  # a whole sheet, not just the words
    result = check(rehearsal.bundle, sheet)
    assert result.returncode == 0, result.stderr
    assert "custodian carol, group 1 member 3" in result.stdout
    assert_no_share_in(result.stdout + result.stderr, rehearsal.shares()["carol"])


def test_typed_like_a_person_still_intact(rehearsal: Rehearsal, tmp_path: Path) -> None:
    """Upper case, one word per line, extra spaces: the same share."""
    mnemonic = rehearsal.shares()["bob"]
    path = tmp_path / "typed.txt"
    path.write_text("  " + "\n".join(w.upper() for w in mnemonic.split()) + "\n\n")
    result = check(rehearsal.bundle, path)
    assert result.returncode == 0, result.stderr
    assert "custodian bob, group 1 member 2" in result.stdout


def test_json_output(rehearsal: Rehearsal, tmp_path: Path) -> None:
    mnemonic = rehearsal.shares()["carol"]
    result = check(rehearsal.bundle, write_share(tmp_path, mnemonic), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "intact" and report["intact"] is True
    assert (report["participant"], report["group"], report["member"]) == ("carol", 1, 3)
    assert report["ceremony_id"] == CEREMONY and report["rehearsal"] is True
    assert report["share_set"] == report["share_identifier"] == rehearsal.identifier()
    assert report["bundle_verified"] is True
    assert_no_share_in(result.stdout + result.stderr, mnemonic, str(tmp_path))
    # The commitment is public, but the JSON has no reason to carry it.
    transcript = (rehearsal.bundle / "transcript.jsonl").read_text()
    for commitment in re.findall(r'"commitment":"([0-9a-f]{64})"', transcript):
        assert commitment not in result.stdout


def test_changed_word_fails_the_checksum(rehearsal: Rehearsal, tmp_path: Path) -> None:
    mnemonic = rehearsal.shares()["alice"]
    ninth = mnemonic.split()[8]
    altered = with_word(mnemonic, 9, WORDLIST[(WORD_INDEX_MAP[ninth] + 1) % 1024])
    result = check(rehearsal.bundle, write_share(tmp_path, altered))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        "ceremony: this share fails its SLIP-39 checksum: a word is wrong or words are out "
        "of order")
    assert result.stderr.splitlines()[1].startswith("  hint: ")
    assert_no_share_in(result.stdout + result.stderr, altered, str(tmp_path))
    assert_no_share_in(result.stdout + result.stderr, mnemonic, str(tmp_path))


def test_swapped_words_fail_the_checksum(rehearsal: Rehearsal, tmp_path: Path) -> None:
    words = rehearsal.shares()["bob"].split()
    words[11], words[12] = words[12], words[11]
    if words[11] == words[12]:
        pytest.skip("the two words are the same")
    result = check(rehearsal.bundle, write_share(tmp_path, " ".join(words)))
    assert result.returncode == 1
    assert "fails its SLIP-39 checksum" in result.stderr
    assert_no_share_in(result.stdout + result.stderr, " ".join(words), str(tmp_path))


def test_share_of_another_rehearsal(rehearsal: Rehearsal, other: Rehearsal,
                                    tmp_path: Path) -> None:
    mnemonic = other.shares()["bob"]
    result = check(rehearsal.bundle, write_share(tmp_path, mnemonic))
    assert result.returncode == 1
    assert result.stdout == ""
    if other.identifier() == rehearsal.identifier():  # 1 in 32768: 15-bit identifiers
        assert "has the right set but does not match any recorded share" in result.stderr
    else:
        assert result.stderr.splitlines()[0] == (
            f"ceremony: this share belongs to another share set (id {other.identifier()}), "
            f"not to ceremony {CEREMONY}")
    assert_no_share_in(result.stdout + result.stderr, mnemonic, str(tmp_path))


def test_right_set_but_altered_share(rehearsal: Rehearsal, tmp_path: Path) -> None:
    """A valid SLIP-39 share of the same set (checksum recomputed) that was never issued."""
    mnemonic = rehearsal.shares()["alice"]
    share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
    forged = dataclasses.replace(share, value=bytes([share.value[0] ^ 1]) + share.value[1:])
    altered = forged.mnemonic()
    result = check(rehearsal.bundle, write_share(tmp_path, altered), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["outcome"] == "no-match"
    assert report["message"] == (
        "this share has the right set but does not match any recorded share: it may have "
        "been altered (words in the right order?)")
    assert report["participant"] is None
    human = check(rehearsal.bundle, write_share(tmp_path, altered))
    assert human.returncode == 1 and human.stdout == ""
    assert human.stderr.startswith("ceremony: this share has the right set but does not "
                                   "match any recorded share")
    for out in (result.stdout + result.stderr, human.stdout + human.stderr):
        assert_no_share_in(out, altered, str(tmp_path))
        assert_no_share_in(out, mnemonic, str(tmp_path))


def test_word_not_in_the_wordlist(rehearsal: Rehearsal, tmp_path: Path) -> None:
    mnemonic = rehearsal.shares()["carol"]
    assert "zebrafish" not in WORD_INDEX_MAP
    altered = with_word(mnemonic, 7, "zebrafish")
    result = check(rehearsal.bundle, write_share(tmp_path, altered))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == "ceremony: word 7 is not a SLIP-39 word"
    assert "zebrafish" not in result.stderr
    assert_no_share_in(result.stdout + result.stderr, altered, str(tmp_path))
    two = with_word(altered, 12, "qwerty")
    result = check(rehearsal.bundle, write_share(tmp_path, two))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == "ceremony: words 7 and 12 are not SLIP-39 words"
    assert "qwerty" not in result.stderr


def test_missing_word_is_a_length_error(rehearsal: Rehearsal, tmp_path: Path) -> None:
    words = rehearsal.shares()["alice"].split()
    result = check(rehearsal.bundle, write_share(tmp_path, " ".join(words[:-1])))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"ceremony: the share has {len(words) - 1} words, which is not the length of a "
        f"SLIP-39 share; this ceremony's shares have {len(words)} words")
    assert_no_share_in(result.stdout + result.stderr, " ".join(words), str(tmp_path))


def test_empty_or_missing_share_file(rehearsal: Rehearsal, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    result = check(rehearsal.bundle, empty)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ceremony: the share file {empty} is empty")
    result = check(rehearsal.bundle, tmp_path / "absent.txt")
    assert result.returncode == 2
    assert result.stderr.startswith(f"ceremony: cannot read the share file {tmp_path}")


def test_no_terminal_and_no_share_file(rehearsal: Rehearsal) -> None:
    result = subprocess.run([sys.executable, "-m", "ceremony.cli.main", "shares", "check",
                             str(rehearsal.bundle)], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("ceremony: no terminal to type the share on")


def _altered_bundle(rehearsal: Rehearsal, tmp_path: Path) -> Path:
    """A copy whose transcript gives alice's recorded commitment to bob and bob's to alice."""
    bundle = tmp_path / "bundle"
    shutil.copytree(rehearsal.bundle, bundle)
    path = bundle / "transcript.jsonl"
    text = path.read_text()
    line = next(ln for ln in text.splitlines() if '"event":"shares.created"' in ln)
    entry = json.loads(line)
    holders = entry["payload"]["holders"]
    holders[0]["commitment"], holders[1]["commitment"] = (holders[1]["commitment"],
                                                          holders[0]["commitment"])
    swapped = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert swapped != line
    path.write_text(text.replace(line, swapped))
    return bundle


def test_altered_transcript_is_not_used(rehearsal: Rehearsal, tmp_path: Path) -> None:
    bundle = _altered_bundle(rehearsal, tmp_path)
    mnemonic = rehearsal.shares()["alice"]
    for extra in ((), ("--json",)):
        result = check(bundle, write_share(tmp_path, mnemonic), *extra)
        assert result.returncode == 1
        assert result.stdout == ""
        first = result.stderr.splitlines()[0]
        assert first.startswith(f"ceremony: the bundle {bundle} does not verify (chain: ")
        assert first.endswith("so it cannot be the reference for your share")
        assert "intact" not in result.stderr
        assert_no_share_in(result.stdout + result.stderr, mnemonic, str(tmp_path))
    # The share is not even asked for: no terminal, yet the bundle is what is refused.
    result = subprocess.run([sys.executable, "-m", "ceremony.cli.main", "shares", "check",
                             str(bundle)], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "does not verify" in result.stderr


def test_not_a_bundle_directory(tmp_path: Path) -> None:
    share = write_share(tmp_path, "academic acid")
    result = check(tmp_path / "nowhere", share)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ceremony: {tmp_path / 'nowhere'} is not a bundle "
                                    "directory")


def test_typed_on_the_terminal_without_echo(rehearsal: Rehearsal) -> None:
    """On a real pseudo-terminal: the prompt, the share typed, nothing of it shown."""
    mnemonic = rehearsal.shares()["bob"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, with the pty as its controlling terminal
        os.execv(sys.executable, [sys.executable, "-m", "ceremony.cli.main", "shares",
                                  "check", str(rehearsal.bundle)])
    seen = b""
    sent = False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not sent and b"not shown): " in seen:
                os.write(fd, mnemonic.encode() + b"\n")
                sent = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    output = seen.decode(errors="replace")
    assert sent, output
    assert os.waitstatus_to_exitcode(status) == 0, output
    assert "your share is intact: custodian bob, group 1 member 2" in output
    assert_no_share_in(output, mnemonic, str(rehearsal.bundle))


# ---------------------------------------------------------------- the look-up, in-process

def _reference(sets: tuple[ShareSet, ...]) -> Reference:
    return Reference(Path("bundle"), CEREMONY, False, "0" * 64, sets, 32)


def _set(mnemonics: list[str], line: int, withdrawn_at: int | None = None) -> ShareSet:
    identifier = shamir_mnemonic.Share.from_mnemonic(mnemonics[0]).identifier
    holders = tuple({"participant": p, "group": 1, "member": i + 1,
                     "commitment": share_commitment(CEREMONY, m)}
                    for i, (p, m) in enumerate(zip(("alice", "bob"), mnemonics, strict=False)))
    return ShareSet(line, "provision-root-key", identifier, holders, withdrawn_at)


def _mnemonics() -> list[str]:
    groups = shamir_mnemonic.generate_mnemonics(1, [(2, 2)], bytes(32), b"", extendable=True,
                                                iteration_exponent=1)
    return [str(m) for m in groups[0]]


def test_share_of_a_rolled_back_set_is_withdrawn() -> None:
    old, new = _mnemonics(), _mnemonics()
    reference = _reference((_set(old, 14, withdrawn_at=16), _set(new, 30)))
    result = check_share(reference, old[1])
    assert result.outcome == "withdrawn" and not result.intact
    assert result.message == (f"this share was withdrawn: ceremony {CEREMONY} removed the "
                              "shares it belongs to (transcript line 16), so it protects "
                              "nothing")
    assert check_share(reference, new[1]).message.startswith(
        "your share is intact: custodian bob, group 1 member 2 of share set")


def test_no_shares_in_force() -> None:
    shares = _mnemonics()
    assert check_share(_reference(()), shares[0]).message == (
        f"ceremony {CEREMONY} has no shares to compare with: it recorded none")
    reference = _reference((_set(shares, 14, withdrawn_at=20),))
    result = check_share(reference, _mnemonics()[0])
    assert result.outcome == "no-shares"
    assert result.message.endswith("its shares were removed (transcript line 20)")


def test_lookup_rejects_before_comparing() -> None:
    with pytest.raises(InputError, match=r"^word 1 is not a SLIP-39 word$"):
        check_share(_reference(()), "notaword " + _mnemonics()[0].split(maxsplit=1)[1])
    with pytest.raises(InputError, match=r"^no share was given$"):
        check_share(_reference(()), "  \n")
