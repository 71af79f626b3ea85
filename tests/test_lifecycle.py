"""Lifecycle events of a root key and the compromise drill (ADR 14).

One rehearsal bundle (the sample with a certificate, under a policy with a [lifecycle]
table: rotation every 24 months, 2 signatures per event, 1 for a compromise) and its
lineage record, made once for the module; each test works on its own copy of the record
next to it, with a fixed clock (``ceremony.cli.lineage._now``).
"""

from __future__ import annotations

import json
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import canonical_bytes, sha256_hex
from ceremony.cli.main import main
from ceremony.drill import dependents
from ceremony.engine.core import Devices, Engine
from ceremony.headless import run_headless
from ceremony.lineage import (
    LifecycleError,
    _add_months,
    current_state,
    event_digest,
    load_events,
    parse,
    record_digest,
    rotation_due,
    verify_events,
)
from ceremony.model import statements as st
from ceremony.model.authorization import BUNDLE_SIGS_FILE, Presented
from ceremony.model.policy import Policy, parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import make_cast, sample_texts, sign_script, simulated_answers
from ceremony.verify import verify_bundle
from tests.fakes import (
    FakeToken,
    MemorySecrets,
    SeededRandom,
    TickingClock,
    passing_attestation,
)
from tests.test_certificates import CERTIFY
from tests.test_lineage import GOLDEN, identities
from tests.test_print import fake_bundle

LIFECYCLE = """
[lifecycle]
rotation_months = 24
notice_days = 90
event_quorum = 2
compromise_quorum = 1
"""


@dataclass(frozen=True)
class World:
    bundle: Path  # the rehearsal bundle (ceremony sample-root-2026, with a certificate)
    record: Path  # its lineage record, next to it
    ids: Path  # the custodians' rehearsal identity keys
    policy: Policy
    key: str  # the root key fingerprint


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """`ceremony ARGS...` in this process, at the time ``now`` (ISO, UTC)."""
    def run(now: str, *args: str | Path) -> tuple[int, str, str]:
        monkeypatch.setattr("ceremony.cli.lineage._now", lambda: at(now))
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        assert "Traceback" not in out.out + out.err
        return code, out.out, out.err
    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    directory = tmp_path_factory.mktemp("lifecycle")
    script_text, policy_text = sample_texts()
    policy_text += LIFECYCLE
    old_pin = parse_script(script_text, "script.toml").policy_sha256
    assert old_pin is not None
    script_text = script_text.replace(*CERTIFY).replace(old_pin,
                                                        sha256_hex(policy_text.encode()))
    cast = make_cast(script_text, SeededRandom("participants"))
    bundle = fake_bundle(directory / "keys", cast, policy_text, rehearsal=True)
    ids = identities(directory / "ids", cast)
    assert main(["lineage", "make", str(bundle), "--identities", str(ids)]) == 0
    record = bundle.parent / "bundle.lineage.json"
    document = parse(record.read_bytes(), "record")
    return World(bundle, record, ids, parse_policy(policy_text, "policy.toml"),
                 document["record"]["key"]["fingerprint"])


@pytest.fixture
def record(world: World, tmp_path: Path) -> Path:
    """A copy of the world's record, whose events go next to it (pass --bundle)."""
    copy = tmp_path / "bundle.lineage.json"
    shutil.copyfile(world.record, copy)
    return copy


def ids_of(world: World, *who: str) -> list[str]:
    return [a for p in who for a in ("--identity", f"{p}={world.ids / f'{p}.pem'}")]


def event(cli: Cli, world: World, record: Path, now: str, name: str, *who: str,
          reason: str = "scheduled") -> tuple[int, str, str]:
    return cli(now, "lineage", "event", record, name, "--reason", reason, "--bundle",
               world.bundle, *ids_of(world, *who))


CHAIN = [("2026-03-01T00:00:00", "suspension", ("alice", "bob")),
         ("2026-04-01T00:00:00", "activation", ("bob", "carol")),
         ("2027-11-01T00:00:00", "rotation-due", ("alice", "carol")),
         ("2027-12-01T00:00:00", "compromise", ("carol",)),
         ("2028-01-10T00:00:00", "destruction", ("alice", "bob"))]


def test_a_chain_of_events_verifies_and_shows_the_history(cli: Cli, world: World,
                                                          record: Path) -> None:
    for now, name, who in CHAIN:
        code, out, err = event(cli, world, record, now, name, *who, reason=f"{name} test")
        assert code == 0, err
        assert f"{name} of root key {world.key}" in out
    lines = (record.parent / "bundle.lineage.events.jsonl").read_bytes().splitlines()
    events = [json.loads(line) for line in lines]
    assert [canonical_bytes(e) for e in events] == lines  # canonical, one a line
    document = parse(record.read_bytes(), "record")
    assert [e["event"]["previous"] for e in events] == \
        [record_digest(document)] + [event_digest(e) for e in events[:-1]]
    assert [(e["event"]["from"], e["event"]["state"]) for e in events] == [
        ("active", "suspended"), ("suspended", "active"), ("active", "active"),
        ("active", "compromised"), ("compromised", "destroyed")]
    compromise = events[3]["event"]
    certificates = document["record"]["certificates"]
    assert len(certificates) == 2  # the certificate and the CSR
    assert compromise["revokes"] == sorted(c["fingerprint"] for c in certificates)
    assert compromise["quorum"] == {"threshold": 1, "rule": "lifecycle.compromise_quorum",
                                    "policy_sha256": world.policy.sha256}
    assert events[0]["event"]["quorum"]["threshold"] == 2
    assert events[2]["event"]["due"] == "2028-01-02" + document["record"]["lifecycle"][
        "transitions"][-1]["time"][10:]
    assert current_state(document, events) == "destroyed"

    code, out, err = cli("2028-02-01T00:00:00", "lineage", "verify", record,
                         "--bundle", world.bundle)
    assert code == 0, err
    assert "state: destroyed; 1 link(s)" in out
    assert "5 lifecycle event(s), each signed by the policy's quorum" in out
    assert "event 4. 2027-12-01T00:00:00.000000Z compromise: active to compromised; " \
           "signed by carol (1 needed)" in out
    assert "rotation: none needed, the key is destroyed (it was due 2028-01-02)" in out
    code, out, err = cli("2028-02-01T00:00:00", "lineage", "show", record,
                         "--bundle", world.bundle)
    assert code == 0, err
    assert "state now: destroyed (5 lifecycle event(s) after the record)" in out
    assert "2026-03-01T00:00:00.000000Z  suspended: suspension test (event 1 (suspension))" \
        in out
    assert "2027-12-01T00:00:00.000000Z  compromised: compromise test (event 4 " \
           "(compromise))" in out


def test_making_an_event_refuses_what_the_policy_and_sp_800_57_forbid(
        cli: Cli, world: World, record: Path) -> None:
    events_file = record.parent / "bundle.lineage.events.jsonl"
    code, _, err = event(cli, world, record, "2026-03-01T00:00:00", "suspension", "alice")
    assert code == 1
    assert err.splitlines()[0] == (
        f"ceremony: a suspension event of root key {world.key} needs the signatures of 2 of "
        "the record's signers (alice, bob, carol) by lifecycle.event_quorum; 1 given (alice) "
        "[CER-LIFECYCLE]")
    code, _, err = event(cli, world, record, "2026-03-01T00:00:00", "suspension", "alice",
                         "wendy")
    assert code == 1 and "wendy cannot sign a lifecycle event of root key" in err
    code, _, err = event(cli, world, record, "2026-03-01T00:00:00", "suspension", "alice",
                         "bob", reason="")
    assert code == 2 and "--reason must be one printable line" in err
    code, _, err = event(cli, world, record, "2026-03-01T00:00:00", "activation", "alice",
                         "bob")
    assert code == 1 and "is active: NIST SP 800-57 allows no activation (active to " \
                         "active)" in err
    code, _, err = event(cli, world, record, "2027-10-01T00:00:00", "rotation-due", "alice",
                         "bob")
    assert code == 1 and f"the rotation of root key {world.key} is not due yet: rotation " \
                         "due 2028-01-02 (in 93 days;" in err
    assert not events_file.exists()  # nothing was appended by a refusal
    assert event(cli, world, record, "2026-03-01T00:00:00", "destruction", "alice",
                 "bob")[0] == 1
    assert event(cli, world, record, "2026-03-01T00:00:00", "deactivation", "alice",
                 "bob")[0] == 0
    assert event(cli, world, record, "2026-03-02T00:00:00", "destruction", "alice",
                 "bob")[0] == 0
    code, _, err = event(cli, world, record, "2026-03-03T00:00:00", "activation", "alice",
                         "bob")
    assert code == 1
    assert f"root key {world.key} is destroyed: NIST SP 800-57 allows no activation " \
           "(destroyed to active); from destroyed it may go to nothing" in err
    assert len(events_file.read_bytes().splitlines()) == 2


# ------------------------------------------------------------------ tampering


def sign(world: World, statement: dict[str, Any], who: tuple[str, ...]) -> dict[str, Any]:
    """An event document signed with these custodians' keys, as an attacker holding them
    (or a careless tool) would: only the checks of the chain can catch what is wrong."""
    message = canonical_bytes(statement)
    return {"event": statement, "signatures": [
        {"participant": p, "signature": st.b64(
            KeyFileSigner.load(p, world.ids / f"{p}.pem").sign(message))} for p in sorted(who)]}


@pytest.fixture(scope="module")
def three(world: World, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """suspension, activation, compromise: a valid chain of three events."""
    directory = tmp_path_factory.mktemp("three")
    copy = directory / "bundle.lineage.json"
    shutil.copyfile(world.record, copy)
    from ceremony.lineage import make_event

    document = parse(copy.read_bytes(), "record")
    events: list[dict[str, Any]] = []
    for now, name, who in (CHAIN[0], CHAIN[1], CHAIN[3]):
        signers = [KeyFileSigner.load(p, world.ids / f"{p}.pem") for p in who]
        events.append(make_event(document, events, name, f"{name} test",
                                 f"{now}.000000Z", signers, world.policy))
    return events


def _reason(events: list[dict[str, Any]], world: World) -> None:
    events[1]["event"]["reason"] = "someone else's reason"


def _drop_signature(events: list[dict[str, Any]], world: World) -> None:
    events[0]["signatures"] = events[0]["signatures"][:1]


def _remove(events: list[dict[str, Any]], world: World) -> None:
    del events[1]


def _swap(events: list[dict[str, Any]], world: World) -> None:
    events[0], events[1] = events[1], events[0]


def _resigned(change: Callable[[dict[str, Any]], None], index: int, who: tuple[str, ...]
              ) -> Callable[[list[dict[str, Any]], World], None]:
    def alter(events: list[dict[str, Any]], world: World) -> None:
        statement = json.loads(json.dumps(events[index]["event"]))
        change(statement)
        events[index] = sign(world, statement, who)
    return alter


def _other_key(s: dict[str, Any]) -> None:
    s["key"] = "ab" * 32


def _below_quorum(s: dict[str, Any]) -> None:
    s["quorum"]["threshold"] = 1


def _earlier(s: dict[str, Any]) -> None:
    s["time"] = "2026-02-01T00:00:00.000000Z"


def _new_reason(s: dict[str, Any]) -> None:
    s["reason"] = "rewritten and signed again"


def _drill(s: dict[str, Any]) -> None:
    s["drill"] = True


def _destroyed_then_active(events: list[dict[str, Any]], world: World) -> None:
    last = events[-1]
    destroyed = dict(last["event"], seq=4, previous=event_digest(last), event="destruction",
                     state="destroyed", revokes=[], reason="x", time="2028-01-01T00:00:00.000000Z",
                     quorum=dict(last["event"]["quorum"], threshold=2,
                                 rule="lifecycle.event_quorum"))
    destroyed["from"] = "compromised"
    events.append(sign(world, destroyed, ("alice", "bob")))
    active = dict(destroyed, seq=5, previous=event_digest(events[-1]), event="activation",
                  state="active", time="2028-01-02T00:00:00.000000Z")
    active["from"] = "destroyed"
    events.append(sign(world, active, ("alice", "bob")))


E1 = "lineage event 1 of 3 (suspension, 2026-03-01T00:00:00.000000Z)"
E2 = "lineage event 2 of 3 (activation, 2026-04-01T00:00:00.000000Z)"


@pytest.mark.parametrize(("alter", "says"), [
    (_reason, f"{E2}: the signature of bob does not verify (it was altered after it was "
              "signed"),
    (_drop_signature, f"{E1} carries 1 valid signature(s); it needs 2 of the lineage "
                      "record's signers"),
    (_remove, "lineage event 2 of 2 (compromise, 2027-12-01T00:00:00.000000Z) is broken: it "
              "is numbered 3: an event is missing"),
    (_swap, "lineage event 1 of 3 (activation, 2026-04-01T00:00:00.000000Z) is broken: it is "
            "numbered 2"),
    (_resigned(_other_key, 0, ("alice", "bob")),
     f"{E1} is broken: it names root key {'ab' * 32}, not this record's key"),
    (_resigned(_below_quorum, 0, ("alice",)),
     f"{E1} is broken: it states a quorum of 1 under policy"),
    (_resigned(_earlier, 1, ("alice", "bob")),
     "lineage event 2 of 3 (activation, 2026-02-01T00:00:00.000000Z) is broken: it is dated "
     "2026-02-01T00:00:00.000000Z, before the key's last change at 2026-03-01"),
    (_resigned(_new_reason, 1, ("alice", "bob")),
     "lineage event 3 of 3 (compromise, 2027-12-01T00:00:00.000000Z) is broken: it does not "
     "follow event 2: it names"),
    (_resigned(_drill, 0, ("alice", "bob")),
     f"{E1} is broken: it is a compromise drill's event, and a drill never changes a key's "
     "own lifecycle"),
    (_destroyed_then_active, "lineage event 5 of 5 (activation, 2028-01-02T00:00:00.000000Z) "
                             "is broken: it goes from destroyed to active, which NIST SP "
                             "800-57 does not allow"),
], ids=["altered-reason", "missing-signature", "removed", "reordered", "another-key",
        "too-few-signers", "altered-time", "re-signed-middle", "drill-in-real-chain",
        "destroyed-to-active"])
def test_a_broken_event_is_refused_and_named(
        cli: Cli, world: World, record: Path, three: list[dict[str, Any]],
        alter: Callable[[list[dict[str, Any]], World], None], says: str) -> None:
    events = json.loads(json.dumps(three))
    alter(events, world)
    (record.parent / "bundle.lineage.events.jsonl").write_bytes(
        b"".join(canonical_bytes(e) + b"\n" for e in events))
    code, out, err = cli("2028-02-01T00:00:00", "lineage", "verify", record, "--bundle",
                         world.bundle)
    assert code == 1, out + err
    first = err.splitlines()[0]
    assert first.startswith(f"ceremony: {says}"), first
    assert first.endswith("[CER-LIFECYCLE]")


def test_an_event_dated_in_the_future_is_refused(world: World,
                                                  three: list[dict[str, Any]]) -> None:
    document = parse(world.record.read_bytes(), "record")
    assert len(verify_events(document, three, world.policy,
                             now=at("2027-12-01T00:04:00"))) == 3  # within the clock skew
    with pytest.raises(LifecycleError, match=r"lineage event 3 of 3 \(compromise, "
                                           r"2027-12-01T00:00:00.000000Z\) is broken: it is "
                                           "dated 2027-12-01T00:00:00.000000Z, in the future"):
        verify_events(document, three, world.policy, now=at("2027-01-01T00:00:00"))


# ------------------------------------------------------------------ rotation


def test_rotation_due_from_the_policy_cadence_with_a_fixed_clock(
        world: World, three: list[dict[str, Any]]) -> None:
    document = parse(world.record.read_bytes(), "record")
    activated = document["record"]["lifecycle"]["transitions"][-1]["time"]
    assert activated.startswith("2026-01-02T03:")
    due = "2028-01-02" + activated[10:]
    seen = {now: rotation_due(document, world.policy, now=at(now)) for now in (
        "2027-06-01T00:00:00", "2027-11-15T00:00:00", "2028-02-01T00:00:00")}
    assert [(r.due, r.status) for r in seen.values()] == [
        (due, "not-due"), (due, "due"), (due, "overdue")]
    assert seen["2027-06-01T00:00:00"].days == 215
    assert seen["2028-02-01T00:00:00"].days == -30
    assert seen["2027-11-15T00:00:00"].describe().startswith(
        "rotation due 2028-01-02 (DUE in 48 days; cadence 24 months (policy "
        "lifecycle.rotation_months), from activation 2026-01-02)")
    assert "OVERDUE by 30 days" in seen["2028-02-01T00:00:00"].describe()
    # A compromised key is no longer in use: nothing is due.
    after = rotation_due(document, world.policy, three, now=at("2028-02-01T00:00:00"))
    assert after.status == "ended" and after.state == "compromised"
    # Without [lifecycle], the cadence is the key's longest lifetime.
    plain = parse_policy(sample_texts()[1], "policy.toml")
    default = rotation_due(document, plain, now=at("2027-06-01T00:00:00"))
    assert default.due == "2045-12-28" + activated[10:]  # 7300 days: 20 years less 5 leap days
    assert default.cadence == "7300 days (policy max_key_lifetime_days)"
    assert _add_months(at("2026-01-31T12:00:00"), 1) == at("2026-02-28T12:00:00")
    assert _add_months(at("2027-11-30T00:00:00"), 3) == at("2028-02-29T00:00:00")


# ------------------------------------------------------------------ the drill


def run_replacement(bundle: Path, script_path: Path, ids: Path) -> Path:
    """The replacement ceremony the drill wrote, run as written (rehearsal, the engine on
    fake devices seeded apart from the world's: a new seed, so a new key)."""
    script_text = script_path.read_text()
    policy_text = (script_path.parent / "policy.toml").read_text()
    script = parse_script(script_text, "script.toml")
    policy = parse_policy(policy_text, "policy.toml")
    signers: dict[str, object] = {p.id: KeyFileSigner.load(p.id, ids / f"{p.id}.pem")
                                  for p in script.participants}
    devices = Devices(TickingClock(), SeededRandom("os-2027"),
                      FakeToken(SeededRandom("token-2027")),
                      Slip39Splitter(SeededRandom("slip39-2027")), MemorySecrets())
    sigs = sign_script(script, policy, signers, "2026-11-21T11:00:00.000000Z")
    engine = Engine.start(script, policy, script_text.encode(), policy_text.encode(),
                          devices, bundle, rehearsal=True,
                          authorization=Presented(sigs, BUNDLE_SIGS_FILE, state_checked=True,
                                                  state_name="(a fresh state)"),
                          attestation=passing_attestation(True))
    run_headless(engine, simulated_answers(script), signers,  # type: ignore[arg-type]
                 lambda _: None)
    return bundle


def test_the_compromise_drill_end_to_end(cli: Cli, world: World, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in world.bundle.parent.iterdir() if p.is_file()}
    # Where the drill looks: the key's bundle and record, a copy of the bundle that no
    # longer verifies, and an unrelated ceremony.
    found = tmp_path / "found"
    shutil.copytree(world.bundle, found / "keys" / "bundle")
    shutil.copyfile(world.record, found / "keys" / "bundle.lineage.json")
    broken = found / "broken" / "bundle"
    shutil.copytree(world.bundle, broken)
    transcript = broken / "transcript.jsonl"
    transcript.write_text(transcript.read_text().replace('"rehearsal":true',
                                                         '"rehearsal":false', 1))
    shutil.copytree(GOLDEN / "aborted-bundle", found / "other" / "bundle")
    code, _, err = cli("2026-11-21T10:00:00", "lineage", "compromise", world.record,
                       "--identities", world.ids)
    assert code == 2 and "runs only as a drill (--drill)" in err
    out_dir = tmp_path / "drill"
    code, out, err = cli("2026-11-21T10:00:00", "lineage", "compromise", "--drill",
                         world.record, "--bundles", found,
                         "--reason", "a custodian's laptop was stolen", "--out", out_dir,
                         "--identity", f"carol={world.ids / 'carol.pem'}")
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(line.startswith("DRILL  ") for line in lines), out
    assert (out_dir / "DRILL.txt").read_text() == out
    text = " ".join(line[7:].strip() for line in lines)
    assert f"compromise drill of root key {world.key}" in text
    assert "1. the compromise, recorded as a drill event: event 1 (active to compromised) at " \
           "2026-11-21T10:00:00.000000Z, signed by carol (1 needed: " \
           "lifecycle.compromise_quorum)" in text
    keys = found / "keys"
    assert "2. revoke: root key" in text and "(2 found)" in text
    assert f"certificate {keys / 'bundle/root-certificate.pem'}: certifies the key" in text
    assert f"csr {keys / 'bundle/root-csr.pem'}: a certificate request for the key" in text
    assert "3. what else depends on the key (3 found" in text, out
    assert f"bundle {keys / 'bundle'} (ceremony sample-root-2026): made the key (creation)" \
        in text
    assert f"bundle {broken} (ceremony ?, UNVERIFIED): names the key but does NOT verify" \
        in text
    assert f"lineage record {keys / 'bundle.lineage.json'} (ceremony sample-root-2026)" in text
    assert "sample-root-2026-aborted" not in text and str(found / "other") not in text
    script_path = out_dir / "replacement" / "script.toml"
    assert f"rehearse it: `ceremony lint {script_path}`" in text

    events = load_events(out_dir / "lineage.json")
    [drill] = events
    assert drill["event"]["drill"] is True and drill["event"]["state"] == "compromised"
    assert drill["event"]["reason"] == "DRILL: a custodian's laptop was stolen"
    document = parse((out_dir / "lineage.json").read_bytes(), "record")
    assert document == parse(world.record.read_bytes(), "record")
    assert [c.state for c in verify_events(document, events, world.policy, drill=True)] == \
        ["compromised"]
    listing = json.loads((out_dir / "dependents.json").read_text())
    assert listing["drill"] is True and listing["key"] == world.key
    assert sorted(d["kind"] for d in listing["dependents"]) == [
        "bundle", "bundle", "certificate", "csr", "lineage record"]

    skeleton = script_path.read_text()
    assert skeleton.startswith(f"# DRILL: the replacement of root key {world.key}")
    new = tomllib.loads(skeleton)
    assert (new["ceremony_id"], new["version"]) == ("sample-root-2026-replacement", 2)
    assert new["previous"] == {"ceremony": "sample-root-2026", "root_fingerprint": world.key,
                               "reason": "compromise"}
    assert main(["lint", str(script_path)]) == 0  # a script the policy accepts
    # The replacement ceremony runs as written; its bundle is then found as the key's
    # replacement, and its new key is another.
    later = run_replacement(found / "later" / "bundle", script_path, world.ids)
    [replaces] = [d for d in dependents(world.key, found) if d.path == later]
    assert (replaces.ceremony, replaces.relation) == (
        "sample-root-2026-replacement", "replaces the key (compromise): a newer key")
    assert verify_bundle(later).root_fingerprint not in (None, world.key)

    # The key's own record is untouched, the drill's events do not pass as real ones, and a
    # second drill into the same directory is refused.
    assert {p: p.read_bytes() for p in world.bundle.parent.iterdir() if p.is_file()} == before
    code, _, err = cli("2026-11-21T10:00:00", "lineage", "verify", out_dir / "lineage.json",
                       "--bundle", world.bundle)
    assert code == 1 and "is a compromise drill's event" in err
    code, _, err = cli("2026-11-21T10:00:00", "lineage", "compromise", "--drill",
                       world.record, "--out", out_dir, "--identities", world.ids)
    assert code == 2 and "already exists; a drill never overwrites" in err


def test_a_drill_from_a_bundle_without_a_record(cli: Cli, world: World,
                                                tmp_path: Path) -> None:
    """The record is made for the drill (in the drill's directory), with the same signers."""
    bundle = tmp_path / "bundle"
    shutil.copytree(world.bundle, bundle)
    code, out, err = cli("2026-11-21T10:00:00", "lineage", "compromise", "--drill", bundle,
                         "--identities", world.ids)
    assert code == 0, err
    drill = tmp_path / "bundle.compromise-drill"
    assert "(the record was made for the drill:" in out
    assert not (tmp_path / "bundle.lineage.json").exists()
    assert parse((drill / "lineage.json").read_bytes(), "r") == \
        parse(world.record.read_bytes(), "r")
    # Signed by all three (the record needs 2, the compromise 1): the event takes them all.
    [event] = load_events(drill / "lineage.json")
    assert [s["participant"] for s in event["signatures"]] == ["alice", "bob", "carol"]


def test_a_malformed_events_file_is_refused_naming_the_line(
        cli: Cli, world: World, record: Path, three: list[dict[str, Any]]) -> None:
    events_file = record.parent / "bundle.lineage.events.jsonl"
    first = canonical_bytes(three[0]) + b"\n"
    for data, says in ((first + b'{"event": 1}\n', ":2: is not a lifecycle event"),
                       (first + canonical_bytes({"event": 1, "signatures": []}) + b"\n",
                        ":2: is not a well-formed lifecycle event: the event.event must be "
                        "an object"),
                       (first[:-1], ": does not end with a newline")):
        events_file.write_bytes(data)
        code, _, err = cli("2027-01-01T00:00:00", "lineage", "verify", record, "--bundle",
                           world.bundle)
        assert code == 2, err
        assert err.startswith(f"ceremony: {events_file}{says}"), err
