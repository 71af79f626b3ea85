"""QR framing: any public payload as one or more terminal-sized QR parts, and back.

A part is one line of QR alphanumeric characters (docs/qr-format.md has the grammar):

    CQR:1:PEM:2/5:<SHA-256 of the whole payload, 64 upper-case hex>:<base32 chunk>

Every part names its format version, the payload's type, its place among the parts and the
digest of the whole payload, so parts can be scanned in any order, a missing part is named by
number, parts of two payloads are never mixed, and the reassembled bytes are checked against
the digest before anyone writes them out. Each part fits a version 13 QR symbol at error
correction M, which with its 4-module quiet zone is 77 characters wide in half-block
characters: an 80-column terminal.

Pure: this module imports no QR library (images live in ``ceremony.adapters.qrcodes``), so
the verifier side can reassemble and check what any scanner read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ceremony.errors import CheckFailed, InputError

MAGIC = "CQR"
FORMAT_VERSION = 1
MAX_PARTS = 99

# The QR symbol every part must fit: version 13 (69 modules, 77 with the quiet zone, so 77
# terminal columns in half blocks) at error correction M (15 % of the symbol may be lost),
# whose alphanumeric-mode capacity is 483 characters.
QR_VERSION = 13
QR_ERROR_CORRECTION = "M"
QR_BORDER = 4
QR_ALPHANUMERIC_CAPACITY = 483

# Payload types: the name on the command line, the field in the part, the file suffix.
TYPES: dict[str, tuple[str, str]] = {
    "pem": ("PEM", ".pem"),
    "json": ("JSON", ".json"),
    "text": ("TEXT", ".txt"),
}
_TYPE_BY_FIELD = {field: name for name, (field, _) in TYPES.items()}

_LONGEST_HEADER = len(f"{MAGIC}:{FORMAT_VERSION}:TEXT:{MAX_PARTS}/{MAX_PARTS}:") + 64 + 1
# Bytes per part: the most whole 5-byte groups (8 base32 characters each) that fit beside the
# longest header, so every chunk but the last is whole base32 groups without padding.
CHUNK_BYTES = (QR_ALPHANUMERIC_CAPACITY - _LONGEST_HEADER) // 8 * 5
MAX_PAYLOAD = CHUNK_BYTES * MAX_PARTS

# The QR alphanumeric alphabet: a frame made of these stays in the compact mode (5.5 bits
# per character) that zbar and phone scanners return exactly as written.
QR_ALPHANUMERIC = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")

_VERSION_FIELD = re.compile(r"0|[1-9][0-9]{0,5}")
_NUMBER = re.compile(r"[1-9][0-9]{0,5}")
_DIGEST = re.compile(r"[0-9A-F]{64}")
_BASE32 = re.compile(r"[A-Z2-7]*")
_TYPE_FIELD = re.compile(r"[A-Z0-9]{1,12}")
_BASE32_TAIL_LENGTHS = frozenset({0, 2, 4, 5, 7})

READ_HINT = "give every image of the payload, each scanned whole; see docs/qr-format.md"


class QrFormatError(InputError):
    """A scanned code is not a well-formed part of this format (exit 2)."""


class QrAssemblyError(InputError):
    """Parts are missing, or belong to different payloads (exit 2)."""


class QrIntegrityError(CheckFailed):
    """Parts do not add up to what they declare, or do not read back as written (exit 1)."""


@dataclass(frozen=True)
class Part:
    """One QR part: its payload's type and digest, its place, and its slice of the bytes."""

    kind: str  # "pem", "json" or "text" (see TYPES)
    index: int  # 1 .. total
    total: int
    digest: str  # lower-case hex SHA-256 of the whole payload
    chunk: bytes

    def frame(self) -> str:
        """The part as the text a QR symbol holds."""
        chunk = base64.b32encode(self.chunk).decode("ascii").rstrip("=")
        return (f"{MAGIC}:{FORMAT_VERSION}:{TYPES[self.kind][0]}:{self.index}/{self.total}:"
                f"{self.digest.upper()}:{chunk}")

    @classmethod
    def parse(cls, text: str, source: str) -> Part:
        """Parse one scanned frame strictly; ``source`` (the image) is named in any error.

        Nothing of a foreign or malformed code is echoed: scanned text may hold terminal
        control sequences.
        """
        head, sep, rest = text.partition(":")
        if head != MAGIC or not sep:
            raise QrFormatError("holds a QR code that is not a ceremony QR part (it does "
                                f"not start with {MAGIC}:)", file=source, hint=READ_HINT)
        version, sep, rest = rest.partition(":")
        if not sep or not _VERSION_FIELD.fullmatch(version):
            raise QrFormatError("holds a ceremony QR part without a valid format version",
                                file=source, hint=READ_HINT)
        if version != str(FORMAT_VERSION):
            raise QrFormatError(f"holds a ceremony QR part of format version {int(version)}, "
                                f"and this tool reads version {FORMAT_VERSION} only",
                                file=source, hint="decode it with the ceremony version that "
                                "wrote it")
        fields = rest.split(":", 3)
        if len(fields) != 4:
            raise QrFormatError("holds a ceremony QR part with missing fields", file=source,
                                hint=READ_HINT)
        type_field, place, digest, chunk_text = fields
        if type_field not in _TYPE_BY_FIELD:
            shown = f" {type_field}" if _TYPE_FIELD.fullmatch(type_field) else ""
            raise QrFormatError(f"holds a ceremony QR part of unknown payload type{shown} "
                                f"(known: {', '.join(_TYPE_BY_FIELD)})", file=source)
        index_text, slash, total_text = place.partition("/")
        if not (slash and _NUMBER.fullmatch(index_text) and _NUMBER.fullmatch(total_text)):
            raise QrFormatError("holds a ceremony QR part whose part number is not "
                                "written as I/N", file=source, hint=READ_HINT)
        index, total = int(index_text), int(total_text)
        if total > MAX_PARTS:
            raise QrFormatError(f"holds a ceremony QR part of {total} parts, more than the "
                                f"{MAX_PARTS} the format allows", file=source)
        if index > total:
            raise QrFormatError(f"holds a ceremony QR part numbered {index} of {total}",
                                file=source, hint=READ_HINT)
        if not _DIGEST.fullmatch(digest):
            raise QrFormatError("holds a ceremony QR part whose payload digest is not 64 "
                                "upper-case hex digits", file=source, hint=READ_HINT)
        chunk = _decode_chunk(chunk_text, source, index, total)
        return cls(_TYPE_BY_FIELD[type_field], index, total, digest.lower(), chunk)


def _decode_chunk(text: str, source: str, index: int, total: int) -> bytes:
    where = f"part {index} of {total}"
    if not _BASE32.fullmatch(text) or len(text) % 8 not in _BASE32_TAIL_LENGTHS:
        raise QrFormatError(f"holds a ceremony QR {where} whose data is not base32",
                            file=source, hint=READ_HINT)
    if index < total and (not text or len(text) % 8):
        raise QrFormatError(f"holds a ceremony QR {where} whose data is not whole 8-character "
                            "groups (only the last part may be shorter)", file=source)
    try:
        chunk = base64.b32decode(text + "=" * (-len(text) % 8))
    except binascii.Error as exc:
        raise QrFormatError(f"holds a ceremony QR {where} whose data is not base32",
                            file=source, hint=READ_HINT) from exc
    # One spelling per chunk: unused trailing bits must be zero.
    if base64.b32encode(chunk).decode("ascii").rstrip("=") != text:
        raise QrFormatError(f"holds a ceremony QR {where} whose base32 data is not in "
                            "canonical form", file=source, hint=READ_HINT)
    return chunk


@dataclass(frozen=True)
class Payload:
    """The bytes a set of parts carries, and their type."""

    kind: str
    data: bytes

    def __post_init__(self) -> None:
        if self.kind not in TYPES:
            raise ValueError(f"unknown payload type {self.kind!r}")

    @property
    def digest(self) -> str:
        """Lower-case hex SHA-256 of the bytes (what every part declares)."""
        return hashlib.sha256(self.data).hexdigest()

    def parts(self, *, chunk_bytes: int = CHUNK_BYTES) -> list[Part]:
        """The parts, in order; every part carries about as many bytes as the others."""
        if chunk_bytes <= 0 or chunk_bytes % 5 or chunk_bytes > CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be a multiple of 5 up to {CHUNK_BYTES}")
        size = len(self.data)
        if size > chunk_bytes * MAX_PARTS:
            raise InputError(f"the payload is {size} bytes, more than the {MAX_PARTS} QR "
                             f"parts of the format carry ({chunk_bytes * MAX_PARTS} bytes)",
                             hint="QR codes are for keys, certificates, CSRs and records; "
                             "carry larger files another way")
        # Balanced parts: same-size symbols, and no tiny last part on a symbol of its own.
        count = max(1, -(-size // chunk_bytes))
        step = -(-size // count)
        step = max(5, -(-step // 5) * 5)
        count = max(1, -(-size // step))
        digest = self.digest
        return [Part(self.kind, i + 1, count, digest, self.data[i * step:(i + 1) * step])
                for i in range(count)]

    def frames(self, *, chunk_bytes: int = CHUNK_BYTES) -> list[str]:
        """The parts as the texts the QR symbols hold, in order."""
        return [part.frame() for part in self.parts(chunk_bytes=chunk_bytes)]

    def filename(self) -> str:
        """A file name for the decoded payload: what it is, then the start of its digest."""
        stem = "payload"
        if self.kind == "pem":
            match = _PEM_BEGIN.search(self.data.decode("ascii", "replace"))
            if match:
                stem = match.group(1).lower().replace(" ", "-")
        return f"{stem}-{self.digest[:16]}{TYPES[self.kind][1]}"


def parts_phrase(numbers: Sequence[int], total: int) -> str:
    """'part 3 of 5 is', 'parts 2 and 4 of 5 are', 'parts 2 to 9 and 12 of 20 are'."""
    runs: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    words: list[str] = []
    for a, b in runs:
        words.extend([str(a)] if a == b else [str(a), str(b)] if b == a + 1 else
                     [f"{a} to {b}"])
    listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    if len(numbers) == 1:
        return f"part {listed} of {total} is"
    return f"parts {listed} of {total} are"


def name_files(sources: Iterable[str]) -> str:
    """The images named in a message: the first three, then how many more."""
    names = list(dict.fromkeys(sources))
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:3])} and {len(names) - 3} more"


class Assembler:
    """Collects parts of one payload in any order; refuses parts of another payload."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Part, str]] = {}
        self._first: tuple[Part, str] | None = None

    def add(self, part: Part, source: str) -> None:
        """Take one part; ``source`` names the image it came from."""
        if self._first is None:
            self._first = (part, source)
        first, first_source = self._first
        if (part.digest, part.kind, part.total) != (first.digest, first.kind, first.total):
            raise QrAssemblyError(
                f"{source} holds part {part.index} of {part.total} of another payload ("
                f"{part.kind}, sha256 {part.digest[:16]}...) than {first_source} ("
                f"{first.kind}, {first.total} parts, sha256 {first.digest[:16]}...)",
                hint="decode the images of one payload at a time")
        held = self._parts.get(part.index)
        if held is None:
            self._parts[part.index] = (part, source)
        elif held[0].chunk != part.chunk:
            raise QrIntegrityError(
                f"{held[1]} and {source} both hold part {part.index} of {part.total} of "
                f"payload sha256 {part.digest[:16]}..., with different contents",
                hint="one of them is damaged or forged: scan both again from the original",
                requirement="CER-QR")

    def missing(self) -> list[int]:
        """Numbers of the parts not seen yet."""
        if self._first is None:
            return []
        return [i for i in range(1, self._first[0].total + 1) if i not in self._parts]

    def payload(self) -> Payload:
        """The reassembled payload, once every part is in and the digest matches."""
        if self._first is None:
            raise QrAssemblyError("no ceremony QR part was given", hint=READ_HINT)
        first = self._first[0]
        sources = name_files(source for _, source in self._parts.values())
        missing = self.missing()
        if missing:
            raise QrAssemblyError(
                f"{sources}: {parts_phrase(missing, first.total)} missing "
                f"(payload sha256 {first.digest[:16]}...)",
                hint="scan the missing parts and give all the images together")
        data = b"".join(self._parts[i][0].chunk for i in range(1, first.total + 1))
        payload = Payload(first.kind, data)
        if payload.digest != first.digest:
            raise QrIntegrityError(
                f"{sources}: the {first.total} parts reassemble to bytes with SHA-256 "
                f"{payload.digest[:16]}..., not the {first.digest[:16]}... they declare",
                hint="a part is damaged or forged: scan the parts again from the original",
                requirement="CER-QR")
        return payload


def reassemble(scanned: Iterable[tuple[str, str]]) -> Payload:
    """Parse and reassemble ``(source, frame)`` pairs given in any order."""
    assembler = Assembler()
    for source, text in scanned:
        assembler.add(Part.parse(text, source), source)
    return assembler.payload()


class SymbolReader(Protocol):
    """Reads the QR symbols in an image (zbar in ``ceremony.adapters.qrcodes``)."""

    def scan(self, image: Path) -> list[str]:
        """Every QR symbol's text in ``image``; raises a CeremonyError naming the image."""
        ...


def check_read_back(scanned: Mapping[str, Sequence[str]], expected: Payload | bytes) -> None:
    """Each image holds exactly one part, and together they reassemble to ``expected``.

    ``scanned`` maps each image to what a reader found in it; ``expected`` as bytes is
    compared by content alone, as a Payload its type too. Raises QrIntegrityError.
    """
    pairs: list[tuple[str, str]] = []
    for source, texts in scanned.items():
        if len(texts) != 1:
            raise QrIntegrityError(f"{source}: read back {len(texts)} QR codes, not one",
                                   hint="write the parts again", requirement="CER-QR")
        pairs.append((source, texts[0]))
    try:
        payload = reassemble(pairs)
    except (QrFormatError, QrAssemblyError, QrIntegrityError) as exc:
        raise QrIntegrityError(f"the QR codes do not read back: {exc.message}",
                               hint="write the parts again", requirement="CER-QR") from exc
    if isinstance(expected, bytes):
        expected = Payload(payload.kind, expected)
    if payload != expected:
        raise QrIntegrityError(
            f"{name_files(scanned)}: the QR codes read back as {payload.kind}, sha256 "
            f"{payload.digest[:16]}..., not the {expected.kind} payload sha256 "
            f"{expected.digest[:16]}... they were written from",
            hint="write the parts again", requirement="CER-QR")


# What each payload type must hold. Public text only: no control characters (a scanned
# payload may be shown on a terminal) and never a private key.
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----")
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----\r?\n"
    r"(?:[A-Za-z0-9+/=]+\r?\n)*"
    r"-----END \1-----(?:\r?\n|\Z)")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _pem_labels(text: str) -> list[str] | None:
    labels: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in "\r\n":
            pos += 1
        if pos == len(text):
            return labels or None
        match = _PEM_BLOCK.match(text, pos)
        if match is None:
            return None
        labels.append(match.group(1))
        pos = match.end()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out


def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def content_problem(kind: str, data: bytes) -> str | None:
    """Why ``data`` is not a ``kind`` payload (a phrase), or None if it is one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    if _CONTROL.search(text):
        return "holds control characters"
    if kind == "pem":
        labels = _pem_labels(text)
        if labels is None:
            return "is not PEM (-----BEGIN ...----- blocks of base64)"
        if any("PRIVATE" in label for label in labels):
            return "holds a private key"
    elif kind == "json":
        try:
            json.loads(text, object_pairs_hook=_no_duplicates,
                       parse_constant=_reject_constant)
        except ValueError:
            return "is not JSON"
    return None


def check_content(kind: str, data: bytes, source: str) -> None:
    """Refuse anything but public text of the declared type (both ways: encode, decode)."""
    problem = content_problem(kind, data)
    if problem == "holds a private key":
        raise InputError(f"{problem}: QR codes carry public material only", file=source,
                         hint="encode the public key, certificate or CSR instead",
                         requirement="CER-NO-SECRET")
    if problem is not None:
        raise InputError(f"{problem}, so it is not a {kind} payload", file=source,
                         hint="choose --type pem, json or text to match the file")


def infer_kind(data: bytes) -> str | None:
    """The payload type ``data`` holds (pem, then json, then text), or None if none."""
    for kind in ("pem", "json", "text"):
        problem = content_problem(kind, data)
        if problem is None or problem == "holds a private key":
            return kind
    return None
