"""QR parts of the bundle's public files, each decoded back with zbar before it counts.

Issue 7's read-back: the root public key, the root certificate and the CSR get QR parts
in BUNDLE/qr inside the step that makes them; a part that does not decode back to its
file fails the step, which is rolled back with the parts removed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ceremony.adapters.qrcodes import BundleCodes, decode_images
from ceremony.engine.prompts import Proceed, TypedConfirmation
from ceremony.errors import CheckFailed
from ceremony.verify.core import verify_bundle
from tests.conftest import SoftHsm, require, run_cli
from tests.test_certificates import CERTIFY
from tests.test_crash import prepare_ceremony
from tests.test_engine import PHRASE, _start, _to_confirmation


def _zbar() -> None:
    require(shutil.which("zbarimg") is not None, "zbar-tools (zbarimg)")


def _pem_body(path: Path) -> bytes:
    data = path.read_bytes()
    return data.split(b"\n", 1)[1] if data.startswith(b"REHEARSAL") else data


def _completed_files(bundle: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for line in (bundle / "transcript.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["event"] == "action.completed":
            files.update(entry["payload"]["files"])
    return files


def test_a_rehearsal_bundle_carries_its_public_key_as_qr(tmp_path: Path) -> None:
    _zbar()
    result = run_cli("rehearse", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    bundle = tmp_path / "r" / "bundle"
    parts = sorted((bundle / "qr").glob("*.png"))
    assert [p.name for p in parts] == ["root-public-key-REHEARSAL-qr-1-of-1.png"]
    assert decode_images(parts).data == _pem_body(bundle / "root-public-key.pem")
    assert "qr/root-public-key-REHEARSAL-qr-1-of-1.png" in _completed_files(bundle)
    assert "qr/root-public-key-REHEARSAL-qr-1-of-1.png" in (bundle / "SHA256SUMS").read_text()
    assert verify_bundle(bundle).ok
    decoded = run_cli("qr", "decode", *map(str, parts), "--out", str(tmp_path / "d"))
    assert decoded.returncode == 0, decoded.stderr
    [written] = list((tmp_path / "d").iterdir())
    assert written.read_bytes() == _pem_body(bundle / "root-public-key.pem")


def test_certificate_and_csr_parts_decode_to_their_files(tmp_path: Path,
                                                        softhsm: SoftHsm) -> None:
    _zbar()
    c = prepare_ceremony(tmp_path / "c", softhsm, script_edit=CERTIFY)
    assert c.run().returncode == 0
    qr = c.out / "qr"
    for stem, name in (("root-certificate", "root-certificate.pem"),
                       ("root-csr", "root-csr.pem")):
        parts = sorted(qr.glob(f"{stem}-REHEARSAL-qr-*.png"))
        assert parts, stem
        assert decode_images(parts).data == _pem_body(c.out / name)
        for part in parts:
            assert f"qr/{part.name}" in _completed_files(c.out)
    assert c.verify().returncode == 0


class LyingReader:
    """A zbar that reads something else: the fault a real printer smudge would cause."""

    def scan(self, image: Path) -> list[str]:
        return ["CQR:1:TEXT:1/1:" + "0" * 64 + ":MZXW6"]


def test_a_part_that_does_not_read_back_fails_the_step(tmp_path: Path) -> None:
    run = _start(tmp_path)
    run.engine.devices.codes = BundleCodes(reader=LyingReader())
    _to_confirmation(run)
    run.engine.submit(TypedConfirmation(PHRASE))
    with pytest.raises(CheckFailed) as info:
        run.engine.submit(Proceed())
    assert info.value.requirement == "CER-QR"
    assert run.events()[-1] == "action.rolled_back"
    rolled = json.loads(run.transcript.read_text().splitlines()[-1])["payload"]
    assert "root-public-key.pem" in rolled["removed_files"]
    assert not any((run.bundle / "qr").glob("*"))  # the parts went with the rollback
    assert not (run.bundle / "root-public-key.pem").exists()
    assert run.secrets.shares == {}
