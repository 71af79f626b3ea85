"""`ceremony hsm inventory`: the token's objects, and drift from what ceremonies recorded.

After a real headless ceremony on SoftHSM2 the token is changed behind the tool's back,
with pkcs11-tool or python-pkcs11 (never with our adapter), and the inventory must flag
it: an extra object as unknown, a destroyed root key as missing, a key whose attributes or
public key are not those recorded as differs. A bundle that does not verify is refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from ceremony.inventory import ExpectedObject, FoundObject, build_inventory, compare, render
from tests.conftest import SoftHsm, run_cli
from tests.test_crash import Ceremony, prepare_ceremony

ED25519 = encode_named_curve_parameters("1.3.101.112")
# RFC 8032 section 7.1 TEST 1: a key that is certainly not the ceremony's.
OTHER_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
OTHER_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


@pytest.fixture
def done(tmp_path: Path, softhsm: SoftHsm) -> Ceremony:
    """A completed, verified ceremony on a fresh token."""
    c = prepare_ceremony(tmp_path / "ceremony", softhsm)
    result = c.run()
    assert result.returncode == 0, result.stderr
    return c


def inventory(c: Ceremony, *bundles: Path, as_json: bool = False) -> subprocess.CompletedProcess[
        str]:
    extra = [arg for b in bundles for arg in ("--bundle", str(b))]
    return run_cli("hsm", "inventory", "--token", c.softhsm.uri, "--module", c.softhsm.module,
                   "--pin-file", str(c.pin_path), *extra, *(["--json"] if as_json else []),
                   env=c.softhsm.env)


def findings(c: Ceremony) -> list[dict[str, Any]]:
    result = inventory(c, c.out, as_json=True)
    report = json.loads(result.stdout)
    assert result.returncode == (1 if report["drift"] else 0), result.stderr
    assert report["drift"] == bool(report["findings"])
    return list(report["findings"])


def session(softhsm: SoftHsm) -> Any:
    """A python-pkcs11 session of the test's own (not the adapter's), logged in."""
    lib = pkcs11.lib(softhsm.module)
    lib.reinitialize()
    return lib.get_token(token_label=softhsm.label).open(rw=True, user_pin=softhsm.pin)


def root_objects(s: Any, c: Ceremony) -> dict[str, Any]:
    rk = c.script.root_key
    objects = list(s.get_objects({Attribute.LABEL: rk.label}))
    return {("private" if o.object_class == ObjectClass.PRIVATE_KEY else "public"): o
            for o in objects}


def test_no_drift_after_a_ceremony(done: Ceremony) -> None:
    result = inventory(done, done.out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.startswith("private EC_EDWARDS sample root key") and " S- " in line
               and line.endswith(" ok") for line in lines), result.stdout
    assert "no drift: the token holds exactly what sample-root-2026 recorded" in lines

    report = json.loads(inventory(done, done.out, as_json=True).stdout)
    assert report["drift"] is False
    assert report["findings"] == []
    created = next(e["payload"] for e in done.entries() if e["event"] == "root_key.created")
    by_class = {o["class"]: o for o in report["objects"]}
    assert set(by_class) == {"private_key", "public_key"}  # the transcript key is gone
    assert by_class["public_key"]["fingerprint"] == created["fingerprint"]
    assert (by_class["private_key"]["sensitive"], by_class["private_key"]["extractable"]) == (
        True, False)
    assert all(o["status"] == "ok" for o in report["objects"])


def test_listing_without_a_bundle(done: Ceremony) -> None:
    result = inventory(done)
    assert result.returncode == 0, result.stderr
    assert "no bundle given: nothing compared" in result.stdout
    assert result.stdout.count("sample root key") == 2


def test_an_object_no_ceremony_created_is_unknown(done: Ceremony) -> None:
    tool = shutil.which("pkcs11-tool")
    assert tool
    subprocess.run([tool, "--module", done.softhsm.module, "--token-label", done.softhsm.label,
                    "--login", "--pin", done.softhsm.pin, "--keypairgen", "--key-type",
                    "EC:prime256v1", "--label", "smuggled", "--id", "99"],
                   capture_output=True, check=True, env=done.softhsm.env)
    found = findings(done)
    assert sorted((f["kind"], f["label"], f["id"], f["class"]) for f in found) == [
        ("unknown", "smuggled", "99", "private_key"), ("unknown", "smuggled", "99", "public_key")]
    result = inventory(done, done.out)
    assert result.returncode == 1
    assert "DRIFT: 2 finding(s) against sample-root-2026" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_a_destroyed_root_key_is_missing(done: Ceremony) -> None:
    tool = shutil.which("pkcs11-tool")
    assert tool
    subprocess.run([tool, "--module", done.softhsm.module, "--token-label", done.softhsm.label,
                    "--login", "--pin", done.softhsm.pin, "--delete-object", "--type",
                    "privkey", "--label", done.script.root_key.label],
                   capture_output=True, check=True, env=done.softhsm.env)
    found = findings(done)
    assert [(f["kind"], f["class"]) for f in found] == [("missing", "private_key")]
    assert "that ceremony sample-root-2026 created is not on the token" in found[0]["detail"]


def test_a_weakened_private_key_differs(done: Ceremony) -> None:
    """The root private key swapped for an extractable, not sensitive one (same label, id)."""
    rk = done.script.root_key
    with session(done.softhsm) as s:
        root_objects(s, done)["private"].destroy()
        s.create_object({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                         Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.TOKEN: True,
                         Attribute.LABEL: rk.label, Attribute.ID: bytes.fromhex(rk.key_id),
                         Attribute.EC_PARAMS: ED25519, Attribute.VALUE: OTHER_SECRET,
                         Attribute.PRIVATE: True, Attribute.SENSITIVE: False,
                         Attribute.EXTRACTABLE: True, Attribute.SIGN: True})
    found = findings(done)
    assert [(f["kind"], f["class"]) for f in found] == [("differs", "private_key")]
    assert "sensitive flag is false, recorded true" in found[0]["detail"]
    assert "extractable flag is true, recorded false" in found[0]["detail"]


def test_a_replaced_public_key_differs(done: Ceremony) -> None:
    rk = done.script.root_key
    with session(done.softhsm) as s:
        root_objects(s, done)["public"].destroy()
        s.create_object({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                         Attribute.KEY_TYPE: KeyType.EC_EDWARDS, Attribute.TOKEN: True,
                         Attribute.LABEL: rk.label, Attribute.ID: bytes.fromhex(rk.key_id),
                         Attribute.EC_PARAMS: ED25519,
                         Attribute.EC_POINT: b"\x04\x20" + OTHER_PUBLIC})
    found = findings(done)
    # The private key takes its fingerprint from the (now wrong) public key beside it.
    assert sorted((f["kind"], f["class"]) for f in found) == [("differs", "private_key"),
                                                               ("differs", "public_key")]
    assert all("public key fingerprint is" in f["detail"] for f in found)


def test_a_relabelled_root_key_differs(done: Ceremony) -> None:
    with session(done.softhsm) as s:
        for obj in root_objects(s, done).values():
            obj[Attribute.LABEL] = "renamed"
    found = findings(done)
    assert sorted((f["kind"], f["class"]) for f in found) == [("differs", "private_key"),
                                                               ("differs", "public_key")]
    assert all("label is 'renamed', recorded 'sample root key'" in f["detail"] for f in found)


def test_an_unverified_bundle_is_refused(done: Ceremony, tmp_path: Path) -> None:
    altered = tmp_path / "altered"
    shutil.copytree(done.out, altered)
    transcript = altered / "transcript.jsonl"
    transcript.write_bytes(transcript.read_bytes().replace(b"sample root key", b"sample root kez"))
    result = inventory(done, altered)
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"ceremony: the bundle {altered} does not verify (")
    assert first.endswith("so the inventory cannot trust what it says was created "
                          "[CER-INVENTORY]")
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- the pure comparison

def test_compare_without_a_token() -> None:
    """Leftover transcript key, and an expected object found nowhere, with plain records."""
    found = [FoundObject("ceremony-transcript x", "aa", "private_key", "EC_EDWARDS", True,
                         False),
             FoundObject("k", "01", "public_key", "EC_EDWARDS", fingerprint="f" * 64)]
    expected = [ExpectedObject("x", "transcript key", "ceremony-transcript x", "aa",
                               "private_key", "EC_EDWARDS", present=False),
                ExpectedObject("x", "root key", "k", "01", "public_key", "EC_EDWARDS",
                               fingerprint="f" * 64),
                ExpectedObject("x", "root key", "k", "01", "private_key", "EC_EDWARDS", True,
                               False, "f" * 64)]
    drift, status = compare(found, expected)
    assert [(f.kind, f.object_class) for f in drift] == [("leftover", "private_key"),
                                                         ("missing", "private_key")]
    assert status == {0: "leftover", 1: "ok"}
    text = render(build_inventory({"label": "t", "serial": "1", "model": "m"}, found,
                                  [({"bundle": "b", "ceremony": "x", "outcome": "completed"},
                                    expected)]))
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "DRIFT: 2 finding(s) against x" in text
