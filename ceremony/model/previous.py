"""A script's ``[previous]`` table: the root key its new key replaces.

A rotation, or the replacement ceremony after a compromise (`ceremony lineage compromise`
writes one), makes a new key from a new seed; ``[previous]`` names the key it takes over
from, so the new ceremony's bundle (its script, covered by the transcript) and the lineage
of both keys can be traced to each other (docs/print-and-lineage.md, ADR 14):

    [previous]
    ceremony = "sample-root-2026"                # the ceremony that made the replaced key
    root_fingerprint = "9f2c..."                 # its root key fingerprint (64 hex digits)
    reason = "compromise"                        # or "rotation"
"""

from __future__ import annotations

from dataclasses import dataclass

from ceremony.model.strict import Fields

REASONS = ("rotation", "compromise")
_HEX64 = r"[0-9a-f]{64}"


@dataclass(frozen=True)
class PreviousKey:
    """The root key a script's new key replaces, and why."""

    ceremony: str
    root_fingerprint: str
    reason: str


def read_previous(table: Fields, ceremony_id: str, id_pattern: str) -> PreviousKey:
    """Strictly read ``[previous]`` (CER-STRICT-INPUT)."""
    ceremony = table.text("ceremony", pattern=id_pattern,
                          what="the id of the ceremony that made the replaced key")
    if ceremony == ceremony_id:
        raise table.fail("ceremony", "is this script's own ceremony_id; the replaced key was "
                         "made by an earlier ceremony", hint="name that ceremony here")
    fingerprint = table.text("root_fingerprint", pattern=_HEX64, what="64 lower-case hex "
                             "digits (the replaced root key's fingerprint)")
    reason = table.choice("reason", REASONS)
    table.done()
    return PreviousKey(ceremony, fingerprint, reason)
