"""QR parts for public material: the framing, real PNG/SVG files read back by zbar, the
terminal drawing, read-back, and `ceremony qr encode/decode` (docs/qr-format.md).

Every image test decodes with the real `zbarimg` (zbar-tools): skipped loudly when it is
missing, a failure under CI.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from ceremony.adapters.qrcodes import (
    ZbarReader,
    decode_images,
    read_back,
    render_terminal,
    symbol,
    write_parts,
)
from ceremony.cli.main import main
from ceremony.errors import CeremonyError
from ceremony.qrframe import (
    CHUNK_BYTES,
    MAX_PARTS,
    MAX_PAYLOAD,
    QR_ALPHANUMERIC,
    QR_ALPHANUMERIC_CAPACITY,
    QR_VERSION,
    Part,
    Payload,
    QrAssemblyError,
    QrFormatError,
    QrIntegrityError,
    check_content,
    parts_phrase,
    reassemble,
)
from tests.conftest import REPO, require, run_cli

QR_ERRORS = (QrFormatError, QrAssemblyError, QrIntegrityError)


@pytest.fixture
def zbar() -> None:
    require(shutil.which("zbarimg") is not None, "zbarimg (zbar-tools)")


def _public_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
                | rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _lineage_json(entries: int) -> bytes:
    """A lineage-like record: hex digests and dated states, pretty-printed."""
    rng = random.Random(entries)
    record = {
        "ceremony": "root-2025-rehearsal",
        "share_set": rng.randbytes(8).hex(),
        "seed_commitment": rng.randbytes(32).hex(),
        "transitions": [{"at": f"2025-01-{i % 28 + 1:02d}T12:00:00.000000Z",
                         "state": ["pre-activation", "active", "suspended"][i % 3],
                         "fingerprint": rng.randbytes(32).hex(),
                         "transcript_head": rng.randbytes(32).hex()}
                        for i in range(entries)],
    }
    return (json.dumps(record, indent=2) + "\n").encode()


@pytest.fixture(scope="module")
def samples() -> dict[str, Payload]:
    """The public material the brief names, as payloads (RSA-4096 made once)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ceremony Test Root CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ceremony")])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(rsa_key, hashes.SHA256()))
    return {
        "ed25519": Payload("pem", _public_pem(ed25519.Ed25519PrivateKey.generate())),
        "p384": Payload("pem", _public_pem(ec.generate_private_key(ec.SECP384R1()))),
        "rsa4096": Payload("pem", _public_pem(rsa_key)),
        "csr": Payload("pem", csr.public_bytes(serialization.Encoding.PEM)),
        "json": Payload("json", _lineage_json(12)),
    }


SAMPLES = ["ed25519", "p384", "rsa4096", "csr", "json"]


def _png(frame: str, path: Path) -> Path:
    """Draw any frame, even a tampered one, the way the adapter draws parts."""
    with path.open("xb") as handle:
        symbol(frame).make_image().save(handle)
    return path


def _foreign_png(text: str, path: Path) -> Path:
    import qrcode

    qrcode.make(text).save(path)
    return path


def _drawing_png(drawing: str, path: Path, *, blocks_are_dark: bool = True) -> Path:
    """Paint a half-block drawing back into pixels, as a screenshot of the terminal."""
    lines = drawing.split("\n")
    scale = 4
    image = Image.new("L", (max(map(len, lines)) * scale, len(lines) * 2 * scale), 255)
    draw = ImageDraw.Draw(image)
    for y, line in enumerate(lines):
        for x, char in enumerate(line):
            for half, inked in ((0, char in "\u2580\u2588"), (1, char in "\u2584\u2588")):
                if inked == blocks_are_dark:
                    top = (2 * y + half) * scale
                    draw.rectangle((x * scale, top, x * scale + scale - 1, top + scale - 1),
                                   fill=0)
    image.save(path)
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["qr", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _one_sentence(err: str, code: int) -> None:
    """What every failure looks like: `ceremony: ...`, maybe a hint, never a traceback."""
    assert err.startswith("ceremony: "), err
    assert "Traceback" not in err and "Error:" not in err, err
    assert len(err.strip().splitlines()) <= 2, err
    assert code in (1, 2, 3), (code, err)


# -- round trips through real files and zbar ------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_through_png_and_zbar(name: str, samples: dict[str, Payload],
                                         tmp_path: Path, zbar: None) -> None:
    payload = samples[name]
    files = write_parts(payload, tmp_path, name)
    frames = payload.frames()
    assert [f.name for f in files] == [f"{name}-qr-{i:0{len(str(len(frames)))}d}-of-"
                                       f"{len(frames)}.png" for i in range(1, len(frames) + 1)]
    assert all(symbol(frame).version <= QR_VERSION for frame in frames)
    if name in ("rsa4096", "csr", "json"):
        assert len(files) > 1, "this payload should need several parts"
    read_back(files, payload)
    shuffled = random.Random(name).sample(files, len(files))
    if len(files) > 1:
        assert shuffled != files
    assert decode_images(shuffled) == payload


def test_multi_kb_json_needs_many_balanced_parts(samples: dict[str, Payload]) -> None:
    payload = samples["json"]
    assert len(payload.data) > 3000
    parts = payload.parts()
    assert len(parts) == -(-len(payload.data) // CHUNK_BYTES)
    sizes = {len(p.chunk) for p in parts[:-1]}
    assert len(sizes) == 1 and sizes.pop() % 5 == 0
    assert 0 < len(parts[-1].chunk) <= len(parts[0].chunk)


@pytest.mark.parametrize("name", ["csr", "json"])
def test_cli_round_trip_in_any_order(name: str, samples: dict[str, Payload],
                                     tmp_path: Path, zbar: None) -> None:
    payload = samples[name]
    source = tmp_path / f"root.{'pem' if payload.kind == 'pem' else 'json'}"
    source.write_bytes(payload.data)
    result = run_cli("qr", "encode", str(source), "--out", str(tmp_path / "qr"))
    assert result.returncode == 0, result.stderr
    assert payload.digest in result.stdout and "read back with zbar" in result.stdout
    images = sorted((tmp_path / "qr").glob("*.png"))
    assert len(images) == len(payload.frames())
    random.Random(3).shuffle(images)
    result = run_cli("qr", "decode", *map(str, images), "--out", str(tmp_path / "dec"))
    assert result.returncode == 0, result.stderr
    written = list((tmp_path / "dec").iterdir())
    assert len(written) == 1 and written[0].read_bytes() == payload.data
    expected = "certificate-request-" if name == "csr" else "payload-"
    assert written[0].name == f"{expected}{payload.digest[:16]}.{source.suffix[1:]}"
    # Without --out, the payload itself goes to stdout.
    raw = subprocess.run([sys.executable, "-m", "ceremony.cli.main", "qr", "decode",
                          *map(str, images)], capture_output=True, timeout=120, check=False)
    assert raw.returncode == 0 and raw.stdout == payload.data


def test_svg_parts_are_well_formed_and_zbar_reads_them(samples: dict[str, Payload],
                                                       tmp_path: Path, zbar: None) -> None:
    payload = samples["rsa4096"]
    files = write_parts(payload, tmp_path, "rsa", png=False, svg=True)
    assert files and all(f.suffix == ".svg" for f in files)
    for path in files:
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.get("viewBox") and root.get("width", "").endswith("mm")
        # A white background under the modules: readable on a dark viewer or page too.
        assert any(el.get("fill") == "white" for el in root.iter())
    # zbar reads SVG through ImageMagick's SVG coder (libmagickcore-6.q16-6-extra).
    try:
        ZbarReader().scan(files[0])
    except QrFormatError as exc:
        require("cannot be read as an image" not in exc.message,
                "ImageMagick's SVG coder (libmagickcore-6.q16-6-extra)")
        raise
    read_back(files, payload)
    assert decode_images(files[::-1]) == payload


# -- the terminal drawing ----------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_terminal_drawing_fits_80_columns_and_scans(name: str, samples: dict[str, Payload],
                                                     tmp_path: Path, zbar: None) -> None:
    reader = ZbarReader()
    for i, frame in enumerate(samples[name].frames()):
        drawing = render_terminal(frame)
        lines = drawing.split("\n")
        assert max(len(line) for line in lines) <= 80
        assert set(drawing) <= set(" \u2580\u2584\u2588\n")
        assert reader.scan(_drawing_png(drawing, tmp_path / f"{i}.png")) == [frame]
    inverted = render_terminal(frame, invert=True)
    png = _drawing_png(inverted, tmp_path / "inverted.png", blocks_are_dark=False)
    assert reader.scan(png) == [frame]


def test_the_longest_part_fits_version_13_and_80_columns() -> None:
    frames = Payload("text", b"\xff" * MAX_PAYLOAD).frames()
    assert len(frames) == MAX_PARTS
    longest = max(frames, key=len)
    assert len(longest) <= QR_ALPHANUMERIC_CAPACITY
    assert symbol(longest).version == QR_VERSION
    assert max(map(len, render_terminal(longest).split("\n"))) == 77
    with pytest.raises(CeremonyError, match="more than the 99 QR parts"):
        Payload("text", b"x" * (MAX_PAYLOAD + 1)).frames()


# -- bad input: one sentence naming the file, a documented exit code ---------------------


def _five_parts(tmp_path: Path) -> tuple[Payload, list[Path]]:
    base = json.loads(_lineage_json(3))
    base["note"] = ""
    base["note"] = "n" * (1100 - len(json.dumps(base).encode()))
    payload = Payload("json", json.dumps(base).encode())
    assert 4 * CHUNK_BYTES < len(payload.data) <= 5 * CHUNK_BYTES
    return payload, write_parts(payload, tmp_path / "five", "lineage")


def test_missing_parts_are_named_by_number(tmp_path: Path, zbar: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, files = _five_parts(tmp_path)
    code, out, err = _run(capsys, "decode", files[4], files[0], files[2])
    _one_sentence(err, code)
    assert code == 2 and out == ""
    assert "parts 2 and 4 of 5 are missing" in err
    assert str(files[4]) in err
    code, _, err = _run(capsys, "decode", files[1], files[2], files[3], files[4])
    assert code == 2 and "part 1 of 5 is missing" in err


def test_digest_mismatch_from_a_tampered_part(tmp_path: Path, zbar: None,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    payload, files = _five_parts(tmp_path)
    frame = payload.frames()[1]
    # A full 8-character base32 group uses every bit: any letter swap there is canonical.
    pos = frame.rindex(":") + 12
    swapped = "A" if frame[pos] != "A" else "B"
    forged = _png(frame[:pos] + swapped + frame[pos + 1:], tmp_path / "forged-2.png")
    code, out, err = _run(capsys, "decode", files[0], forged, *files[2:])
    _one_sentence(err, code)
    assert code == 1 and out == ""
    assert "reassemble to bytes with SHA-256" in err and "[CER-QR]" in err
    assert str(forged) in err


def test_mixed_payloads_are_refused(tmp_path: Path, samples: dict[str, Payload],
                                    zbar: None, capsys: pytest.CaptureFixture[str]) -> None:
    _, five = _five_parts(tmp_path)
    other = write_parts(samples["rsa4096"], tmp_path / "rsa", "rsa")
    code, _, err = _run(capsys, "decode", five[0], other[1], five[1])
    _one_sentence(err, code)
    assert code == 2
    assert f"{other[1]} holds part 2 of {len(other)} of another payload" in err
    assert str(five[0]) in err


def test_duplicates_must_agree(tmp_path: Path, zbar: None,
                               capsys: pytest.CaptureFixture[str]) -> None:
    payload, files = _five_parts(tmp_path)
    code, out, err = _run(capsys, "decode", *files, files[3], files[0])
    assert code == 0, err  # the same part scanned twice is harmless
    assert out == payload.data.decode()
    frame = payload.frames()[3]
    pos = frame.rindex(":") + 3
    forged = _png(frame[:pos] + ("Q" if frame[pos] != "Q" else "R") + frame[pos + 1:],
                  tmp_path / "other-4.png")
    code, _, err = _run(capsys, "decode", *files, forged)
    _one_sentence(err, code)
    assert code == 1
    assert f"{files[3]} and {forged} both hold part 4 of 5" in err


def _blank(path: Path) -> Path:
    Image.new("L", (300, 300), 255).save(path)
    return path


def _text_as_png(path: Path) -> Path:
    path.write_text("this is no image\n")
    return path


def _wrong_version(path: Path) -> Path:
    good = Payload("text", b"transcript head\n").frames()[0]
    return _png(good.replace("CQR:1:", "CQR:2:", 1), path)


BAD_IMAGES: list[tuple[str, Callable[[Path], Path], int, str]] = [
    ("blank", _blank, 2, "holds no QR code that zbar can read"),
    ("not-an-image", _text_as_png, 2, "cannot be read as an image"),
    ("missing", lambda p: p, 2, "no such file"),
    ("foreign-qr", lambda p: _foreign_png("https://example.org/\x1b[2J", p), 2,
     "not a ceremony QR part"),
    ("wrong-version", _wrong_version, 2, "format version 2, and this tool reads version 1"),
    ("unknown-type", lambda p: _png(Payload("text", b"x").frames()[0].replace(
        ":TEXT:", ":BIN:"), p), 2, "unknown payload type BIN"),
]


@pytest.mark.parametrize(("name", "make", "code", "says"), BAD_IMAGES,
                         ids=[b[0] for b in BAD_IMAGES])
def test_bad_images_are_one_sentence(name: str, make: Callable[[Path], Path], code: int,
                                     says: str, tmp_path: Path, zbar: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    image = make(tmp_path / f"{name}.png")
    got, out, err = _run(capsys, "decode", image)
    _one_sentence(err, got)
    assert got == code and out == ""
    assert err.startswith(f"ceremony: {image}: "), err
    assert says in err
    assert "\x1b" not in err  # nothing scanned is echoed to the terminal


def test_bad_image_through_the_real_command(tmp_path: Path, zbar: None) -> None:
    result = run_cli("qr", "decode", str(_blank(tmp_path / "blank.png")))
    assert result.returncode == 2
    assert result.stderr.startswith(f"ceremony: {tmp_path / 'blank.png'}: holds no QR")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_encode_refuses_private_keys_and_never_overwrites(
        tmp_path: Path, samples: dict[str, Payload], zbar: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "root.key"
    secret.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    code, out, err = _run(capsys, "encode", secret, "--out", tmp_path / "qr")
    _one_sentence(err, code)
    assert code == 2 and "[CER-NO-SECRET]" in err and "PRIVATE" not in out + err
    assert not (tmp_path / "qr").exists()

    pem = tmp_path / "root.pem"
    pem.write_bytes(samples["p384"].data)
    assert _run(capsys, "encode", pem, "--out", tmp_path / "qr")[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "qr").iterdir()}
    code, _, err = _run(capsys, "encode", pem, "--out", tmp_path / "qr", "--svg")
    _one_sentence(err, code)
    assert code == 2 and "already exists" in err
    assert {p: p.read_bytes() for p in (tmp_path / "qr").iterdir()} == before

    code, _, err = _run(capsys, "encode", pem, "--out", tmp_path / "j", "--type", "json")
    assert code == 2 and "is not JSON, so it is not a json payload" in err


def test_encode_show_draws_every_part_within_80_columns(
        tmp_path: Path, samples: dict[str, Payload],
        capsys: pytest.CaptureFixture[str]) -> None:
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(samples["rsa4096"].data)
    code, out, _ = _run(capsys, "encode", pem, "--show")
    assert code == 0
    count = len(samples["rsa4096"].frames())
    assert f"{count} QR parts" in out and f"part {count} of {count}" in out
    drawing = [line for line in out.splitlines()
               if line and set(line) <= set(" \u2580\u2584\u2588")]
    width = symbol(samples["rsa4096"].frames()[0]).modules_count + 8  # 4-module quiet zone
    assert len(drawing) == count * -(-width // 2)
    assert {len(line) for line in drawing} == {width} and width <= 80
    assert out.count("\u2588") > 100 and not list(tmp_path.glob("*.png"))


def test_decoded_private_key_is_refused(tmp_path: Path, zbar: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    image = _png(Payload("pem", key).frames()[0], tmp_path / "key.png")
    code, out, err = _run(capsys, "decode", image, "--out", tmp_path / "dec")
    _one_sentence(err, code)
    assert code == 2 and "[CER-NO-SECRET]" in err and out == ""
    assert not (tmp_path / "dec").exists()


# -- read-back --------------------------------------------------------------------------


def test_read_back(tmp_path: Path, samples: dict[str, Payload], zbar: None) -> None:
    payload, files = _five_parts(tmp_path)
    read_back(files, payload)
    read_back(files, payload.data)
    with pytest.raises(QrIntegrityError, match="not the json payload"):
        read_back(files, payload.data + b" ")
    with pytest.raises(QrIntegrityError, match="not the text payload"):
        read_back(files, Payload("text", payload.data))
    with pytest.raises(QrIntegrityError, match="part 5 of 5 is missing"):
        read_back(files[:4], payload)
    with pytest.raises(QrIntegrityError, match="no ceremony QR part"):
        read_back([], payload)
    with pytest.raises(QrIntegrityError, match="holds no QR code"):
        read_back([*files, _blank(tmp_path / "blank.png")], payload)
    sheet = Image.new("L", (1300, 700), 255)  # two parts on one page: not one per image
    for i, path in enumerate(files[:2]):
        sheet.paste(Image.open(path), (20 + 650 * i, 20))
    sheet.save(tmp_path / "sheet.png")
    with pytest.raises(QrIntegrityError, match="read back 2 QR codes, not one"):
        read_back([tmp_path / "sheet.png", *files[2:]], payload)
    # decode, unlike read-back, takes a printed page holding several parts.
    assert decode_images([*files[2:], tmp_path / "sheet.png"]) == payload


# -- the framing alone (no images) --------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000), kind=st.sampled_from(["pem", "json", "text"]),
       groups=st.integers(min_value=1, max_value=CHUNK_BYTES // 5), order=st.randoms())
def test_frames_round_trip_in_any_order(data: bytes, kind: str, groups: int,
                                        order: random.Random) -> None:
    chunk = groups * 5
    if len(data) > chunk * MAX_PARTS:
        data = data[:chunk * MAX_PARTS]
    payload = Payload(kind, data)
    frames = payload.frames(chunk_bytes=chunk)
    assert all(set(f) <= QR_ALPHANUMERIC and len(f) <= QR_ALPHANUMERIC_CAPACITY
               for f in frames)
    order.shuffle(frames)
    assert reassemble((f"scan-{i}", f) for i, f in enumerate(frames)) == payload


@settings(max_examples=500, deadline=None)
@given(data=st.binary(min_size=1, max_size=1200), pick=st.integers(min_value=0),
       where=st.integers(min_value=0), char=st.sampled_from(sorted(QR_ALPHANUMERIC)))
def test_any_single_character_change_is_caught(data: bytes, pick: int, where: int,
                                               char: str) -> None:
    frames = Payload("text", data).frames(chunk_bytes=100)
    i = pick % len(frames)
    pos = where % len(frames[i])
    if frames[i][pos] == char:
        return
    frames[i] = frames[i][:pos] + char + frames[i][pos + 1:]
    with pytest.raises(QR_ERRORS):
        reassemble((f"scan-{n}", f) for n, f in enumerate(frames))


GOOD = Payload("text", b"head 1234\n").frames()[0]
HEX = GOOD.split(":")[4]

STRICT: list[tuple[str, str]] = [
    ("", "not a ceremony QR part"),
    ("cqr:1:TEXT:1/1:" + HEX + ":NBSWCZBA", "not a ceremony QR part"),
    ("CQR:01:TEXT:1/1:" + HEX + ":NBSWCZBA", "without a valid format version"),
    ("CQR:3:ANYTHING", "format version 3, and this tool reads version 1 only"),
    ("CQR:1:TEXT:1/1:" + HEX, "missing fields"),
    ("CQR:1:text:1/1:" + HEX + ":NBSWCZBA", "unknown payload type"),
    ("CQR:1:TEXT:01/1:" + HEX + ":NBSWCZBA", "not written as I/N"),
    ("CQR:1:TEXT:0/1:" + HEX + ":NBSWCZBA", "not written as I/N"),
    ("CQR:1:TEXT:2/1:" + HEX + ":NBSWCZBA", "numbered 2 of 1"),
    ("CQR:1:TEXT:1/100:" + HEX + ":NBSWCZBA", "more than the 99"),
    ("CQR:1:TEXT:1/1:" + HEX.lower() + ":NBSWCZBA", "64 upper-case hex"),
    ("CQR:1:TEXT:1/1:" + HEX + ":NBSWCZBA=", "not base32"),
    ("CQR:1:TEXT:1/1:" + HEX + ":NBS", "not base32"),
    ("CQR:1:TEXT:1/1:" + HEX + ":NB", "not in canonical form"),
    ("CQR:1:TEXT:1/2:" + HEX + ":NBSWC", "whole 8-character groups"),
    ("CQR:1:TEXT:1/2:" + HEX + ":", "whole 8-character groups"),
]


@pytest.mark.parametrize(("frame", "says"), STRICT)
def test_parse_is_strict(frame: str, says: str) -> None:
    assert Part.parse(GOOD, "a.png").frame() == GOOD
    with pytest.raises(QrFormatError, match=re.escape(says)) as caught:
        Part.parse(frame, "a.png")
    assert caught.value.message.startswith("a.png: ")


def test_parts_phrase() -> None:
    assert parts_phrase([3], 5) == "part 3 of 5 is"
    assert parts_phrase([2, 4], 5) == "parts 2 and 4 of 5 are"
    assert parts_phrase([4, 2, 5], 7) == "parts 2, 4 and 5 of 7 are"
    assert parts_phrase([*range(2, 10), 12], 20) == "parts 2 to 9 and 12 of 20 are"


@pytest.mark.parametrize(("kind", "data", "ok"), [
    ("pem", b"-----BEGIN PUBLIC KEY-----\nMCowBQ==\n-----END PUBLIC KEY-----\n", True),
    ("pem", b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
            b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----", True),
    ("pem", b"-----BEGIN PUBLIC KEY-----\nMCowBQ==\n-----END CERTIFICATE-----\n", False),
    ("pem", b"hello\n", False),
    ("json", b'{"a": 1, "b": [true, null]}', True),
    ("json", b'{"a": 1, "a": 2}', False),
    ("json", b"NaN", False),
    ("text", "caf\u00e9 head 12\n".encode(), True),
    ("text", b"\x1b[2Jclear", False),
    ("text", b"\xff\xfe", False),
])
def test_content_checks(kind: str, data: bytes, ok: bool) -> None:
    if ok:
        check_content(kind, data, "f")
    else:
        with pytest.raises(CeremonyError):
            check_content(kind, data, "f")


def test_the_documented_example_is_exact() -> None:
    """docs/qr-format.md's example part is what the encoder makes of its example PEM."""
    doc = (REPO / "docs" / "qr-format.md").read_text()
    pem = re.search(r"```\n(-----BEGIN PUBLIC KEY-----\n.*?\n-----END PUBLIC KEY-----\n)```",
                    doc, re.S)
    frame = re.search(r"```\n(CQR:1:PEM:1/1:[0-9A-F]{64}:[A-Z2-7]+)\n```", doc)
    assert pem and frame
    payload = Payload("pem", pem.group(1).encode())
    assert payload.frames() == [frame.group(1)]
    assert payload.digest in doc


def test_qrframe_imports_no_qr_or_image_library() -> None:
    code = ("import sys, json\nimport ceremony.qrframe\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert not loaded & {"qrcode", "PIL", "textual", "pkcs11"}, loaded


def test_parts_are_deterministic(tmp_path: Path, samples: dict[str, Payload]) -> None:
    """Same payload, same bytes: the parts can go into a bundle's checksum list."""
    first = write_parts(samples["p384"], tmp_path / "a", "k", svg=True)
    second = write_parts(samples["p384"], tmp_path / "b", "k", svg=True)
    assert [f.read_bytes() for f in first] == [f.read_bytes() for f in second]
