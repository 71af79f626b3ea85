"""The answers file that drives a headless run: who approves each step, what is typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ceremony.errors import AnswersError
from ceremony.model.script import ID_PATTERN, STEP_PATTERN, Script, article
from ceremony.model.strict import Source, read_source


@dataclass(frozen=True)
class StepAnswers:
    step: str
    approvals: tuple[str, ...]
    witnesses: tuple[str, ...]
    confirm: str | None
    abort: str | None


@dataclass(frozen=True)
class Answers:
    ceremony_id: str
    identities: dict[str, Path]  # participant -> identity key file (rehearsal only)
    steps: dict[str, StepAnswers]
    source_name: str


def parse_answers(text: str, name: str, script: Script, base: Path) -> Answers:
    """Strictly parse an answers file and check it against ``script``."""
    source = Source(name, text, AnswersError)
    top = source.load()
    ceremony_id = top.text("ceremony_id", pattern=ID_PATTERN, what="a ceremony id")
    if ceremony_id != script.ceremony_id:
        raise top.fail("ceremony_id", f"{ceremony_id!r} is not the script's ceremony "
                                      f"{script.ceremony_id!r}",
                       hint="use the answers file written for this script")
    identities: dict[str, Path] = {}
    ids = top.table("identities", required=False)
    if ids is not None:
        for key in list(ids.data):
            path = ids.text(key, max_len=400)
            if script.participant(key) is None:
                raise ids.fail(key, f"{key!r} is not a participant of the script")
            identities[key] = (base / path).resolve()
        ids.done()
    steps: dict[str, StepAnswers] = {}
    for s in top.tables("steps", min_len=0, max_len=200):
        sid = s.text("id", pattern=STEP_PATTERN, what="a step id")
        step = script.step(sid)
        if step is None:
            raise s.fail("id", f"the script has no step {sid!r}")
        if sid in steps:
            raise s.fail("id", f"step {sid!r} is answered twice")
        approvals = s.str_list("approvals", required=False, default=())
        witnesses = s.str_list("witnesses", required=False, default=())
        for field, names, role in (("approvals", approvals, "custodian"),
                                   ("witnesses", witnesses, "witness")):
            for who in names:
                participant = script.participant(who)
                if participant is None:
                    raise s.fail(field, f"{who!r} is not a participant of the script")
                if participant.role != role:
                    raise s.fail(field, f"{who!r} is {article(participant.role)}, not a {role}")
                if who not in identities:
                    raise s.fail(field, f"{who!r} has no identity key under [identities]",
                                 hint=f"add {who} = \"path/to/key.pem\" under [identities]")
        confirm = s.text("confirm", required=False, max_len=64)
        abort = s.text("abort", required=False, max_len=400)
        s.done()
        steps[sid] = StepAnswers(sid, approvals, witnesses, confirm, abort)
    top.done()
    return Answers(ceremony_id, identities, steps, name)


def load_answers(path: Path, script: Script) -> Answers:
    source = read_source(path, AnswersError, "answers")
    return parse_answers(source.text, source.name, script, path.parent)
