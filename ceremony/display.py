"""How digests are shown to people: hex, and words they can read aloud to each other."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

WORD_BITS = 10  # the SLIP-39 word list: 1024 words, each unique in its first 4 letters


@lru_cache(maxsize=1)
def _wordlist() -> tuple[str, ...]:
    # Locate the file without importing shamir_mnemonic: the UI shows digest words on its
    # first screen and must not load the share library before a step needs it.
    spec = importlib.util.find_spec("shamir_mnemonic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("shamir-mnemonic is not installed (it holds the SLIP-39 word list)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    text = (folder / "wordlist.txt").read_text()
    words = tuple(text.split())
    if len(words) != 1 << WORD_BITS:
        raise RuntimeError("the SLIP-39 word list is not 1024 words")
    return words


def words(hex_digest: str, count: int = 8) -> str:
    """The first ``count`` x 10 bits of a digest as SLIP-39 words (80 bits by default)."""
    value = int(hex_digest, 16)
    bits = len(hex_digest) * 4
    wordlist = _wordlist()
    out = []
    for i in range(count):
        shift = bits - WORD_BITS * (i + 1)
        out.append(wordlist[(value >> shift) & ((1 << WORD_BITS) - 1)])
    return " ".join(out)


def grouped_hex(hex_digest: str) -> str:
    """Hex in groups of four, easier to compare by eye."""
    return " ".join(hex_digest[i:i + 4] for i in range(0, len(hex_digest), 4))
