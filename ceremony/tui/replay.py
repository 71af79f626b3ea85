"""``ceremony replay BUNDLE``: the auditor's step-by-step view of a finished ceremony.

The verifier (ceremony.verify) decides; this view only shows its verdict next to what the
bundle records. ``load_replay`` is UI-free: it runs ``verify_bundle`` and then reads the
bundle leniently (a line the verifier refuses is still shown, as text), so that a bundle
that cannot be parsed at all still opens with the verifier's report. ``ReplayApp`` is the
Textual front end; it runs ``load_replay`` in a worker thread.

Marks are symbols plus words, never colour alone (NO_COLOR is respected by Textual):
entries ✓ verified, · passed the checks that ran before the verifier stopped, ✗ the entry
the verifier names as failing, … not verified; script steps ✓ completed, ✗ failed
verification, ⊘ aborted, … not reached / not verified.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from ceremony.canonical import sha256_hex
from ceremony.display import words
from ceremony.errors import CeremonyError
from ceremony.model import statements as st
from ceremony.model.script import Script, Step, parse_script
from ceremony.transcript import Entry, dumps_pretty, entry_from_dict
from ceremony.verify.core import (
    SCRIPT_FILE,
    STEP_NAMES,
    TRANSCRIPT_FILE,
    Report,
    StepResult,
    verify_bundle,
)

VERIFIED, CHECKED, FAILED, UNVERIFIED = "✓", "·", "✗", "…"
ENTRY_WORDS = {VERIFIED: "verified", CHECKED: "passed the checks that ran (the verifier "
               "stopped at a later failure)", FAILED: "FAILED verification",
               UNVERIFIED: "not verified (the verifier stopped before it)"}
SIGNED_EVENTS = ("approval", "witness.ack")
# Signed by a participant too, outside a step's approvals (ADR 15).
COSIGNED_EVENTS = ("deviation.approved", "seal.witnessed")


# ------------------------------------------------------------------ the UI-free model

@dataclass(frozen=True)
class Signer:
    """Who signed an entry, and whether the signature verifies (None: cannot be checked)."""

    who: str
    verified: bool | None

    def describe(self) -> str:
        result = {True: "✓ signature verifies", False: "✗ signature does NOT verify",
                  None: "? signature cannot be checked (key unknown)"}[self.verified]
        return f"{self.who}: {result}"


@dataclass(frozen=True)
class ReplayEntry:
    """One transcript line as the replay shows it."""

    number: int  # 1-based line number in transcript.jsonl
    entry: Entry | None  # None: the line cannot be read as an entry
    raw: str
    problem: str
    mark: str
    signers: tuple[Signer, ...] = ()

    @property
    def status(self) -> str:
        return f"{self.mark} {ENTRY_WORDS[self.mark]}"

    def pretty(self) -> str:
        if self.entry is None:
            return self.raw
        return dumps_pretty(self.entry)


@dataclass(frozen=True)
class Approval:
    participant: str
    name: str
    role: str
    time: str
    verified: bool | None


@dataclass(frozen=True)
class StepView:
    index: int
    step: Step
    mark: str
    status: str
    approvals: tuple[Approval, ...]
    first_line: int | None  # the line of its step.started entry


@dataclass
class Replay:
    """Everything the view shows: the verifier's report and what the bundle records."""

    bundle: Path
    report: Report
    script: Script | None
    script_problem: str
    entries: list[ReplayEntry]
    transcript_problem: str
    steps: list[StepView] = field(default_factory=list)
    ceremony_id: str | None = None
    rehearsal: bool = False
    outcome: str | None = None
    head: str | None = None
    root_fingerprint: str | None = None

    @property
    def failure(self) -> StepResult | None:
        return self.report.first_failure


def _verified_until(report: Report) -> float:
    """Lines before this number passed every check that ran; inf when none failed on a line."""
    failure = report.first_failure
    if failure is None:
        return math.inf
    if failure.line is not None:
        return failure.line
    # A failure with no line: after the transcript's own checks (policy, checksums) every
    # line passed them; at bundle or parse, nothing was checked.
    return math.inf if failure.number > 2 else 0


def _read_lines(data: bytes) -> list[tuple[int, bytes, Entry | None, str]]:
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    out: list[tuple[int, bytes, Entry | None, str]] = []
    for number, raw in enumerate(pieces, start=1):
        try:
            out.append((number, raw, entry_from_dict(json.loads(raw)), ""))
        except (ValueError, RecursionError) as exc:
            out.append((number, raw, None, str(exc)))
    return out


def _check_sig(key: bytes | None, signature: Any, statement: Any,
               kind: str = "ed25519") -> bool | None:
    if key is None:
        return None
    if not isinstance(signature, str) or not isinstance(statement, dict):
        return False
    try:
        raw = st.unb64(signature)
        return st.b64(raw) == signature and st.verify_signature(kind, key, raw,
                                                                st.message(statement))
    except ValueError:
        return False


def _root_key(text: Any) -> tuple[str, bytes] | None:
    try:
        return st.decode_public_key(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _key(text: Any) -> bytes | None:
    try:
        return st.decode_key(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _signers(entry: Entry, script: Script | None, transcript_key: bytes | None,
             root: tuple[str, bytes] | None) -> tuple[Signer, ...]:
    p = entry.payload
    if entry.event in SIGNED_EVENTS or entry.event in COSIGNED_EVENTS:
        statement = p.get("statement")
        pid = str(statement.get("participant")) if isinstance(statement, dict) else entry.actor
        person = script.participant(pid) if script else None
        if person is None:
            return (Signer(f"{pid} (not in the script)", None if script is None else False),)
        key = person.public_key_bytes
        return (Signer(f"{pid} ({person.name}, {person.role})",
                       _check_sig(key, p.get("signature"), statement)),)
    if entry.event == "checkpoint":
        return (Signer("transcript key", _check_sig(transcript_key, p.get("signature"),
                                                    p.get("statement"))),)
    if entry.event == "seal":
        out = [Signer("transcript key", _check_sig(transcript_key, p.get("transcript_signature"),
                                                   p.get("statement")))]
        if "root_key_signature" in p:
            out.append(Signer("root key (proof of possession)",
                              _check_sig(root[1] if root else None,
                                         p.get("root_key_signature"), p.get("statement"),
                                         root[0] if root else "ed25519")))
        return tuple(out)
    return ()


def load_replay(bundle: Path) -> Replay:
    """Verify ``bundle`` and gather what the replay shows; never raises on a bad bundle."""
    report = verify_bundle(bundle)
    script: Script | None = None
    script_problem = ""
    try:
        script = parse_script((bundle / SCRIPT_FILE).read_bytes().decode("utf-8"), SCRIPT_FILE)
    except OSError as exc:
        script_problem = f"{SCRIPT_FILE} cannot be read ({exc.strerror}), so no script steps"
    except UnicodeDecodeError:
        script_problem = f"{SCRIPT_FILE} is not UTF-8, so no script steps"
    except CeremonyError as exc:
        script_problem = f"{SCRIPT_FILE} does not parse, so no script steps: {exc.message}"
    transcript_problem = ""
    try:
        lines = _read_lines((bundle / TRANSCRIPT_FILE).read_bytes())
    except OSError as exc:
        lines = []
        transcript_problem = f"{TRANSCRIPT_FILE} cannot be read ({exc.strerror})"
    failure = report.first_failure
    until = _verified_until(report)
    entries: list[ReplayEntry] = []
    transcript_key: bytes | None = None
    root: tuple[str, bytes] | None = None
    replay = Replay(bundle, report, script, script_problem, entries, transcript_problem)
    for number, raw, entry, problem in lines:
        if failure is not None and number == failure.line:
            mark = FAILED
        elif number < until:
            mark = VERIFIED if failure is None else CHECKED
        else:
            mark = UNVERIFIED
        signers: tuple[Signer, ...] = ()
        if entry is not None:
            p = entry.payload
            if entry.event == "ceremony.started" and transcript_key is None:
                transcript_key = _key(p.get("transcript_key"))
                replay.rehearsal = p.get("rehearsal") is True
                replay.ceremony_id = entry.ceremony
            elif entry.event in ("root_key.created", "root_key.recovered"):
                root = _root_key(p.get("public_key"))
                fingerprint = p.get("fingerprint")
                replay.root_fingerprint = fingerprint if isinstance(fingerprint, str) else None
            elif entry.event in ("action.rolled_back", "ceremony.aborted"):
                step = script.step(entry.step) if script and entry.step else None
                if entry.event == "ceremony.aborted" or step is None or \
                        step.action != "certify_root_key":  # a certification leaves the key
                    root, replay.root_fingerprint = None, None
            elif entry.event == "seal":
                statement = p.get("statement")
                if isinstance(statement, dict) and isinstance(statement.get("outcome"), str):
                    replay.outcome = statement["outcome"]
            signers = _signers(entry, script, transcript_key, root)
        entries.append(ReplayEntry(number, entry, raw.decode("utf-8", "replace"), problem,
                                   mark, signers))
    if lines and lines[-1][2] is not None:
        replay.head = sha256_hex(lines[-1][1])
    replay.ceremony_id = report.ceremony_id or replay.ceremony_id or (
        script.ceremony_id if script else None)
    replay.outcome = report.outcome or replay.outcome
    replay.head = report.head or replay.head
    replay.root_fingerprint = report.root_fingerprint or replay.root_fingerprint
    if script is not None:
        replay.steps = [_step_view(i, step, script, entries, failure, until)
                        for i, step in enumerate(script.steps)]
    return replay


def _step_view(index: int, step: Step, script: Script, entries: list[ReplayEntry],
               failure: StepResult | None, until: float) -> StepView:
    mine = [e for e in entries if e.entry is not None and e.entry.step == step.id]
    numbers = [e.number for e in mine]
    events = {e.entry.event: e.number for e in reversed(mine) if e.entry is not None}
    approvals = tuple(
        Approval(e.entry.actor, p.name if (p := script.participant(e.entry.actor)) else "?",
                 "custodian" if e.entry.event == "approval" else "witness", e.entry.time,
                 e.signers[0].verified if e.signers else None)
        for e in mine if e.entry is not None and e.entry.event in SIGNED_EVENTS)
    first = events.get("step.started")
    fail_line = failure.line if failure is not None else None
    if fail_line is not None and numbers and min(numbers) <= fail_line <= max(numbers):
        mark, status = FAILED, "failed verification"
    elif "ceremony.aborted" in events:
        mark, status = "⊘", "aborted"
    elif first is None:
        mark, status = UNVERIFIED, "not reached"
    elif max(numbers) >= until:
        mark, status = UNVERIFIED, "not verified"
    elif "step.completed" in events:
        mark, status = VERIFIED, "completed"
    else:
        mark, status = UNVERIFIED, "started, never completed"
    return StepView(index, step, mark, status, approvals, first)


# ------------------------------------------------------------------ rendering helpers

def _time(text: str) -> str:
    """The time of day of a transcript time (the date is in the entry's detail)."""
    return text[11:26] if len(text) == 27 else text


def header_lines(replay: Replay) -> list[str]:
    """The header: ceremony, verdict, transcript head and root key in hex and words."""
    report, failure = replay.report, replay.failure
    kind = "  REHEARSAL" if replay.rehearsal else ""
    outcome = replay.outcome or "unknown"
    if replay.outcome and report.outcome is None:
        outcome += " (not verified)"
    lines = [f"ceremony {replay.ceremony_id or '(id unreadable)'}{kind}  outcome: {outcome}"]
    if failure is None:
        lines.append(f"✓ VERIFIED: all {len(STEP_NAMES)} verifier steps passed, "
                     f"{report.entries} entries")
    else:
        where = f" at line {failure.line}" if failure.line is not None else ""
        lines.append(f"✗ NOT VERIFIED: step {failure.number} ({failure.name}) failed{where} "
                     f"[{failure.requirement}]  (f: show)")
    for label, digest in (("head", replay.head), ("root", replay.root_fingerprint)):
        # "head?": recorded in the transcript, but the verifier did not vouch for it.
        label += " " if report.ok else "?"
        if digest and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            lines.append(f"{label} {digest}")
            lines.append(f"      {words(digest)}")
        else:
            lines.append(f"{label} (none recorded)")
    return lines


def step_text(view: StepView, total: int) -> str:
    """One script step: its mark and result, what it needed, and who approved it."""
    step = view.step
    needs = [f"{step.approvals} approvals"] if step.approvals else []
    if step.witnesses:
        needs.append(f"{step.witnesses} witness{'es' if step.witnesses > 1 else ''}")
    if step.confirm:
        needs.append("typed confirmation")
    out = [f"{view.mark} {view.status}: step {view.index + 1}/{total} {step.id}",
           f"    {step.title}"]
    if needs:
        out.append(f"    needs {', '.join(needs)}")
    for a in view.approvals:
        sig = {True: "✓ signed", False: "✗ bad signature", None: "? unchecked"}[a.verified]
        out.append(f"    {a.role:<9} {a.participant} ({a.name})  {_time(a.time)}  {sig}")
    if not view.approvals:
        out.append("    no approvals recorded")
    return "\n".join(out)


def verifier_text(replay: Replay) -> str:
    """The verifier's ten steps with their results, as `ceremony verify` lists them."""
    lines = ["Verifier steps (docs/transcript-format.md)"]
    for s in replay.report.steps:
        mark = {True: "✓ pass", False: "✗ FAIL", None: "… not run"}[s.ok]
        where = f" (line {s.line})" if s.line is not None else ""
        detail = f": {s.detail}" if s.detail else ""
        lines.append(f"{mark:<9} {s.number:>2}. {s.name}{where}{detail}")
    return "\n".join(lines)


def failure_text(replay: Replay) -> str:
    """The summary of what failed verification (the verifier stops at the first failure)."""
    failure = replay.failure
    lines = ["Failures"]
    if failure is None:
        lines.append("Nothing failed verification.")
    else:
        where = "no transcript line (a bundle-level check)"
        if failure.line is not None:
            seq = f", seq {failure.seq}" if failure.seq is not None else ""
            where = f"{TRANSCRIPT_FILE} line {failure.line}{seq}"
        lines += [f"✗ step {failure.number} ({failure.name}) [{failure.requirement}]",
                  f"  where:  {where}", f"  detail: {failure.detail}"]
        if failure.number < len(STEP_NAMES):
            lines.append(f"The verifier stops at the first failure: steps {failure.number + 1}"
                         f" to {len(STEP_NAMES)} did not run, so later problems, if any, "
                         "are not listed.")
    for problem in (replay.script_problem, replay.transcript_problem):
        if problem:
            lines.append(problem)
    unreadable = [e for e in replay.entries if e.entry is None]
    if unreadable:
        lines.append(f"{len(unreadable)} transcript line(s) cannot be read as entries: "
                     + ", ".join(str(e.number) for e in unreadable[:10]))
    return "\n".join(lines)


def entry_detail(item: ReplayEntry) -> str:
    """Where an entry is, its verification status and, for signed entries, who signed."""
    e = item.entry
    if e is None:
        head = [f"line {item.number}: cannot be read as an entry ({item.problem})"]
    else:
        step = f", step {e.step}" if e.step else ""
        head = [f"line {item.number}, seq {e.seq}: {e.event} by {e.actor}{step}",
                f"time {e.time}"]
    head.append(f"verification: {item.status}")
    if e is not None and e.event == "seal":
        statement = e.payload.get("statement")
        outcome = statement.get("outcome") if isinstance(statement, dict) else None
        head.append(f"seal outcome: {outcome}")
    if item.signers:
        head.append("signed by:")
        head += [f"  {s.describe()}" for s in item.signers]
    return "\n".join(head)


# ------------------------------------------------------------------ the Textual app

HELP = """ceremony replay: keys

  n / p      next / previous transcript entry
  s          next script step (its step.started entry)
  f          jump to the entry the verifier names as failing
  enter      show the selected entry in full (escape closes)
  1 / 2 / 3  Entries / Steps / Verifier tab
  r          QR codes of the public key, head and seal (←/→ page)
  ?          this help        q  quit

Entry marks:  ✓ verified   · passed the checks that ran before the
  verifier stopped   ✗ failed verification   … not verified
Step marks:   ✓ completed  ✗ failed verification  ⊘ aborted
  … not reached / not verified

The verifier stops at its first failure; the Verifier tab lists the
ten steps and what failed. Exit code: 0 verified, 1 not verified."""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,enter", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(HELP, id="help-text", markup=False)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class EntryScreen(ModalScreen[None]):
    """One entry in full: status, signers and its pretty JSON; n/p step through."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,enter", "dismiss", "Close"),
        Binding("n", "move(1)", "Next"), Binding("p", "move(-1)", "Prev")]

    def __init__(self, entries: list[ReplayEntry], index: int) -> None:
        super().__init__()
        self.entries = entries
        self.index = index

    def compose(self) -> ComposeResult:
        with Vertical(id="entry-box"):
            yield Static(id="entry-meta", markup=False)
            with VerticalScroll(id="entry-scroll"):
                yield Static(id="entry-json", markup=False)
            yield Footer()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        item = self.entries[self.index]
        self.query_one("#entry-meta", Static).update(entry_detail(item))
        self.query_one("#entry-json", Static).update(item.pretty())
        self.query_one("#entry-scroll", VerticalScroll).scroll_home(animate=False)

    def action_move(self, delta: int) -> None:
        self.index = max(0, min(len(self.entries) - 1, self.index + delta))
        self._show()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class ReplayApp(App[None]):
    """The auditor's replay of one bundle."""

    CSS_PATH = "replay.tcss"
    TITLE = "ceremony replay"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "move(1)", "Next"),
        Binding("p", "move(-1)", "Prev"),
        Binding("s", "next_step", "Step"),
        Binding("f", "failure", "Failure"),
        Binding("enter", "show_entry", "Show", show=False),
        Binding("1", "tab('entries')", "Entries", show=False),
        Binding("2", "tab('steps')", "Steps", show=False),
        Binding("3", "tab('verifier')", "Verifier", show=False),
        Binding("r", "qr_codes", "QR codes", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, bundle: Path) -> None:
        super().__init__()
        self.bundle = bundle
        self.replay: Replay | None = None

    @property
    def verified(self) -> bool:
        return self.replay is not None and self.replay.report.ok

    def compose(self) -> ComposeResult:
        yield Static(f"ceremony replay: {self.bundle.resolve().name}", id="title",
                     markup=False)
        yield Static("verifying the bundle…", id="header", markup=False)
        with TabbedContent(id="tabs"):
            with TabPane("Entries", id="entries"):
                yield DataTable(id="entry-table", cursor_type="row", zebra_stripes=False)
                yield Static("", id="position", markup=False)
            with TabPane("Steps", id="steps"):
                yield VerticalScroll(id="step-list")
            with TabPane("Verifier", id="verifier"), VerticalScroll():
                yield Static("", id="failures", markup=False)
                yield Static("", id="report", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            replay = load_replay(self.bundle)
        except OSError as exc:  # unreadable files (permissions, I/O): say so, do not crash
            message = f"✗ NOT VERIFIED: the bundle cannot be read ({exc.strerror}: " \
                      f"{exc.filename})"
            self.call_from_thread(self.query_one("#header", Static).update, message)
            return
        self.call_from_thread(self._show, replay)

    def _show(self, replay: Replay) -> None:
        self.replay = replay
        self.query_one("#header", Static).update("\n".join(header_lines(replay)))
        self.query_one("#header").set_class(not replay.report.ok, "failed")
        if not replay.report.ok:
            self.query_one("#title", Static).update(
                f"ceremony replay: {self.bundle.resolve().name}   "
                "(head?/root?: as recorded, not verified)")
        table = self.query_one(DataTable)
        table.add_columns(" ", "seq", "time (UTC)", "actor", "step", "event")
        for item in replay.entries:
            e = item.entry
            if e is None:
                table.add_row(item.mark, "?", "", "", "", f"line {item.number} unreadable",
                              key=str(item.number))
            else:
                table.add_row(item.mark, str(e.seq), _time(e.time), e.actor, e.step or "",
                              e.event, key=str(item.number))
        steps = self.query_one("#step-list", VerticalScroll)
        if replay.steps:
            steps.mount_all(Static(step_text(v, len(replay.steps)), markup=False,
                                   classes="step", id=f"step-{v.index}")
                            for v in replay.steps)
        else:
            steps.mount(Static(replay.script_problem or "the script has no steps",
                               markup=False, classes="step"))
        self.query_one("#failures", Static).update(failure_text(replay))
        self.query_one("#failures").set_class(not replay.report.ok, "failed")
        self.query_one("#report", Static).update(verifier_text(replay))
        if not replay.entries:
            self.query_one(TabbedContent).active = "verifier"
        self._update_position()

    # ---- helpers

    def _index(self) -> int | None:
        if self.replay is None or not self.replay.entries:
            return None
        return self.query_one(DataTable).cursor_row

    def _select(self, index: int) -> None:
        self.query_one(TabbedContent).active = "entries"
        table = self.query_one(DataTable)
        table.move_cursor(row=index, animate=False, scroll=True)
        table.focus()
        self._update_position()

    def _step_of(self, item: ReplayEntry) -> StepView | None:
        if self.replay is None or item.entry is None or item.entry.step is None:
            return None
        return next((v for v in self.replay.steps if v.step.id == item.entry.step), None)

    def _update_position(self) -> None:
        index = self._index()
        if self.replay is None or index is None:
            return
        item = self.replay.entries[index]
        text = f"entry {index + 1} of {len(self.replay.entries)}: {item.status}"
        view = self._step_of(item)
        for v in self.replay.steps:
            self.query_one(f"#step-{v.index}").set_class(v is view, "current")
        if view is not None:
            text += f"\nstep {view.index + 1}/{len(self.replay.steps)} {view.step.id}: " \
                    f"{view.mark} {view.status}"
        self.query_one("#position", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._update_position()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_show_entry()

    # ---- actions

    def action_move(self, delta: int) -> None:
        index = self._index()
        if index is not None and self.replay is not None:
            self._select(max(0, min(len(self.replay.entries) - 1, index + delta)))

    def action_next_step(self) -> None:
        index = self._index()
        if index is None or self.replay is None:
            return
        entries = self.replay.entries
        for i in range(index + 1, len(entries)):
            e = entries[i].entry
            if e is not None and e.event == "step.started":
                self._select(i)
                return
        self.notify("no further script step in the transcript")

    def action_failure(self) -> None:
        if self.replay is None:
            return
        failure = self.replay.failure
        if failure is None:
            self.notify("nothing failed verification")
            return
        for i, item in enumerate(self.replay.entries):
            if item.number == failure.line:
                self._select(i)
                return
        self.query_one(TabbedContent).active = "verifier"

    def action_show_entry(self) -> None:
        index = self._index()
        if index is not None and self.replay is not None:
            self.push_screen(EntryScreen(self.replay.entries, index))

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        if tab == "entries":
            self.query_one(DataTable).focus()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Over the QR viewer the keys that move through the entries below do nothing."""
        from ceremony.tui.qrview import QrViewer

        below = ("move", "next_step", "failure", "show_entry", "tab", "qr_codes")
        return not (action in below and isinstance(self.screen, QrViewer))

    def action_qr_codes(self) -> None:
        """The bundle's public material as terminal QR codes (tui/qrview.py)."""
        from ceremony.tui.qrview import QrViewer

        if self.replay is None:
            self.notify("… still verifying the bundle")
            return
        note = "" if self.replay.report.ok else ("NOT VERIFIED: these codes hold what the "
                                                 "bundle records, which the verifier did "
                                                 "not vouch for")
        self.push_screen(QrViewer(self.bundle, self.replay.ceremony_id, note=note))
