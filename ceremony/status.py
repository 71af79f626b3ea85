"""`ceremony status [DIR]`: every root key the bundles and lineage records in a directory
know of, its state, age and next rotation, with what is overdue or wrong highlighted.

UI-free and device-free, like the verifier it runs: every bundle found is verified
(``bundlefacts.load_verified``), every lineage record is verified against its bundle
(``lineage.verify_chain``) with its lifecycle events (``lineage.verify_events``), and the
rotation date comes from the policy of the key's ceremony (``lineage.rotation_due``: the
``[lifecycle]`` cadence, or ``max_key_lifetime_days``). The text, JSON and Textual views
(``cli/status.py``, ``tui/status.py``) only show the :class:`Status` built here.

Findings have a level: ``fail`` (the exit code is 1: a bundle or lineage record that does
not verify, a rotation overdue), ``warn`` (to look at: rotation due soon, a rehearsal
bundle, a production key without a signed lineage record, a lineage record whose bundle is
not in the directory, a compromised key) or ``note`` (an aborted ceremony left no key).
docs/status.md lists them with their codes (CER-STATUS in docs/requirements.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceremony.bundlefacts import Facts, load_verified
from ceremony.display import words
from ceremony.errors import CheckFailed, InputError, UsageError
from ceremony.lineage import (
    RELATIONS,
    LineageError,
    LineageFormatError,
    chain,
    check_signatures,
    current_state,
    expected_record,
    load_events,
    parse,
    replaced_heads,
    rotation_due,
    verify_chain,
    verify_events,
)
from ceremony.model.recovery import ORIGINAL_DIR
from ceremony.transcript import format_time, parse_time

FORMAT = "ceremony.status.v1"
RECORD_SUFFIX = ".lineage.json"
TRANSCRIPT_FILE = "transcript.jsonl"
FAIL, WARN, NOTE = "fail", "warn", "note"
LEVELS = (FAIL, WARN, NOTE)


@dataclass(frozen=True)
class Finding:
    """Something overdue, failing or to look at; ``code`` is stable (docs/status.md)."""

    level: str
    code: str
    subject: str  # the key's fingerprint, or the file or directory concerned
    message: str  # one plain sentence

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "code": self.code, "subject": self.subject,
                "message": self.message}


@dataclass(frozen=True)
class BundleRow:
    """One bundle found: what the verifier says of it."""

    path: str
    ceremony: str | None
    outcome: str | None
    rehearsal: bool | None
    verified: bool
    sealed: str | None  # the seal's time
    detail: str  # why it does not verify, or ""
    printed: bool  # it carries its printed transcript (transcript.pdf, ADR 16)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "ceremony": self.ceremony, "outcome": self.outcome,
                "rehearsal": self.rehearsal, "verified": self.verified,
                "sealed": self.sealed, "detail": self.detail, "printed": self.printed}


@dataclass(frozen=True)
class RecordRow:
    """One lineage record found (``*.lineage.json``) and its lifecycle events."""

    path: str
    key: str | None
    ceremony: str | None
    valid: bool
    events: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "key": self.key, "ceremony": self.ceremony,
                "valid": self.valid, "events": self.events, "detail": self.detail}


@dataclass(frozen=True)
class KeyRow:
    """One root key: from its bundles and, when there is one, its lineage record."""

    fingerprint: str
    algorithm: str
    label: str
    state: str
    created: str | None  # when the key was made (root_key.created)
    age_days: int | None
    ceremony: str  # the ceremony that made the key from its seed
    rehearsal: bool
    last_ceremony: str
    last_kind: str  # creation, recovery, rotation or replacement
    last_sealed: str
    rotation_due: str | None
    rotation_status: str  # not-due, due, overdue, ended, inactive, unknown
    rotation_days: int | None
    cadence: str
    lineage: str | None  # the record file, when one verifies
    bundles: tuple[str, ...]
    findings: tuple[str, ...]  # codes of this key's findings

    @property
    def words(self) -> str:
        return words(self.fingerprint)

    def as_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "words": self.words,
                "algorithm": self.algorithm, "label": self.label, "state": self.state,
                "created": self.created, "age_days": self.age_days,
                "ceremony": self.ceremony, "rehearsal": self.rehearsal,
                "last_ceremony": {"id": self.last_ceremony, "kind": self.last_kind,
                                  "sealed": self.last_sealed},
                "rotation": {"due": self.rotation_due, "status": self.rotation_status,
                             "days": self.rotation_days, "cadence": self.cadence},
                "lineage": self.lineage, "bundles": list(self.bundles),
                "findings": list(self.findings)}


@dataclass
class Status:
    """What ``ceremony status`` reports of a directory."""

    directory: str
    time: str
    keys: list[KeyRow] = field(default_factory=list)
    bundles: list[BundleRow] = field(default_factory=list)
    records: list[RecordRow] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing overdue and nothing that fails verification (exit 0)."""
        return not any(f.level == FAIL for f in self.findings)

    def level_of(self, subject: str) -> str | None:
        """The worst level of the findings about ``subject`` (a key or a path), or None."""
        levels = {f.level for f in self.findings if f.subject == subject}
        return next((level for level in LEVELS if level in levels), None)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "directory": self.directory, "time": self.time,
                "ok": self.ok, "keys": [k.as_dict() for k in self.keys],
                "bundles": [b.as_dict() for b in self.bundles],
                "lineage": [r.as_dict() for r in self.records],
                "findings": [f.as_dict() for f in self.findings]}


# ------------------------------------------------------------------ finding the files


def scan(directory: Path) -> tuple[list[Path], list[Path]]:
    """The bundles (directories holding a transcript) and lineage records under
    ``directory``, in name order; a bundle's own subdirectories (a recovery's
    ``original/`` copy) are part of it, not bundles of their own."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory",
                         hint="give the directory that holds the ceremony bundles "
                              "(default: the current directory)")
    bundles: list[Path] = []
    records: list[Path] = []
    problems: list[OSError] = []
    for root, dirs, files in os.walk(directory, onerror=problems.append):
        here = Path(root)
        if TRANSCRIPT_FILE in files:
            bundles.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        records += [here / f for f in sorted(files) if f.endswith(RECORD_SUFFIX)]
    if problems and problems[0].filename == str(directory):
        raise UsageError(f"{directory} cannot be read ({problems[0].strerror})",
                         hint="check its permissions")
    return sorted(bundles), sorted(records)


# ------------------------------------------------------------------ the status


@dataclass
class _Key:
    facts: list[Facts] = field(default_factory=list)
    records: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]] = field(
        default_factory=list)


def _days(since: str, now: datetime) -> int:
    return math.floor((now - parse_time(since)).total_seconds() / 86400)


def status(directory: Path, now: datetime | None = None) -> Status:
    """The status of every key known from the bundles and lineage records in
    ``directory``, as seen at ``now`` (default: the system clock, UTC)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    bundle_paths, record_paths = scan(directory)
    out = Status(str(directory), format_time(now))
    keys: dict[str, _Key] = {}
    by_head: dict[str, Facts] = {}
    for path in bundle_paths:
        facts = _bundle(path, out)
        if facts is None:
            continue
        by_head[facts.head] = facts
        if facts.root is not None:
            keys.setdefault(facts.root.fingerprint, _Key()).facts.append(facts)
    for path in record_paths:
        _record(path, by_head, keys, out, now)
    for fingerprint, key in keys.items():
        out.keys.append(_key_row(fingerprint, key, out, now))
    out.keys.sort(key=lambda k: (k.ceremony, k.fingerprint))
    order = {level: i for i, level in enumerate(LEVELS)}
    out.findings.sort(key=lambda f: order[f.level])
    return out


def _bundle(path: Path, out: Status) -> Facts | None:
    printed = (path / "transcript.pdf").is_file()
    try:
        facts = load_verified(path, "so the keys it records are not listed")
    except CheckFailed as exc:
        out.bundles.append(BundleRow(str(path), None, None, None, False, None, exc.message,
                                     printed))
        out.findings.append(Finding(FAIL, "bundle-not-verified", str(path), exc.message))
        return None
    except (OSError, InputError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else exc.message
        message = f"the bundle {path} cannot be read ({why})"
        out.bundles.append(BundleRow(str(path), None, None, None, False, None, message,
                                     printed))
        out.findings.append(Finding(FAIL, "bundle-not-verified", str(path), message))
        return None
    sealed = facts.seal.entry.time
    out.bundles.append(BundleRow(str(path), facts.ceremony_id, facts.outcome, facts.rehearsal,
                                 True, sealed, "", printed))
    if facts.rehearsal:
        subject = facts.root.fingerprint if facts.root is not None else str(path)
        what = "its key protects nothing and must not be used" if facts.root is not None \
            else "not a production ceremony"
        out.findings.append(Finding(WARN, "rehearsal", subject,
                                    f"ceremony {facts.ceremony_id} ({path}) is a REHEARSAL: "
                                    f"{what}"))
    if facts.outcome != "completed":
        out.findings.append(Finding(NOTE, "aborted", str(path),
                                    f"ceremony {facts.ceremony_id} ({path}) was aborted on "
                                    f"{sealed[:10]}: it left no key"))
    return facts


def _record(path: Path, by_head: dict[str, Facts], keys: dict[str, _Key], out: Status,
            now: datetime) -> None:
    def refuse(message: str, key: str | None = None, ceremony: str | None = None,
               events: int = 0) -> None:
        out.records.append(RecordRow(str(path), key, ceremony, False, events, message))
        out.findings.append(Finding(FAIL, "lineage-not-verified", key or str(path), message))

    try:
        document = parse(path.read_bytes(), str(path))
    except OSError as exc:
        refuse(f"the lineage record {path} cannot be read ({exc.strerror})")
        return
    except LineageFormatError as exc:
        refuse(exc.describe().split("\n")[0])
        return
    record = document["record"]
    key, ceremony = record["key"]["fingerprint"], record["ceremony"]["id"]
    facts = by_head.get(record["ceremony"]["transcript_head"])
    companion = path.with_name(path.name[:-len(RECORD_SUFFIX)])
    bundle = companion if companion.is_dir() else facts.bundle if facts else None
    try:
        events = load_events(path)
    except LineageFormatError as exc:
        refuse(exc.describe().split("\n")[0], key, ceremony)
        return
    try:
        if bundle is None:
            check_signatures(document, f"the lineage record {path}")
        else:
            earlier = []  # the bundles of the keys its rotations replaced, as far as found
            for head in replaced_heads(document):
                if head not in by_head:
                    break
                earlier.append(by_head[head].bundle)
            verify_chain(document, bundle, earlier)
        verify_events(document, events, facts.policy if facts else None, now=now)
    except LineageError as exc:
        refuse(f"the lineage record {path} does not verify: {exc.message}", key, ceremony,
               len(events))
        return
    out.records.append(RecordRow(str(path), key, ceremony, True, len(events), ""))
    if bundle is None:
        out.findings.append(Finding(WARN, "lineage-without-bundle", key,
                                    f"the lineage record {path} of ceremony {ceremony} has no "
                                    "bundle in the directory: only its signatures were checked"))
    keys.setdefault(key, _Key()).records.append((path, document, events))


def _creation(key: _Key) -> Facts | None:
    """The facts of the ceremony that made the key: a creation bundle, or the original
    copy inside a recovery bundle (verified with it)."""
    made = [f for f in key.facts if f.original is None]
    if made:
        return min(made, key=lambda f: f.seal.entry.time)
    for facts in key.facts:
        try:
            return load_verified(facts.bundle / ORIGINAL_DIR, "")
        except (CheckFailed, InputError, OSError):
            continue
    return None


def _depth(bundle: Path) -> int:
    """How many ceremonies of the key came before this bundle's (its nested originals)."""
    depth, inner = 0, bundle / ORIGINAL_DIR
    while inner.is_dir():
        depth, inner = depth + 1, inner / ORIGINAL_DIR
    return depth


def _key_row(fingerprint: str, key: _Key, out: Status, now: datetime) -> KeyRow:
    codes: list[str] = []

    def find(level: str, code: str, message: str) -> None:
        out.findings.append(Finding(level, code, fingerprint, message))
        codes.append(code)

    codes += [f.code for f in out.findings if f.subject == fingerprint]
    creation = _creation(key)
    # The last ceremony of the key: a recovery comes after the ceremony it recovered
    # (whatever the clocks said), then the later seal.
    latest = max(key.facts, key=lambda f: (_depth(f.bundle), f.seal.entry.time)) \
        if key.facts else None
    record = max(key.records, key=lambda r: (len(chain(r[1])),
                                             r[1]["record"]["ceremony"]["seal"]["time"])) \
        if key.records else None
    document: dict[str, Any] | None = record[1] if record else None
    events = record[2] if record else []
    if document is None and creation is not None and creation.root is not None:
        # No signed record: the one the bundle would give (what `lineage make` signs).
        document = {"record": expected_record(creation, None), "signatures": []}
    rehearsal = any(f.rehearsal for f in key.facts) or bool(
        document and document["record"]["ceremony"]["rehearsal"])
    if record is None and not rehearsal:
        find(WARN, "no-lineage", f"root key {fingerprint[:16]} has no lineage record signed "
             "by its custodians in the directory (`ceremony lineage make BUNDLE`)")
    source = latest or creation
    policy = source.policy if source is not None else None
    state, due, rstatus, days, cadence = "unknown", None, "unknown", None, "unknown"
    if document is not None:
        state = current_state(document, events)
        if policy is not None:
            rotation = rotation_due(document, policy, events, now=now)
            due, rstatus, days, cadence = (rotation.due, rotation.status, rotation.days,
                                           rotation.cadence)
    name = f"root key {fingerprint[:16]}"
    if rstatus == "overdue":
        find(FAIL, "rotation-overdue", f"{name} was due for rotation on {str(due)[:10]}, "
             f"{-(days or 0)} days ago (cadence {cadence})")
    elif rstatus == "due":
        find(WARN, "rotation-due", f"{name} is due for rotation on {str(due)[:10]}, in "
             f"{days} days (cadence {cadence})")
    if state == "compromised":
        find(WARN, "compromised", f"{name} is compromised: every certificate and bundle that "
             "depends on it must be revoked and the key replaced")
    if document is not None:
        r = document["record"]
        k, c = r["key"], r["ceremony"]
        first = r["lifecycle"]["transitions"][0]["time"] if r["lifecycle"]["transitions"] \
            else None
        made_by = c["id"] if c["kind"] != "recovery" else r["previous"]["ceremony"] \
            if isinstance(r.get("previous"), dict) else c["id"]
        algorithm, label = k["kind"], k["label"]
    else:
        assert latest is not None and latest.root is not None
        first, made_by = None, latest.original.ceremony_id if latest.original else \
            latest.ceremony_id
        algorithm, label = latest.root.kind, latest.root.label
    if creation is not None and creation.root is not None:
        first = creation.root.time
    if latest is not None:
        replaces = latest.script.previous
        kind = "recovery" if latest.original else \
            RELATIONS[replaces.reason] if replaces else "creation"
        last = (latest.ceremony_id, kind, latest.seal.entry.time)
    else:
        assert document is not None
        c = document["record"]["ceremony"]
        last = (c["id"], c["kind"], c["seal"]["time"])
    return KeyRow(fingerprint, algorithm, label, state, first,
                  _days(first, now) if first else None, made_by, rehearsal, *last,
                  due, rstatus, days, cadence, str(record[0]) if record else None,
                  tuple(str(f.bundle) for f in key.facts), tuple(dict.fromkeys(codes)))


# ------------------------------------------------------------------ text (80 columns)


def age(days: int | None) -> str:
    if days is None:
        return "-"
    years, rest = divmod(days, 365)
    return f"{years}y {rest}d" if years else f"{rest}d"


def rotation_text(k: KeyRow) -> str:
    if k.rotation_due is None:
        return {"ended": "none (ended)", "inactive": "not active"}.get(k.rotation_status,
                                                                        "unknown")
    day = k.rotation_due[:10]
    return {"overdue": f"{day} OVERDUE", "due": f"{day} DUE",
            "ended": f"none ({k.state})"}.get(k.rotation_status, day)


MARK = {FAIL: "!", WARN: "*", NOTE: " ", None: " "}


def bundle_result(b: BundleRow) -> str:
    """A bundle's ceremony and outcome in words, or that it does not verify."""
    if not b.verified:
        return "DOES NOT VERIFY"
    return f"{b.ceremony}, {b.outcome}" + (", REHEARSAL" if b.rehearsal else "") + (
        "" if b.printed else ", no transcript.pdf inside")


def _wrap(text: str, first: str, rest: str, width: int = 80) -> Iterator[str]:
    import textwrap

    yield from textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest,
                             break_on_hyphens=False, break_long_words=True)


def render_text(s: Status) -> str:
    """The plain-text report, at most 80 columns wide."""
    fails = sum(f.level == FAIL for f in s.findings)
    warns = sum(f.level == WARN for f in s.findings)
    lines = [f"ceremony status of {s.directory}"[:80],
             f"as of {s.time[:16].replace('T', ' ')} UTC: {len(s.keys)} root key(s), "
             f"{len(s.bundles)} bundle(s), {len(s.records)} lineage record(s)", ""]
    if s.keys:
        lines.append("  ROOT KEY          ALGORITHM   STATE          AGE      NEXT ROTATION")
        for k in s.keys:
            mark = MARK[s.level_of(k.fingerprint)]
            lines.append(f"{mark} {k.fingerprint[:16]:<16}  {k.algorithm:<10}  "
                         f"{k.state:<13}  {age(k.age_days):<7}  {rotation_text(k)}"[:80])
            lines += list(_wrap(k.words, "    words: ", " " * 11))
            mark = " (REHEARSAL)" if k.rehearsal else ""
            last = "" if k.last_ceremony == k.ceremony else \
                f"; last {k.last_ceremony} ({k.last_kind}, {k.last_sealed[:10]})"
            lines += list(_wrap(f"made by ceremony {k.ceremony}{mark}{last}; cadence "
                                f"{k.cadence}; lineage "
                                f"{'signed' if k.lineage else 'none'}", "    ", " " * 6))
    else:
        lines.append("  no root key found")
    lines += ["", "  BUNDLES"]
    for b in s.bundles:
        result = bundle_result(b)
        lines += list(_wrap(f"{b.path}: {result}", f"{MARK[s.level_of(b.path)]} ", "      "))
    if not s.bundles:
        lines.append("  no bundle found")
    lines += ["", f"  FINDINGS: {fails} failing, {warns} to look at"]
    for f in s.findings:
        lines += list(_wrap(f.message, f"{MARK[f.level]} {f.level.upper():<4}  ", " " * 8))
    if not s.ok:
        last = f"{fails} problem(s): something is overdue or does not verify (exit 1)"
    elif warns:
        last = f"nothing fails; {warns} finding(s) to look at above"
    else:
        last = "all fine"
    lines += ["", last]
    return "\n".join(lines)
