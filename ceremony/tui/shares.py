"""Shares for private display: the engine's SecretOutput port, implemented in the UI layer.

Each share is kept as a ``bytearray`` only until its custodian has seen it on their private
screen and typed it back from their sheet, matching (screens.TypeBackScreen); then it is
overwritten with zeros. When a share sheet directory is given, sheets are also written there
(the backup a custodian takes away).
Nothing here logs or prints a share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class _SecretSink(Protocol):
    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str: ...

    def remove_all(self) -> list[str]: ...


@dataclass
class ShareSlot:
    """One custodian's share, waiting to be shown to them privately."""

    participant: str
    name: str
    group: int
    member: int
    secret: bytearray
    delivered: bool = False

    @property
    def key(self) -> str:
        return f"{self.participant}-g{self.group}m{self.member}"

    def words(self) -> list[str]:
        """The share's words, for the private screen only."""
        return bytes(self.secret).decode().split()

    def wipe(self) -> None:
        """Overwrite the share with zeros and mark it delivered."""
        for i in range(len(self.secret)):
            self.secret[i] = 0
        self.delivered = True


class PrivateShares:
    """SecretOutput for the UI: shares held in memory for private display."""

    def __init__(self, sheets: _SecretSink | None = None) -> None:
        self.sheets = sheets
        self.slots: list[ShareSlot] = []

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        where = "private screen"
        if self.sheets is not None:
            where += " and " + self.sheets.write_share(participant, name, group, member,
                                                       mnemonic, context)
        self.slots.append(ShareSlot(participant, name, group, member,
                                    bytearray(mnemonic.encode())))
        return where

    def remove_all(self) -> list[str]:
        removed = [slot.key for slot in self.slots]
        self.wipe_all()
        self.slots.clear()
        if self.sheets is not None:
            removed = self.sheets.remove_all() or removed
        return removed

    def wipe_all(self) -> None:
        for slot in self.slots:
            slot.wipe()

    def pending(self) -> list[ShareSlot]:
        """Shares not yet shown to (and typed back by) their custodian."""
        return [slot for slot in self.slots if not slot.delivered]
