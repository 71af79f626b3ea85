"""The ceremony UI's screens: they show the engine's prompt and status and pass answers on.

No ceremony logic lives here: what comes next is always ``engine.next_prompt()``, progress
is ``engine.status()``, and every answer goes through the app to ``engine.submit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.suggester import Suggester
from textual.widgets import (
    Button,
    Footer,
    Input,
    LoadingIndicator,
    OptionList,
    ProgressBar,
    Static,
)
from textual.widgets.option_list import Option

from ceremony.display import words
from ceremony.errors import CeremonyError
from ceremony.tui import typeback
from ceremony.tui.widgets import (
    CURRENT,
    DONE,
    MISSING,
    WAITING,
    TranscriptPanel,
    digest_text,
    group_progress_text,
    marks_text,
    participant_label,
    step_list_text,
    step_needs,
)

if TYPE_CHECKING:
    from ceremony.engine.core import Engine
    from ceremony.engine.prompts import Finished, Prompt, SharesNeeded
    from ceremony.tui.app import CeremonyApp
    from ceremony.tui.shares import ShareSlot

R = TypeVar("R")


class _Base(Screen[None]):
    @property
    def ceremony(self) -> CeremonyApp:
        return cast("CeremonyApp", self.app)


def _title_bar(app: CeremonyApp, extra: str = "", *, full: bool = True) -> Text:
    s = app.setup.script
    text = Text()
    if app.setup.rehearsal:
        text.append(" REHEARSAL ", style="bold reverse")
        text.append(" ")
    text.append(f"{s.ceremony_id} v{s.version}", style="bold")
    text.append(f"  {s.title}{extra}" if full else extra)
    return text


# ------------------------------------------------------------------ start


class StartScreen(_Base):
    """Ceremony id, digests, environment checklist, resume offer; opens the token."""

    BINDINGS = [  # noqa: RUF012
        Binding("o", "open_token", "Open token"),
        Binding("c", "roll_call", "Roll call"),
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "officers", "Back to the officers", show=False),
    ]

    DEFAULT_CSS = """
    StartScreen #officers-box { height: auto; }
    StartScreen #officers { height: auto; max-height: 8; }
    StartScreen #share { width: 1fr; }
    StartScreen #login { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.officer: str | None = None  # the crypto officer typing their PIN share now
        self.share_problem = ""  # why the last typed share was refused (names no word)

    def compose(self) -> ComposeResult:
        setup = self.ceremony.setup
        yield Static(id="title", classes="bar")
        with VerticalScroll(id="start-body"):
            yield Static(id="digests")
            yield Static(id="checks")
            yield Static(id="resume")
            if setup.needs_pin:
                yield Input(password=True, placeholder="token user PIN, then Enter",
                            id="pin")
            elif setup.typed_shares is not None:
                with Vertical(id="officers-box"):
                    yield Static(id="officers-help")
                    yield Static(id="share-status")
                    yield OptionList(id="officers", compact=True)
                    yield Input(password=True, id="share", compact=True)
                yield Static(id="login")
            elif setup.pin_pad:
                yield Static(Text("PIN pad: enter the PIN on the token's PIN pad when it is "
                                  "opened (press o); no PIN is typed here."), id="pin-pad")
        yield Button("Open the token (o)", id="next", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_view()
        for pin in self.query("#pin"):
            pin.focus()
        for officers in self.query("#officers"):
            officers.focus(scroll_visible=False)  # the digests stay in view, on top

    def on_screen_resume(self) -> None:
        # Back from an error: a failed opening wiped the typed shares; officers start over.
        if not (self.is_mounted and self.query("#next")):
            return
        self.refresh_view()
        if self.ceremony.opened is None and self.officer is None:
            for officers in self.query("#officers"):
                officers.focus()

    def refresh_view(self) -> None:
        app = self.ceremony
        s = app.setup
        self.query_one("#title", Static).update(_title_bar(app))
        digests = digest_text("script", s.script.sha256)
        digests.append_text(digest_text("policy", s.policy.sha256))
        if s.original is not None:
            record = s.original.record
            digests.append(f"RECOVERY of ceremony {record.ceremony_id} (its bundle verified): "
                           "the rebuilt root key must have the fingerprint\n", style="bold")
            digests.append_text(digest_text("key", record.fingerprint))
        self.query_one("#digests", Static).update(digests)
        from ceremony.tui.app import environment_checks

        checks = Text("Environment checks\n", style="bold")
        checks.append_text(marks_text([(c.ok, f"{c.name}: {c.detail}") for c in
                                       environment_checks(s, app.token_info,
                                                          app.token_error)]))
        self.query_one("#checks", Static).update(checks)
        self.query_one("#resume", Static).update(self._resume_text())
        button = self.query_one("#next", Button)
        if app.opened is None:
            button.label = "Open the token (o)"
            typed = s.typed_shares
            button.disabled = typed is not None and not typed.complete()
            if typed is not None:
                self._refresh_officers()
        else:
            button.label = "Roll call (c)"
            button.disabled = False
            for widget in self.query("#pin, #officers-box"):
                widget.remove()
            for login in self.query("#login").results(Static):
                login.update(self._login_text())
                login.display = True
        self.refresh_bindings()

    # ---------------------------------------------------------- split activation, typed

    def _refresh_officers(self) -> None:
        """The officers' list, who presented, how many are still needed, the last refusal."""
        typed = self.ceremony.setup.typed_shares
        assert typed is not None
        act, script = typed.activation, self.ceremony.setup.script
        self.query_one("#officers-help", Static).update(Text(
            f"Split knowledge: {act.threshold} of the {len(act.officers)} crypto officers "
            "type their user-PIN shares. Pick your name (arrows, Enter), type your 20 "
            "words (never shown), Enter."))
        officers = self.query_one("#officers", OptionList)
        highlighted = officers.highlighted_option
        options = []
        for officer in act.officers:
            label = Text(f"{participant_label(script, officer)}  ")
            if officer in typed.presented:
                number = typed.presented.index(officer) + 1
                label.append(f"{DONE} {number} of {act.threshold}", style="bold")
            elif officer == self.officer:
                label.append(f"{CURRENT} typing now")
            else:
                label.append(f"{WAITING} waiting")
            options.append(Option(label, id=officer, disabled=officer in typed.presented))
        officers.set_options(options)
        waiting = typed.waiting()
        keep = highlighted.id if highlighted is not None else None
        target = keep if keep in waiting else (waiting[0] if waiting else None)
        if target is not None:
            officers.highlighted = act.officers.index(target)
        field = self.query_one("#share", Input)
        field.placeholder = (f"PIN share of {participant_label(script, self.officer)}: "
                             "20 words, then Enter" if self.officer else
                             "pick your name above first")
        self.query_one("#share-status", Static).update(self._share_status())

    def _share_status(self) -> Text:
        typed = self.ceremony.setup.typed_shares
        assert typed is not None
        act = typed.activation
        text = Text()
        if self.share_problem:
            text.append(f"{MISSING} {self.share_problem}\n", style="bold")
        if typed.complete():
            text.append(f"{DONE} {act.threshold} of {act.threshold} officers presented "
                        f"({', '.join(typed.presented)}): opening the token")
        else:
            more = typed.missing()
            text.append(f"{MISSING} {more} more officer{'s' if more > 1 else ''} needed "
                        f"before the token can be opened")
        return text

    def _login_text(self) -> Text:
        login = (self.ceremony.token_info or {}).get("activation") or {}
        presented = login.get("presented") or []
        return Text(f"{DONE} logged in with the PIN shares of {', '.join(presented)}; the "
                    "typed shares are wiped" if presented else "")

    def action_officers(self) -> None:
        """Esc while typing a share: drop what was typed, back to the officers' list."""
        if self.ceremony.setup.typed_shares is None or not self.query("#officers"):
            return
        for field in self.query("#share").results(Input):
            field.value = ""
        if self.officer is not None:
            self.officer = None
            self.share_problem = ""
            self._refresh_officers()
        for officers in self.query("#officers"):
            officers.focus()
        self._scroll_to_officers()

    def _scroll_to_officers(self) -> None:
        """Keep the officers' list and the share field in view (a refusal adds lines)."""
        body = self.query_one("#start-body", VerticalScroll)
        self.call_after_refresh(body.scroll_end, animate=False)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        typed = self.ceremony.setup.typed_shares
        if event.option_list.id != "officers" or typed is None or event.option.id is None:
            return
        if event.option.id not in typed.waiting():
            return
        self.officer = event.option.id
        self.share_problem = ""
        self._refresh_officers()
        field = self.query_one("#share", Input)
        field.value = ""  # nothing half-typed carries over to another officer
        field.focus()
        self._scroll_to_officers()

    def _present_share(self, field: Input) -> None:
        """Check the typed share at once; mark the officer presented, or say why not."""
        typed = self.ceremony.setup.typed_shares
        assert typed is not None
        value, field.value = field.value, ""  # never left in the field, whatever happens
        officer = self.officer
        if officer is None:
            self.share_problem = "pick your name in the list first (arrows, Enter), then type"
            self._refresh_officers()
            self.query_one("#officers", OptionList).focus()
            self._scroll_to_officers()
            return
        try:
            typed.present(officer, value)
        except CeremonyError as error:
            message = error.message.removeprefix(f"{typed.WHERE}: ")
            self.share_problem = f"{message}: {error.hint}" if error.hint else message
            self._refresh_officers()
            self._scroll_to_officers()
            return
        finally:
            del value
        self.officer = None
        self.share_problem = ""
        self.refresh_view()
        if typed.complete():
            self.action_open_token()
        else:
            self.query_one("#officers", OptionList).focus()
            self._scroll_to_officers()

    def _resume_text(self) -> Text:
        stopped = self.ceremony.stopped
        if stopped is None:
            return Text("A new ceremony will be recorded in "
                        f"{self.ceremony.setup.out}")
        steps = self.ceremony.setup.script.steps
        text = Text()
        if stopped.sealed:
            text.append("This ceremony is already sealed; continuing only finishes its "
                        "bundle.\n", style="bold")
        else:
            index = stopped.step_index
            where = (f"step {index + 1} of {len(steps)} ({steps[index].title})"
                     if index < len(steps) else "after its last step")
            text.append(f"{WAITING} RESUME: an unfinished ceremony is recorded here; it "
                        f"stopped at {where}.\n", style="bold")
        text.append("Last entries:\n")
        from ceremony.tui.widgets import entry_line

        for entry in stopped.entries[-3:]:
            text.append(f"  {entry_line(entry)}\n")
        return text

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        opened = self.ceremony.opened is not None
        if action == "open_token":
            typed = self.ceremony.setup.typed_shares
            if not opened and typed is not None and not typed.complete():
                return None  # shown, disabled: more officers must present their shares
            return not opened
        if action == "roll_call":
            return opened
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if self.ceremony.opened is None:
            self.action_open_token()
        else:
            self.action_roll_call()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "pin":
            self.action_open_token()
        elif event.input.id == "share":
            self._present_share(event.input)

    def action_open_token(self) -> None:
        app = self.ceremony
        if app.opened is not None:
            return
        typed = app.setup.typed_shares
        if typed is not None and not typed.complete():
            return
        pin: bytearray | None = None
        if app.setup.needs_pin:
            field = self.query_one("#pin", Input)
            if not field.value:
                field.focus()
                self.notify("type the token's user PIN first", severity="warning")
                return
            pin = bytearray(field.value.encode())
            field.value = ""
        app.open_token(pin)

    def action_roll_call(self) -> None:
        if self.ceremony.opened is not None:
            self.ceremony.roll_call()


# ------------------------------------------------------------------ roll call


class RollCallScreen(_Base):
    """Who is in the room: the administrator ticks each participant present."""

    BINDINGS = [  # noqa: RUF012
        Binding("space", "toggle_present", "Present / absent"),
        Binding("b", "begin", "Begin"),
        Binding("escape", "back", "Back"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="title", classes="bar")
        yield Static("Roll call: tick each participant who is present (Enter or Space).",
                     id="rollcall-help")
        yield OptionList(id="people")
        yield Static(id="needs")
        yield Button("Begin the ceremony (b)", id="next", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#title", Static).update(_title_bar(self.ceremony, "  - roll call"))
        people = self.query_one("#people", OptionList)
        people.set_options([Option(self._line(p.id), id=p.id)
                            for p in self.ceremony.setup.script.participants])
        people.highlighted = 0
        people.focus()
        self.refresh_view()

    def _line(self, pid: str) -> Text:
        script = self.ceremony.setup.script
        p = script.participant(pid)
        assert p is not None
        here = pid in self.ceremony.present
        text = Text(f"[{DONE if here else ' '}] {'present' if here else 'absent '}  ")
        text.append(f"{p.name} ({pid})", style="bold" if here else "")
        text.append(f"  {p.role}")
        return text

    def _step(self) -> Any:
        steps = self.ceremony.setup.script.steps
        index = min(self.ceremony.first_step_index(), len(steps) - 1)
        return steps[index]

    def ready(self) -> bool:
        needs = step_needs(self.ceremony.setup.script, self._step(), self.ceremony.present)
        return all(ok for ok, _ in needs)

    def refresh_view(self) -> None:
        step = self._step()
        needs = step_needs(self.ceremony.setup.script, step, self.ceremony.present)
        text = Text(f"Step '{step.title}' needs in the room:\n", style="bold")
        text.append_text(marks_text([(ok, line) for ok, line in needs]))
        text.append(f"{DONE} ready: press b to begin" if self.ready() else
                    f"{MISSING} not ready: the ceremony cannot begin until they are present")
        self.query_one("#needs", Static).update(text)
        self.query_one("#next", Button).disabled = not self.ready()
        self.refresh_bindings()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.toggle(event.option.id)

    def action_toggle_present(self) -> None:
        option = self.query_one("#people", OptionList).highlighted_option
        if option is not None and option.id is not None:
            self.toggle(option.id)

    def toggle(self, pid: str) -> None:
        present = self.ceremony.present
        if pid in present:
            present.remove(pid)
        else:
            present.add(pid)
        self.query_one("#people", OptionList).replace_option_prompt(pid, self._line(pid))
        self.refresh_view()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "begin":
            return True if self.ready() else None
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_begin()

    def action_begin(self) -> None:
        if not self.ready():
            return
        if self.ceremony.engine is not None:  # roll call again during the ceremony
            self.dismiss()
            return
        self.ceremony.begin()

    def action_back(self) -> None:
        self.dismiss()


# ------------------------------------------------------------------ the ceremony


class CeremonyScreen(_Base):
    """One step at a time: instructions, who acts, what is missing, and the next action."""

    BINDINGS = [  # noqa: RUF012
        Binding("n", "next", "Next action"),
        Binding("a", "abort", "Abort"),
        Binding("t", "transcript", "Transcript"),
        Binding("p", "roll_call", "Roll call"),
        Binding("d", "deviation", "Declare a deviation", show=False),
        Binding("r", "qr_codes", "QR codes"),
        Binding("escape", "leave_input", "Back to keys", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield Static(id="title", classes="bar")
            yield ProgressBar(id="progress", show_eta=False, show_percentage=False)
        with Horizontal(id="body"):
            yield Static(id="steps")
            with VerticalScroll(id="main"):
                yield Static(id="step-title")
                yield Static(id="instructions")
                yield Static(id="needs")
                yield OptionList(id="choices")
                yield Input(id="confirm")
                yield Button("", id="next", compact=True)
        yield TranscriptPanel(id="transcript")
        yield Footer()

    @property
    def engine(self) -> Engine:
        engine = self.ceremony.engine
        assert engine is not None
        return engine

    def on_mount(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        from ceremony.engine.prompts import (
            ActionReady,
            ApprovalNeeded,
            BeginStep,
            ConfirmationNeeded,
            Finished,
            SharesNeeded,
        )

        engine, app = self.engine, self.ceremony
        status = engine.status()
        prompt = engine.next_prompt()
        total = status.steps_total
        self.query_one("#title", Static).update(_title_bar(
            app, f"  step {min(status.step_index + 1, total)} of {total}", full=False))
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=total, progress=status.step_index if status.phase != "finished"
                   else total)
        self.query_one("#steps", Static).update(step_list_text(engine.script, status))
        step = engine.script.steps[status.step_index] if status.step_index < total else None
        title = self.query_one("#step-title", Static)
        instructions = self.query_one("#instructions", Static)
        if step is not None:
            title.update(Text(f"Step {status.step_index + 1}: {step.title}", style="bold"))
            instructions.update(Text(step.instructions.replace("\n", " ")))
        choices = self.query_one("#choices", OptionList)
        confirm = self.query_one("#confirm", Input)
        button = self.query_one("#next", Button)
        choices.display = False
        confirm.display = False
        button.display = True
        needs = Text()
        pending = app.shares.pending() if app.shares else []
        if pending and not isinstance(prompt, Finished):
            needs.append(f"{WAITING} {len(pending)} share(s) still to hand out privately.\n")
            button.label = "Hand out the shares (n)"
        elif isinstance(prompt, BeginStep):
            needs.append("Who acts: the administrator reads the instructions aloud.\n")
            button.label = "Begin this step (n)"
        elif isinstance(prompt, ApprovalNeeded):
            from ceremony.tui.deviation import approval_words, signing_title

            kind, who = approval_words(prompt)
            if prompt.kind != "step":  # a deviation's approvals, the seal's co-signatures
                heading, said = signing_title(engine, prompt)
                title.update(heading)
                instructions.update(said)
            needs.append(f"Who acts: {who}, each signing with their own key.\n")
            got = ", ".join(participant_label(engine.script, p) for p in prompt.collected)
            needs.append(f"{MISSING} {kind} collected {len(prompt.collected)} of "
                         f"{prompt.needed}", style="bold")
            needs.append(f": {got or 'none yet'}\n")
            needs.append("Pick who is signing now (arrows, Enter):")
            waiting = [p for p in prompt.eligible if p not in prompt.collected]
            choices.set_options([Option(self._person(p), id=p) for p in waiting])
            choices.display = True
            button.display = False
        elif isinstance(prompt, ConfirmationNeeded):
            needs.append("Who acts: the administrator types the confirmation phrase.\n")
            needs.append(f"Type exactly: {prompt.phrase}", style="bold")
            needs.append("  then Enter")
            confirm.placeholder = f"type: {prompt.phrase}"
            confirm.display = True
            button.display = False
        elif isinstance(prompt, ActionReady):
            needs.append(f"{DONE} everything this step needs is in.\n")
            needs.append(prompt.description)
            button.label = ("Do it: run the action on the token (n)"
                            if prompt.action != "none" else "Complete this step (n)")
        elif _typed_secret_needs(engine, prompt, needs, button):
            pass
        elif isinstance(prompt, SharesNeeded):
            needs.append("Who acts: the custodians, each typing their share privately.\n")
            needs.append_text(group_progress_text(prompt))
            button.label = ("Present the shares, or rebuild the root key (n)" if prompt.ready
                            else "Present the shares (n)")
        elif isinstance(prompt, Finished):
            title.update(Text(f"Ceremony {prompt.outcome.upper()} and sealed",
                              style="bold"))
            finished = Text(
                f"{DONE if prompt.outcome == 'completed' else MISSING} outcome: "
                f"{prompt.outcome}\nbundle: {engine.bundle}\nRead the transcript head "
                f"aloud:\n{words(prompt.head)}")
            finished.append_text(self._recovered_text(prompt))
            instructions.update(finished)
            button.label = "Quit (q)"
        self.query_one("#needs", Static).update(needs)
        self.query_one(TranscriptPanel).show(app.entries(), engine.writer.head)
        if choices.display:
            choices.highlighted = 0
            choices.focus()
        elif confirm.display:
            confirm.focus()
        else:
            button.focus()
        self.refresh_bindings()

    def _recovered_text(self, prompt: Finished) -> Text:
        """A completed recovery: the recovered key's fingerprint next to the original's."""
        from ceremony.canonical import sha256_hex
        from ceremony.display import grouped_hex
        from ceremony.model import statements as st

        original = self.engine.original
        if original is None or prompt.outcome != "completed" or not prompt.root_public_key:
            return Text()
        _, public = st.decode_public_key(prompt.root_public_key)
        recovered, expected = sha256_hex(public), original.record.fingerprint
        text = Text("\n\nRoot key fingerprint, recovered into the token:\n", style="bold")
        text.append(f"{grouped_hex(recovered)}\nwords: {words(recovered)}\n")
        text.append(f"The original's (ceremony {original.record.ceremony_id}):\n",
                    style="bold")
        text.append(f"{grouped_hex(expected)}\nwords: {words(expected)}\n")
        if recovered == expected:
            text.append(f"{DONE} the same: the recovered root key is the original's")
        else:
            text.append(f"{MISSING} NOT the same key", style="bold")
        return text

    def _person(self, pid: str) -> Text:
        here = pid in self.ceremony.present
        has_signer = pid in self.ceremony.setup.signers
        text = Text(f"{participant_label(self.engine.script, pid)}")
        text.append(f"  {'present' if here else 'ABSENT'}")
        if not has_signer:
            cards = self.ceremony.setup.cards is not None
            text.append("  (with their card)" if cards else "  (no signing device)")
        return text

    def prompt(self) -> Prompt:
        return self.engine.next_prompt()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        from ceremony.engine.prompts import Finished

        finished = isinstance(self.prompt(), Finished)
        if action in ("abort", "roll_call", "deviation"):
            return not finished
        if action == "qr_codes":
            return finished
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_next()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "choices" and event.option.id is not None:
            self.ceremony.approve(event.option.id)
        elif event.option_list.id == "entries" and event.option.id is not None:
            seq = int(event.option.id)
            entry = next((e for e in self.ceremony.entries() if e.seq == seq), None)
            if entry is not None:
                self.app.push_screen(EntryModal(entry))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from ceremony.engine.prompts import TypedConfirmation

        if event.input.id == "confirm":
            text = event.value
            event.input.value = ""
            self.ceremony.submit(TypedConfirmation(text), "Recording the confirmation")

    def action_next(self) -> None:
        from ceremony.engine.prompts import (
            ActionReady,
            ApprovalNeeded,
            Begin,
            BeginStep,
            ConfirmationNeeded,
            Finished,
            SharesNeeded,
        )

        app = self.ceremony
        prompt = self.prompt()
        if app.shares and app.shares.pending() and not isinstance(prompt, Finished):
            app.distribute_if_needed()
        elif isinstance(prompt, BeginStep):
            app.submit(Begin(), f"Beginning step {prompt.index + 1}")
        elif isinstance(prompt, ApprovalNeeded):
            self.query_one("#choices", OptionList).focus()
        elif isinstance(prompt, ConfirmationNeeded):
            self.query_one("#confirm", Input).focus()
        elif isinstance(prompt, ActionReady):
            if prompt.action == "none":
                from ceremony.engine.prompts import Proceed

                app.submit(Proceed(), "Completing the step")
            else:
                app.proceed()
        elif isinstance(prompt, SharesNeeded):
            self.app.push_screen(RecoveryScreen(), lambda _: self.refresh_view())
        elif isinstance(prompt, Finished):
            app.exit(prompt.outcome)
        else:
            _open_typed_secret(self, prompt)

    def action_abort(self) -> None:
        self.app.push_screen(AbortModal())

    def action_deviation(self) -> None:
        from ceremony.tui.deviation import DeviationModal

        self.app.push_screen(DeviationModal())

    def action_transcript(self) -> None:
        self.query_one("#entries", OptionList).focus()

    def action_roll_call(self) -> None:
        self.app.push_screen(RollCallScreen(), lambda _: self.refresh_view())

    def action_leave_input(self) -> None:
        self.query_one("#next", Button).focus()

    def action_qr_codes(self) -> None:
        """The sealed bundle's public material as terminal QR codes (tui/qrview.py)."""
        from ceremony.tui.qrview import QrViewer

        self.app.push_screen(QrViewer(self.engine.bundle, self.engine.script.ceremony_id))


def _typed_secret_needs(engine: Engine, prompt: Prompt, needs: Text, button: Button) -> bool:
    """The step line for custodian dice or the SLIP-39 passphrase (tui/entropy.py)."""
    from ceremony.engine.prompts import DiceNeeded, PassphraseNeeded

    if isinstance(prompt, DiceNeeded):
        who = participant_label(engine.script, prompt.roller)
        needs.append(f"Who acts: {who}, rolling a six-sided die.\n")
        needs.append(f"{MISSING} {prompt.count} dice rolls for the seed", style="bold")
        button.label = "Type the dice rolls (n)"
        return True
    if isinstance(prompt, PassphraseNeeded):
        needs.append("Who acts: whoever holds the SLIP-39 passphrase, typing it masked.\n")
        needs.append(f"{MISSING} the passphrase" + (", typed twice" if prompt.twice else ""),
                     style="bold")
        needs.append(f"\n{prompt.warning}")
        button.label = "Type the passphrase (n)"
        return True
    return False


def _open_typed_secret(screen: CeremonyScreen, prompt: Prompt) -> None:
    from ceremony.engine.prompts import DiceNeeded, PassphraseNeeded
    from ceremony.tui.entropy import DiceScreen, PassphraseScreen

    if isinstance(prompt, DiceNeeded):
        screen.app.push_screen(DiceScreen(prompt), lambda _: screen.refresh_view())
    elif isinstance(prompt, PassphraseNeeded):
        screen.app.push_screen(PassphraseScreen(prompt), lambda _: screen.refresh_view())


# ------------------------------------------------------------------ shares


class DistributionScreen(_Base):
    """Each custodian in turn sees their share on a private screen, then types it back."""

    BINDINGS = [  # noqa: RUF012
        Binding("c", "done", "Continue"),
        Binding("a", "abort", "Abort"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(id="title", classes="bar")
        yield Static("Hand out the shares. Each custodian in turn: select your name and "
                     "press Enter to see your share privately, write it down, then type it "
                     "back. Everyone else looks away.", id="dist-help")
        yield OptionList(id="holders")
        yield Static(id="dist-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#title", Static).update(_title_bar(self.ceremony,
                                                           "  - shares"))
        self.refresh_view()

    def _slots(self) -> list[ShareSlot]:
        shares = self.ceremony.shares
        return shares.slots if shares else []

    def refresh_view(self) -> None:
        holders = self.query_one("#holders", OptionList)
        options = []
        for slot in self._slots():
            mark = f"{DONE} typed back" if slot.delivered else f"{WAITING} press Enter"
            options.append(Option(Text(f"{slot.name} ({slot.participant}), group "
                                       f"{slot.group} member {slot.member}: {mark}"),
                                  id=slot.key, disabled=slot.delivered))
        holders.set_options(options)
        waiting = [s for s in self._slots() if not s.delivered]
        if waiting:
            holders.highlighted = self._slots().index(waiting[0])
            status = Text(f"{WAITING} {len(waiting)} share(s) still to hand out; next: "
                          f"{waiting[0].name}: press Enter to see your share privately.")
        else:
            status = Text(f"{DONE} every custodian has their share; press c to continue.")
        self.query_one("#dist-status", Static).update(status)
        holders.focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "done":
            return True if not any(not s.delivered for s in self._slots()) else None
        return True

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        slot = next((s for s in self._slots() if s.key == event.option.id), None)
        if slot is None or slot.delivered:
            return

        def answered(nobody_else: bool | None) -> None:
            if nobody_else:
                self.app.push_screen(PrivateShareScreen(slot), lambda _: self.refresh_view())

        self.app.push_screen(PrivacyModal(slot.name), answered)

    def action_done(self) -> None:
        if all(s.delivered for s in self._slots()):
            self.dismiss()
            self.ceremony.refresh_screen()

    def action_abort(self) -> None:
        """The only way past a share nobody can type back: abort the ceremony (ABORT)."""
        self.app.push_screen(AbortModal())


class PrivacyModal(ModalScreen[bool]):
    """"Is anyone else looking?" before a share appears (or is typed, in a recovery)."""

    BINDINGS = [  # noqa: RUF012
        Binding("y", "yes", "Nobody else is looking"),
        Binding("escape", "no", "Cancel"),
    ]

    def __init__(self, name: str, action: str = "show my share") -> None:
        super().__init__()
        self.holder = name
        self.action = action

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(f"Private: the share of {self.holder}", style="bold"))
            yield Static(f"Only {self.holder} may look at the screen now. Is anyone "
                         "else looking? Everyone else turns away from the screen.",
                         markup=False)
            yield Button(f"Nobody else is looking: {self.action} (y)", id="yes",
                         compact=True)
            yield Button("Cancel (Esc)", id="no", compact=True)
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class PrivateShareScreen(Screen[None]):
    """One custodian's share words, numbered; then they type it back (TypeBackScreen).

    The words leave this screen the moment typing starts; the share is wiped once what the
    custodian types matches it. Esc hides the share without handing it out (it stays to do).
    """

    BINDINGS = [  # noqa: RUF012
        Binding("w", "written", "Written down: type it back"),
        Binding("escape", "hide", "Hide it (not handed out)"),
    ]

    def __init__(self, slot: ShareSlot) -> None:
        super().__init__()
        self.slot = slot

    def compose(self) -> ComposeResult:
        yield Static(Text(f"PRIVATE: share of {self.slot.name} ({self.slot.participant}), "
                          f"group {self.slot.group} member {self.slot.member}",
                          style="bold reverse"), classes="bar")
        yield Static(id="share-words")
        yield Static("Write the words down in order, on the share sheet. Then press w and "
                     "type them back from the sheet: the words leave the screen while you "
                     "type, and the share is wiped from memory once what you type matches.",
                     markup=False, id="share-help")
        yield Button("Written down: type it back (w)", id="written", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        items = self.slot.words()
        rows = (len(items) + 2) // 3
        text = Text()
        for r in range(rows):
            for c in range(3):
                i = c * rows + r
                if i < len(items):
                    text.append(f"{i + 1:>2}. {items[i]:<14}")
            text.append("\n")
        del items
        self.query_one("#share-words", Static).update(text)
        self.query_one("#written", Button).focus()

    def _hide(self) -> None:
        self.query_one("#share-words", Static).update("")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_written()

    def action_written(self) -> None:
        """Hide the words, then the custodian types the share back from their sheet."""
        if self.slot.delivered:
            return
        self._hide()

        def typed_back(result: str | None) -> None:
            if result == TypeBackScreen.MATCHED:
                self.dismiss()  # the share is already wiped
            else:
                self._show()  # back to see the share again

        self.app.push_screen(TypeBackScreen(self.slot), typed_back)

    def action_hide(self) -> None:
        self._hide()
        self.dismiss()


class WordSuggester(Suggester):
    """Completes a SLIP-39 word from its first four letters; caches nothing typed."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=False)

    async def get_suggestion(self, value: str) -> str | None:
        return typeback.suggestion(value)


class ShareWordInput(Input):
    """The field one share word is typed into; Backspace in the empty field goes back."""

    class Back(Message):
        """Backspace with nothing typed: drop the last word taken."""

    def action_delete_left(self) -> None:
        if not self.value:
            self.post_message(self.Back())
            return
        super().action_delete_left()


class ShareWordsScreen(Screen[R]):
    """A private screen where a custodian types a share, word by word (the common part).

    Each word is taken at Space or Enter (four letters name a SLIP-39 word: the rest is
    completed) and marked: a SLIP-39 word or not. After the last word, ``_check`` (the
    subclass's): the RS1024 checksum first. Every sentence names positions, never a word.
    The field holds one word at most and is cleared as each word is taken; the words taken
    are kept as indices in a bytearray (typeback.TypedShare), wiped on leaving.
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        self.typed = typeback.TypedShare(length)
        self.flagged: int | None = None  # the position the last refusal is about
        self.said = Text()  # the last sentence: positions only, never a word

    def header(self) -> Text:
        raise NotImplementedError

    def help_text(self) -> str:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield Static(self.header(), classes="bar")
        yield Static(self.help_text(), markup=False, id="typeback-help")
        yield Static(id="typeback-marks")
        yield Static(id="typeback-status")
        with Horizontal(id="typeback-row"):
            yield Static(id="typeback-label")
            yield ShareWordInput(id="word", suggester=WordSuggester(), compact=True,
                                 placeholder="first four letters, then Space")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_view()
        self.query_one("#word", ShareWordInput).focus()

    def on_unmount(self) -> None:
        self.typed.wipe()

    def refresh_view(self) -> None:
        typed = self.typed
        self.query_one("#typeback-marks", Static).update(self._marks())
        self.query_one("#typeback-status", Static).update(self.said)
        label = (f"word {typed.count + 1} of {typed.length}: " if not typed.complete
                 else "checking: ")
        self.query_one("#typeback-label", Static).update(Text(label, style="bold"))

    def _marks(self) -> Text:
        """One mark a position: ✓ typed, ▶ next, ✗ refused, … to come."""
        typed = self.typed
        columns = 10 if typed.length <= 20 else 11
        text = Text()
        for n in range(1, typed.length + 1):
            if n <= typed.count:
                mark = DONE
            elif n == self.flagged:
                mark = MISSING
            elif n == typed.count + 1:
                mark = CURRENT
            else:
                mark = WAITING
            text.append(f"{n:>2} {mark}  ")
            if n % columns == 0 and n < typed.length:
                text.append("\n")
        return text

    def on_input_changed(self, event: Input.Changed) -> None:
        field = event.input
        if field.id == "word" and any(c.isspace() for c in field.value):
            self._take(field, final=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "word":
            self._take(event.input, final=True)

    def on_share_word_input_back(self, event: ShareWordInput.Back) -> None:
        if self.typed.count:
            self.typed.back()
            self.flagged = None
            self.said = Text(f"{WAITING} back to word {self.typed.count + 1} of "
                             f"{self.typed.length}: type it again")
            self.refresh_view()

    def _take(self, field: Input, *, final: bool) -> None:
        """Take the whole words in the field (all of it at Enter); keep a word half typed."""
        value, field.value = field.value, ""  # the field never holds a word it has given
        tokens = value.split()
        rest = ""
        if not final and tokens and not value[-1].isspace():
            rest = tokens.pop()  # still being typed
        del value
        typed = self.typed
        for token in tokens:
            index = typeback.complete(token)
            position = typed.count + 1
            if index is None:
                self.flagged = position
                self.said = Text(f"word {position} of {typed.length}: {MISSING} not a "
                                 "SLIP-39 word; type it again", style="bold")
                rest = ""  # what follows would land on the wrong positions
                break
            typed.add(index)
            self.flagged = None
            self.said = Text(f"word {position} of {typed.length}: {DONE} a SLIP-39 word")
            if typed.complete:
                rest = ""
                self._check()
                break
        tokens.clear()
        field.value = rest
        field.cursor_position = len(rest)
        del rest
        if self.is_attached:
            self.refresh_view()

    def _check(self) -> None:
        """Every word typed: what the subclass does with the share."""
        raise NotImplementedError

    def _checksum_fails(self, then: str) -> bool:
        """True (the typed words wiped, the sentence set) when the checksum fails."""
        if self.typed.checksum_ok():
            return False
        self.typed.wipe()
        self.flagged = None
        self.said = Text(f"{MISSING} what you typed fails the SLIP-39 checksum: a word is "
                         f"wrong or out of place. Type it again from word 1, or {then}.",
                         style="bold")
        return True


class TypeBackScreen(ShareWordsScreen[str]):
    """The custodian types their share back, word by word, until it matches the one shown.

    After the last word, the RS1024 checksum, then an exact, constant-time match with the
    share shown (ShareWordsScreen has the rest). Nothing advances until the share matches:
    Esc only goes back to see it again.
    """

    MATCHED = "matched"
    BACK = "back"

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "back", "Show my share again"),
    ]

    def __init__(self, slot: ShareSlot) -> None:
        super().__init__(typeback.word_count(slot.secret))
        self.slot = slot

    def header(self) -> Text:
        slot = self.slot
        return Text(f"PRIVATE: type back the share of {slot.name} ({slot.participant}), "
                    f"group {slot.group} member {slot.member}", style="bold reverse")

    def help_text(self) -> str:
        return ("Type your share back from your sheet, one word at a time: four letters are "
                "enough (the word is completed), then Space or Enter. Backspace in the empty "
                "field goes back a word; Esc shows your share again.")

    def _check(self) -> None:
        """Every word typed: the checksum, then the match with the share shown."""
        if self._checksum_fails("press Esc to see your share again"):
            return
        typed = self.typed
        position = typed.first_mismatch(self.slot.secret)
        if position is not None:
            typed.truncate(position - 1)
            self.flagged = position
            self.said = Text(f"{MISSING} word {position} does not match your share. Type it "
                             f"again from word {position}, or press Esc to see your share "
                             "again.", style="bold")
            return
        typed.wipe()
        self.slot.wipe()  # as before the type-back: off the screen and out of memory
        self.dismiss(self.MATCHED)

    def action_back(self) -> None:
        self.typed.wipe()
        self.query_one("#word", ShareWordInput).value = ""
        self.dismiss(self.BACK)


class PresentShareScreen(ShareWordsScreen[CeremonyError | bool]):
    """A recovery: one custodian types their share from their sheet, privately.

    Word completion and per-word marks as for the type-back; after the last word the RS1024
    checksum is checked here, before anything is offered, and only a share that passes it
    goes to the engine (app.offer_share), which checks it against the original's record.
    Dismissed with True (accepted), the engine's refusal (a CeremonyError, shown on the
    recovery screen), or False (Esc: nothing was presented). The words are wiped either way.
    """

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "stop", "Stop (nothing is presented)"),
    ]

    def __init__(self, participant: str, name: str, group: int, member: int,
                 length: int) -> None:
        super().__init__(length)
        self.participant, self.holder = participant, name
        self.group, self.member = group, member
        self.offering = False

    def header(self) -> Text:
        return Text(f"PRIVATE: {self.holder} ({self.participant}) presents their share, group "
                    f"{self.group} member {self.member}", style="bold reverse")

    def help_text(self) -> str:
        return ("Type your share from your sheet, one word at a time: four letters are "
                "enough (the word is completed), then Space or Enter. Backspace in the empty "
                "field goes back a word; Esc stops (nothing is presented).")

    def _check(self) -> None:
        """Every word typed: the checksum here, then the engine's checks (in its worker)."""
        if self._checksum_fails("press Esc to stop"):
            return
        self.offering = True
        self.said = Text(f"{DONE} the checksum is right: checking the share against the "
                         "original's record")
        cast("CeremonyApp", self.app).offer_share(self.participant, self.typed, self._answered)

    def _take(self, field: Input, *, final: bool) -> None:
        if self.offering:  # the share is being checked: nothing more is taken
            field.value = ""
            return
        super()._take(field, final=final)

    def _answered(self, refusal: CeremonyError | None) -> None:
        self.typed.wipe()  # (the worker has wiped it already)
        self.query_one("#word", ShareWordInput).value = ""
        self.dismiss(True if refusal is None else refusal)

    def action_stop(self) -> None:
        if self.offering:
            return
        self.typed.wipe()
        self.query_one("#word", ShareWordInput).value = ""
        self.dismiss(False)


# ------------------------------------------------------------------ recovery


class RecoveryScreen(_Base):
    """A recovery: the custodians present their shares one at a time, then the rebuild.

    What it shows comes from the engine's SharesNeeded: each share group's progress (who
    presented, complete or not). A custodian picks their name, says nobody else is looking
    and types their share on PresentShareScreen; the engine's refusal (another set, altered,
    someone else's) is shown here as its one sentence naming the custodian. More shares than
    the thresholds are accepted. Once enough groups are complete, r rebuilds the root key in
    the engine's worker: its fingerprint is compared with the original's before the token is
    touched, then it is imported and tested.
    """

    BINDINGS = [  # noqa: RUF012
        Binding("r", "rebuild", "Rebuild the root key"),
        Binding("p", "roll_call", "Roll call"),
        Binding("a", "abort", "Abort"),
        Binding("escape", "back", "Back to the step"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.said = Text()  # the last thing that happened: a sentence, never a word
        self.length = 0  # how many words a share of the original has

    def compose(self) -> ComposeResult:
        yield Static(id="title", classes="bar")
        with VerticalScroll(id="recovery-body"):
            yield Static(id="recovery-original")
            yield Static(id="recovery-groups")
            yield Static("Each custodian in turn: pick your name (arrows, Enter), then type "
                         "your share from your sheet, privately. Everyone else looks away.",
                         markup=False, id="recovery-help")
            yield OptionList(id="custodians", compact=True)
            yield Static(id="recovery-status")
        yield Button("Rebuild the root key (r)", id="rebuild", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        from ceremony.tui.app import share_length

        self.query_one("#title", Static).update(_title_bar(self.ceremony, "  - shares",
                                                           full=False))
        engine = self.ceremony.engine
        original = engine.original if engine is not None else None
        self.length = share_length(original) if original is not None else 33
        self.refresh_view()
        self.query_one("#custodians", OptionList).focus()

    def on_screen_resume(self) -> None:
        # Back from an error (a failed rebuild rolls the action back: shares are void).
        from ceremony.engine.prompts import PassphraseNeeded

        engine = self.ceremony.engine
        if engine is not None and isinstance(engine.next_prompt(), PassphraseNeeded) and \
                self.app.screen is self:
            # A wrong passphrase rebuilt another key: it is asked for again first.
            self.dismiss()
            self.ceremony.refresh_screen()
            return
        if self.is_mounted and self.query("#custodians"):
            self.refresh_view()

    def prompt(self) -> SharesNeeded | None:
        from ceremony.engine.prompts import SharesNeeded

        engine = self.ceremony.engine
        prompt = engine.next_prompt() if engine is not None else None
        return prompt if isinstance(prompt, SharesNeeded) else None

    def refresh_view(self) -> None:
        prompt = self.prompt()
        if prompt is None:  # rebuilt or aborted: the screen is on its way out
            return
        script = self.ceremony.setup.script
        original = Text(f"Rebuilding the root key of ceremony {prompt.original}; it must "
                        "have the original's fingerprint:\n")
        original.append_text(digest_text("key", prompt.fingerprint))
        self.query_one("#recovery-original", Static).update(original)
        self.query_one("#recovery-groups", Static).update(group_progress_text(prompt))
        custodians = self.query_one("#custodians", OptionList)
        highlighted = custodians.highlighted_option
        options = []
        for group in prompt.groups:
            for member, holder in enumerate(group.holders, start=1):
                label = Text(f"{participant_label(script, holder)}, group {group.group} "
                             f"member {member}: ")
                if holder in group.presented:
                    label.append(f"{DONE} presented", style="bold")
                elif holder not in self.ceremony.present:
                    label.append(f"{MISSING} ABSENT (roll call: p)")
                else:
                    label.append(f"{WAITING} press Enter to present")
                options.append(Option(label, id=holder, disabled=holder in group.presented))
        custodians.set_options(options)
        eligible = prompt.eligible
        keep = highlighted.id if highlighted is not None else None
        target = keep if keep in eligible else (eligible[0] if eligible else None)
        if target is not None:
            custodians.highlighted = [o.id for o in options].index(target)
        status = Text()
        if self.said:
            status.append_text(self.said)
            status.append("\n")
        if prompt.ready:
            status.append(f"{DONE} enough groups are complete: press r to rebuild the root "
                          "key (more custodians may still present theirs first)")
        else:
            more = _shares_missing(prompt)
            status.append(f"{MISSING} {more} more share{'s' if more > 1 else ''} needed "
                          "before the root key can be rebuilt", style="bold")
        self.query_one("#recovery-status", Static).update(status)
        self.query_one("#rebuild", Button).disabled = not prompt.ready
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "rebuild":
            prompt = self.prompt()
            return True if prompt is not None and prompt.ready else None
        return True

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        pid, prompt = event.option.id, self.prompt()
        if event.option_list.id != "custodians" or pid is None or prompt is None or \
                pid not in prompt.eligible:
            return
        script = self.ceremony.setup.script
        if pid not in self.ceremony.present:
            self.said = Text(f"{MISSING} {participant_label(script, pid)} is not marked "
                             "present: mark them present in the roll call (p), then pick "
                             "their name again", style="bold")
            self.refresh_view()
            return
        group, member = next((g.group, g.holders.index(pid) + 1) for g in prompt.groups
                             if pid in g.holders)
        person = script.participant(pid)
        name = person.name if person else pid

        def presented(result: CeremonyError | bool | None) -> None:
            self._presented(pid, result)

        def answered(nobody_else: bool | None) -> None:
            if nobody_else:
                self.app.push_screen(PresentShareScreen(pid, name, group, member, self.length),
                                     presented)

        self.app.push_screen(PrivacyModal(name, "type my share"), answered)

    def _presented(self, pid: str, result: CeremonyError | bool | None) -> None:
        """What became of the share ``pid`` typed: accepted, refused (the engine's sentence,
        which names the custodian), or nothing presented."""
        label = participant_label(self.ceremony.setup.script, pid)
        if result is True:
            self.said = Text(f"{DONE} {label} presented their share: it is the share the "
                             "original recorded for them")
        elif isinstance(result, CeremonyError):
            self.said = Text(f"{MISSING} {result.message}", style="bold")
            if result.hint:
                self.said.append(f"\n  hint: {result.hint}")
        else:
            self.said = Text(f"{WAITING} {label} stopped: nothing was presented")
        self.refresh_view()
        self.query_one("#custodians", OptionList).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_rebuild()

    def action_rebuild(self) -> None:
        from ceremony.engine.prompts import Proceed, SharesNeeded

        prompt = self.prompt()
        if prompt is None or not prompt.ready:
            return

        def rebuilt(after: Prompt) -> None:
            if isinstance(after, SharesNeeded):
                return
            self.dismiss()
            self.app.notify("The root key was rebuilt with the original's fingerprint, "
                            "installed in the token and tested.", title=f"{DONE} recovered")
            self.ceremony.refresh_screen()

        self.said = Text()
        self.ceremony.submit(Proceed(), "Rebuilding the root key: its fingerprint is compared "
                             "with the original's before the token is touched", rebuilt)

    def action_roll_call(self) -> None:
        self.app.push_screen(RollCallScreen(), lambda _: self.refresh_view())

    def action_abort(self) -> None:
        self.app.push_screen(AbortModal())

    def action_back(self) -> None:
        self.dismiss()
        self.ceremony.refresh_screen()


def _shares_missing(prompt: SharesNeeded) -> int:
    """The fewest more shares that would complete enough groups."""
    complete = sum(g.complete for g in prompt.groups)
    short = sorted(g.threshold - len(g.presented) for g in prompt.groups if not g.complete)
    return sum(short[:max(0, prompt.group_threshold - complete)])



# ------------------------------------------------------------------ modals


class BusyScreen(ModalScreen[None]):
    """A spinner while the engine's worker runs; the screen stays live."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="busy"):
            yield Static(f"{WAITING} {self.label} …", markup=False)
            yield LoadingIndicator()


class ErrorModal(ModalScreen[None]):
    """A refused answer or a device error, in the same words the CLI prints."""

    BINDINGS = [  # noqa: RUF012
        Binding("enter", "close", "Back"),
        Binding("escape", "close", "Back", show=False),
    ]

    def __init__(self, error: CeremonyError) -> None:
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="error"):
            yield Static(Text(f"{MISSING} ERROR", style="bold reverse"))
            yield Static(Text(self.error.describe()))
            yield Static("Nothing was recorded for this answer. Go back, then retry or "
                         "abort (a).", markup=False)
            yield Button("Back (Enter)", id="close", compact=True)
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss()

    def action_close(self) -> None:
        self.dismiss()


class HelpModal(ModalScreen[None]):
    """What the current step asks, and the keys."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close")]  # noqa: RUF012

    def compose(self) -> ComposeResult:
        app = cast("CeremonyApp", self.app)
        text = Text()
        engine = app.engine
        script = app.setup.script
        index = engine.status().step_index if engine else app.first_step_index()
        if index < len(script.steps):
            step = script.steps[index]
            text.append(f"Step {index + 1} of {len(script.steps)}: {step.title}\n",
                        style="bold")
            text.append(step.instructions.replace("\n", " ") + "\n\n")
            text.append("What it needs:\n", style="bold")
            needs = [f"{step.approvals} custodian approvals of: {', '.join(step.approvers)}"
                     if step.approvals else "", f"{step.witnesses} witness acknowledgement(s)"
                     if step.witnesses else "", f"the typed phrase: {step.confirm}"
                     if step.confirm else "", f"the action: {step.action}"
                     if step.action != "none" else ""]
            for line in filter(None, needs):
                text.append(f" - {line}\n")
            if engine is not None:
                status = engine.status()
                text.append(f"Now: {status.phase}")
                if status.needed:
                    text.append(f" ({len(status.collected)} of {status.needed})")
                text.append("\n")
        text.append("\nKeys: n next action, a abort (type ABORT), d declare a deviation, "
                    "t transcript (Enter on an "
                    "entry shows it), p roll call, r QR codes (once sealed), ? or F1 help, q quit "
                    "(resume later).")
        with VerticalScroll(classes="dialog", id="help"):
            yield Static(text)
        yield Footer()

    def action_close(self) -> None:
        self.dismiss()


class EntryModal(ModalScreen[None]):
    """One transcript entry's full content."""

    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close")]  # noqa: RUF012

    def __init__(self, entry: Any) -> None:
        super().__init__()
        self.entry = entry

    def compose(self) -> ComposeResult:
        from ceremony.transcript import dumps_pretty

        with VerticalScroll(classes="dialog", id="entry"):
            yield Static(dumps_pretty(self.entry), markup=False)
        yield Footer()

    def action_close(self) -> None:
        self.dismiss()


class AbortModal(ModalScreen[None]):
    """Abort needs ABORT typed: then the engine rolls back what the ceremony created."""

    BINDINGS = [Binding("escape", "close", "Cancel")]  # noqa: RUF012

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="abort"):
            yield Static(Text("Abort the ceremony?", style="bold"))
            yield Static("Everything it created on the token and every share is destroyed, "
                         "and the transcript is sealed as aborted. Type ABORT and Enter.",
                         markup=False)
            yield Input(placeholder="reason (optional)", id="reason")
            yield Input(placeholder="type ABORT", id="typed")
            yield Static(id="abort-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#typed", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "reason":
            self.query_one("#typed", Input).focus()
            return
        if event.value != "ABORT":
            self.query_one("#abort-status", Static).update(
                Text(f"{MISSING} type ABORT exactly, in capitals (or Esc to cancel)"))
            event.input.value = ""
            return
        reason = self.query_one("#reason", Input).value.strip() or "aborted from the UI"
        self.dismiss()
        cast("CeremonyApp", self.app).abort(reason)

    def action_close(self) -> None:
        self.dismiss()


class AbortedModal(ModalScreen[None]):
    """What the rollback destroyed (from the ceremony.aborted entry)."""

    BINDINGS = [Binding("enter", "close", "OK"), Binding("escape", "close", "OK")]  # noqa: RUF012

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__()
        self.payload = payload

    def compose(self) -> ComposeResult:
        p = self.payload
        text = Text("The ceremony was ABORTED and sealed.\n", style="bold")
        text.append(f"reason: {p.get('reason', '')}\n")
        objects = p.get("destroyed_objects", [])
        text.append(f"destroyed on the token: {len(objects)} object(s)\n")
        for obj in objects:
            text.append(f"  {MISSING} {obj.get('class')} {obj.get('label')!r} id "
                        f"{obj.get('id')}\n")
        text.append(f"share sheets removed: {p.get('removed_share_sheets', 0)}\n")
        files = p.get("removed_files", [])
        text.append(f"files removed: {', '.join(files) if files else 'none'}\n")
        with Vertical(classes="dialog", id="aborted"):
            yield Static(text)
            yield Button("OK (Enter)", id="ok", compact=True)
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss()

    def action_close(self) -> None:
        self.dismiss()
