"""Share sheets as text files in a secret directory the operator names (never the bundle).

The printable PDF sheet is a later issue; this writes the same content as plain text: the
words numbered, the group and member, the ceremony and the key it protects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class ShareSheetDirectory:
    def __init__(self, directory: Path, ceremony_id: str) -> None:
        self.directory = directory
        self.prefix = f"share-{ceremony_id}-"

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        filename = f"{self.prefix}{participant}-g{group}m{member}.txt"
        words = mnemonic.split()
        body = []
        if context.get("rehearsal"):
            body.append("REHEARSAL: not a real share\n")
        body += [f"SLIP-39 share for {name} ({participant})\n",
                 f"ceremony: {context.get('ceremony')}\n",
                 f"protects: {context.get('key_label')}\n",
                 f"group {group}, member {member}, {len(words)} words\n\n"]
        body += [f"{i:>2}. {word}\n" for i, word in enumerate(words, start=1)]
        path = self.directory / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(body))
            handle.flush()
            os.fsync(handle.fileno())
        return f"share sheet {filename}"

    def remove_all(self) -> list[str]:
        removed = []
        if self.directory.is_dir():
            for path in sorted(self.directory.glob(self.prefix + "*")):
                path.unlink()
                removed.append(path.name)
        return removed
