"""The local version state: the last script version sealed per ceremony id (CER-SCRIPT-ROLLBACK).

`ceremony run` and `ceremony recover` read it before a ceremony starts (a script whose
version is not greater than the last one sealed here is refused) and write it only once a
ceremony is sealed. Default ``$XDG_STATE_HOME/ceremony/versions.json``, else
``~/.local/state/ceremony/versions.json``; ``--state FILE`` names another
(docs/script-signing.md). The file is JSON, written atomically:

    {"format": "ceremony.versions.v1",
     "ceremonies": {"<ceremony id>": {"version": 2, "head": "<transcript head>",
                                      "outcome": "completed", "sealed": "<time>",
                                      "bundle": "<path>"}}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ceremony.errors import DeviceError, InputError
from ceremony.model.authorization import ROLLBACK, LastRun
from ceremony.transcript import check_time

FORMAT = "ceremony.versions.v1"
ENTRY_FIELDS = {"version": int, "head": str, "outcome": str, "sealed": str, "bundle": str}


def default_path() -> Path:
    """$XDG_STATE_HOME/ceremony/versions.json, or ~/.local/state/ceremony/versions.json."""
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "ceremony" / "versions.json"


class VersionState:
    """The state file at ``path`` (it need not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _malformed(self, why: str) -> InputError:
        return InputError(f"the version state file {self.path} {why}",
                          hint="restore it from its backup; never delete it to get past a "
                               "rollback refusal", requirement=ROLLBACK)

    def _load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise self._malformed(f"cannot be read ({exc.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise self._malformed("is not JSON") from None
        if not isinstance(data, dict) or set(data) != {"format", "ceremonies"} or \
                data["format"] != FORMAT or not isinstance(data["ceremonies"], dict):
            raise self._malformed(f"is not a {FORMAT} file")
        for cid, entry in data["ceremonies"].items():
            if not isinstance(entry, dict) or set(entry) != set(ENTRY_FIELDS) or any(
                    type(entry[k]) is not kind for k, kind in ENTRY_FIELDS.items()):
                raise self._malformed(f"has a malformed entry for {cid!r}")
            try:
                check_time(entry["sealed"])
            except ValueError:
                raise self._malformed(f"has a malformed time for {cid!r}") from None
        return data["ceremonies"]

    def last(self, ceremony_id: str) -> LastRun | None:
        """What was last sealed here for ``ceremony_id`` (None: nothing yet)."""
        entry = self._load().get(ceremony_id)
        if entry is None:
            return None
        return LastRun(entry["version"], entry["head"], entry["outcome"], entry["sealed"])

    def record_sealed(self, ceremony_id: str, version: int, head: str, outcome: str,
                      sealed: str, bundle: Path) -> bool:
        """Record a sealed ceremony; a version already recorded or older changes nothing.

        Returns whether the file changed. Written to a temporary file, fsynced and renamed,
        so a crash leaves the old state or the new one.
        """
        ceremonies = self._load()
        current = ceremonies.get(ceremony_id)
        if current is not None and current["version"] >= version:
            return False
        ceremonies[ceremony_id] = {"version": version, "head": head, "outcome": outcome,
                                   "sealed": sealed, "bundle": str(bundle.resolve())}
        text = json.dumps({"format": FORMAT, "ceremonies": ceremonies}, indent=2,
                          sort_keys=True) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DeviceError(f"the version state file {self.path} cannot be written "
                              f"({exc.strerror}); the ceremony is sealed, but a later run of "
                              "this version would not be refused",
                              hint="fix the directory's permissions, then run `ceremony run "
                                   "--resume` on the bundle to record it",
                              requirement=ROLLBACK) from None
        return True
