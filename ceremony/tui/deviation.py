"""Deviations and the seal's co-signatures in the ceremony UI (ADR 15).

The operator declares a deviation (key d on the step screen) with its kind and a reason;
the custodians then approve it on the usual approval list, and the witnesses co-sign the
seal there after the last step. What the screen says for those two prompts is here; the
engine decides everything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from ceremony.display import words
from ceremony.model.statements import DECLARED_KINDS
from ceremony.tui.widgets import MISSING, participant_label

if TYPE_CHECKING:
    from ceremony.engine.core import Engine
    from ceremony.engine.prompts import ApprovalNeeded
    from ceremony.tui.app import CeremonyApp

KIND_TEXT = {"card-replaced": "a card replaced (a participant signs with another card)",
             "person-substituted": "a person substituted (someone stands in for another)",
             "other": "another departure from the script"}


def signing_title(engine: Engine, prompt: ApprovalNeeded) -> tuple[Text, Text]:
    """The step pane's title and text for a deviation's approvals or the seal's
    co-signatures."""
    if prompt.kind == "seal":
        head = engine.writer.head
        text = Text("Every step is done. The administrator reads the transcript head aloud; "
                    "each witness checks it and co-signs the seal with their own key. "
                    "If a witness will not co-sign, the administrator aborts.\n")
        text.append(f"head: {words(head)}")
        return Text("Seal: the witnesses co-sign", style="bold"), text
    t = prompt.template
    dev = engine.state.deviation
    by = f" declared by {participant_label(engine.script, dev.by)}" if dev else ""
    text = Text(f"A deviation from the script ({t['kind']}){by}: ", style="bold")
    text.append(f"{t['reason']}\n")
    text.append("The ceremony goes on only when the custodians approve it; otherwise the "
                "administrator aborts.")
    return Text(f"Deviation at entry {t['seq']}", style="bold"), text


def approval_words(prompt: ApprovalNeeded) -> tuple[str, str]:
    """(what is collected, who signs) for the needs line."""
    if prompt.kind == "seal":
        return "seal co-signatures", "witnesses"
    if prompt.kind == "deviation":
        return "approvals of the deviation", "custodians"
    if prompt.role == "custodian":
        return "approvals", "custodians"
    return "witness acknowledgements", "witnesses"


class DeviationModal(ModalScreen[None]):
    """The operator declares a deviation: its kind, then one sentence of reason."""

    BINDINGS = [Binding("escape", "close", "Cancel")]  # noqa: RUF012

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="deviation"):
            yield Static(Text("Declare a deviation from the script", style="bold"))
            yield Static("It is recorded in the transcript with your reason, and the ceremony "
                         "goes on only when the custodians the policy names approve it. "
                         "Pick the kind, then type the reason and Enter. (A retried action "
                         "is recorded by itself.)", markup=False)
            yield OptionList(*[Option(KIND_TEXT[k], id=k) for k in DECLARED_KINDS],
                             id="kinds")
            yield Input(placeholder="reason: one sentence, no secrets", id="reason")
            yield Static(id="deviation-status")
        yield Footer()

    def on_mount(self) -> None:
        kinds = self.query_one("#kinds", OptionList)
        kinds.highlighted = 0
        kinds.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        kinds = self.query_one("#kinds", OptionList)
        index = kinds.highlighted
        reason = event.value.strip()
        if index is None or not reason:
            self.query_one("#deviation-status", Static).update(
                Text(f"{MISSING} pick a kind and type the reason (or Esc to cancel)"))
            return
        kind = DECLARED_KINDS[index]
        self.dismiss()
        declare(cast("CeremonyApp", self.app), kind, reason)

    def action_close(self) -> None:
        self.dismiss()


def declare(app: CeremonyApp, kind: str, reason: str) -> None:
    """The administrator declares the deviation, in the engine's worker."""
    engine = app.engine
    if engine is None:
        return
    app.call_engine("Recording the deviation",
                    lambda: engine.declare_deviation(engine.admin, kind, reason),
                    lambda _: app.refresh_screen())
