"""The engine with fakes: a whole ceremony, then the independent verifier on its bundle."""

from __future__ import annotations

from pathlib import Path

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.core import Devices, Engine
from ceremony.headless import run_headless
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import Cast, simulated_answers
from ceremony.verify import verify_bundle
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation


def test_fake_ceremony_verifies(tmp_path: Path, cast: Cast, policy_text: str) -> None:
    secrets = MemorySecrets()
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), secrets)
    policy = parse_policy(policy_text, "policy.toml")
    engine = Engine.start(cast.script, policy, cast.script_text.encode(), policy_text.encode(),
                          devices, tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    finished = run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                            lambda _: None)
    assert finished.outcome == "completed"
    assert len(secrets.shares) == 3
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.first_failure
    assert report.outcome == "completed"
