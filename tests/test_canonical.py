"""RFC 8785 behaviour of ceremony.canonical: hand-written vectors plus property tests.

The vectors (tests/vectors/canonical/rfc8785.json) are typed from the RFC and ECMAScript
JSON.stringify rules, never produced by the encoder under test.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from ceremony.canonical import MAX_SAFE_INTEGER, CanonicalError, canonical_bytes, parse_strict

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "canonical" / "rfc8785.json").read_text("utf-8"))


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


@pytest.mark.parametrize("case", VECTORS["canonical_bytes"], ids=_ids(VECTORS["canonical_bytes"]))
def test_canonical_bytes_vector(case: dict[str, Any]) -> None:
    value = json.loads(case["input"])  # lax on purpose: NaN, floats, big ints all load
    if case.get("error"):
        with pytest.raises(CanonicalError):
            canonical_bytes(value)
    else:
        assert canonical_bytes(value) == case["output"].encode("utf-8")


@pytest.mark.parametrize("case", VECTORS["parse_strict"], ids=_ids(VECTORS["parse_strict"]))
def test_parse_strict_vector(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["input_hex"]) if "input_hex" in case else \
        case["input"].encode("utf-8")
    if case["ok"]:
        value = parse_strict(data)
        assert canonical_bytes(value) == data
    else:
        with pytest.raises(CanonicalError):
            parse_strict(data)


def test_vectors_cover_the_issue_list() -> None:
    names = " | ".join(_ids(VECTORS["canonical_bytes"]) + _ids(VECTORS["parse_strict"]))
    for topic in ("UTF-16 order", "control characters", "non-ASCII", "largest safe integer",
                  "above 2**53-1", "float refused", "NaN refused", "duplicate keys",
                  "space after colon"):
        assert topic in names, topic


def test_bounds_are_the_ijson_range() -> None:
    assert MAX_SAFE_INTEGER == 2**53 - 1
    assert canonical_bytes([2**53 - 1, -(2**53 - 1)]) == b"[9007199254740991,-9007199254740991]"
    for bad in (2**53, -(2**53)):
        with pytest.raises(CanonicalError):
            canonical_bytes({"n": bad})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, {1: "x"}, b"x", {"a"}],
                         ids=["nan", "inf", "float", "int-key", "bytes", "set"])
def test_non_json_values_refused(value: object) -> None:
    with pytest.raises(CanonicalError):
        canonical_bytes(value)


# ---------------------------------------------------------------- properties

_text = hs.text(hs.characters(exclude_categories=["Cs"]), max_size=12)
_scalars = hs.none() | hs.booleans() | hs.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | _text
json_values = hs.recursive(
    _scalars,
    lambda children: hs.lists(children, max_size=5) | hs.dictionaries(_text, children,
                                                                      max_size=5),
    max_leaves=25,
)


def _utf16_key(key: str) -> list[int]:
    """UTF-16 code units, computed by hand (not via the codec the encoder uses)."""
    units: list[int] = []
    for ch in key:
        cp = ord(ch)
        if cp < 0x10000:
            units.append(cp)
        else:
            cp -= 0x10000
            units += [0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)]
    return units


def _keys_in_order(value: Any) -> bool:
    if isinstance(value, dict):
        keys = list(value)
        return keys == sorted(keys, key=_utf16_key) and all(
            _keys_in_order(v) for v in value.values())
    if isinstance(value, list):
        return all(_keys_in_order(v) for v in value)
    return True


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_round_trip(value: Any) -> None:
    data = canonical_bytes(value)
    assert parse_strict(data) == value
    assert _keys_in_order(json.loads(data))
    assert canonical_bytes(json.loads(data)) == data


@settings(max_examples=100, deadline=None)
@given(hs.dictionaries(_text, json_values, max_size=6), hs.randoms(use_true_random=False))
def test_member_order_does_not_matter(value: dict[str, Any], rnd: random.Random) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert canonical_bytes(dict(items)) == canonical_bytes(value)


# ---------------------------------------------------------------- the fast path


def test_fast_path_writes_every_bmp_character_as_rfc8785() -> None:
    """The fast path's premise: orjson escapes each BMP character exactly as RFC 8785."""
    orjson = pytest.importorskip("orjson")
    from ceremony.canonical import canonical_bytes

    differ = []
    for cp in range(0x10000):
        if 0xD800 <= cp < 0xE000:
            continue
        value = {"k": chr(cp)}
        if orjson.dumps(value, option=orjson.OPT_SORT_KEYS) != canonical_bytes(value):
            differ.append(hex(cp))
    assert differ == []


def _outcome(parse: Any, data: bytes) -> Any:
    try:
        return ("ok", parse(data))
    except CanonicalError:
        return ("refused",)


_JSON_TEXT = hs.text(alphabet=hs.characters(codec="utf-8"), max_size=12)
_JSON_VALUES = hs.recursive(
    hs.none() | hs.booleans() | hs.integers(-(2**60), 2**60) | _JSON_TEXT
    | hs.floats(allow_nan=False, allow_infinity=False),
    lambda children: hs.lists(children, max_size=4)
    | hs.dictionaries(_JSON_TEXT, children, max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(value=hs.dictionaries(_JSON_TEXT, _JSON_VALUES, max_size=5),
       mutation=hs.one_of(hs.none(), hs.tuples(hs.integers(0, 10**6), hs.binary(max_size=3))))
def test_fast_path_agrees_with_the_exact_path(value: dict[str, Any],
                                              mutation: tuple[int, bytes] | None) -> None:
    """parse_strict (fast path first) and parse_strict_exact accept and refuse alike."""
    import json

    from ceremony.canonical import parse_strict, parse_strict_exact

    data = json.dumps(value, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    try:
        from ceremony.canonical import canonical_bytes

        data = canonical_bytes(value)
    except CanonicalError:
        pass  # keep the json module's text: floats and big integers must be refused
    if mutation is not None:
        at, insert = mutation
        at %= len(data) + 1
        data = data[:at] + insert + data[at + len(insert):]
    assert _outcome(parse_strict, data) == _outcome(parse_strict_exact, data)
