"""`ceremony rehearse` end to end in a subprocess: output, marking, secrecy, refusal.

The rehearsal runs once per module; the tests look at what it left. The secrecy test scans
the public bundle, stdout and stderr for everything secret the run used: every share (whole
and in runs of four words, and its raw share value), the seed rebuilt from a quorum of
shares and the root private key derived from it (hex, base64, raw), and the simulated
participants' identity private keys.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import shamir_mnemonic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.display import words
from ceremony.engine.derive import derive_root_private, seed_fingerprint
from ceremony.model.script import load_script
from tests.conftest import SOFTHSM_MODULE, require, run_cli
from tests.test_crash import share_mnemonics

STEP_TITLES = ("Open the ceremony", "Generate the seed and install the root key",
               "Close the ceremony")


@dataclass
class Rehearsal:
    out: Path
    tmpdir: Path
    result: subprocess.CompletedProcess[str]

    @property
    def bundle(self) -> Path:
        return self.out / "bundle"

    @property
    def secret(self) -> Path:
        return self.out / "secret"

    def transcript_lines(self) -> list[str]:
        return (self.bundle / "transcript.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Rehearsal:
    require(Path(SOFTHSM_MODULE).is_file(), "SoftHSM2")
    base = tmp_path_factory.mktemp("rehearse")
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    env["TMPDIR"] = str(tmpdir)
    result = run_cli("rehearse", "--out", str(base / "out"), env=env, cwd=base)
    return Rehearsal(base / "out", tmpdir, result)


def test_rehearsal_succeeds_and_prints_steps_and_summary(rehearsal: Rehearsal) -> None:
    result = rehearsal.result
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.startswith("REHEARSAL on a throwaway SoftHSM2 token")
    positions = [out.index(f"[{i}/3] {title}") for i, title in enumerate(STEP_TITLES, 1)]
    assert positions == sorted(positions)
    assert "alice approved (1 of 2)" in out and "bob approved (2 of 2)" in out
    assert "confirmed: PROVISION ROOT KEY" in out
    assert "VERIFIED REHEARSAL: ceremony sample-root-2026, outcome completed" in out
    summary = out[out.index("REHEARSAL summary"):]
    fingerprint = re.search(r'"fingerprint":"([0-9a-f]{64})"',
                            (rehearsal.bundle / "transcript.jsonl").read_text())
    assert fingerprint
    assert f"root key fingerprint: {fingerprint.group(1)}" in summary
    assert f"words: {words(fingerprint.group(1))}" in summary
    assert len(words(fingerprint.group(1)).split()) == 8
    assert f"bundle:     {rehearsal.bundle}" in summary
    # The throwaway token's directory is gone.
    assert list(rehearsal.tmpdir.iterdir()) == []


def test_bundle_verifies(rehearsal: Rehearsal) -> None:
    verified = run_cli("verify", str(rehearsal.bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "VERIFIED REHEARSAL" in verified.stdout
    assert "outcome completed" in verified.stdout


def test_every_artifact_is_marked_rehearsal(rehearsal: Rehearsal) -> None:
    assert (rehearsal.bundle / "REHEARSAL.txt").read_text().startswith("REHEARSAL\n")
    first = rehearsal.transcript_lines()[0]
    assert '"event":"ceremony.started"' in first
    assert '"rehearsal":true' in first
    pem = (rehearsal.bundle / "root-public-key.pem").read_text()
    assert pem.startswith("REHEARSAL: not a production key\n-----BEGIN PUBLIC KEY-----")
    sheets = sorted((rehearsal.secret / "shares").glob("*.txt"))
    assert len(sheets) == 3
    for sheet in sheets:
        assert sheet.read_text().startswith("REHEARSAL: not a real share\n")
    identities = sorted((rehearsal.secret / "identities").glob("*.pem"))
    assert len(identities) == 6
    for identity in identities:
        assert identity.read_text().startswith("# REHEARSAL identity key")


def test_secret_directory_is_private(rehearsal: Rehearsal) -> None:
    secret = rehearsal.secret
    paths = [secret, *secret.rglob("*")]
    assert len(paths) > 10
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        assert mode == expected, f"{path} has mode {mode:o}, not {expected:o}"


def _encodings(secret: bytes) -> list[bytes]:
    b64 = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), b64,
            b64.rstrip(b"="), url.rstrip(b"=")]


def test_no_secret_in_bundle_or_output(rehearsal: Rehearsal) -> None:
    haystacks: dict[str, bytes] = {
        "stdout": rehearsal.result.stdout.encode(), "stderr": rehearsal.result.stderr.encode()}
    bundle_files = sorted(p for p in rehearsal.bundle.rglob("*") if p.is_file())
    assert {p.name for p in bundle_files} >= {"transcript.jsonl", "script.toml",
                                              "root-public-key.pem", "SHA256SUMS"}
    for path in bundle_files:
        haystacks[str(path.relative_to(rehearsal.out))] = path.read_bytes()

    needles: dict[str, bytes] = {}
    mnemonics = share_mnemonics(rehearsal.secret / "shares")
    assert len(mnemonics) == 3
    for i, mnemonic in enumerate(mnemonics):
        share_words = mnemonic.split()
        assert len(share_words) >= 20
        needles[f"share {i}"] = mnemonic.encode()
        for j, secret in enumerate(_encodings(shamir_mnemonic.Share.from_mnemonic(
                mnemonic).value)):
            needles[f"share {i} value, encoding {j}"] = secret
    # The seed is never written anywhere: rebuild it from a quorum of the shares.
    seed = shamir_mnemonic.combine_mnemonics(mnemonics[:2], b"")
    assert len(seed) == 32
    script = load_script(rehearsal.secret / "script.toml")
    shares_line = next(line for line in rehearsal.transcript_lines()
                       if '"event":"shares.created"' in line)
    assert seed_fingerprint(bytearray(seed), script.ceremony_id) in shares_line
    root_private = bytes(derive_root_private(bytearray(seed), script.root_key))
    for j, secret in enumerate(_encodings(seed)):
        needles[f"seed, encoding {j}"] = secret
    for j, secret in enumerate(_encodings(root_private)):
        needles[f"root private key, encoding {j}"] = secret
    identities = sorted((rehearsal.secret / "identities").glob("*.pem"))
    for path in identities:
        pem = path.read_bytes()
        body = pem[pem.index(b"-----BEGIN " + b"PRIVATE KEY-----"):]  # split: not key material
        needles[f"{path.name} PEM body"] = b"".join(body.splitlines()[1:-1])
        key = serialization.load_pem_private_key(body, password=None)
        assert isinstance(key, Ed25519PrivateKey)
        raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
        for j, secret in enumerate(_encodings(raw)):
            needles[f"{path.name} private key, encoding {j}"] = secret

    leaks = [f"{what} in {where}" for what, needle in needles.items()
             for where, hay in haystacks.items() if needle in hay]
    for i, mnemonic in enumerate(mnemonics):
        share_words = mnemonic.split()
        for k in range(len(share_words) - 3):
            run = share_words[k:k + 4]
            # Any separator at all: spaces, newlines, the numbering of a share sheet.
            joined = r"[^a-z]+".join(re.escape(w) for w in run)
            pattern = re.compile(rf"(?<![a-z]){joined}(?![a-z])".encode())
            leaks += [f"share {i} words {k}..{k + 3} in {where}"
                      for where, hay in haystacks.items() if pattern.search(hay)]
    assert leaks == []


def test_refuses_existing_nonempty_out(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier bundle\n")
    result = run_cli("rehearse", "--out", str(out))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"ceremony: {out} already exists; a rehearsal never overwrites a bundle"
    assert all(line.startswith("  hint: ") for line in lines[1:])
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "an earlier bundle\n"


def test_refuses_out_that_is_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("not a directory\n")
    result = run_cli("rehearse", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith(f"ceremony: {out} already exists")
    assert out.read_text() == "not a directory\n"
