"""The headless front end: drives the engine from an answers file (or simulated people).

Like the Textual UI it is only a loop around ``Engine.next_prompt()``/``submit()``; it holds
no ceremony logic of its own.
"""

from __future__ import annotations

import re
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
    Finished,
    Proceed,
    ShareOffered,
    SharesNeeded,
    TypedConfirmation,
)
from ceremony.errors import AnswersError, InputError
from ceremony.model import statements as st
from ceremony.model.answers import Answers


class Signer(Protocol):
    participant: str

    def sign(self, message: bytes) -> bytes: ...


def run_headless(engine: Engine, answers: Answers, signers: dict[str, Signer],
                 say: Callable[[str], None] = print) -> Finished:
    """Answer every prompt from ``answers``; stop with AnswersError where it falls short."""
    total = len(engine.script.steps)
    while True:
        prompt = engine.next_prompt()
        if isinstance(prompt, Finished):
            return prompt
        step_answers = answers.steps.get(prompt.step)
        if isinstance(prompt, BeginStep):
            if step_answers is not None and step_answers.abort:
                say(f"aborting before step {prompt.step}: {step_answers.abort}")
                engine.submit(Abort(step_answers.abort))
                continue
            say(f"[{prompt.index + 1}/{total}] {prompt.title}")
            engine.submit(Begin())
        elif isinstance(prompt, ApprovalNeeded):
            given = () if step_answers is None else (
                step_answers.approvals if prompt.role == "custodian" else step_answers.witnesses)
            pending = [p for p in given if p not in prompt.collected]
            if not pending:
                kind = "approvals" if prompt.role == "custodian" else "witnesses"
                raise AnswersError(
                    f"step {prompt.step!r} needs {prompt.needed} {kind} but the answers file "
                    f"gives {len(given)}", file=answers.source_name, field=f"steps.{kind}",
                    hint=f"list {prompt.needed} of: {', '.join(prompt.eligible)}")
            who = pending[0]
            statement = prompt.for_participant(who)
            signature = signers[who].sign(st.message(statement))
            engine.submit(Approval(who, statement, signature))
            verb = "approved" if prompt.role == "custodian" else "witnessed"
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
            _present_shares(engine, prompt, answers, say)


def _present_shares(engine: Engine, prompt: SharesNeeded, answers: Answers,
                    say: Callable[[str], None]) -> None:
    """One recovery move: the next share the answers file lists, or, once the shares reach
    the thresholds and none is left, the rebuild. A refused share stops the run (the
    engine's sentence names the custodian); the words are never printed."""
    pending = [a for a in answers.shares if a.participant not in prompt.presented]
    if pending:
        share = pending[0]
        after = engine.submit(ShareOffered(share.participant, read_share_file(share.file)))
        progress = after.describe() if isinstance(after, SharesNeeded) else "complete"
        say(f"      {share.participant} presented their share ({progress})")
        return
    if not prompt.ready:
        raise AnswersError(f"step {prompt.step!r} needs more shares of ceremony "
                           f"{prompt.original} than the answers file gives: "
                           f"{prompt.describe()}", file=answers.source_name, field="shares",
                           hint="add [[shares]] for more of: " + ", ".join(prompt.eligible))
    say(f"      {ACTION_TEXT['recover_root_key']}")
    engine.submit(Proceed())
    say(f"      the root key has the original's fingerprint {prompt.fingerprint}")


# A share sheet's words are numbered lines ("  1. word"); any other file holds just the words.
_NUMBERED_WORD = re.compile(r"^\s*\d+\.\s+(\S+)\s*$", re.M)


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
    numbered = _NUMBERED_WORD.findall(text)
    return " ".join(numbered) if numbered else " ".join(text.split())
