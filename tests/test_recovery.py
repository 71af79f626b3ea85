"""Recovery: a root key rebuilt from a quorum of its custodians' shares into a new token.

The engine with fakes first (every refusal leaves the transcript byte for byte as it was;
shares that rebuild another key put nothing on the token; the script must fit the original;
the verifier catches re-signed recovery transcripts that break the rules), then real
SoftHSM2 tokens: an original ceremony through the real CLI on one token, its recovery
through `ceremony recover` into a second token in the same token directory, checked with
`ceremony verify`, pkcs11-tool, `ceremony hsm inventory` and cryptography.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import shamir_mnemonic
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from shamir_mnemonic import shamir

from ceremony.adapters.activation import activate, combine_pin, read_sheets
from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.adapters.system import OsRandomness, SystemClock
from ceremony.canonical import canonical_bytes
from ceremony.cli.login import open_token
from ceremony.engine.core import ROOT_PEM_FILE, TRANSCRIPT_FILE, Devices, Engine, checksum_list
from ceremony.engine.prompts import (
    Abort,
    Answer,
    Finished,
    Proceed,
    ShareOffered,
    SharesNeeded,
)
from ceremony.engine.recovery import NoSecretOutput, OriginalBundle, load_original
from ceremony.errors import (
    AnswersError,
    CeremonyError,
    CheckFailed,
    QuorumError,
    ScriptError,
    UsageError,
)
from ceremony.headless import run_headless
from ceremony.model import statements as st
from ceremony.model.answers import Answers
from ceremony.model.policy import parse_policy
from ceremony.model.script import Script, parse_script
from ceremony.rehearsal import (
    Cast,
    answers_toml,
    make_cast,
    sample_recovery_text,
    sample_texts,
    simulated_answers,
)
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.test_crash import RSA_3072, Ceremony, prepare_ceremony, token_labels
from tests.test_rsa import add_token

ORIGINAL_ID = "sample-root-2026"
RECOVERY_ID = "sample-root-2026-recovery-1"
RECOVER = "recover-root-key"
GOLDEN = Path(__file__).resolve().parent / "vectors" / "golden"
RECOVERY_STEPS = "[[steps]]" + sample_recovery_text().split("[[steps]]", 1)[1]


def recovery_text(original_text: str, head: str, fingerprint: str, *,
                  ceremony_id: str = RECOVERY_ID) -> str:
    """A recovery script for the sample ceremony: the original's script (participants, token,
    root key, shares) with a new ceremony id, a [recovery] table and the recovery's steps."""
    header = original_text.split("[[steps]]", 1)[0]
    marker = f'ceremony_id = "{ORIGINAL_ID}"\n'
    assert marker in header
    return (header.replace(marker, f'ceremony_id = "{ceremony_id}"\n')
            + f'[recovery]\nceremony = "{ORIGINAL_ID}"\ntranscript_head = "{head}"\n'
            f'root_fingerprint = "{fingerprint}"\n\n' + RECOVERY_STEPS)


def share_runs(mnemonic: str) -> list[re.Pattern[bytes]]:
    """Every run of 4 consecutive words of a share, with any separator (test_rehearse)."""
    words = mnemonic.split()
    out = []
    for k in range(len(words) - 3):
        joined = r"[^a-z]+".join(re.escape(w) for w in words[k:k + 4])
        out.append(re.compile(rf"(?<![a-z]){joined}(?![a-z])".encode()))
    return out


def assert_no_share_words(mnemonics: list[str], haystacks: dict[str, bytes]) -> None:
    leaks = [f"share {i} in {where}" for i, mnemonic in enumerate(mnemonics)
             for pattern in share_runs(mnemonic)
             for where, hay in haystacks.items() if pattern.search(hay)]
    assert leaks == []


def other_set_share(original: OriginalBundle, member: int = 0) -> str:
    """A valid share of another share set (another identifier) with the same scheme."""
    record = original.record
    ems = shamir.EncryptedMasterSecret.from_master_secret(
        bytes(range(32)), b"", (record.identifier + 1) % 2**15, record.extendable,
        record.iteration_exponent)
    groups = shamir.split_ems(record.group_threshold, [(2, 3)], ems)
    return str(groups[0][member].mnemonic())


def broken_checksum(mnemonic: str) -> str:
    """The share with its 10th word replaced by another SLIP-39 word: the checksum fails."""
    words = mnemonic.split()
    words[9] = "academic" if words[9] != "academic" else "acid"
    return " ".join(words)


def altered_value(mnemonic: str) -> str:
    """The same share set, group and member, another value, a valid checksum: corrupt."""
    share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
    value = bytes([share.value[0] ^ 1]) + share.value[1:]
    return str(shamir_mnemonic.Share(
        share.identifier, share.extendable, share.iteration_exponent, share.group_index,
        share.group_threshold, share.group_count, share.index, share.member_threshold,
        value).mnemonic())


# ------------------------------------------------------------------ the engine, with fakes


@dataclass
class FakeOriginal:
    bundle: Path
    cast: Cast
    policy_text: str
    shares: dict[str, str]  # participant -> mnemonic
    original: OriginalBundle


def fake_original(tmp_path: Path, script_edit: tuple[str, str] | None = None) -> FakeOriginal:
    """The sample ceremony run with fakes (as the golden vectors are), and its share sheets."""
    template, policy_text = sample_texts()
    if script_edit is not None:
        template = template.replace(*script_edit)
    cast = make_cast(template, SeededRandom("participants"))
    secrets = MemorySecrets()
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), secrets)
    bundle = tmp_path / "original"
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(), devices, bundle,
                          rehearsal=True, attestation=passing_attestation(True))
    finished = run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                            lambda _: None)
    assert finished.outcome == "completed"
    shares = {name.split("-g")[0]: mnemonic for name, mnemonic in secrets.shares.items()}
    assert sorted(shares) == ["alice", "bob", "carol"]
    return FakeOriginal(bundle, cast, policy_text, shares, load_original(bundle))


@dataclass
class FakeRecovery:
    engine: Engine
    token: FakeToken
    bundle: Path
    script: Script
    original: FakeOriginal
    said: list[str] = field(default_factory=list)

    @property
    def transcript(self) -> Path:
        return self.bundle / TRANSCRIPT_FILE

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.transcript.read_text().splitlines()]

    def offer(self, who: str, mnemonic: str | None = None) -> SharesNeeded:
        prompt = self.engine.submit(ShareOffered(who, mnemonic or self.original.shares[who]))
        assert isinstance(prompt, SharesNeeded)
        return prompt

    def refused(self, answer: Answer, error: type[CeremonyError] = CheckFailed) -> str:
        """Submit ``answer``, expect ``error``, check nothing was written; the sentence."""
        before = self.transcript.read_bytes()
        status = self.engine.status()
        with pytest.raises(error) as caught:
            self.engine.submit(answer)
        assert self.transcript.read_bytes() == before
        assert self.engine.status() == status
        assert caught.value.requirement == "CER-RECOVERY"
        assert "\n" not in caught.value.message
        assert_no_share_words(list(self.original.shares.values()),
                              {"message": caught.value.describe().encode()})
        return caught.value.message

    def finish(self) -> Finished:
        answers = simulated_answers(self.script)
        finished = run_headless(self.engine, answers, self.original.cast.signers,  # type: ignore[arg-type]
                                self.said.append)
        return finished


def fake_recovery(tmp_path: Path, original: FakeOriginal, *,
                  edit: Callable[[str], str] = lambda text: text,
                  splitter: Slip39Splitter | None = None,
                  rehearsal: bool = True) -> FakeRecovery:
    record = original.original.record
    text = edit(recovery_text(original.cast.script_text, record.head, record.fingerprint))
    script = parse_script(text, "script.toml")
    token = FakeToken(SeededRandom("recovery-token"))
    devices = Devices(TickingClock(), SeededRandom("recovery-os"), token,
                      splitter or Slip39Splitter(), NoSecretOutput())
    bundle = tmp_path / "recovery"
    engine = Engine.start(script, parse_policy(original.policy_text, "policy.toml"),
                          text.encode(), original.policy_text.encode(), devices, bundle,
                          rehearsal=rehearsal, original=original.original,
                          attestation=passing_attestation(rehearsal))
    return FakeRecovery(engine, token, bundle, script, original)


def to_shares(rec: FakeRecovery) -> SharesNeeded:
    """Through the opening step, the approvals and the confirmation, to the shares."""
    answers = simulated_answers(rec.script)
    with pytest.raises(AnswersError, match="needs more shares of ceremony sample-root-2026"):
        run_headless(rec.engine, answers, rec.original.cast.signers,  # type: ignore[arg-type]
                     rec.said.append)
    prompt = rec.engine.next_prompt()
    assert isinstance(prompt, SharesNeeded)
    return prompt


@pytest.fixture
def original(tmp_path: Path) -> FakeOriginal:
    return fake_original(tmp_path)


def test_recovery_with_fakes_in_any_order(tmp_path: Path, original: FakeOriginal) -> None:
    rec = fake_recovery(tmp_path, original)
    prompt = to_shares(rec)
    record = original.original.record
    assert (prompt.step, prompt.original, prompt.fingerprint) == (RECOVER, ORIGINAL_ID,
                                                                   record.fingerprint)
    assert (prompt.group_threshold, prompt.ready, prompt.needed) == (1, False, 2)
    assert prompt.describe() == "0 of 1 group(s) complete; group 1: 0 of 2"
    assert rec.engine.status().phase == "shares"
    # Nothing is recorded of the recovery's action before the first share is accepted.
    assert rec.entries()[-1]["event"] == "confirmation"

    prompt = rec.offer("carol")
    assert prompt.groups[0].presented == ("carol",) and not prompt.ready
    assert prompt.eligible == ("alice", "bob")
    status = rec.engine.status()
    assert (status.phase, status.collected, status.needed) == ("shares", ("carol",), 2)
    with pytest.raises(QuorumError, match=r"do not yet rebuild the key: .*group 1: 1 of 2"):
        rec.engine.submit(Proceed())
    prompt = rec.offer("alice")
    assert prompt.ready
    assert prompt.describe() == ("1 of 1 group(s) complete; group 1: 2 of 2 (carol, alice), "
                                 "complete")
    finished = rec.finish()
    assert finished.outcome == "completed"
    assert finished.root_public_key == record.public_key

    events = [e["event"] for e in rec.entries()]
    i = events.index("action.started")
    assert events[i:i + 5] == ["action.started", "share.presented", "share.presented",
                               "root_key.recovered", "action.completed"]
    presented = [e for e in rec.entries() if e["event"] == "share.presented"]
    assert [(e["actor"], e["payload"]) for e in presented] == [
        (h.participant, {"participant": h.participant, "group": h.group,
                         "member": h.member, "commitment": h.commitment})
        for h in (record.holder("carol"), record.holder("alice")) if h is not None]
    (recovered,) = [e["payload"] for e in rec.entries() if e["event"] == "root_key.recovered"]
    assert recovered["public_key"] == record.public_key
    assert recovered["fingerprint"] == record.fingerprint
    assert (recovered["original_ceremony"], recovered["original_head"]) == (ORIGINAL_ID,
                                                                            record.head)
    assert recovered["contributors"] == [{"participant": "carol", "group": 1, "member": 3},
                                         {"participant": "alice", "group": 1, "member": 1}]

    report = verify_bundle(rec.bundle)
    assert report.ok, report.first_failure
    assert report.root_fingerprint == record.fingerprint
    assert report.original == {"ceremony_id": ORIGINAL_ID, "head": record.head,
                               "root_fingerprint": record.fingerprint,
                               "contributors": ["carol", "alice"]}
    # The bundle carries the original, covered by its checksums.
    sums = (rec.bundle / "SHA256SUMS").read_text()
    assert "  original/transcript.jsonl\n" in sums and "  original/SHA256SUMS.sig\n" in sums
    assert verify_bundle(rec.bundle / "original").head == record.head
    assert ("sample root key", "01") in rec.token.keys
    assert rec.token.calls == ["import"]
    assert_no_share_words(list(original.shares.values()), {
        str(p): p.read_bytes() for p in rec.bundle.rglob("*") if p.is_file()})


def test_over_threshold_shares_are_accepted(tmp_path: Path, original: FakeOriginal) -> None:
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    rec.offer("bob")
    assert rec.offer("carol").ready
    prompt = rec.offer("alice")  # a third share: accepted, and checked against the others
    assert prompt.groups[0].presented == ("bob", "carol", "alice") and prompt.ready
    assert rec.finish().outcome == "completed"
    report = verify_bundle(rec.bundle)
    assert report.ok and report.original is not None
    assert report.original["contributors"] == ["bob", "carol", "alice"]


@pytest.mark.parametrize("edit", [
    ('algorithm = "ed25519"', 'algorithm = "ecdsa"\ncurve = "p256"'),
    ('algorithm = "ed25519"', 'algorithm = "ecdsa"\ncurve = "p384"'),
    ('algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 3072'),
], ids=["ecdsa-p256", "ecdsa-p384", "rsa-3072"])
def test_recovery_with_fakes_of_every_kind(tmp_path: Path, edit: tuple[str, str]) -> None:
    original = fake_original(tmp_path, script_edit=edit)
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    rec.offer("bob")
    rec.offer("alice")
    assert rec.finish().outcome == "completed"
    report = verify_bundle(rec.bundle)
    assert report.ok, report.first_failure
    assert report.root_public_key == original.original.record.public_key
    kind = rec.script.root_key.kind
    assert rec.token.calls == (["import"] if kind.startswith("ecdsa") else [])
    assert rec.token.find_public(kind, "sample root key", "01") == st.decode_public_key(
        original.original.record.public_key)[1]


def test_a_recovered_key_can_be_certified(tmp_path: Path, original: FakeOriginal) -> None:
    """A certify_root_key step after the recovery signs a new certificate with the key."""
    from tests.test_certificates import CERT_TABLE, CERTIFY_STEP

    end = 'confirm = "RECOVER ROOT KEY"\n'
    rec = fake_recovery(tmp_path, original,
                        edit=lambda t: t.replace(end, end + CERT_TABLE + CERTIFY_STEP))
    assert [s.action for s in rec.script.steps] == ["none", "recover_root_key",
                                                    "certify_root_key", "none"]
    to_shares(rec)
    rec.offer("alice")
    rec.offer("carol")
    assert rec.finish().outcome == "completed"
    report = verify_bundle(rec.bundle)
    assert report.ok, report.first_failure
    events = [e["event"] for e in rec.entries()]
    assert events.index("root_key.recovered") < events.index("certificate.created")
    assert (rec.bundle / "root-certificate.pem").is_file()


def test_an_inconsistent_extra_share_is_caught_by_the_combine() -> None:
    """Beyond the threshold every share must give the same secret (Slip39Splitter.recover)."""
    splitter = Slip39Splitter(SeededRandom("slip39"))
    _, (group,) = splitter.split(bytearray(range(32)), 1, [(2, 3)])
    assert splitter.recover([group[2], group[0]]) == bytearray(range(32))
    assert splitter.recover(group) == bytearray(range(32))
    with pytest.raises(CheckFailed, match="beyond the threshold do not give the same secret"):
        splitter.recover([group[0], group[1], altered_value(group[2])])


@pytest.mark.parametrize("case", ["another-set", "checksum", "wrong-name", "corrupt",
                                  "not-a-holder", "unknown-word", "short"])
def test_a_bad_share_is_refused_by_name(tmp_path: Path, original: FakeOriginal,
                                        case: str) -> None:
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    alice, bob = original.shares["alice"], original.shares["bob"]
    record = original.original.record
    offers = {
        "another-set": (ShareOffered("alice", other_set_share(original.original)),
                        f"the share alice presented is a share of another set (share set "
                        f"{(record.identifier + 1) % 2**15}), not of ceremony {ORIGINAL_ID} "
                        f"(share set {record.identifier})"),
        "checksum": (ShareOffered("alice", broken_checksum(alice)),
                     "the share alice presented fails its SLIP-39 checksum (a word is wrong, "
                     "or words are out of order); it was not used"),
        "wrong-name": (ShareOffered("alice", bob),
                       "the share presented as alice's is recorded as bob's (group 1 member "
                       "2), not alice's"),
        "corrupt": (ShareOffered("alice", altered_value(alice)),
                    "the share alice presented does not match alice's recorded share: it is "
                    "corrupt or someone else's"),
        "not-a-holder": (ShareOffered("ada", alice),
                         f"'ada' holds no share of ceremony {ORIGINAL_ID}"),
        "unknown-word": (ShareOffered("alice", " ".join([*alice.split()[:4], "zzzz",
                                                         *alice.split()[5:]])),
                         "the share alice presented is not a SLIP-39 share (word 5 is not on "
                         "the SLIP-39 word list); it was not used"),
        "short": (ShareOffered("alice", " ".join(alice.split()[:-1])),
                  f"the share alice presented has {len(alice.split()) - 1} words, which is "
                  "not the length of a "
                  "SLIP-39 share (a word is missing or repeated); it was not used"),
    }
    answer, sentence = offers[case]
    error = QuorumError if case == "not-a-holder" else CheckFailed
    assert rec.refused(answer, error) == sentence
    # After a refusal the recovery goes on: the right shares are accepted.
    rec.offer("alice")
    assert rec.offer("bob").ready
    assert rec.finish().outcome == "completed"
    assert verify_bundle(rec.bundle).ok


def test_a_duplicate_share_is_refused_by_name(tmp_path: Path, original: FakeOriginal) -> None:
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    rec.offer("carol")
    assert rec.refused(ShareOffered("carol", original.shares["carol"]), QuorumError) == (
        "carol has already presented their share in this recovery")
    # The same share again, under another custodian's name.
    assert rec.refused(ShareOffered("bob", original.shares["carol"])) == (
        "the share presented as bob's is recorded as carol's (group 1 member 3), not bob's")
    assert [e["actor"] for e in rec.entries() if e["event"] == "share.presented"] == ["carol"]


def test_a_share_never_shows_in_a_repr() -> None:
    share = "academic acid " * 10
    assert "academic" not in repr(ShareOffered("alice", share))
    from ceremony.engine.ports import ShareInfo
    assert "academic" not in repr(ShareInfo(1, 1, 1, 1, 1, 2, 1, True, share))


class _OtherSeed(Slip39Splitter):
    """Shares that pass every check but rebuild another seed (a forged or mixed-up set)."""

    def recover(self, mnemonics: list[str], *,
                passphrase: bytearray | None = None) -> bytearray:
        super().recover(mnemonics, passphrase=passphrase)
        return bytearray(b"\x01" * 32)


def test_another_key_puts_nothing_on_the_token(tmp_path: Path, original: FakeOriginal) -> None:
    rec = fake_recovery(tmp_path, original, splitter=_OtherSeed())
    to_shares(rec)
    rec.offer("alice")
    rec.offer("bob")
    with pytest.raises(CheckFailed) as caught:
        rec.engine.submit(Proceed())
    record = original.original.record
    assert caught.value.message.startswith("the shares rebuild a root key with fingerprint ")
    assert caught.value.message.endswith(f"not the root key of ceremony {ORIGINAL_ID} "
                                         f"({record.fingerprint}); nothing was put on the "
                                         "token")
    assert caught.value.requirement == "CER-RECOVERY"
    assert rec.token.calls == []  # no import was even tried
    assert ("sample root key", "01") not in rec.token.keys
    last = rec.entries()[-1]
    assert (last["event"], last["payload"]["destroyed_objects"]) == ("action.rolled_back", [])
    prompt = rec.engine.next_prompt()  # back to the shares, none presented
    assert isinstance(prompt, SharesNeeded) and prompt.presented == ()
    assert not (rec.bundle / ROOT_PEM_FILE).exists()
    rec.engine.submit(Abort("the shares rebuild another key"))
    report = verify_bundle(rec.bundle)
    assert report.ok and report.outcome == "aborted"


@pytest.mark.parametrize(("edit", "says"), [
    (lambda t: re.sub(r'transcript_head = "\w+"', f'transcript_head = "{"ab" * 32}"', t),
     "recovery.transcript_head is not the transcript head of ceremony sample-root-2026"),
    (lambda t: re.sub(r'root_fingerprint = "\w+"', f'root_fingerprint = "{"cd" * 32}"', t),
     "recovery.root_fingerprint is not the root key fingerprint of ceremony "),
    (lambda t: t.replace('id = "01"', 'id = "02"'),
     "the script's root key (ed25519, label 'sample root key', id 02) is not the root key of "
     "ceremony sample-root-2026 (ed25519, label 'sample root key', id 01)"),
    (lambda t: t.replace('members = ["alice", "bob", "carol"]',
                         'members = ["bob", "alice", "carol"]'),
     "the script's [shares] are not those of ceremony sample-root-2026"),
], ids=["head", "fingerprint", "key-id", "shares"])
def test_the_script_must_fit_the_original(tmp_path: Path, original: FakeOriginal,
                                          edit: Callable[[str], str], says: str) -> None:
    with pytest.raises(CheckFailed) as caught:
        fake_recovery(tmp_path, original, edit=edit)
    assert caught.value.message.startswith(says)
    assert caught.value.message.endswith("; nothing was written")
    assert caught.value.requirement == "CER-RECOVERY"
    assert not (tmp_path / "recovery").exists()


def test_a_rehearsal_key_is_not_recovered_into_production(tmp_path: Path,
                                                          original: FakeOriginal) -> None:
    with pytest.raises(CheckFailed, match="was a rehearsal: its key can only be recovered in "
                                          "a rehearsal"):
        fake_recovery(tmp_path, original, rehearsal=False)
    assert not (tmp_path / "recovery").exists()


def test_engine_start_needs_the_original_and_only_for_a_recovery(
        tmp_path: Path, original: FakeOriginal) -> None:
    record = original.original.record
    text = recovery_text(original.cast.script_text, record.head, record.fingerprint)
    script = parse_script(text, "script.toml")
    policy = parse_policy(original.policy_text, "policy.toml")
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("t")),
                      Slip39Splitter(), NoSecretOutput())
    with pytest.raises(UsageError, match="give its bundle with --original BUNDLE"):
        Engine.start(script, policy, text.encode(), original.policy_text.encode(), devices,
                     tmp_path / "a", rehearsal=True, attestation=passing_attestation(True))
    with pytest.raises(UsageError, match="has no \\[recovery\\] table"):
        Engine.start(original.cast.script, policy, original.cast.script_text.encode(),
                     original.policy_text.encode(), devices, tmp_path / "b", rehearsal=True,
                     original=original.original, attestation=passing_attestation(True))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_recovery_bundle_is_not_an_original(tmp_path: Path, original: FakeOriginal) -> None:
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    rec.offer("alice")
    rec.offer("bob")
    rec.finish()
    with pytest.raises(CheckFailed, match="is itself a recovery \\(of sample-root-2026\\)"):
        load_original(rec.bundle)


# ------------------------------------------------------------------ recovery scripts


def _script_error(text: str) -> str:
    with pytest.raises(ScriptError) as caught:
        parse_script(text, "script.toml")
    return caught.value.message


def test_recovery_script_rules() -> None:
    template, _ = sample_texts()
    sample = sample_recovery_text()
    script = parse_script(sample, "recovery.toml")
    assert script.recovery is not None and script.key_action == "recover_root_key"
    assert script.recovery.ceremony == ORIGINAL_ID
    assert [s.action for s in script.steps] == ["none", "recover_root_key", "none"]
    assert [s.sensitive for s in script.steps] == [False, True, False]
    definition = script.step_definition(script.steps[1])
    assert definition["recovery"] == script.recovery.definition()
    assert definition["root_key"]["id"] == "01" and definition["shares"]["group_threshold"] == 1

    # recover_root_key needs a [recovery] table ...
    says = _script_error(template.replace('action = "provision_root_key"',
                                          'action = "recover_root_key"'))
    assert "steps[1].action: recover_root_key needs a [recovery] table" in says
    # ... and a recovery script provisions nothing.
    says = _script_error(sample.replace('action = "recover_root_key"',
                                        'action = "provision_root_key"'))
    assert "steps[1].action: a recovery script rebuilds the root key" in says
    says = _script_error(sample.replace('action = "recover_root_key"', 'action = "none"'))
    assert 'must have exactly one step with action = "recover_root_key", not 0' in says
    says = _script_error(sample.replace(f'ceremony = "{ORIGINAL_ID}"',
                                        f'ceremony = "{RECOVERY_ID}"'))
    assert "recovery.ceremony: is this script's own ceremony_id" in says
    says = _script_error(sample.replace('transcript_head = "0', 'transcript_head = "X'))
    assert "recovery.transcript_head" in says
    says = _script_error(sample.replace("[recovery]\n", "[recovery]\nextra = 1\n"))
    assert "recovery.extra: is not a known field" in says


def test_sample_writes_a_recovery_script_that_lints(tmp_path: Path) -> None:
    written = run_cli("sample", str(tmp_path / "s"))
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "s" / "recovery.toml").read_text() == sample_recovery_text()
    result = run_cli("lint", str(tmp_path / "s" / "recovery.toml"))
    assert result.returncode == 0, result.stderr
    assert f": ok (ceremony {RECOVERY_ID} v1, 3 steps" in result.stdout


def test_answers_shares_are_parsed_strictly(tmp_path: Path, original: FakeOriginal) -> None:
    from ceremony.model.answers import parse_answers

    record = original.original.record
    script = parse_script(recovery_text(original.cast.script_text, record.head,
                                        record.fingerprint), "script.toml")
    (tmp_path / "alice.txt").write_text(original.shares["alice"])
    base = f'ceremony_id = "{RECOVERY_ID}"\nsteps = []\n'

    def parse(text: str) -> Answers:
        return parse_answers(base + text, "answers.toml", script, tmp_path)

    answers = parse('[[shares]]\nparticipant = "alice"\nfile = "alice.txt"\n')
    assert [(a.participant, a.file) for a in answers.shares] == [
        ("alice", (tmp_path / "alice.txt").resolve())]
    for text, says in [
        ('[[shares]]\nparticipant = "ada"\nfile = "alice.txt"\n',
         "shares[0].participant: 'ada' holds no share in the script's [shares]"),
        ('[[shares]]\nparticipant = "alice"\nfile = "alice.txt"\n' * 2,
         "shares[1].participant: alice's share is listed twice"),
        ('[[shares]]\nparticipant = "bob"\nfile = "bob.txt"\n',
         "shares[0].file: bob's share file bob.txt does not exist"),
        ('[[shares]]\nparticipant = "alice"\nfile = "alice.txt"\nwords = "x"\n',
         "shares[0].words: is not a known field"),
    ]:
        with pytest.raises(AnswersError) as caught:
            parse(text)
        assert says in caught.value.message
    with pytest.raises(AnswersError, match="shares are presented only in a recovery"):
        parse_answers(f'ceremony_id = "{ORIGINAL_ID}"\nsteps = []\n[[shares]]\n'
                      'participant = "alice"\nfile = "alice.txt"\n', "answers.toml",
                      original.cast.script, tmp_path)


# ------------------------------------------------------------------ the verifier


def _rechain(bundle: Path, items: list[dict[str, Any]], transcript_key: Ed25519PrivateKey,
             root: Ed25519PrivateKey, signers: dict[str, Any]) -> None:
    """Rewrite the transcript honestly hashed and re-signed, as an attacker holding the
    transcript key, the root key and every identity key would: only the recovery rules can
    catch what changed."""
    out, prev = [], "0" * 64
    for seq, e in enumerate(items):
        e = {**e, "seq": seq, "prev": prev}
        if e["event"] == "checkpoint":
            statement = st.checkpoint_statement(ceremony=e["ceremony"], seq=seq - 1, head=prev)
            e["payload"] = {"statement": statement,
                            "signature": st.b64(transcript_key.sign(st.message(statement)))}
        elif e["event"] == "seal":
            statement = {**e["payload"]["statement"], "head": prev, "entries": seq}
            e["payload"] = {"statement": statement,
                            "transcript_signature": st.b64(transcript_key.sign(
                                st.message(statement))),
                            "root_key_signature": st.b64(root.sign(st.message(statement)))}
        elif e["event"] in ("approval", "witness.ack"):
            statement = {**e["payload"]["statement"], "head": prev}
            e["payload"] = {"statement": statement, "signature": st.b64(
                signers[e["actor"]].sign(st.message(statement)))}
        line = canonical_bytes(e)
        out.append(line)
        prev = hashlib.sha256(line).hexdigest()
    (bundle / TRANSCRIPT_FILE).write_bytes(b"\n".join(out) + b"\n")
    sums = checksum_list(bundle)
    statement = st.checksums_statement(ceremony=items[0]["ceremony"], checksums=sums)
    (bundle / "SHA256SUMS").write_bytes(sums)
    (bundle / "SHA256SUMS.sig").write_bytes(
        (st.b64(transcript_key.sign(st.message(statement))) + "\n").encode())


@pytest.fixture
def recovered(tmp_path: Path, original: FakeOriginal) -> FakeRecovery:
    rec = fake_recovery(tmp_path, original)
    to_shares(rec)
    rec.offer("alice")
    rec.offer("bob")
    assert rec.finish().outcome == "completed"
    assert verify_bundle(rec.bundle).ok
    return rec


def _attack(rec: FakeRecovery, change: Callable[[list[dict[str, Any]]], None]) -> None:
    items = rec.entries()
    change(items)
    root = rec.token.keys[("sample root key", "01")]
    assert isinstance(root, Ed25519PrivateKey)
    transcript_key = Ed25519PrivateKey.from_private_bytes(
        SeededRandom("recovery-token").random_bytes(32))
    _rechain(rec.bundle, items, transcript_key, root, rec.original.cast.signers)


def _presented(items: list[dict[str, Any]], who: str) -> int:
    return next(i for i, e in enumerate(items)
                if e["event"] == "share.presented" and e["actor"] == who)


def _recovered(items: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in items if e["event"] == "root_key.recovered")


def test_verifier_refuses_a_key_recovered_below_the_threshold(recovered: FakeRecovery) -> None:
    def change(items: list[dict[str, Any]]) -> None:
        del items[_presented(items, "bob")]
        _recovered(items)["payload"]["contributors"].pop()

    _attack(recovered, change)
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and (failure.name, failure.requirement) == ("quorum",
                                                                           "CER-RECOVERY")
    assert "recovered from 1 share(s), which do not reach the share thresholds" in \
        failure.detail


def test_verifier_refuses_unnamed_contributors(recovered: FakeRecovery) -> None:
    _attack(recovered, lambda items: _recovered(items)["payload"]["contributors"].reverse())
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and failure.name == "quorum"
    assert "names other contributors than the custodians who presented shares" in \
        failure.detail


def test_verifier_refuses_a_share_not_recorded_for_its_presenter(
        recovered: FakeRecovery) -> None:
    record = recovered.original.original.record
    carol = record.holder("carol")
    assert carol is not None

    def change(items: list[dict[str, Any]]) -> None:
        items[_presented(items, "bob")]["payload"]["commitment"] = carol.commitment

    _attack(recovered, change)
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and (failure.name, failure.requirement) == ("quorum",
                                                                           "CER-RECOVERY")
    assert failure.detail == ("'bob' presented a share that is not the one ceremony "
                              "sample-root-2026 recorded for them")


def test_verifier_refuses_a_recovered_key_that_is_not_the_original(
        recovered: FakeRecovery) -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(32))
    raw = other.public_key().public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)

    def change(items: list[dict[str, Any]]) -> None:
        payload = _recovered(items)["payload"]
        payload["public_key"] = st.encode_key(raw)
        payload["fingerprint"] = hashlib.sha256(raw).hexdigest()

    _attack(recovered, change)
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and (failure.name, failure.requirement) == ("signatures",
                                                                           "CER-RECOVERY")
    assert failure.detail == "the recovered root key is not the root key of the original ceremony"


def test_recovery_bundle_verifies_without_device_libraries(recovered: FakeRecovery) -> None:
    """`python -m ceremony.verify` on a recovery bundle (and, inside it, its original) with
    pkcs11, shamir_mnemonic, textual ... blocked, as on an auditor's machine."""
    from tests.test_isolation import run_blocked

    result = run_blocked(str(recovered.bundle))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"RECOVERY of ceremony {ORIGINAL_ID}" in result.stdout
    assert "rebuilt from the shares of alice, bob" in result.stdout


def test_verifier_needs_the_original_copy(recovered: FakeRecovery) -> None:
    copy = recovered.bundle / "original"
    # A byte changed inside the copy: the copy no longer verifies (step 5, before checksums).
    path = copy / "transcript.jsonl"
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"rehearsal":true', b'"rehearsal":True', 1))
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and (failure.name, failure.line) == ("start", 1)
    assert failure.requirement == "CER-RECOVERY"
    assert failure.detail.startswith("the copy of the original bundle in original/ does not "
                                     "verify (step 2, parse:")
    # Another ceremony's (verified) bundle in its place.
    shutil.rmtree(copy)
    shutil.copytree(GOLDEN / "other-bundle", copy)
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and failure.name == "start"
    assert failure.detail == ("the script recovers ceremony sample-root-2026, but the original "
                              "bundle is of ceremony other-root-2026")
    shutil.rmtree(copy)
    failure = verify_bundle(recovered.bundle).first_failure
    assert failure is not None and failure.detail.startswith(
        "a recovery bundle carries a copy of the original bundle in original/")


# ------------------------------------------------------------------ SoftHSM2, through the CLI


@dataclass
class Recovery:
    """An original ceremony run on one SoftHSM2 token, and a recovery prepared for another."""

    original: Ceremony
    target: SoftHsm
    directory: Path
    script: Script
    login: tuple[str, ...]
    answers_written: int = 0

    @property
    def script_path(self) -> Path:
        return self.directory / "script.toml"

    @property
    def out(self) -> Path:
        return self.directory / "bundle"

    def entries(self, out: Path | None = None) -> list[dict[str, Any]]:
        path = (out or self.out) / TRANSCRIPT_FILE
        return [json.loads(line) for line in path.read_text().splitlines()]

    def sheet(self, who: str) -> Path:
        (path,) = self.original.secret.glob(f"share-*-{who}-g*m*.txt")
        return path

    def mnemonic(self, who: str) -> str:
        words = re.findall(r"^\s*\d+\. (\S+)$", self.sheet(who).read_text(), re.M)
        return " ".join(words)

    def answers(self, shares: list[tuple[str, Path]]) -> Path:
        """An answers file: the simulated approvals, then these share files in this order."""
        identities = {p.id: self.original.directory / "identities" / f"{p.id}.pem"
                      for p in self.script.participants}
        text = answers_toml(self.script, simulated_answers(self.script, identities))
        text += "".join(f'\n[[shares]]\nparticipant = "{who}"\nfile = "{path}"\n'
                        for who, path in shares)
        self.answers_written += 1
        path = self.directory / f"answers-{self.answers_written}.toml"
        path.write_text(text)
        return path

    def run(self, shares: list[tuple[str, Path]], *extra: str, out: Path | None = None,
            original: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli("recover", str(self.script_path), "--original",
                       str(original or self.original.out), "--out", str(out or self.out),
                       "--headless", "--answers", str(self.answers(shares)), "--rehearsal",
                       "--token", self.target.uri, "--module", self.target.module,
                       *self.login, *extra, env=env or self.target.env)


def prepare_recovery(tmp_path: Path, softhsm: SoftHsm,
                     script_edit: tuple[str, str] | None = None) -> Recovery:
    """Run the original (real CLI, first token), then prepare its recovery: the script from
    the original's, a second token in the same token directory, activated for the script."""
    c = prepare_ceremony(tmp_path / "original", softhsm, script_edit=script_edit)
    result = c.run()
    assert result.returncode == 0, result.stderr
    report = verify_bundle(c.out)
    assert report.ok and report.head and report.root_fingerprint
    directory = tmp_path / "recovery"
    directory.mkdir()
    text = recovery_text(c.script_path.read_text(), report.head, report.root_fingerprint)
    (directory / "script.toml").write_text(text)
    shutil.copy(c.directory / "policy.toml", directory / "policy.toml")
    script = parse_script(text, "script.toml")
    target = add_token(softhsm, softhsm.label + "-new")
    done = activate(target.module, target.uri, script, bytearray(target.so_pin.encode()),
                    directory / "officers")
    sheets = [done.sheets / f"pin-share-{o}.txt" for o in ("alice", "bob")]
    pin, _ = combine_pin(script.token.activation, read_sheets(sheets))
    target.pin = pin.decode()
    (directory / "pin").write_text(target.pin + "\n")
    login = tuple(a for sheet in sheets for a in ("--pin-share", str(sheet)))
    return Recovery(c, target, directory, script, login)


def original_root(rec: Recovery) -> dict[str, Any]:
    (created,) = [e["payload"] for e in rec.original.entries()
                  if e["event"] == "root_key.created"]
    assert isinstance(created, dict)
    return created


def assert_recovered(rec: Recovery, result: subprocess.CompletedProcess[str],
                     contributors: list[str]) -> None:
    """The recovery bundle verifies on its own, holds the original's key, and the new token
    holds exactly that key pair; nothing of a share anywhere."""
    assert result.returncode == 0, result.stdout + result.stderr
    created = original_root(rec)
    assert f"recovered: the root key of ceremony {ORIGINAL_ID} (fingerprint " \
           f"{created['fingerprint']}) is on {rec.target.uri}" in result.stdout
    verified = run_cli("verify", str(rec.out), env=rec.target.env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"VERIFIED REHEARSAL: ceremony {RECOVERY_ID}, outcome completed" in verified.stdout
    assert f"RECOVERY of ceremony {ORIGINAL_ID} (head " in verified.stdout
    assert f"rebuilt from the shares of {', '.join(contributors)}" in verified.stdout
    assert f"root key fingerprint: {created['fingerprint']}" in verified.stdout

    # The last root_key.recovered (an earlier one may have been rolled back after a crash).
    recovered = [e["payload"] for e in rec.entries() if e["event"] == "root_key.recovered"][-1]
    assert (recovered["public_key"], recovered["fingerprint"]) == (created["public_key"],
                                                                   created["fingerprint"])
    assert [c["participant"] for c in recovered["contributors"]] == contributors
    entries = rec.entries()
    last_action = max(i for i, e in enumerate(entries) if e["event"] == "action.started")
    presented = [e["actor"] for e in entries[last_action:] if e["event"] == "share.presented"]
    assert presented == contributors
    # root-public-key.pem is the original's key (the same DER SubjectPublicKeyInfo).
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo

    def der(pem: bytes) -> bytes:
        return serialization.load_pem_public_key(pem[pem.index(b"-----BEGIN"):]).public_bytes(
            *spki)

    assert der((rec.out / ROOT_PEM_FILE).read_bytes()) == der(
        (rec.original.out / ROOT_PEM_FILE).read_bytes())

    # The new token: exactly the root key pair (the transcript key is gone, no KEK).
    objects = rec.target.objects()
    assert sorted(o.split(";")[0] for o in objects) == ["Private Key Object",
                                                        "Public Key Object"], objects
    label = rec.script.root_key.label
    assert token_labels(rec.target) == [label, label]
    # `ceremony hsm inventory` against the recovery bundle: no drift.
    inventory = run_cli("hsm", "inventory", "--token", rec.target.uri, "--module",
                        rec.target.module, "--pin-file", str(rec.directory / "pin"),
                        "--bundle", str(rec.out), env=rec.target.env)
    assert inventory.returncode == 0, inventory.stdout + inventory.stderr

    haystacks = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode(),
                 "verify": verified.stdout.encode()}
    haystacks |= {str(p): p.read_bytes() for p in rec.out.rglob("*") if p.is_file()}
    assert_no_share_words([rec.mnemonic(w) for w in ("alice", "bob", "carol")], haystacks)


def test_recover_an_ed25519_root_key_from_two_shares(tmp_path: Path, softhsm: SoftHsm) -> None:
    rec = prepare_recovery(tmp_path, softhsm)
    started = time.monotonic()
    result = rec.run([("carol", rec.sheet("carol")), ("alice", rec.sheet("alice"))])
    elapsed = time.monotonic() - started
    assert_recovered(rec, result, ["carol", "alice"])
    assert "carol presented their share (0 of 1 group(s) complete; group 1: 1 of 2 (carol))" \
        in result.stdout
    print(f"\nEd25519 recovery through the CLI {elapsed:.2f} s")


def test_recover_an_rsa_3072_root_key(tmp_path: Path, softhsm: SoftHsm) -> None:
    rec = prepare_recovery(tmp_path, softhsm, script_edit=RSA_3072)
    assert rec.script.root_key.kind == "rsa-3072"
    started = time.monotonic()
    result = rec.run([("bob", rec.sheet("bob")), ("carol", rec.sheet("carol"))])
    elapsed = time.monotonic() - started
    assert_recovered(rec, result, ["bob", "carol"])
    assert all("; RSA" in o for o in rec.target.objects())
    (recovered,) = [e["payload"] for e in rec.entries() if e["event"] == "root_key.recovered"]
    assert recovered["derivation"].startswith("unwrapped from the original's root-key.wrapped")
    assert "wrapped" not in recovered
    # The blob stays in the copy of the original (covered by the recovery's checksums).
    assert (rec.out / "original" / st.WRAPPED_FILE).read_bytes() == (
        rec.original.out / st.WRAPPED_FILE).read_bytes()
    assert not (rec.out / st.WRAPPED_FILE).exists()
    (started_entry,) = [e["payload"] for e in rec.entries() if e["event"] == "ceremony.started"]
    assert "RSA_PKCS_KEY_PAIR_GEN" not in started_entry["token"]["mechanisms"]
    print(f"\nRSA-3072 recovery through the CLI {elapsed:.2f} s")


def test_over_threshold_after_a_refused_share_then_resume(tmp_path: Path,
                                                          softhsm: SoftHsm) -> None:
    """A share with a checksum error stops the headless run (exit 1, named, nothing recorded
    of it); `--resume` with the right sheets goes on, and all three shares are used."""
    rec = prepare_recovery(tmp_path, softhsm)
    bad = rec.directory / "alice-mistyped.txt"
    bad.write_text(broken_checksum(rec.mnemonic("alice")) + "\n")
    refused = rec.run([("alice", bad)])
    assert refused.returncode == 1, refused.stdout + refused.stderr
    first = refused.stderr.splitlines()[0]
    assert first == ("ceremony: the share alice presented fails its SLIP-39 checksum (a word "
                     "is wrong, or words are out of order); it was not used [CER-RECOVERY]")
    assert "Traceback" not in refused.stderr
    events = [e["event"] for e in rec.entries()]
    assert events[-1] == "confirmation" and "share.presented" not in events
    assert_no_share_words([rec.mnemonic(w) for w in ("alice", "bob", "carol")],
                          {"stdout": refused.stdout.encode(),
                           "stderr": refused.stderr.encode()})

    result = rec.run([("bob", rec.sheet("bob")), ("carol", rec.sheet("carol")),
                      ("alice", rec.sheet("alice"))], "--resume")
    assert_recovered(rec, result, ["bob", "carol", "alice"])
    assert [e["event"] for e in rec.entries()].count("ceremony.resumed") == 1


@pytest.mark.parametrize("kill_after", [11, 13], ids=["after-a-share", "after-the-import"])
def test_sigkill_during_the_recovery_then_resume(tmp_path: Path, softhsm: SoftHsm,
                                                 kill_after: int) -> None:
    """Killed after the first share.presented, or after root_key.recovered (the key is on
    the token): the resume rolls the action back (destroying the key) and asks for the
    shares again; the result verifies and the token holds the key once."""
    rec = prepare_recovery(tmp_path, softhsm)
    shares = [("carol", rec.sheet("carol")), ("bob", rec.sheet("bob"))]
    killed = rec.run(shares, env={**rec.target.env,
                                  "CEREMONY_TEST_KILL_AFTER_SEQ": str(kill_after)})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    before = rec.entries()
    assert before[-1]["event"] == {11: "share.presented", 13: "root_key.recovered"}[kill_after]
    resumed = rec.run(shares, "--resume")
    entries = rec.entries()
    assert entries[:len(before)] == before
    rolled = entries[kill_after + 2]
    assert [e["event"] for e in entries[kill_after + 1:kill_after + 3]] == [
        "ceremony.resumed", "action.rolled_back"]
    assert len(rolled["payload"]["destroyed_objects"]) == (2 if kill_after == 13 else 0)
    assert_recovered(rec, resumed, ["carol", "bob"])


def test_original_that_does_not_verify_is_refused_first(tmp_path: Path) -> None:
    """Before any token is opened or share read: the original must verify (no SoftHSM2 here:
    the token named does not even exist)."""
    original = tmp_path / "original"
    shutil.copytree(GOLDEN / "bundle", original)
    path = original / "transcript.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"title":"Open the ceremony"',
                                               b'"title":"Open the ceremonY"', 1))
    script = tmp_path / "recovery.toml"
    script.write_text(sample_recovery_text())
    (tmp_path / "policy.toml").write_text(sample_texts()[1])
    answers = tmp_path / "answers.toml"
    answers.write_text(f'ceremony_id = "{RECOVERY_ID}"\nsteps = []\n')
    out = tmp_path / "out"
    result = run_cli("recover", str(script), "--original", str(original), "--out", str(out),
                     "--headless", "--answers", str(answers), "--token",
                     "pkcs11:token=no-such-token", "--module", "/nonexistent.so",
                     "--pin-file", str(tmp_path / "no-pin"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(f"ceremony: the original bundle {original} does not verify "
                                    "(chain: ")
    assert "[CER-RECOVERY]" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
    # The untouched golden bundle passes that check, then the script is compared with it:
    # the sample's placeholder head is not this bundle's (still before any token).
    result = run_cli("recover", str(script), "--original", str(GOLDEN / "bundle"), "--out",
                     str(out), "--headless", "--answers", str(answers), "--token",
                     "pkcs11:token=no-such-token", "--module", "/nonexistent.so")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "original: ceremony sample-root-2026 verified" in result.stdout
    assert result.stderr.startswith("ceremony: recovery.transcript_head is not the transcript "
                                    "head of ceremony sample-root-2026")
    assert not out.exists()
    # With the golden bundle's head and fingerprint the script fits; only now the login.
    report = verify_bundle(GOLDEN / "bundle")
    assert report.head and report.root_fingerprint
    text = sample_recovery_text().replace(f'transcript_head = "{"0" * 64}"',
                                          f'transcript_head = "{report.head}"')
    script.write_text(text.replace(f'root_fingerprint = "{"0" * 64}"',
                                   f'root_fingerprint = "{report.root_fingerprint}"'))
    result = run_cli("recover", str(script), "--original", str(GOLDEN / "bundle"), "--out",
                     str(out), "--headless", "--answers", str(answers), "--rehearsal",
                     "--token", "pkcs11:token=no-such-token", "--module", sys.executable)
    # (a file that is no PKCS#11 module: the workstation's attestation hashes it, then the
    # PIN shares are refused before it is loaded)
    assert result.returncode == 1, result.stdout + result.stderr  # the login, only now
    assert "must present their PIN shares; 0 did [CER-ACTIVATION]" in result.stderr
    assert not out.exists()


def test_recover_needs_an_original_a_recovery_script_and_headless_answers(
        tmp_path: Path) -> None:
    """Refused before anything is opened: in the UI (the default) as headless."""
    script = tmp_path / "recovery.toml"
    script.write_text(sample_recovery_text())
    (tmp_path / "policy.toml").write_text(sample_texts()[1])
    (tmp_path / "script.toml").write_text(sample_texts()[0])
    result = run_cli("recover", str(script), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.startswith("ceremony: the script recovers ceremony sample-root-2026: "
                                    "give its bundle with --original BUNDLE")
    assert not (tmp_path / "out").exists()
    result = run_cli("recover", str(tmp_path / "script.toml"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "is not a recovery script: it has no [recovery] table" in result.stderr
    result = run_cli("recover", str(script), "--out", str(tmp_path / "o"), "--headless")
    assert result.returncode == 2
    assert result.stderr.startswith("ceremony: --headless needs --answers FILE")
    result = run_cli("recover", str(script), "--out", str(tmp_path / "o"), "--headless",
                     "--answers", str(script))
    assert result.returncode == 2
    assert "give its bundle with --original BUNDLE" in result.stderr


def test_a_script_for_another_original_is_refused_before_anything(
        tmp_path: Path, softhsm: SoftHsm) -> None:
    """The recovery script names one original; the bundle given is another bundle of the
    same ceremony id (the golden one): refused at the start, nothing written, no share read."""
    rec = prepare_recovery(tmp_path, softhsm)
    result = rec.run([("alice", rec.sheet("alice")), ("bob", rec.sheet("bob"))],
                     original=GOLDEN / "bundle")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("ceremony: recovery.transcript_head is not the transcript "
                                    "head of ceremony sample-root-2026")
    assert not rec.out.exists()
    assert rec.target.objects() == []


# ------------------------------------------------------------------ SoftHSM2, in process


def _open_target(rec: Recovery) -> Any:
    sheets = [Path(a) for a in rec.login if a != "--pin-share"]
    return open_token(rec.script.token.activation, rec.target.module, rec.target.uri,
                      pin_file=None, pin_shares=sheets)


def _engine(rec: Recovery, token: Any, splitter: Slip39Splitter | None = None) -> Engine:
    text = rec.script_path.read_text()
    policy_text = (rec.directory / "policy.toml").read_text()
    devices = Devices(SystemClock(), OsRandomness(), token, splitter or Slip39Splitter(),
                      NoSecretOutput())
    return Engine.start(rec.script, parse_policy(policy_text, "policy.toml"), text.encode(),
                        policy_text.encode(), devices, rec.out, rehearsal=True,
                        original=load_original(rec.original.out),
                        attestation=passing_attestation(True))


def _signers(rec: Recovery) -> dict[str, Any]:
    return {p.id: KeyFileSigner.load(p.id, rec.original.directory / "identities" /
                                     f"{p.id}.pem") for p in rec.script.participants}


def _to_shares_on_token(rec: Recovery, engine: Engine) -> SharesNeeded:
    with pytest.raises(AnswersError, match="needs more shares"):
        run_headless(engine, simulated_answers(rec.script), _signers(rec), lambda _: None)
    prompt = engine.next_prompt()
    assert isinstance(prompt, SharesNeeded)
    return prompt


def test_refusals_on_softhsm_leave_the_transcript_unchanged(tmp_path: Path,
                                                            softhsm: SoftHsm) -> None:
    """Real token, real SLIP-39: a share of another set, a checksum error, a valid share under
    the wrong name, an altered share and a duplicate are each refused with a sentence naming
    the custodian, the transcript byte for byte as it was; the right shares then recover."""
    rec = prepare_recovery(tmp_path, softhsm)
    mnemonics = {w: rec.mnemonic(w) for w in ("alice", "bob", "carol")}
    token = _open_target(rec)
    try:
        engine = _engine(rec, token)
        _to_shares_on_token(rec, engine)
        transcript = rec.out / TRANSCRIPT_FILE
        original = load_original(rec.original.out)

        def refused(answer: ShareOffered) -> str:
            before = transcript.read_bytes()
            with pytest.raises(CeremonyError) as caught:
                engine.submit(answer)
            assert transcript.read_bytes() == before
            message = caught.value.describe()
            assert_no_share_words(list(mnemonics.values()), {"message": message.encode()})
            return caught.value.message

        assert refused(ShareOffered("alice", other_set_share(original))).startswith(
            "the share alice presented is a share of another set")
        assert refused(ShareOffered("alice", broken_checksum(mnemonics["alice"]))).startswith(
            "the share alice presented fails its SLIP-39 checksum")
        assert refused(ShareOffered("alice", mnemonics["carol"])) == (
            "the share presented as alice's is recorded as carol's (group 1 member 3), not "
            "alice's")
        assert refused(ShareOffered("bob", altered_value(mnemonics["bob"]))) == (
            "the share bob presented does not match bob's recorded share: it is corrupt or "
            "someone else's")
        engine.submit(ShareOffered("bob", mnemonics["bob"]))
        assert refused(ShareOffered("bob", mnemonics["bob"])) == (
            "bob has already presented their share in this recovery")
        prompt = engine.submit(ShareOffered("alice", mnemonics["alice"]))
        assert isinstance(prompt, SharesNeeded) and prompt.ready
        finished = run_headless(engine, simulated_answers(rec.script), _signers(rec),
                                lambda _: None)
    finally:
        token.close()
    assert finished.outcome == "completed"
    verified = run_cli("verify", str(rec.out), env=rec.target.env)
    assert verified.returncode == 0, verified.stdout
    assert [e["actor"] for e in rec.entries() if e["event"] == "share.presented"] == [
        "bob", "alice"]
    assert token_labels(rec.target) == [rec.script.root_key.label] * 2


class _Recording:
    """The token, with every call after the shares are in written down."""

    def __init__(self, token: Any) -> None:
        self._token = token
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._token, name)
        if callable(attribute):
            def call(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attribute(*args, **kwargs)
            return call
        return attribute


def test_another_key_puts_nothing_on_the_softhsm_token(tmp_path: Path,
                                                       softhsm: SoftHsm) -> None:
    """Shares that pass every check but rebuild another seed (the splitter is made to give
    one): the fingerprint check fails before any token call; the new token holds nothing but
    the recovery's transcript key; the recovery can then be aborted, and verifies so."""
    rec = prepare_recovery(tmp_path, softhsm)
    real = _open_target(rec)
    token = _Recording(real)
    try:
        engine = _engine(rec, token, _OtherSeed())
        _to_shares_on_token(rec, engine)
        engine.submit(ShareOffered("alice", rec.mnemonic("alice")))
        engine.submit(ShareOffered("carol", rec.mnemonic("carol")))
        token.calls.clear()
        with pytest.raises(CheckFailed, match="nothing was put on the token"):
            engine.submit(Proceed())
        # The rollback looked for what to destroy (nothing); no key was made or imported.
        assert not {"import_key", "import_ed25519", "unwrap_private", "sign",
                    "generate_rsa"} & set(token.calls), token.calls
        label = rec.script.root_key.label
        assert label not in token_labels(rec.target)
        assert len(rec.target.objects()) == 2  # the recovery's transcript key only
        engine.submit(Abort("the shares rebuild another key"))
    finally:
        real.close()
    events = [e["event"] for e in rec.entries()]
    assert "root_key.recovered" not in events and events[-1] == "seal"
    assert rec.target.objects() == []
    report = verify_bundle(rec.out)
    assert report.ok and report.outcome == "aborted"

