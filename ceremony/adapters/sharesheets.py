"""Share sheets in a secret directory the operator names (never the bundle).

Each share gets two files with the same stem, ``share-CEREMONY-PARTICIPANT-gGmM``:

* ``.txt``: the words numbered one a line, with the group and member, the ceremony and the
  key the share protects (what tests and scripts read back);
* ``.pdf``: one printable A4 page for the custodian: who it is for, the ceremony, the key's
  label and fingerprint (hex and words), the share-set identifier, group and member with
  their thresholds, the words numbered in columns in a large monospace font, how to keep and
  check the share, and a line for the custodian's signature. A rehearsal sheet carries a
  REHEARSAL banner and watermark.

Both files are 0600 in a 0700 directory and fsynced (and so is the directory). Nothing but
this one share is on either file. The engine passes in ``context``: ``ceremony``,
``rehearsal``, ``key_label`` and, where it has them, ``fingerprint`` (the root public key's
SHA-256, hex), ``identifier`` (the share-set identifier, checked against the share's own) and
``created`` (the ceremony clock, datetime or ISO 8601: the PDF's creation date, so the same
inputs give the same bytes). The share-set identifier, group count and thresholds are read
from the SLIP-39 share itself.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fpdf import FPDF

# The PDF's creation date when the context gives none: fixed, so output stays deterministic.
FIXED_CREATION_DATE = datetime(2000, 1, 1, tzinfo=UTC)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class _Sheet:
    """What one share sheet shows (all public except ``words``)."""

    stem: str
    participant: str
    name: str
    ceremony: str
    key_label: str
    fingerprint: str | None
    identifier: int | None
    group: int
    group_count: int | None
    group_threshold: int | None
    member: int
    member_threshold: int | None
    rehearsal: bool
    created: datetime | None
    words: list[str]


class ShareSheetDirectory:
    def __init__(self, directory: Path, ceremony_id: str) -> None:
        self.directory = directory
        self.ceremony_id = ceremony_id
        self.prefix = f"share-{ceremony_id}-"

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        sheet = self._sheet(participant, name, group, member, mnemonic, context)
        # Render first: a PDF failure leaves no half-written pair behind.
        text = _text_sheet(sheet).encode()
        pdf = _pdf_sheet(sheet)
        self._private_directory()
        for suffix, data in ((".txt", text), (".pdf", pdf)):
            _write_private(self.directory / (sheet.stem + suffix), data)
        _fsync_directory(self.directory)
        return f"share sheet {sheet.stem}.txt and .pdf"

    def remove_all(self) -> list[str]:
        """Remove both files of every sheet; return one entry per sheet (its file stem)."""
        removed: set[str] = set()
        if self.directory.is_dir():
            for path in sorted(self.directory.glob(self.prefix + "*")):
                path.unlink()
                removed.add(path.stem)
            if removed:
                _fsync_directory(self.directory)
        return sorted(removed)

    def _private_directory(self) -> None:
        """The directory, 0700, and any parent it needs, made 0700 too (mkdir's parents=True
        would make those with the umask's permissions)."""
        missing = []
        path = self.directory
        while not path.exists():
            missing.append(path)
            path = path.parent
        for path in reversed(missing):
            path.mkdir(mode=0o700, exist_ok=True)
            path.chmod(0o700)
        if stat.S_IMODE(self.directory.stat().st_mode) != 0o700:
            self.directory.chmod(0o700)  # a secret directory is the operator's alone

    def _sheet(self, participant: str, name: str, group: int, member: int, mnemonic: str,
               context: dict[str, Any]) -> _Sheet:
        import shamir_mnemonic

        words = mnemonic.split()
        try:
            share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
        except shamir_mnemonic.MnemonicError:
            share = None
        identifier = share.identifier if share else None
        given = context.get("identifier")
        if given is not None:
            if identifier is not None and int(given) != identifier:
                raise ValueError("the share-set identifier given for the sheet is not the "
                                 "share's own")
            identifier = int(given)
        fingerprint = re.sub(r"[\s:]", "", str(context.get("fingerprint") or "")).lower() or None
        if fingerprint is not None and not _HEX64.fullmatch(fingerprint):
            raise ValueError("the fingerprint given for the sheet is not 64 hex digits")
        return _Sheet(
            stem=f"{self.prefix}{participant}-g{group}m{member}", participant=participant,
            name=name, ceremony=str(context.get("ceremony") or self.ceremony_id),
            key_label=str(context.get("key_label") or ""), fingerprint=fingerprint,
            identifier=identifier, group=group,
            group_count=share.group_count if share else None,
            group_threshold=share.group_threshold if share else None, member=member,
            member_threshold=share.member_threshold if share else None,
            rehearsal=bool(context.get("rehearsal")), created=_created(context.get("created")),
            words=words)


def _created(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an earlier file of that name may be wider
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _text_sheet(sheet: _Sheet) -> str:
    body = []
    if sheet.rehearsal:
        body.append("REHEARSAL: not a real share\n")
    body += [f"SLIP-39 share for {sheet.name} ({sheet.participant})\n",
             f"ceremony: {sheet.ceremony}\n",
             f"protects: {sheet.key_label}\n"]
    if sheet.fingerprint:
        body.append(f"fingerprint: {sheet.fingerprint}\n")
    if sheet.identifier is not None:
        body.append(f"share set: {sheet.identifier}\n")
    body.append(f"group {sheet.group}, member {sheet.member}, {len(sheet.words)} words\n\n")
    body += [f"{i:>2}. {word}\n" for i, word in enumerate(sheet.words, start=1)]
    return "".join(body)


# ------------------------------------------------------------------------- the PDF page

_LEFT = 15.0  # mm; A4 is 210 x 297
_WIDTH = 180.0
_FOOTER = 287.0  # the footer line's top


_PLAIN = {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Ħ": "H", "ħ": "h", "ı": "i", "Œ": "OE",
          "œ": "oe", "Ŀ": "L", "ŀ": "l"}


def _latin1(text: str) -> str:
    """What the PDF's built-in fonts can show: Latin-1 as it is, other letters without
    their accents (ő -> o, Ł -> L), anything else as '?'. The text sheet keeps the exact
    name; the custodian's id is printed beside it."""
    out = []
    for char in text:
        if ord(char) < 256:
            out.append(char)
            continue
        base = unicodedata.normalize("NFKD", _PLAIN.get(char, char))
        out.append(base.encode("ascii", "ignore").decode() or "?")
    return "".join(out)


def _word_form(fingerprint: str) -> str | None:
    from ceremony.display import words

    try:
        return words(fingerprint)
    except (RuntimeError, ValueError):
        return None


def _columns(count: int) -> int:
    """4 columns, or 3 where that fills the grid exactly (33 words: 3 x 11)."""
    return 3 if count % 4 and count % 3 == 0 else 4


def _pdf_sheet(sheet: _Sheet) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(sheet.created or FIXED_CREATION_DATE)
    pdf.set_title(_latin1(f"Share sheet {sheet.stem}"))
    pdf.set_creator("ceremony")
    pdf.set_auto_page_break(False)
    pdf.set_margins(_LEFT, 12)
    pdf.add_page()
    if sheet.rehearsal:
        _watermark(pdf)
    _header(pdf, sheet)
    _facts(pdf, sheet)
    _words(pdf, sheet.words)
    _instructions(pdf, sheet)
    _signature(pdf, sheet)
    return bytes(pdf.output())


# REHEARSAL in strokes on a 4 x 6 grid (y down), drawn as lines rather than text so that it
# marks the printed page without mixing into the text a PDF reader extracts.
_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "R": [[(0, 6), (0, 0), (3, 0), (4, 1), (4, 2), (3, 3), (0, 3)], [(2, 3), (4, 6)]],
    "E": [[(4, 0), (0, 0), (0, 6), (4, 6)], [(0, 3), (3, 3)]],
    "H": [[(0, 0), (0, 6)], [(4, 0), (4, 6)], [(0, 3), (4, 3)]],
    "A": [[(0, 6), (2, 0), (4, 6)], [(0.67, 4), (3.33, 4)]],
    "S": [[(4, 1), (3, 0), (1, 0), (0, 1), (0, 2), (1, 3), (3, 3), (4, 4), (4, 5), (3, 6),
           (1, 6), (0, 5)]],
    "L": [[(0, 0), (0, 6), (4, 6)]],
}


def _watermark(pdf: FPDF) -> None:
    word, unit, cx, cy = "REHEARSAL", 4.4, 105.0, 160.0
    left = cx - (len(word) * 6 - 2) * unit / 2
    top = cy - 3 * unit
    from fpdf.enums import StrokeCapStyle, StrokeJoinStyle

    with pdf.local_context(draw_color=(228, 228, 228), line_width=3.2,
                           stroke_cap_style=StrokeCapStyle.ROUND,
                           stroke_join_style=StrokeJoinStyle.ROUND), pdf.rotation(55, cx, cy):
        for i, letter in enumerate(word):
            for stroke in _STROKES[letter]:
                pdf.polyline([(left + (i * 6 + x) * unit, top + y * unit) for x, y in stroke])


def _header(pdf: FPDF, sheet: _Sheet) -> None:
    if sheet.rehearsal:
        pdf.set_font("Helvetica", "B", 14)
        pdf.set_fill_color(0)
        pdf.set_text_color(255)
        pdf.cell(_WIDTH, 9, "REHEARSAL - NOT A REAL SHARE - PROTECTS NOTHING", align="C",
                 fill=True, new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0)
        pdf.ln(2)
    pdf.set_font("Helvetica", "B", 18)
    pdf.cell(_WIDTH, 9, "SLIP-39 SHARE SHEET", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(_WIDTH, 5, "SECRET: for the named custodian only. Keep sealed.",
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_line_width(0.4)
    pdf.line(_LEFT, pdf.get_y(), _LEFT + _WIDTH, pdf.get_y())
    pdf.ln(3)


def _facts(pdf: FPDF, sheet: _Sheet) -> None:
    from ceremony.display import grouped_hex

    rows: list[tuple[str, str, bool]] = [  # label, value, monospace
        ("Custodian", f"{sheet.name} (id {sheet.participant})", False),
        ("Ceremony", sheet.ceremony, False),
        ("Key", sheet.key_label, False),
    ]
    if sheet.fingerprint:
        hex_groups = grouped_hex(sheet.fingerprint).split()
        rows.append(("Fingerprint", " ".join(hex_groups[:8]), True))
        rows.append(("", " ".join(hex_groups[8:]), True))
        word_form = _word_form(sheet.fingerprint)
        if word_form:
            rows.append(("As words", word_form, False))
    else:
        rows.append(("Fingerprint", "not given to this sheet: read it from the bundle "
                     "(ceremony verify BUNDLE)", False))
    rows.append(("Share set", "unknown" if sheet.identifier is None
                 else f"identifier {sheet.identifier}", False))
    group = f"group {sheet.group}"
    if sheet.group_count is not None and sheet.group_threshold is not None:
        group += f" of {sheet.group_count}"
        if sheet.group_count > 1:
            group += (f" (any {sheet.group_threshold} of the {sheet.group_count} groups "
                      "are needed)")
    rows.append(("Group", group, False))
    member = f"member {sheet.member}"
    if sheet.member_threshold is not None:
        needed = sheet.member_threshold
        member += (f" (any {needed} members of this group are needed)" if needed > 1
                   else " (this group needs only 1 member's share)")
    rows.append(("Member", member, False))
    if sheet.created is not None:
        rows.append(("Written", sheet.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                     False))
    for label, value, mono in rows:
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(30, 5.5, label)
        pdf.set_font("Courier" if mono else "Helvetica", "B" if mono else "", 10)
        pdf.multi_cell(_WIDTH - 30, 5.5, _latin1(value), align="L", new_x="LMARGIN",
                       new_y="NEXT")
    pdf.ln(2)


def _words(pdf: FPDF, words: list[str]) -> None:
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(_WIDTH, 7, f"Your share: {len(words)} words, in order (read down each column)",
             new_x="LMARGIN", new_y="NEXT")
    columns = _columns(len(words))
    rows = -(-len(words) // columns)
    top = pdf.get_y() + 1
    height = 8.0 if rows > 9 else 9.5
    pdf.set_line_width(0.3)
    pdf.rect(_LEFT, top, _WIDTH, rows * height + 4)
    # "NN. " and up to 8 letters (the longest SLIP-39 word): 12 Courier characters, each
    # 0.6 em wide, in a column of 59 mm (3 columns) or 44 mm (4 columns).
    pdf.set_font("Courier", "B", 16 if columns == 3 else 14)
    width = (_WIDTH - 6) / columns
    for i, word in enumerate(words):
        column, row = divmod(i, rows)
        pdf.set_xy(_LEFT + 3 + column * width, top + 2 + row * height)
        pdf.cell(width, height, f"{i + 1:>2}. {word}")
    pdf.set_xy(_LEFT, top + rows * height + 7)


def _instructions(pdf: FPDF, sheet: _Sheet) -> None:
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(_WIDTH, 6, "Keeping this share", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    lines = [
        "Keep this sheet sealed in its envelope, stored where agreed at the ceremony, "
        "apart from every other custodian's sheet.",
        "Never photograph, scan or copy it, and never type the words into a device that is "
        "or will be online. Nobody needs to see it to check it.",
        _quorum_line(sheet),
        "To check it later, alone, on an offline machine with the public bundle: run "
        "'ceremony shares check BUNDLE' and type the words when asked. It says whether the "
        "share is intact, without showing or storing it.",
        "If this sheet is lost, damaged or may have been seen by someone else, tell the "
        "ceremony's administrator at once.",
    ]
    if sheet.rehearsal:
        lines.insert(0, "REHEARSAL: this share protects nothing; shred it after the "
                        "rehearsal.")
    for line in lines:
        pdf.cell(5, 4.4, "-")
        pdf.multi_cell(_WIDTH - 5, 4.4, line, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)


def _quorum_line(sheet: _Sheet) -> str:
    if sheet.group_threshold == 1 and sheet.member_threshold == 1:
        return ("This share alone can rebuild the key: guard it as you would the key "
                "itself.")
    return ("This share alone reveals nothing about the key; a quorum of shares (see Group "
            "and Member above) rebuilds it.")


def _signature(pdf: FPDF, sheet: _Sheet) -> None:
    pdf.set_font("Helvetica", "", 10)
    pdf.cell(_WIDTH, 6, "I received this share privately and checked that every word is "
             "legible.", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(8)
    y = pdf.get_y()
    pdf.set_line_width(0.3)
    pdf.line(_LEFT, y, _LEFT + 110, y)
    pdf.line(_LEFT + 125, y, _LEFT + _WIDTH, y)
    pdf.set_font("Helvetica", "", 8.5)
    pdf.set_xy(_LEFT, y + 1)
    pdf.cell(110, 4, "Custodian's signature")
    pdf.set_xy(_LEFT + 125, y + 1)
    pdf.cell(_WIDTH - 125, 4, "Date")
    if y + 5 > _FOOTER:
        raise ValueError("the share sheet does not fit on one page (a very long name or "
                         "label?)")
    pdf.set_font("Helvetica", "", 7.5)
    pdf.set_xy(_LEFT, _FOOTER)
    footer = f"{sheet.stem} - page 1 of 1"
    if sheet.rehearsal:
        footer = "REHEARSAL - " + footer
    pdf.cell(_WIDTH, 4, _latin1(footer), align="C")
