"""What a verified bundle says: read once, for the printed transcript and the lineage record.

:func:`load_verified` runs the auditor's verifier first and refuses a bundle that does not
verify, so nothing printed or signed from these facts rests on an unverified transcript.
Like the verifier, it imports only the data model, the transcript reader, the errors and
``cryptography`` (through the verifier): no device library, no engine, no UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceremony.canonical import digest
from ceremony.errors import CeremonyError, CheckFailed
from ceremony.model.policy import Policy, parse_policy
from ceremony.model.recovery import ORIGINAL_DIR, NotRecoverable, Original, read_original
from ceremony.model.script import Script, parse_script
from ceremony.transcript import Line, parse_lines
from ceremony.verify.certificates import _in_effect as certificates_in_effect
from ceremony.verify.core import (
    POLICY_FILE,
    SCRIPT_FILE,
    TRANSCRIPT_FILE,
    Report,
    verify_bundle,
)


@dataclass(frozen=True)
class RootKey:
    """The root key a completed ceremony left (``root_key.created`` or ``.recovered``)."""

    kind: str
    label: str
    key_id: str
    public_key: str  # "kind:base64", as the transcript writes it
    fingerprint: str
    seq: int
    time: str
    recovered: bool


@dataclass(frozen=True)
class ShareSet:
    """The SLIP-39 share set that rebuilds the root key (a recovery's is its original's)."""

    identifier: int
    seed_fingerprint: str  # the seed commitment (docs/kdf.md)
    group_threshold: int
    groups: tuple[tuple[int, int], ...]  # (threshold, count) per group


@dataclass(frozen=True)
class Certificate:
    """A root certificate or CSR the ceremony made and kept (not undone by a rollback)."""

    kind: str  # "certificate" or "csr"
    file: str
    sha256: str  # of the file, as action.completed records it
    fingerprint: str  # SHA-256 of the DER
    subject: str
    serial: str | None
    not_before: str | None
    not_after: str | None


@dataclass(frozen=True)
class Facts:
    """A bundle that verified, with what the printout and the lineage record need."""

    bundle: Path
    report: Report
    script: Script
    policy: Policy
    lines: tuple[Line, ...]
    root: RootKey | None
    shares: ShareSet | None
    certificates: tuple[Certificate, ...]
    original: Original | None  # a recovery: the original ceremony it rebuilt the key of

    @property
    def ceremony_id(self) -> str:
        return self.script.ceremony_id

    @property
    def rehearsal(self) -> bool:
        return self.report.rehearsal is True

    @property
    def outcome(self) -> str:
        return str(self.report.outcome)

    @property
    def head(self) -> str:
        return str(self.report.head)

    @property
    def seal(self) -> Line:
        return self.lines[-1]

    @property
    def seal_statement(self) -> dict[str, Any]:
        statement = self.seal.entry.payload["statement"]
        assert isinstance(statement, dict)
        return statement

    @property
    def seal_digest(self) -> str:
        """SHA-256 of the seal statement's canonical bytes: what the transcript key and the
        root key signed. Shown as "the seal" beside the head (the hash of the seal line)."""
        return digest(self.seal_statement)

    @property
    def started(self) -> str:
        return self.lines[0].entry.time


def load_verified(bundle: Path, purpose: str, *, sealing: bool = False) -> Facts:
    """Verify ``bundle`` and read its facts; refuse one that does not verify (exit 1).

    ``purpose`` completes the refusal: "so it is not printed". ``sealing``: a bundle just
    sealed, whose checksum list is not written yet (the printout made inside it, ADR 16):
    every step but the checksum list's must pass.
    """
    if not (bundle / TRANSCRIPT_FILE).is_file():
        raise CheckFailed(f"{bundle} is not a ceremony bundle (it has no {TRANSCRIPT_FILE}), "
                          f"{purpose}", hint="give the directory a ceremony wrote")
    report = verify_bundle(bundle, sealing=sealing)
    failure = report.first_failure
    passed = all(s.ok for s in report.steps[:-1]) if sealing else report.ok
    if failure is not None or not passed:
        why = f" (step {failure.number}, {failure.name}: {failure.detail})" if failure else ""
        raise CheckFailed(f"the bundle {bundle} does not verify{why}, {purpose}",
                          hint=f"run `ceremony verify {bundle}` to see why",
                          requirement=failure.requirement if failure else "")
    script = parse_script((bundle / SCRIPT_FILE).read_bytes().decode("utf-8"), SCRIPT_FILE)
    policy = parse_policy((bundle / POLICY_FILE).read_bytes().decode("utf-8"), POLICY_FILE)
    lines = parse_lines((bundle / TRANSCRIPT_FILE).read_bytes(), TRANSCRIPT_FILE)
    original = _original(bundle) if script.recovery is not None else None
    root = _root_key(script, lines) if report.outcome == "completed" else None
    shares = None
    if root is not None:
        shares = _share_set(script, original) if original is not None else \
            _own_share_set(script, lines)
    return Facts(bundle, report, script, policy, tuple(lines), root, shares,
                 _certificates(script, lines) if root is not None else (), original)


def _original(bundle: Path) -> Original:
    path = bundle / ORIGINAL_DIR
    try:
        return read_original(
            parse_script((path / SCRIPT_FILE).read_bytes().decode("utf-8"), SCRIPT_FILE),
            parse_lines((path / TRANSCRIPT_FILE).read_bytes(), TRANSCRIPT_FILE))
    except (NotRecoverable, CeremonyError, OSError, UnicodeDecodeError):  # pragma: no cover
        # The verifier checked this very copy in its step 5.
        raise CheckFailed(f"the copy of the original bundle in {bundle / ORIGINAL_DIR} "
                          "cannot be read") from None


def _undoes_key(script: Script, line: Line) -> bool:
    e = line.entry
    step = script.step(e.step) if e.step else None
    return e.event == "ceremony.aborted" or (
        e.event == "action.rolled_back" and step is not None
        and step.action in ("provision_root_key", "recover_root_key"))


def _root_key(script: Script, lines: list[Line]) -> RootKey | None:
    """The last root_key.created or .recovered not undone by a rollback of its step."""
    found: Line | None = None
    for line in lines:
        if line.entry.event in ("root_key.created", "root_key.recovered"):
            found = line
        elif _undoes_key(script, line):
            found = None
    if found is None:
        return None
    p = found.entry.payload
    return RootKey(str(p["kind"]), str(p["label"]), str(p["id"]), str(p["public_key"]),
                   str(p["fingerprint"]), found.entry.seq, found.entry.time,
                   found.entry.event == "root_key.recovered")


def _groups(script: Script) -> tuple[tuple[int, int], ...]:
    return tuple((g.threshold, len(g.members)) for g in script.shares.groups)


def _own_share_set(script: Script, lines: list[Line]) -> ShareSet | None:
    found: dict[str, Any] | None = None
    for line in lines:
        if line.entry.event == "shares.created":
            found = line.entry.payload
        elif _undoes_key(script, line):
            found = None
    if found is None:  # pragma: no cover - a completed provisioning always made shares
        return None
    return ShareSet(int(found["identifier"]), str(found["seed_fingerprint"]),
                    int(found["group_threshold"]), _groups(script))


def _share_set(script: Script, original: Original) -> ShareSet:
    # The recovery's [shares] are the original's (the verifier checked them, CER-RECOVERY).
    return ShareSet(original.identifier, original.seed_fingerprint, original.group_threshold,
                    _groups(script))


def _certificates(script: Script, lines: list[Line]) -> tuple[Certificate, ...]:
    made = certificates_in_effect(script, lines)
    out = []
    for event, kind in (("certificate.created", "certificate"), ("csr.created", "csr")):
        if event not in made:
            continue
        p = made[event].line.entry.payload
        name = str(p["file"])
        cert = kind == "certificate"
        out.append(Certificate(kind, name, str(made[event].digests.get(name, "")),
                               str(p["fingerprint"]), str(p["subject"]),
                               str(p["serial"]) if cert else None,
                               str(p["not_before"]) if cert else None,
                               str(p["not_after"]) if cert else None))
    return tuple(out)
