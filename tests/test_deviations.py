"""Witnesses co-sign the seal; deviations need a custodian quorum (ADR 15), with fakes.

The engine's refusals (each leaves the transcript byte for byte as it was), then the
verifier: the bundles these runs make verify, and a transcript forged with the transcript
key itself (re-chained, checkpoints and seal re-signed) fails where the ceremony went on
without its quorum. The same flow on SoftHSM2 through `ceremony run` is in
test_deviations_softhsm.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import canonical_bytes, sha256_hex
from ceremony.engine.core import (
    CHECKSUMS_FILE,
    CHECKSUMS_SIG_FILE,
    Devices,
    Engine,
    checksum_list,
    transcript_key_id,
    transcript_key_label,
)
from ceremony.engine.prompts import (
    Abort,
    ActionReady,
    ApprovalNeeded,
    Begin,
    BeginStep,
    Finished,
    Proceed,
    TypedConfirmation,
)
from ceremony.errors import InputError, QuorumError, TokenError
from ceremony.model import statements as st
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import make_cast, sample_texts
from ceremony.verify import verify_bundle
from tests.fakes import (
    FakeToken,
    MemorySecrets,
    SeededRandom,
    TickingClock,
    passing_attestation,
)
from tests.test_engine import PHRASE, PROVISION, Run

WALTER = """[[participants]]
id = "walter"
name = "Walter Witness"
role = "witness"
public_key = "{key}"

[[participants]]
id = "oscar"
"""


def witnessed_texts(seal: int = 2, quorum: int = 2) -> tuple[str, str]:
    """The sample script with a second witness, and its policy with [seal] and [deviations]
    (the script's policy pin updated)."""
    template, policy_text = sample_texts()
    new_policy = policy_text + f"\n[seal]\nwitnesses = {seal}\n\n[deviations]\nquorum = {quorum}\n"
    old_pin, new_pin = sha256_hex(policy_text.encode()), sha256_hex(new_policy.encode())
    assert old_pin in template
    placeholder = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    key = st.encode_key(placeholder.public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw))
    marker = '[[participants]]\nid = "oscar"\n'
    assert marker in template
    template = template.replace(old_pin, new_pin).replace(marker, WALTER.format(key=key))
    return template, new_policy


def start(tmp_path: Path, *, seal: int = 2, quorum: int = 2, fail_import: bool = False) -> Run:
    template, policy_text = witnessed_texts(seal, quorum)
    cast = make_cast(template, SeededRandom("participants"))
    token = FakeToken(SeededRandom("token"), fail_import=fail_import)
    secrets = MemorySecrets()
    devices = Devices(TickingClock(), SeededRandom("os"), token,
                      Slip39Splitter(SeededRandom("slip39")), secrets)
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(), devices,
                          tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    return Run(engine, cast, token, secrets, tmp_path / "bundle")


def to_action(run: Run) -> ActionReady:
    """Through the first step, then the provisioning step up to its action."""
    run.engine.submit(Begin())
    run.approve("wendy")
    run.engine.submit(Begin())
    for who in ("alice", "bob", "wendy"):
        run.approve(who)
    prompt = run.engine.submit(TypedConfirmation(PHRASE))
    assert isinstance(prompt, ActionReady)
    return prompt


def to_seal(run: Run) -> ApprovalNeeded:
    """From the provisioning action through the last step: the seal's prompt."""
    assert isinstance(run.engine.submit(Proceed()), BeginStep)
    run.engine.submit(Begin())
    prompt = run.approve("wendy")
    assert isinstance(prompt, ApprovalNeeded) and prompt.kind == "seal"
    return prompt


def entries(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.transcript.read_text().splitlines()]


# ------------------------------------------------------------------ the seal


def test_witnesses_cosign_the_seal_and_each_refusal_is_named(tmp_path: Path) -> None:
    run = start(tmp_path)
    to_action(run)
    prompt = to_seal(run)
    assert (prompt.role, prompt.needed, prompt.eligible, prompt.step) == (
        "witness", 2, ("wendy", "walter"), "")
    assert prompt.template["type"] == st.SEAL_WITNESS
    assert prompt.template["head"] == run.engine.writer.head
    assert run.engine.status().phase == "seal"
    # Nothing but the co-signatures (or an abort) is taken now.
    message = run.refused(Begin())
    assert "the seal needs the co-signatures of 2 witnesses" in message
    # Not a witness: a custodian, and the administrator.
    for who in ("alice", "ada"):
        message = run.refused(run.signed(who, prompt.for_participant(who)))
        assert f"{who!r} may not give the seal co-signature for the seal" in message
    # A bad signature: walter's statement signed with wendy's key.
    message = run.refused(run.signed("walter", prompt.for_participant("walter"),
                                     signer="wendy"))
    assert "does not verify" in message
    # A step's witness acknowledgement is not a seal co-signature.
    step_statement = st.approval_statement(
        ceremony=run.cast.script.ceremony_id, script_sha256=run.cast.script.sha256,
        step="close", step_digest="0" * 64, head=run.engine.writer.head, role="witness",
        participant="walter", time=prompt.template["time"])
    run.refused(run.signed("walter", step_statement))
    stale = prompt.for_participant("walter")
    after = run.approve("wendy")
    assert isinstance(after, ApprovalNeeded) and after.collected == ("wendy",)
    # Twice, and the stale head (signed before wendy's entry moved it).
    message = run.refused(run.signed("wendy", after.for_participant("wendy")))
    assert "'wendy' has already given the seal co-signature" in message
    message = run.refused(run.signed("walter", stale))
    assert "was made for another ceremony, step or transcript head" in message
    finished = run.approve("walter")
    assert isinstance(finished, Finished) and finished.outcome == "completed"
    found = entries(run)
    witnessed = [e for e in found if e["event"] == "seal.witnessed"]
    assert [(e["actor"], e["step"]) for e in witnessed] == [("wendy", None), ("walter", None)]
    seal = found[-1]["payload"]["statement"]
    assert seal["witnesses"] == [{"participant": e["actor"], "seq": e["seq"]}
                                 for e in witnessed]
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def test_an_abort_while_the_witnesses_sign_seals_without_them(tmp_path: Path) -> None:
    run = start(tmp_path)
    to_action(run)
    to_seal(run)
    run.approve("wendy")
    finished = run.engine.submit(Abort("walter will not co-sign"))
    assert isinstance(finished, Finished) and finished.outcome == "aborted"
    seal = entries(run)[-1]["payload"]["statement"]
    assert "witnesses" not in seal and seal["outcome"] == "aborted"
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def test_a_stop_between_two_cosignatures_resumes_cleanly(tmp_path: Path) -> None:
    """The crash path (ADR 2) between the witnesses: wendy's co-signature stays valid; the
    resume's own entries move the head, and walter signs the head as it stands then."""
    run = start(tmp_path)
    to_action(run)
    to_seal(run)
    stale = run.approve("wendy")
    assert isinstance(stale, ApprovalNeeded)
    engine = run.engine
    engine.writer.close()
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, run.bundle,
                            attestation=passing_attestation(engine.rehearsal))
    run.engine = resumed
    prompt = resumed.next_prompt()
    assert isinstance(prompt, ApprovalNeeded) and prompt.kind == "seal"
    assert prompt.collected == ("wendy",) and prompt.template["head"] != stale.template["head"]
    assert run.events()[-2:] == ["ceremony.resumed", "checkpoint"]
    run.refused(run.signed("walter", stale.for_participant("walter")))
    assert isinstance(run.approve("walter"), Finished)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def test_without_a_seal_table_the_seal_is_as_before(tmp_path: Path) -> None:
    run = start(tmp_path, seal=0, quorum=0)
    to_action(run)
    assert isinstance(run.engine.submit(Proceed()), BeginStep)
    run.engine.submit(Begin())
    assert isinstance(run.approve("wendy"), Finished)
    assert "witnesses" not in entries(run)[-1]["payload"]["statement"]
    assert verify_bundle(run.bundle).ok


# ------------------------------------------------------------------ deviations


def test_a_declared_deviation_holds_the_ceremony_until_its_quorum(tmp_path: Path) -> None:
    run = start(tmp_path)
    run.engine.submit(Begin())
    run.approve("wendy")
    run.engine.submit(Begin())
    before = run.transcript.read_bytes()
    for who, kind, reason, error in (
            ("mallory", "card-replaced", "a reason", "not a participant"),
            ("ada", "lost-card", "a reason", "not a kind of deviation"),
            ("ada", "step-retried", "a reason", "recorded by the engine"),
            ("ada", "card-replaced", "   ", "needs a reason")):
        with pytest.raises(InputError, match=error):
            run.engine.declare_deviation(who, kind, reason)
    assert run.transcript.read_bytes() == before
    prompt = run.engine.declare_deviation(
        "ada", "card-replaced", "Bob's identity card  failed; he signs with his spare card.")
    assert isinstance(prompt, ApprovalNeeded) and prompt.kind == "deviation"
    declared = entries(run)[-1]
    assert (declared["event"], declared["actor"], declared["step"]) == (
        "deviation", "ada", PROVISION)
    assert declared["payload"] == {
        "kind": "card-replaced", "quorum": 2,
        "reason": "Bob's identity card failed; he signs with his spare card."}
    assert prompt.template["deviation"] == run.engine.writer.head
    assert prompt.template["seq"] == declared["seq"]
    assert prompt.eligible == ("alice", "bob", "carol") and prompt.needed == 2
    assert run.engine.status().phase == "deviation"
    # The step's own approval is not an approval of the deviation.
    step_statement = {**prompt.for_participant("alice"), "type": st.APPROVAL}
    run.refused(run.signed("alice", step_statement))
    # Continuing before the quorum: refused, naming the deviation.
    message = run.refused(TypedConfirmation(PHRASE))
    assert f"the card-replaced deviation at entry {declared['seq']} needs 2 custodian " \
           "approvals" in message
    with pytest.raises(QuorumError, match="still waiting"):
        run.engine.declare_deviation("wendy", "other", "another one")
    message = run.refused(run.signed("wendy", prompt.for_participant("wendy")))
    assert "'wendy' may not give the deviation approval" in message
    message = run.refused(run.signed("alice", prompt.for_participant("alice"),
                                     signer="carol"))
    assert "does not verify" in message
    run.approve("alice")
    message = run.refused(run.signed("alice", prompt.for_participant("alice")))
    assert "already given the deviation approval" in message
    message = run.refused(Proceed())
    assert "(1 so far)" in message
    after = run.approve("carol")
    # The deviation approved, the step's own prompt is back.
    assert isinstance(after, ApprovalNeeded) and after.kind == "step"
    assert after.step == PROVISION and after.role == "custodian"
    for who in ("alice", "bob", "wendy"):
        run.approve(who)
    run.engine.submit(TypedConfirmation(PHRASE))
    to_seal(run)
    run.approve("wendy")
    assert isinstance(run.approve("walter"), Finished)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def test_a_retry_is_a_deviation(tmp_path: Path) -> None:
    run = start(tmp_path, fail_import=True)
    to_action(run)
    with pytest.raises(TokenError):
        run.engine.submit(Proceed())
    run.token.fail_import = False
    prompt = run.engine.submit(Proceed())  # the retry: declared, not yet run
    assert isinstance(prompt, ApprovalNeeded) and prompt.kind == "deviation"
    assert run.events()[-2:] == ["action.rolled_back", "deviation"]
    declared = entries(run)[-1]
    assert declared["actor"] == "ada" and declared["payload"]["kind"] == "step-retried"
    assert "the fake token refuses imports" in declared["payload"]["reason"]
    assert run.token.calls == ["import"]  # nothing ran again
    run.refused(Proceed())
    run.approve("alice")
    assert isinstance(run.approve("bob"), ActionReady)
    to_seal(run)
    run.approve("wendy")
    assert isinstance(run.approve("walter"), Finished)
    assert run.token.calls == ["import", "import"]
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


def test_a_retry_without_a_quorum_is_recorded_and_runs(tmp_path: Path) -> None:
    run = start(tmp_path, seal=0, quorum=0, fail_import=True)
    to_action(run)
    with pytest.raises(TokenError):
        run.engine.submit(Proceed())
    run.token.fail_import = False
    assert isinstance(run.engine.submit(Proceed()), BeginStep)
    events = run.events()
    assert events[events.index("action.rolled_back") + 1:][:2] == ["deviation",
                                                                   "action.started"]
    run.engine.submit(Begin())
    assert isinstance(run.approve("wendy"), Finished)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure


# ------------------------------------------------------------------ the verifier


class Forger:
    """Rewrites a finished fake bundle's transcript and re-signs what the transcript key
    and root key sign (captured from the fake token before the seal destroyed the
    transcript key): a forgery only the quorum rules can catch."""

    def __init__(self, run: Run) -> None:
        self.run = run
        tk = (transcript_key_label(run.cast.script.ceremony_id),
              transcript_key_id(run.cast.script.ceremony_id))
        self.transcript_key = run.token.keys[tk]

    def write(self, lines: list[dict[str, Any]]) -> None:
        run, key = self.run, self.transcript_key
        assert isinstance(key, Ed25519PrivateKey)
        root = run.token.keys[(run.cast.script.root_key.label, run.cast.script.root_key.key_id)]
        assert isinstance(root, Ed25519PrivateKey)
        prev, out = "0" * 64, b""
        for seq, entry in enumerate(lines):
            entry = {**entry, "seq": seq, "prev": prev}
            p = entry["payload"]
            if entry["event"] == "checkpoint":
                statement = st.checkpoint_statement(ceremony=entry["ceremony"], seq=seq - 1,
                                                    head=prev)
                entry["payload"] = {"statement": statement,
                                    "signature": st.b64(key.sign(st.message(statement)))}
            elif entry["event"] == "seal":
                statement = {**p["statement"], "head": prev, "entries": seq}
                if "witnesses" in statement:
                    statement["witnesses"] = [
                        {"participant": e["actor"], "seq": i} for i, e in enumerate(lines)
                        if e["event"] == "seal.witnessed"]
                message = st.message(statement)
                entry["payload"] = {"statement": statement,
                                    "transcript_signature": st.b64(key.sign(message)),
                                    "root_key_signature": st.b64(root.sign(message))}
            line = canonical_bytes(entry)
            out += line + b"\n"
            prev = sha256_hex(line)
        bundle = run.bundle
        (bundle / "transcript.jsonl").write_bytes(out)
        sums = checksum_list(bundle)
        (bundle / CHECKSUMS_FILE).write_bytes(sums)
        statement = st.checksums_statement(ceremony=run.cast.script.ceremony_id,
                                           checksums=sums)
        (bundle / CHECKSUMS_SIG_FILE).write_text(st.b64(key.sign(st.message(statement))) + "\n")


@pytest.fixture(scope="module")
def retried(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Forger, bytes]:
    """A completed fake ceremony with a retried action (its deviation approved by alice
    and bob) and two seal co-signatures; the forger, and the transcript as made."""
    run = start(tmp_path_factory.mktemp("retried"), fail_import=True)
    forger = Forger(run)
    to_action(run)
    with pytest.raises(TokenError):
        run.engine.submit(Proceed())
    run.token.fail_import = False
    run.engine.submit(Proceed())
    run.approve("alice")
    run.approve("bob")
    to_seal(run)
    run.approve("wendy")
    run.approve("walter")
    return run, forger, run.transcript.read_bytes()


def forged(retried: tuple[Run, Forger, bytes], keep: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The report on the retried ceremony's transcript without the entries ``keep``
    refuses, re-signed; and the entries written."""
    run, forger, original = retried
    lines = [json.loads(x) for x in original.splitlines()]
    lines = [e for e in lines if keep(e)]
    forger.write(lines)
    try:
        return verify_bundle(run.bundle), lines
    finally:
        forger.write([json.loads(x) for x in original.splitlines()])


def test_the_retried_bundle_verifies_and_a_faithful_forger_changes_nothing(
        retried: tuple[Run, Forger, bytes]) -> None:
    run, _, original = retried
    report, _ = forged(retried, lambda e: True)
    assert report.ok, report.first_failure
    assert run.transcript.read_bytes() == original


def test_going_on_with_one_deviation_approval_fails(
        retried: tuple[Run, Forger, bytes]) -> None:
    report, lines = forged(retried, lambda e: not (e["event"] == "deviation.approved"
                                                   and e["actor"] == "bob"))
    failed = report.first_failure
    assert failed is not None and (failed.name, failed.requirement) == ("quorum",
                                                                        "CER-DEVIATION")
    assert lines[failed.seq]["event"] == "action.started"
    assert "had 1 of 2 custodian approvals" in failed.detail


def test_a_retry_without_its_deviation_fails(retried: tuple[Run, Forger, bytes]) -> None:
    report, lines = forged(retried, lambda e: e["event"] not in ("deviation",
                                                                 "deviation.approved"))
    failed = report.first_failure
    assert failed is not None and failed.requirement == "CER-DEVIATION"
    assert lines[failed.seq]["event"] == "action.started"
    assert "ran again after it was rolled back" in failed.detail


def test_a_seal_short_of_its_witnesses_fails(retried: tuple[Run, Forger, bytes]) -> None:
    report, lines = forged(retried, lambda e: not (e["event"] == "seal.witnessed"
                                                   and e["actor"] == "walter"))
    failed = report.first_failure
    assert failed is not None and (failed.name, failed.requirement) == ("seal",
                                                                        "CER-SEAL-WITNESS")
    assert failed.seq == len(lines) - 1 and "1 of the 2 witness co-signatures" in failed.detail


@pytest.mark.parametrize(("event", "field"), [("seal.witnessed", "signature"),
                                              ("deviation.approved", "signature"),
                                              ("deviation.approved", "reason"),
                                              ("seal.witnessed", "head")])
def test_an_altered_cosignature_or_deviation_approval_fails_naming_it(
        retried: tuple[Run, Forger, bytes], event: str, field: str) -> None:
    run, forger, original = retried
    lines = [json.loads(x) for x in original.splitlines()]
    target = next(e for e in lines if e["event"] == event)
    p = target["payload"]
    if field == "signature":
        raw = bytearray(st.unb64(p["signature"]))
        raw[0] ^= 1
        p["signature"] = st.b64(bytes(raw))
    else:
        p["statement"][field] = "x" if field == "reason" else "0" * 64
    forger.write(lines)
    try:
        report = verify_bundle(run.bundle)
    finally:
        forger.write([json.loads(x) for x in original.splitlines()])
    failed = report.first_failure
    assert failed is not None and failed.seq == target["seq"], failed
    assert failed.requirement in ("CER-SEAL-WITNESS", "CER-DEVIATION")
    assert repr(target["actor"]) in failed.detail


def test_the_printed_transcript_words_deviations_and_cosignatures(
        retried: tuple[Run, Forger, bytes]) -> None:
    from ceremony.bundlefacts import load_verified
    from ceremony.printout import build_printout

    run = retried[0]
    printout = build_printout(load_verified(run.bundle, "print"))
    cover = dict(printout.facts)
    assert cover["Seal co-signed"] == ("by Wendy Witness (wendy, witness), Walter Witness "
                                       "(walter, witness)")
    assert cover["Deviations"].startswith("1: entry ")
    assert "step-retried declared by Ada Administrator (ada, administrator)" in \
        cover["Deviations"]
    views = {v.event: v for v in printout.entries}
    deviation = views["deviation"].details
    assert deviation[0] == ("DEVIATION from the script: a step's action run again after it "
                            "was rolled back")
    assert deviation[1].startswith("reason: the action of step 'provision-root-key' runs "
                                   "again") and "refuses imports" in deviation[1]
    assert deviation[2] == "the ceremony went on only after 2 custodian approval(s) of it"
    approved = [v for v in printout.entries if v.event == "deviation.approved"]
    assert [v.details[0].split(" approved by ")[1].split(",")[0] for v in approved] == [
        "Alice Custodian (alice", "Bob Custodian (bob"]
    assert views["seal.witnessed"].details[0].startswith(  # the last: walter's
        "the seal co-signed by Walter Witness (walter, witness), signed ")
    seal = views["seal"].details
    assert seal[-1].startswith("co-signed by the witnesses Wendy Witness (wendy, witness) "
                               "(entry ")
    people = {p.participant: p.did for p in printout.people}
    assert "co-signed the seal" in people["walter"]
    assert "approved the deviation at entry" in people["alice"]
    assert "declared the deviation at entry" in people["ada"]


# ------------------------------------------------------------------ files


def test_policy_and_answers_tables_are_strict(tmp_path: Path) -> None:
    from ceremony.errors import AnswersError, PolicyFileError
    from ceremony.model.answers import parse_answers
    from ceremony.model.rules import check_policy

    template, policy_text = witnessed_texts(seal=3, quorum=4)
    cast = make_cast(template, SeededRandom("participants"))
    policy = parse_policy(policy_text, "policy.toml")
    assert (policy.seal_witnesses, policy.deviation_quorum) == (3, 4)
    found = {v.requirement: v.message for v in check_policy(cast.script, policy,
                                                            rehearsal=True)}
    assert "needs 3 witnesses to co-sign the seal, but the script names 2" in \
        found["CER-SEAL-WITNESS"]
    assert "needs 4 custodian approvals for a deviation, but the script names 3" in \
        found["CER-DEVIATION"]
    with pytest.raises(PolicyFileError, match=r"policy.toml:\d+: seal\.witnesses: 17 is out "
                                              r"of range \(allowed 0 to 16\)"):
        parse_policy(policy_text.replace("witnesses = 3", "witnesses = 17"), "policy.toml")
    keys = "[identities]\n" + "".join(f'{p} = "{p}.pem"\n' for p in cast.signers)
    head = f'ceremony_id = "{cast.script.ceremony_id}"\n' + keys
    good = head + ('[[steps]]\nid = "provision-root-key"\ndeviations = [{ kind = "other", '
                   'reason = "the room changed", by = "wendy" }]\n\n[seal]\n'
                   'witnesses = ["walter"]\n\n[deviations]\napprovals = ["carol", "alice"]\n')
    answers = parse_answers(good, "answers.toml", cast.script, tmp_path)
    assert answers.seal_witnesses == ("walter",)
    assert answers.deviation_approvals == ("carol", "alice")
    assert answers.steps["provision-root-key"].deviations[0].by == "wendy"
    for old, new, says in (
            ('kind = "other"', 'kind = "step-retried"', "deviations[0].kind: 'step-retried' "
                                                        "is not one of"),
            ('by = "wendy"', 'by = "mallory"', "'mallory' is not a participant"),
            ('witnesses = ["walter"]', 'witnesses = ["alice"]', "seal.witnesses: 'alice' is "
                                                                "a custodian, not a witness"),
            ('approvals = ["carol", "alice"]', 'approvals = ["wendy"]',
             "deviations.approvals: 'wendy' is a witness, not a custodian")):
        with pytest.raises(AnswersError) as caught:
            parse_answers(good.replace(old, new), "answers.toml", cast.script, tmp_path)
        assert says in caught.value.message and "answers.toml:" in caught.value.message
