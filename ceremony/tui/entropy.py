"""The dice and passphrase screens: secrets typed in the room, passed straight to the engine.

Dice: the roller types the rolls (digits 1 to 6, with or without spaces); the screen counts
them ("37 of 100 rolls") and names the first bad roll by its position, never its value. On
Enter the field is emptied and the screen closed before the engine sees the rolls, so they
do not stay on screen. Passphrase: masked fields (typed twice at the split, once at a
recovery) under the warning that a wrong passphrase silently rebuilds another secret.

Limits, stated honestly: Textual's Input holds what is typed as a ``str``, which Python
cannot wipe; the engine gets a bytearray and wipes it (docs/kdf.md, "Secret hygiene").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Static

from ceremony.engine.typed_secrets import parse_rolls, wipe_buffer
from ceremony.errors import InputError
from ceremony.tui.widgets import DONE, MISSING, participant_label

if TYPE_CHECKING:
    from ceremony.engine.prompts import DiceNeeded, PassphraseNeeded
    from ceremony.tui.app import CeremonyApp


def rolls_status(text: str, count: int) -> tuple[int, str | None]:
    """How many rolls ``text`` holds so far, and the refusal of its first bad roll."""
    buffer = bytearray(text.encode("utf-8", errors="replace"))
    try:
        rolls = parse_rolls(buffer)
    except InputError as exc:
        return 0, exc.message
    finally:
        wipe_buffer(buffer)
    typed = len(rolls)
    wipe_buffer(rolls)
    if typed > count:
        return typed, f"{typed} rolls typed: the script asks for exactly {count}"
    return typed, None


class _TypedSecretScreen(ModalScreen[None]):
    """A modal where a secret the engine asked for (``prompt``) is typed; Esc cancels."""

    BINDINGS = [Binding("escape", "close", "Cancel")]  # noqa: RUF012

    @property
    def ceremony(self) -> CeremonyApp:
        return cast("CeremonyApp", self.app)


class DiceScreen(_TypedSecretScreen):
    """The roller types ``prompt.count`` dice rolls; Enter hands them to the engine."""

    def __init__(self, prompt: DiceNeeded) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        engine = self.ceremony.engine
        who = participant_label(engine.script, self.prompt.roller) if engine else \
            self.prompt.roller
        with Vertical(classes="dialog", id="dice"):
            yield Static(Text("Custodian dice for the seed", style="bold"))
            yield Static(Text(
                f"{who} rolls a six-sided die {self.prompt.count} times and types each roll "
                "(1 to 6), with or without spaces. Real rolls, one at a time: no patterns, "
                "no repeats from memory. The rolls are mixed into the seed with the OS and "
                "token randomness, health-tested first, and never written anywhere."))
            yield Input(placeholder="rolls, e.g. 3 1 4 1 5 ...", id="rolls")
            yield Static(id="dice-status")
        yield Footer()

    def on_mount(self) -> None:
        self._show("")
        self.query_one("#rolls", Input).focus()

    def _show(self, text: str) -> tuple[int, str | None]:
        typed, problem = rolls_status(text, self.prompt.count)
        line = Text()
        if problem:
            line.append(f"{MISSING} {problem}", style="bold")
        else:
            mark = DONE if typed == self.prompt.count else MISSING
            line.append(f"{mark} {typed} of {self.prompt.count} rolls")
            if typed == self.prompt.count:
                line.append(": Enter to mix them into the seed")
        self.query_one("#dice-status", Static).update(line)
        return typed, problem

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from ceremony.engine.prompts import DiceRolls

        typed, problem = self._show(event.value)
        if problem or typed != self.prompt.count:
            return
        buffer = bytearray(event.value.encode("ascii"))
        event.input.value = ""  # off the screen before anything else happens
        try:
            rolls = parse_rolls(buffer)
        finally:
            wipe_buffer(buffer)
        app = self.ceremony
        self.dismiss()
        app.submit(DiceRolls(rolls), "Recording the dice rolls (the engine keeps them in "
                   "memory only)")

    def action_close(self) -> None:
        self.query_one("#rolls", Input).value = ""
        self.dismiss()


class PassphraseScreen(_TypedSecretScreen):
    """The SLIP-39 passphrase, masked: twice before the split, once before a rebuild."""

    def __init__(self, prompt: PassphraseNeeded) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        split = self.prompt.twice
        with Vertical(classes="dialog", id="passphrase-dialog"):
            yield Static(Text("SLIP-39 passphrase", style="bold"))
            yield Static(Text("The shares will be encrypted under this passphrase: type it "
                              "twice." if split else "The shares were made with a "
                              "passphrase: type it to rebuild the key."))
            yield Static(Text(f"{MISSING} {self.prompt.warning}", style="bold"))
            yield Input(password=True, placeholder="passphrase", id="passphrase")
            if split:
                yield Input(password=True, placeholder="the same passphrase again",
                            id="repeat")
            yield Static(id="passphrase-status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#passphrase", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        from ceremony.engine.prompts import Passphrase

        first = self.query_one("#passphrase", Input)
        status = self.query_one("#passphrase-status", Static)
        if not first.value:
            status.update(Text(f"{MISSING} type the passphrase", style="bold"))
            first.focus()
            return
        repeat = self.query("#repeat").first(Input) if self.prompt.twice else None
        if repeat is not None and event.input is first:
            repeat.focus()
            return
        if repeat is not None and repeat.value != first.value:
            first.value = repeat.value = ""
            status.update(Text(f"{MISSING} the two typings differ: type the passphrase "
                               "twice again", style="bold"))
            first.focus()
            return
        value = bytearray(first.value.encode("utf-8"))
        again = bytearray(repeat.value.encode("utf-8")) if repeat is not None else None
        first.value = ""
        if repeat is not None:
            repeat.value = ""
        app = self.ceremony
        self.dismiss()
        app.submit(Passphrase(value, again), "Recording the passphrase (memory only)")

    def action_close(self) -> None:
        for field in self.query(Input):
            field.value = ""
        self.dismiss()
