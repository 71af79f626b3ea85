"""The printed transcript as a PDF (fpdf2): cover, every entry, signature lines.

What it shows is decided by ``ceremony.printout``; this module only lays it out on A4 with
fpdf2's built-in fonts. QR symbols come from ``ceremony.adapters.qrcodes`` and are drawn as
vector squares (no image, no interpolation), 0.55 mm or more per module, so a page rendered
at 200 dpi, or a printed page scanned, reads back with zbar. Every page carries the
ceremony id, the transcript head and "page x of y" in its footer; a rehearsal's every page
has the REHEARSAL watermark (drawn in strokes, as on the share sheets, so it does not mix
into the page's text) and says REHEARSAL in its header and footer.

The same printout gives the same bytes: the creation date is the seal's time.

:class:`BundlePrinter` is the engine's ``TranscriptPrinter`` port: it prints a just-sealed
transcript into its own bundle, before the checksum list is signed (ADR 16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF

from ceremony.adapters.qrcodes import modules
from ceremony.adapters.sharesheets import _latin1, _watermark
from ceremony.canonical import sha256_hex
from ceremony.display import grouped_hex
from ceremony.errors import DeviceError
from ceremony.printout import Digest, EntryView, Printout
from ceremony.qrframe import SymbolReader

LEFT = 15.0  # mm; A4 is 210 x 297
WIDTH = 180.0
TOP = 14.0
BOTTOM = 20.0  # the automatic page break keeps this much free for the footer
FOOTER_Y = 284.0
WAIVER_LINE = 3.2  # mm: each waived attestation check, above the footer of every page
QR_SIZE = 40.0  # one code: a version 10 symbol (65 modules with its quiet zone), 0.62 mm
QR_GAP = 5.0
PART_GAP = 3.0
MIN_MODULE = 0.55  # mm: the smallest module drawn (4.3 px at 200 dpi)


@dataclass
class Rendered:
    """The PDF and, per page, the QR frames drawn on it (for the read-back)."""

    pdf: bytes
    pages: int
    frames: dict[int, list[str]] = field(default_factory=dict)


def render(printout: Printout) -> Rendered:
    """Lay the printout out; return the PDF bytes and where each QR frame was drawn."""
    pdf = _Document(printout)
    pdf.set_creation_date(printout.created)
    pdf.set_title(_latin1(f"Ceremony transcript {printout.ceremony_id}"))
    pdf.set_subject(f"transcript head {printout.head}")
    pdf.set_creator("ceremony")
    pdf.set_margins(LEFT, TOP, LEFT)
    pdf.set_auto_page_break(True, BOTTOM + WAIVER_LINE * len(printout.waivers))
    pdf.alias_nb_pages()
    pdf.add_page()
    _cover(pdf, printout)
    pdf.add_page()
    _entries(pdf, printout.entries)
    _signatures(pdf, printout)
    return Rendered(bytes(pdf.output()), pdf.page_no(), pdf.frames)


class _Document(FPDF):
    def __init__(self, printout: Printout) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.printout = printout
        self.frames: dict[int, list[str]] = {}

    def header(self) -> None:
        p = self.printout
        if p.rehearsal:
            _watermark(self)
        if self.page_no() == 1:
            return
        self.set_font("Helvetica", "B", 8)
        self.set_xy(LEFT, 8)
        self.cell(WIDTH / 2, 4, _latin1(f"Ceremony transcript - {p.ceremony_id}"))
        self.cell(WIDTH / 2, 4, "REHEARSAL" if p.rehearsal else p.outcome, align="R")
        self.set_line_width(0.2)
        self.line(LEFT, 12.5, LEFT + WIDTH, 12.5)
        self.set_xy(LEFT, TOP)

    def footer(self) -> None:
        p = self.printout
        self.set_font("Helvetica", "B", 6.8)
        for i, text in enumerate(p.waivers):  # every page names every waiver (CER-ATTEST)
            self.set_xy(LEFT, FOOTER_Y - 1.5 - WAIVER_LINE * (len(p.waivers) - i))
            self.cell(WIDTH, WAIVER_LINE, _latin1(text[:160]), align="L")
        self.set_line_width(0.2)
        self.line(LEFT, FOOTER_Y - 1.5, LEFT + WIDTH, FOOTER_Y - 1.5)
        self.set_xy(LEFT, FOOTER_Y)
        self.set_font("Helvetica", "", 6.8)
        prefix = "REHEARSAL - " if p.rehearsal else ""
        self.cell(WIDTH, 3.5, _latin1(f"{prefix}ceremony {p.ceremony_id} - transcript head "
                                      f"{p.head} - page {self.page_no()} of {{nb}}"),
                  align="C")


def _line(pdf: FPDF, height: float, text: str, *, size: float = 9, style: str = "",
          font: str = "Helvetica", indent: float = 0.0) -> None:
    pdf.set_font(font, style, size)
    pdf.set_x(LEFT + indent)
    pdf.multi_cell(WIDTH - indent, height, _latin1(text), align="L", new_x="LMARGIN",
                   new_y="NEXT")


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(2)
    _line(pdf, 6, text, size=11, style="B")
    pdf.set_line_width(0.3)
    pdf.line(LEFT, pdf.get_y(), LEFT + WIDTH, pdf.get_y())
    pdf.ln(1.5)


def draw_qr(pdf: _Document, frame: str, x: float, y: float, size: float) -> None:
    """One QR symbol, quiet zone included, as dark squares merged into runs per row."""
    matrix = modules(frame)
    module = size / len(matrix)
    if module < MIN_MODULE:
        raise ValueError(f"a QR module of {module:.2f} mm is too small to read back")
    pdf.set_fill_color(0)
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            pdf.rect(x + start * module, y + r * module, (c - start) * module, module,
                     style="F")
    pdf.frames.setdefault(pdf.page_no(), []).append(frame)


# ------------------------------------------------------------------ the cover


def _cover(pdf: _Document, p: Printout) -> None:
    if p.rehearsal:
        pdf.set_font("Helvetica", "B", 12)
        pdf.set_fill_color(0)
        pdf.set_text_color(255)
        pdf.cell(WIDTH, 8, "REHEARSAL - NOT A PRODUCTION CEREMONY - ITS KEY PROTECTS NOTHING",
                 align="C", fill=True, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0)
        pdf.ln(2)
    _line(pdf, 8, "CEREMONY TRANSCRIPT", size=18, style="B")
    _line(pdf, 5, f"{p.ceremony_id}: {p.title}", size=10)
    pdf.ln(1)
    for label, value in p.facts:
        y = pdf.get_y()
        pdf.set_font("Helvetica", "B", 8.5)
        pdf.cell(26, 4.4, label)
        pdf.set_xy(LEFT + 26, y)
        pdf.set_font("Helvetica", "", 8.5)
        pdf.multi_cell(WIDTH - 26, 4.4, _latin1(value), align="L", new_x="LMARGIN",
                       new_y="NEXT")
    _heading(pdf, "Participants")
    widths = (48.0, 20.0, 24.0, WIDTH - 92.0)
    pdf.set_font("Helvetica", "B", 8.5)
    for width, title in zip(widths, ("Name", "Id", "Role", "Signed in the transcript"),
                            strict=True):
        pdf.cell(width, 4.6, title)
    pdf.ln(4.6)
    for person in p.people:
        y = pdf.get_y()
        pdf.set_font("Helvetica", "", 8.5)
        for width, text in zip(widths[:3], (person.name, person.participant, person.role),
                               strict=True):
            pdf.cell(width, 4.4, _latin1(text))
        pdf.set_xy(LEFT + sum(widths[:3]), y)
        pdf.multi_cell(widths[3], 4.4, _latin1(person.did), align="L", new_x="LMARGIN",
                       new_y="NEXT")
    _heading(pdf, "Digests to compare (hex, words to read aloud, QR to scan)")
    singles = [d for d in p.digests if len(d.payload.frames()) == 1]
    for i in range(0, len(singles), 2):
        _digest_pair(pdf, singles[i:i + 2])
    for digest in p.digests:
        if digest not in singles:
            _digest_parts(pdf, digest)


def _text(pdf: FPDF, x: float, width: float, height: float, value: str, size: float,
          style: str = "", font: str = "Helvetica") -> None:
    pdf.set_font(font, style, size)
    pdf.set_x(x)
    pdf.multi_cell(width, height, _latin1(value), align="L", new_x="LEFT", new_y="NEXT")


COLUMN = (WIDTH - QR_GAP) / 2


def _digest_pair(pdf: _Document, pair: list[Digest]) -> None:
    """One or two single-part digests side by side: text on the left, QR on the right."""
    if pdf.get_y() + QR_SIZE + 8 > pdf.page_break_trigger:
        pdf.add_page()
    top, bottom = pdf.get_y(), pdf.get_y() + QR_SIZE
    for i, d in enumerate(pair):
        x = LEFT + i * (COLUMN + QR_GAP)
        width = COLUMN - QR_SIZE - 3
        pdf.set_xy(x, top)
        _text(pdf, x, width, 5, d.title, 10, "B")
        groups = grouped_hex(d.hex).split()
        for row in range(0, 16, 4):
            _text(pdf, x, width, 4.2, " ".join(groups[row:row + 4]), 9, "B", "Courier")
        _text(pdf, x, width, 4.4, d.words, 9, "B")
        for note in d.notes:
            _text(pdf, x, width, 3.3, note, 6.8)
        bottom = max(bottom, pdf.get_y())
        draw_qr(pdf, d.payload.frames()[0], x + COLUMN - QR_SIZE, top, QR_SIZE)
    pdf.set_xy(LEFT, bottom + 4)


def _digest_parts(pdf: _Document, d: Digest) -> None:
    """A multi-part digest: text across the page, then its parts in rows."""
    frames = d.payload.frames()
    size = _part_size(frames)
    per_row = _per_row(size)
    rows = _rows(len(frames), per_row)
    if pdf.get_y() + 28 + rows * (size + 4) > pdf.page_break_trigger:
        pdf.add_page()
    _text(pdf, LEFT, WIDTH, 5, d.title, 10, "B")
    groups = grouped_hex(d.hex).split()
    _text(pdf, LEFT, WIDTH, 4.4, " ".join(groups), 9, "B", "Courier")
    _text(pdf, LEFT, WIDTH, 4.6, d.words, 9.5, "B")
    for note in d.notes:
        _text(pdf, LEFT, WIDTH, 3.5, note, 7.2)
    y = pdf.get_y() + 1.5
    for i, frame in enumerate(frames):
        row, column = divmod(i, per_row)
        x = LEFT + column * (size + PART_GAP)
        draw_qr(pdf, frame, x, y + row * (size + 4), size)
        pdf.set_font("Helvetica", "", 6.5)
        pdf.set_xy(x, y + row * (size + 4) + size - 0.5)
        pdf.cell(size, 3, f"part {i + 1} of {len(frames)}", align="C")
    pdf.set_xy(LEFT, y + rows * (size + 4) + 2)


def _part_size(frames: list[str]) -> float:
    """Parts of a multi-part payload: four in a row where their modules stay at least
    MIN_MODULE wide, fewer and larger otherwise."""
    widest = max(len(modules(f)) for f in frames)
    return max((WIDTH - 3 * PART_GAP) / 4, widest * MIN_MODULE)


def _per_row(size: float) -> int:
    return max(1, int((WIDTH + PART_GAP) // (size + PART_GAP)))


def _rows(count: int, per_row: int = 4) -> int:
    return -(-count // per_row)


# ------------------------------------------------------------------ the entries


def _entries(pdf: _Document, entries: tuple[EntryView, ...]) -> None:
    _heading(pdf, "Transcript entries (every entry of transcript.jsonl, in order)")
    _line(pdf, 3.8, "seq, time (UTC), event, actor and step; then what the entry records. "
          "Approvals and acknowledgements name the person whose identity key signed them.",
          size=7.5)
    pdf.ln(1)
    for view in entries:
        _entry(pdf, view)


_DETAIL_INDENT = 12.0
_DETAIL_HEIGHT = 3.6


def _entry(pdf: _Document, v: EntryView) -> None:
    pdf.set_font("Helvetica", "", 7.8)
    lines = 0
    for detail in v.details:
        found = pdf.multi_cell(WIDTH - _DETAIL_INDENT, _DETAIL_HEIGHT, _latin1(detail),
                               dry_run=True, output="LINES")
        lines += len(found) if isinstance(found, list) else 1
    height = 5.0 + lines * _DETAIL_HEIGHT + 1.5
    if pdf.get_y() + height > pdf.page_break_trigger and height < 200:
        pdf.add_page()
    pdf.set_font("Helvetica", "B", 8.5)
    pdf.cell(_DETAIL_INDENT, 4.6, f"#{v.seq}")
    pdf.set_font("Courier", "", 7)
    pdf.cell(40, 4.6, f"{v.time[:10]} {v.time[11:26]}")
    pdf.set_font("Helvetica", "B", 8.5)
    pdf.cell(36, 4.6, v.event)
    pdf.set_font("Helvetica", "", 8.5)
    where = f" - step {v.step}" if v.step else ""
    pdf.multi_cell(WIDTH - _DETAIL_INDENT - 76, 4.6, _latin1(f"{v.actor}{where}"), align="L",
                   new_x="LMARGIN", new_y="NEXT")
    for detail in v.details:
        _line(pdf, _DETAIL_HEIGHT, detail, size=7.8, indent=_DETAIL_INDENT)
    pdf.ln(0.6)
    pdf.set_draw_color(190)
    pdf.set_line_width(0.1)
    pdf.line(LEFT, pdf.get_y(), LEFT + WIDTH, pdf.get_y())
    pdf.set_draw_color(0)
    pdf.ln(0.9)


# ------------------------------------------------------------------ signatures


def _signatures(pdf: _Document, p: Printout) -> None:
    needed = 30 + 17 * len(p.people)
    if pdf.get_y() + needed > pdf.page_break_trigger:
        pdf.add_page()
    _heading(pdf, "Signatures")
    _line(pdf, 4.2, f"By signing, I confirm that I was present at ceremony {p.ceremony_id} "
          "and that this printed transcript is a true record of what I saw. Before signing, "
          "compare the transcript head on every page with the one the administrator reads "
          "aloud from `ceremony verify`.", size=8.5)
    pdf.ln(3)
    for person in p.people:
        if pdf.get_y() + 17 > pdf.page_break_trigger:
            pdf.add_page()
        pdf.ln(9)
        y = pdf.get_y()
        pdf.set_line_width(0.3)
        pdf.line(LEFT, y, LEFT + 105, y)
        pdf.line(LEFT + 120, y, LEFT + WIDTH, y)
        pdf.set_xy(LEFT, y + 0.8)
        pdf.set_font("Helvetica", "", 8)
        pdf.cell(105, 3.6, _latin1(f"{person.name} ({person.participant}), {person.role}"))
        pdf.set_xy(LEFT + 120, y + 0.8)
        pdf.cell(WIDTH - 120, 3.6, "Date")
        pdf.set_xy(LEFT, y + 5)


# ------------------------------------------------------------------ writing it


def keep(rendered: Rendered, target: Path, temporary: Path,
         reader: SymbolReader | None = None) -> None:
    """Write ``rendered`` to ``temporary``, read every page's QR codes back from it, then
    rename it to ``target`` (durably). Nothing is left when the read-back or a write fails.
    """
    from ceremony.adapters.printer import read_back_pages

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with temporary.open("xb") as handle:
            handle.write(rendered.pdf)
            handle.flush()
            os.fsync(handle.fileno())
        read_back_pages(temporary, rendered.frames, reader)
        os.replace(temporary, target)
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise DeviceError(f"cannot write {target}: {exc.strerror or exc}",
                          hint="check that the directory is writable") from exc
    finally:
        temporary.unlink(missing_ok=True)


class BundlePrinter:
    """The printed transcript inside a just-sealed bundle (the engine's TranscriptPrinter).

    The bundle is checked by the verifier first (every step but the checksum list, which
    is signed after this file exists), so what is printed rests on a verified transcript.
    """

    def __init__(self, reader: SymbolReader | None = None) -> None:
        self.reader = reader

    def write(self, bundle: Path, name: str) -> str:
        from ceremony.bundlefacts import load_verified
        from ceremony.printout import build_printout

        temporary = bundle / f".{name}.tmp"
        temporary.unlink(missing_ok=True)  # left by a crash: it must not be checksummed
        facts = load_verified(bundle, "so its transcript is not printed", sealing=True)
        rendered = render(build_printout(facts))
        target = bundle / name
        if not (target.is_file() and target.read_bytes() == rendered.pdf):
            keep(rendered, target, temporary, self.reader)
        return sha256_hex(rendered.pdf)
