"""What the printed transcript shows: the cover, every entry in words, the signature lines.

Pure: built from the facts of a verified bundle (``ceremony.bundlefacts``), with no PDF or QR
library; ``ceremony.adapters.transcript_pdf`` draws it. Keeping the content here means the
text a person reads on paper is decided in one place and tested without rendering.

The cover carries three QR payloads (docs/qr-format.md), each also printed as hex and words:

* the root key fingerprint, a text payload ``ceremony ID\\nroot key fingerprint HEX\\n``;
* the transcript head, a text payload ``ceremony ID\\ntranscript head HEX\\n``;
* the seal: a JSON payload holding the seal line exactly as in ``transcript.jsonl`` (the
  signed seal statement and its signatures), so its SHA-256, which every part of it
  declares, is the transcript head. Its words are those of the seal digest, the SHA-256 of
  the seal statement (what the transcript key and the root key signed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ceremony.bundlefacts import Facts
from ceremony.display import grouped_hex, words
from ceremony.model.script import Script
from ceremony.qrframe import Payload
from ceremony.transcript import Entry, parse_time


@dataclass(frozen=True)
class Digest:
    """A digest on the cover: hex, words and the QR payload that carries it."""

    title: str
    hex: str
    words: str
    notes: tuple[str, ...]
    payload: Payload


@dataclass(frozen=True)
class EntryView:
    """One transcript entry as a person reads it."""

    seq: int
    time: str
    actor: str
    step: str | None
    event: str
    details: tuple[str, ...]


@dataclass(frozen=True)
class Person:
    participant: str
    name: str
    role: str
    did: str  # what they signed in the transcript, in words


@dataclass(frozen=True)
class Printout:
    ceremony_id: str
    title: str
    rehearsal: bool
    outcome: str
    created: datetime  # the seal's time: the PDF's creation date (same bundle, same bytes)
    head: str
    facts: tuple[tuple[str, str], ...]
    people: tuple[Person, ...]
    digests: tuple[Digest, ...]
    entries: tuple[EntryView, ...]
    # Every waived environment check (ceremony.started's attestation), one line each,
    # printed on every page (CER-ATTEST; docs/workstation-guide.md).
    waivers: tuple[str, ...] = ()

    def frames(self) -> list[str]:
        """Every QR frame the cover shows, in drawing order."""
        return [frame for d in self.digests for frame in d.payload.frames()]


def build_printout(facts: Facts) -> Printout:
    """The printout of a verified bundle."""
    script = facts.script
    seal_time = facts.seal.entry.time
    return Printout(
        ceremony_id=facts.ceremony_id, title=script.title, rehearsal=facts.rehearsal,
        outcome=facts.outcome, created=parse_time(seal_time), head=facts.head,
        facts=tuple(_cover_facts(facts)), people=tuple(_people(facts)),
        digests=tuple(_digests(facts)),
        entries=tuple(describe(line.entry, script) for line in facts.lines),
        waivers=waiver_lines(facts.lines[0].entry.payload.get("attestation")))


def waiver_lines(record: Any) -> tuple[str, ...]:
    """The waived checks of an attestation record, as the printout's every page shows them:
    each policy waiver with its signers and reason; the rehearsal's in one line."""
    checks = record.get("checks") if isinstance(record, dict) else None
    if not isinstance(checks, list):
        return ()
    waived = [c for c in checks if isinstance(c, dict) and c.get("result") == "waived"]
    lines = [f"WAIVED {c.get('id')} ({c.get('check')}) by {', '.join(c.get('approved_by', []))}"
             f": {c.get('reason', '')}" for c in waived if c.get("waived_by") == "policy"]
    rehearsal = [str(c.get("id")) for c in waived if c.get("waived_by") == "rehearsal"]
    if rehearsal:
        lines.append(f"WAIVED for the rehearsal: {', '.join(rehearsal)}")
    return tuple(lines)


def fingerprint_payload(ceremony_id: str, fingerprint: str) -> Payload:
    return Payload("text", f"ceremony {ceremony_id}\nroot key fingerprint {fingerprint}\n"
                   .encode())


def head_payload(ceremony_id: str, head: str) -> Payload:
    return Payload("text", f"ceremony {ceremony_id}\ntranscript head {head}\n".encode())


def _day(time: str) -> str:
    return f"{time[:10]} {time[11:19]} UTC"


def _cover_facts(facts: Facts) -> list[tuple[str, str]]:
    script, first = facts.script, facts.lines[0].entry.payload
    rows = [("Ceremony", f"{facts.ceremony_id} (script version {script.version})"),
            ("Title", script.title),
            ("Date", f"{facts.started[:10]}: started {_day(facts.started)}, sealed "
                     f"{_day(facts.seal.entry.time)}"),
            ("Outcome", facts.outcome + (" - REHEARSAL, not a production ceremony"
                                         if facts.rehearsal else "")),
            ("Entries", f"{len(facts.lines)} (seq 0 to {len(facts.lines) - 1}), every one "
                        "verified with `ceremony verify` before printing")]
    if facts.original is not None:
        rows.append(("Recovery of", f"ceremony {facts.original.ceremony_id}, transcript head "
                                    f"{facts.original.head}"))
    rows += [("Script", f"sha256 {first.get('script_sha256')}"),
             ("Policy", f"{first.get('policy_id')} version {first.get('policy_version')}, "
                        f"sha256 {first.get('policy_sha256')}"),
             ("Tool", str(first.get("tool")))]
    if facts.root is not None:
        rk = facts.root
        rows.append(("Root key", f"{rk.kind}, label \"{rk.label}\", id {rk.key_id}"))
    if facts.shares is not None:
        sh = facts.shares
        groups = ", ".join(f"{t} of {n}" for t, n in sh.groups)
        rows.append(("Share set", f"SLIP-39 identifier {sh.identifier}: {sh.group_threshold} "
                                  f"of {len(sh.groups)} group(s) ({groups})"))
    for cert in facts.certificates:
        rows.append(("Certificate" if cert.kind == "certificate" else "CSR",
                     f"{cert.file}: {cert.subject}, sha256 {cert.fingerprint}"))
    rows += _witnessed_rows(facts)
    return rows


def _witnessed_rows(facts: Facts) -> list[tuple[str, str]]:
    """The cover's deviations and seal co-signatures (ADR 15), when there are any."""
    script, rows = facts.script, []
    deviations = [ln.entry for ln in facts.lines if ln.entry.event == "deviation"]
    if deviations:
        rows.append(("Deviations", f"{len(deviations)}: " + "; ".join(
            f"entry {e.seq} {e.payload.get('kind')} declared by {person(script, e.actor)}"
            for e in deviations)))
    cosigned = [ln.entry.actor for ln in facts.lines if ln.entry.event == "seal.witnessed"]
    if cosigned:
        rows.append(("Seal co-signed", "by " + ", ".join(person(script, w) for w in cosigned)))
    return rows


def _people(facts: Facts) -> list[Person]:
    signed: dict[str, list[str]] = {}
    for approval in facts.report.approvals:
        verb = "approved" if approval["role"] == "custodian" else "acknowledged"
        signed.setdefault(approval["participant"], []).append(f"{verb} {approval['step']}")
    for line in facts.lines:  # deviations and the seal's co-signatures (ADR 15)
        e = line.entry
        did = {"deviation": f"declared the deviation at entry {e.seq}",
               "deviation.approved": "approved the deviation at entry "
                                     f"{(e.payload.get('statement') or {}).get('seq')}",
               "seal.witnessed": "co-signed the seal"}.get(e.event)
        if did is not None:
            signed.setdefault(e.actor, []).append(did)
    return [Person(p.id, p.name, p.role, "; ".join(signed.get(p.id, [])) or "-")
            for p in facts.script.participants]


def _digests(facts: Facts) -> list[Digest]:
    out = []
    cid = facts.ceremony_id
    if facts.root is not None:
        rk = facts.root
        out.append(Digest("Root key fingerprint", rk.fingerprint, words(rk.fingerprint),
                          (f"SHA-256 of the {rk.kind} public key \"{rk.label}\" (id "
                           f"{rk.key_id})",), fingerprint_payload(cid, rk.fingerprint)))
    out.append(Digest("Transcript head", facts.head, words(facts.head),
                      (f"SHA-256 of the seal line, entry {len(facts.lines) - 1}: it pins "
                       "every entry",), head_payload(cid, facts.head)))
    statement = facts.seal_statement
    signers = "the transcript key" + (" and the root key" if "root_key_signature" in
                                      facts.seal.entry.payload else "")
    out.append(Digest("Seal", facts.seal_digest, words(facts.seal_digest),
                      (f"outcome {statement.get('outcome')}, {statement.get('entries')} "
                       f"entries, {statement.get('time')}; SHA-256 of the seal statement, "
                       f"signed by {signers}",
                       "its QR holds the whole seal line (statement and signatures); "
                       "the parts' digest is the transcript head"),
                      Payload("json", facts.seal.raw)))
    return out


# ------------------------------------------------------------------ entries in words


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _short(hex_digest: Any) -> str:
    text = _s(hex_digest)
    return grouped_hex(text) if len(text) == 64 else text


def person(script: Script, pid: Any) -> str:
    """``Name (id, role)`` for a participant, ``engine`` for the engine."""
    found = script.participant(_s(pid))
    return f"{found.name} ({found.id}, {found.role})" if found else _s(pid)


def _names(script: Script, ids: Any) -> str:
    if not isinstance(ids, list) or not ids:
        return "nobody"
    return ", ".join(person(script, i) for i in ids)


def _flat(value: Any) -> str:
    """A payload value in one line: objects as k=v, arrays comma separated."""
    if isinstance(value, dict):
        return "; ".join(f"{k}={_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _s(value)


Describe = Callable[[dict[str, Any], Script], list[str]]


def _started(p: dict[str, Any], script: Script) -> list[str]:
    token = p.get("token") if isinstance(p.get("token"), dict) else {}
    assert isinstance(token, dict)
    lines = [f"{p.get('tool')}; script {p.get('script_id')} version {p.get('script_version')}, "
             f"sha256 {p.get('script_sha256')}",
             f"policy {p.get('policy_id')} version {p.get('policy_version')}, sha256 "
             f"{p.get('policy_sha256')}",
             "REHEARSAL" if p.get("rehearsal") is True else "production ceremony (not a "
                                                            "rehearsal)",
             f"token \"{token.get('label')}\": {token.get('manufacturer')} "
             f"{token.get('model')}, serial {token.get('serial')}, firmware "
             f"{token.get('firmware')}; module {token.get('module')} (sha256 "
             f"{token.get('module_sha256')})"]
    login = token.get("activation")
    if isinstance(login, dict) and login.get("mode") == "split":
        lines.append(f"login: split knowledge, {login.get('threshold')} of "
                     f"{_names(script, login.get('officers'))}; PIN shares presented by "
                     f"{_names(script, login.get('presented'))}")
    elif isinstance(login, dict):
        lines.append(f"login: {login.get('mode')}")
    lines.append(f"transcript key {p.get('transcript_key')}")
    leftovers = p.get("leftovers_destroyed")
    if isinstance(leftovers, list) and leftovers:
        lines.append(f"destroyed before starting: {_flat(leftovers)}")
    authorization = p.get("authorization")
    if isinstance(authorization, dict):
        signed = [s for s in authorization.get("signatures") or [] if isinstance(s, dict)]
        lines.append(f"script authorization {authorization.get('status')}"
                     + (": signed by " + ", ".join(person(script, s.get("participant"))
                                                    for s in signed) if signed else ""))
    lines += attestation_words(p.get("attestation"))
    # Members this printout does not word yet (a later format version): shown as they are.
    lines += [f"{k}: {_flat(v)}" for k, v in p.items() if k not in _STARTED_WORDED]
    return lines


def attestation_words(record: Any) -> list[str]:
    """An attestation record in words: one line per check, its result, id and sentence."""
    checks = record.get("checks") if isinstance(record, dict) else None
    if not isinstance(checks, list):
        return []
    out = [f"environment attestation: {len(checks)} checks"]
    for c in checks:
        if not isinstance(c, dict):
            continue
        by = ""
        if c.get("waived_by") == "policy":
            by = f" (waived by {', '.join(c.get('approved_by') or [])}: {c.get('reason')})"
        out.append(f"  {c.get('result')} {c.get('id')}: {c.get('sentence')}{by}")
    return out


_STARTED_WORDED = frozenset({"tool", "script_id", "script_version", "script_sha256",
                             "policy_id", "policy_version", "policy_sha256", "rehearsal",
                             "token", "transcript_key", "leftovers_destroyed",
                             "authorization", "attestation"})


def _approval(p: dict[str, Any], script: Script) -> list[str]:
    statement = p.get("statement") if isinstance(p.get("statement"), dict) else {}
    assert isinstance(statement, dict)
    verb = "approved" if statement.get("role") == "custodian" else "acknowledged"
    return [f"{verb} by {person(script, statement.get('participant'))}, signed "
            f"{statement.get('time')}",
            f"bound to step digest {_short(statement.get('step_digest'))} and head "
            f"{_short(statement.get('head'))}; Ed25519 signature verified with their "
            "identity key"]


def _entropy(p: dict[str, Any], script: Script) -> list[str]:
    sources = p.get("sources") if isinstance(p.get("sources"), list) else []
    assert isinstance(sources, list)
    parts = []
    for source in sources:
        if isinstance(source, dict):
            health = source.get("health")
            passed = isinstance(health, dict) and health.get("passed") is True
            parts.append(f"{source.get('source')} {source.get('bytes')} bytes (SP 800-90B "
                         f"health tests {'passed' if passed else 'NOT passed'})")
    return [f"sources: {', '.join(parts) or 'none'}",
            f"combiner {p.get('combiner')}; seed {p.get('seed_bytes')} bytes (never recorded)"]


def _root(p: dict[str, Any], script: Script) -> list[str]:
    lines = [f"{p.get('kind')} key \"{p.get('label')}\", id {p.get('id')}; "
             f"{_flat(p.get('attributes'))}",
             f"fingerprint {_short(p.get('fingerprint'))}",
             f"derivation: {p.get('derivation')}; pairwise check: {p.get('pairwise_check')}"]
    if "wrapped" in p and isinstance(p["wrapped"], dict):
        lines.append(f"wrapped export {p['wrapped'].get('file')}, sha256 "
                     f"{_short(p['wrapped'].get('sha256'))}")
    if "original_ceremony" in p:
        lines.append(f"the root key of ceremony {p.get('original_ceremony')} (head "
                     f"{_short(p.get('original_head'))}), rebuilt from the shares of "
                     + ", ".join(person(script, c.get("participant"))
                                 for c in p.get("contributors") or [] if isinstance(c, dict)))
        lines.append(f"fingerprint check {p.get('fingerprint_check')}; seed check "
                     f"{p.get('seed_check')}")
    return lines


def _shares(p: dict[str, Any], script: Script) -> list[str]:
    groups = p.get("groups") if isinstance(p.get("groups"), list) else []
    assert isinstance(groups, list)
    lines = [f"{p.get('scheme')} share set {p.get('identifier')}: {p.get('group_threshold')} "
             f"of {len(groups)} group(s) ("
             + ", ".join(f"{g.get('threshold')} of {g.get('count')}" for g in groups
                         if isinstance(g, dict)) + ")",
             f"seed fingerprint {_short(p.get('seed_fingerprint'))}"]
    for holder in p.get("holders") or []:
        if isinstance(holder, dict):
            lines.append(f"group {holder.get('group')} member {holder.get('member')}: "
                         f"{person(script, holder.get('participant'))}, commitment "
                         f"{_s(holder.get('commitment'))[:16]}..., delivered to "
                         f"{holder.get('delivered_to')}")
    check = p.get("reconstruction_check")
    if isinstance(check, dict):
        lines.append(f"reconstruction check {check.get('result')}: {check.get('quorums')} "
                     "minimal quorum(s) rebuilt the seed")
    return lines


def _certificate(p: dict[str, Any], script: Script) -> list[str]:
    lines = [f"{p.get('file')}: {p.get('subject')}"]
    if "serial" in p:
        lines.append(f"serial {p.get('serial')}, valid {p.get('not_before')} to "
                     f"{p.get('not_after')} ({p.get('validity_days')} days)")
    lines.append(f"{p.get('signature_algorithm')}, sha256 {_short(p.get('fingerprint'))}; "
                 f"check: {p.get('check')}")
    return lines


def _undone(p: dict[str, Any], script: Script) -> list[str]:
    return [f"reason: {p.get('reason')}",
            f"destroyed on the token: {_flat(p.get('destroyed_objects'))}; share sheets "
            f"removed: {p.get('removed_share_sheets')}; files removed: "
            f"{_flat(p.get('removed_files'))}"]


def _seal(p: dict[str, Any], script: Script) -> list[str]:
    statement = p.get("statement") if isinstance(p.get("statement"), dict) else {}
    assert isinstance(statement, dict)
    signers = "transcript key" + (" and root key (proof of possession)"
                                  if "root_key_signature" in p else "")
    lines = [f"outcome {statement.get('outcome')}: {statement.get('entries')} entries "
             f"before it, up to head {_short(statement.get('head'))}",
             f"signed by the {signers}"]
    witnesses = statement.get("witnesses")
    if isinstance(witnesses, list):
        lines.append("co-signed by the witnesses " + (", ".join(
            f"{person(script, w.get('participant'))} (entry {w.get('seq')})"
            for w in witnesses if isinstance(w, dict)) or "(none)"))
    return lines


DEVIATION_TEXT = {"step-retried": "a step's action run again after it was rolled back",
                  "card-replaced": "a card replaced",
                  "person-substituted": "a person substituted",
                  "other": "another departure from the script"}


def _deviation(p: dict[str, Any], script: Script) -> list[str]:
    quorum = p.get("quorum")
    return [f"DEVIATION from the script: {DEVIATION_TEXT.get(_s(p.get('kind')), p.get('kind'))}",
            f"reason: {p.get('reason')}",
            f"the ceremony went on only after {quorum} custodian approval(s) of it"
            if quorum else "the policy asks for no approval of deviations"]


def _deviation_approved(p: dict[str, Any], script: Script) -> list[str]:
    statement = p.get("statement") if isinstance(p.get("statement"), dict) else {}
    assert isinstance(statement, dict)
    return [f"the deviation at entry {statement.get('seq')} ({statement.get('kind')}) approved "
            f"by {person(script, statement.get('participant'))}, signed "
            f"{statement.get('time')}",
            f"bound to the deviation entry {_short(statement.get('deviation'))} and its "
            "reason; Ed25519 signature verified with their identity key"]


def _seal_witnessed(p: dict[str, Any], script: Script) -> list[str]:
    statement = p.get("statement") if isinstance(p.get("statement"), dict) else {}
    assert isinstance(statement, dict)
    return [f"the seal co-signed by {person(script, statement.get('participant'))}, signed "
            f"{statement.get('time')}",
            f"bound to head {_short(statement.get('head'))} after {statement.get('entries')} "
            f"entries, outcome {statement.get('outcome')}; Ed25519 signature verified with "
            "their identity key"]


_DESCRIBE: dict[str, Describe] = {
    "ceremony.started": _started,
    "ceremony.resumed": lambda p, s: [
        f"resumed after seq {p.get('after_seq')} ({p.get('repaired_bytes')} bytes of an "
        "unfinished line cut)", *(attestation_words(p.get("attestation")) or [
            "the environment was not attested again: no secret may follow"])],
    "step.started": lambda p, s: [
        f"step {int(p.get('index') or 0) + 1}: {p.get('title')}; "
        f"action {p.get('action')}", f"step digest {_short(p.get('step_digest'))}"],
    "approval": _approval,
    "witness.ack": _approval,
    "confirmation": lambda p, s: [f"typed \"{p.get('phrase')}\""],
    "note": lambda p, s: [_s(p.get("text"))],
    "action.started": lambda p, s: [
        f"{p.get('action')}, will create: "
        + (", ".join(f"\"{o.get('label')}\" (id {o.get('id')})"
                     for o in p.get("will_create") or [] if isinstance(o, dict)) or "nothing")],
    "entropy.collected": _entropy,
    "root_key.created": _root,
    "root_key.recovered": _root,
    "share.presented": lambda p, s: [
        f"{person(s, p.get('participant'))} presented the share of group {p.get('group')} "
        f"member {p.get('member')} (commitment {_s(p.get('commitment'))[:16]}... as "
        "recorded); the share itself is never recorded"],
    "shares.created": _shares,
    "certificate.created": _certificate,
    "csr.created": _certificate,
    "action.completed": lambda p, s: [
        f"{p.get('action')} completed; created on the token: {_flat(p.get('created'))}",
        "files: " + (", ".join(f"{name} (sha256 {_s(d)[:16]}...)"
                               for name, d in (p.get("files") or {}).items()) or "none")],
    "action.rolled_back": _undone,
    "ceremony.aborted": _undone,
    "step.completed": lambda p, s: [f"step {int(p.get('index') or 0) + 1} completed"],
    "checkpoint": lambda p, s: [
        f"the transcript key signed the chain up to seq "
        f"{(p.get('statement') or {}).get('seq')}, head "
        f"{_short((p.get('statement') or {}).get('head'))}"],
    "seal": _seal,
    "deviation": _deviation,
    "deviation.approved": _deviation_approved,
    "seal.witnessed": _seal_witnessed,
}


def describe(entry: Entry, script: Script) -> EntryView:
    """An entry in words: who, what, and the payload's essentials (never a secret: the
    transcript holds none)."""
    how = _DESCRIBE.get(entry.event)
    try:
        details = how(entry.payload, script) if how else \
            [f"{k}: {_flat(v)}" for k, v in entry.payload.items()]
    except (AttributeError, TypeError, ValueError):
        # A verified transcript of a later format version with other payload shapes:
        # show the members as they are rather than fail the printout.
        details = [f"{k}: {_flat(v)}" for k, v in entry.payload.items()]
    actor = "engine" if entry.actor == "engine" else person(script, entry.actor)
    return EntryView(entry.seq, entry.time, actor, entry.step, entry.event, tuple(details))
