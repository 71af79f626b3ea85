"""`ceremony lineage make|show|verify|event|compromise`: the signed lineage record of a
bundle's root key, and its lifecycle events.

The record (``ceremony.lineage``) is written next to the bundle, as ``BUNDLE.lineage.json``
(never inside it: the bundle's signed checksum list could not cover it); its signed
lifecycle events are appended next to it, to ``BUNDLE.lineage.events.jsonl`` (ADR 14).
`lineage compromise --drill` rehearses the response to a compromised key in a directory of
its own. Failures are CeremonyErrors; cli/main.py maps them to exit codes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceremony.errors import DeviceError, UsageError

LINEAGE_SUFFIX = ".lineage.json"
DRILL_SUFFIX = ".compromise-drill"


def _now() -> datetime:
    """The workstation's clock (tests replace it with a fixed one)."""
    return datetime.now(UTC)


def _signer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--card", action="append", default=[], metavar="ID",
                   help="a custodian signs with their OpenPGP card (repeatable; the PIN is "
                   "typed for each)")
    p.add_argument("--reader", help="PC/SC reader for --card (default: the one with a card)")
    p.add_argument("--identity", action="append", default=[], metavar="ID=FILE",
                   help="a custodian's rehearsal identity key file (rehearsal bundles only)")
    p.add_argument("--identities", type=Path, metavar="DIR",
                   help="every signer's rehearsal key file DIR/ID.pem found there (a "
                   "rehearsal's OUT/secret/identities; rehearsal bundles only)")


def _previous_bundle_argument(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--previous-bundle", action="append", default=[], type=Path,
                   metavar="BUNDLE", help="the bundle of the key a rotation replaced, whose "
                   "record the chain embeds (a rotation's bundle does not carry it); one for "
                   f"each rotation of the chain, newest first{default}")


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `lineage make`, `lineage show` and `lineage verify`."""
    lineage = sub.add_parser("lineage", help="the signed lineage record of a root key: "
                             "its ceremonies back to the seed, its lifecycle state"
                             ).add_subparsers(dest="lineage_command", required=True,
                                              parser_class=parser_class)
    p = lineage.add_parser("make", help="make and sign the lineage record of a verified, "
                           "completed bundle (BUNDLE.lineage.json next to it)")
    p.add_argument("bundle", type=Path)
    _signer_arguments(p)
    p.add_argument("--previous", type=Path, metavar="FILE", help="for a recovery: the "
                   "original ceremony's lineage record; for a rotation (a script with "
                   "[previous]): the replaced key's record; the new one embeds it")
    _previous_bundle_argument(p, " (default: the bundle next to the --previous file)")
    p.add_argument("--out", type=Path, help="the record file (default: BUNDLE.lineage.json; "
                   "never inside a bundle, never over another file)")
    for name, text in (("show", "print a lineage record and its chain (not verified)"),
                       ("verify", "verify a lineage record and every link of its chain "
                                  "against the bundles (exit 1 naming the broken link)")):
        p = lineage.add_parser(name, help=text)
        p.add_argument("path", type=Path, metavar="FILE|BUNDLE", help="a lineage record, or "
                       "a bundle directory (its BUNDLE.lineage.json)")
        p.add_argument("--bundle", type=Path, help="the bundle of the record's ceremony "
                       "(default: the directory the file name names, next to it)")
        if name == "verify":
            _previous_bundle_argument(p, "")
    from ceremony.lineage import EVENT_STATES

    p = lineage.add_parser("event", help="append a lifecycle event (activation, rotation-due, "
                           "suspension, deactivation, revocation, compromise, destruction) "
                           "to a record, signed by the quorum the policy names")
    p.add_argument("path", type=Path, metavar="FILE|BUNDLE", help="a lineage record, or "
                   "a bundle directory (its BUNDLE.lineage.json)")
    p.add_argument("event", choices=tuple(EVENT_STATES), metavar="EVENT",
                   help=f"one of {', '.join(EVENT_STATES)}")
    p.add_argument("--reason", required=True, help="why, in one line (recorded and signed; "
                   "never a secret)")
    p.add_argument("--bundle", type=Path, help="the bundle of the record's ceremony "
                   "(default: the directory the file name names, next to it)")
    _previous_bundle_argument(p, "")
    _signer_arguments(p)
    p = lineage.add_parser("compromise", help="the response to a compromised key, as a "
                           "drill: a drill compromise event, what to revoke, what depends on "
                           "the key, the replacement ceremony's script (DIR, never a token)")
    p.add_argument("path", type=Path, metavar="FILE|BUNDLE", help="the key's lineage record, "
                   "or its bundle (its record is made in the drill if there is none)")
    p.add_argument("--drill", action="store_true", help="rehearse the response (required: "
                   "a real compromise is `ceremony lineage event RECORD compromise`)")
    p.add_argument("--bundle", type=Path, help="the bundle of the record's ceremony "
                   "(default: the directory the file name names, next to it)")
    _previous_bundle_argument(p, "")
    p.add_argument("--bundles", type=Path, metavar="DIR", help="where to look for bundles, "
                   "certificates and lineage records that depend on the key (default: the "
                   "directory that holds the bundle)")
    p.add_argument("--reason", default="compromise drill", help="the drill's scenario, in one "
                   "line")
    p.add_argument("--out", type=Path, help="the drill's directory (default: "
                   f"BUNDLE{DRILL_SUFFIX} next to the bundle; never overwritten)")
    _signer_arguments(p)


def cmd_lineage(args: argparse.Namespace) -> int:
    if args.lineage_command == "make":
        return _make(args)
    if args.lineage_command == "show":
        return _show(args)
    if args.lineage_command == "event":
        return _event(args)
    if args.lineage_command == "compromise":
        return _compromise(args)
    return _verify(args)


def _read(path: Path) -> dict[str, Any]:
    from ceremony.lineage import parse

    if not path.is_file():
        raise UsageError("no such file" if not path.exists() else "is not a file",
                         file=str(path))
    return parse(path.read_bytes(), str(path))


def _record_and_bundle(path: Path, bundle: Path | None) -> tuple[Path, Path | None]:
    """(the record file, its bundle) from FILE|BUNDLE and --bundle."""
    from ceremony.cli.printing import companion

    if path.is_dir():
        if not (path / "transcript.jsonl").is_file():
            raise UsageError(f"{path} is not a bundle directory", hint="give a lineage record "
                             "file, or the bundle directory whose record is next to it")
        return companion(path, LINEAGE_SUFFIX), bundle or path
    if bundle is None and path.name.endswith(LINEAGE_SUFFIX):
        candidate = path.parent / path.name[: -len(LINEAGE_SUFFIX)]
        bundle = candidate if candidate.is_dir() else None
    return path, bundle


def _signers(args: argparse.Namespace, script: Any, rehearsal: bool) -> list[Any]:
    from ceremony.adapters.identity import KeyFileSigner
    from ceremony.lineage import signing_rule

    files: dict[str, Path] = {}
    for item in args.identity:
        who, sep, name = item.partition("=")
        if not sep or not who or not name:
            raise UsageError(f"--identity {item!r} is not ID=FILE")
        files[who] = Path(name)
    if args.identities is not None:
        if not args.identities.is_dir():
            raise UsageError(f"{args.identities} is not a directory")
        _, eligible = signing_rule(script)
        for person in eligible:
            found = args.identities / f"{person.id}.pem"
            if found.is_file():
                files.setdefault(person.id, found)
    if files and not rehearsal:
        raise UsageError("plain identity key files are allowed only for a rehearsal's bundle",
                         hint="sign with the custodians' cards (--card ID)",
                         requirement="CER-IDENTITY")
    signers: list[Any] = [KeyFileSigner.load(who, path) for who, path in files.items()]
    for who in args.card:
        signers.append(_card_signer(who, script, args.reader, several=len(args.card) > 1))
    if not signers:
        raise UsageError("no signer given", hint="--card ID for each custodian signing (or, "
                         "for a rehearsal, --identities OUT/secret/identities)")
    return signers


def _card_signer(who: str, script: Any, reader: str | None, *, several: bool) -> Any:
    from ceremony.adapters.openpgp_card import CardSigner
    from ceremony.cli.login import read_pin

    person = script.participant(who)
    if person is None:
        raise UsageError(f"--card {who}: {who} is not a participant of the bundle's script")

    class _Asking(CardSigner):
        def sign(self, message: bytes) -> bytes:
            if several and sys.stdin.isatty():
                input(f"insert the card of {person.name} ({who}) and press Enter ")
            return super().sign(message)

    return _Asking(who, lambda: read_pin(None, f"PIN of {person.name}'s card"),
                   reader=reader, public_key=person.public_key_bytes)


def _write_new(target: Path, data: bytes) -> bool:
    """Write ``data`` to a new file; True if written, False if it held exactly that."""
    if target.exists():
        if target.is_file() and target.read_bytes() == data:
            return False
        raise UsageError(f"{target} already exists; a lineage record is never overwritten",
                         hint="remove it, or choose another --out")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise DeviceError(f"cannot write {target}: {exc.strerror or exc}",
                          hint="check that the directory is writable") from exc
    return True


def _make(args: argparse.Namespace) -> int:
    from ceremony.bundlefacts import load_verified
    from ceremony.cli.printing import companion, refuse_inside_bundle
    from ceremony.display import words
    from ceremony.lineage import encode, make, signing_rule

    if not args.bundle.is_dir():
        raise UsageError(f"{args.bundle} is not a bundle directory",
                         hint="give the directory a ceremony wrote (it holds transcript.jsonl)")
    target = args.out or companion(args.bundle, LINEAGE_SUFFIX)
    refuse_inside_bundle(target, "a lineage record", "CER-LINEAGE")
    facts = load_verified(args.bundle, "so its lineage is not recorded")
    previous = _read(args.previous) if args.previous is not None else None
    earlier = list(args.previous_bundle)
    if not earlier and args.previous is not None and facts.script.previous is not None:
        _, beside = _record_and_bundle(args.previous, None)
        earlier = [beside] if beside is not None else []
    signers = _signers(args, facts.script, facts.rehearsal)
    document = make(facts, signers, previous, earlier)
    written = _write_new(target, encode(document))
    record = document["record"]
    step, eligible = signing_rule(facts.script)
    who = ", ".join(s["participant"] for s in document["signatures"])
    print(f"{'wrote' if written else 'unchanged'} {target}: the lineage record of root key "
          f"{record['key']['fingerprint']}\n"
          f"  words: {words(record['key']['fingerprint'])}\n"
          f"  ceremony {facts.ceremony_id} ({record['ceremony']['kind']}"
          f"{', REHEARSAL' if facts.rehearsal else ''}), state {record['lifecycle']['state']}"
          f", {len(_chain(document))} link(s) back to the seed's ceremony\n"
          f"  signed by {who} ({step.approvals} of {', '.join(p.id for p in eligible)} "
          f"needed)\n"
          f"  as QR codes: `ceremony qr encode {target} --out DIR`")
    return 0


def _chain(document: dict[str, Any]) -> list[dict[str, Any]]:
    from ceremony.lineage import chain

    return chain(document)


def _policy_of(bundle: Path | None) -> Any:
    """The policy of the record's ceremony (``BUNDLE/policy.toml``), or None without one."""
    from ceremony.model.policy import parse_policy
    from ceremony.verify.core import POLICY_FILE

    if bundle is None or not (bundle / POLICY_FILE).is_file():
        return None
    return parse_policy((bundle / POLICY_FILE).read_bytes().decode("utf-8"),
                        str(bundle / POLICY_FILE))


def _show(args: argparse.Namespace) -> int:
    from ceremony.lineage import describe, describe_events, load_events, rotation_due

    path, bundle = _record_and_bundle(args.path, args.bundle)
    document = _read(path)
    events = load_events(path)
    policy = _policy_of(bundle)
    rotation = rotation_due(document, policy, events, now=_now()) if policy else None
    print(describe(document))
    print(describe_events(document, events, rotation))
    if policy is None:
        print("rotation: unknown here (no bundle next to the record, whose policy has the "
              "cadence; pass --bundle)")
    print(f"not verified here: `ceremony lineage verify {path}` checks every link against "
          "its bundle, and every lifecycle event")
    return 0


def _verified(path: Path, bundle: Path | None, now: datetime, earlier: list[Path]
              ) -> tuple[dict[str, Any], list[dict[str, Any]], Any, list[Any], list[Any]]:
    """(record, events, policy, links, checked events) of a record verified against its
    bundle (and ``earlier``, the bundles of the keys its rotations replaced), every link
    and every event (exit 1 naming the first broken one)."""
    from ceremony.lineage import load_events, verify_chain, verify_events

    document = _read(path)
    if bundle is None:
        raise UsageError(f"no bundle to verify {path} against", hint="pass --bundle BUNDLE, "
                         "the bundle of the record's ceremony")
    links = verify_chain(document, bundle, earlier)
    events = load_events(path)
    policy = _policy_of(bundle)
    checked = verify_events(document, events, policy, now=now)
    return document, events, policy, links, checked


def _verify(args: argparse.Namespace) -> int:
    from ceremony.display import words
    from ceremony.lineage import current_state, rotation_due

    path, bundle = _record_and_bundle(args.path, args.bundle)
    now = _now()
    document, events, policy, links, checked = _verified(path, bundle, now,
                                                         args.previous_bundle)
    key = document["record"]["key"]
    print(f"VERIFIED lineage of root key {key['fingerprint']}\n"
          f"  words: {words(key['fingerprint'])}\n"
          f"  state: {current_state(document, events)}; {len(links)} link(s), each "
          "checked against its verified bundle:")
    for link in links:
        kind = link.kind if link.kind == "creation" else f"{link.kind} of link {link.number - 1}"
        print(f"  {link.number}. {kind}: ceremony {link.ceremony}"
              f"{' (REHEARSAL)' if link.rehearsal else ''}, head {link.head}\n"
              f"       bundle {link.bundle}; signed by {', '.join(link.signed_by)} "
              f"({link.threshold} needed)")
    print(f"  {len(checked)} lifecycle event(s), each signed by the policy's quorum, chained "
          "and allowed by NIST SP 800-57:")
    for item, e in zip(checked, events, strict=True):
        print(f"  event {item.seq}. {item.time} {item.event}: {e['event']['from']} to "
              f"{item.state}; signed by {', '.join(item.signed_by)} ({item.threshold} "
              "needed)")
    print(f"  {rotation_due(document, policy, events, now=now).describe()}")
    return 0


def _one_line(text: str, what: str) -> str:
    from ceremony.lineage import MAX_REASON

    if not text.strip() or len(text) > MAX_REASON or not text.isprintable():
        raise UsageError(f"{what} must be one printable line of 1 to {MAX_REASON} characters",
                         hint="say why in a short sentence (never a secret: it is signed "
                              "and published)")
    return text


def _append(target: Path, line: bytes) -> None:
    """Append one event line to the events file (made if missing), flushed to disk."""
    try:
        with target.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise DeviceError(f"cannot write {target}: {exc.strerror or exc}",
                          hint="check that the directory is writable") from exc


def _event(args: argparse.Namespace) -> int:
    from ceremony.display import words
    from ceremony.lineage import (
        current_state,
        encode_event,
        events_path,
        make_event,
        rotation_due,
    )
    from ceremony.model.script import parse_script
    from ceremony.transcript import format_time
    from ceremony.verify.core import SCRIPT_FILE

    reason = _one_line(args.reason, "--reason")
    path, bundle = _record_and_bundle(args.path, args.bundle)
    now = _now()
    document, events, policy, _, _ = _verified(path, bundle, now, args.previous_bundle)
    assert bundle is not None and policy is not None
    script = parse_script((bundle / SCRIPT_FILE).read_bytes().decode("utf-8"), SCRIPT_FILE)
    rehearsal = bool(document["record"]["ceremony"]["rehearsal"])
    signers = _signers(args, script, rehearsal)
    new = make_event(document, events, args.event, reason, format_time(now), signers, policy)
    target = events_path(path)
    _append(target, encode_event(new))
    e = new["event"]
    events.append(new)
    who = ", ".join(s["participant"] for s in new["signatures"])
    print(f"appended event {e['seq']} to {target}: {e['event']} of root key {e['key']}\n"
          f"  words: {words(e['key'])}\n"
          f"  {e['from']} to {e['state']} at {e['time']}: {reason}\n"
          f"  signed by {who} ({e['quorum']['threshold']} needed: {e['quorum']['rule']})")
    for fingerprint in e["revokes"]:
        print(f"  revokes the certificate with sha256 {fingerprint}")
    print(f"  state now: {current_state(document, events)}; "
          f"{rotation_due(document, policy, events, now=now).describe()}")
    return 0


def _compromise(args: argparse.Namespace) -> int:
    """The compromise drill: everything goes to a new directory, made whole or not at all."""
    import json

    from ceremony.bundlefacts import load_verified
    from ceremony.cli.printing import companion, refuse_inside_bundle
    from ceremony.display import words
    from ceremony.drill import dependents, replacement_script
    from ceremony.lineage import (
        current_state,
        encode,
        encode_event,
        events_path,
        make,
        make_event,
        verify_chain,
    )
    from ceremony.model.script import parse_script
    from ceremony.transcript import format_time
    from ceremony.verify.core import POLICY_FILE, SCRIPT_FILE

    if not args.drill:
        raise UsageError("`lineage compromise` runs only as a drill (--drill)",
                         hint="record a real compromise with `ceremony lineage event RECORD "
                              "compromise --reason ...`, signed by the policy's quorum")
    reason = _one_line(args.reason, "--reason")
    path, bundle = _record_and_bundle(args.path, args.bundle)
    if bundle is None:
        raise UsageError(f"no bundle for {path}", hint="pass --bundle BUNDLE, the bundle of "
                         "the record's ceremony")
    out = args.out or companion(bundle, DRILL_SUFFIX)
    if out.exists():
        raise UsageError(f"{out} already exists; a drill never overwrites",
                         hint="remove it, or choose another --out")
    refuse_inside_bundle(out, "a compromise drill", "CER-LIFECYCLE")
    search = args.bundles or bundle.resolve().parent
    if not search.is_dir():
        raise UsageError(f"--bundles {search} is not a directory")
    now = _now()
    facts = load_verified(bundle, "so the drill does not start")
    signers = _signers(args, facts.script, facts.rehearsal)
    if path.is_file():
        document, events, policy, links, _ = _verified(path, bundle, now,
                                                       args.previous_bundle)
        made = False
    else:
        if facts.original is not None or facts.script.previous is not None:
            raise UsageError(f"{path} does not exist, and the lineage record of a recovery "
                             "or a rotation embeds the record before it", hint="make it "
                             "first with `ceremony lineage make BUNDLE --previous RECORD`")
        document, events, policy = make(facts, signers), [], facts.policy
        links, made = verify_chain(document, bundle), True
    record = document["record"]
    key = record["key"]["fingerprint"]
    drill_event = make_event(document, events, "compromise", f"DRILL: {reason}",
                             format_time(now), signers, policy, drill=True)
    found = dependents(key, search)
    # The ceremony that made this key: the last link that is not a recovery of it.
    creation = next(link.bundle for link in reversed(links) if link.kind != "recovery")
    script_text = (creation / SCRIPT_FILE).read_bytes().decode("utf-8")
    base = parse_script(script_text, str(creation / SCRIPT_FILE))
    skeleton = replacement_script(script_text, base, key, drill=True,
                                  reported=drill_event["event"]["time"])
    new_script = parse_script(skeleton, "replacement/script.toml")

    try:
        out.resolve().parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.resolve().parent))
    except OSError as exc:
        raise DeviceError(f"cannot write the drill to {out}: {exc.strerror or exc}",
                          hint="check that the directory is writable") from exc
    try:
        (tmp / "lineage.json").write_bytes(encode(document))
        events_file = events_path(tmp / "lineage.json")
        events_file.write_bytes(b"".join(encode_event(e) for e in [*events, drill_event]))
        (tmp / "replacement").mkdir()
        (tmp / "replacement" / SCRIPT_FILE).write_text(skeleton)
        shutil.copyfile(creation / POLICY_FILE, tmp / "replacement" / POLICY_FILE)
        listing = {"drill": True, "key": key, "ceremony": record["ceremony"]["id"],
                   "event": drill_event["event"], "dependents": [d.to_dict() for d in found]}
        (tmp / "dependents.json").write_text(json.dumps(listing, indent=2) + "\n")
        e = drill_event["event"]
        who = ", ".join(s["participant"] for s in drill_event["signatures"])
        certificates = [d for d in found if d.kind in ("certificate", "csr")]
        lines = [
            f"compromise drill of root key {key}",
            f"  words: {words(key)}",
            f"  ceremony {record['ceremony']['id']}"
            f"{' (REHEARSAL)' if record['ceremony']['rehearsal'] else ''}, state "
            f"{current_state(document, events)}; nothing real changes: no token is touched "
            "and the key's own record and events are left as they are",
            f"  written to {out}",
            f"1. the compromise, recorded as a drill event: event {e['seq']} ({e['from']} to "
            f"{e['state']}) at {e['time']}, signed by {who} ({e['quorum']['threshold']} "
            f"needed: {e['quorum']['rule']})",
            f"     {out / events_file.name}"
            + (f" (the record was made for the drill: {out / 'lineage.json'})" if made else ""),
            f"2. revoke: root key {key} is compromised; revoke every certificate of it "
            f"({len(certificates)} found) and take its token out of service:"]
        lines += [f"     {d.kind} {d.path}: {d.relation}; {d.action}" for d in certificates] \
            or ["     no certificate or CSR of the key was found"]
        others = [d for d in found if d not in certificates]
        lines.append(f"3. what else depends on the key ({len(others)} found under {search}, "
                     "besides the certificates above):")
        lines += [f"     {d.kind} {d.path} (ceremony {d.ceremony}"
                  f"{'' if d.verified else ', UNVERIFIED'}): {d.relation}; {d.action}"
                  for d in others] or ["     nothing found"]
        target = out / "replacement" / SCRIPT_FILE
        lines += [
            f"4. the replacement ceremony: {target}",
            f"     ceremony {new_script.ceremony_id}, version {new_script.version}, [previous] "
            f"names root key {key}; its policy is {out / 'replacement' / POLICY_FILE}",
            f"     rehearse it: `ceremony lint {target}`, then `ceremony run {target} "
            "--rehearsal --out DIR` on a throwaway SoftHSM2 token (README: A first look)",
            "the real response: `ceremony lineage event RECORD compromise --reason ... --card "
            "ID ...` with the policy's quorum, revoke what step 2 lists, destroy the key, "
            "and run the replacement ceremony"]
        report = "\n".join(f"DRILL  {line}" for line in lines) + "\n"
        (tmp / "DRILL.txt").write_text(report)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DeviceError(f"cannot write the drill to {out}: {exc.strerror or exc}",
                          hint="check that the directory is writable") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(report, end="")
    return 0
