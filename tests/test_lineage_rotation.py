"""A chain of three ceremonies: creation, recovery, rotation (ADR 11, ADR 14).

The creation and its recovery are the real chain of test_lineage.py (the sample ceremony
on one SoftHSM2 token and its recovery into a second, both through the CLI, rehearsal
bundles); the rotation is a new ceremony whose script's ``[previous]`` names the key, run
as test_lifecycle.py runs the compromise drill's replacement. Built once for the module;
each test alters its own copy of the rotation's record. Every lineage command runs in
this process (``ceremony.cli.main.main``) to keep the module fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ceremony.canonical import canonical_bytes
from ceremony.cli.main import main
from ceremony.lineage import parse
from ceremony.verify import verify_bundle
from tests.conftest import SOFTHSM_MODULE, SoftHsm, require
from tests.test_lifecycle import run_replacement
from tests.test_lineage import GOLDEN, ORIGINAL_ID, RECOVERY_ID, identities, resign
from tests.test_recovery import prepare_recovery

ROTATION_ID = "sample-root-2028-rotation"


@dataclass(frozen=True)
class Chain:
    original: Path  # the creation's bundle (sample-root-2026, SoftHSM2)
    recovery: Path  # its recovery's bundle (its original/ is the creation's copy)
    rotation: Path  # the rotation's bundle: a new key from a new seed
    records: Path  # the directory with the three records (BUNDLE.lineage.json names)
    ids: Path  # the custodians' rehearsal identity keys (the same people throughout)
    old_key: str
    new_key: str

    def record(self, name: str) -> Path:
        return self.records / f"{name}.lineage.json"


def rotation_script(text: str, key: str) -> str:
    """The creation's script as a rotation: a new ceremony id, the next version, and a
    ``[previous]`` table naming the key it replaces (before the first table)."""
    marker = f'ceremony_id = "{ORIGINAL_ID}"\n'
    assert marker in text
    text = text.replace(marker, f'ceremony_id = "{ROTATION_ID}"\n', 1)
    text, n = re.subn(r"(?m)^version = (\d+)$", lambda m: f"version = {int(m[1]) + 1}",
                      text, count=1)
    table = re.search(r"(?m)^\[", text)
    assert n == 1 and table is not None
    previous = (f'[previous]\nceremony = "{ORIGINAL_ID}"\nroot_fingerprint = "{key}"\n'
                'reason = "rotation"\n\n')
    return text[:table.start()] + previous + text[table.start():]


def cli(*args: str | Path, capsys: pytest.CaptureFixture[str] | None = None
        ) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


@pytest.fixture(scope="module")
def softhsm_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """conftest's ``softhsm``, once for the module: a fresh SoftHSM2 token directory."""
    require(shutil.which("softhsm2-util") is not None and Path(SOFTHSM_MODULE).is_file(),
            "SoftHSM2")
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    token = SoftHsm(directory, conf, "test-rotation", "123456")
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", token.label,
                    "--pin", token.pin, "--so-pin", token.so_pin], check=True,
                   capture_output=True, env=token.env)
    saved = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    yield token
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, softhsm_module: SoftHsm) -> Chain:
    base = tmp_path_factory.mktemp("chain")
    rec = prepare_recovery(base, softhsm_module)
    result = rec.run([("carol", rec.sheet("carol")), ("alice", rec.sheet("alice"))])
    assert result.returncode == 0, result.stdout + result.stderr
    ids = rec.original.directory / "identities"
    records = base / "records"
    creation_record = records / "original.lineage.json"
    recovery_record = records / "recovery.lineage.json"
    assert cli("lineage", "make", rec.original.out, "--identities", ids,
               "--out", creation_record)[0] == 0
    assert cli("lineage", "make", rec.out, "--identities", ids, "--previous",
               creation_record, "--out", recovery_record)[0] == 0
    old_key = verify_bundle(rec.original.out).root_fingerprint
    assert old_key
    # The rotation: the creation's script with [previous], its policy, the same people.
    directory = base / "rotation"
    directory.mkdir()
    script_path = directory / "script.toml"
    script_path.write_text(rotation_script(rec.original.script_path.read_text(), old_key))
    shutil.copyfile(rec.original.directory / "policy.toml", directory / "policy.toml")
    rotation = run_replacement(directory / "bundle", script_path, ids)
    new_key = verify_bundle(rotation).root_fingerprint
    assert new_key and new_key != old_key
    return Chain(rec.original.out, rec.out, rotation, records, ids, old_key, new_key)


@dataclass(frozen=True)
class Made:
    chain: Chain
    record: Path  # the rotation's record, a copy per test
    pristine: bytes


@pytest.fixture(scope="module")
def made(built: Chain) -> Made:
    record = built.record("rotation")
    code, _, _ = cli("lineage", "make", built.rotation, "--identities", built.ids,
                     "--previous", built.record("recovery"), "--previous-bundle",
                     built.recovery, "--out", record)
    assert code == 0
    return Made(built, record, record.read_bytes())


@pytest.fixture
def rotation_record(made: Made, tmp_path: Path) -> Path:
    copy = tmp_path / "rotation.lineage.json"
    copy.write_bytes(made.pristine)
    return copy


def first_line(err: str) -> str:
    return err.splitlines()[0] if err else ""


def verify(chain: Chain, record: Path, capsys: pytest.CaptureFixture[str],
           *extra: str | Path) -> tuple[int, str, str]:
    return cli("lineage", "verify", record, "--bundle", chain.rotation, *extra,
               capsys=capsys)


def test_a_chain_of_three_verifies_and_shows(made: Made, rotation_record: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    chain = made.chain
    document = parse(made.pristine, "rotation")
    recovery = parse(chain.record("recovery").read_bytes(), "recovery")
    record = document["record"]
    head = verify_bundle(chain.recovery).head
    assert record["previous"] == {"relation": "rotation", "ceremony": RECOVERY_ID,
                                  "transcript_head": head, "root_fingerprint": chain.old_key,
                                  "lineage": recovery}
    assert record["ceremony"]["kind"] == "rotation"
    assert record["ceremony"]["id"] == ROTATION_ID
    assert record["key"]["fingerprint"] == chain.new_key
    # The new key's own lifecycle (made and activated by the rotation), not the old key's.
    assert [t["ceremony"] for t in record["lifecycle"]["transitions"]] == [ROTATION_ID] * 2
    assert record["share_set"] != recovery["record"]["share_set"]

    code, out, err = verify(chain, rotation_record, capsys, "--previous-bundle",
                            chain.recovery)
    assert code == 0, err
    assert f"VERIFIED lineage of root key {chain.new_key}" in out
    assert "3 link(s), each checked against its verified bundle" in out
    assert f"1. creation: ceremony {ORIGINAL_ID} (REHEARSAL)" in out
    assert f"bundle {chain.recovery / 'original'}" in out
    assert f"2. recovery of link 1: ceremony {RECOVERY_ID} (REHEARSAL)" in out
    assert f"3. rotation of link 2: ceremony {ROTATION_ID} (REHEARSAL)" in out
    assert f"bundle {chain.rotation};" in out

    code, out, err = cli("lineage", "show", rotation_record, "--bundle", chain.rotation,
                         capsys=capsys)
    assert code == 0, err
    assert f"3. rotation of link 2: ceremony {ROTATION_ID}" in out
    assert f"new root key {chain.new_key}, replacing root key {chain.old_key} of link 2" in out

    # Without the replaced key's bundle, the link before the rotation cannot be checked.
    code, _, err = verify(chain, rotation_record, capsys)
    assert code == 1
    assert first_line(err) == (
        f"ceremony: lineage link 2 of 3 (ceremony {RECOVERY_ID}, recovery) has no bundle to "
        "check it against: it is the record of the key link 3 replaced, and that key's "
        "bundle was not given [CER-LINEAGE]")
    # One rotation, one replaced key's bundle: a second is a usage mistake (exit 2).
    code, _, err = verify(chain, rotation_record, capsys, "--previous-bundle",
                          chain.recovery, "--previous-bundle", chain.original)
    assert code == 2
    assert first_line(err) == ("ceremony: 2 previous bundle(s) given, but the lineage record "
                               "has 1 rotation link(s) that need one [CER-LINEAGE]")


def test_a_rotation_needs_the_record_its_previous_table_names(
        made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain = made.chain
    target = tmp_path / "rotation.lineage.json"
    code, _, err = cli("lineage", "make", chain.rotation, "--identities", chain.ids,
                       "--out", target, capsys=capsys)
    assert code == 1
    assert first_line(err) == (
        f"ceremony: ceremony {ROTATION_ID} made a new key that replaces root key "
        f"{chain.old_key} of ceremony {ORIGINAL_ID} (the [previous] table of its script): its "
        "lineage continues the old key's record, which was not given [CER-LINEAGE]")
    # Another key's record (the golden bundle's, a verified record of its own).
    golden = tmp_path / "golden" / "bundle"
    shutil.copytree(GOLDEN / "bundle", golden)
    from ceremony.rehearsal import make_cast, sample_texts
    from tests.fakes import SeededRandom

    golden_ids = identities(tmp_path / "golden-ids",
                            make_cast(sample_texts()[0], SeededRandom("participants")))
    assert cli("lineage", "make", golden, "--identities", golden_ids)[0] == 0
    foreign = golden.parent / "bundle.lineage.json"
    golden_key = parse(foreign.read_bytes(), "golden")["record"]["key"]["fingerprint"]
    assert golden_key != chain.old_key
    code, _, err = cli("lineage", "make", chain.rotation, "--identities", chain.ids,
                       "--previous", foreign, "--out", target, capsys=capsys)
    assert code == 1
    assert first_line(err) == (
        f"ceremony: the previous lineage record given is of root key {golden_key} made by "
        f"ceremony {ORIGINAL_ID}, not of root key {chain.old_key} of ceremony {ORIGINAL_ID} "
        f"that the script of ceremony {ROTATION_ID} replaces [CER-LINEAGE]")
    assert not target.exists()
    # The replaced key's creation record is a record of that key too: its bundle is the
    # one next to it by default, here given.
    code, out, err = cli("lineage", "make", chain.rotation, "--identities", chain.ids,
                         "--previous", chain.record("original"), "--previous-bundle",
                         chain.original, "--out", target, capsys=capsys)
    assert code == 0, err
    assert "2 link(s) back to the seed's ceremony" in out
    code, _, err = verify(chain, target, capsys, "--previous-bundle", chain.original)
    assert code == 0, err


def _rotation_link(doc: dict[str, Any]) -> None:
    doc["record"]["previous"]["transcript_head"] = "0" * 64


def _recovery_embedded(doc: dict[str, Any]) -> None:
    doc["record"]["previous"]["lineage"]["record"]["ceremony"]["transcript_head"] = "0" * 64


def _creation_record(doc: dict[str, Any]) -> None:
    inner = doc["record"]["previous"]["lineage"]["record"]["previous"]["lineage"]
    inner["record"]["share_set"]["identifier"] ^= 1


def _rotation_new_key(doc: dict[str, Any]) -> None:
    doc["record"]["key"]["fingerprint"] = "ab" * 32


@pytest.mark.parametrize(("change", "link", "says"), [
    (_rotation_link, 3, "record.previous.transcript_head is not what the bundle {rotation} "
                        "records"),
    (_rotation_new_key, 3, "record.key.fingerprint is not what the bundle {rotation} records"),
    (_recovery_embedded, 2, "record.ceremony.transcript_head is not what the bundle "
                            "{recovery} records"),
    (_creation_record, 1, "record.share_set.identifier is not what the bundle "
                          "{recovery}/original records"),
], ids=["rotation-link", "rotation-key", "recovery-record", "creation-record"])
@pytest.mark.parametrize("sign", [False, True], ids=["unsigned", "re-signed"])
def test_altering_any_link_breaks_the_chain_naming_it(
        made: Made, rotation_record: Path, capsys: pytest.CaptureFixture[str],
        change: Callable[[dict[str, Any]], None], link: int, says: str, sign: bool) -> None:
    """Altered, and (re-signed) signed again by the custodians at every level, as someone
    holding their keys would: only the comparison with each bundle catches it."""
    chain = made.chain
    document = json.loads(made.pristine)
    change(document)
    if sign:
        recovery = document["record"]["previous"]["lineage"]
        resign(recovery["record"]["previous"]["lineage"], chain.ids, ["alice", "bob"])
        resign(recovery, chain.ids, ["alice", "bob"])
        resign(document, chain.ids, ["alice", "bob"])
    rotation_record.write_bytes(canonical_bytes(document) + b"\n")
    code, _, err = verify(chain, rotation_record, capsys, "--previous-bundle",
                          chain.recovery)
    assert code == 1, err
    name = {1: f"{ORIGINAL_ID}, creation", 2: f"{RECOVERY_ID}, recovery",
            3: f"{ROTATION_ID}, rotation"}[link]
    assert first_line(err) == (
        f"ceremony: lineage link {link} of 3 (ceremony {name}) is broken: "
        + says.format(rotation=chain.rotation, recovery=chain.recovery) + " [CER-LINEAGE]")


def test_status_knows_both_keys_and_follows_the_rotation(
        made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    """`ceremony status` finds the replaced key's bundle by transcript head to verify the
    rotation's record; the new key was made by the rotation."""
    chain = made.chain
    code, out, err = cli("status", chain.records.parent, "--json", capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    assert [(r["ceremony"], r["valid"]) for r in report["lineage"]] == [
        (ORIGINAL_ID, True), (RECOVERY_ID, True), (ROTATION_ID, True)]
    keys = {k["fingerprint"]: k for k in report["keys"]}
    assert sorted(keys) == sorted([chain.old_key, chain.new_key])
    old, new = keys[chain.old_key], keys[chain.new_key]
    assert (old["ceremony"], old["last_ceremony"]["kind"]) == (ORIGINAL_ID, "recovery")
    assert (new["ceremony"], new["last_ceremony"]["id"], new["last_ceremony"]["kind"]) == (
        ROTATION_ID, ROTATION_ID, "rotation")
    assert new["lineage"] == str(chain.record("rotation"))
