"""The seed's entropy sources pass the SP 800-90B health tests, or no seed is made.

Engine tests with the fakes (a token's generator that is stuck cannot be had on demand
from SoftHSM2), plus the verifier's check of the recorded results and a real SoftHSM2
rehearsal's record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceremony import health
from ceremony.engine.core import ENTROPY_BYTES, transcript_key_id, transcript_key_label
from ceremony.engine.prompts import ActionReady, Proceed, TypedConfirmation
from ceremony.errors import CheckFailed
from ceremony.verify.core import _check_entropy, _Fail, verify_bundle
from tests.fakes import FakeToken, SeededRandom
from tests.test_engine import PHRASE, _start, _to_confirmation


class StuckRandom(SeededRandom):
    """A generator that has failed: every byte the same (the value is arbitrary)."""

    def random_bytes(self, n: int) -> bytes:
        return bytes([0xA7]) * n


class BiasedRandom(SeededRandom):
    """A generator that repeats its first byte far too often, but never 4 times in a row."""

    def random_bytes(self, n: int) -> bytes:
        fresh = super().random_bytes(n)
        return bytes(0x5C if i % 3 != 2 else (fresh[i] | 1) for i in range(n))


def _provision(tmp_path: Path, token_random: SeededRandom) -> tuple[Any, pytest.ExceptionInfo[
        CheckFailed]]:
    run = _start(tmp_path)
    run.token.random = token_random
    _to_confirmation(run)
    assert isinstance(run.engine.submit(TypedConfirmation(PHRASE)), ActionReady)
    with pytest.raises(CheckFailed) as info:
        run.engine.submit(Proceed())
    return run, info


@pytest.mark.parametrize(("random", "test"), [(StuckRandom("stuck"), "repetition-count"),
                                              (BiasedRandom("biased"), "adaptive-proportion")])
def test_a_failing_token_source_stops_the_step_before_a_seed_exists(
        tmp_path: Path, random: SeededRandom, test: str) -> None:
    run, info = _provision(tmp_path, random)
    assert info.value.requirement == "CER-ENTROPY-HEALTH"
    assert info.value.message.startswith(f"the token entropy source failed the SP 800-90B "
                                         f"{test} test")
    assert info.value.message.endswith("no seed was made")
    events = run.events()
    # No entropy.collected: the failed source's bytes were never mixed into a seed.
    assert events[-2:] == ["action.started", "action.rolled_back"]
    rolled = json.loads(run.transcript.read_text().splitlines()[-1])["payload"]
    assert rolled["reason"] == info.value.message
    assert run.token.calls == []  # nothing imported, derived or signed
    assert list(run.token.keys) == [(transcript_key_label("sample-root-2026"),
                                     transcript_key_id("sample-root-2026"))]
    assert run.secrets.shares == {}
    # The sentence carries counts and indices, never a sample value.
    assert "a7" not in info.value.message.lower() and "167" not in info.value.message


def test_the_transcript_records_each_source_s_tests_never_values(tmp_path: Path) -> None:
    run = _start(tmp_path)
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    run.engine.submit(Proceed())
    entry = next(json.loads(line) for line in run.transcript.read_text().splitlines()
                 if json.loads(line)["event"] == "entropy.collected")
    sources = entry["payload"]["sources"]
    assert [s["source"] for s in sources] == ["os", "token"]
    for source, spec in zip(sources, (health.os_spec(), health.token_spec()), strict=True):
        record = source["health"]
        assert source["bytes"] == record["samples"] == ENTROPY_BYTES
        assert record["passed"] is True
        assert record["repetition_count"]["cutoff"] == spec.rct_cutoff == 4
        assert (record["adaptive_proportion"]["window"],
                record["adaptive_proportion"]["cutoff"]) == (512, spec.apt_cutoff)
        assert record["adaptive_proportion"]["cutoff_reachable"] is True
    # The bytes drawn never appear: no hex run of the fake generators' output.
    drawn = SeededRandom("token").random_bytes(ENTROPY_BYTES).hex()
    text = run.transcript.read_text()
    assert all(drawn[i:i + 16] not in text for i in range(0, len(drawn), 16))


def _payload(**changes: Any) -> dict[str, Any]:
    spec = health.os_spec()
    result = health.check(health.byte_samples(SeededRandom("x").random_bytes(512)), spec)
    record = result.as_record()
    source: dict[str, Any] = {"source": "os", "bytes": 512, "health": record}
    for key, value in changes.items():
        if key in ("rct_passed", "apt_cutoff"):
            target = record["repetition_count" if key == "rct_passed" else
                            "adaptive_proportion"]
            target["passed" if key == "rct_passed" else "cutoff"] = value
        else:
            source[key] = value
    return {"sources": [source], "combiner": "x", "seed_bytes": 32}


def test_the_verifier_accepts_a_passing_record() -> None:
    _check_entropy(_payload(), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [{"rct_passed": False}, {"apt_cutoff": 99},
                                     {"bytes": 32}, {"health": None}, {"source": "dice?"}])
def test_the_verifier_refuses_a_failed_or_altered_record(changes: dict[str, Any]) -> None:
    with pytest.raises(_Fail) as info:
        _check_entropy(_payload(**changes), None)  # type: ignore[arg-type]
    assert info.value.requirement == "CER-ENTROPY-HEALTH"


def test_a_softhsm_rehearsal_records_passing_health_tests(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli("rehearse", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    bundle = tmp_path / "r" / "bundle"
    assert verify_bundle(bundle).ok
    entry = next(json.loads(line) for line in (bundle / "transcript.jsonl").read_text()
                 .splitlines() if json.loads(line)["event"] == "entropy.collected")
    assert [(s["source"], s["health"]["passed"]) for s in entry["payload"]["sources"]] == [
        ("os", True), ("token", True)]


def test_fake_token_default_generator_is_not_stuck() -> None:
    token = FakeToken(SeededRandom("token"))
    assert health.check(health.byte_samples(token.random_bytes(512)),
                        health.token_spec()).passed
