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

from ceremony.adapters.activation import activate, combine_pin, read_sheets
from ceremony.adapters.identity import KeyFileSigner
from ceremony.canonical import sha256_hex
from ceremony.engine.derive import derive_kek, derive_root_private, seed_fingerprint
from ceremony.model import statements as st
from ceremony.model.authorization import signature_line, statement_for
from ceremony.model.script import Script, parse_script
from ceremony.rehearsal import answers_toml, make_cast, sample_texts, simulated_answers
from tests.conftest import SoftHsm, run_cli
from tests.fakes import SeededRandom

# The sample ceremony writes 22 entries (seq 0..21); test_uninterrupted_run pins this, so a
# change to the engine that adds entries fails there instead of silently shrinking the matrix.
ENTRIES = 22
# Kills after these entries land between action.started and action.completed.
INSIDE_PROVISIONING = range(10, 14)
# With test_certificates.CERTIFY (a certify_root_key step right after provisioning), the
# certify step's action.started: after the provisioning's action.completed, step.completed,
# checkpoint, then step.started, two approvals, a witness ack and the confirmation. The
# tests check the entry they were killed after, so a change here fails loudly.
CERTIFY_STARTED = INSIDE_PROVISIONING[-1] + 9
RSA_3072 = ('algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 3072')


@dataclass
class Ceremony:
    """A headless ceremony prepared in a directory, ready to run against one token."""

    directory: Path
    script_path: Path
    answers_path: Path
    pin_path: Path  # the token's user PIN (for inspection, and for a known-PIN script)
    softhsm: SoftHsm
    script: Script
    # How `ceremony run` logs in: the PIN share sheets of the first officers (split), or
    # --pin-file (known-pin).
    login: tuple[str, ...] = ()

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
                       *self.login, *extra, env=env)

    def verify(self) -> subprocess.CompletedProcess[str]:
        return run_cli("verify", str(self.out), env=self.softhsm.env)

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.transcript.read_text().splitlines()]

    def events(self) -> list[str]:
        return [e["event"] for e in self.entries()]

    def sign(self, signers: tuple[str, ...] = ("alice", "bob")) -> Path:
        """``signers`` authorize the script's current bytes in SCRIPT.sigs (replacing it),
        as `ceremony script sign --key ... --rehearsal` does: so every real run here checks
        the authorizers' signatures (the rollback check is waived without --state)."""
        script = parse_script(self.script_path.read_text(), "script.toml")
        sigs = b""
        for pid in signers:
            participant = script.participant(pid)
            assert participant is not None
            statement = statement_for(script, pid, participant.role, SIGNED_AT)
            key = KeyFileSigner.load(pid, self.directory / "identities" / f"{pid}.pem")
            sigs += signature_line(statement, key.sign(st.message(statement)))
        path = self.script_path.with_name(self.script_path.name + ".sigs")
        path.write_bytes(sigs)
        return path


SIGNED_AT = "2026-01-01T00:00:00.000000Z"


def known_pin_texts() -> tuple[str, str]:
    """The sample script and policy changed to log in with a known PIN (the policy allows it)."""
    template, policy_text = sample_texts()
    old_pin = f'sha256 = "{sha256_hex(policy_text.encode())}"'
    policy_text = policy_text.replace('allowed_activation = ["split", "pin-pad"]',
                                      'allowed_activation = ["split", "pin-pad", "known-pin"]')
    block = 'mode = "split"\nofficers = ["alice", "bob", "carol"]\nthreshold = 2\n'
    assert block in template and old_pin in template
    template = template.replace(block, 'mode = "known-pin"\n').replace(
        old_pin, f'sha256 = "{sha256_hex(policy_text.encode())}"')
    return template, policy_text


def prepare_ceremony(directory: Path, softhsm: SoftHsm,
                     aborts: dict[str, str] | None = None,
                     script_edit: tuple[str, str] | None = None,
                     more_edits: tuple[tuple[str, str], ...] = (),
                     activation: str = "split") -> Ceremony:
    """The sample script with seeded identity keys, its policy, answers and a login.

    With ``activation`` "split" (the sample's) the token is activated for real: random
    PINs split among the officers, sheets under DIR/officers, and the run presents the
    first two officers' sheets; ``softhsm.pin`` becomes the new PIN, for inspection.
    With "known-pin" the script and policy are changed to log in with --pin-file.
    ``script_edit`` (old, new) is applied to the sample script first (another root key kind,
    say), so approvals in the answers bind to the edited script; ``more_edits`` after it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    template, policy_text = known_pin_texts() if activation == "known-pin" else sample_texts()
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
    login: tuple[str, ...] = ("--pin-file", str(directory / "pin"))
    if activation == "split":
        done = activate(softhsm.module, softhsm.uri, cast.script,
                        bytearray(softhsm.so_pin.encode()), directory / "officers")
        sheets = [done.sheets / f"pin-share-{o}.txt" for o in ("alice", "bob")]
        pin, _ = combine_pin(cast.script.token.activation, read_sheets(sheets))
        softhsm.pin = pin.decode()
        login = tuple(a for sheet in sheets for a in ("--pin-share", str(sheet)))
    (directory / "pin").write_text(softhsm.pin + "\n")
    c = Ceremony(directory, directory / "script.toml", directory / "answers.toml",
                 directory / "pin", softhsm, cast.script, login)
    c.sign()
    return c


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
    key_type = {"ed25519": "EC_EDWARDS", "ecdsa": "EC", "rsa": "RSA"}[
        c.script.root_key.algorithm]
    for cls in ("Private", "Public"):
        pattern = rf"{cls} Key Object; {key_type}\b"
        assert sum(re.match(pattern, o) is not None for o in objects) == 1, objects
    label = c.script.root_key.label
    assert token_labels(c.softhsm) == [label, label]


def assert_no_drift(c: Ceremony) -> None:
    """`ceremony hsm inventory` (the adapter's inventory) against the bundle: every object on
    the token is one the transcript says the ceremony left there, as it recorded it."""
    from tests.test_inventory import findings  # (test_inventory imports this module)

    assert findings(c) == []


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
    rk = c.script.root_key
    if rk.algorithm == "rsa":
        # Generated, not derived: the seed's KEK opens the bundle's wrapped key (an RFC 5649
        # unwrap with cryptography, not the token), which is the recorded root key.
        from tests.test_rsa import _pkcs8_from_blob

        kek = bytes(derive_kek(seed, rk))
        key = _pkcs8_from_blob(kek, (c.out / st.WRAPPED_FILE).read_bytes())
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        assert st.encode_key(der, rk.kind) == created["public_key"]
        return
    private = derive_root_private(seed, rk)
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
        resumed_payload = dict(entries[kill_after + 1]["payload"])
        attested = resumed_payload.pop("attestation")  # the resume attested again
        assert attested["passed"] and attested["rehearsal"] is True
        assert resumed_payload == {"after_seq": kill_after, "repaired_bytes": 0}
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
    assert {k: v for k, v in entries[13]["payload"].items() if k != "attestation"} == {
        "after_seq": 12, "repaired_bytes": len(garbage)}
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


# ------------------------------------------------------------------ inside RSA provisioning


@pytest.mark.parametrize("kill_after", INSIDE_PROVISIONING)
def test_sigkill_inside_rsa_provisioning_then_resume(tmp_path: Path, softhsm: SoftHsm,
                                                     kill_after: int) -> None:
    """Killed inside an rsa-3072 provisioning (first right after its action.started): the
    resume rolls back what was made (the RSA pair and the wrapped blob once generated, the
    share sheets once written), provisions again and completes; nothing is left over."""
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, script_edit=RSA_3072)
    assert c.script.root_key.kind == "rsa-3072"
    killed = c.run(kill_after=kill_after)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    before = c.entries()
    assert before[-1]["seq"] == kill_after
    assert before[-1]["step"] == "provision-root-key"
    assert before[INSIDE_PROVISIONING[0]]["event"] == "action.started"
    events_before = [e["event"] for e in before]
    assert "action.completed" not in events_before
    made_key = "root_key.created" in events_before
    shares_written = "shares.created" in events_before
    # What the kill left: the transcript key, and once generated the RSA pair and its blob
    # (the KEK was a session object: it died with the process).
    left = c.softhsm.objects()
    assert len(left) == (4 if made_key else 2), left
    assert sum("; RSA" in o for o in left) == (2 if made_key else 0), left
    assert (c.out / st.WRAPPED_FILE).exists() == made_key
    assert len(share_mnemonics(c.secret)) == (3 if shares_written else 0)

    resumed = c.run("--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "sealed: outcome completed" in resumed.stdout
    entries = c.entries()
    events = [e["event"] for e in entries]
    assert entries[: len(before)] == before
    assert events[kill_after + 1: kill_after + 3] == ["ceremony.resumed", "action.rolled_back"]
    rolled = entries[kill_after + 2]["payload"]
    assert entries[kill_after + 2]["step"] == "provision-root-key"
    assert rolled["reason"] == "interrupted before it completed"
    assert sorted((o["class"], o["key_type"]) for o in rolled["destroyed_objects"]) == (
        [("private_key", "RSA"), ("public_key", "RSA")] if made_key else [])
    assert rolled["removed_share_sheets"] == (3 if shares_written else 0)
    assert rolled["removed_files"] == ([st.WRAPPED_FILE] if made_key else [])
    assert events.count("action.started") == 2
    assert events.count("root_key.created") == (2 if made_key else 1)
    assert events.count("action.completed") == 1 and events[-1] == "seal"
    if made_key:  # a new key was generated, not the half-made one kept
        keys = [e["payload"]["public_key"] for e in entries if e["event"] == "root_key.created"]
        assert keys[0] != keys[1]

    assert_verifies(c)
    assert_only_root_key(c)
    assert_no_drift(c)
    assert_shares_match_root(c)


# ------------------------------------------------------------------ inside certification

CERTIFY_EVENTS = ("action.started", "certificate.created", "csr.created")


@pytest.mark.parametrize("kind_edit", [None, RSA_3072], ids=["ed25519", "rsa-3072"])
@pytest.mark.parametrize("offset", range(len(CERTIFY_EVENTS)),
                         ids=[e.split(".")[0] for e in CERTIFY_EVENTS])
def test_sigkill_inside_certification_then_resume(tmp_path: Path, softhsm: SoftHsm,
                                                  kind_edit: tuple[str, str] | None,
                                                  offset: int) -> None:
    """Killed inside a certify_root_key step (first right after its action.started): the
    resume removes the files it wrote, keeps the root key and the shares, certifies again
    and completes; the token holds the root key pair and nothing else."""
    from tests.test_certificates import CERTIFY

    c = prepare_ceremony(tmp_path / "ceremony", softhsm, script_edit=kind_edit,
                         more_edits=(CERTIFY,))
    kill_after = CERTIFY_STARTED + offset
    killed = c.run(kill_after=kill_after)
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    before = c.entries()
    assert before[-1]["seq"] == kill_after
    assert (before[-1]["step"], before[-1]["event"]) == ("certify-root-key",
                                                         CERTIFY_EVENTS[offset])
    assert before[CERTIFY_STARTED]["event"] == "action.started"
    written = ["root-certificate.pem", "root-csr.pem"][:offset]
    for name in ("root-certificate.pem", "root-csr.pem"):
        assert (c.out / name).exists() == (name in written)
    assert len(c.softhsm.objects()) == 4  # root key and transcript key: certifying adds none
    root_before = [e["payload"] for e in before if e["event"] == "root_key.created"]

    resumed = c.run("--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "sealed: outcome completed" in resumed.stdout
    entries = c.entries()
    events = [e["event"] for e in entries]
    assert entries[: len(before)] == before
    assert events[kill_after + 1: kill_after + 3] == ["ceremony.resumed", "action.rolled_back"]
    assert entries[kill_after + 2]["step"] == "certify-root-key"
    rolled = entries[kill_after + 2]["payload"]
    removed = rolled.pop("removed_files")
    assert rolled == {"reason": "interrupted before it completed", "destroyed_objects": [],
                      "removed_share_sheets": 0}
    # Each file made, then its QR parts (read back before the entry that records it).
    assert [f for f in removed if not f.startswith("qr/")] == written
    for name in written:
        stem = name.removesuffix(".pem")
        assert any(f.startswith(f"qr/{stem}-REHEARSAL-qr-") for f in removed), name
    # The root key stays: provisioned once, never rolled back; certified again.
    assert [e["payload"] for e in entries if e["event"] == "root_key.created"] == root_before
    assert events.count("action.rolled_back") == 1
    assert events.count("action.started") == 3 and events.count("action.completed") == 2
    assert events.count("certificate.created") == (2 if offset >= 1 else 1)
    assert events.count("csr.created") == (2 if offset >= 2 else 1)
    assert events[-1] == "seal"

    assert_verifies(c)
    assert_only_root_key(c)
    assert_no_drift(c)
    assert_shares_match_root(c)
