"""SLIP-39 splitting and combining through shamir-mnemonic (errors wrapped as ShareError)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import shamir_mnemonic
from shamir_mnemonic import shamir
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from ceremony.engine.ports import ShareInfo
from ceremony.errors import CheckFailed

_LOCK = threading.Lock()
# SLIP-39: 7 metadata words (identifier, parameters, checksum) around the share value, and
# at least 20 words in all (a 128-bit secret).
_METADATA_WORDS = 7
_MIN_WORDS = 20


class Slip39Splitter:
    """SLIP-39, with an optional passphrase; ``random_bytes`` feeds the identifier and share
    polynomials.

    shamir-mnemonic takes the passphrase as ``bytes``: an immutable copy exists for the
    duration of each call (docs/kdf.md, "Secret hygiene").

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
              extendable: bool = True,
              passphrase: bytearray | None = None) -> tuple[int, list[list[str]]]:
        with _LOCK:
            saved = shamir.RANDOM_BYTES
            if self._random is not None:
                shamir.RANDOM_BYTES = self._random
            try:
                mnemonics = shamir_mnemonic.generate_mnemonics(
                    group_threshold, groups, bytes(secret), _bytes(passphrase),
                    extendable=extendable,
                    iteration_exponent=(self._exponent if iteration_exponent is None
                                        else iteration_exponent))
            finally:
                shamir.RANDOM_BYTES = saved
        identifier = shamir_mnemonic.Share.from_mnemonic(mnemonics[0][0]).identifier
        return identifier, mnemonics

    def combine(self, mnemonics: list[str], *,
                passphrase: bytearray | None = None) -> bytearray:
        try:
            return bytearray(shamir_mnemonic.combine_mnemonics(mnemonics, _bytes(passphrase)))
        except shamir_mnemonic.MnemonicError as exc:
            raise CheckFailed(f"the shares do not combine ({exc})",
                              requirement="CER-SHARES-PROOF") from None

    def prove_all(self, groups: list[list[str]], group_threshold: int,
                  thresholds: list[int], secret: bytearray, *,
                  passphrase: bytearray | None = None) -> int:
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
                    rebuilt = bytearray(ems.decrypt(_bytes(passphrase)))
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

    def read_share(self, mnemonic: str) -> ShareInfo:
        """One share given back for a recovery, read and checked; never quoted in an error.

        shamir-mnemonic's own messages quote the first words of a share, so none of them is
        passed on: a wrong word is named by its position, a checksum failure as such.
        """
        words = [w.lower() for w in mnemonic.split()]
        if not words:
            raise CheckFailed("is empty", requirement="CER-RECOVERY")
        unknown = [i for i, w in enumerate(words, start=1) if w not in WORD_INDEX_MAP]
        if unknown:
            which = (f"word {unknown[0]} is" if len(unknown) == 1 else
                     f"words {', '.join(map(str, unknown[:-1]))} and {unknown[-1]} are")
            raise CheckFailed(f"is not a SLIP-39 share ({which} not on the SLIP-39 word list)",
                              requirement="CER-RECOVERY")
        if len(words) < _MIN_WORDS or (10 * (len(words) - _METADATA_WORDS)) % 16 > 8:
            raise CheckFailed(f"has {len(words)} words, which is not the length of a SLIP-39 "
                              "share (a word is missing or repeated)",
                              requirement="CER-RECOVERY")
        try:
            share = shamir_mnemonic.Share.from_mnemonic(" ".join(words))
        except shamir_mnemonic.MnemonicError as exc:
            if "checksum" in str(exc):
                raise CheckFailed("fails its SLIP-39 checksum (a word is wrong, or words are "
                                  "out of order)", requirement="CER-RECOVERY") from None
            raise CheckFailed("is not a valid SLIP-39 share", requirement="CER-RECOVERY"
                              ) from None
        return ShareInfo(share.identifier, share.group_index + 1, share.index + 1,
                         share.group_threshold, share.group_count, share.member_threshold,
                         share.iteration_exponent, share.extendable, share.mnemonic())

    def recover(self, mnemonics: list[str], *,
                passphrase: bytearray | None = None) -> bytearray:
        """The secret from the shares given, any number per group, in any order.

        SLIP-39 combines exactly a threshold: the first ``group_threshold`` groups to be
        complete, each with its first ``threshold`` shares, give the encrypted master
        secret; every further share of those groups, and every further complete group, must
        give the same one in place of the last of them. Then it is decrypted (PBKDF2) once.
        """
        try:
            shares = [shamir_mnemonic.Share.from_mnemonic(m) for m in mnemonics]
        except shamir_mnemonic.MnemonicError:
            raise CheckFailed("a share does not read as a SLIP-39 share",
                              requirement="CER-RECOVERY") from None
        if not shares or len({s.common_parameters() for s in shares}) != 1:
            raise CheckFailed("the shares are not all of one share set",
                              requirement="CER-RECOVERY")
        groups: dict[int, list[shamir_mnemonic.Share]] = {}
        for share in shares:
            groups.setdefault(share.group_index, []).append(share)
        complete = [g for g, members in groups.items()
                    if len(members) >= members[0].member_threshold]
        needed = shares[0].group_threshold
        if len(complete) < needed:
            raise CheckFailed(f"the shares complete {len(complete)} group(s); {needed} are "
                              "needed", requirement="CER-RECOVERY")
        chosen = {g: groups[g][: groups[g][0].member_threshold] for g in complete[:needed]}
        reference = _ems(chosen)
        variants = []
        for g in chosen:
            variants += [{**chosen, g: [*chosen[g][:-1], extra]}
                         for extra in groups[g][len(chosen[g]):]]
        last = complete[needed - 1]
        for g in complete[needed:]:
            variant = {k: v for k, v in chosen.items() if k != last}
            variants.append({**variant, g: groups[g][: groups[g][0].member_threshold]})
        for variant in variants:
            try:
                same = _ems(variant).ciphertext == reference.ciphertext
            except CheckFailed:
                same = False
            if not same:
                raise CheckFailed("the shares beyond the threshold do not give the same "
                                  "secret as the others", requirement="CER-RECOVERY")
        return bytearray(reference.decrypt(_bytes(passphrase)))


def _bytes(passphrase: bytearray | None) -> bytes:
    """The passphrase as shamir-mnemonic takes it (b"" for none)."""
    return b"" if passphrase is None else bytes(passphrase)


def _ems(selection: dict[int, list[shamir_mnemonic.Share]]) -> shamir.EncryptedMasterSecret:
    """The encrypted master secret of exactly a quorum (Lagrange interpolation, no PBKDF2)."""
    groups = {}
    for index, members in selection.items():
        group = shamir.ShareGroup()
        for member in members:
            group.add(member)
        groups[index] = group
    try:
        return shamir.recover_ems(groups)
    except shamir_mnemonic.MnemonicError:
        raise CheckFailed("the shares do not combine: they are not shares of one secret",
                          requirement="CER-RECOVERY") from None
