"""The engine with in-memory fakes: quorum refusals, the threshold, aborts, status, failures.

Every refusal must raise and leave the transcript byte for byte as it was: the engine writes
an entry only for an answer it accepts. The same paths run on SoftHSM2 in test_crash.py and
test_abort.py; here the fakes make each prompt reachable directly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.core import (
    TRANSCRIPT_FILE,
    Devices,
    Engine,
    transcript_key_id,
    transcript_key_label,
)
from ceremony.engine.prompts import (
    Abort,
    ActionReady,
    Answer,
    Approval,
    ApprovalNeeded,
    Begin,
    BeginStep,
    ConfirmationNeeded,
    Finished,
    Proceed,
    Prompt,
    TypedConfirmation,
)
from ceremony.errors import CeremonyError, QuorumError, TokenError, UsageError
from ceremony.model import statements as st
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import Cast, make_cast, sample_texts
from ceremony.transcript import format_time, parse_time
from ceremony.verify import verify_bundle
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation

PROVISION = "provision-root-key"
PHRASE = "PROVISION ROOT KEY"


@dataclass
class Run:
    engine: Engine
    cast: Cast
    token: FakeToken
    secrets: MemorySecrets
    bundle: Path

    @property
    def transcript(self) -> Path:
        return self.bundle / TRANSCRIPT_FILE

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in self.transcript.read_text().splitlines()]

    def signed(self, who: str, statement: dict[str, Any], *,
               signer: str | None = None) -> Approval:
        key = self.cast.signers[signer or who]
        assert isinstance(key, KeyFileSigner)
        return Approval(who, statement, key.sign(st.message(statement)))

    def approve(self, who: str) -> Prompt:
        prompt = self.engine.next_prompt()
        assert isinstance(prompt, ApprovalNeeded)
        return self.engine.submit(self.signed(who, prompt.for_participant(who)))

    def refused(self, answer: Answer, error: type[CeremonyError] = QuorumError) -> str:
        """Submit ``answer``, expect ``error``, and check that nothing was written."""
        before = self.transcript.read_bytes()
        status = self.engine.status()
        with pytest.raises(error) as caught:
            self.engine.submit(answer)
        assert self.transcript.read_bytes() == before
        assert self.engine.status() == status
        return caught.value.message


def _start(tmp_path: Path, *, script_edit: tuple[str, str] | None = None,
           fail_import: bool = False) -> Run:
    template, policy_text = sample_texts()
    if script_edit is not None:
        assert script_edit[0] in template
        template = template.replace(*script_edit)
    cast = make_cast(template, SeededRandom("participants"))
    token = FakeToken(SeededRandom("token"), fail_import=fail_import)
    secrets = MemorySecrets()
    devices = Devices(TickingClock(), SeededRandom("os"), token,
                      Slip39Splitter(SeededRandom("slip39")), secrets)
    policy = parse_policy(policy_text, "policy.toml")
    bundle = tmp_path / "bundle"
    engine = Engine.start(cast.script, policy, cast.script_text.encode(),
                          policy_text.encode(), devices, bundle, rehearsal=True,
                          attestation=passing_attestation(True))
    return Run(engine, cast, token, secrets, bundle)


def _to_provision_approvals(run: Run) -> ApprovalNeeded:
    """Through the first step, then begin the provisioning step."""
    engine = run.engine
    assert isinstance(engine.submit(Begin()), ApprovalNeeded)
    run.approve("wendy")
    prompt = engine.submit(Begin())
    assert isinstance(prompt, ApprovalNeeded) and prompt.step == PROVISION
    assert prompt.role == "custodian"
    return prompt


def _to_confirmation(run: Run) -> ConfirmationNeeded:
    _to_provision_approvals(run)
    run.approve("alice")
    run.approve("bob")
    prompt = run.approve("wendy")
    assert isinstance(prompt, ConfirmationNeeded)
    return prompt


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return _start(tmp_path)


# ------------------------------------------------------------------ quorum refusals


@pytest.mark.parametrize("who", ["ada", "wendy", "oscar", "mallory"])
def test_approval_from_a_non_custodian(run: Run, who: str) -> None:
    prompt = _to_provision_approvals(run)
    signer = who if who != "mallory" else "alice"
    message = run.refused(run.signed(who, prompt.for_participant(who), signer=signer))
    assert f"{who!r} may not give the approval" in message


def test_approval_from_a_custodian_not_among_the_approvers(tmp_path: Path) -> None:
    run = _start(tmp_path, script_edit=(
        'action = "provision_root_key"\n',
        'action = "provision_root_key"\napprovers = ["alice", "bob"]\n'))
    prompt = _to_provision_approvals(run)
    assert prompt.eligible == ("alice", "bob")
    message = run.refused(run.signed("carol", prompt.for_participant("carol")))
    assert "'carol' may not give the approval" in message
    run.approve("alice")
    run.approve("bob")


def test_duplicate_approval(run: Run) -> None:
    _to_provision_approvals(run)
    run.approve("alice")
    prompt = run.engine.next_prompt()
    assert isinstance(prompt, ApprovalNeeded) and prompt.collected == ("alice",)
    message = run.refused(run.signed("alice", prompt.for_participant("alice")))
    assert "already given" in message


def test_duplicate_witness_acknowledgement(run: Run) -> None:
    _to_provision_approvals(run)
    run.approve("alice")
    run.approve("bob")
    prompt = run.engine.next_prompt()
    assert isinstance(prompt, ApprovalNeeded) and prompt.role == "witness"
    # A custodian cannot stand in for the witness.
    run.refused(run.signed("alice", prompt.for_participant("alice")))


def test_approval_with_a_bad_signature(run: Run) -> None:
    prompt = _to_provision_approvals(run)
    statement = prompt.for_participant("alice")
    # Signed with bob's key, in alice's name.
    message = run.refused(run.signed("alice", statement, signer="bob"))
    assert "does not verify" in message
    # A valid signature with one bit flipped.
    good = run.signed("alice", statement)
    flipped = bytes([good.signature[0] ^ 1]) + good.signature[1:]
    run.refused(Approval("alice", statement, flipped))
    run.refused(Approval("alice", statement, b""))
    # A valid signature over different bytes than the statement given.
    other = run.signed("alice", {**statement, "head": "0" * 64})
    run.refused(Approval("alice", statement, other.signature))


@pytest.mark.parametrize("field, value", [
    ("head", "0" * 64),
    ("step", "open"),
    ("ceremony", "another-ceremony-2026"),
    ("script_sha256", "1" * 64),
    ("step_digest", "2" * 64),
    ("role", "witness"),
    ("participant", "bob"),
    ("type", "ceremony.checkpoint.v1"),
])
def test_replayed_approval(run: Run, field: str, value: str) -> None:
    """A correctly signed statement made for another ceremony, step, head or person."""
    prompt = _to_provision_approvals(run)
    statement = {**prompt.for_participant("alice"), field: value}
    message = run.refused(run.signed("alice", statement))
    assert "another ceremony, step or transcript head" in message


def test_replayed_approval_from_an_earlier_head(run: Run) -> None:
    """Alice's approval, signed for the head before bob's, cannot be re-used for bob's turn."""
    prompt = _to_provision_approvals(run)
    stale = prompt.for_participant("bob")
    run.approve("alice")
    run.refused(run.signed("bob", stale))
    run.approve("bob")


def test_extra_or_missing_statement_fields(run: Run) -> None:
    prompt = _to_provision_approvals(run)
    statement = prompt.for_participant("alice")
    run.refused(run.signed("alice", {**statement, "note": "extra"}))
    run.refused(run.signed("alice", {k: v for k, v in statement.items() if k != "time"}))


def test_approval_signed_before_the_step_started(run: Run) -> None:
    prompt = _to_provision_approvals(run)
    started = parse_time(json.loads(run.transcript.read_text().splitlines()[-1])["time"])
    for moment in (started - timedelta(microseconds=1), started - timedelta(days=1)):
        statement = {**prompt.for_participant("alice"), "time": format_time(moment)}
        message = run.refused(run.signed("alice", statement))
        assert "outside this step's window" in message


def test_approval_signed_in_the_future_or_with_a_bad_time(run: Run) -> None:
    prompt = _to_provision_approvals(run)
    later = parse_time(prompt.template["time"]) + timedelta(days=1)
    statement = {**prompt.for_participant("alice"), "time": format_time(later)}
    run.refused(run.signed("alice", statement))
    statement = {**prompt.for_participant("alice"), "time": "yesterday"}
    assert "malformed time" in run.refused(run.signed("alice", statement))


@pytest.mark.parametrize("typed", ["provision root key", "PROVISION ROOT KEY ", "PROVISION",
                                   "", "PROVISION  ROOT KEY"])
def test_wrong_typed_confirmation(run: Run, typed: str) -> None:
    _to_confirmation(run)
    message = run.refused(TypedConfirmation(typed))
    assert "does not match" in message
    assert isinstance(run.engine.submit(TypedConfirmation(PHRASE)), ActionReady)


# ------------------------------------------------------------------ the threshold


def test_no_advance_short_of_the_threshold(run: Run) -> None:
    _to_provision_approvals(run)
    run.approve("alice")
    prompt = run.engine.next_prompt()
    assert isinstance(prompt, ApprovalNeeded)
    assert (prompt.collected, prompt.needed) == (("alice",), 2)
    for answer in (Proceed(), TypedConfirmation(PHRASE), Begin()):
        run.refused(answer, UsageError)
    again = run.engine.next_prompt()
    assert isinstance(again, ApprovalNeeded)
    assert (again.step, again.role, again.collected, again.needed) == (
        PROVISION, "custodian", ("alice",), 2)
    assert "action.started" not in run.events()
    assert run.secrets.shares == {}
    # The witness cannot be taken before the custodians' quorum either.
    run.refused(run.signed("wendy", prompt.for_participant("wendy")))
    run.approve("bob")
    prompt = run.engine.next_prompt()
    assert isinstance(prompt, ApprovalNeeded) and prompt.role == "witness"
    for answer in (Proceed(), TypedConfirmation(PHRASE)):
        run.refused(answer, UsageError)
    assert isinstance(run.approve("wendy"), ConfirmationNeeded)
    run.refused(Proceed(), UsageError)


def test_whole_ceremony_and_status(run: Run) -> None:
    engine = run.engine
    status = engine.status()
    assert (status.ceremony_id, status.rehearsal) == ("sample-root-2026", True)
    assert (status.step_index, status.steps_total, status.step_id, status.phase) == (
        0, 3, "open", "begin")
    assert (status.seq, status.outcome) == (1, None)
    engine.submit(Begin())
    status = engine.status()
    assert (status.phase, status.collected, status.needed) == ("witnesses", (), 1)
    run.approve("wendy")
    status = engine.status()
    assert (status.step_index, status.step_id, status.phase) == (1, PROVISION, "begin")
    engine.submit(Begin())
    run.approve("alice")
    status = engine.status()
    assert (status.phase, status.collected, status.needed) == ("approvals", ("alice",), 2)
    run.approve("bob")
    run.approve("wendy")
    assert engine.status().phase == "confirm"
    engine.submit(TypedConfirmation(PHRASE))
    assert engine.status().phase == "action"
    engine.submit(Proceed())
    status = engine.status()
    assert (status.step_index, status.step_id, status.phase) == (2, "close", "begin")
    engine.submit(Begin())
    finished = run.approve("wendy")
    assert isinstance(finished, Finished) and finished.outcome == "completed"
    status = engine.status()
    assert (status.step_index, status.step_id, status.phase, status.outcome) == (
        3, None, "finished", "completed")
    assert status.seq == len(run.events()) == 22
    assert status.head == finished.head == engine.writer.head
    assert len(run.secrets.shares) == 3
    # Only the root key is left on the token: the transcript key is retired after sealing.
    assert list(run.token.keys) == [(run.cast.script.root_key.label,
                                     run.cast.script.root_key.key_id)]
    # Nothing can be answered after the seal.
    run.refused(Begin(), UsageError)
    run.refused(Abort("too late"), UsageError)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    assert report.outcome == "completed"


# ------------------------------------------------------------------ aborts


def _reach(run: Run, where: str) -> Prompt:
    engine = run.engine
    if where == "begin":
        return engine.next_prompt()
    if where == "witnesses":
        return engine.submit(Begin())
    if where == "approvals":
        return _to_provision_approvals(run)
    if where == "provision-witness":
        _to_provision_approvals(run)
        run.approve("alice")
        return run.approve("bob")
    if where == "confirm":
        return _to_confirmation(run)
    if where == "action":
        _to_confirmation(run)
        return engine.submit(TypedConfirmation(PHRASE))
    assert where == "after-provisioning"
    _to_confirmation(run)
    engine.submit(TypedConfirmation(PHRASE))
    prompt = engine.submit(Proceed())
    assert isinstance(prompt, BeginStep)
    return engine.submit(Begin())


@pytest.mark.parametrize("where, kind", [
    ("begin", BeginStep), ("witnesses", ApprovalNeeded), ("approvals", ApprovalNeeded),
    ("provision-witness", ApprovalNeeded), ("confirm", ConfirmationNeeded),
    ("action", ActionReady), ("after-provisioning", ApprovalNeeded)])
def test_abort_at_every_prompt(run: Run, where: str, kind: type) -> None:
    prompt = _reach(run, where)
    assert isinstance(prompt, kind)
    finished = run.engine.submit(Abort(f"stopped at {where}"))
    assert isinstance(finished, Finished) and finished.outcome == "aborted"
    assert finished.root_public_key is None
    events = run.events()
    assert events[-2:] == ["ceremony.aborted", "seal"]
    aborted = json.loads(run.transcript.read_text().splitlines()[-2])["payload"]
    assert aborted["reason"] == f"stopped at {where}"
    provisioned = where == "after-provisioning"
    assert len(aborted["destroyed_objects"]) == (2 if provisioned else 0)
    assert aborted["removed_share_sheets"] == (3 if provisioned else 0)
    assert run.token.keys == {}  # root key and transcript key both gone
    assert run.secrets.shares == {}
    assert not (run.bundle / "root-public-key.pem").exists()
    assert run.engine.status().outcome == "aborted"
    run.refused(Abort("again"), UsageError)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    assert report.outcome == "aborted"


def test_failing_provisioning_is_rolled_back_then_aborted(tmp_path: Path) -> None:
    run = _start(tmp_path, fail_import=True)
    _to_confirmation(run)
    engine = run.engine
    prompt = engine.submit(TypedConfirmation(PHRASE))
    assert isinstance(prompt, ActionReady)
    with pytest.raises(TokenError, match="refuses imports"):
        engine.submit(Proceed())
    assert run.token.calls == ["import"]
    events = run.events()
    assert events[-3:] == ["action.started", "entropy.collected", "action.rolled_back"]
    rolled = json.loads(run.transcript.read_text().splitlines()[-1])["payload"]
    assert rolled["reason"] == "the fake token refuses imports"
    assert rolled["destroyed_objects"] == []
    # Nothing is left behind but the transcript key; the action can be tried again.
    assert list(run.token.keys) == [(transcript_key_label("sample-root-2026"),
                                     transcript_key_id("sample-root-2026"))]
    assert run.secrets.shares == {}
    assert not (run.bundle / "root-public-key.pem").exists()
    assert engine.next_prompt() == prompt
    with pytest.raises(TokenError):
        engine.submit(Proceed())
    assert run.events().count("action.rolled_back") == 2
    finished = engine.submit(Abort("the token refuses the root key"))
    assert isinstance(finished, Finished) and finished.outcome == "aborted"
    assert run.token.keys == {}
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    assert report.outcome == "aborted"


def test_failing_provisioning_then_retry_succeeds(tmp_path: Path) -> None:
    """After a rolled-back failure, a working token completes the same step."""
    run = _start(tmp_path, fail_import=True)
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    with pytest.raises(TokenError):
        run.engine.submit(Proceed())
    run.token.fail_import = False
    assert isinstance(run.engine.submit(Proceed()), BeginStep)
    run.engine.submit(Begin())
    assert isinstance(run.approve("wendy"), Finished)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    assert report.outcome == "completed"


def test_start_refuses_a_token_holding_the_root_key(tmp_path: Path) -> None:
    template, policy_text = sample_texts()
    cast = make_cast(template, SeededRandom("participants"))
    token = FakeToken(SeededRandom("token"))
    rk = cast.script.root_key
    token.generate_ed25519(rk.label, rk.key_id)
    devices = Devices(TickingClock(), SeededRandom("os"), token, Slip39Splitter(),
                      MemorySecrets())
    with pytest.raises(TokenError, match="already holds"):
        Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                     cast.script_text.encode(), policy_text.encode(), devices,
                     tmp_path / "bundle", rehearsal=True,
                     attestation=passing_attestation(True))
    assert not (tmp_path / "bundle").exists()


def test_resume_after_a_stop_continues(run: Run) -> None:
    """Resume (the crash path) from a clean stop mid-quorum, with the fakes."""
    _to_provision_approvals(run)
    run.approve("alice")
    engine = run.engine
    engine.writer.close()
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, run.bundle,
                            attestation=passing_attestation(engine.rehearsal))
    prompt = resumed.next_prompt()
    assert isinstance(prompt, ApprovalNeeded) and prompt.collected == ("alice",)
    run.engine = resumed
    run.approve("bob")
    run.approve("wendy")
    resumed.submit(TypedConfirmation(PHRASE))
    resumed.submit(Proceed())
    resumed.submit(Begin())
    assert isinstance(run.approve("wendy"), Finished)
    assert run.events().count("ceremony.resumed") == 1
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def _cut_after(run: Run, event: str) -> None:
    """Simulate a kill right after the last ``event`` entry: drop every line after it."""
    run.engine.writer.close()
    lines = run.transcript.read_bytes().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if json.loads(line)["event"] == event)
    run.transcript.write_bytes(b"".join(lines[: last + 1]))


def test_resume_completes_a_step_whose_last_answer_was_recorded(run: Run) -> None:
    """Killed between the last acknowledgement of an action-less step and step.completed."""
    run.engine.submit(Begin())
    run.approve("wendy")
    _cut_after(run, "witness.ack")
    engine = run.engine
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, run.bundle)
    assert run.events()[-3:] == ["ceremony.resumed", "step.completed", "checkpoint"]
    prompt = resumed.next_prompt()
    assert isinstance(prompt, BeginStep) and prompt.step == PROVISION


def test_resume_does_not_redo_a_completed_action(run: Run) -> None:
    """Killed between action.completed and step.completed: the key is not provisioned twice."""
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    run.engine.submit(Proceed())
    shares = dict(run.secrets.shares)
    _cut_after(run, "action.completed")
    engine = run.engine
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, run.bundle)
    assert run.events()[-3:] == ["ceremony.resumed", "step.completed", "checkpoint"]
    assert isinstance(resumed.next_prompt(), BeginStep)
    assert run.token.calls == ["import"]
    assert run.secrets.shares == shares
    run.engine = resumed
    resumed.submit(Begin())
    assert isinstance(run.approve("wendy"), Finished)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def test_resume_signs_a_checkpoint_lost_to_a_crash(run: Run) -> None:
    """Killed between step.completed and its checkpoint: resume signs one after resuming."""
    run.engine.submit(Begin())
    run.approve("wendy")
    assert run.events()[-2:] == ["step.completed", "checkpoint"]
    _cut_after(run, "step.completed")
    engine = run.engine
    Engine.resume(engine.script, engine.policy, engine.devices, run.bundle)
    assert run.events()[-3:] == ["step.completed", "ceremony.resumed", "checkpoint"]


def test_refused_resume_leaves_a_torn_transcript_untouched(run: Run) -> None:
    """A resume with the wrong script is refused before the torn last line is repaired."""
    run.engine.submit(Begin())
    path = run.bundle / "transcript.jsonl"
    with path.open("ab") as handle:
        handle.write(b'{"torn":')
    before = path.read_bytes()
    other = parse_script(run.cast.script_text.replace(
        'title = "Sample root key ceremony"', 'title = "Another ceremony"'), "script.toml")
    with pytest.raises(UsageError):
        Engine.resume(other, run.engine.policy, run.engine.devices, run.bundle)
    assert path.read_bytes() == before


# ------------------------------------------------------------------ root key kinds


def _ecdsa_edit(curve: str) -> tuple[str, str]:
    return ('algorithm = "ed25519"', f'algorithm = "ecdsa"\ncurve = "{curve}"')


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_whole_ceremony_with_an_ecdsa_root_key(tmp_path: Path, curve: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    run = _start(tmp_path, script_edit=_ecdsa_edit(curve))
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    assert isinstance(run.engine.submit(Proceed()), BeginStep)
    run.engine.submit(Begin())
    finished = run.approve("wendy")
    assert isinstance(finished, Finished) and finished.outcome == "completed"
    kind = f"ecdsa-{curve}"
    assert finished.root_public_key is not None
    assert finished.root_public_key.startswith(kind + ":")
    created = [json.loads(line)["payload"] for line in run.transcript.read_text().splitlines()
               if json.loads(line)["event"] == "root_key.created"]
    assert [c["kind"] for c in created] == [kind]
    assert created[0]["public_key"] == finished.root_public_key
    assert "[1, n-1]" in created[0]["derivation"]
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    assert report.root_public_key == finished.root_public_key
    _, point = st.decode_public_key(finished.root_public_key)
    pem = (run.bundle / "root-public-key.pem").read_bytes()
    key = serialization.load_pem_public_key(pem[pem.index(b"-----BEGIN"):])
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint) == point


def test_ecdsa_bundle_with_another_root_pem_fails(tmp_path: Path) -> None:
    """root-public-key.pem must be the recorded ECDSA key, not merely an EC key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    run = _start(tmp_path, script_edit=_ecdsa_edit("p256"))
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    run.engine.submit(Proceed())
    run.engine.submit(Begin())
    run.approve("wendy")
    other = ec.derive_private_key(7, ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (run.bundle / "root-public-key.pem").write_bytes(b"REHEARSAL: not a production key\n"
                                                     + other)
    failure = verify_bundle(run.bundle).first_failure
    assert failure is not None and failure.name == "seal"
    assert "is not the root key the transcript records" in failure.detail


RSA_EDIT = ('algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 3072')


def test_whole_ceremony_with_an_rsa_root_key(tmp_path: Path) -> None:
    """Generated in the (fake) token, wrapped into the bundle, rebuilt from shares + blob."""
    from ceremony.engine.rsa import rebuild_rsa

    run = _start(tmp_path, script_edit=RSA_EDIT)
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    run.engine.submit(Proceed())
    assert run.token.calls == ["generate_rsa"]
    assert not run.token.extractable  # wrapped once, then never again
    run.engine.submit(Begin())
    finished = run.approve("wendy")
    assert isinstance(finished, Finished) and finished.outcome == "completed"
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    entries = [json.loads(line) for line in run.transcript.read_text().splitlines()]
    (created,) = [e["payload"] for e in entries if e["event"] == "root_key.created"]
    blob = (run.bundle / st.WRAPPED_FILE).read_bytes()
    assert created["kind"] == "rsa-3072"
    assert created["wrapped"] == st.wrapped_record(st_sha256(blob))
    (completed,) = [e["payload"] for e in entries if e["event"] == "action.completed"]
    assert completed["files"][st.WRAPPED_FILE] == st_sha256(blob)
    _, public = st.decode_public_key(created["public_key"])
    assert created["fingerprint"] == st_sha256(public)
    # Shares (a quorum of the sheets) + the bundle's blob rebuild the key in another token.
    seed = run.engine.devices.splitter.combine(list(run.secrets.shares.values())[:2])
    other = FakeToken(SeededRandom("other token"))
    assert rebuild_rsa(other, seed, run.engine.script.root_key, blob) == public

    # A blob altered after the ceremony: the verifier names the file (before the checksums).
    (run.bundle / st.WRAPPED_FILE).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    failure = verify_bundle(run.bundle).first_failure
    assert failure is not None and failure.name == "seal"
    assert failure.requirement == "CER-RSA-WRAP"
    assert "root-key.wrapped is not the wrapped root key" in failure.detail


def st_sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_failed_rsa_wrap_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrap that fails: key pair destroyed, no blob, no share sheet, rollback recorded."""
    run = _start(tmp_path, script_edit=RSA_EDIT)
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))

    def refuse(*args: object) -> bytes:
        raise TokenError("the fake token refuses to wrap")

    monkeypatch.setattr(run.token, "wrap_private", refuse)
    with pytest.raises(TokenError, match="the fake token refuses to wrap"):
        run.engine.submit(Proceed())
    assert run.token.keys.keys() == {run.engine._tk}  # only the transcript key
    assert not (run.bundle / st.WRAPPED_FILE).exists() and not run.secrets.shares
    assert run.events()[-1] == "action.rolled_back"
