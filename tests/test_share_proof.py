"""Proof of the whole share set: every minimal quorum rebuilds the seed (CER-SHARES-PROOF).

Real SLIP-39 (shamir-mnemonic) splits; the engine records how many quorums it proved and
with which SLIP-39 parameters, and the verifier recomputes the count from the script.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import shamir_mnemonic

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.prompts import Proceed, TypedConfirmation
from ceremony.errors import CheckFailed, ScriptError
from ceremony.model.script import MAX_PROOF_QUORUMS, ShareGroup, ShareScheme, parse_script
from ceremony.rehearsal import sample_texts
from ceremony.verify.core import _check_share_proof, _Fail, verify_bundle
from tests.fakes import SeededRandom
from tests.test_engine import PHRASE, _start, _to_confirmation

SECRET = bytearray(range(32))


@pytest.mark.parametrize(("group_threshold", "groups", "quorums"), [
    (1, [(2, 3)], 3),
    (1, [(3, 5)], 10),
    (2, [(2, 3), (3, 5)], 30),
    (1, [(2, 3), (1, 1)], 4),
    (2, [(2, 3), (1, 1), (2, 2)], 3 + 3 + 1),
])
def test_every_minimal_quorum_is_tried(group_threshold: int, groups: list[tuple[int, int]],
                                       quorums: int) -> None:
    splitter = Slip39Splitter(SeededRandom("proof"), iteration_exponent=0)
    _, mnemonics = splitter.split(SECRET, group_threshold, groups)
    assert splitter.prove_all(mnemonics, group_threshold, [t for t, _ in groups],
                              SECRET) == quorums


def test_a_share_of_another_split_is_caught() -> None:
    splitter = Slip39Splitter(SeededRandom("proof"), iteration_exponent=0)
    _, good = splitter.split(SECRET, 1, [(2, 3)])
    _, other = Slip39Splitter(SeededRandom("other"), iteration_exponent=0).split(
        SECRET, 1, [(2, 3)])
    good[0][2] = other[0][2]  # the third member's share comes from another split
    with pytest.raises(CheckFailed) as info:
        splitter.prove_all(good, 1, [2], SECRET)
    assert info.value.requirement == "CER-SHARES-PROOF"


def test_shares_of_another_secret_are_caught() -> None:
    splitter = Slip39Splitter(SeededRandom("proof"), iteration_exponent=0)
    _, mnemonics = splitter.split(SECRET, 1, [(2, 3)])
    with pytest.raises(CheckFailed, match="do not reconstruct the seed"):
        splitter.prove_all(mnemonics, 1, [2], bytearray(32))


def _edited(old: str, new: str) -> str:
    script, _ = sample_texts()
    assert old in script
    return script.replace(old, new)


GROUP_THRESHOLD = "group_threshold = 1\n"


def test_iteration_exponent_and_extendable_are_taken_from_the_script(tmp_path: Path) -> None:
    run = _start(tmp_path, script_edit=(GROUP_THRESHOLD, GROUP_THRESHOLD +
                                        "iteration_exponent = 0\nextendable = false\n"))
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    run.engine.submit(Proceed())
    entry = next(json.loads(line) for line in run.transcript.read_text().splitlines()
                 if json.loads(line)["event"] == "shares.created")["payload"]
    assert (entry["iteration_exponent"], entry["extendable"], entry["passphrase"]) == (
        0, False, "none")
    assert entry["reconstruction_check"]["quorums"] == 3
    for mnemonic in run.secrets.shares.values():
        share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
        assert (share.iteration_exponent, share.extendable) == (0, False)


@pytest.mark.parametrize(("line", "says"), [
    ("iteration_exponent = 16\n", "iteration_exponent"),
    ("iteration_exponent = -1\n", "iteration_exponent"),
    ('extendable = "yes"\n', "extendable"),
])
def test_bad_slip39_parameters_are_refused(line: str, says: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(_edited(GROUP_THRESHOLD, GROUP_THRESHOLD + line), "script.toml")
    assert says in str(info.value.field) + info.value.message


def _shares_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"iteration_exponent": 1, "extendable": True,
                               "reconstruction_check": {"quorums": 3, "result": "passed"}}
    payload.update(changes)
    return payload


def test_the_verifier_recomputes_the_quorum_count() -> None:
    script = parse_script(sample_texts()[0], "script.toml")
    _check_share_proof(script, _shares_payload(), None)  # type: ignore[arg-type]
    for changes in ({"reconstruction_check": {"quorums": 1, "result": "passed"}},
                    {"reconstruction_check": "passed (one quorum)"},
                    {"iteration_exponent": 0}, {"extendable": False},
                    {"passphrase": "required"}):
        with pytest.raises(_Fail) as info:
            _check_share_proof(script, _shares_payload(**changes), None)  # type: ignore[arg-type]
        assert info.value.requirement == "CER-SHARES-PROOF"


def test_the_golden_bundle_records_the_proof() -> None:
    bundle = Path(__file__).parent / "vectors" / "golden" / "bundle"
    assert verify_bundle(bundle).ok
    entry = next(json.loads(line) for line in (bundle / "transcript.jsonl").read_text()
                 .splitlines() if json.loads(line)["event"] == "shares.created")["payload"]
    assert entry["reconstruction_check"]["quorums"] == math.comb(3, 2)


def test_a_larger_set_is_proven() -> None:
    """10 members, any 5: 252 quorums (scripts/bench.py --only shares measures 16/8)."""
    splitter = Slip39Splitter(SeededRandom("large"), iteration_exponent=0)
    _, mnemonics = splitter.split(SECRET, 1, [(5, 10)])
    assert splitter.prove_all(mnemonics, 1, [5], SECRET) == math.comb(10, 5)


def test_the_scheme_counts_its_minimal_quorums() -> None:
    def scheme(gt: int, *groups: tuple[int, int]) -> ShareScheme:
        return ShareScheme(gt, tuple(ShareGroup(t, tuple(f"m{i}" for i in range(n)))
                                     for t, n in groups))
    assert scheme(1, (2, 3)).quorums == 3
    assert scheme(2, (2, 3), (3, 5), (1, 1)).quorums == 30 + 3 + 10
    assert scheme(2, (8, 16), (8, 16)).quorums == math.comb(16, 8) ** 2 > MAX_PROOF_QUORUMS
