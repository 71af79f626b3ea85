"""The words of a share as a custodian hands them in: a text share sheet, or just words.

A text share sheet (ceremony/adapters/sharesheets.py) numbers its words one per line
("  1. academic"); anything else in the file (headings, the fingerprint, instructions) is
not part of the share. A file without numbered lines is taken as the words themselves.
"""

from __future__ import annotations

import re

_NUMBERED_WORD = re.compile(r"^\s*\d+\.\s+(\S+)\s*$", re.M)


def share_words(text: str) -> str:
    """The share's words, separated by single spaces."""
    numbered = _NUMBERED_WORD.findall(text)
    return " ".join(numbered) if numbered else " ".join(text.split())
