"""The QR viewer (`r` on the sealed screen and in `ceremony replay`): public material only, one
part a page, and what the terminal shows decodes with zbar to the bundle's bytes.

The decoding is honest: the viewer's part is taken from the terminal as drawn (Textual's
screenshot, rebuilt into lines), its half blocks turned back into modules, drawn into a PNG
with Pillow and read by the real `zbarimg`; the parts read are reassembled with the format's
own checks (digest included) and compared with the bundle's files.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from PIL import Image, ImageDraw
from textual.app import App
from textual.pilot import Pilot

from ceremony.adapters.qrcodes import BundleCodes, ZbarReader
from ceremony.printout import head_payload
from ceremony.qrframe import Part, reassemble
from ceremony.rehearsal import Cast
from ceremony.tui.app import CeremonyApp, OpenedDevices
from ceremony.tui.qrview import QrViewer, bundle_codes, pages
from ceremony.tui.replay import ReplayApp
from ceremony.tui.screens import CeremonyScreen
from tests.conftest import REPO, require
from tests.tui_helpers import (
    drive,
    fake_opener,
    fake_setup,
    open_and_roll_call,
    settle,
    svg_lines,
    sync,
)

GOLDEN = REPO / "tests" / "vectors" / "golden" / "bundle"
SIZE = (80, 24)
TALL = (80, 60)  # a whole version 13 part (39 lines) and the header fit
GLYPHS = {" ": (False, False), "\u2580": (True, False), "\u2584": (False, True),
          "\u2588": (True, True)}
MARKER = b"REHEARSAL: not a production key\n"


def pem_body(bundle: Path, name: str = "root-public-key.pem") -> bytes:
    data = (bundle / name).read_bytes()
    return data[len(MARKER):] if data.startswith(MARKER) else data


def shown(app: App[Any]) -> str:
    return "\n".join(svg_lines(app.export_screenshot()))


def screen_modules(app: App[Any]) -> list[list[bool]]:
    """The QR drawn on the terminal now, back as modules (True is dark), from its lines."""
    lines = [line[:78] for line in svg_lines(app.export_screenshot())]  # no scrollbar
    drawn = [i for i, line in enumerate(lines) if any(c in "\u2580\u2584\u2588" for c in line)]
    assert drawn, "no QR code on the screen"
    block = lines[drawn[0]:drawn[-1] + 1]
    width = max(map(len, block))
    rows: list[list[bool]] = []
    for line in block:
        assert set(line) <= set(GLYPHS), f"not a half-block line: {line!r}"
        cells = [GLYPHS[c] for c in line.ljust(width)]
        rows.append([top for top, _ in cells])
        rows.append([bottom for _, bottom in cells])
    return rows


def read_screen(app: App[Any], path: Path) -> list[str]:
    """Draw the shown modules into a PNG (4 px a module, a wide quiet zone) and zbar it."""
    rows = screen_modules(app)
    scale, border = 4, 8
    size = ((len(rows[0]) + 2 * border) * scale, (len(rows) + 2 * border) * scale)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(rows):
        for x, dark in enumerate(row):
            if dark:
                left, top = (x + border) * scale, (y + border) * scale
                draw.rectangle((left, top, left + scale - 1, top + scale - 1), fill=0)
    image.save(path)
    return ZbarReader().scan(path)


async def read_every_page(pilot: Pilot[Any], tmp_path: Path) -> dict[str, list[str]]:
    """Page through the whole viewer once (right arrow), reading each part off the screen;
    the frames read, grouped by the payload digest they declare."""
    viewer = pilot.app.screen
    assert isinstance(viewer, QrViewer)
    read: dict[str, list[str]] = {}
    for number in range(len(viewer.pages)):
        texts = read_screen(pilot.app, tmp_path / f"screen-{number}.png")
        assert len(texts) == 1
        assert texts == [viewer.pages[viewer.index].frame]
        read.setdefault(Part.parse(texts[0], "screen").digest, []).append(texts[0])
        await pilot.press("right")
        await settle(pilot)
    assert viewer.index == 0  # paging wraps round
    return read


def test_bundle_codes_offer_public_material_only(tmp_path: Path) -> None:
    codes, notes = bundle_codes(GOLDEN, "golden")
    assert notes == []
    assert [c.title.split(" ")[0] for c in codes] == ["Root", "Transcript", "Seal"]
    root, head, seal = (c.payload for c in codes)
    assert root.kind == "pem" and root.data == pem_body(GOLDEN)  # the marker line left out
    line = (GOLDEN / "transcript.jsonl").read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    assert seal.kind == "json" and seal.data == line
    assert head == head_payload("golden", seal.digest)  # the seal line's SHA-256 is the head
    parts, notes = pages(codes)
    assert [p.total for p in parts if p.title == codes[2].title] == [len(seal.parts())] * len(
        seal.parts())
    # A bundle whose "public key" is a private key: left out, named, never drawn.
    copy = tmp_path / "bundle"
    shutil.copytree(GOLDEN, copy)
    (copy / "root-public-key.pem").write_bytes(  # a throwaway key, made for this test
        Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                   NoEncryption()))
    codes, notes = bundle_codes(copy, "golden")
    assert [c.payload.kind for c in codes] == ["text", "json"]
    assert notes == ["root-public-key.pem is not shown: it is not a public key, certificate "
                     "or CSR in PEM"]
    assert all(b"PRIVATE" not in c.payload.data for c in codes)


@sync
async def test_replay_viewer_pages_scrolls_and_decodes(tmp_path: Path) -> None:
    require(shutil.which("zbarimg") is not None, "zbarimg (zbar-tools)")
    app = ReplayApp(GOLDEN)
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        viewer = app.screen
        assert isinstance(viewer, QrViewer)
        text = shown(app)
        assert "Root public key (root-public-key.pem): part 1 of 1" in text
        assert "taller than the window: scroll" in text  # 24 lines cannot hold the part
        assert "NOT VERIFIED" not in text
        await pilot.press("right")
        await settle(pilot)
        assert "Transcript head" in shown(app) and "part 1 of 1" in shown(app)
        await pilot.press("left", "left")
        await settle(pilot)
        last = viewer.pages[-1]
        assert f"part {last.total} of {last.total}" in shown(app)  # wrapped to the end
        await pilot.press("right")
        await pilot.resize_terminal(*TALL)
        await settle(pilot)
        assert "taller than the window" not in shown(app)
        read = await read_every_page(pilot, tmp_path)
        assert "Seal line" in "".join(p.title for p in viewer.pages)
        payloads = [reassemble(("screen", f) for f in frames) for frames in read.values()]
        root = next(p for p in payloads if p.kind == "pem")
        assert root.data == pem_body(GOLDEN)
        seal = next(p for p in payloads if p.kind == "json")
        assert seal.digest == hashlib.sha256(seal.data).hexdigest()
        assert seal.data == (GOLDEN / "transcript.jsonl").read_bytes().splitlines()[-1]
        await pilot.press("r", "s", "f")  # the replay's own keys do nothing over the viewer
        await settle(pilot)
        assert app.screen is viewer and len(app.screen_stack) == 2
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, QrViewer)
        assert "VERIFIED" in shown(app)


@sync
async def test_sealed_screen_shows_the_root_key_as_qr(tmp_path: Path, cast: Cast,
                                                      policy_text: str) -> None:
    """The UI ceremony on the fakes to its sealed screen, r, and the key read off the screen:
    the same parts as the engine's BUNDLE/qr images, and the bundle's PEM."""
    require(shutil.which("zbarimg") is not None, "zbarimg (zbar-tools)")
    bundle = tmp_path / "bundle"
    fakes = fake_opener()

    def open_devices(pin: bytearray | None) -> OpenedDevices:
        opened = fakes(pin)
        opened.devices.codes = BundleCodes()  # as `ceremony run` has it: PNG parts read back
        return opened

    app = CeremonyApp(fake_setup(bundle, cast, policy_text, open_devices=open_devices))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_and_roll_call(pilot)
        await pilot.press("r")  # not sealed yet: no QR codes
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        assert "QR codes" not in shown(app)
        await drive(pilot)
        assert "COMPLETED and sealed" in shown(app) and "QR codes" in shown(app)
        await pilot.press("r")
        await settle(pilot)
        viewer = app.screen
        assert isinstance(viewer, QrViewer)
        assert "Root public key (root-public-key.pem): part 1 of" in shown(app)
        await pilot.resize_terminal(*TALL)
        await settle(pilot)
        root = [p for p in viewer.pages if p.title.startswith("Root public key")]
        frames = []
        for number, page in enumerate(root):
            assert f"part {page.index} of {page.total}" in shown(app)
            frames += read_screen(app, tmp_path / f"root-{number}.png")
            await pilot.press("right")
            await settle(pilot)
        assert reassemble(("screen", f) for f in frames).data == pem_body(bundle)
        images = sorted((bundle / "qr").glob("root-public-key-REHEARSAL-qr-*.png"))
        assert len(images) == len(root)
        assert frames == [text for image in images for text in ZbarReader().scan(image)]
        text = shown(app)
        assert "Transcript head" in text or "Seal line" in text
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        assert "COMPLETED and sealed" in shown(app)


@sync
async def test_replay_of_an_unverified_bundle_says_so() -> None:
    app = ReplayApp(REPO / "tests" / "vectors" / "tamper" / "extra-file" / "bundle")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, QrViewer)
        assert "NOT VERIFIED: these codes hold what the bundle records" in shown(app)
        assert "part 1 of" in shown(app)
