"""The SLIP-39 adapter against the official test vectors, and a split/combine round trip."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import shamir_mnemonic

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.errors import CheckFailed
from tests.fakes import SeededRandom

VECTORS: list[list[Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "slip39" / "slip39-vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS, ids=[v[0] for v in VECTORS])
def test_official_vectors(vector: list[Any]) -> None:
    description, mnemonics, secret_hex, _xprv = vector
    if secret_hex:
        secret = shamir_mnemonic.combine_mnemonics(mnemonics, b"TREZOR")
        assert secret.hex() == secret_hex, description
    else:
        with pytest.raises(shamir_mnemonic.MnemonicError):
            shamir_mnemonic.combine_mnemonics(mnemonics, b"TREZOR")


def test_adapter_wraps_invalid_shares() -> None:
    bad = next(v for v in VECTORS if not v[2])
    with pytest.raises(CheckFailed) as info:
        Slip39Splitter().combine(bad[1])
    assert "do not combine" in info.value.message


def test_every_quorum_rebuilds_the_secret() -> None:
    secret = bytearray(SeededRandom("secret").random_bytes(32))
    splitter = Slip39Splitter(SeededRandom("shares"))
    identifier, groups = splitter.split(secret, 1, [(2, 3)])
    assert 0 <= identifier < 2**15
    for pair in itertools.combinations(groups[0], 2):
        assert splitter.combine(list(pair)) == secret
    with pytest.raises(CheckFailed):
        splitter.combine(groups[0][:1])


def test_seeded_split_is_reproducible() -> None:
    secret = bytearray(range(32))
    a = Slip39Splitter(SeededRandom("x")).split(secret, 1, [(2, 3)])
    b = Slip39Splitter(SeededRandom("x")).split(secret, 1, [(2, 3)])
    c = Slip39Splitter(SeededRandom("y")).split(secret, 1, [(2, 3)])
    assert a == b
    assert a != c
