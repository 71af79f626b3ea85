"""The one canonical encoding and hash of the project (RFC 8785, JSON Canonicalization).

Everything that is hashed or signed goes through :func:`canonical_bytes`. We accept the
subset of JSON the transcript format needs: objects with string keys, arrays, strings,
booleans, null and integers in the interoperable range (|n| <= 2**53 - 1). Floats are
refused rather than canonicalized: no ceremony value needs them, and number formatting is
where JCS implementations disagree most. For this subset the output is byte-identical
to RFC 8785.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

try:  # optional accelerator; results are identical with or without it (see _fast_parse)
    import orjson
except ImportError:  # pragma: no cover - exercised by the isolation test
    orjson = None  # type: ignore[assignment]

MAX_SAFE_INTEGER = 2**53 - 1


class CanonicalError(ValueError):
    """The value cannot be canonicalized (a float, a non-string key, a lone surrogate...)."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise CanonicalError(f"{path}: string is not valid Unicode") from exc
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalError(f"{path}: integer outside the I-JSON range")
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floating-point numbers are not allowed")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: object keys must be strings")
            _check(key, path)
            _check(item, f"{path}.{key}")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} is not a JSON value")


def _sorted(value: Any) -> Any:
    # RFC 8785 sorts object members by the UTF-16 code units of their names.
    if isinstance(value, dict):
        return {
            k: _sorted(value[k]) for k in sorted(value, key=lambda k: k.encode("utf-16-be"))
        }
    if isinstance(value, (list, tuple)):
        return [_sorted(v) for v in value]
    return value


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 encoding of ``value``."""
    _check(value, "$")
    text = json.dumps(
        _sorted(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    return text.encode("utf-8")


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """Lower-case hex SHA-256 of the canonical encoding of ``value``."""
    return sha256_hex(canonical_bytes(value))


def _reject_floats(text: str) -> Any:
    raise CanonicalError(f"floating-point number {text!r} is not allowed")


def _reject_constant(text: str) -> Any:
    raise CanonicalError(f"{text} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise CanonicalError(f"duplicate member {key!r}")
        out[key] = val
    return out


# The fast path decides a line only if nothing in it can make orjson disagree with RFC 8785:
# - escapes need no check: orjson refuses lone surrogates, and writes every BMP character
#   exactly as RFC 8785 does (tests/test_canonical.py checks all 63,488 of them), so a
#   line with any other escape does not re-encode to itself;
# - no 4-byte UTF-8 sequence, so code-point key order (orjson) equals UTF-16 order (RFC);
# - no float: in a line that re-encodes to itself every number follows `":`, `,` or `[`,
#   and a float has a `.` or an exponent after its digits; with digits and `-` deleted, a
#   float leaves a mark (see _MARK_TABLE). (Such text inside a string only costs speed.)
# - no integer beyond 2**53 - 1: OPT_STRICT_INTEGER makes orjson refuse to write one.
# One pass of bytes.translate marks what the checks look for: delete digits and '-', map
# '.', 'e', 'E' to 0x01 and ',', '[' to 0x02 (a float value then leaves 0x02 0x01 or '":'
# 0x01), and the lead bytes of 4-byte UTF-8 sequences to 0x03. Bytes 0x01 to 0x03 cannot
# occur raw in a JSON line, so they mark nothing else.
_MARK_TABLE = bytes.maketrans(b".eE,[\xf0\xf1\xf2\xf3\xf4",
                              b"\x01\x01\x01\x02\x02\x03\x03\x03\x03\x03")
_DIGITS = b"0123456789-"
_ORJSON_OPTIONS = 0 if orjson is None else orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _fast_parse(data: bytes) -> Any:
    """The value of ``data`` if a fast check proves it canonical, else None (undecided).

    Accepts only what :func:`parse_strict_exact` accepts, with the same value; anything
    the fast check cannot decide goes to the exact path. tests/test_canonical.py checks
    the two agree on random and mutated inputs.
    """
    if orjson is None:
        return None
    marks = data.translate(_MARK_TABLE, _DIGITS)
    if b"\x03" in marks or b"\x02\x01" in marks or b'":\x01' in marks:
        return None
    try:
        value = orjson.loads(data)
        same = orjson.dumps(value, option=_ORJSON_OPTIONS) == data
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    return value if same and type(value) is dict else None


def parse_strict(data: bytes) -> Any:
    """Parse JSON that must already be canonical; raise CanonicalError otherwise.

    A signed or hashed line is accepted only if re-encoding it gives the same bytes, so
    there is exactly one byte string for each value (no whitespace, order or escape games).
    """
    value = _fast_parse(data)
    if value is not None:
        return value
    return parse_strict_exact(data)


def parse_strict_exact(data: bytes) -> Any:
    """:func:`parse_strict` by the exact RFC 8785 re-encoding alone (the reference path)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalError("not valid UTF-8") from exc
    try:
        value = json.loads(
            text,
            parse_float=_reject_floats,
            parse_constant=_reject_constant,
            object_pairs_hook=_no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise CanonicalError(f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if canonical_bytes(value) != data:
        raise CanonicalError("not in canonical form (RFC 8785)")
    return value
