"""Malformed scripts, policies and answers files: exit 2 and one sentence, never a traceback.

Every directory under tests/vectors/bad-input/<group>/<name>/ holds the files of one vector
(script.toml and policy.toml; answers.toml for the answers group) and an expect.toml:

    command      "lint" or "run"
    exit         2 for malformed input; 1 for a well-formed script that breaks its policy
    file         the file the message must name (as given on the command line)
    field        the field path the message must name (strict.format_path style)
    line         optional: the message must say file:LINE
    says         a short substring of the sentence
    requirement  exit 1 only: the requirement id, printed as [ID]

scripts/make_bad_input_vectors.py writes them from the sample files. The CLI runs in the
vector's directory so file names in messages are the bare names above.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

VECTORS = Path(__file__).resolve().parent / "vectors" / "bad-input"


@dataclass(frozen=True)
class Expect:
    command: str
    exit: int
    file: str
    field: str
    says: str
    line: int | None
    requirement: str


def _expect(directory: Path) -> Expect:
    data = tomllib.loads((directory / "expect.toml").read_text())
    known = {"command", "exit", "file", "field", "says", "line", "requirement"}
    assert set(data) <= known, f"{directory}: unknown keys {set(data) - known}"
    expect = Expect(data["command"], data["exit"], data["file"], data["field"], data["says"],
                    data.get("line"), data.get("requirement", ""))
    assert expect.command in ("lint", "run")
    assert expect.exit in (1, 2)
    assert (directory / expect.file).is_file(), f"{directory}: no {expect.file}"
    assert (expect.exit == 1) == bool(expect.requirement)
    return expect


def _vector_dirs() -> list[Path]:
    return sorted(p.parent for p in VECTORS.glob("*/*/expect.toml"))


ALL = _vector_dirs()


def test_there_are_enough_vectors() -> None:
    malformed = [d for d in ALL if _expect(d).exit == 2]
    assert len(malformed) >= 30, f"only {len(malformed)} exit-2 vectors"
    groups = {d.parent.name for d in malformed}
    assert {"script", "policy", "answers"} <= groups
    assert any(_expect(d).exit == 1 for d in ALL), "no policy-violation vectors"


def _run(directory: Path, expect: Expect, tmp_path: Path) -> tuple[int, str, str]:
    if expect.command == "lint":
        result = run_cli("lint", "script.toml", cwd=directory)
    else:
        pin = tmp_path / "pin"
        pin.write_text("123456\n")
        # The token does not exist: a malformed answers file must be refused before any
        # token (or identity key file) is opened, so this never gets as far as exit 3.
        result = run_cli("run", "script.toml", "--headless", "--answers", "answers.toml",
                         "--out", str(tmp_path / "out"), "--rehearsal",
                         "--token", "pkcs11:token=nonexistent", "--pin-file", str(pin),
                         cwd=directory)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("directory", ALL, ids=[f"{d.parent.name}/{d.name}" for d in ALL])
def test_bad_input(directory: Path, tmp_path: Path) -> None:
    expect = _expect(directory)
    before = sorted(p.name for p in directory.iterdir())
    code, stdout, stderr = _run(directory, expect, tmp_path)
    shown = f"exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}"

    assert "Traceback" not in stdout + stderr, shown
    assert code == expect.exit, shown
    assert sorted(p.name for p in directory.iterdir()) == before, "the vector was written to"
    assert not (tmp_path / "out").exists(), "a bundle was started from bad input"

    lines = stderr.splitlines()
    if expect.exit == 1:
        # lint lists every violation (one sentence and a hint each), then a count.
        assert lines[-1:] == [f"{expect.file}: 1 policy violation(s)"], shown
        lines = lines[:-1]
    assert 1 <= len(lines) <= 2, shown
    sentence = lines[0]
    assert sentence.startswith("ceremony: "), shown
    if len(lines) == 2:
        assert lines[1].startswith("  hint: "), shown

    located = f"{expect.file}:{expect.line}:" if expect.line else f"{expect.file}:"
    assert f"ceremony: {located}" in sentence, shown
    assert f": {expect.field}: " in sentence, shown
    assert expect.says in sentence, shown
    if expect.requirement:
        assert sentence.endswith(f"[{expect.requirement}]"), shown
    else:
        assert "[CER-" not in sentence, shown


def test_well_formed_answers_get_past_parsing(tmp_path: Path) -> None:
    """The control: the answers file the vectors start from is not itself refused.

    It names identity key files that do not exist, so the run stops there: after the
    answers file was parsed and before any token is opened.
    """
    directory = VECTORS / "answers" / "unknown-step"
    text = (directory / "answers.toml").read_text().replace('"destroy"', '"close"')
    (tmp_path / "answers.toml").write_text(text)
    for name in ("script.toml", "policy.toml"):
        (tmp_path / name).write_bytes((directory / name).read_bytes())
    expect = Expect("run", 2, "answers.toml", "", "", None, "")
    code, stdout, stderr = _run(tmp_path, expect, tmp_path)
    assert code == 2, stderr
    assert "identity key of 'alice' cannot be read" in stderr, stderr
    assert "Traceback" not in stdout + stderr
