"""Small widgets and text builders of the ceremony UI.

Every state is shown with a mark and a word (✓ done, ▶ current, … waiting, ✗ missing), never
by colour alone, so the UI reads the same with NO_COLOR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ceremony.display import words

if TYPE_CHECKING:
    from ceremony.engine.prompts import SharesNeeded, Status
    from ceremony.model.script import Script, Step
    from ceremony.transcript import Entry

DONE, CURRENT, WAITING, MISSING = "✓", "▶", "…", "✗"


def step_list_text(script: Script, status: Status | None, start_index: int = 0) -> Text:
    """The ceremony's steps, each marked done, current or waiting."""
    index = status.step_index if status else start_index
    finished = status is not None and status.phase == "finished"
    text = Text()
    for i, step in enumerate(script.steps):
        if finished and status is not None and status.outcome == "aborted" and i >= index:
            mark = MISSING
        elif i < index or finished:
            mark = DONE
        elif i == index:
            mark = CURRENT
        else:
            mark = WAITING
        line = Text(f"{mark} {i + 1}. {step.title}\n")
        if i == index and not finished:
            line.stylize("bold reverse")
        text.append(line)
    return text


def digest_text(label: str, hex_digest: str) -> Text:
    """A digest as hex and as words to read aloud."""
    text = Text()
    text.append(f"{label:<7}", style="bold")
    text.append(f"{hex_digest}\n")
    text.append(f"{'words':<7}")
    text.append(f"{words(hex_digest)}\n")
    return text


def participant_label(script: Script, pid: str) -> str:
    p = script.participant(pid)
    return f"{p.name} ({pid})" if p else pid


def step_needs(script: Script, step: Step, present: set[str]) -> list[tuple[bool, str]]:
    """Who the step needs in the room, each with whether enough of them are present."""
    out: list[tuple[bool, str]] = []
    for admin in script.with_role("administrator"):
        out.append((admin.id in present, f"administrator {admin.name}"))
    if step.approvals:
        here = [a for a in step.approvers if a in present]
        out.append((len(here) >= step.approvals,
                    f"{step.approvals} custodian approvals (present {len(here)} of: "
                    f"{', '.join(step.approvers)})"))
    if step.witnesses:
        witnesses = [p.id for p in script.with_role("witness")]
        here = [w for w in witnesses if w in present]
        out.append((len(here) >= step.witnesses,
                    f"{step.witnesses} witness(es) (present {len(here)} of: "
                    f"{', '.join(witnesses)})"))
    return out


def marks_text(items: list[tuple[bool | None, str]]) -> Text:
    text = Text()
    for ok, line in items:
        mark = {True: DONE, False: MISSING, None: WAITING}[ok]
        word = {True: "ok", False: "MISSING", None: "waiting"}[ok]
        text.append(f" {mark} ")
        text.append(f"{word:<8}", style="bold" if ok is not True else "")
        text.append(f"{line}\n")
    return text


def group_progress_text(prompt: SharesNeeded) -> Text:
    """A recovery's progress: how many groups are complete, then each group (k of its
    threshold, who presented, complete ✓)."""
    complete = sum(g.complete for g in prompt.groups)
    text = Text()
    text.append(f"{DONE if prompt.ready else MISSING} share groups complete {complete} of "
                f"{prompt.group_threshold} needed\n", style="" if prompt.ready else "bold")
    for group in prompt.groups:
        text.append(f" {DONE if group.complete else WAITING} {group.describe()}\n")
    return text


def entry_line(entry: Entry) -> str:
    step = f" [{entry.step}]" if entry.step else ""
    return f"#{entry.seq:<3} {entry.event:<18} {entry.actor}{step}"


class TranscriptPanel(Vertical):
    """The last transcript entries, live, and the head hash as words to read aloud."""

    def compose(self) -> ComposeResult:
        yield Static(id="head")
        yield OptionList(id="entries")

    def show(self, entries: list[Entry], head: str) -> None:
        """Redraw from the transcript on disk (called after every submit)."""
        label = Text()
        label.append("Transcript ", style="bold")
        label.append(f"{len(entries)} entries, head {head[:16]}…\n")
        label.append(f"head words: {words(head)}")
        self.query_one("#head", Static).update(label)
        listing = self.query_one("#entries", OptionList)
        listing.set_options([Option(entry_line(e), id=str(e.seq)) for e in entries])
        if entries:
            listing.highlighted = len(entries) - 1
            listing.scroll_end(animate=False)
