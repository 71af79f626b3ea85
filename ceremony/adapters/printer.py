"""The printer and the page read-back: CUPS ``lp``/``lpstat``, poppler's ``pdftoppm``, zbar.

A printed transcript counts as made only once every QR code drawn on it reads back: each
page that carries codes is rendered with ``pdftoppm`` (as a scanner or a camera would see
it), read with zbar, and must hold exactly the frames drawn there (CER-QR). Printing goes
through the CUPS client, to the destination named or to the default ``lpstat -d`` reports.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from ceremony.adapters.qrcodes import ZbarReader
from ceremony.errors import DeviceError
from ceremony.qrframe import QrFormatError, QrIntegrityError, SymbolReader

READ_BACK_DPI = 200  # modules of 0.55 mm or more are 4.3 pixels or more
# zbar now and then misses one of several codes on a page at one resolution and finds it at
# another; a page is read again at these before a code counts as unreadable.
RETRY_DPIS = (300, 150)
TIMEOUT = 120.0
POPPLER_HINT = "install poppler-utils (scripts/setup.sh does)"
CUPS_HINT = "install cups-client and configure the printer, or print the PDF from another " \
            "machine"


def _tool(name: str, what: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DeviceError(f"{name} ({what}) is not installed", hint=hint)
    return path


def _run(command: list[str], what: str, hint: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DeviceError(f"{what} did not finish in {TIMEOUT:.0f} s", hint=hint) from exc
    except OSError as exc:
        raise DeviceError(f"{what} cannot be run: {exc.strerror or exc}", hint=hint) from exc


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    line = text.splitlines()[0] if text else ""
    return "".join(c for c in line if c.isprintable())[:200]


def render_page(pdf: Path, page: int, directory: Path, dpi: int = READ_BACK_DPI) -> Path:
    """Page ``page`` (1-based) of ``pdf`` as a grey PNG in ``directory``."""
    tool = _tool("pdftoppm", "poppler-utils", POPPLER_HINT)
    prefix = directory / f"page-{page}"
    done = _run([tool, "-r", str(dpi), "-gray", "-png", "-singlefile", "-f", str(page), "-l",
                 str(page), str(pdf.absolute()), str(prefix)], "pdftoppm", POPPLER_HINT)
    image = prefix.with_suffix(".png")
    if done.returncode != 0 or not image.is_file():
        raise DeviceError(f"pdftoppm could not render page {page} of {pdf} "
                          f"({_first_line(done.stderr) or f'exit {done.returncode}'})",
                          hint=POPPLER_HINT)
    return image


def read_back_pages(pdf: Path, drawn: Mapping[int, Sequence[str]],
                    reader: SymbolReader | None = None) -> None:
    """Raise QrIntegrityError unless each page reads back as exactly the frames drawn on it.

    ``drawn`` maps a page number to the frames drawn there. A page is compared as a whole
    (the same frames, as many times each), so a code that does not read, reads as another,
    or a code nobody drew, fails the check. A code zbar misses at the first resolution may
    be found at another (RETRY_DPIS), as a scanner would be tried again; anything read that
    was not drawn fails at once.
    """
    reader = reader or ZbarReader()
    with tempfile.TemporaryDirectory(prefix="ceremony-print-") as tmp:
        for page, frames in sorted(drawn.items()):
            wanted = Counter(frames)
            seen: Counter[str] = Counter()
            for dpi in (READ_BACK_DPI, *RETRY_DPIS):
                image = render_page(pdf, page, Path(tmp), dpi)
                try:
                    scanned = Counter(reader.scan(image))
                except QrFormatError:
                    scanned = Counter()
                seen |= scanned  # each frame as often as the best look read it
                if seen - wanted or seen == wanted:
                    break
            if seen != wanted:
                missing = len(list((wanted - seen).elements()))
                extra = len(list((seen - wanted).elements()))
                raise QrIntegrityError(
                    f"page {page} of {pdf} does not read back: {missing} of its "
                    f"{len(frames)} QR code(s) were not read as drawn"
                    + (f", and {extra} read as something else" if extra else ""),
                    hint="the PDF was not kept; run the command again, and report it if it "
                         "persists", requirement="CER-QR")


def default_printer() -> str | None:
    """The CUPS default destination (``lpstat -d``), or None when there is none or no CUPS."""
    tool = shutil.which("lpstat")
    if tool is None:
        return None
    done = _run([tool, "-d"], "lpstat", CUPS_HINT)
    text = done.stdout.decode("utf-8", "replace")
    for line in text.splitlines():
        head, sep, name = line.partition(":")
        if sep and "default destination" in head and name.strip():
            return name.strip()
    return None


def send(pdf: Path, printer: str, title: str) -> str:
    """Print ``pdf`` on ``printer`` with ``lp``; return what lp says (the request id)."""
    tool = _tool("lp", "the CUPS client", CUPS_HINT)
    done = _run([tool, "-d", printer, "-t", title, "--", str(pdf.absolute())], "lp",
                CUPS_HINT)
    if done.returncode != 0:
        raise DeviceError(f"lp could not print {pdf} on {printer} "
                          f"({_first_line(done.stderr) or f'exit {done.returncode}'})",
                          hint=f"check the printer with `lpstat -p {printer}`; the PDF is "
                               f"{pdf}")
    return _first_line(done.stdout) or "queued"
