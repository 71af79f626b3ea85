"""Typing a share back: SLIP-39 words, their completion, the RS1024 checksum, the typed words.

After a custodian has seen their share on the private screen, they type it back from their
sheet, word by word, before anything advances. This module is the pure part of that: it
loads neither Textual nor shamir_mnemonic (the UI's first screen must not load the share
library; tests/test_tui_imports.py), and reads the word list the project ships through
``ceremony.display``.

The typed share is kept only as word indices, two bytes a word, in a ``bytearray`` that is
overwritten with zeros when the custodian is done, goes back to see the share, or leaves.
Nothing here logs, prints or names a word: results are positions and yes/no.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from functools import lru_cache

from ceremony.display import _wordlist

# SLIP-39 words are unique in their first four letters: four letters name a word.
PREFIX_LETTERS = 4
# The RS1024 checksum of SLIP-39 (its generator), over the customization string then the
# share's 10-bit word values; a share is valid when the polymod is 1.
_GENERATOR = (0xE0E040, 0x1C1C080, 0x3838100, 0x7070200, 0xE0E0009, 0x1C0C2412, 0x38086C24,
              0x3090FC48, 0x21B1F890, 0x3F3F120)
_CUSTOMIZATION = b"shamir"
_CUSTOMIZATION_EXTENDABLE = b"shamir_extendable"
# The first two words hold the identifier (15 bits), the extendable flag (1 bit) and the
# iteration exponent (4 bits); the flag chooses the checksum's customization string.
_EXTENDABLE_BIT = 4


@lru_cache(maxsize=1)
def _by_prefix() -> dict[str, int]:
    """Each word's index under its first four letters (and under itself)."""
    index: dict[str, int] = {}
    for i, word in enumerate(_wordlist()):
        index[word[:PREFIX_LETTERS]] = i
        index[word] = i
    return index


def word(index: int) -> str:
    """The SLIP-39 word of an index (public: the word list, not a share)."""
    return _wordlist()[index]


def complete(typed: str) -> int | None:
    """The index of the SLIP-39 word ``typed`` names, or None.

    ``typed`` names a word when it is the word, or at least its first four letters (any
    letters after the fourth must go on as the word does). Case is ignored.
    """
    text = typed.strip().lower()
    if len(text) < PREFIX_LETTERS:
        return None
    index = _by_prefix().get(text[:PREFIX_LETTERS])
    if index is None or not word(index).startswith(text):
        return None
    return index


def suggestion(typed: str) -> str | None:
    """The completed word to show after ``typed`` (as typed, then the rest), or None."""
    index = complete(typed)
    if index is None or typed != typed.strip():
        return None
    full = word(index)
    return typed + full[len(typed):]


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 20
        chk = (chk & 0xFFFFF) << 10 ^ value
        for i in range(10):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def checksum_ok(indices: Sequence[int]) -> bool:
    """Whether the word indices of a share pass the SLIP-39 RS1024 checksum."""
    if len(indices) < 3:
        return False
    id_exp = indices[0] << 10 | indices[1]
    extendable = (id_exp >> _EXTENDABLE_BIT) & 1
    customization = _CUSTOMIZATION_EXTENDABLE if extendable else _CUSTOMIZATION
    return _polymod([*customization, *indices]) == 1


def word_count(secret: bytearray) -> int:
    """How many words a share held as a bytearray has (words separated by single spaces)."""
    return secret.count(b" ") + 1 if secret.strip() else 0


class TypedShare:
    """The words typed back so far, as 10-bit indices in a bytearray (two bytes a word)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.count = 0
        self._data = bytearray(2 * length)

    @property
    def complete(self) -> bool:
        return self.count == self.length

    def add(self, index: int) -> None:
        """Keep the next word (by index); ValueError once every word has been typed."""
        if self.count >= self.length:
            raise ValueError("every word has been typed")
        self._data[2 * self.count:2 * self.count + 2] = index.to_bytes(2, "big")
        self.count += 1

    def back(self) -> None:
        """Drop the last word typed."""
        if self.count:
            self.truncate(self.count - 1)

    def truncate(self, count: int) -> None:
        """Keep the first ``count`` words; the others are overwritten with zeros."""
        count = max(0, min(count, self.count))
        for i in range(2 * count, 2 * self.count):
            self._data[i] = 0
        self.count = count

    def wipe(self) -> None:
        self.truncate(0)

    def _indices(self) -> list[int]:
        data = self._data
        return [data[2 * i] << 8 | data[2 * i + 1] for i in range(self.count)]

    def mnemonic(self) -> str:
        """The typed words as one string, for the single call that presents the share (a
        recovery's ShareOffered takes a ``str``; strings cannot be wiped, so the caller drops
        it right after the offer and wipes this object)."""
        return " ".join(word(index) for index in self._indices())

    def checksum_ok(self) -> bool:
        """Whether the complete typed share passes its SLIP-39 checksum."""
        return self.complete and checksum_ok(self._indices())

    def first_mismatch(self, secret: bytearray) -> int | None:
        """None when the typed share is exactly ``secret``; else the first word (1-based)
        that differs. The verdict is a constant-time comparison of the two mnemonics."""
        words = [word(index).encode() for index in self._indices()]  # public word list
        # Sized once, filled in place: no reallocation leaves a copy behind.
        typed = bytearray(sum(len(w) for w in words) + max(0, len(words) - 1))
        try:
            at = 0
            for n, text in enumerate(words):
                if n:
                    typed[at] = 0x20
                    at += 1
                typed[at:at + len(text)] = text
                at += len(text)
            if hmac.compare_digest(typed, secret):
                return None
            k = 0
            while k < len(typed) and k < len(secret) and typed[k] == secret[k]:
                k += 1
            return sum(1 for i in range(k) if secret[i] == 0x20) + 1
        finally:
            for i in range(len(typed)):
                typed[i] = 0
