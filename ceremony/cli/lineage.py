"""`ceremony lineage make|show|verify`: the signed lineage record of a bundle's root key.

The record (``ceremony.lineage``) is written next to the bundle, as ``BUNDLE.lineage.json``
(never inside it: the bundle's signed checksum list could not cover it). Failures are
CeremonyErrors; cli/main.py maps them to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ceremony.errors import DeviceError, UsageError

LINEAGE_SUFFIX = ".lineage.json"


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `lineage make`, `lineage show` and `lineage verify`."""
    lineage = sub.add_parser("lineage", help="the signed lineage record of a root key: "
                             "its ceremonies back to the seed, its lifecycle state"
                             ).add_subparsers(dest="lineage_command", required=True,
                                              parser_class=parser_class)
    p = lineage.add_parser("make", help="make and sign the lineage record of a verified, "
                           "completed bundle (BUNDLE.lineage.json next to it)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--card", action="append", default=[], metavar="ID",
                   help="a custodian signs with their OpenPGP card (repeatable; the PIN is "
                   "typed for each)")
    p.add_argument("--reader", help="PC/SC reader for --card (default: the one with a card)")
    p.add_argument("--identity", action="append", default=[], metavar="ID=FILE",
                   help="a custodian's rehearsal identity key file (rehearsal bundles only)")
    p.add_argument("--identities", type=Path, metavar="DIR",
                   help="every signer's rehearsal key file DIR/ID.pem found there (a "
                   "rehearsal's OUT/secret/identities; rehearsal bundles only)")
    p.add_argument("--previous", type=Path, metavar="FILE", help="for a recovery: the "
                   "original ceremony's lineage record, which the new one embeds")
    p.add_argument("--out", type=Path, help="the record file (default: BUNDLE.lineage.json; "
                   "never inside a bundle, never over another file)")
    for name, text in (("show", "print a lineage record and its chain (not verified)"),
                       ("verify", "verify a lineage record and every link of its chain "
                                  "against the bundles (exit 1 naming the broken link)")):
        p = lineage.add_parser(name, help=text)
        p.add_argument("path", type=Path, metavar="FILE|BUNDLE", help="a lineage record, or "
                       "a bundle directory (its BUNDLE.lineage.json)")
        if name == "verify":
            p.add_argument("--bundle", type=Path, help="the bundle of the record's ceremony "
                           "(default: the directory the file name names, next to it)")


def cmd_lineage(args: argparse.Namespace) -> int:
    if args.lineage_command == "make":
        return _make(args)
    if args.lineage_command == "show":
        return _show(args)
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
    signers = _signers(args, facts.script, facts.rehearsal)
    document = make(facts, signers, previous)
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


def _show(args: argparse.Namespace) -> int:
    from ceremony.lineage import describe

    path, _ = _record_and_bundle(args.path, None)
    print(describe(_read(path)))
    print(f"not verified here: `ceremony lineage verify {path}` checks every link against "
          "its bundle")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ceremony.display import words
    from ceremony.lineage import verify_chain

    path, bundle = _record_and_bundle(args.path, args.bundle)
    document = _read(path)
    if bundle is None:
        raise UsageError(f"no bundle to verify {path} against", hint="pass --bundle BUNDLE, "
                         "the bundle of the record's ceremony")
    links = verify_chain(document, bundle)
    key = document["record"]["key"]
    print(f"VERIFIED lineage of root key {key['fingerprint']}\n"
          f"  words: {words(key['fingerprint'])}\n"
          f"  state: {document['record']['lifecycle']['state']}; {len(links)} link(s), each "
          "checked against its verified bundle:")
    for link in links:
        kind = link.kind if link.kind == "creation" else f"{link.kind} of link {link.number - 1}"
        print(f"  {link.number}. {kind}: ceremony {link.ceremony}"
              f"{' (REHEARSAL)' if link.rehearsal else ''}, head {link.head}\n"
              f"       bundle {link.bundle}; signed by {', '.join(link.signed_by)} "
              f"({link.threshold} needed)")
    return 0
