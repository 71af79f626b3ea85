"""The lineage record: made from a verified bundle, signed by a quorum of its custodians,
verified link by link back to the seed's ceremony, and read back from QR codes.

The golden bundle with its seeded custodians' keys for the single-link cases and the
refusals; a real chain (an original ceremony and its recovery into a second SoftHSM2 token,
both through the CLI) for the walk back, where altering either link names that link.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.openpgp_card import CardSigner
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import canonical_bytes, digest, sha256_hex
from ceremony.cli.main import main
from ceremony.engine.core import Devices, Engine
from ceremony.headless import run_headless
from ceremony.lineage import TRANSITIONS, shape_problem
from ceremony.model import statements as st
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import Cast, make_cast, sample_texts, simulated_answers
from ceremony.verify import verify_bundle
from tests.conftest import REPO, SoftHsm, run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.pcsc_fixtures import VirtualCard
from tests.test_isolation import BLOCKED
from tests.test_openpgp_card import PIN, enrolled
from tests.test_print import fake_bundle, flat, pdftotext

GOLDEN = Path(__file__).resolve().parent / "vectors" / "golden"
ORIGINAL_ID = "sample-root-2026"
RECOVERY_ID = "sample-root-2026-recovery-1"


def identities(directory: Path, cast: Cast) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for pid, signer in cast.signers.items():
        assert isinstance(signer, KeyFileSigner)
        signer.save(directory / f"{pid}.pem")
    return directory


def entries(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (bundle / "transcript.jsonl").read_text().splitlines()]


def load(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_bytes())
    assert isinstance(value, dict)
    return value


def store(path: Path, document: dict[str, Any]) -> None:
    path.write_bytes(canonical_bytes(document) + b"\n")


def resign(document: dict[str, Any], keys: Path, who: list[str]) -> None:
    """Sign the (altered) record again with these custodians' keys, as an attacker holding
    them would: only the comparison with the bundle can catch what changed."""
    message = canonical_bytes(document["record"])
    document["signatures"] = [
        {"participant": p, "signature": st.b64(KeyFileSigner.load(p, keys / f"{p}.pem")
                                                .sign(message))} for p in sorted(who)]


def first_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()[0] if result.stderr else ""


@pytest.fixture
def golden(tmp_path: Path, cast: Cast) -> tuple[Path, Path]:
    """A copy of the golden bundle (records go next to it) and its custodians' keys."""
    bundle = tmp_path / "bundle"
    shutil.copytree(GOLDEN / "bundle", bundle)
    return bundle, identities(tmp_path / "ids", cast)


@pytest.fixture
def golden_record(golden: tuple[Path, Path]) -> Path:
    bundle, ids = golden
    result = run_cli("lineage", "make", str(bundle), "--identities", str(ids))
    assert result.returncode == 0, result.stdout + result.stderr
    return bundle.parent / "bundle.lineage.json"


def test_a_record_states_what_the_bundle_says(golden: tuple[Path, Path],
                                              golden_record: Path) -> None:
    bundle, ids = golden
    data = golden_record.read_bytes()
    document = load(golden_record)
    assert data == canonical_bytes(document) + b"\n"  # canonical, one line
    report = verify_bundle(bundle)
    items = entries(bundle)
    (created,) = [e for e in items if e["event"] == "root_key.created"]
    (shares,) = [e["payload"] for e in items if e["event"] == "shares.created"]
    seal = items[-1]
    record = document["record"]
    assert record["type"] == "ceremony.lineage.v1"
    assert record["key"] == {k: created["payload"][k] for k in ("kind", "label", "id",
                                                                 "public_key", "fingerprint")}
    assert record["key"]["fingerprint"] == report.root_fingerprint
    assert record["share_set"] == {"scheme": "slip39", "identifier": shares["identifier"],
                                   "seed_fingerprint": shares["seed_fingerprint"],
                                   "group_threshold": 1,
                                   "groups": [{"threshold": 2, "count": 3}]}
    assert record["certificates"] == []
    assert record["ceremony"] == {
        "id": ORIGINAL_ID, "kind": "creation", "rehearsal": True,
        "script_sha256": sha256_hex((bundle / "script.toml").read_bytes()),
        "policy_sha256": sha256_hex((bundle / "policy.toml").read_bytes()),
        "transcript_head": report.head,
        "seal": {"outcome": "completed", "time": seal["time"], "entries": seal["seq"],
                 "sha256": digest(seal["payload"]["statement"])}}
    assert record["previous"] is None
    assert record["lifecycle"] == {"state": "active", "transitions": [
        {"state": "pre-activation", "time": created["time"], "ceremony": ORIGINAL_ID,
         "reason": f"generated and installed in the token (transcript seq {created['seq']})"},
        {"state": "active", "time": seal["time"], "ceremony": ORIGINAL_ID,
         "reason": "the ceremony completed and was sealed"}]}
    script_keys = {p: KeyFileSigner.load(p, ids / f"{p}.pem").public_key
                   for p in ("alice", "bob", "carol")}
    assert record["signers"]["step"] == "provision-root-key"
    assert record["signers"]["threshold"] == 2
    assert {e["participant"]: e["public_key"] for e in record["signers"]["eligible"]} == \
        script_keys
    assert [s["participant"] for s in document["signatures"]] == ["alice", "bob", "carol"]

    shown = run_cli("lineage", "show", str(bundle))
    assert shown.returncode == 0, shown.stderr
    assert f"1. creation: ceremony {ORIGINAL_ID} (REHEARSAL), completed {seal['time']}" in \
        shown.stdout
    assert "signatures valid" in shown.stdout and "pre-activation" in shown.stdout
    verified = run_cli("lineage", "verify", str(golden_record))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"VERIFIED lineage of root key {report.root_fingerprint}" in verified.stdout
    assert f"1. creation: ceremony {ORIGINAL_ID} (REHEARSAL), head {report.head}" in \
        verified.stdout
    again = run_cli("lineage", "make", str(bundle), "--identities", str(ids))
    assert again.returncode == 0 and f"unchanged {golden_record}" in again.stdout
    assert golden_record.read_bytes() == data  # Ed25519 is deterministic: the same record


@pytest.mark.parametrize(("signers", "says"), [
    (["alice"], "the lineage of ceremony sample-root-2026 needs the signatures of 2 of the "
                "approvers of step provision-root-key (alice, bob, carol); 1 given (alice)"),
    (["alice", "wendy"], "wendy cannot sign the lineage of ceremony sample-root-2026: its "
                         "signers are the approvers of step provision-root-key (alice, bob, "
                         "carol)"),
    (["alice=bob", "bob"], "the key given for alice is not alice's identity key in the script "
                           "of the bundle"),
], ids=["too-few", "not-an-approver", "someone-elses-key"])
def test_signers_are_a_quorum_of_the_key_steps_approvers(
        golden: tuple[Path, Path], signers: list[str], says: str) -> None:
    bundle, ids = golden
    args = []
    for item in signers:
        who, _, whose = item.partition("=")
        args += ["--identity", f"{who}={ids / f'{whose or who}.pem'}"]
    result = run_cli("lineage", "make", str(bundle), *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert first_error(result) == f"ceremony: {says} [CER-LINEAGE]"
    assert not (bundle.parent / "bundle.lineage.json").exists()


def test_key_files_only_for_a_rehearsal_and_no_key_no_lineage(
        tmp_path: Path, cast: Cast, policy_text: str) -> None:
    production = fake_bundle(tmp_path / "p", cast, policy_text, rehearsal=False)
    ids = identities(tmp_path / "ids", cast)
    result = run_cli("lineage", "make", str(production), "--identities", str(ids))
    assert result.returncode == 2, result.stderr
    assert first_error(result) == ("ceremony: plain identity key files are allowed only for a "
                                   "rehearsal's bundle [CER-IDENTITY]")
    aborted = tmp_path / "aborted"
    shutil.copytree(GOLDEN / "aborted-bundle", aborted)
    result = run_cli("lineage", "make", str(aborted), "--identities", str(ids))
    assert result.returncode == 1, result.stderr
    assert "did not complete (outcome aborted), so it left no key" in first_error(result)
    inside = run_cli("lineage", "make", str(aborted), "--identities", str(ids), "--out",
                     str(aborted / "lineage.json"))
    assert inside.returncode == 2 and "is inside the bundle" in first_error(inside)


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _suspend(record: dict[str, Any]) -> None:
    record["lifecycle"]["transitions"].append(
        {"state": "suspended", "time": "2026-06-01T00:00:00.000000Z", "ceremony": ORIGINAL_ID,
         "reason": "forged"})
    record["lifecycle"]["state"] = "suspended"


@pytest.mark.parametrize(("change", "field"), [
    (_set(["key", "fingerprint"], "ab" * 32), "record.key.fingerprint"),
    (_set(["share_set", "identifier"], 1), "record.share_set.identifier"),
    (_set(["ceremony", "transcript_head"], "cd" * 32), "record.ceremony.transcript_head"),
    (_set(["ceremony", "rehearsal"], False), "record.ceremony.rehearsal"),
    (_suspend, "record.lifecycle.state"),
    (_set(["signers", "threshold"], 1), "record.signers.threshold"),
], ids=["fingerprint", "share-set", "head", "rehearsal-flag", "lifecycle", "threshold"])
def test_an_altered_record_is_refused_naming_the_field(
        golden: tuple[Path, Path], golden_record: Path,
        change: Callable[[dict[str, Any]], None], field: str) -> None:
    """Altered and signed again by every custodian: the signatures verify, the comparison
    with the bundle does not."""
    bundle, ids = golden
    document = load(golden_record)
    change(document["record"])
    resign(document, ids, ["alice", "bob", "carol"])
    store(golden_record, document)
    result = run_cli("lineage", "verify", str(golden_record))
    assert result.returncode == 1, result.stdout + result.stderr
    assert first_error(result) == (
        f"ceremony: lineage link 1 of 1 (ceremony {ORIGINAL_ID}, creation) is broken: {field} "
        f"is not what the bundle {bundle} records [CER-LINEAGE]")


def _drop_signatures(document: dict[str, Any]) -> None:
    document["signatures"] = document["signatures"][:1]


def _foreign_signer(document: dict[str, Any]) -> None:
    document["signatures"][0]["participant"] = "wendy"


def _swapped_signature(document: dict[str, Any]) -> None:
    document["signatures"][1]["signature"] = document["signatures"][2]["signature"]


def _unsigned_change(document: dict[str, Any]) -> None:
    document["record"]["key"]["label"] = "sample root kez"


@pytest.mark.parametrize(("change", "says"), [
    (_drop_signatures, "carries 1 valid signature(s); it needs 2 of the approvers of step "
                       "provision-root-key"),
    (_foreign_signer, "is signed by wendy, who is not among its signers (alice, bob, carol)"),
    (_swapped_signature, ": the signature of bob does not verify"),
    (_unsigned_change, "is broken: record.key.label is not what the bundle"),
], ids=["below-threshold", "foreign-signer", "swapped-signature", "unsigned-change"])
def test_signatures_must_reach_the_threshold(golden_record: Path,
                                             change: Callable[[dict[str, Any]], None],
                                             says: str) -> None:
    document = load(golden_record)
    change(document)
    store(golden_record, document)
    result = run_cli("lineage", "verify", str(golden_record))
    assert result.returncode == 1, result.stdout + result.stderr
    line = first_error(result)
    assert line.startswith(f"ceremony: lineage link 1 of 1 (ceremony {ORIGINAL_ID}, "
                           "creation)"), line
    assert says in line and line.endswith("[CER-LINEAGE]")


def test_malformed_records_are_refused(golden_record: Path, tmp_path: Path) -> None:
    document = load(golden_record)
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(document, indent=2) + "\n")
    extra = tmp_path / "extra.json"
    store(extra, {**document, "note": "x"})
    for path, says in ((pretty, "is not a lineage record: one line of canonical JSON"),
                       (extra, "is not a well-formed lineage record: the document has members")):
        result = run_cli("lineage", "show", str(path))
        assert result.returncode == 2, result.stderr
        assert first_error(result).startswith(f"ceremony: {path}: {says}")


def test_lifecycle_follows_sp_800_57() -> None:
    """The transitions of SP 800-57 Part 1 Rev. 5, figure 3, and nothing else."""
    assert TRANSITIONS[None] == {"pre-activation"}
    assert TRANSITIONS["active"] == {"suspended", "deactivated", "compromised"}
    assert TRANSITIONS["destroyed"] == frozenset()
    assert "active" not in TRANSITIONS["deactivated"]


@pytest.mark.parametrize(("states", "ok"), [
    (["pre-activation", "active", "suspended", "active", "deactivated", "destroyed"], True),
    (["pre-activation", "compromised", "destroyed"], True),
    (["active"], False),
    (["pre-activation", "active", "destroyed"], False),
    (["pre-activation", "destroyed", "active"], False),
])
def test_lifecycle_shapes(golden_record: Path, states: list[str], ok: bool) -> None:
    document = load(golden_record)
    document["record"]["lifecycle"] = {"state": states[-1], "transitions": [
        {"state": s, "time": f"2026-0{i + 1}-01T00:00:00.000000Z", "ceremony": ORIGINAL_ID,
         "reason": "-"} for i, s in enumerate(states)]}
    problem = shape_problem(document, "")
    assert (problem is None) == ok, problem


def test_a_record_through_qr_codes(golden_record: Path, tmp_path: Path) -> None:
    """`qr encode` takes the record as JSON; `qr decode` gives it back byte for byte after
    checking its signatures, and refuses an altered one (encoded from an altered file)."""
    encoded = run_cli("qr", "encode", str(golden_record), "--type", "json", "--out",
                      str(tmp_path / "qr"))
    assert encoded.returncode == 0, encoded.stderr
    parts = sorted((tmp_path / "qr").glob("*.png"))
    decoded = run_cli("qr", "decode", *map(str, reversed(parts)), "--out", str(tmp_path / "d"))
    assert decoded.returncode == 0, decoded.stderr
    [written] = list((tmp_path / "d").iterdir())
    assert written.read_bytes() == golden_record.read_bytes()

    altered = tmp_path / "altered.lineage.json"
    document = load(golden_record)
    document["record"]["ceremony"]["rehearsal"] = False
    store(altered, document)
    run_cli("qr", "encode", str(altered), "--out", str(tmp_path / "qr2"))
    refused = run_cli("qr", "decode", *map(str, (tmp_path / "qr2").glob("*.png")), "--out",
                      str(tmp_path / "d2"))
    assert refused.returncode == 1, refused.stderr
    assert "lineage link 1: the signature of alice does not verify" in first_error(refused)
    assert not (tmp_path / "d2").exists() or not any((tmp_path / "d2").iterdir())


VERIFY_BLOCKED = """
import sys
from pathlib import Path
BLOCKED = {blocked!r}

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
from ceremony.lineage import parse, verify_chain
record = Path({record!r})
links = verify_chain(parse(record.read_bytes(), record.name), Path({bundle!r}))
print("verified", len(links), sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


def test_lineage_verifies_without_device_libraries(golden: tuple[Path, Path],
                                                   golden_record: Path) -> None:
    """As on an auditor's machine: only Python and cryptography (and no PDF library)."""
    code = VERIFY_BLOCKED.format(blocked=(*BLOCKED, "fpdf"), record=str(golden_record),
                                 bundle=str(golden[0]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "verified 1 []"


def test_a_real_rehearsal_gets_its_lineage(tmp_path: Path) -> None:
    """`ceremony rehearse`, then the command its summary suggests."""
    out = tmp_path / "r"
    rehearsed = run_cli("rehearse", "--out", str(out))
    assert rehearsed.returncode == 0, rehearsed.stdout + rehearsed.stderr
    suggested = f"`ceremony lineage make {out / 'bundle'} --identities " \
                f"{out / 'secret'}/identities`"
    assert suggested in rehearsed.stdout
    made = run_cli("lineage", "make", str(out / "bundle"), "--identities",
                   str(out / "secret" / "identities"))
    assert made.returncode == 0, made.stdout + made.stderr
    record = out / "bundle.lineage.json"
    assert verify_bundle(out / "bundle").ok  # the record is next to the bundle, not in it
    verified = run_cli("lineage", "verify", str(record))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = verify_bundle(out / "bundle")
    assert f"VERIFIED lineage of root key {report.root_fingerprint}" in verified.stdout
    assert load(record)["record"]["ceremony"]["transcript_head"] == report.head


# ------------------------------------------------------------------ a real chain


def test_a_recovery_chain_verifies_and_a_broken_link_is_named(tmp_path: Path,
                                                               softhsm: SoftHsm) -> None:
    from tests.test_recovery import prepare_recovery

    rec = prepare_recovery(tmp_path, softhsm)
    result = rec.run([("carol", rec.sheet("carol")), ("alice", rec.sheet("alice"))])
    assert result.returncode == 0, result.stdout + result.stderr
    # The recovery's printed transcript was made inside its bundle before the checksums.
    pdf = rec.out / "transcript.pdf"
    assert f"printable transcript: {pdf} (inside the bundle" in result.stdout
    cover = flat(pdftotext(pdf, "-raw")[0])
    head = verify_bundle(rec.original.out).head
    assert f"Recovery of ceremony {ORIGINAL_ID}, transcript head {head}" in cover

    keys = rec.original.directory / "identities"
    made = run_cli("lineage", "make", str(rec.original.out), "--identities", str(keys))
    assert made.returncode == 0, made.stdout + made.stderr
    original_record = rec.original.out.parent / "bundle.lineage.json"
    record_path = rec.out.parent / "bundle.lineage.json"

    missing = run_cli("lineage", "make", str(rec.out), "--identities", str(keys))
    assert missing.returncode == 1
    assert f"ceremony {RECOVERY_ID} recovered the key of ceremony {ORIGINAL_ID}: its lineage " \
           "continues the original's record, which was not given" in first_error(missing)
    # Another ceremony's record is no previous link of this recovery.
    golden = tmp_path / "golden" / "bundle"
    shutil.copytree(GOLDEN / "bundle", golden)
    cast = make_cast(sample_texts()[0], SeededRandom("participants"))
    golden_ids = identities(tmp_path / "golden-ids", cast)
    assert run_cli("lineage", "make", str(golden), "--identities",
                   str(golden_ids)).returncode == 0
    foreign = run_cli("lineage", "make", str(rec.out), "--identities", str(keys),
                      "--previous", str(golden.parent / "bundle.lineage.json"))
    assert foreign.returncode == 1
    assert first_error(foreign).startswith(f"ceremony: lineage link 1 of 1 (ceremony "
                                           f"{ORIGINAL_ID}, creation) is broken: record.")
    assert not record_path.exists()

    made = run_cli("lineage", "make", str(rec.out), "--identities", str(keys), "--previous",
                   str(original_record))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "2 link(s) back to the seed's ceremony" in made.stdout
    document, original = load(record_path), load(original_record)
    record = document["record"]
    assert record["previous"] == {
        "relation": "recovery", "ceremony": ORIGINAL_ID, "transcript_head": head,
        "root_fingerprint": original["record"]["key"]["fingerprint"], "lineage": original}
    assert record["key"] == original["record"]["key"]
    assert record["share_set"] == original["record"]["share_set"]
    assert record["lifecycle"] == original["record"]["lifecycle"]
    assert record["ceremony"]["kind"] == "recovery"
    assert record["signers"]["step"] == "recover-root-key"

    verified = run_cli("lineage", "verify", str(record_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 link(s), each checked against its verified bundle" in verified.stdout
    assert f"1. creation: ceremony {ORIGINAL_ID} (REHEARSAL), head {head}" in verified.stdout
    assert f"2. recovery of link 1: ceremony {RECOVERY_ID} (REHEARSAL)" in verified.stdout
    assert f"bundle {rec.out / 'original'}" in verified.stdout
    shown = run_cli("lineage", "show", str(record_path))
    assert shown.returncode == 0 and f"2. recovery of link 1: ceremony {RECOVERY_ID}" in \
        shown.stdout

    pristine = record_path.read_bytes()

    def broken(change: Callable[[dict[str, Any]], None], *, sign: bool) -> str:
        altered = json.loads(pristine)
        change(altered)
        if sign:  # the custodians (their keys) sign both records again
            resign(altered["record"]["previous"]["lineage"], keys, ["alice", "bob"])
            resign(altered, keys, ["alice", "bob"])
        store(record_path, altered)
        result = run_cli("lineage", "verify", str(record_path))
        assert result.returncode == 1, result.stdout + result.stderr
        return first_error(result)

    def original_identifier(doc: dict[str, Any]) -> None:
        doc["record"]["previous"]["lineage"]["record"]["share_set"]["identifier"] += 1

    link1 = f"ceremony: lineage link 1 of 2 (ceremony {ORIGINAL_ID}, creation) is broken: "
    link2 = f"ceremony: lineage link 2 of 2 (ceremony {RECOVERY_ID}, recovery) is broken: "
    for sign in (False, True):
        assert broken(original_identifier, sign=sign).startswith(
            link1 + "record.share_set.identifier is not what the bundle "
            f"{rec.out / 'original'} records")

    def recovery_head(doc: dict[str, Any]) -> None:
        doc["record"]["ceremony"]["transcript_head"] = "0" * 64

    assert broken(recovery_head, sign=True).startswith(
        link2 + f"record.ceremony.transcript_head is not what the bundle {rec.out} records")

    def original_signature(doc: dict[str, Any]) -> None:
        signatures = doc["record"]["previous"]["lineage"]["signatures"]
        signatures[0]["signature"] = signatures[1]["signature"]

    assert broken(original_signature, sign=False).startswith(
        f"ceremony: lineage link 1 of 2 (ceremony {ORIGINAL_ID}, creation): the signature of "
        "alice does not verify")
    record_path.write_bytes(pristine)
    assert run_cli("lineage", "verify", str(rec.out)).returncode == 0


def test_a_record_lists_the_certificates(tmp_path: Path, policy_text: str) -> None:
    from tests.test_certificates import CERTIFY

    cast = make_cast(sample_texts()[0].replace(*CERTIFY), SeededRandom("participants"))
    bundle = fake_bundle(tmp_path / "c", cast, policy_text, rehearsal=True)
    ids = identities(tmp_path / "ids", cast)
    made = run_cli("lineage", "make", str(bundle), "--identities", str(ids))
    assert made.returncode == 0, made.stdout + made.stderr
    record = load(bundle.parent / "bundle.lineage.json")["record"]
    items = entries(bundle)
    (cert,) = [e["payload"] for e in items if e["event"] == "certificate.created"]
    (csr,) = [e["payload"] for e in items if e["event"] == "csr.created"]
    assert record["certificates"] == [
        {"type": "certificate", "file": "root-certificate.pem",
         "sha256": sha256_hex((bundle / "root-certificate.pem").read_bytes()),
         "fingerprint": cert["fingerprint"], "subject": cert["subject"],
         "serial": cert["serial"], "not_before": cert["not_before"],
         "not_after": cert["not_after"]},
        {"type": "csr", "file": "root-csr.pem",
         "sha256": sha256_hex((bundle / "root-csr.pem").read_bytes()),
         "fingerprint": csr["fingerprint"], "subject": csr["subject"], "serial": None,
         "not_before": None, "not_after": None}]
    assert run_cli("lineage", "verify", str(bundle)).returncode == 0


@pytest.mark.pcsc
def test_a_custodian_signs_with_their_card(tmp_path: Path, cast: Cast, policy_text: str,
                                           virtual_card: VirtualCard,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """alice's identity is her OpenPGP card (on vpcd): `lineage make --card alice` has the
    card sign the record after her PIN; bob signs with his rehearsal key file."""
    enrolled(virtual_card)
    card = CardSigner("alice", lambda: bytearray(PIN), reader=virtual_card.reader)
    alice = cast.script.participant("alice")
    assert alice is not None
    script_text = cast.script_text.replace(alice.public_key, card.public_key)
    script = parse_script(script_text, "script.toml")
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    engine = Engine.start(script, parse_policy(policy_text, "policy.toml"),
                          script_text.encode(), policy_text.encode(), devices,
                          tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    signers: dict[str, object] = {**cast.signers, "alice": card}
    run_headless(engine, simulated_answers(script), signers,  # type: ignore[arg-type]
                 lambda _: None)
    ids = identities(tmp_path / "ids", cast)
    before = virtual_card.state().signature_counter
    asked: list[str] = []

    def read_pin(path: Path | None, what: str = "") -> bytearray:
        asked.append(what)
        return bytearray(PIN)

    monkeypatch.setattr("ceremony.cli.login.read_pin", read_pin)
    code = main(["lineage", "make", str(tmp_path / "bundle"), "--card", "alice", "--reader",
                 virtual_card.reader, "--identity", f"bob={ids / 'bob.pem'}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert asked == ["PIN of Alice Custodian's card"]
    assert virtual_card.state().signature_counter == before + 1
    document = load(tmp_path / "bundle.lineage.json")
    assert [s["participant"] for s in document["signatures"]] == ["alice", "bob"]
    assert run_cli("lineage", "verify", str(tmp_path / "bundle")).returncode == 0
    # A lifecycle event takes the same signers: alice's card signs it after her PIN.
    code = main(["lineage", "event", str(tmp_path / "bundle"), "suspension", "--reason",
                 "the card test", "--card", "alice", "--reader", virtual_card.reader,
                 "--identity", f"bob={ids / 'bob.pem'}"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert virtual_card.state().signature_counter == before + 2
    assert "signed by alice, bob (2 needed: the lineage record's threshold)" in out.out
    verified = run_cli("lineage", "verify", str(tmp_path / "bundle"))
    assert verified.returncode == 0, verified.stderr
    assert "state: suspended; 1 link(s)" in verified.stdout
