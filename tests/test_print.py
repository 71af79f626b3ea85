"""`ceremony print`: the printed transcript of a verified bundle, read back independently.

The PDF is read with poppler (`pdftotext`, `pdftoppm`) and zbar (`zbarimg`), not with the
code that wrote it: the cover's facts and digests, every entry's seq, "page x of y" and the
transcript head on every page, the REHEARSAL watermark (its pixels) on a rehearsal's pages
and on no production page, and the cover's QR codes decoded to the fingerprint, the head
and the seal line. Printing goes through a fake CUPS client (`lp`, `lpstat` on PATH).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from ceremony.adapters.qrcodes import ZbarReader
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.cli.printing import write_printout
from ceremony.display import grouped_hex, words
from ceremony.engine.core import Devices, Engine
from ceremony.headless import run_headless
from ceremony.model.authorization import BUNDLE_SIGS_FILE, Presented
from ceremony.model.policy import parse_policy
from ceremony.qrframe import QrIntegrityError, reassemble
from ceremony.rehearsal import Cast, make_cast, sample_texts, sign_script, simulated_answers
from ceremony.verify import verify_bundle
from tests.conftest import require, run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation

GOLDEN = Path(__file__).resolve().parent / "vectors" / "golden"
WATERMARK_GREY = 228  # the share sheets' and the transcript's watermark stroke colour


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{package} ({name})")
    assert path
    return path


def pdftotext(path: Path, *mode: str) -> list[str]:
    """The text of each page (pdftotext separates pages with form feeds)."""
    done = subprocess.run([_tool("pdftotext", "poppler-utils"), *mode, str(path), "-"],
                          capture_output=True, text=True, check=True)
    pages = done.stdout.split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


def flat(text: str) -> str:
    return " ".join(text.split())


def render(pdf: Path, page: int, directory: Path, dpi: int, *extra: str) -> Path:
    prefix = directory / f"render-{page}-{dpi}"
    subprocess.run([_tool("pdftoppm", "poppler-utils"), "-r", str(dpi), "-gray", "-png",
                    "-singlefile", "-f", str(page), "-l", str(page), *extra, str(pdf),
                    str(prefix)], check=True, capture_output=True)
    return prefix.with_suffix(".png")


def zbar(image: Path) -> list[str]:
    done = subprocess.run([_tool("zbarimg", "zbar-tools"), "--raw", "-q", "-Sdisable",
                           "-Sqrcode.enable", str(image)], capture_output=True, text=True,
                          check=False)
    return [line for line in done.stdout.splitlines() if line]


def watermark_pixels(pdf: Path, page: int, directory: Path) -> int:
    """Pixels of the watermark's grey on the page, rendered without anti-aliasing (so text
    is pure black and white and only the watermark strokes are that grey)."""
    image = render(pdf, page, directory, 40, "-aa", "no", "-aaVector", "no")
    with Image.open(image) as opened:
        histogram = opened.convert("L").histogram()
    return sum(histogram[WATERMARK_GREY - 6:WATERMARK_GREY + 7])


def entries(bundle: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (bundle / "transcript.jsonl").read_text().splitlines()]


def printed(tmp_path: Path, bundle: Path, name: str = "out.pdf") -> Path:
    out = tmp_path / name
    result = run_cli("print", str(bundle), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.is_file()
    return out


def fake_bundle(directory: Path, cast: Cast, policy_text: str, *, rehearsal: bool) -> Path:
    """A completed ceremony with the seeded fakes (the golden's devices), production or not."""
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    bundle = directory / "bundle"
    policy = parse_policy(policy_text, "policy.toml")
    sigs = sign_script(cast.script, policy, cast.signers, "2026-01-01T00:00:00.000000Z")
    engine = Engine.start(cast.script, policy, cast.script_text.encode(), policy_text.encode(),
                          devices, bundle, rehearsal=rehearsal,
                          authorization=Presented(sigs, BUNDLE_SIGS_FILE, state_checked=True,
                                                  state_name="(a fresh state)"),
                                                  attestation=passing_attestation(rehearsal))
    run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                 lambda _: None)
    assert verify_bundle(bundle).ok
    return bundle


@pytest.fixture(scope="module")
def golden_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return printed(tmp_path_factory.mktemp("golden-print"), GOLDEN / "bundle")


def test_the_cover_states_the_ceremony(golden_pdf: Path) -> None:
    report = verify_bundle(GOLDEN / "bundle")
    assert report.ok and report.root_fingerprint and report.head
    cover = flat(pdftotext(golden_pdf, "-raw")[0])
    seal = entries(GOLDEN / "bundle")[-1]
    statement = seal["payload"]["statement"]  # type: ignore[index]
    seal_digest = hashlib.sha256(json.dumps(statement, sort_keys=True, separators=(",", ":"))
                                 .encode()).hexdigest()
    for fact in ("CEREMONY TRANSCRIPT", "sample-root-2026", "Sample root key ceremony",
                 "2026-01-02", "completed", "REHEARSAL", "Ada Administrator ada administrator",
                 "Alice Custodian alice custodian approved provision-root-key",
                 "Bob Custodian bob custodian", "Carol Custodian carol custodian",
                 "Wendy Witness wendy witness acknowledged open",
                 "Oscar Auditor oscar auditor",
                 grouped_hex(report.root_fingerprint), words(report.root_fingerprint),
                 grouped_hex(report.head), words(report.head),
                 grouped_hex(seal_digest), words(seal_digest)):
        assert fact in cover, fact


def test_every_entry_and_every_page(golden_pdf: Path) -> None:
    pages = pdftotext(golden_pdf, "-layout")
    report = verify_bundle(GOLDEN / "bundle")
    assert report.head
    text = "\n".join(pages)
    assert {int(n) for n in re.findall(r"#(\d+)\b", text)} == set(range(report.entries))
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        footer = flat(page)
        assert f"page {number} of {len(pages)}" in footer
        assert f"transcript head {report.head}" in footer
        assert "REHEARSAL" in footer
    # Approvals name their signers; the last page holds the signature lines.
    assert "approved by Alice Custodian (alice, custodian)" in flat(text)
    assert "acknowledged by Wendy Witness (wendy, witness)" in flat(text)
    last = flat(pages[-1])
    assert "Signatures" in last
    for who in ("Ada Administrator (ada), administrator", "Wendy Witness (wendy), witness",
                "Carol Custodian (carol), custodian", "Oscar Auditor (oscar), auditor"):
        assert who in last


def test_the_cover_qr_codes_decode_to_the_digests(golden_pdf: Path, tmp_path: Path) -> None:
    """Decoded here with pdftoppm and zbarimg alone: the fingerprint, the head and the seal
    line, each reassembled from its parts and checked against the digest they declare."""
    bundle = GOLDEN / "bundle"
    report = verify_bundle(bundle)
    frames = zbar(render(golden_pdf, 1, tmp_path, 150))
    by_payload: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for frame in frames:
        by_payload[frame.split(":")[4]].append(("page 1", frame))
    payloads = {p.kind: p for p in (reassemble(parts) for parts in by_payload.values())
                if p.kind == "json"}
    texts = sorted(reassemble(parts).data.decode() for parts in by_payload.values()
                   if parts[0][1].split(":")[2] == "TEXT")
    assert texts == sorted([
        f"ceremony sample-root-2026\nroot key fingerprint {report.root_fingerprint}\n",
        f"ceremony sample-root-2026\ntranscript head {report.head}\n"])
    seal_line = (bundle / "transcript.jsonl").read_bytes().splitlines()[-1]
    assert payloads["json"].data == seal_line
    assert payloads["json"].digest == report.head  # the seal line's hash is the head
    assert len(frames) == 2 + len(payloads["json"].frames())


def test_qr_decode_all_reads_a_rendered_cover(golden_pdf: Path, tmp_path: Path) -> None:
    """The online side's way: `qr decode --all` on the rendered page writes each payload
    (one image, three payloads: without --all it is refused as mixed)."""
    page = render(golden_pdf, 1, tmp_path, 150)
    mixed = run_cli("qr", "decode", str(page))
    assert mixed.returncode == 2 and "of another payload" in mixed.stderr
    result = run_cli("qr", "decode", "--all", str(page), "--out", str(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    report = verify_bundle(GOLDEN / "bundle")
    assert report.head and report.root_fingerprint
    written = {p.name: p.read_bytes() for p in (tmp_path / "d").iterdir()}
    assert len(written) == 3
    seal_line = (GOLDEN / "bundle" / "transcript.jsonl").read_bytes().splitlines()[-1]
    assert written[f"payload-{report.head[:16]}.json"] == seal_line
    texts = b"".join(v for k, v in sorted(written.items()) if k.endswith(".txt")).decode()
    assert f"root key fingerprint {report.root_fingerprint}\n" in texts
    assert f"transcript head {report.head}\n" in texts


def test_the_same_bundle_gives_the_same_bytes(golden_pdf: Path, tmp_path: Path) -> None:
    again = printed(tmp_path, GOLDEN / "bundle")
    assert again.read_bytes() == golden_pdf.read_bytes()
    seal_time = entries(GOLDEN / "bundle")[-1]["time"]
    assert isinstance(seal_time, str)
    stamp = re.sub(r"\D", "", seal_time[:19])
    assert f"/CreationDate (D:{stamp}Z".encode() in again.read_bytes()
    # Printing onto the same file again is harmless: same bytes, read back again.
    result = run_cli("print", str(GOLDEN / "bundle"), "--out", str(again))
    assert result.returncode == 0, result.stderr
    assert f"unchanged (the same bytes) {again}" in result.stdout


def test_rehearsal_watermark_on_every_page_and_never_on_production(
        golden_pdf: Path, tmp_path: Path, cast: Cast, policy_text: str) -> None:
    pages = len(pdftotext(golden_pdf))
    for page in range(1, pages + 1):
        assert watermark_pixels(golden_pdf, page, tmp_path) > 500, page
    production = fake_bundle(tmp_path / "production", cast, policy_text, rehearsal=False)
    pdf = printed(tmp_path, production, "production.pdf")
    text = pdftotext(pdf)
    assert "REHEARSAL" not in "".join(text)
    for page in range(1, len(text) + 1):
        assert watermark_pixels(pdf, page, tmp_path) == 0, page


def test_an_aborted_ceremony_prints_without_a_key(tmp_path: Path) -> None:
    bundle = GOLDEN / "aborted-bundle"
    pdf = printed(tmp_path, bundle)
    cover = flat(pdftotext(pdf, "-raw")[0])
    assert "aborted" in cover and "Root key fingerprint" not in cover
    frames = zbar(render(pdf, 1, tmp_path, 150))
    assert {f.split(":")[2] for f in frames} == {"TEXT", "JSON"}
    assert sum(f.split(":")[2] == "TEXT" for f in frames) == 1  # the head only
    text = "\n".join(pdftotext(pdf, "-layout"))
    assert {int(n) for n in re.findall(r"#(\d+)\b", text)} == set(range(len(entries(bundle))))


def test_an_unverifiable_bundle_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(GOLDEN / "bundle", bundle)
    path = bundle / "transcript.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"PROVISION ROOT KEY"', b'"PROVISION ROOT KEZ"'))
    result = run_cli("print", str(bundle))
    assert result.returncode == 1, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"ceremony: the bundle {bundle} does not verify (step ")
    assert first.endswith("so it is not printed [CER-CHAIN]")
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.pdf")) and not list(tmp_path.glob(".*.tmp"))


def test_never_inside_a_bundle_nor_over_another_file(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(GOLDEN / "bundle", bundle)
    result = run_cli("print", str(bundle), "--out", str(bundle / "transcript.pdf"))
    assert result.returncode == 2, result.stderr
    assert "is inside the bundle" in result.stderr
    assert verify_bundle(bundle).ok
    other = tmp_path / "bundle.transcript.pdf"
    other.write_bytes(b"%PDF-1.3 someone else's\n")
    result = run_cli("print", str(bundle))
    assert result.returncode == 2, result.stderr
    assert "already exists and is not this bundle's printout" in result.stderr
    assert other.read_bytes() == b"%PDF-1.3 someone else's\n"
    other.unlink()
    result = run_cli("print", str(bundle))  # the default: next to the bundle
    assert result.returncode == 0, result.stderr
    assert other.is_file() and f"the PDF is {other}" in result.stdout


class LyingReader:
    """A zbar that reads nothing but a foreign part: a smudged page would do the same."""

    def scan(self, image: Path) -> list[str]:
        return ["CQR:1:TEXT:1/1:" + "0" * 64 + ":MZXW6"]


def test_a_page_that_does_not_read_back_is_not_kept(tmp_path: Path) -> None:
    with pytest.raises(QrIntegrityError) as caught:
        write_printout(GOLDEN / "bundle", tmp_path / "x.pdf", reader=LyingReader())
    assert caught.value.requirement == "CER-QR"
    assert "page 1 of" in caught.value.message and "not read as drawn" in caught.value.message
    assert list(tmp_path.iterdir()) == []


class MissesOnce:
    """The real zbar, except that its first look at the page misses one code (zbar does
    that now and then with several codes on a page); ``always`` misses it every time."""

    def __init__(self, always: bool = False) -> None:
        self.looks = 0
        self.always = always

    def scan(self, image: Path) -> list[str]:
        self.looks += 1
        found = sorted(ZbarReader().scan(image))  # the same code missed every time
        return found[1:] if self.looks == 1 or self.always else found


def test_a_code_missed_at_one_resolution_is_looked_for_at_another(tmp_path: Path) -> None:
    reader = MissesOnce()
    write_printout(GOLDEN / "bundle", tmp_path / "x.pdf", reader=reader)
    assert (tmp_path / "x.pdf").is_file() and reader.looks > 1
    with pytest.raises(QrIntegrityError) as caught:
        write_printout(GOLDEN / "bundle", tmp_path / "y.pdf", reader=MissesOnce(always=True))
    assert "1 of its" in caught.value.message and "not read as drawn" in caught.value.message
    assert not (tmp_path / "y.pdf").exists()


def fake_cups(tmp_path: Path, default: str | None, lp_fails: bool = False) -> dict[str, str]:
    """`lpstat` and `lp` scripts on PATH: lp records its arguments and the file it got."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    said = (f"system default destination: {default}" if default
            else "no system default destination")
    (bin_dir / "lpstat").write_text(f"#!/bin/sh\necho '{said}'\n")
    lp = ("#!/bin/sh\necho 'lp: The printer or class does not exist.' >&2\nexit 1\n"
          if lp_fails else
          f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/lp-args\n'
          f'for last; do :; done\ncp "$last" {tmp_path}/printed.pdf\n'
          "echo 'request id is office-7 (1 file(s))'\n")
    (bin_dir / "lp").write_text(lp)
    for tool in ("lpstat", "lp"):
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_lp_prints_on_the_default_printer(tmp_path: Path) -> None:
    env = fake_cups(tmp_path, "office")
    out = tmp_path / "t.pdf"
    result = run_cli("print", str(GOLDEN / "bundle"), "--out", str(out), "--lp", env=env)
    assert result.returncode == 0, result.stderr
    assert f"sent {out} to printer office: request id is office-7 (1 file(s))" in result.stdout
    args = (tmp_path / "lp-args").read_text().splitlines()
    assert args == ["-d", "office", "-t", "ceremony sample-root-2026 transcript", "--",
                    str(out)]
    assert (tmp_path / "printed.pdf").read_bytes() == out.read_bytes()


def test_lp_without_a_printer_says_where_the_file_is(tmp_path: Path) -> None:
    env = fake_cups(tmp_path, None)
    out = tmp_path / "t.pdf"
    result = run_cli("print", str(GOLDEN / "bundle"), "--out", str(out), "--lp", env=env)
    assert result.returncode == 0, result.stderr
    assert f"no printer is configured (CUPS names no default destination: `lpstat -d`); " \
           f"the PDF is {out}" in result.stdout
    assert not (tmp_path / "lp-args").exists()


def test_a_printer_that_refuses_is_a_device_error(tmp_path: Path) -> None:
    env = fake_cups(tmp_path, "office", lp_fails=True)
    out = tmp_path / "t.pdf"
    result = run_cli("print", str(GOLDEN / "bundle"), "--out", str(out), "--printer",
                     "basement", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith(f"ceremony: lp could not print {out} on basement (lp: The "
                                    "printer or class does not exist.)")
    assert out.is_file()  # the PDF stays: it can be printed elsewhere


def test_rehearse_prints_its_transcript_into_the_bundle(tmp_path: Path) -> None:
    out = tmp_path / "r"
    result = run_cli("rehearse", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    bundle, pdf = out / "bundle", out / "bundle" / "transcript.pdf"
    assert f"printable transcript: {pdf} (inside the bundle" in result.stdout
    assert verify_bundle(bundle).ok  # covered by its signed checksum list (ADR 16)
    assert not (out / "bundle.transcript.pdf").exists()
    text = "\n".join(pdftotext(pdf, "-layout"))
    assert {int(n) for n in re.findall(r"#(\d+)\b", text)} == set(range(len(entries(bundle))))
    assert "REHEARSAL" in text
    again = run_cli("print", str(bundle), "--out", str(tmp_path / "copy.pdf"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "copy.pdf").read_bytes() == pdf.read_bytes()
    # The engine's printout is the one the sealed bundle lays out: the same bytes.
    from ceremony.adapters.transcript_pdf import render
    from ceremony.bundlefacts import load_verified
    from ceremony.printout import build_printout

    assert render(build_printout(load_verified(bundle, ""))).pdf == pdf.read_bytes()


def test_an_rsa_4096_key_with_certificate_and_csr(tmp_path: Path, policy_text: str) -> None:
    """The largest seal (an RSA-4096 root key signature) and both certificate rows: the
    seal's parts go on as many rows (and pages) as they need, and every one reads back."""
    from tests.test_certificates import CERTIFY

    template = sample_texts()[0].replace(*CERTIFY).replace(
        'algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 4096')
    cast = make_cast(template, SeededRandom("participants"))
    bundle = fake_bundle(tmp_path / "rsa", cast, policy_text, rehearsal=True)
    pdf = printed(tmp_path, bundle)
    cover = flat("".join(pdftotext(pdf, "-raw")[:2]))
    assert "Root key rsa-4096" in cover
    assert "Certificate root-certificate.pem: CN=Sample Root CA" in cover
    assert "CSR root-csr.pem: CN=Sample Root CA" in cover
    frames = [f for page in (1, 2) for f in zbar(render(pdf, page, tmp_path, 150))]
    seal_line = (bundle / "transcript.jsonl").read_bytes().splitlines()[-1]
    seal_parts = [("page", f) for f in frames if f.split(":")[2] == "JSON"]
    assert len(seal_parts) >= 5
    assert reassemble(seal_parts).data == seal_line
