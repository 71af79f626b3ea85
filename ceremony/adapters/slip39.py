"""SLIP-39 splitting and combining through shamir-mnemonic (errors wrapped as ShareError)."""

from __future__ import annotations

import itertools
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
              groups: list[tuple[int, int]], *, iteration_exponent: int | None = None,
              extendable: bool = True) -> tuple[int, list[list[str]]]:
        with _LOCK:
            saved = shamir.RANDOM_BYTES
            if self._random is not None:
                shamir.RANDOM_BYTES = self._random
            try:
                mnemonics = shamir_mnemonic.generate_mnemonics(
                    group_threshold, groups, bytes(secret), b"", extendable=extendable,
                    iteration_exponent=(self._exponent if iteration_exponent is None
                                        else iteration_exponent))
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

    def prove_all(self, groups: list[list[str]], group_threshold: int,
                  thresholds: list[int], secret: bytearray) -> int:
        """Rebuild from every minimal quorum: each group choice, each threshold of members.

        Every quorum is taken to the encrypted master secret (Lagrange interpolation only,
        no PBKDF2), which must be the same each time; that one is decrypted once and must be
        ``secret``. Returns how many quorums were tried; raises CheckFailed otherwise.
        """
        reference: bytes | None = None
        count = 0
        for chosen in itertools.combinations(range(len(groups)), group_threshold):
            for members in itertools.product(*(itertools.combinations(groups[g], thresholds[g])
                                               for g in chosen)):
                quorum = [m for group in members for m in group]
                try:
                    ems = shamir.recover_ems(shamir.decode_mnemonics(quorum))
                except shamir_mnemonic.MnemonicError:
                    raise CheckFailed(f"quorum {count + 1} of the shares does not combine",
                                      requirement="CER-SHARES-PROOF") from None
                if reference is None:
                    rebuilt = bytearray(ems.decrypt(b""))
                    same = rebuilt == secret
                    for i in range(len(rebuilt)):
                        rebuilt[i] = 0
                    if not same:
                        raise CheckFailed("the shares do not reconstruct the seed",
                                          requirement="CER-SHARES-PROOF")
                    reference = ems.ciphertext
                elif ems.ciphertext != reference:
                    raise CheckFailed(f"quorum {count + 1} of the shares gives another secret",
                                      requirement="CER-SHARES-PROOF")
                count += 1
        return count
