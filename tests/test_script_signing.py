"""Signed scripts and rollback protection (CER-SCRIPT-SIGNED, CER-SCRIPT-ROLLBACK).

What an administrator and an auditor notice: `ceremony script sign` appends an authorizer's
signature over the script's exact bytes to SCRIPT.sigs (with a rehearsal key file, or the
custodian's card on the real PC/SC stack); `ceremony run` refuses, in one sentence and exit
1 before any token is opened, a script without the policy's quorum of valid signatures
(none, one of two, over other bytes, by a non-authorizer, forged) and a script whose version
is not newer than the last one sealed; the state file changes only when a ceremony is
sealed; a rehearsal waives both and its transcript says so; the verifier checks the
signatures again from the bundle's copy and notices it removed or altered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import digest, sha256_hex
from ceremony.engine.core import Devices, Engine
from ceremony.errors import CheckFailed, Kind, QuorumError
from ceremony.model import statements as st
from ceremony.model.authorization import (
    LastRun,
    Presented,
    authorization_record,
    parse_signatures,
    signature_line,
    statement_for,
)
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import make_cast, sample_texts
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.test_crash import SIGNED_AT, Ceremony, prepare_ceremony

GOLDEN = Path(__file__).resolve().parent / "vectors" / "golden" / "bundle"
TITLE = 'title = "Sample root key ceremony"'


# ------------------------------------------------------------------ a room with no token


@dataclass
class Room:
    """The sample script and policy with seeded identity keys, and no token at all."""

    directory: Path

    @property
    def script(self) -> Path:
        return self.directory / "script.toml"

    @property
    def sigs(self) -> Path:
        return self.directory / "script.toml.sigs"

    @property
    def state(self) -> Path:
        return self.directory / "state" / "versions.json"

    def key(self, who: str) -> Path:
        return self.directory / "identities" / f"{who}.pem"

    def sign(self, who: str, *extra: str, script: Path | None = None
             ) -> subprocess.CompletedProcess[str]:
        return run_cli("script", "sign", str(script or self.script), "--as", who, "--key",
                       str(self.key(who)), "--rehearsal", *extra)

    def signed_line(self, who: str, text: str | None = None) -> bytes:
        """A valid line for ``who`` over ``text`` (default: the script), made directly."""
        script = parse_script(text or self.script.read_text(), "script.toml")
        participant = script.participant(who)
        assert participant is not None
        statement = statement_for(script, who, participant.role, SIGNED_AT)
        return signature_line(statement, KeyFileSigner.load(who, self.key(who)).sign(
            st.message(statement)))

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """A real (not rehearsal) headless run; the token does not exist, so anything
        refused must be refused before one is opened."""
        return run_cli("run", str(self.script), "--headless", "--answers",
                       str(self.directory / "answers.toml"), "--out",
                       str(self.directory / "bundle"), "--state", str(self.state),
                       "--token", "pkcs11:token=nonexistent", *extra)


@pytest.fixture
def room(tmp_path: Path) -> Room:
    script, policy = sample_texts()
    cast = make_cast(script, SeededRandom("crash-participants"))
    (tmp_path / "script.toml").write_text(cast.script_text)
    (tmp_path / "policy.toml").write_text(policy)
    (tmp_path / "identities").mkdir()
    for pid, signer in cast.signers.items():
        assert isinstance(signer, KeyFileSigner)
        signer.save(tmp_path / "identities" / f"{pid}.pem")
    # No approvals yet: enough for a run to reach the authorization check.
    (tmp_path / "answers.toml").write_text('ceremony_id = "sample-root-2026"\n\n'
                                           '[[steps]]\nid = "open"\n')
    return Room(tmp_path)


def one_sentence(result: subprocess.CompletedProcess[str], code: int, says: str,
                 requirement: str) -> str:
    shown = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == code, shown
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2, shown
    assert lines[0].startswith("ceremony: ") and says in lines[0], shown
    assert lines[0].endswith(f"[{requirement}]"), shown
    assert len(lines) == 1 or lines[1].startswith("  hint: "), shown
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


# ------------------------------------------------------------------ signing


def test_signing_appends_one_line_per_authorizer(room: Room) -> None:
    first = room.sign("alice")
    assert first.returncode == 0, first.stderr
    script_sha = sha256_hex(room.script.read_bytes())
    assert "alice (custodian) signed script sample-root-2026 version 1" in first.stdout
    assert f"script SHA-256: {script_sha}" in first.stdout
    assert "1 signature(s) (alice) of the 2 policy 'sample-root-policy' requires" in first.stdout
    second = room.sign("bob")
    assert second.returncode == 0, second.stderr
    assert "2 signature(s) (alice, bob)" in second.stdout
    assert "the script may run" in second.stdout

    lines = room.sigs.read_bytes().splitlines()
    assert len(lines) == 2
    for raw, who in zip(lines, ("alice", "bob"), strict=True):
        entry = json.loads(raw)
        statement = entry["statement"]
        assert statement == {**statement_for(parse_script(room.script.read_text(), "s"), who,
                                             "custodian", statement["time"])}
        assert statement["script_sha256"] == script_sha and statement["version"] == 1
        public = KeyFileSigner.load(who, room.key(who)).public_key
        assert st.verify_ed25519(st.decode_key(public), st.unb64(entry["signature"]),
                                 st.message(statement))


def test_signing_refusals_change_nothing(room: Room) -> None:
    assert room.sign("alice").returncode == 0
    before = room.sigs.read_bytes()
    one_sentence(room.sign("oscar"), 1, "oscar is an auditor, and policy "
                 "'sample-root-policy' lets only custodians authorize scripts",
                 "CER-SCRIPT-SIGNED")
    refused = run_cli("script", "sign", str(room.script), "--as", "mallory", "--key",
                      str(room.key("bob")), "--rehearsal")
    assert refused.returncode == 2 and "'mallory' is not a participant" in refused.stderr
    one_sentence(run_cli("script", "sign", str(room.script), "--as", "bob", "--key",
                         str(room.key("bob"))), 2, "plain identity key files are allowed "
                 "only in a rehearsal", "CER-IDENTITY")
    one_sentence(run_cli("script", "sign", str(room.script), "--as", "bob", "--key",
                         str(room.key("carol")), "--rehearsal"), 1,
                 f"the key in {room.key('carol')} is not bob's identity key",
                 "CER-SCRIPT-SIGNED")
    twice = room.sign("alice")
    assert twice.returncode == 2 and "alice has already signed this script" in twice.stderr
    neither = run_cli("script", "sign", str(room.script), "--as", "bob")
    assert neither.returncode == 2 and "give one of --card, --token URI or --key FILE" in (
        neither.stderr)
    assert room.sigs.read_bytes() == before


def test_a_changed_script_is_not_signed_over_old_signatures(room: Room) -> None:
    assert room.sign("alice").returncode == 0
    room.script.write_text(room.script.read_text().replace(TITLE, 'title = "Changed"'))
    before = room.sigs.read_bytes()
    one_sentence(room.sign("bob"), 1, "alice's signature is over other script bytes",
                 "CER-SCRIPT-SIGNED")
    assert room.sigs.read_bytes() == before


def test_a_script_that_breaks_its_policy_is_not_signed(room: Room) -> None:
    room.script.write_text(room.script.read_text().replace("approvals = 2\n",
                                                           "approvals = 1\n"))
    result = room.sign("alice")
    assert result.returncode == 1, result.stderr
    assert "needs at least 2 custodian approvals" in result.stderr
    assert "a script that breaks its policy is not signed" in result.stderr
    assert not room.sigs.exists()


# ------------------------------------------------------------------ refusals at run time


def _other_bytes(room: Room) -> None:
    room.sigs.write_bytes(room.signed_line("alice") + room.signed_line("bob"))
    room.script.write_text(room.script.read_text().replace(TITLE, 'title = "Changed"'))


def _forged(room: Room) -> None:
    bob = json.loads(room.signed_line("bob"))
    signature = bytearray(st.unb64(bob["signature"]))
    signature[0] ^= 1
    bob["signature"] = st.b64(bytes(signature))
    from ceremony.canonical import canonical_bytes

    room.sigs.write_bytes(room.signed_line("alice") + canonical_bytes(bob) + b"\n")


REFUSALS: dict[str, tuple[Any, str]] = {
    "no-signatures": (lambda r: None, "is not authorized: there is no"),
    "one-of-two": (lambda r: r.sigs.write_bytes(r.signed_line("alice")),
                   "is authorized by 1 of the 2 authorizers policy 'sample-root-policy' "
                   "requires (signed: alice)"),
    "over-other-bytes": (_other_bytes, "script.toml.sigs:1: alice's signature is over other "
                                       "script bytes (ceremony sample-root-2026 version 1"),
    "non-authorizer": (lambda r: r.sigs.write_bytes(r.signed_line("alice")
                                                    + r.signed_line("wendy")),
                       "script.toml.sigs:2: wendy is a witness, and policy "
                       "'sample-root-policy' lets only custodians authorize scripts"),
    "forged": (_forged, "script.toml.sigs:2: bob's signature does not verify with their "
                        "identity key"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_run_refuses_an_unauthorized_script(room: Room, case: str) -> None:
    arrange, says = REFUSALS[case]
    arrange(room)
    one_sentence(room.run(), Kind.CHECK_FAILED.value, says, "CER-SCRIPT-SIGNED")
    assert not (room.directory / "bundle").exists()
    assert not room.state.exists()


def test_a_rehearsal_checks_the_signatures_it_is_given(room: Room) -> None:
    """Waiving is for a rehearsal with no SCRIPT.sigs; signatures presented must hold."""
    room.sigs.write_bytes(room.signed_line("alice"))
    one_sentence(room.run("--rehearsal"), 1, "is authorized by 1 of the 2",
                 "CER-SCRIPT-SIGNED")


def test_a_malformed_signatures_file_is_exit_2(room: Room) -> None:
    room.sigs.write_bytes(room.signed_line("alice") + b'{"signature": "x"}\n')
    result = room.run()
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"ceremony: {room.sigs}:2: is not one canonical JSON")


def test_the_engine_itself_refuses(tmp_path: Path) -> None:
    """Every front end goes through Engine.start, which checks again (not only the CLI)."""
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    policy = parse_policy(policy_text, "policy.toml")
    token = FakeToken(SeededRandom("token"))
    devices = Devices(TickingClock(), SeededRandom("os"), token,
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())

    def start(presented: Presented | None, rehearsal: bool = False) -> Engine:
        return Engine.start(cast.script, policy, cast.script_text.encode(),
                            policy_text.encode(), devices, tmp_path / "bundle",
                            rehearsal=rehearsal, authorization=presented,
                            attestation=passing_attestation(rehearsal))

    def line(who: str) -> bytes:
        statement = statement_for(cast.script, who, "custodian", SIGNED_AT)
        signer = cast.signers[who]
        assert isinstance(signer, KeyFileSigner)
        return signature_line(statement, signer.sign(st.message(statement)))

    with pytest.raises(QuorumError, match="is not authorized") as no_sigs:
        start(None)
    assert no_sigs.value.requirement == "CER-SCRIPT-SIGNED"
    with pytest.raises(QuorumError, match="1 of the 2"):
        start(Presented(line("alice"), state_checked=True))
    both = line("alice") + line("bob")
    with pytest.raises(CheckFailed, match="no version state was read") as unchecked:
        start(Presented(both))
    assert unchecked.value.requirement == "CER-SCRIPT-ROLLBACK"
    with pytest.raises(CheckFailed, match="version 1 is not newer than version 1") as old:
        start(Presented(both, state_checked=True, last=LastRun(1, "0" * 64, "completed",
                                                               SIGNED_AT)))
    assert old.value.requirement == "CER-SCRIPT-ROLLBACK"
    assert not (tmp_path / "bundle").exists() and token.keys == {}
    # A rehearsal without either is waived, and says so.
    start(None, rehearsal=True)
    first = json.loads((tmp_path / "bundle" / "transcript.jsonl").read_text().splitlines()[0])
    assert first["payload"]["authorization"]["status"] == "waived (rehearsal)"
    assert first["payload"]["rollback"]["status"] == "waived (rehearsal)"


def test_signatures_by_a_card_and_a_key_file_are_both_accepted_in_the_record(
        room: Room) -> None:
    """The transcript's record of the authorizations: who, as what, when, statement digest."""
    room.sigs.write_bytes(room.signed_line("alice") + room.signed_line("carol"))
    script = parse_script(room.script.read_text(), "script.toml")
    policy = parse_policy((room.directory / "policy.toml").read_text(), "policy.toml")
    record = authorization_record(script, policy, Presented(room.sigs.read_bytes()),
                                  rehearsal=False)
    statements = [s.statement for s in parse_signatures(room.sigs.read_bytes(), "s")]
    assert record == {
        "status": "verified", "file": "script.toml.sigs",
        "file_sha256": sha256_hex(room.sigs.read_bytes()),
        "policy": {"required": True, "signers": 2, "roles": ["custodian"]},
        "signatures": [{"participant": who, "role": "custodian", "time": SIGNED_AT,
                        "statement_sha256": digest(s)}
                       for who, s in zip(("alice", "carol"), statements, strict=True)]}


# ------------------------------------------------------------------ real runs and rollback


def _signed(c: Ceremony, path: Path, text: str) -> Path:
    """``text`` written to ``path`` and signed there by alice and bob (path.sigs)."""
    path.write_text(text)
    other = Ceremony(c.directory, path, c.answers_path, c.pin_path, c.softhsm, c.script,
                     c.login)
    other.sign()
    return path


def test_a_sealed_version_is_never_run_again_nor_an_older_one(tmp_path: Path,
                                                               softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "c", softhsm, script_edit=("version = 1\n",
                                                               "version = 2\n"))
    state = tmp_path / "state.json"
    result = c.run("--state", str(state))
    assert result.returncode == 0, result.stderr
    report = verify_bundle(c.out)
    assert report.ok, report.first_failure

    # The bundle carries the signatures; ceremony.started records them and the check.
    sigs = c.script_path.with_name("script.toml.sigs").read_bytes()
    assert (c.out / "script.toml.sigs").read_bytes() == sigs
    started = c.entries()[0]["payload"]
    assert started["authorization"]["status"] == "verified"
    assert [s["participant"] for s in started["authorization"]["signatures"]] == ["alice",
                                                                                   "bob"]
    assert [s["statement_sha256"] for s in started["authorization"]["signatures"]] == [
        digest(s.statement) for s in parse_signatures(sigs, "s")]
    assert started["rollback"] == {"status": "checked", "ceremony": "sample-root-2026",
                                   "version": 2, "last_version": None, "last_head": None}
    recorded = json.loads(state.read_text())["ceremonies"]["sample-root-2026"]
    assert (recorded["version"], recorded["head"], recorded["outcome"]) == (
        2, report.head, "completed")

    older = _signed(c, tmp_path / "c" / "v1.toml",
                    c.script_path.read_text().replace("version = 2\n", "version = 1\n"))
    for script, says in ((older, "version 1 is not newer than version 2, which was already "
                                 "run and sealed here on"),
                         (c.script_path, "version 2 is not newer than version 2")):
        out = tmp_path / f"again-{script.stem}"
        refused = c.run("--state", str(state), "--out", str(out), script=script)
        sentence = one_sentence(refused, 1, says, "CER-SCRIPT-ROLLBACK")
        assert "(outcome completed)" in sentence and "nothing was written" in sentence
        assert not out.exists()
    assert json.loads(state.read_text())["ceremonies"]["sample-root-2026"] == recorded

    # A newer version passes the check (and is then refused by the token: the key exists).
    newer = _signed(c, tmp_path / "c" / "v3.toml",
                    c.script_path.read_text().replace("version = 2\n", "version = 3\n"))
    later = c.run("--state", str(state), "--out", str(tmp_path / "v3"), script=newer)
    assert "CER-SCRIPT" not in later.stderr and "[CER-NO-CLOBBER]" in later.stderr


def test_the_state_changes_only_when_a_ceremony_is_sealed(tmp_path: Path,
                                                          softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "c", softhsm)
    state = tmp_path / "state" / "versions.json"
    assert c.run("--state", str(state), kill_after=12).returncode == -9
    assert not state.exists()
    resumed = c.run("--resume", "--state", str(state))
    assert resumed.returncode == 0, resumed.stderr
    recorded = json.loads(state.read_text())
    assert recorded["format"] == "ceremony.versions.v1"
    entry = recorded["ceremonies"]["sample-root-2026"]
    assert (entry["version"], entry["head"]) == (1, verify_bundle(c.out).head)
    assert entry["sealed"] == c.entries()[-1]["time"]


def test_a_rehearsal_waives_both_and_says_so(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "c", softhsm)
    c.script_path.with_name("script.toml.sigs").unlink()
    xdg = tmp_path / "xdg"
    env = {**c.softhsm.env, "XDG_STATE_HOME": str(xdg)}
    result = run_cli("run", str(c.script_path), "--headless", "--answers",
                     str(c.answers_path), "--out", str(c.out), "--rehearsal", "--token",
                     softhsm.uri, "--module", softhsm.module, *c.login, env=env)
    assert result.returncode == 0, result.stderr
    started = c.entries()[0]["payload"]
    assert started["rehearsal"] is True
    assert started["authorization"] == {
        "status": "waived (rehearsal)", "file": None, "file_sha256": None, "signatures": [],
        "policy": {"required": True, "signers": 2, "roles": ["custodian"]}}
    assert started["rollback"]["status"] == "waived (rehearsal)"
    assert not (c.out / "script.toml.sigs").exists()
    assert not xdg.exists(), "a rehearsal wrote the default version state"
    report = verify_bundle(c.out)
    assert report.ok, report.first_failure


# ------------------------------------------------------------------ the verifier


@pytest.mark.parametrize(("damage", "says"), [
    ("removed", "the bundle has no script.toml.sigs"),
    ("altered", "script.toml.sigs is not the file the ceremony checked (its SHA-256 differs"),
])
def test_the_verifier_checks_the_bundles_signatures(tmp_path: Path, damage: str,
                                                   says: str) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(GOLDEN, bundle)
    assert verify_bundle(bundle).ok
    sigs = bundle / "script.toml.sigs"
    if damage == "removed":
        sigs.unlink()
    else:
        data = bytearray(sigs.read_bytes())
        data[data.index(b'"signature":"') + 13] ^= 0x01  # one base64 digit of a signature
        sigs.write_bytes(bytes(data))
    result = run_cli("verify", str(bundle))
    assert result.returncode == 1
    assert f"FAIL  5. start (transcript.jsonl line 1, seq 0): {says}" in result.stdout
    assert "NOT VERIFIED: step 5 (start) failed [CER-SCRIPT-SIGNED]" in result.stdout


# ------------------------------------------------------------------ a custodian's card


@pytest.mark.pcsc
def test_an_authorizer_signs_with_their_card(room: Room, virtual_card: Any) -> None:
    from tests.test_openpgp_card import PIN, card_public_key, enrolled

    enrolled(virtual_card)
    script = parse_script(room.script.read_text(), "script.toml")
    alice = script.participant("alice")
    assert alice is not None
    card_key = st.encode_key(card_public_key(virtual_card))
    room.script.write_text(room.script.read_text().replace(alice.public_key, card_key))
    wrong = room.directory / "wrong-pin"
    wrong.write_text("654321\n")
    refused = run_cli("script", "sign", str(room.script), "--as", "alice", "--card",
                      "--reader", virtual_card.reader, "--pin-file", str(wrong))
    assert refused.returncode == Kind.DEVICE.value, refused.stderr
    assert refused.stderr.startswith("ceremony: the card refused the PIN; 2 tries left")
    assert not room.sigs.exists()

    pin = room.directory / "pin"
    pin.write_bytes(PIN + b"\n")
    signed = run_cli("script", "sign", str(room.script), "--as", "alice", "--card",
                     "--reader", virtual_card.reader, "--pin-file", str(pin))
    assert signed.returncode == 0, signed.stderr
    assert virtual_card.state().signature_counter == 1
    assert room.sign("bob").returncode == 0
    script = parse_script(room.script.read_text(), "script.toml")
    policy = parse_policy((room.directory / "policy.toml").read_text(), "policy.toml")
    record = authorization_record(script, policy, Presented(room.sigs.read_bytes()),
                                  rehearsal=False)
    assert [s["participant"] for s in record["signatures"]] == ["alice", "bob"]
    line = json.loads(room.sigs.read_bytes().splitlines()[0])
    assert st.verify_ed25519(card_public_key(virtual_card), st.unb64(line["signature"]),
                             st.message(line["statement"]))
