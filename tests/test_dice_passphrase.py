"""Custodian dice as a third entropy source, and the optional SLIP-39 passphrase.

The engine with fakes first (what is asked, refused, recorded and wiped; stuck and biased
dice stop the step before a seed exists; a resume asks again; a recovery with the right
passphrase rebuilds the key and a wrong one is refused before the token is touched), then
one real SoftHSM2 ceremony with dice and a passphrase through the CLI and its recovery into
a second token: a wrong passphrase is refused with nothing imported, the right one
(`--resume`) recovers the key; no roll or passphrase in any bundle file or output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from ceremony import health
from ceremony.engine.core import Engine
from ceremony.engine.derive import seed_fingerprint
from ceremony.engine.prompts import (
    ActionReady,
    DiceNeeded,
    DiceRolls,
    Passphrase,
    PassphraseNeeded,
    Proceed,
    ShareOffered,
    SharesNeeded,
    TypedConfirmation,
)
from ceremony.engine.recovery import load_original
from ceremony.engine.typed_secrets import check_rolls, parse_rolls, read_secret_file
from ceremony.errors import AnswersError, CeremonyError, CheckFailed, InputError, ScriptError
from ceremony.headless import run_headless
from ceremony.model.policy import parse_policy
from ceremony.model.rules import check_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import sample_texts, simulated_answers
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.fakes import SeededRandom, passing_attestation
from tests.test_engine import PHRASE, Run, _start, _to_confirmation

ROLLS = 100
PASSPHRASE = b"correct horse battery staple 42"
WRONG = b"correct horse battery staple 24"
SHARES_BLOCK = "[shares]\n# SLIP-39"


def entropy_edit(rolls: int = ROLLS, passphrase: bool = True) -> tuple[str, str]:
    """The sample script with custodian dice (carol rolls) and a SLIP-39 passphrase."""
    return SHARES_BLOCK, (f'[entropy]\ndice_rolls = {rolls}\ndice_roller = "carol"\n\n[shares]\n'
                          + ("passphrase = true\n" if passphrase else "") + "# SLIP-39")


def fair_rolls(n: int, label: str = "dice") -> bytearray:
    """Rolls of a fair die (deterministic): bytes of a seeded stream, rejection-sampled."""
    stream, out = SeededRandom(label), bytearray()
    while len(out) < n:
        out += bytes(b % 6 + 1 for b in stream.random_bytes(64) if b < 252)
    del out[n:]
    return out


def needles(rolls: bytearray) -> list[bytes]:
    """How a roll sequence could leak: as typed digits, spaced, or as raw bytes."""
    digits = bytes(b + 0x30 for b in rolls)
    return [digits[:24], b" ".join(digits[i:i + 1] for i in range(24)), bytes(rolls[:24])]


def to_dice(tmp_path: Path, rolls: int = ROLLS, passphrase: bool = True) -> Run:
    run = _start(tmp_path, script_edit=entropy_edit(rolls, passphrase))
    _to_confirmation(run)
    prompt = run.engine.submit(TypedConfirmation(PHRASE))
    assert prompt == DiceNeeded("provision-root-key", rolls, "carol")
    assert run.engine.status().phase == "dice"
    return run


def refused(run: Run, answer: Any, error: type[CeremonyError] = InputError) -> str:
    """Submit ``answer``, expect ``error``; nothing written, the prompt unchanged."""
    before, prompt = run.transcript.read_bytes(), run.engine.next_prompt()
    with pytest.raises(error) as caught:
        run.engine.submit(answer)
    assert run.transcript.read_bytes() == before
    assert run.engine.next_prompt() == prompt
    return caught.value.message


# ------------------------------------------------------------------ the script


def test_the_script_asks_for_enough_dice_and_names_who_rolls() -> None:
    template, policy_text = sample_texts()

    def error(edit: tuple[str, str]) -> str:
        with pytest.raises(ScriptError) as caught:
            parse_script(template.replace(*edit), "script.toml")
        return caught.value.message

    assert "at least 50 are needed for the dice alone to carry 128 bits" in error(
        entropy_edit(49))
    assert error((SHARES_BLOCK, '[entropy]\ndice_rolls = 60\n\n' + SHARES_BLOCK)).endswith(
        "entropy.dice_roller: this required field is missing")
    assert "'zed' is not a participant" in error(
        (SHARES_BLOCK, '[entropy]\ndice_rolls = 60\ndice_roller = "zed"\n\n' + SHARES_BLOCK))
    script = parse_script(template.replace(*entropy_edit(50)), "script.toml")
    assert (script.entropy.dice_rolls, script.entropy.dice_roller) == (50, "carol")
    assert script.shares.passphrase
    # The policy may require dice: a script without them is refused (lint and run).
    strict = parse_policy(policy_text + "\n[entropy]\nrequire_dice = true\n", "policy.toml")
    plain = parse_script(template, "script.toml")
    (violation,) = [v for v in check_policy(plain, strict, rehearsal=True)
                    if v.requirement == "CER-DICE"]
    assert "requires custodian dice in the seed" in violation.message
    assert not [v for v in check_policy(script, strict, rehearsal=True)
                if v.requirement == "CER-DICE"]


# ------------------------------------------------------------------ the engine, with fakes


def test_dice_and_passphrase_are_asked_checked_mixed_and_recorded(tmp_path: Path) -> None:
    run = to_dice(tmp_path)
    rolls = fair_rolls(ROLLS)
    typed = bytearray(rolls)
    prompt = run.engine.submit(DiceRolls(typed))
    assert typed == bytearray(ROLLS)  # the engine took a copy and wiped the answer
    assert isinstance(prompt, PassphraseNeeded) and prompt.twice
    assert "silently" in prompt.warning and run.engine.status().phase == "passphrase"
    first, second = bytearray(PASSPHRASE), bytearray(WRONG)
    assert refused(run, Passphrase(first, second)) == "the two typings of the passphrase differ"
    assert first == bytearray(len(PASSPHRASE)) and second == bytearray(len(WRONG))
    assert "the 3rd character of the passphrase is not printable ASCII" in refused(
        run, Passphrase(bytearray(b"ab\x07c"), bytearray(b"ab\x07c")))
    prompt = run.engine.submit(Passphrase(bytearray(PASSPHRASE), bytearray(PASSPHRASE)))
    assert isinstance(prompt, ActionReady)
    run.engine.submit(Proceed())
    entries = [json.loads(line) for line in run.transcript.read_text().splitlines()]
    (collected,) = [e["payload"] for e in entries if e["event"] == "entropy.collected"]
    assert [s["source"] for s in collected["sources"]] == ["os", "token", "dice"]
    dice = collected["sources"][2]
    spec = health.dice_spec()
    assert (dice["bytes"], dice["rolled_by"]) == (ROLLS, "carol")
    record = dice["health"]
    assert (record["samples"], record["passed"]) == (ROLLS, True)
    assert record["repetition_count"]["cutoff"] == spec.rct_cutoff == 9
    assert record["adaptive_proportion"]["cutoff"] == spec.apt_cutoff == 129
    assert record["adaptive_proportion"]["cutoff_reachable"] is False  # 100 < 129
    (created,) = [e["payload"] for e in entries if e["event"] == "shares.created"]
    assert created["passphrase"] == "required"
    # The shares need the passphrase: with it they give the recorded seed, without it another.
    pair = list(run.secrets.shares.values())[:2]
    splitter = run.engine.devices.splitter
    with_it = splitter.combine(pair, passphrase=bytearray(PASSPHRASE))
    assert seed_fingerprint(with_it, "sample-root-2026") == created["seed_fingerprint"]
    assert seed_fingerprint(splitter.combine(pair), "sample-root-2026") != \
        created["seed_fingerprint"]
    assert run.engine._dice is None and run.engine._passphrase is None
    finished = run_headless(run.engine, simulated_answers(run.engine.script),
                            run.cast.signers, lambda _: None)  # type: ignore[arg-type]
    assert finished.outcome == "completed"
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    # `ceremony shares check` needs no passphrase: it checks the share's integrity only.
    from ceremony.sharecheck import check_share, load_reference

    assert check_share(load_reference(run.bundle), pair[0]).intact
    files = {p: p.read_bytes() for p in run.bundle.rglob("*") if p.is_file()}
    for needle in [PASSPHRASE, *needles(rolls)]:
        assert not [p for p, data in files.items() if needle in data], needle


def test_a_bad_roll_is_refused_by_its_position_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        parse_rolls(b"3 1 4 1 5 9 2 6")
    assert caught.value.message == "the 6th roll is not 1 to 6; a die shows 1 to 6"
    with pytest.raises(InputError, match="the 2nd roll is not a digit"):
        parse_rolls(b"3x14")
    assert parse_rolls(b"31 4,1\n5") == bytearray([3, 1, 4, 1, 5])
    with pytest.raises(InputError, match="3 rolls were typed; the script asks for exactly 4"):
        check_rolls(bytearray([1, 2, 3]), 4)

    run = to_dice(tmp_path)
    rolls = fair_rolls(ROLLS)
    rolls[41] = 0
    message = refused(run, DiceRolls(rolls))
    assert message == "the 42nd roll is not 1 to 6; a die shows 1 to 6"
    assert rolls == bytearray(ROLLS)  # wiped, refused or not
    assert refused(run, DiceRolls(fair_rolls(ROLLS - 1))) == (
        "99 rolls were typed; the script asks for exactly 100")


def biased(n: int) -> bytearray:
    """A die that shows 1 four times in five (never 9 times in a row): the APT fires."""
    return bytearray(1 if i % 5 else 2 for i in range(1, n + 1))


@pytest.mark.parametrize(("rolls", "test"), [(bytearray([6] * ROLLS), "repetition-count"),
                                             (biased(200), "adaptive-proportion")],
                         ids=["stuck-sixes", "biased"])
def test_stuck_or_biased_dice_stop_the_step_before_a_seed(tmp_path: Path, rolls: bytearray,
                                                          test: str) -> None:
    run = to_dice(tmp_path, len(rolls), passphrase=False)
    assert isinstance(run.engine.submit(DiceRolls(bytearray(rolls))), ActionReady)
    with pytest.raises(CheckFailed) as caught:
        run.engine.submit(Proceed())
    assert caught.value.requirement == "CER-ENTROPY-HEALTH"
    assert caught.value.message.startswith(f"the dice entropy source failed the SP 800-90B "
                                           f"{test} test")
    assert caught.value.message.endswith("no seed was made")
    assert "roll a fair die again" in caught.value.hint
    events = run.events()
    assert events[-2:] == ["action.started", "action.rolled_back"]
    assert "entropy.collected" not in events
    assert run.token.calls == [] and run.secrets.shares == {}
    assert ("sample root key", "01") not in run.token.keys
    # The rolls were used up: the step asks for new ones.
    assert run.engine.next_prompt() == DiceNeeded("provision-root-key", len(rolls), "carol")


def test_a_resume_asks_for_the_dice_and_passphrase_again(tmp_path: Path) -> None:
    run = to_dice(tmp_path)
    run.engine.submit(DiceRolls(fair_rolls(ROLLS)))
    run.engine.submit(Passphrase(bytearray(PASSPHRASE), bytearray(PASSPHRASE)))
    assert isinstance(run.engine.next_prompt(), ActionReady)
    before = run.transcript.read_bytes()
    assert b"dice" not in before.split(b'"step_digest"')[0]  # nothing of them was written
    engine = run.engine  # "crash": a new engine from the transcript alone
    resumed = Engine.resume(engine.script, engine.policy, engine.devices, run.bundle,
                            attestation=passing_attestation(engine.rehearsal))
    assert resumed.next_prompt() == DiceNeeded("provision-root-key", ROLLS, "carol")
    resumed.submit(DiceRolls(fair_rolls(ROLLS, "again")))
    assert isinstance(resumed.next_prompt(), PassphraseNeeded)


def test_a_bad_dice_file_is_named_by_file_and_position(tmp_path: Path) -> None:
    run = _start(tmp_path, script_edit=entropy_edit(passphrase=False))
    dice_file = tmp_path / "dice.txt"
    dice_file.write_text("6 5 4 3 2 1 0 " * 15)
    answers = dataclasses.replace(simulated_answers(run.engine.script), dice_file=dice_file)
    with pytest.raises(InputError) as caught:
        run_headless(run.engine, answers, run.cast.signers,  # type: ignore[arg-type]
                     lambda _: None)
    assert caught.value.message == (f"the dice file {dice_file}: the 7th roll is not 1 to 6; "
                                    "a die shows 1 to 6")
    assert caught.value.requirement == "CER-DICE"
    assert isinstance(run.engine.next_prompt(), DiceNeeded)
    without = dataclasses.replace(answers, dice_file=None)
    with pytest.raises(AnswersError, match="needs 100 dice rolls by carol"):
        run_headless(run.engine, without, run.cast.signers,  # type: ignore[arg-type]
                     lambda _: None)


def test_the_verifier_checks_the_dice_against_the_script() -> None:
    from ceremony.verify.core import _check_dice, _Fail

    template = sample_texts()[0]
    with_dice = parse_script(template.replace(*entropy_edit()), "script.toml")
    plain = parse_script(template, "script.toml")
    dice = {"source": "dice", "bytes": ROLLS, "rolled_by": "carol"}
    os_token = [{"source": "os", "bytes": 512}, {"source": "token", "bytes": 512}]
    _check_dice(with_dice, {"sources": [*os_token, dice]}, None)  # type: ignore[arg-type]
    _check_dice(plain, {"sources": os_token}, None)  # type: ignore[arg-type]
    for script, sources in ((with_dice, os_token), (plain, [*os_token, dice]),
                            (with_dice, [*os_token, {**dice, "bytes": 60}]),
                            (with_dice, [*os_token, {**dice, "rolled_by": "alice"}])):
        with pytest.raises(_Fail) as caught:
            _check_dice(script, {"sources": sources}, None)  # type: ignore[arg-type]
        assert caught.value.requirement == "CER-DICE"


# ------------------------------------------------------------------ recovery, with fakes


def _headless_original(tmp_path: Path) -> tuple[Run, Path, Path]:
    """The sample ceremony with dice and a passphrase, run headless from secret files."""
    run = _start(tmp_path, script_edit=entropy_edit())
    dice_file, pass_file = tmp_path / "dice.txt", tmp_path / "passphrase.txt"
    dice_file.write_bytes(b" ".join(bytes([b + 0x30]) for b in fair_rolls(ROLLS)) + b"\n")
    pass_file.write_bytes(PASSPHRASE + b"\n")
    answers = dataclasses.replace(simulated_answers(run.engine.script), dice_file=dice_file,
                                  passphrase_file=pass_file)
    said: list[str] = []
    finished = run_headless(run.engine, answers, run.cast.signers,  # type: ignore[arg-type]
                            said.append)
    assert finished.outcome == "completed"
    assert "      carol typed 100 dice rolls" in said
    return run, dice_file, pass_file


def test_recovery_needs_the_right_passphrase(tmp_path: Path) -> None:
    from tests.test_recovery import FakeOriginal, fake_recovery

    run, _, _ = _headless_original(tmp_path)
    shares = {n.split("-g")[0]: m for n, m in run.secrets.shares.items()}
    original = FakeOriginal(run.bundle, run.cast, sample_texts()[1], shares,
                            load_original(run.bundle))
    assert original.original.record.passphrase

    def no_dice(text: str) -> str:
        return text.replace('[entropy]\ndice_rolls = 100\ndice_roller = "carol"\n\n', "")

    rec = fake_recovery(tmp_path, original, edit=no_dice)
    # Through the opening step, the approvals and the confirmation: then the passphrase,
    # which these answers do not give.
    with pytest.raises(AnswersError, match="needs the SLIP-39 passphrase"):
        run_headless(rec.engine, simulated_answers(rec.script), original.cast.signers,  # type: ignore[arg-type]
                     rec.said.append)
    prompt = rec.engine.next_prompt()
    assert isinstance(prompt, PassphraseNeeded) and prompt.purpose == "recover"
    assert not prompt.twice
    rec.engine.submit(Passphrase(bytearray(WRONG)))
    rec.offer("alice")
    rec.offer("bob")
    with pytest.raises(CheckFailed) as caught:
        rec.engine.submit(Proceed())
    assert caught.value.message.startswith("the shares and the passphrase rebuild a root key "
                                           "with fingerprint ")
    assert caught.value.message.endswith("; nothing was put on the token")
    assert caught.value.requirement == "CER-PASSPHRASE"
    assert rec.token.calls == [] and ("sample root key", "01") not in rec.token.keys
    assert rec.engine.next_prompt() == prompt  # asked again, shares forgotten
    rec.engine.submit(Passphrase(bytearray(PASSPHRASE)))
    assert isinstance(rec.engine.next_prompt(), SharesNeeded)
    rec.engine.submit(ShareOffered("carol", shares["carol"]))
    rec.offer("bob")
    rec.engine.submit(Proceed())
    assert rec.finish().outcome == "completed"
    assert verify_bundle(rec.bundle).ok
    assert rec.token.calls == ["import"]


# ------------------------------------------------------------------ SoftHSM2, through the CLI


def _secret_answers(path: Path, lines: str) -> None:
    """Put top-level keys (dice_file, passphrase_file) under ceremony_id in an answers file."""
    text = path.read_text()
    first, rest = text.split("\n", 1)
    assert first.startswith("ceremony_id")
    path.write_text(f"{first}\n{lines}{rest}")


@pytest.mark.softhsm
def test_softhsm_dice_passphrase_ceremony_then_recovery(tmp_path: Path,
                                                       softhsm: SoftHsm) -> None:
    """One real ceremony with dice and a passphrase (CLI, SoftHSM2); its recovery into a
    second token refuses a wrong passphrase (nothing imported), then `--resume` with the
    right one recovers the key."""
    from ceremony.adapters.activation import activate, combine_pin, read_sheets
    from tests.test_crash import prepare_ceremony, token_labels
    from tests.test_recovery import Recovery, assert_recovered, recovery_text
    from tests.test_rsa import add_token

    c = prepare_ceremony(tmp_path / "original", softhsm, script_edit=entropy_edit())
    rolls = fair_rolls(ROLLS, "softhsm")
    (c.directory / "dice.txt").write_bytes(bytes(b + 0x30 for b in rolls) + b"\n")
    (c.directory / "passphrase.txt").write_bytes(PASSPHRASE + b"\n")
    _secret_answers(c.answers_path, 'dice_file = "dice.txt"\npassphrase_file = '
                                    '"passphrase.txt"\n')
    started = time.monotonic()
    result = c.run()
    print(f"\nceremony with {ROLLS} dice and a passphrase on SoftHSM2: "
          f"{time.monotonic() - started:.2f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "carol typed 100 dice rolls" in result.stdout
    assert "silently" in result.stdout  # the passphrase warning
    report = verify_bundle(c.out)
    assert report.ok, report.first_failure
    assert report.head and report.root_fingerprint
    (collected,) = [e["payload"] for e in c.entries() if e["event"] == "entropy.collected"]
    assert [(s["source"], s["health"]["samples"]) for s in collected["sources"]] == [
        ("os", 512), ("token", 512), ("dice", ROLLS)]
    (created,) = [e["payload"] for e in c.entries() if e["event"] == "shares.created"]
    assert created["passphrase"] == "required"

    directory = tmp_path / "recovery"
    directory.mkdir()
    text = recovery_text(c.script_path.read_text(), report.head, report.root_fingerprint)
    text = text.replace('[entropy]\ndice_rolls = 100\ndice_roller = "carol"\n\n', "")
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
    rec = Recovery(c, target, directory, script, login)
    (directory / "wrong.txt").write_bytes(WRONG + b"\n")
    (directory / "right.txt").write_bytes(PASSPHRASE + b"\n")
    shares = [("bob", rec.sheet("bob")), ("alice", rec.sheet("alice"))]

    def recover(passphrase_file: str, *extra: str) -> Any:
        path = rec.answers(shares)
        _secret_answers(path, f'passphrase_file = "{passphrase_file}"\n')
        return run_cli("recover", str(rec.script_path), "--original", str(c.out), "--out",
                       str(rec.out), "--headless", "--answers", str(path), "--rehearsal",
                       "--token", target.uri, "--module", target.module, *login, *extra,
                       env=target.env)

    wrong = recover("wrong.txt")
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    first = wrong.stderr.splitlines()[0]
    assert first.startswith("ceremony: the shares and the passphrase rebuild a root key with "
                            "fingerprint "), first
    assert first.endswith("; nothing was put on the token [CER-PASSPHRASE]")
    assert "Traceback" not in wrong.stderr
    assert script.root_key.label not in token_labels(target)  # nothing imported
    right = recover("right.txt", "--resume")
    assert_recovered(rec, right, ["bob", "alice"])

    # Nothing of the rolls or the passphrase in any bundle file or output.
    haystacks = {str(p): p.read_bytes() for out in (c.out, rec.out)
                 for p in out.rglob("*") if p.is_file()}
    haystacks |= {f"{name} {stream}": getattr(r, stream).encode()
                  for name, r in (("run", result), ("wrong", wrong), ("right", right))
                  for stream in ("stdout", "stderr")}
    for needle in [PASSPHRASE, WRONG, *needles(rolls)]:
        assert not [k for k, data in haystacks.items() if needle in data], needle


def test_secret_files_are_read_into_a_bytearray(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_bytes(PASSPHRASE + b"\r\n")
    value = read_secret_file(str(path), "the passphrase file")
    assert isinstance(value, bytearray) and value == bytearray(PASSPHRASE)
    assert hashlib.sha256(value).digest() == hashlib.sha256(PASSPHRASE).digest()
    with pytest.raises(InputError, match="cannot read the passphrase file"):
        read_secret_file(str(tmp_path / "missing"), "the passphrase file")
