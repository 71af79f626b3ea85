"""The engine side of environment attestation (CER-ATTEST): every front end attests, the
engine refuses a failing record before anything exists and again before any secret, signed
waivers with a quorum, and the verifier re-checks what was recorded.

Real components: `ceremony run` in a subprocess on a real SoftHSM2 token (tests/test_crash.py
prepare_ceremony), the real checks of ceremony/attest.py (a copied, signed and then
modified package; a network namespace with an interface up; a policy pinning another
module digest), real Ed25519 signatures by the participants' identity key files. Fakes
only where the engine itself is under test (resume without a record).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.adapters.identity import KeyFileSigner
from ceremony.adapters.pkcs11_token import Pkcs11Token
from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import sha256_hex
from ceremony.engine.core import Devices, Engine
from ceremony.engine.prompts import ActionReady, Proceed
from ceremony.headless import run_headless
from ceremony.model import attestation as at
from ceremony.model import statements as st
from ceremony.model.attestation import AttestationError
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.model.waivers import signature_line, statement_for
from ceremony.printout import waiver_lines
from ceremony.rehearsal import make_cast, sample_texts, simulated_answers
from ceremony.transcript import format_time
from ceremony.verify import verify_bundle
from tests.conftest import REPO, SoftHsm, run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.test_attest import add_veth, copy_package, netns, run_copy, sign_tree
from tests.test_crash import Ceremony, prepare_ceremony

__all__ = ["netns"]  # (the network namespace fixture, imported for its use here)

WRONG = "0" * 64
REASON = "the vendor module was rebuilt; digest confirmed with the vendor by phone"
WAIVABLE = ('\n[attestation]\nwaivable = ["CER-ATTEST-MODULE", "CER-ATTEST-MEDIA"]\n'
            f'waiver_quorum = 2\nmodule_sha256 = ["{WRONG}"]\n')


def repin_policy(c: Ceremony, extra: str) -> None:
    """Append ``extra`` to the ceremony's policy, pin the new digest in the script and have
    the authorizers sign the changed script again."""
    path = c.directory / "policy.toml"
    old, new = path.read_text(), path.read_text() + extra
    script = c.script_path.read_text()
    pin = f'sha256 = "{sha256_hex(old.encode())}"'
    assert pin in script
    c.script_path.write_text(script.replace(pin, f'sha256 = "{sha256_hex(new.encode())}"'))
    path.write_text(new)
    c.sign()


def waiver_cli(c: Ceremony, who: str, check: str = at.MODULE,
               reason: str = REASON) -> subprocess.CompletedProcess[str]:
    return run_cli("waiver", "sign", str(c.script_path), "--check", check, "--reason", reason,
                   "--as", who, "--key", str(c.directory / "identities" / f"{who}.pem"),
                   "--rehearsal", env=c.softhsm.env)


def forged_waiver(c: Ceremony, who: str, signed_by: str = "", **changes: str) -> bytes:
    """A waiver line by ``who`` over a statement with ``changes``, signed with the real key
    of ``signed_by`` (default: ``who``'s own)."""
    script = parse_script(c.script_path.read_text(), "script.toml")
    participant = script.participant(who)
    assert participant is not None
    from datetime import UTC, datetime

    statement = {**statement_for(script, at.MODULE, REASON, who, participant.role,
                                 format_time(datetime.now(UTC))), **changes}
    signer = signed_by or who
    key = KeyFileSigner.load(signer, c.directory / "identities" / f"{signer}.pem")
    return signature_line(statement, key.sign(st.message(statement)))


def refused(done: subprocess.CompletedProcess[str], requirement: str) -> str:
    """Exit 1, the requirement named, one plain sentence (no traceback)."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"[{requirement}]" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def nothing_happened(c: Ceremony) -> None:
    """Refused before the token was opened: no bundle, no share sheet, nothing on the token."""
    assert not c.out.exists() and not c.secret.exists()
    assert c.softhsm.objects() == []


# ------------------------------------------------------------------ refusals (real token)


@pytest.fixture
def ceremony(tmp_path: Path, softhsm: SoftHsm) -> Ceremony:
    return prepare_ceremony(tmp_path / "c", softhsm, activation="known-pin")


def test_wrong_module_hash_refuses_the_run(ceremony: Ceremony) -> None:
    """The policy pins another module digest: refused with its id, before the token."""
    repin_policy(ceremony, f'\n[attestation]\nmodule_sha256 = ["{WRONG}"]\n')
    stderr = refused(ceremony.run(), at.MODULE)
    assert "secret provisioning refused: PKCS#11 module: the PKCS#11 module" in stderr
    assert "not a pinned digest" in stderr
    assert "[fail  ] CER-ATTEST-MODULE" in stderr  # every failed check listed, by id
    nothing_happened(ceremony)
    # The UI front end attests before it opens (the same refusal, before any screen).
    ui = run_cli("run", str(ceremony.script_path), "--out", str(ceremony.out), "--rehearsal",
                 "--token", ceremony.softhsm.uri, "--module", ceremony.softhsm.module,
                 *ceremony.login, env=ceremony.softhsm.env)
    refused(ui, at.MODULE)
    nothing_happened(ceremony)


def test_modified_installed_file_refuses_the_run(ceremony: Ceremony, tmp_path: Path) -> None:
    """The tool's own files differ from its signed manifest: even a rehearsal is refused."""
    package = copy_package(tmp_path)
    sign_tree(package, Ed25519PrivateKey.generate())
    target = package / "display.py"
    target.write_text(target.read_text() + "\n# modified after signing\n")
    done = run_copy(package.parent, "run", str(ceremony.script_path), "--headless",
                    "--answers", str(ceremony.answers_path), "--out", str(ceremony.out),
                    "--rehearsal", "--token", ceremony.softhsm.uri, "--module",
                    ceremony.softhsm.module, *ceremony.login)
    stderr = refused(done, at.TOOL)
    assert "display.py" in stderr
    nothing_happened(ceremony)


def test_interface_up_refuses_provisioning_on_a_real_token(netns: str, softhsm: SoftHsm,
                                                           tmp_path: Path) -> None:
    """The checks run in a network namespace with an interface up; Engine.start refuses
    that record (naming CER-ATTEST-NET) before the bundle or the transcript key exists."""
    add_veth(netns, up=True, address="10.81.0.2/24", route=True)
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m",
                           "ceremony.cli.main", "attest", "--json", "--module",
                           softhsm.module], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False)
    record = json.loads(done.stdout)
    assert done.returncode == 1 and not record["passed"]
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("attest-netns"))
    token = Pkcs11Token(softhsm.module, softhsm.uri, bytearray(softhsm.pin.encode()))
    try:
        devices = Devices(TickingClock(), SeededRandom("os"), token, Slip39Splitter(),
                          MemorySecrets())
        with pytest.raises(AttestationError) as caught:
            Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                         cast.script_text.encode(), policy_text.encode(), devices,
                         tmp_path / "bundle", rehearsal=False, attestation=record)
    finally:
        token.close()
    assert caught.value.requirement == at.NET
    assert "ceth0 is up with address 10.81.0.2/24" in caught.value.message
    assert caught.value.kind.value == 1
    assert not (tmp_path / "bundle").exists()
    assert softhsm.objects() == []


def test_hsm_activate_attests_before_any_pin(tmp_path: Path, softhsm: SoftHsm) -> None:
    """A real `hsm activate` on a machine that fails attestation (a development machine:
    not the live image, at least) draws no PIN: no sheet, the token keeps its PINs."""
    script_text, policy_text = sample_texts()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "script.toml").write_text(
        make_cast(script_text, SeededRandom("act")).script_text)
    (tmp_path / "s" / "policy.toml").write_text(policy_text)
    so_pin = tmp_path / "so-pin"
    so_pin.write_text(softhsm.so_pin + "\n")
    done = run_cli("hsm", "activate", str(tmp_path / "s" / "script.toml"), "--secret-out",
                   str(tmp_path / "officers"), "--token", softhsm.uri, "--module",
                   softhsm.module, "--so-pin-file", str(so_pin), env=softhsm.env)
    assert done.returncode == 1, done.stdout + done.stderr
    first = done.stderr.splitlines()[-2] if "hint:" in done.stderr else done.stderr
    assert "ceremony: secret provisioning refused: " in done.stderr
    assert "[CER-ATTEST-" in first and "Traceback" not in done.stderr
    assert not (tmp_path / "officers").exists()
    Pkcs11Token(softhsm.module, softhsm.uri, bytearray(softhsm.pin.encode())).close()


# ------------------------------------------------------------------ waivers (real token)


def test_waiver_quorum_lets_the_run_proceed_and_verify(ceremony: Ceremony) -> None:
    """Two custodians sign the waiver of the failed module check: the run proceeds, the
    record carries their signatures, verify re-checks them, the printout names it."""
    repin_policy(ceremony, WAIVABLE)
    one = waiver_cli(ceremony, "alice")
    assert one.returncode == 0, one.stderr
    assert "1 of the 2 signatures" in one.stdout
    short = refused(ceremony.run(), at.MODULE)  # one signature is not a quorum
    assert "waiving CER-ATTEST-MODULE needs 2 approvals by policy, not 1 (alice)" in short
    nothing_happened(ceremony)
    two = waiver_cli(ceremony, "bob")
    assert two.returncode == 0 and "the check may be waived" in two.stdout, two.stderr
    done = ceremony.run()
    assert done.returncode == 0, done.stdout + done.stderr
    record = ceremony.entries()[0]["payload"]["attestation"]
    module = next(c for c in record["checks"] if c["id"] == at.MODULE)
    assert (module["result"], module["waived_by"], module["approved_by"]) == (
        "waived", "policy", ["alice", "bob"])
    assert module["reason"] == REASON and len(module["signatures"]) == 2
    assert ceremony.verify().returncode == 0
    assert verify_bundle(ceremony.out).ok
    lines = waiver_lines(record)
    assert lines[0] == f"WAIVED CER-ATTEST-MODULE (PKCS#11 module) by alice, bob: {REASON}"
    pdfs = sorted(ceremony.out.glob("*.pdf")) + sorted(ceremony.directory.glob("*.pdf"))
    if shutil.which("pdftotext"):  # every page of the printed transcript names the waiver
        assert len(pdfs) == 1, pdfs
        text = subprocess.run(["pdftotext", "-layout", str(pdfs[0]), "-"],
                              capture_output=True, text=True, check=True).stdout
        pages = [p for p in text.split("\f") if p.strip()]
        assert len(pages) > 2 and all("WAIVED CER-ATTEST-MODULE" in p for p in pages)


@pytest.mark.parametrize("case", ["not-waivable", "other-ceremony", "other-script",
                                  "bad-signature"])
def test_bad_waivers_are_refused_and_named(ceremony: Ceremony, case: str) -> None:
    repin_policy(ceremony, WAIVABLE)
    path = ceremony.script_path.with_name("script.toml.waivers")
    if case == "not-waivable":  # the signing command refuses, and so does the run
        done = waiver_cli(ceremony, "alice", check=at.CLOCK)
        assert "does not allow waiving CER-ATTEST-CLOCK" in refused(done, at.CLOCK)
        lines = [forged_waiver(ceremony, who, check=at.CLOCK) for who in ("alice", "bob")]
        expected, requirement = "does not allow waiving CER-ATTEST-CLOCK", at.CLOCK
    elif case == "other-ceremony":  # replayed from another ceremony's waivers
        lines = [forged_waiver(ceremony, who, ceremony="other-root-2026")
                 for who in ("alice", "bob")]
        expected, requirement = "signed for ceremony other-root-2026", at.GATE
    elif case == "other-script":  # the same ceremony id, another version of its script
        lines = [forged_waiver(ceremony, who, script_sha256="1" * 64)
                 for who in ("alice", "bob")]
        expected, requirement = "cannot be carried over", at.GATE
    else:  # bob's waiver signed with alice's key
        lines = [forged_waiver(ceremony, "alice"), forged_waiver(ceremony, "bob", "alice")]
        expected, requirement = "bob's signature on the waiver of CER-ATTEST-MODULE does " \
                                "not verify", at.GATE
    path.write_bytes(b"".join(lines))
    stderr = refused(ceremony.run(), requirement)
    assert expected in stderr and "script.toml.waivers:" in stderr, stderr
    nothing_happened(ceremony)


# ------------------------------------------------------------------ the engine, the verifier


def fake_run(tmp_path: Path) -> tuple[Engine, Any]:
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(), MemorySecrets())
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(), devices,
                          tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    return engine, cast


def test_no_record_no_start(tmp_path: Path) -> None:
    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    token = FakeToken(SeededRandom("token"))
    devices = Devices(TickingClock(), SeededRandom("os"), token, Slip39Splitter(),
                      MemorySecrets())
    with pytest.raises(AttestationError, match="was not attested") as caught:
        Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                     cast.script_text.encode(), policy_text.encode(), devices,
                     tmp_path / "bundle", rehearsal=True)
    assert caught.value.requirement == at.GATE
    assert not (tmp_path / "bundle").exists() and token.keys == {}
    with pytest.raises(AttestationError, match="made for a real ceremony"):
        Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                     cast.script_text.encode(), policy_text.encode(), devices,
                     tmp_path / "bundle", rehearsal=True, attestation=passing_attestation(False))


def test_resume_without_attesting_makes_no_seed(tmp_path: Path) -> None:
    """A resume that brings no record makes no secret: the seed step is refused (and rolled
    back, nothing on the token); a resume that attests again goes on, and it verifies."""
    engine, cast = fake_run(tmp_path)
    run_until_provisioning(engine, cast)
    engine.writer.close()
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, engine.bundle)
    assert isinstance(resumed.next_prompt(), ActionReady)
    with pytest.raises(AttestationError, match="was not attested") as caught:
        resumed.submit(Proceed())
    assert caught.value.requirement == at.GATE
    events = [json.loads(line)["event"] for line in
              (engine.bundle / "transcript.jsonl").read_text().splitlines()]
    assert events[-2:] == ["action.started", "action.rolled_back"]
    assert "entropy.collected" not in events
    assert isinstance(engine.devices.token, FakeToken)
    assert all(label.startswith("ceremony-transcript") for label, _ in engine.devices.token.keys)
    resumed.writer.close()
    again = Engine.resume(engine.script, engine.policy, engine.devices, engine.bundle,
                          attestation=passing_attestation(True))
    run_headless(again, simulated_answers(cast.script), cast.signers,
                 say=lambda _: None)
    report = verify_bundle(engine.bundle)
    assert report.ok, report.first_failure
    lines = (engine.bundle / "transcript.jsonl").read_text().splitlines()
    resumes = [json.loads(line)["payload"] for line in lines
               if json.loads(line)["event"] == "ceremony.resumed"]
    assert ["attestation" in p for p in resumes] == [False, True]


def run_until_provisioning(engine: Engine, cast: Any) -> None:
    """Answer the prompts (approvals, witness, confirmation) up to the provisioning action."""
    from ceremony.engine.prompts import (
        Approval,
        ApprovalNeeded,
        Begin,
        BeginStep,
        ConfirmationNeeded,
        TypedConfirmation,
    )

    answers = simulated_answers(cast.script)
    while True:
        prompt = engine.next_prompt()
        if isinstance(prompt, ActionReady) and prompt.action == "provision_root_key":
            return
        step = answers.steps[prompt.step]  # type: ignore[union-attr]
        if isinstance(prompt, BeginStep):
            engine.submit(Begin())
        elif isinstance(prompt, ApprovalNeeded):
            given = step.approvals if prompt.role == "custodian" else step.witnesses
            who = next(p for p in given if p not in prompt.collected)
            statement = prompt.for_participant(who)
            engine.submit(Approval(who, statement,
                                   cast.signers[who].sign(st.message(statement))))
        elif isinstance(prompt, ConfirmationNeeded):
            assert step.confirm is not None
            engine.submit(TypedConfirmation(step.confirm))
        else:
            raise AssertionError(prompt)


def test_unattested_resume_takes_no_dice_or_passphrase(tmp_path: Path) -> None:
    """Custodian dice and a SLIP-39 passphrase are secrets too: a resume without a record
    refuses them, and the typed buffers are wiped all the same."""
    from ceremony.engine.prompts import DiceRolls, Passphrase
    from tests.test_dice_passphrase import PASSPHRASE, ROLLS, fair_rolls, to_dice

    run = to_dice(tmp_path)
    engine = run.engine
    engine.writer.close()
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, run.bundle)
    rolls = fair_rolls(ROLLS)
    with pytest.raises(AttestationError, match="was not attested"):
        resumed.submit(DiceRolls(rolls))
    assert not any(rolls)
    typed = bytearray(PASSPHRASE)
    answer = Passphrase(typed, bytearray(PASSPHRASE))
    with pytest.raises(AttestationError):  # (its prompt comes after the dice)
        resumed._accept_passphrase(None, answer)  # type: ignore[arg-type]
    assert not any(typed)
