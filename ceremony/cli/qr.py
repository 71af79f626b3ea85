"""`ceremony qr encode` and `ceremony qr decode`: public material as QR parts, and back.

The format is docs/qr-format.md (``ceremony.qrframe``); images are drawn and read back by
``ceremony.adapters.qrcodes``. Failures are CeremonyErrors; cli/main.py maps them to exit
codes. Heavy imports (qrcode, Pillow) happen inside the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ceremony.errors import DeviceError, InputError, UsageError
from ceremony.qrframe import (
    CHUNK_BYTES,
    MAX_PARTS,
    MAX_PAYLOAD,
    QR_ERROR_CORRECTION,
    TYPES,
    Payload,
    check_content,
    infer_kind,
    name_files,
)

PayloadCheck = Callable[[Payload, str], None]

# Black on white (basic SGR colours, which every terminal has): the drawing's blocks are
# the dark modules, and a scanner needs the light quiet zone around them.
_INK = "\x1b[30;47m"
_RESET = "\x1b[0m"


def add_qr_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `qr encode` and `qr decode` to the `ceremony` parser's subcommands."""
    qr = sub.add_parser("qr", help="QR codes for public material leaving the room "
                        "(docs/qr-format.md)").add_subparsers(
        dest="qr_command", required=True, parser_class=parser_class)
    p = qr.add_parser("encode", help="write a public file (PEM, JSON, text) as numbered QR "
                      "parts, each read back with zbar")
    p.add_argument("file", type=Path)
    p.add_argument("--out", type=Path, help="directory for the parts, STEM-qr-I-of-N.png "
                   "(never overwritten)")
    p.add_argument("--type", choices=sorted(TYPES), help="the payload type (default: "
                   "from the content: PEM, else JSON, else text)")
    p.add_argument("--svg", action="store_true", help="also write each part as SVG")
    p.add_argument("--show", action="store_true", help="draw the parts on the terminal "
                   "(77 columns each)")
    p = qr.add_parser("decode", help="reassemble a payload from QR images in any order, "
                      "check its digest and write it out")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    p.add_argument("--out", type=Path, help="directory to write the payload into (default: "
                   "print it)")
    p.add_argument("--all", action="store_true", help="the images hold several payloads (a "
                   "rendered page of a printed transcript): reassemble, check and write "
                   "each one (needs --out)")


def cmd_qr(args: argparse.Namespace) -> int:
    """`ceremony qr encode` / `ceremony qr decode`; returns 0 or raises a CeremonyError."""
    if args.qr_command == "encode":
        return _encode(args)
    return _decode(args)


def _read_input(path: Path) -> bytes:
    if not path.is_file():
        raise UsageError("no such file" if not path.exists() else "is not a file",
                         file=str(path))
    size = path.stat().st_size
    if size > MAX_PAYLOAD:
        raise InputError(f"is {size} bytes, more than the {MAX_PAYLOAD} bytes ({MAX_PARTS} "
                         f"parts of {CHUNK_BYTES}) the QR format carries", file=str(path),
                         hint="QR codes are for keys, certificates, CSRs and records")
    data = path.read_bytes()
    if not data:
        raise InputError("is empty: there is nothing to encode", file=str(path))
    return data


def _encode(args: argparse.Namespace) -> int:
    if args.out is None and not args.show:
        raise UsageError("nothing to do: give --out DIR to write the parts, --show to "
                         "draw them, or both")
    data = _read_input(args.file)
    kind = args.type or infer_kind(data)
    if kind is None:
        raise InputError("is not PEM, JSON or UTF-8 text: QR codes carry public text "
                         "material only", file=str(args.file))
    check_content(kind, data, str(args.file))
    payload = Payload(kind, data)

    from ceremony.adapters.qrcodes import (
        ZbarReader,
        read_back,
        render_terminal,
        symbol,
        write_parts,
    )
    from ceremony.display import words

    frames = payload.frames()
    files: list[Path] = []
    if args.out is not None:
        reader = ZbarReader()  # before writing anything: no zbar, no parts
        stem = args.file.name.split(".")[0] or "payload"
        files = write_parts(payload, args.out, stem, svg=args.svg)
        try:
            for suffix in (".png", ".svg"):
                group = [f for f in files if f.suffix == suffix]
                if group:
                    read_back(group, payload, reader)
        except BaseException:
            for path in files:
                path.unlink(missing_ok=True)
            raise
    version = max(symbol(frame).version for frame in frames)
    count = f"{len(frames)} QR part{'s' if len(frames) > 1 else ''}"
    print(f"{args.file}: {kind}, {len(data)} bytes, {count} (QR version {version}, level "
          f"{QR_ERROR_CORRECTION})\n  sha256 {payload.digest}\n  words  "
          f"{words(payload.digest)}")
    if files:
        print("wrote, and read back with zbar:")
        for path in files:
            print(f"  {path}")
    if args.show:
        tty = sys.stdout.isatty()
        for i, frame in enumerate(frames, 1):
            drawing = render_terminal(frame)
            if tty:
                drawing = "\n".join(f"{_INK}{line}{_RESET}" for line in drawing.split("\n"))
            print(f"\npart {i} of {len(frames)}, sha256 {payload.digest[:16]}...\n{drawing}")
    return 0


def _lineage_check(payload: Payload, sources: str) -> None:
    """A lineage record (docs/print-and-lineage.md) is well formed and every link's
    signatures verify under the keys it lists; its bundles are checked by `lineage verify`."""
    if payload.kind != "json":
        return
    import json

    from ceremony.lineage import chain, check_signatures, is_lineage, shape_problem

    value = json.loads(payload.data)
    if not is_lineage(value):
        return
    problem = shape_problem(value, "")
    if problem:
        raise InputError(f"holds a lineage record that is not well formed: {problem}",
                         file=sources, hint="scan the parts again from the original")
    for number, document in enumerate(chain(value), start=1):
        check_signatures(document, f"{sources}: lineage link {number}")


def payload_checks() -> Sequence[PayloadCheck]:
    """Checks a decoded payload must pass before it is written out: a lineage record's
    signatures (a CheckFailed naming the images)."""
    return (_lineage_check,)


def _decode(args: argparse.Namespace) -> int:
    from ceremony.adapters.qrcodes import decode_images

    if args.all:
        return _decode_all(args)
    payload = decode_images(args.images)
    sources = name_files(str(p) for p in args.images)
    check_content(payload.kind, payload.data, sources)
    for check in payload_checks():
        check(payload, sources)
    if args.out is None:
        sys.stdout.buffer.write(payload.data)
        sys.stdout.buffer.flush()
        return 0
    _write(args.out, payload)
    return 0


def _decode_all(args: argparse.Namespace) -> int:
    """Every payload the images hold, each reassembled and checked on its own, then all
    written (nothing is written unless every one passes)."""
    from ceremony.adapters.qrcodes import scan_images
    from ceremony.qrframe import Part, reassemble

    if args.out is None:
        raise UsageError("--all writes each payload to its own file", hint="give --out DIR")
    groups: dict[str, list[tuple[str, str]]] = {}
    for source, text in scan_images(args.images):
        groups.setdefault(Part.parse(text, source).digest, []).append((source, text))
    payloads = []
    for pairs in groups.values():
        payload = reassemble(pairs)
        sources = name_files(dict.fromkeys(source for source, _ in pairs))
        check_content(payload.kind, payload.data, sources)
        for check in payload_checks():
            check(payload, sources)
        payloads.append(payload)
    for payload in payloads:
        _write(args.out, payload)
    return 0


def _write(out: Path, payload: Payload) -> None:
    from ceremony.display import words

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a directory", hint="give --out a directory")
    target = out / payload.filename()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as handle:
            handle.write(payload.data)
    except FileExistsError as exc:
        raise UsageError(f"{target} already exists; decoded payloads are never "
                         "overwritten", hint="choose another --out directory") from exc
    except OSError as exc:
        raise DeviceError(f"cannot write {target}: {exc.strerror or exc}",
                          hint="check the --out directory is writable") from exc
    print(f"wrote {target}: {payload.kind}, {len(payload.data)} bytes\n  sha256 "
          f"{payload.digest}\n  words  {words(payload.digest)}")
