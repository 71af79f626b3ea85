"""The original bundle a recovery rebuilds the root key of: verified before anything else.

``ceremony recover`` loads the original here before a token is opened or a share is asked
for: the bundle must pass every step of ``ceremony verify`` and be the bundle of a completed
ceremony that made shares (not itself a recovery). The engine then copies it into the
recovery bundle (``original/``) so that the recovery bundle verifies on its own, and reads
it back from that copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.canonical import sha256_hex
from ceremony.errors import CeremonyError, CheckFailed, UsageError, VerificationError
from ceremony.model import statements as st
from ceremony.model.recovery import ORIGINAL_DIR, NotRecoverable, Original, read_original
from ceremony.model.script import parse_script
from ceremony.transcript import parse_lines

__all__ = ["ORIGINAL_DIR", "NoSecretOutput", "OriginalBundle", "copy_bundle", "load_original"]


@dataclass(frozen=True)
class OriginalBundle:
    """A verified original bundle on disk and what its transcript says."""

    path: Path
    record: Original

    def wrapped_blob(self) -> bytes:
        """The RSA root key's wrapped export, checked against the digest the original records."""
        if self.record.wrapped_sha256 is None:
            raise ValueError(f"ceremony {self.record.ceremony_id}'s root key is not wrapped")
        path = self.path / st.WRAPPED_FILE
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise CheckFailed(f"cannot read {path} ({exc.strerror})",
                              requirement="CER-RECOVERY") from None
        if sha256_hex(blob) != self.record.wrapped_sha256:
            raise CheckFailed(f"{path} is not the wrapped root key ceremony "
                              f"{self.record.ceremony_id} recorded", hint="run `ceremony "
                              f"verify` on {self.path}", requirement="CER-RECOVERY")
        return blob


def load_original(path: Path) -> OriginalBundle:
    """Verify the bundle at ``path`` (all ten steps) and read its root key and share set.

    Refused with one sentence (exit 1) when it does not verify, did not complete, or is
    itself a recovery bundle; nothing else is touched before this passes.
    """
    from ceremony.verify.core import verify_bundle

    if not path.is_dir():
        raise UsageError(f"{path} is not a bundle directory",
                         hint="give the directory of the original ceremony's bundle (it "
                              "holds transcript.jsonl)")
    report = verify_bundle(path)
    if not report.ok:
        failure = report.first_failure
        why = f" ({failure.name}: {failure.detail})" if failure else ""
        raise VerificationError(f"the original bundle {path} does not verify{why}, so "
                                "nothing can be recovered from it", hint=f"run `ceremony "
                                f"verify {path}` to see why; no token was opened and no "
                                "share was asked for", requirement="CER-RECOVERY")
    try:
        script = parse_script((path / "script.toml").read_bytes().decode("utf-8"),
                              "script.toml")
        lines = parse_lines((path / "transcript.jsonl").read_bytes(), "transcript.jsonl")
    except (OSError, UnicodeDecodeError, CeremonyError):
        raise VerificationError(f"the original bundle {path} changed while it was being "
                                "read", requirement="CER-RECOVERY") from None
    if lines[-1].hash != report.head:
        raise VerificationError(f"the original bundle {path} changed while it was being "
                                "verified", requirement="CER-RECOVERY")
    try:
        return OriginalBundle(path, read_original(script, lines))
    except NotRecoverable as exc:
        raise CheckFailed(exc.message, hint=exc.hint, requirement="CER-RECOVERY") from None


def copy_bundle(source: Path, target: Path) -> None:
    """Copy every file of the bundle ``source`` into the new directory ``target``, durably."""
    target.mkdir()
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_dir():
            (target / rel).mkdir(exist_ok=True)
        elif path.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            with (target / rel).open("xb") as handle:
                handle.write(path.read_bytes())
                handle.flush()
                os.fsync(handle.fileno())
    for directory in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class NoSecretOutput:
    """A recovery hands out no shares: the SecretOutput of a recovery refuses to write one."""

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        raise ValueError("a recovery writes no share sheets")

    def remove_all(self) -> list[str]:
        return []
