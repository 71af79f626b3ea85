"""SLIP-39 splitting and combining through shamir-mnemonic (errors wrapped as ShareError)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import shamir_mnemonic
from shamir_mnemonic import shamir

from ceremony.errors import CheckFailed

_LOCK = threading.Lock()


class Slip39Splitter:
    """SLIP-39 with no passphrase; ``random_bytes`` feeds the identifier and share polynomials.

    shamir-mnemonic draws its randomness from the module attribute ``RANDOM_BYTES``; we
    swap it under a lock for the duration of one split, so a seeded source makes the split
    reproducible (golden transcripts) while the default stays the OS generator.
    """

    def __init__(self, random_bytes: Callable[[int], bytes] | None = None,
                 iteration_exponent: int = 1) -> None:
        self._random = random_bytes
        self._exponent = iteration_exponent

    def split(self, secret: bytearray, group_threshold: int,
              groups: list[tuple[int, int]]) -> tuple[int, list[list[str]]]:
        with _LOCK:
            saved = shamir.RANDOM_BYTES
            if self._random is not None:
                shamir.RANDOM_BYTES = self._random
            try:
                mnemonics = shamir_mnemonic.generate_mnemonics(
                    group_threshold, groups, bytes(secret), b"", extendable=True,
                    iteration_exponent=self._exponent)
            finally:
                shamir.RANDOM_BYTES = saved
        identifier = shamir_mnemonic.Share.from_mnemonic(mnemonics[0][0]).identifier
        return identifier, mnemonics

    def combine(self, mnemonics: list[str]) -> bytearray:
        try:
            return bytearray(shamir_mnemonic.combine_mnemonics(mnemonics, b""))
        except shamir_mnemonic.MnemonicError as exc:
            raise CheckFailed(f"the shares do not combine ({exc})",
                              requirement="CER-SHARES-PROOF") from None
