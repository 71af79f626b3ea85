"""The QR viewer: a sealed bundle's public material as terminal QR codes, one part a page.

Opened with ``r`` on the sealed screen of ``ceremony run`` and in ``ceremony replay``. It
shows, read-only, the QR parts (docs/qr-format.md) of the root public key, the root
certificate and CSR when the bundle has them, the transcript head and the seal line, each
part drawn in half blocks by ``ceremony.adapters.qrcodes.render_terminal`` (what
``ceremony qr encode --show`` prints). A version 13 part is 77 columns wide and 39 lines
high, so it fits 80 columns; a window shorter than the part scrolls, and the viewer says so.

``bundle_codes`` and ``pages`` are UI-free: which payloads a bundle offers, and their parts.
Only public material is offered: a PEM file whose blocks are not public keys, certificates
or CSRs is left out (CER-NO-SECRET), as is one too large for the format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from ceremony.errors import CeremonyError
from ceremony.model.certificate import CERTIFICATE_FILE, CSR_FILE
from ceremony.printout import head_payload
from ceremony.qrframe import Payload

ROOT_PEM_FILE = "root-public-key.pem"
TRANSCRIPT_FILE = "transcript.jsonl"
REHEARSAL_MARKER = b"REHEARSAL"
PUBLIC_LABELS = frozenset({"PUBLIC KEY", "CERTIFICATE", "CERTIFICATE REQUEST"})
_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# Dark modules are the block glyphs: black on white, as scanners expect.
INK = "#000000 on #ffffff"


@dataclass(frozen=True)
class Code:
    """One payload the viewer offers: what it is, and its bytes."""

    title: str
    payload: Payload


@dataclass(frozen=True)
class Page:
    """One QR part on the screen."""

    title: str
    index: int  # the part's number, 1 .. total
    total: int
    frame: str
    digest: str  # the payload's SHA-256, lower-case hex


def _public_pem(data: bytes) -> bytes | None:
    """The PEM a public file's QR parts carry (a rehearsal's marker line left out, as the
    engine's parts in BUNDLE/qr do), or None when it is not public PEM."""
    if data.startswith(REHEARSAL_MARKER):
        data = data.split(b"\n", 1)[1] if b"\n" in data else b""
    labels = _BEGIN.findall(data)
    if not labels or any(label.decode() not in PUBLIC_LABELS for label in labels):
        return None
    return data


def _seal_line(bundle: Path) -> bytes | None:
    """The transcript's last line, exactly as written, when it is a seal."""
    try:
        lines = (bundle / TRANSCRIPT_FILE).read_bytes().split(b"\n")
    except OSError:
        return None
    raw = next((line for line in reversed(lines) if line.strip()), b"")
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return raw if isinstance(entry, dict) and entry.get("event") == "seal" else None


def bundle_codes(bundle: Path, ceremony_id: str | None) -> tuple[list[Code], list[str]]:
    """The payloads a bundle offers as QR codes, and a note for each file left out.

    In order: the root public key, the root certificate, the CSR (each when the bundle has
    it), the transcript head (a text payload, as on the printed cover) and the seal line (a
    JSON payload whose parts' digest is the transcript head).
    """
    codes: list[Code] = []
    notes: list[str] = []
    for name, title in ((ROOT_PEM_FILE, "Root public key"),
                        (CERTIFICATE_FILE, "Root certificate"),
                        (CSR_FILE, "Root CSR")):
        try:
            data = (bundle / name).read_bytes()
        except OSError:
            continue
        pem = _public_pem(data)
        if pem is None:
            notes.append(f"{name} is not shown: it is not a public key, certificate or CSR "
                         "in PEM")
            continue
        codes.append(Code(f"{title} ({name})", Payload("pem", pem)))
    seal = _seal_line(bundle)
    if seal is not None:
        head = sha256(seal).hexdigest()
        if ceremony_id is not None:
            codes.append(Code(f"Transcript head {head[:16]}...", head_payload(ceremony_id,
                                                                               head)))
        codes.append(Code("Seal line (its SHA-256 is the head)",
                          Payload("json", seal)))
    return codes, notes


def pages(codes: list[Code]) -> tuple[list[Page], list[str]]:
    """Every part of every payload, in order; a payload too large for the format is noted."""
    out: list[Page] = []
    notes: list[str] = []
    for code in codes:
        try:
            parts = code.payload.parts()
        except CeremonyError as exc:
            notes.append(f"{code.title} is not shown: {exc.message}")
            continue
        out.extend(Page(code.title, p.index, p.total, p.frame(), p.digest) for p in parts)
    return out, notes


class QrViewer(Screen[None]):
    """Read-only: one QR part a page; left/right (or n/p) page, Esc closes."""

    DEFAULT_CSS = """
    QrViewer { layout: vertical; }
    QrViewer #qr-head { height: auto; padding: 0 1; }
    QrViewer #qr-scroll { height: 1fr; }
    QrViewer #qr-code { width: auto; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,n", "page(1)", "Next part", priority=True),
        Binding("left,p", "page(-1)", "Previous part", priority=True),
        Binding("i", "invert", "Invert"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, bundle: Path, ceremony_id: str | None, *, note: str = "") -> None:
        super().__init__()
        codes, skipped = bundle_codes(bundle, ceremony_id)
        self.pages, too_large = pages(codes)
        self.notes = [note, *skipped, *too_large] if note else [*skipped, *too_large]
        self.index = 0
        self.inverted = False

    def compose(self) -> ComposeResult:
        yield Static(id="qr-head")
        with VerticalScroll(id="qr-scroll"):
            yield Static(id="qr-code")
        yield Footer()

    def on_mount(self) -> None:
        self._show()
        self.query_one("#qr-scroll", VerticalScroll).focus()

    def on_resize(self) -> None:
        self._show()

    def _show(self) -> None:
        from ceremony.adapters.qrcodes import render_terminal

        head = Text()
        for note in self.notes:
            head.append(f"{note}\n", style="bold")
        code = self.query_one("#qr-code", Static)
        if not self.pages:
            head.append("This bundle has no public material to show as QR codes.")
            code.update("")
            self.query_one("#qr-head", Static).update(head)
            return
        page = self.pages[self.index]
        drawing = render_terminal(page.frame, invert=self.inverted)
        height = drawing.count("\n") + 1
        head.append(f"{page.title}: part {page.index} of {page.total}", style="bold")
        head.append(f"  (code {self.index + 1} of {len(self.pages)}, ←/→)\n"
                    f"sha256 {page.digest[:16]}...")
        window = self.app.size.height - 4  # the two header lines, notes aside, and the footer
        if height > window - len(self.notes):
            head.append(f"  {height} lines, taller than the window: scroll ↑/↓",
                        style="bold")
        self.query_one("#qr-head", Static).update(head)
        code.update(Text(drawing, style=INK, no_wrap=True, overflow="crop"))

    def action_page(self, delta: int) -> None:
        if self.pages:
            self.index = (self.index + delta) % len(self.pages)
            self._show()
            self.query_one("#qr-scroll", VerticalScroll).scroll_home(animate=False)

    def action_invert(self) -> None:
        """Draw the light modules as the glyphs instead: for a terminal that ignores the
        colours (NO_COLOR) and draws glyphs light on dark."""
        self.inverted = not self.inverted
        self._show()

    def action_close(self) -> None:
        self.dismiss()
