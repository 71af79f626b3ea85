"""The transcript: append-only JSON Lines, one RFC 8785 line per entry, SHA-256 chained.

This module is shared by the engine (which writes) and the verifier (which reads); it
imports only the standard library and the canonical encoding. docs/transcript-format.md is
the specification; keep the two in step.
"""

from __future__ import annotations

import gc
import hashlib
import json
import operator
import os
import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from ceremony.canonical import CanonicalError, canonical_bytes, parse_strict
from ceremony.errors import BundleFormatError, DeviceError

FORMAT_VERSION = 1
GENESIS = "0" * 64
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Fault injection for the crash tests: SIGKILL this process right after the entry with this
# seq is on disk (a real crash that a real device will not produce on demand).
_KILL_AT = os.environ.get("CEREMONY_TEST_KILL_AFTER_SEQ")
ENTRY_KEYS = frozenset({"v", "seq", "time", "ceremony", "actor", "step", "event", "payload",
                        "prev"})


def format_time(moment: datetime) -> str:
    """UTC, microseconds, 'Z': the one timestamp form of the transcript."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


# The one timestamp form, with hour, minute and second bounded (the day is left to the
# calendar check in check_time; leap seconds are not written by the engine).
TIME_SHAPE = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"\.\d{6}Z", re.ASCII)


def check_time(text: str) -> None:
    """Raise ValueError unless ``text`` is a real UTC time in the one exact form.

    In that form, string order is time order, so callers may compare the strings.
    """
    if TIME_SHAPE.fullmatch(text) is None:
        raise ValueError(f"timestamp {text!r} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        datetime.fromisoformat(text[:-1])
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not a valid date and time") from None


def parse_time(text: str) -> datetime:
    """Parse a transcript timestamp; raise ValueError unless it is in the one exact form."""
    check_time(text)
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)


class Entry(NamedTuple):
    """One transcript entry (immutable; a tuple so that reading 100,000 of them is cheap)."""

    seq: int
    time: str
    ceremony: str
    actor: str
    step: str | None
    event: str
    payload: dict[str, Any]
    prev: str

    def to_dict(self) -> dict[str, Any]:
        return {"v": FORMAT_VERSION, "seq": self.seq, "time": self.time,
                "ceremony": self.ceremony, "actor": self.actor, "step": self.step,
                "event": self.event, "payload": self.payload, "prev": self.prev}

    def line(self) -> bytes:
        """The canonical bytes of this entry, without the newline."""
        return canonical_bytes(self.to_dict())


def entry_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


_FIELDS = operator.itemgetter("v", "seq", "time", "ceremony", "actor", "step", "event",
                              "payload", "prev")


def entry_from_dict(value: Any) -> Entry:
    """Build an Entry from parsed JSON, checking field names and types (never coercing)."""
    if type(value) is dict and value.keys() == ENTRY_KEYS:
        v, seq, time, ceremony, actor, step, event, payload, prev = _FIELDS(value)
        if (v == FORMAT_VERSION and type(v) is int and type(seq) is int and seq >= 0
                and type(time) is str and type(ceremony) is str and type(actor) is str
                and type(event) is str and type(prev) is str and len(prev) == 64
                and (step is None or type(step) is str) and type(payload) is dict):
            return Entry(seq, time, ceremony, actor, step, event, payload, prev)
    raise ValueError(_entry_problem(value))


def _entry_problem(value: Any) -> str:
    """Why ``value`` is not an entry, in one phrase (the slow path, for the message)."""
    if not isinstance(value, dict):
        return "an entry must be a JSON object"
    if value.keys() != ENTRY_KEYS:
        missing = sorted(ENTRY_KEYS - value.keys())
        extra = sorted(value.keys() - ENTRY_KEYS)
        return f"entry fields are wrong (missing {missing}, unknown {extra})"
    if value["v"] != FORMAT_VERSION or type(value["v"]) is not int:
        return f"format version {value['v']!r} is not {FORMAT_VERSION}"
    if type(value["seq"]) is not int or value["seq"] < 0:
        return "seq must be a non-negative integer"
    for name in ("time", "ceremony", "actor", "event", "prev"):
        if type(value[name]) is not str:
            return f"{name} must be a string"
    if value["step"] is not None and type(value["step"]) is not str:
        return "step must be a string or null"
    if type(value["payload"]) is not dict:
        return "payload must be an object"
    return "prev must be 64 hex digits"


class Line(NamedTuple):
    """One transcript line as read: its bytes, hash and entry."""

    number: int  # 1-based line number in the file
    raw: bytes
    hash: str
    entry: Entry


def parse_lines(data: bytes, name: str) -> list[Line]:
    """Strictly parse transcript bytes: canonical JSON per line, newline-terminated."""
    if not data:
        raise BundleFormatError("the transcript is empty", file=name,
                                hint="a ceremony transcript has at least its first entry")
    if not data.endswith(b"\n"):
        raise BundleFormatError("the last line is not terminated (truncated write?)",
                                file=name, line=data.count(b"\n") + 1,
                                hint="the transcript was cut short; `ceremony run --resume` "
                                     "repairs an unfinished one")
    out: list[Line] = []
    sha256 = hashlib.sha256
    # The parsed lines hold no cycles; without this the collector rescans a growing heap.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for number, raw in enumerate(data[:-1].split(b"\n"), start=1):
            try:
                entry = entry_from_dict(parse_strict(raw))
            except (CanonicalError, ValueError) as exc:
                raise BundleFormatError(f"entry is malformed: {exc}", file=name, line=number,
                                        hint="the transcript was altered or damaged") from None
            out.append(Line(number, raw, sha256(raw).hexdigest(), entry))
    finally:
        if collecting:
            gc.enable()
    return out


class TranscriptWriter:
    """Appends entries to a transcript file, one write and one fsync per entry.

    The file is the ceremony's write-ahead log: an entry is on disk before the engine
    acts on it, so after a crash the transcript says exactly how far the ceremony got.
    """

    def __init__(self, path: Path, ceremony: str, *, seq: int = 0, head: str = GENESIS,
                 last_time: datetime | None = None) -> None:
        self.path = path
        self.ceremony = ceremony
        self.seq = seq
        self.head = head
        self.last_time = last_time
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DeviceError(f"cannot open the transcript {path} ({exc.strerror})",
                              hint="check the output directory is writable") from None

    def append(self, moment: datetime, actor: str, step: str | None, event: str,
               payload: dict[str, Any]) -> Entry:
        if self.last_time is not None and moment < self.last_time:
            raise DeviceError("the clock went backwards during the ceremony",
                              hint="fix the workstation clock, then resume",
                              requirement="CER-TIME")
        entry = Entry(self.seq, format_time(moment), self.ceremony, actor, step, event,
                      payload, self.head)
        line = entry.line()
        try:
            written = os.write(self._fd, line + b"\n")
            if written != len(line) + 1:
                raise OSError(0, "short write")
            os.fsync(self._fd)
        except OSError as exc:
            raise DeviceError(f"cannot write the transcript {self.path} ({exc.strerror})",
                              hint="free disk space or fix the medium, then resume") from None
        self.seq += 1
        self.head = entry_hash(line)
        self.last_time = moment
        if _KILL_AT is not None and entry.seq == int(_KILL_AT):
            os.kill(os.getpid(), signal.SIGKILL)
        return entry

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def repair_tail(path: Path) -> int:
    """Cut an unterminated last line left by a crash mid-write; return bytes removed."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with path.open("r+b") as handle:
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return len(data) - keep


def dumps_pretty(entry: Entry) -> str:
    """A readable rendering of one entry for people (never hashed)."""
    return json.dumps(entry.to_dict(), indent=2, ensure_ascii=False)
