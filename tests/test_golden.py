"""Golden transcripts: the seeded, scripted ceremony is byte-for-byte reproducible.

The committed bundles under tests/vectors/golden/ are written only by
scripts/make_vectors.py; these tests run the same ceremony into tmp_path and compare every
file, and check the committed bundles with the independent verifier. After an intended
change to the transcript, regenerate with ``.venv/bin/python scripts/make_vectors.py`` and
review the diff.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from ceremony.verify import verify_bundle

REPO = Path(__file__).resolve().parent.parent
VECTORS = REPO / "tests" / "vectors"
GOLDEN = VECTORS / "golden"
REGENERATE = "regenerate with `.venv/bin/python scripts/make_vectors.py` and review the diff"


@cache
def make_vectors() -> ModuleType:
    """scripts/make_vectors.py, imported (it is a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("make_vectors",
                                                  REPO / "scripts" / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_vectors"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_tree(made: Path, golden: Path) -> None:
    ours, theirs = tree(made), tree(golden)
    assert sorted(ours) == sorted(theirs), f"the file lists differ; {REGENERATE}"
    for name, data in ours.items():
        assert data == theirs[name], f"{name} is not byte-identical to {golden / name}; " \
                                     f"{REGENERATE}"


@pytest.mark.parametrize(("variant", "directory"), [
    ("GOLDEN", "bundle"), ("ABORTED", "aborted-bundle"), ("OTHER", "other-bundle")])
def test_ceremony_is_byte_identical(tmp_path: Path, variant: str, directory: str) -> None:
    mv = make_vectors()
    mv.run_ceremony(tmp_path / "bundle", getattr(mv, variant))
    assert_same_tree(tmp_path / "bundle", GOLDEN / directory)


def test_golden_bundle_verifies() -> None:
    report = verify_bundle(GOLDEN / "bundle")
    assert report.ok, report.first_failure
    assert report.outcome == "completed"
    assert report.rehearsal is True
    assert report.ceremony_id == "sample-root-2026"
    assert report.entries == 22
    assert [(a["step"], a["participant"], a["role"]) for a in report.approvals] == [
        ("open", "wendy", "witness"), ("provision-root-key", "alice", "custodian"),
        ("provision-root-key", "bob", "custodian"), ("provision-root-key", "wendy", "witness"),
        ("close", "wendy", "witness")]
    lines = (GOLDEN / "bundle" / "transcript.jsonl").read_bytes().splitlines()
    assert report.head is not None and len(lines) == report.entries
    assert report.root_fingerprint is not None


def test_aborted_bundle_verifies_as_aborted() -> None:
    report = verify_bundle(GOLDEN / "aborted-bundle")
    assert report.ok, report.first_failure
    assert report.outcome == "aborted"
    assert report.root_public_key is None  # the abort destroyed the provisioned key
    assert not (GOLDEN / "aborted-bundle" / "root-public-key.pem").exists()
    events = [line.split(b'"event":"')[1].split(b'"')[0] for line in
              (GOLDEN / "aborted-bundle" / "transcript.jsonl").read_bytes().splitlines()]
    assert events[-2:] == [b"ceremony.aborted", b"seal"]
    assert b"root_key.created" in events  # aborted after the provisioning step


def test_other_ceremony_verifies() -> None:
    report = verify_bundle(GOLDEN / "other-bundle")
    assert report.ok, report.first_failure
    assert report.ceremony_id == "other-root-2026"


def test_golden_files_hold_no_secret(tmp_path: Path) -> None:
    mv = make_vectors()
    _token, secrets = mv.run_ceremony(tmp_path / "bundle", mv.GOLDEN)
    assert len(secrets.shares) == 3
    committed = tree(VECTORS / "golden") | tree(VECTORS / "tamper")
    needles = [m.encode() for m in secrets.shares.values()]
    needles += [" ".join(m.split()[:8]).encode() for m in secrets.shares.values()]
    needles.append(b"PRIVATE KEY")
    for name, data in committed.items():
        for needle in needles:
            assert needle not in data, f"{name} holds a secret"


def test_all_vectors_regenerate_identically(tmp_path: Path) -> None:
    """The committed golden/ and tamper/ trees are exactly what make_vectors.py writes."""
    make_vectors().generate(tmp_path)
    for part in ("golden", "tamper"):
        assert_same_tree(tmp_path / part, VECTORS / part)


def test_run_twice_is_identical(tmp_path: Path) -> None:
    """Determinism without the committed files: two runs in a row give the same bytes."""
    mv = make_vectors()
    mv.run_ceremony(tmp_path / "one", mv.GOLDEN)
    mv.run_ceremony(tmp_path / "two", mv.GOLDEN)
    assert tree(tmp_path / "one") == tree(tmp_path / "two")
