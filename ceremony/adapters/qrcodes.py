"""QR symbols for framed parts: PNG and SVG files, terminal drawings, and zbar read-back.

The framing itself (what each symbol holds) is ``ceremony.qrframe``; this module only draws
its frames with the ``qrcode`` package (PNG through Pillow) and reads images back with
``zbarimg`` from zbar-tools. Every symbol is in QR alphanumeric mode at error correction M
and at most version 13, so a part drawn in half blocks is 77 columns wide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import qrcode
from qrcode.image.pil import PilImage
from qrcode.image.svg import SvgPathFillImage
from qrcode.util import MODE_ALPHA_NUM, QRData

from ceremony.errors import DeviceError, UsageError
from ceremony.qrframe import (
    QR_ALPHANUMERIC,
    QR_BORDER,
    QR_VERSION,
    Payload,
    QrFormatError,
    QrIntegrityError,
    SymbolReader,
    check_read_back,
    reassemble,
)

BOX_SIZE = 8  # pixels per module in a PNG: 616 px for a version 13 symbol with its border
ZBAR_TIMEOUT = 60.0
ZBAR_HINT = "install zbar-tools (scripts/setup.sh does)"

# Half blocks: each terminal row shows two module rows, top and bottom.
_HALF_BLOCKS = {(False, False): " ", (True, False): "\u2580", (False, True): "\u2584",
                (True, True): "\u2588"}


@lru_cache(maxsize=256)
def _fit(frame: str) -> tuple[int, int]:
    """Version and mask of a frame's symbol: the mask search is the slow part (~0.1 s)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(QRData(frame.encode("ascii"), mode=MODE_ALPHA_NUM))
    code.best_fit()
    return int(code.version), int(code.best_mask_pattern())


def symbol(frame: str, *, image_factory: Any = PilImage) -> Any:
    """The QR symbol of one frame, in alphanumeric mode at level M, version 13 or less."""
    if not frame or not set(frame) <= QR_ALPHANUMERIC:
        raise ValueError("a frame is QR alphanumeric text (see ceremony.qrframe)")
    version, mask = _fit(frame)
    if version > QR_VERSION:
        raise ValueError(f"frame needs QR version {version}, above {QR_VERSION}")
    code = qrcode.QRCode(version=version, error_correction=qrcode.constants.ERROR_CORRECT_M,
                         box_size=BOX_SIZE, border=QR_BORDER, mask_pattern=mask,
                         image_factory=image_factory)
    code.add_data(QRData(frame.encode("ascii"), mode=MODE_ALPHA_NUM))
    code.make(fit=False)
    return code


def modules(frame: str) -> list[list[bool]]:
    """The symbol's modules with its quiet zone, row by row (True is dark)."""
    return [list(row) for row in symbol(frame).get_matrix()]


def render_terminal(frame: str, *, invert: bool = False) -> str:
    """The symbol in half-block characters, two module rows per line, quiet zone included.

    Block glyphs are the dark modules, so show it dark on light (black on white in the UI).
    ``invert=True`` draws the light modules instead, for light text on a dark terminal.
    """
    rows = modules(frame)
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    lines = []
    for top, bottom in zip(rows[0::2], rows[1::2], strict=True):
        lines.append("".join(_HALF_BLOCKS[(t != invert, b != invert)]
                             for t, b in zip(top, bottom, strict=True)))
    return "\n".join(lines)


def part_names(stem: str, count: int, suffix: str) -> list[str]:
    """``STEM-qr-01-of-12.png``: numbered so that they sort in order."""
    width = len(str(count))
    return [f"{stem}-qr-{i:0{width}d}-of-{count}{suffix}" for i in range(1, count + 1)]


def write_parts(payload: Payload, out: Path, stem: str, *, png: bool = True,
                svg: bool = False) -> list[Path]:
    """Write one PNG (and/or SVG) per part into ``out``; never overwrites a file.

    Returns the files in part order, PNGs first. Anything written is removed again if a
    later file cannot be written.
    """
    frames = payload.frames()
    suffixes = [s for s, wanted in ((".png", png), (".svg", svg)) if wanted]
    targets = [(out / name, frame, suffix) for suffix in suffixes
               for name, frame in zip(part_names(stem, len(frames), suffix), frames,
                                      strict=True)]
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is not a directory", hint="give --out a directory")
    for path, _, _ in targets:
        if path.exists():
            raise UsageError(f"{path} already exists; QR parts are never overwritten",
                             hint="choose another --out directory or remove the old parts")
    written: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, frame, suffix in targets:
            factory = PilImage if suffix == ".png" else SvgPathFillImage
            image = symbol(frame, image_factory=factory).make_image()
            with path.open("xb") as handle:
                image.save(handle)
                handle.flush()
                os.fsync(handle.fileno())
            written.append(path)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise DeviceError(f"cannot write {exc.filename or out}: {exc.strerror or exc}",
                          hint="check the --out directory is writable") from exc
    return written


def zbarimg() -> str:
    """Path of zbarimg, or a DeviceError saying how to install it."""
    path = shutil.which("zbarimg")
    if path is None:
        raise DeviceError("zbarimg (from zbar-tools) is not installed, so QR codes cannot "
                          "be read", hint=ZBAR_HINT)
    return path


class ZbarReader:
    """Reads QR symbols from image files with ``zbarimg --raw -q`` (PNG, SVG, JPEG ...)."""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or zbarimg()

    def scan(self, image: Path) -> list[str]:
        """Every QR symbol's text in ``image``, one frame per line of zbar's output."""
        if not image.is_file():
            raise QrFormatError("no such file" if not image.exists() else "is not a file",
                                file=str(image))
        # An absolute path: a name starting with '-' is no option, and ImageMagick (which
        # zbarimg reads images with) sees no 'format:' prefix.
        command = [self.executable, "--raw", "-q", "-Sdisable", "-Sqrcode.enable",
                   str(image.absolute())]
        try:
            done = subprocess.run(command, capture_output=True, timeout=ZBAR_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise DeviceError(f"zbarimg did not finish reading {image} in "
                              f"{ZBAR_TIMEOUT:.0f} s", hint="try a smaller image") from exc
        except OSError as exc:
            raise DeviceError(f"zbarimg cannot be run: {exc.strerror or exc}",
                              hint=ZBAR_HINT) from exc
        if done.returncode == 4:  # zbarimg: image read, no symbol found
            raise QrFormatError("holds no QR code that zbar can read", file=str(image),
                                hint="scan or photograph the code again, whole and sharp")
        if done.returncode != 0:
            raise QrFormatError("cannot be read as an image (zbarimg refused it)",
                                file=str(image), hint="give a PNG, SVG or JPEG file")
        # Frames are QR alphanumeric text, never multi-line: one line is one symbol.
        text = done.stdout.decode("utf-8", "replace")
        return [line for line in text.split("\n") if line]


def scan_images(images: Sequence[Path], reader: SymbolReader | None = None
                ) -> list[tuple[str, str]]:
    """``(image, frame)`` for every symbol in every image, in the order given."""
    reader = reader or ZbarReader()
    return [(str(image), text) for image in images for text in reader.scan(image)]


def decode_images(images: Sequence[Path], reader: SymbolReader | None = None) -> Payload:
    """Reassemble the payload whose parts the images hold (any order, several per image)."""
    return reassemble(scan_images(images, reader))


def read_back(images: Sequence[Path], payload: Payload | bytes,
              reader: SymbolReader | None = None) -> None:
    """Raise unless each image holds one part and together they are exactly ``payload``.

    Call it on files just written, before recording them as done. ``payload`` as bytes is
    compared by content alone; as a Payload its type must match too.
    """
    reader = reader or ZbarReader()
    scanned: dict[str, list[str]] = {}
    for image in images:
        try:
            scanned[str(image)] = reader.scan(image)
        except QrFormatError as exc:
            raise QrIntegrityError(f"the QR codes do not read back: {exc.message}",
                                   hint="write the parts again",
                                   requirement="CER-QR") from exc
    check_read_back(scanned, payload)


class BundleCodes:
    """The engine's PublicCodes port: PNG parts in the bundle, each decoded back with zbar."""

    def __init__(self, reader: SymbolReader | None = None) -> None:
        self._reader = reader

    def write(self, directory: Path, stem: str, kind: str, data: bytes) -> list[str]:
        payload = Payload(kind, data)
        written = write_parts(payload, directory, stem)
        try:
            read_back(written, payload, self._reader)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return [path.name for path in written]
