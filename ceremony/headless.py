"""The headless front end: drives the engine from an answers file (or simulated people).

Like the Textual UI it is only a loop around ``Engine.next_prompt()``/``submit()``; it holds
no ceremony logic of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ceremony.engine.core import ACTION_TEXT, Engine
from ceremony.engine.prompts import (
    Abort,
    ActionReady,
    Approval,
    ApprovalNeeded,
    Begin,
    BeginStep,
    ConfirmationNeeded,
    DiceNeeded,
    DiceRolls,
    Finished,
    Passphrase,
    PassphraseNeeded,
    Proceed,
    ShareOffered,
    SharesNeeded,
    TypedConfirmation,
)
from ceremony.engine.typed_secrets import parse_rolls, read_secret_file, wipe_buffer
from ceremony.errors import AnswersError, InputError
from ceremony.model import statements as st
from ceremony.model.answers import Answers, StepAnswers
from ceremony.model.sheet import share_words


class Signer(Protocol):
    participant: str

    def sign(self, message: bytes) -> bytes: ...


def run_headless(engine: Engine, answers: Answers, signers: dict[str, Signer],
                 say: Callable[[str], None] = print,
                 card_share: Callable[[str], str] | None = None) -> Finished:
    """Answer every prompt from ``answers``; stop with AnswersError where it falls short.
    ``card_share(participant)`` reads a recovery share the answers say is on a card."""
    total = len(engine.script.steps)
    while True:
        prompt = engine.next_prompt()
        if isinstance(prompt, Finished):
            return prompt
        step_answers = answers.steps.get(prompt.step)
        if step_answers is not None and not isinstance(prompt, BeginStep) and not (
                isinstance(prompt, ApprovalNeeded) and prompt.kind == "deviation") and \
                _declare_deviation(engine, step_answers, say):
            continue
        if isinstance(prompt, BeginStep):
            if step_answers is not None and step_answers.abort:
                say(f"aborting before step {prompt.step}: {step_answers.abort}")
                engine.submit(Abort(step_answers.abort))
                continue
            say(f"[{prompt.index + 1}/{total}] {prompt.title}")
            engine.submit(Begin())
        elif isinstance(prompt, ApprovalNeeded):
            if prompt.kind == "seal":
                given, field, what = answers.seal_witnesses, "seal.witnesses", \
                    "the seal needs the co-signatures of"
            elif prompt.kind == "deviation":
                given, field, what = answers.deviation_approvals, "deviations.approvals", \
                    "the deviation needs the approvals of"
            else:
                kind = "approvals" if prompt.role == "custodian" else "witnesses"
                given = () if step_answers is None else (
                    step_answers.approvals if prompt.role == "custodian"
                    else step_answers.witnesses)
                field, what = f"steps.{kind}", f"step {prompt.step!r} needs"
            pending = [p for p in given if p not in prompt.collected]
            if not pending:
                noun = "custodians" if prompt.role == "custodian" else "witnesses"
                if prompt.kind == "step":
                    noun = "approvals" if prompt.role == "custodian" else "witnesses"
                raise AnswersError(
                    f"{what} {prompt.needed} {noun} but the answers file gives {len(given)}",
                    file=answers.source_name, field=field,
                    hint=f"list {prompt.needed} of: {', '.join(prompt.eligible)}")
            who = pending[0]
            statement = prompt.for_participant(who)
            signature = signers[who].sign(st.message(statement))
            engine.submit(Approval(who, statement, signature))
            verb = {"seal": "co-signed the seal", "deviation": "approved the deviation"}.get(
                prompt.kind, "approved" if prompt.role == "custodian" else "witnessed")
            say(f"      {who} {verb} ({len(prompt.collected) + 1} of {prompt.needed})")
        elif isinstance(prompt, ConfirmationNeeded):
            if step_answers is None or step_answers.confirm is None:
                raise AnswersError(f"step {prompt.step!r} needs the typed confirmation "
                                   f"{prompt.phrase!r}", file=answers.source_name,
                                   field="steps.confirm",
                                   hint=f"add confirm = \"{prompt.phrase}\" to the step")
            engine.submit(TypedConfirmation(step_answers.confirm))
            say(f"      confirmed: {prompt.phrase}")
        elif isinstance(prompt, ActionReady):
            if prompt.action != "none":
                say(f"      {prompt.description}")
            engine.submit(Proceed())
        elif isinstance(prompt, SharesNeeded):
            _present_shares(engine, prompt, answers, say, card_share)
        elif isinstance(prompt, DiceNeeded):
            _type_dice(engine, prompt, answers, say)
        elif isinstance(prompt, PassphraseNeeded):
            _type_passphrase(engine, prompt, answers, say)


def _declare_deviation(engine: Engine, step: StepAnswers, say: Callable[[str], None]) -> bool:
    """Declare the step's next deviation the answers list and the transcript does not yet
    record (so a resumed run declares none twice); True when one was declared."""
    declared = engine.declared_deviations()
    for d in step.deviations:
        if (d.kind, " ".join(d.reason.split())) not in declared:
            engine.declare_deviation(d.by, d.kind, d.reason)
            say(f"      deviation ({d.kind}) declared by {d.by}: {d.reason}")
            return True
    return False


def _type_dice(engine: Engine, prompt: DiceNeeded, answers: Answers,
               say: Callable[[str], None]) -> None:
    """The rolls from the answers file's ``dice_file``, into a bytearray; never printed."""
    if answers.dice_file is None:
        raise AnswersError(f"step {prompt.step!r} needs {prompt.count} dice rolls by "
                           f"{prompt.roller}", file=answers.source_name, field="dice_file",
                           hint="add dice_file = \"FILE\" (the rolls as digits 1 to 6) at the "
                                "top of the answers file")
    text = read_secret_file(str(answers.dice_file), "the dice file")
    try:
        rolls = parse_rolls(text)
    except InputError as exc:
        raise InputError(f"the dice file {answers.dice_file}: {exc.message}", hint=exc.hint,
                         requirement=exc.requirement) from None
    finally:
        wipe_buffer(text)
    engine.submit(DiceRolls(rolls))  # the engine copies and wipes the rolls
    say(f"      {prompt.roller} typed {prompt.count} dice rolls")


def _type_passphrase(engine: Engine, prompt: PassphraseNeeded, answers: Answers,
                     say: Callable[[str], None]) -> None:
    """The SLIP-39 passphrase from ``passphrase_file`` (given once: a file needs no second
    typing); never printed."""
    if answers.passphrase_file is None:
        raise AnswersError(f"step {prompt.step!r} needs the SLIP-39 passphrase",
                           file=answers.source_name, field="passphrase_file",
                           hint="add passphrase_file = \"FILE\" at the top of the answers file")
    if prompt.twice:
        say(f"      warning: {prompt.warning}")
    value = read_secret_file(str(answers.passphrase_file), "the passphrase file")
    engine.submit(Passphrase(value, bytearray(value) if prompt.twice else None))
    say("      the SLIP-39 passphrase was given (" + ("it encrypts the shares" if prompt.twice
                                                     else "for the rebuild") + ")")


def _present_shares(engine: Engine, prompt: SharesNeeded, answers: Answers,
                    say: Callable[[str], None],
                    card_share: Callable[[str], str] | None = None) -> None:
    """One recovery move: the next share the answers file lists, or, once the shares reach
    the thresholds and none is left, the rebuild. A refused share stops the run (the
    engine's sentence names the custodian); the words are never printed."""
    pending = [a for a in answers.shares if a.participant not in prompt.presented]
    if pending:
        share = pending[0]
        if share.card:
            if card_share is None:
                raise AnswersError(f"{share.participant}'s share is on their card, but this "
                                   "run reads no cards", file=answers.source_name,
                                   field="shares.card", hint="give the share sheet's file")
            words = card_share(share.participant)
        else:
            assert share.file is not None
            words = read_share_file(share.file)
        after = engine.submit(ShareOffered(share.participant, words))
        progress = after.describe() if isinstance(after, SharesNeeded) else "complete"
        where = " from their card" if share.card else ""
        say(f"      {share.participant} presented their share{where} ({progress})")
        return
    if not prompt.ready:
        raise AnswersError(f"step {prompt.step!r} needs more shares of ceremony "
                           f"{prompt.original} than the answers file gives: "
                           f"{prompt.describe()}", file=answers.source_name, field="shares",
                           hint="add [[shares]] for more of: " + ", ".join(prompt.eligible))
    say(f"      {ACTION_TEXT['recover_root_key']}")
    engine.submit(Proceed())
    say(f"      the root key has the original's fingerprint {prompt.fingerprint}")


def read_share_file(path: Path) -> str:
    """The words of the share in ``path``: a text share sheet, or a file of the words."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the share file {path} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"the share file {path} is not UTF-8 text",
                         hint="give the text share sheet, or a file of the share's words"
                         ) from None
    return share_words(text)
