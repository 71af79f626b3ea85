"""The answers file that drives a headless run: who approves each step, what is typed.

For a recovery it also lists, under ``[[shares]]``, which custodian presents which share
file, in the order they are presented (the files hold the secret words; the answers file
only names them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ceremony.errors import AnswersError
from ceremony.model.script import ID_PATTERN, PARTICIPANT_PATTERN, STEP_PATTERN, Script, article
from ceremony.model.strict import Fields, Source, read_source


@dataclass(frozen=True)
class StepAnswers:
    step: str
    approvals: tuple[str, ...]
    witnesses: tuple[str, ...]
    confirm: str | None
    abort: str | None


@dataclass(frozen=True)
class ShareAnswer:
    """A recovery: ``participant`` presents the share in ``file`` (a share sheet or words)."""

    participant: str
    file: Path


@dataclass(frozen=True)
class Answers:
    ceremony_id: str
    identities: dict[str, Path]  # participant -> identity key file (rehearsal only)
    steps: dict[str, StepAnswers]
    source_name: str
    shares: tuple[ShareAnswer, ...] = ()  # a recovery's shares, in the order presented


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
                # (an administrator the step names as approver: the policy allowed it)
                named = field == "approvals" and who in step.approvers
                if participant.role != role and not named:
                    raise s.fail(field, f"{who!r} is {article(participant.role)}, not a {role}")
                if who not in identities:
                    raise s.fail(field, f"{who!r} has no identity key under [identities]",
                                 hint=f"add {who} = \"path/to/key.pem\" under [identities]")
        confirm = s.text("confirm", required=False, max_len=64)
        abort = s.text("abort", required=False, max_len=400)
        s.done()
        steps[sid] = StepAnswers(sid, approvals, witnesses, confirm, abort)
    shares = _shares(top, script, base) if "shares" in top.data else ()
    top.done()
    return Answers(ceremony_id, identities, steps, name, shares)


def _shares(top: Fields, script: Script, base: Path) -> tuple[ShareAnswer, ...]:
    """[[shares]]: who presents which share file in a recovery, in order."""
    if script.recovery is None:
        raise top.fail("shares", "shares are presented only in a recovery (a script with a "
                       "[recovery] table)", hint="remove [[shares]] from the answers file")
    holders = [m for g in script.shares.groups for m in g.members]
    out: list[ShareAnswer] = []
    for sh in top.tables("shares", min_len=1, max_len=256):
        who = sh.text("participant", pattern=PARTICIPANT_PATTERN, what="a participant id")
        if who not in holders:
            raise sh.fail("participant", f"{who!r} holds no share in the script's [shares]",
                          hint=f"the holders are {', '.join(holders)}")
        if any(a.participant == who for a in out):
            raise sh.fail("participant", f"{who}'s share is listed twice",
                          hint="each custodian presents their share once")
        text = sh.text("file", max_len=400)
        path = (base / text).resolve()
        if not path.is_file():
            raise sh.fail("file", f"{who}'s share file {text} does not exist",
                          hint="give the path of the share sheet (relative to the answers "
                               "file)")
        sh.done()
        out.append(ShareAnswer(who, path))
    return tuple(out)


def load_answers(path: Path, script: Script) -> Answers:
    source = read_source(path, AnswersError, "answers")
    return parse_answers(source.text, source.name, script, path.parent)
