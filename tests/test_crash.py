"""Crash tests: a real headless `ceremony run` on SoftHSM2, killed with SIGKILL, then resumed.

For every transcript entry of the sample ceremony the run is killed right after that entry
is on disk (CEREMONY_TEST_KILL_AFTER_SEQ, a real SIGKILL), then `ceremony run --resume`
finishes it. The result must verify and the token must hold the root key's two objects and
nothing else (no half key from an interrupted provisioning, no leftover transcript key).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import shamir_mnemonic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.adapters.identity import KeyFileSigner
from ceremony.engine.derive import derive_root_private, seed_fingerprint
from ceremony.model import statements as st
from ceremony.model.script import Script
from ceremony.rehearsal import answers_toml, make_cast, sample_texts, simulated_answers
from tests.conftest import SoftHsm, run_cli
from tests.fakes import SeededRandom

# The sample ceremony writes 22 entries (seq 0..21); test_uninterrupted_run pins this, so a
# change to the engine that adds entries fails there instead of silently shrinking the matrix.
ENTRIES = 22
# Kills after these entries land between action.started and action.completed.
INSIDE_PROVISIONING = range(10, 14)


@dataclass
class Ceremony:
    """A headless ceremony prepared in a directory, ready to run against one token."""

    directory: Path
    script_path: Path
    answers_path: Path
    pin_path: Path
    softhsm: SoftHsm
    script: Script

    @property
    def out(self) -> Path:
        return self.directory / "bundle"

    @property
    def secret(self) -> Path:
        return self.directory / "bundle.secret"

    @property
    def transcript(self) -> Path:
        return self.out / "transcript.jsonl"

    def run(self, *extra: str, kill_after: int | None = None,
            script: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.softhsm.env)
        env.pop("CEREMONY_TEST_KILL_AFTER_SEQ", None)
        if kill_after is not None:
            env["CEREMONY_TEST_KILL_AFTER_SEQ"] = str(kill_after)
        return run_cli("run", str(script or self.script_path), "--headless", "--answers",
                       str(self.answers_path), "--out", str(self.out), "--rehearsal",
                       "--token", self.softhsm.uri, "--module", self.softhsm.module,
                       "--pin-file", str(self.pin_path), *extra, env=env)

    def verify(self) -> subprocess.CompletedProcess[str]:
        return run_cli("verify", str(self.out), env=self.softhsm.env)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.transcript.read_text().splitlines()]

    def events(self) -> list[str]:
        return [e["event"] for e in self.entries()]


def prepare_ceremony(directory: Path, softhsm: SoftHsm,
                     aborts: dict[str, str] | None = None,
                     script_edit: tuple[str, str] | None = None,
                     more_edits: tuple[tuple[str, str], ...] = ()) -> Ceremony:
    """The sample script with seeded identity keys, its policy, answers and a PIN file.

    ``script_edit`` (old, new) is applied to the sample script first (another root key kind,
    say), so approvals in the answers bind to the edited script; ``more_edits`` after it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    template, policy_text = sample_texts()
    for edit in (script_edit, *more_edits):
        if edit is not None:
            assert edit[0] in template
            template = template.replace(*edit)
    cast = make_cast(template, SeededRandom("crash-participants"))
    (directory / "script.toml").write_text(cast.script_text)
    (directory / "policy.toml").write_text(policy_text)
    keys = directory / "identities"
    keys.mkdir(mode=0o700)
    identities = {}
    for pid, signer in cast.signers.items():
        assert isinstance(signer, KeyFileSigner)
        signer.save(keys / f"{pid}.pem")
        identities[pid] = keys / f"{pid}.pem"
    text = answers_toml(cast.script, simulated_answers(cast.script, identities))
    for step, reason in (aborts or {}).items():
        marker = f'id = "{step}"\n'
        assert marker in text
        text = text.replace(marker, marker + f"abort = {json.dumps(reason)}\n")
    (directory / "answers.toml").write_text(text)
    (directory / "pin").write_text(softhsm.pin + "\n")
    return Ceremony(directory, directory / "script.toml", directory / "answers.toml",
                    directory / "pin", softhsm, cast.script)


def token_labels(softhsm: SoftHsm) -> list[str]:
    """The label of every object on the token, read with pkcs11-tool (not our adapter)."""
    tool = shutil.which("pkcs11-tool")
    assert tool
    out = subprocess.run([tool, "--module", softhsm.module, "--token-label", softhsm.label,
                          "--login", "--pin", softhsm.pin, "--list-objects"],
                         capture_output=True, text=True, env=softhsm.env, check=True).stdout
    return sorted(m.group(1).strip() for m in re.finditer(r"^\s*label:\s*(.*)$", out, re.M))


def assert_only_root_key(c: Ceremony) -> None:
    objects = c.softhsm.objects()
    assert len(objects) == 2, objects
    assert sum(o.startswith("Private Key Object; EC_EDWARDS") for o in objects) == 1, objects
    assert sum(o.startswith("Public Key Object; EC_EDWARDS") for o in objects) == 1, objects
    label = c.script.root_key.label
    assert token_labels(c.softhsm) == [label, label]


def share_mnemonics(secret: Path) -> list[str]:
    """The mnemonics on the share sheets in ``secret`` (one numbered word per line)."""
    out = []
    for sheet in sorted(secret.glob("share-*.txt")):
        words = re.findall(r"^\s*\d+\. (\S+)$", sheet.read_text(), re.M)
        out.append(" ".join(words))
    return out


def assert_shares_match_root(c: Ceremony) -> None:
    """The share sheets on disk rebuild the seed of the root key the transcript records."""
    mnemonics = share_mnemonics(c.secret)
    assert len(mnemonics) == 3
    entries = c.entries()
    created = [e["payload"] for e in entries if e["event"] == "root_key.created"][-1]
    shares = [e["payload"] for e in entries if e["event"] == "shares.created"][-1]
    seed = bytearray(shamir_mnemonic.combine_mnemonics(mnemonics[:2], b""))
    assert seed == bytearray(shamir_mnemonic.combine_mnemonics(mnemonics[1:], b""))
    assert seed_fingerprint(seed, c.script.ceremony_id) == shares["seed_fingerprint"]
    private = derive_root_private(seed, c.script.root_key)
    public = Ed25519PrivateKey.from_private_bytes(bytes(private)).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert st.encode_key(public) == created["public_key"]


def assert_verifies(c: Ceremony, outcome: str = "completed") -> None:
    result = c.verify()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"outcome {outcome}" in result.stdout


@pytest.fixture
def ceremony(tmp_path: Path, softhsm: SoftHsm) -> Ceremony:
    return prepare_ceremony(tmp_path / "ceremony", softhsm)


def test_uninterrupted_run(ceremony: Ceremony) -> None:
    result = ceremony.run()
    assert result.returncode == 0, result.stderr
    assert "sealed: outcome completed" in result.stdout
    events = ceremony.events()
    assert len(events) == ENTRIES
    assert events.index("action.started") == INSIDE_PROVISIONING[0]
    assert events.index("action.completed") == INSIDE_PROVISIONING[-1] + 1
    assert events[-1] == "seal"
    assert_verifies(ceremony)
    assert_only_root_key(ceremony)
    assert_shares_match_root(ceremony)


@pytest.mark.parametrize("kill_after", range(ENTRIES))
def test_sigkill_then_resume(ceremony: Ceremony, kill_after: int) -> None:
    killed = ceremony.run(kill_after=kill_after)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    before = ceremony.entries()
    assert before[-1]["seq"] == kill_after

    resumed = ceremony.run("--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr == ""
    assert "sealed: outcome completed" in resumed.stdout

    entries = ceremony.entries()
    events = [e["event"] for e in entries]
    assert entries[: len(before)] == before  # resume only appends
    if before[-1]["event"] == "seal":
        # Sealed before the kill: resume only finishes the checksums and retires the key.
        assert entries == before
    else:
        assert events[kill_after + 1] == "ceremony.resumed"
        assert entries[kill_after + 1]["payload"] == {"after_seq": kill_after,
                                                      "repaired_bytes": 0}
        assert events.count("ceremony.resumed") == 1
    if kill_after in INSIDE_PROVISIONING:
        # The half-done action was undone before anything else, then done again.
        assert events[kill_after + 2] == "action.rolled_back"
        rolled = entries[kill_after + 2]["payload"]
        created_key = "root_key.created" in events[: kill_after + 1]
        assert len(rolled["destroyed_objects"]) == (2 if created_key else 0)
        shares_written = "shares.created" in events[: kill_after + 1]
        assert rolled["removed_share_sheets"] == (3 if shares_written else 0)
        assert events.count("action.started") == 2
        assert events.count("root_key.created") == (2 if created_key else 1)
    else:
        assert "action.rolled_back" not in events
        assert events.count("action.started") == 1
        assert events.count("root_key.created") == 1
    assert events.count("action.completed") == 1
    assert events[-1] == "seal"

    assert_verifies(ceremony)
    assert_only_root_key(ceremony)
    assert_shares_match_root(ceremony)


def test_sigkill_twice(ceremony: Ceremony) -> None:
    """A crash during the resume's own rollback is resumed again."""
    assert ceremony.run(kill_after=12).returncode == -9
    # seq 13 is ceremony.resumed, seq 14 the rollback of the interrupted provisioning.
    assert ceremony.run("--resume", kill_after=14).returncode == -9
    assert ceremony.events()[13:] == ["ceremony.resumed", "action.rolled_back"]
    result = ceremony.run("--resume")
    assert result.returncode == 0, result.stderr
    events = ceremony.events()
    assert events.count("ceremony.resumed") == 2
    assert events.count("action.rolled_back") == 1
    assert_verifies(ceremony)
    assert_only_root_key(ceremony)
    assert_shares_match_root(ceremony)


def test_torn_last_line_is_repaired(ceremony: Ceremony) -> None:
    assert ceremony.run(kill_after=12).returncode == -9
    garbage = b'{"actor":"engine","ceremony":"sample-root-2026","torn write, no newl'
    with ceremony.transcript.open("ab") as handle:
        handle.write(garbage)
    result = ceremony.run("--resume")
    assert result.returncode == 0, result.stderr
    entries = ceremony.entries()
    assert entries[13]["event"] == "ceremony.resumed"
    assert entries[13]["payload"] == {"after_seq": 12, "repaired_bytes": len(garbage)}
    assert entries[14]["event"] == "action.rolled_back"
    assert garbage not in ceremony.transcript.read_bytes()
    assert_verifies(ceremony)
    assert_only_root_key(ceremony)


def test_resume_with_another_script_is_refused(ceremony: Ceremony) -> None:
    assert ceremony.run(kill_after=5).returncode == -9
    transcript = ceremony.transcript.read_bytes()
    objects = ceremony.softhsm.objects()
    other = ceremony.directory / "other-script.toml"
    text = ceremony.script_path.read_text()
    other.write_text(text.replace('title = "Sample root key ceremony"',
                                  'title = "Another root key ceremony"'))
    assert other.read_text() != text

    refused = ceremony.run("--resume", script=other)
    assert refused.returncode == 2, refused.stderr
    first = refused.stderr.splitlines()[0]
    assert first.startswith("ceremony: this script is not the one the unfinished ceremony")
    assert "Traceback" not in refused.stderr
    assert ceremony.transcript.read_bytes() == transcript
    assert ceremony.softhsm.objects() == objects

    result = ceremony.run("--resume")
    assert result.returncode == 0, result.stderr
    assert_verifies(ceremony)
    assert_only_root_key(ceremony)
