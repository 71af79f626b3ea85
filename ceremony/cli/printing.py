"""`ceremony print BUNDLE`: the printable transcript of a verified bundle, and the printer.

A bundle made by this version carries its printed transcript inside (``transcript.pdf``,
written by the engine between the seal and the signed checksum list, ADR 16): `print` then
sends or copies that file. For an older bundle the PDF is made now and written next to the
bundle, never inside it: a file added to a sealed bundle is not covered by its signed
checksum list (the transcript key that signed it is destroyed), so `ceremony verify` would
refuse the bundle. `ceremony run` and `ceremony rehearse` call :func:`print_after_seal` once
the bundle is sealed. Failures are CeremonyErrors; cli/main.py maps them to exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceremony.errors import CeremonyError, UsageError
from ceremony.qrframe import SymbolReader

if TYPE_CHECKING:
    from ceremony.printout import Printout

PDF_SUFFIX = ".transcript.pdf"
INSIDE = "transcript.pdf"  # the engine's PRINTED_FILE, the verifier's too


def add_print_parser(sub: Any) -> None:
    """Add `print` to the `ceremony` parser's subcommands."""
    p = sub.add_parser("print", help="the printable transcript of a verified bundle (PDF: "
                       "cover with the digests as hex, words and QR, every entry, signature "
                       "lines); --lp prints it through CUPS")
    p.add_argument("bundle", type=Path)
    p.add_argument("--out", type=Path, help="the PDF file (default: BUNDLE.transcript.pdf "
                   "next to the bundle; never inside a bundle, never over another file)")
    p.add_argument("--lp", action="store_true", help="print it through CUPS `lp`, on the "
                   "default destination (`lpstat -d`) unless --printer names one")
    p.add_argument("--printer", help="the CUPS destination (implies --lp)")


def companion(bundle: Path, suffix: str) -> Path:
    """A file that belongs to ``bundle`` but lives next to it: ``PARENT/NAME<suffix>``."""
    resolved = bundle.resolve()
    return resolved.parent / f"{resolved.name}{suffix}"


def enclosing_bundle(path: Path) -> Path | None:
    """The bundle directory ``path`` would be inside of, if any."""
    for directory in path.resolve().parents:
        if (directory / "transcript.jsonl").is_file() and (directory / "SHA256SUMS").is_file():
            return directory
    return None


def refuse_inside_bundle(path: Path, what: str, requirement: str) -> None:
    inside = enclosing_bundle(path)
    if inside is not None:
        raise UsageError(f"{path} is inside the bundle {inside}: {what} added to a sealed "
                         "bundle is not covered by its signed checksum list, so the bundle "
                         "would no longer verify", hint="write it next to the bundle (the "
                         "default) or elsewhere with --out", requirement=requirement)


def write_printout(bundle: Path, out: Path | None = None,
                   reader: SymbolReader | None = None) -> tuple[Path, Printout, bool]:
    """Verify ``bundle``, lay out its transcript, read every QR back from the rendered
    pages, then write the PDF (atomically). Returns (the PDF's path, the Printout, whether
    it was written: False when the file held exactly these bytes already, read back again).

    A bundle that carries its printout (``BUNDLE/transcript.pdf``, verified with the rest
    of the bundle) is not laid out again: its file is the answer, or is copied to ``out``.
    """
    from ceremony.adapters.printer import read_back_pages
    from ceremony.adapters.transcript_pdf import Rendered, keep, render
    from ceremony.bundlefacts import load_verified
    from ceremony.printout import build_printout

    inside = bundle / INSIDE
    if out is None and inside.is_file():
        printout = build_printout(load_verified(bundle, "so it is not printed"))
        return inside.resolve(), printout, False
    target = out if out is not None else companion(bundle, PDF_SUFFIX)
    refuse_inside_bundle(target, "a printed transcript", "CER-PRINT")
    if target.is_dir():
        raise UsageError(f"{target} is a directory", hint="give --out a file name ending .pdf")
    facts = load_verified(bundle, "so it is not printed")
    printout = build_printout(facts)
    # The bundle's own printout (checked by the verifier: covered, naming this head), or a
    # new one for a bundle made before printouts went inside.
    rendered = Rendered(inside.read_bytes(), 0) if inside.is_file() else render(printout)
    if target.exists():
        if target.is_file() and target.read_bytes() == rendered.pdf:
            read_back_pages(target, rendered.frames, reader)
            return target, printout, False  # printed before: the same bundle, the same bytes
        raise UsageError(f"{target} already exists and is not this bundle's printout; it is "
                         "never overwritten", hint="remove it, or choose another --out")
    keep(rendered, target, target.with_name(f".{target.name}.{os.getpid()}.tmp"), reader)
    return target, printout, True


def _summary(path: Path, printout: Printout, written: bool) -> str:
    from ceremony.display import words

    codes = len(printout.frames())
    kind = ", REHEARSAL" if printout.rehearsal else ""
    verb = "wrote" if written else "unchanged (the same bytes)"
    when = "read back with zbar from the rendered pages"
    if enclosing_bundle(path) is not None:
        verb, when = "the bundle's own", f"{when} when the ceremony made it"
    return (f"{verb} {path}: the transcript of ceremony {printout.ceremony_id} "
            f"({printout.outcome}{kind}), {len(printout.entries)} entries; its {codes} QR "
            f"codes {when}\n"
            f"  transcript head {printout.head}\n  words           {words(printout.head)}")


def cmd_print(args: argparse.Namespace) -> int:
    """`ceremony print`: 0, 1 (the bundle does not verify, a QR does not read back), 2, 3."""
    from ceremony.adapters.printer import default_printer, send

    if not args.bundle.is_dir():
        raise UsageError(f"{args.bundle} is not a bundle directory",
                         hint="give the directory a ceremony wrote (it holds transcript.jsonl)")
    path, printout, written = write_printout(args.bundle, args.out)
    print(_summary(path, printout, written))
    if not (args.lp or args.printer):
        print(f"not sent to a printer: the PDF is {path} (`ceremony print {args.bundle} --lp` "
              "prints it through CUPS)")
        return 0
    printer = args.printer or default_printer()
    if printer is None:
        print(f"no printer is configured (CUPS names no default destination: `lpstat -d`); "
              f"the PDF is {path}")
        return 0
    job = send(path, printer, f"ceremony {printout.ceremony_id} transcript")
    print(f"sent {path} to printer {printer}: {job}")
    return 0


def print_after_seal(bundle: Path) -> int:
    """Write the printable transcript of a just-sealed bundle next to it; the exit code.

    The ceremony is sealed whatever happens here: a failure is reported as one sentence
    saying so, with its own exit code, and `ceremony print BUNDLE` makes the PDF later.
    """
    if (bundle / INSIDE).is_file():
        print(f"printable transcript: {bundle / INSIDE} (inside the bundle, covered by its "
              f"signed checksum list; `ceremony print {bundle} --lp` prints it)")
        return 0
    try:
        path, _, _ = write_printout(bundle)
    except CeremonyError as exc:
        print(f"ceremony: the bundle {bundle} is sealed, but its printable transcript was not "
              f"made: {exc.describe()}\n  then: `ceremony print {bundle}`", file=sys.stderr)
        return exc.kind.value
    print(f"printable transcript: {path} (next to the bundle, outside its signed checksums; "
          f"`ceremony print {bundle} --lp` prints it)")
    return 0
