"""Strict readers for TOML input: unknown keys, wrong types and bad values name file, line, field.

tomllib gives values but no positions, so :class:`Locator` finds the line of a field path
by scanning the TOML text for table headers and keys. It is a best effort used only for
messages; when it cannot find a line the message still names the file and field path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceremony.errors import InputError

PathT = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _split_dotted(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


class Locator:
    """Map a field path such as ("steps", 2, "approvals") to a 1-based line number."""

    def __init__(self, text: str) -> None:
        self._where: dict[PathT, int] = {}
        self._at: dict[int, PathT] = {}  # line -> the key or header written on it
        counts: dict[PathT, int] = {}
        current: PathT = ()
        last_key: PathT = ()
        in_multiline = False
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if not in_multiline and raw.lstrip().startswith("#"):
                continue  # a comment: quotes in it open no string
            if raw.count('"""') % 2 == 1 or raw.count("'''") % 2 == 1:
                in_multiline = not in_multiline
                if not in_multiline:
                    self._at[lineno] = last_key
                    continue
            elif in_multiline:
                self._at[lineno] = last_key
                continue
            header = _HEADER.match(raw)
            if header:
                parts = _split_dotted(header.group(2))
                if header.group(1) == "[[":
                    base = (*self._resolve(parts[:-1]), parts[-1])
                    index = counts.get(base, 0)
                    counts[base] = index + 1
                    current = (*base, index)
                    # The array as a whole is where its first element starts.
                    self._where.setdefault(base, lineno)
                else:
                    current = self._resolve(parts)
                self._where.setdefault(current, lineno)
                self._at[lineno] = last_key = current
                continue
            key = _KEY.match(raw)
            if key:
                path = current + tuple(_split_dotted(key.group(1)))
                self._where.setdefault(path, lineno)
                self._at[lineno] = last_key = path

    def _resolve(self, parts: list[str]) -> PathT:
        # A sub-table header like [steps.extra] belongs to the latest [[steps]] element.
        resolved: PathT = ()
        for part in parts:
            candidate = (*resolved, part)
            latest = [p for p in self._where if len(p) == len(candidate) + 1 and p[:-1] == candidate
                      and isinstance(p[-1], int)]
            resolved = (*candidate, max(int(p[-1]) for p in latest)) if latest else candidate
        return resolved

    def line(self, path: PathT) -> int | None:
        """The line of ``path``, or of its closest enclosing table or key."""
        for end in range(len(path), 0, -1):
            found = self._where.get(path[:end])
            if found is not None:
                return found
        return None

    def path_at(self, line: int) -> PathT:
        """The field written on ``line`` (inside a multi-line string: its key), or ()."""
        return self._at.get(line, ())


def format_path(path: PathT) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass
class Source:
    """A TOML document being read: its name for messages, its text and the error to raise."""

    name: str
    text: str
    error: type[InputError] = InputError
    locator: Locator = field(init=False)

    def __post_init__(self) -> None:
        self.locator = Locator(self.text)

    def fail(self, path: PathT, message: str, hint: str = "") -> InputError:
        return self.error(
            message, file=self.name, line=self.locator.line(path), field=format_path(path),
            hint=hint,
        )

    def load(self) -> Fields:
        try:
            data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            text = str(exc)
            match = re.search(r"\(at line (\d+), column \d+\)", text)
            line = int(match.group(1)) if match else None
            reason = re.sub(r"\s*\(at line .*\)$", "", text) or "syntax error"
            raise self.error(
                f"this is not valid TOML ({reason[0].lower() + reason[1:]})",
                file=self.name, line=line,
                # An unclosed array is noticed lines later, in a field that is not at fault.
                field="" if not line or reason.startswith("Unclosed")
                else format_path(self.locator.path_at(line)),
                hint="fix the syntax at that line; `ceremony lint` checks the whole file",
            ) from None
        return Fields(self, (), data)


def read_source(path: Path, error: type[InputError], what: str) -> Source:
    """Read a UTF-8 TOML file, turning I/O and encoding problems into one plain sentence."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"the {what} file does not exist", file=str(path),
                    hint="check the path") from None
    except IsADirectoryError:
        raise error(f"the {what} path is a directory, not a file", file=str(path),
                    hint="give the path of the TOML file") from None
    except OSError as exc:
        raise error(f"the {what} file cannot be read ({exc.strerror})", file=str(path),
                    hint="check the path and its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        where = Locator(raw.decode("utf-8", errors="replace")).path_at(line)
        raise error(f"the {what} file is not UTF-8 text (bad byte at offset {exc.start})",
                    file=str(path), line=line, field=format_path(where),
                    hint="save the file as UTF-8") from None
    return Source(str(path), text, error)


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "an array",
               dict: "a table"}


class Fields:
    """One TOML table, read field by field; :meth:`done` refuses anything left unread."""

    def __init__(self, source: Source, path: PathT, data: Any) -> None:
        self.source = source
        self.path = path
        self.data = data
        self._seen: set[str] = set()

    def fail(self, name: str | int | None, message: str, hint: str = "") -> InputError:
        path = self.path if name is None else (*self.path, name)
        return self.source.fail(path, message, hint)

    def _get(self, name: str, kind: type, required: bool) -> Any:
        self._seen.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "this required field is missing",
                                hint=f"add `{name} = ...` (see the sample script)")
            return None
        value = self.data[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise self.fail(name, f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                                  f"not {_describe(value)}")
        return value

    def text(self, name: str, *, required: bool = True, pattern: str | None = None,
            max_len: int = 200, default: str | None = None, what: str = "") -> Any:
        value = self._get(name, str, required and default is None)
        if value is None:
            return default
        if not value.strip():
            raise self.fail(name, "must not be empty")
        if len(value) > max_len:
            raise self.fail(name, f"is longer than {max_len} characters")
        if pattern and not re.fullmatch(pattern, value):
            raise self.fail(name, f"{value!r} is not {what or 'in the expected form'}")
        return value

    def choice(self, name: str, options: tuple[str, ...], *, required: bool = True,
               default: str | None = None) -> Any:
        value = self._get(name, str, required and default is None)
        if value is None:
            return default
        if value not in options:
            raise self.fail(name, f"{value!r} is not one of {', '.join(options)}")
        return value

    def integer(self, name: str, *, low: int, high: int, required: bool = True,
            default: int | None = None) -> Any:
        value = self._get(name, int, required and default is None)
        if value is None:
            return default
        if not low <= value <= high:
            raise self.fail(name, f"{value} is out of range (allowed {low} to {high})")
        return value

    def flag(self, name: str, *, default: bool | None = None) -> Any:
        value = self._get(name, bool, default is None)
        return default if value is None else value

    def str_list(self, name: str, *, required: bool = True, min_len: int = 0,
                 max_len: int = 64, default: tuple[str, ...] | None = None) -> Any:
        value = self._get(name, list, required and default is None)
        if value is None:
            return default
        if not min_len <= len(value) <= max_len:
            raise self.fail(name, f"must list {min_len} to {max_len} entries, not {len(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(name, f"entry {i + 1} must be a string, not {_describe(item)}")
        if len(set(value)) != len(value):
            raise self.fail(name, "lists the same entry twice")
        return tuple(value)

    def table(self, name: str, *, required: bool = True) -> Fields | None:
        value = self._get(name, dict, required)
        return None if value is None else Fields(self.source, (*self.path, name), value)

    def tables(self, name: str, *, min_len: int = 1, max_len: int = 64) -> list[Fields]:
        value = self._get(name, list, True)
        if not min_len <= len(value) <= max_len:
            raise self.fail(name, f"must have {min_len} to {max_len} entries, not {len(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.source.fail((*self.path, name, i),
                                       f"must be a table, not {_describe(item)}")
            out.append(Fields(self.source, (*self.path, name, i), item))
        return out

    def done(self) -> None:
        for key in self.data:
            if key not in self._seen:
                raise self.fail(key, "is not a known field",
                                hint="remove it or check its spelling against the sample")


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"  # float, datetime, date, time


def each(items: list[Fields], read: Callable[[Fields], Any]) -> Iterator[Any]:
    for item in items:
        value = read(item)
        item.done()
        yield value
