"""Issue 6's approval attacks not covered elsewhere (tests/test_engine.py has the replays,
duplicates and bad signatures the engine refuses; the tamper vectors a replay the verifier
catches): an approval signed by a key the script does not name, refused by the engine; and,
at the verifier, an approval whose signature or binding was altered by someone able to
re-sign everything else (transcript key, root key: the chain, checkpoints, seal and
SHA256SUMS are honest), so that only the approval checks can catch it. Engine with fakes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.core import Devices, Engine
from ceremony.engine.prompts import Approval, ApprovalNeeded, Begin, BeginStep
from ceremony.errors import QuorumError
from ceremony.headless import run_headless
from ceremony.model import statements as st
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import Cast, make_cast, sample_texts, simulated_answers
from ceremony.verify import verify_bundle
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.test_recovery import _rechain

MALLORY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def _engine(bundle: Path, cast: Cast, token: FakeToken) -> Engine:
    _, policy_text = sample_texts()
    devices = Devices(TickingClock(), SeededRandom("os"), token,
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    return Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                        cast.script_text.encode(), policy_text.encode(), devices, bundle,
                        rehearsal=True, attestation=passing_attestation(True))


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Cast, FakeToken]:
    """One completed ceremony with fakes; each test attacks a copy."""
    cast = make_cast(sample_texts()[0], SeededRandom("participants"))
    token = FakeToken(SeededRandom("token"))
    bundle = tmp_path_factory.mktemp("sealed") / "bundle"
    finished = run_headless(_engine(bundle, cast, token), simulated_answers(cast.script),
                            cast.signers, lambda _: None)  # type: ignore[arg-type]
    assert finished.outcome == "completed"
    return bundle, cast, token


def _resigned(sealed: tuple[Path, Cast, FakeToken], tmp_path: Path,
              change: Any = None, signers: dict[str, Any] | None = None) -> Path:
    """A copy of the sealed bundle, its approvals changed, everything re-signed honestly."""
    original, cast, token = sealed
    bundle = tmp_path / "bundle"
    shutil.copytree(original, bundle)
    items = [json.loads(line) for line in (bundle / "transcript.jsonl").read_text().splitlines()]
    if change is not None:
        change(items)
    root = token.keys[(cast.script.root_key.label, cast.script.root_key.key_id)]
    assert isinstance(root, Ed25519PrivateKey)
    # The fake token's first 32 random bytes made the transcript key.
    transcript_key = Ed25519PrivateKey.from_private_bytes(
        SeededRandom("token").random_bytes(32))
    _rechain(bundle, items, transcript_key, root, signers or cast.signers)
    return bundle


def _alices(items: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in items if e["event"] == "approval" and e["actor"] == "alice")


def test_the_re_signing_alone_is_not_caught(sealed: tuple[Path, Cast, FakeToken],
                                            tmp_path: Path) -> None:
    """The attacker's machinery is sound: an unchanged transcript re-signed verifies, so
    each failure below is the approval check's."""
    report = verify_bundle(_resigned(sealed, tmp_path))
    assert report.ok, report.first_failure


def test_verify_rejects_an_approval_signed_by_a_key_the_script_does_not_name(
        sealed: tuple[Path, Cast, FakeToken], tmp_path: Path) -> None:
    _, cast, _ = sealed
    bundle = _resigned(sealed, tmp_path,
                       signers={**cast.signers, "alice": KeyFileSigner("alice", MALLORY)})
    failure = verify_bundle(bundle).first_failure
    assert failure is not None and (failure.name, failure.requirement) == (
        "signatures", "CER-APPROVAL-SIG"), failure
    assert failure.detail == "the signature of 'alice' does not verify with their identity key"


def test_verify_rejects_an_altered_approval_signature(sealed: tuple[Path, Cast, FakeToken],
                                                      tmp_path: Path) -> None:
    _, cast, _ = sealed

    class Flipped:
        participant = "alice"

        def sign(self, message: bytes) -> bytes:
            alice = cast.signers["alice"]
            assert isinstance(alice, KeyFileSigner)
            good = alice.sign(message)
            return bytes([good[0] ^ 0x01]) + good[1:]

    bundle = _resigned(sealed, tmp_path, signers={**cast.signers, "alice": Flipped()})
    failure = verify_bundle(bundle).first_failure
    assert failure is not None and (failure.name, failure.requirement) == (
        "signatures", "CER-APPROVAL-SIG"), failure
    assert failure.detail == "the signature of 'alice' does not verify with their identity key"


@pytest.mark.parametrize(("field", "value"), [
    ("ceremony", "another-ceremony-2026"), ("script_sha256", "1" * 64),
    ("step_digest", "2" * 64), ("step", "open")])
def test_verify_rejects_an_altered_approval_binding(sealed: tuple[Path, Cast, FakeToken],
                                                    tmp_path: Path, field: str,
                                                    value: str) -> None:
    """alice's statement bound to something else and re-signed with her own key."""
    def change(items: list[dict[str, Any]]) -> None:
        _alices(items)["payload"]["statement"][field] = value

    failure = verify_bundle(_resigned(sealed, tmp_path, change)).first_failure
    assert failure is not None, f"an approval re-bound by {field} verified"
    assert (failure.name, failure.requirement, failure.line) == ("quorum", "CER-QUORUM", 7)
    assert failure.detail == ("the approval of 'alice' is bound to another ceremony, script, "
                              "step or transcript head (replayed?)")


def test_the_engine_refuses_an_approval_by_a_key_the_script_does_not_name(
        tmp_path: Path) -> None:
    cast = make_cast(sample_texts()[0], SeededRandom("participants"))
    engine = _engine(tmp_path / "bundle", cast, FakeToken(SeededRandom("token")))
    while not isinstance(prompt := engine.next_prompt(), ApprovalNeeded) or \
            prompt.role != "custodian":
        assert isinstance(prompt, (BeginStep, ApprovalNeeded))
        if isinstance(prompt, BeginStep):
            engine.submit(Begin())
        else:
            who = prompt.eligible[0]
            statement = prompt.for_participant(who)
            signer = cast.signers[who]
            assert isinstance(signer, KeyFileSigner)
            engine.submit(Approval(who, statement, signer.sign(st.message(statement))))
    before = (tmp_path / "bundle" / "transcript.jsonl").read_bytes()
    statement = prompt.for_participant("alice")
    with pytest.raises(QuorumError) as refused:
        engine.submit(Approval("alice", statement, MALLORY.sign(st.message(statement))))
    assert "does not verify" in refused.value.message
    assert (tmp_path / "bundle" / "transcript.jsonl").read_bytes() == before
