"""Approving with a card in the UI: insert your card, type its PIN, the card signs.

When a participant with no rehearsal key file approves (every participant of a real
ceremony), :class:`CardScreen` asks for their card. A watcher in a thread worker reports
what is in the reader without any PIN: no card, the right card, someone else's card ("this
is bob's card; alice's is needed"), a card of no participant, or an unusable one. Once it
is the right card, the PIN is typed in a masked field and the signature and the engine's
``submit`` run in the app's one engine worker. A wrong PIN (with the tries left), a blocked
card or a card pulled out mid-signature is shown on the same screen and records nothing;
the watcher then looks at the reader again. The live quorum (who approved, how many more)
stays on top. Card I/O never runs on the event loop; no device library is imported until
the screen looks at the reader.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from ceremony.errors import CardError, CeremonyError
from ceremony.tui.widgets import DONE, MISSING, WAITING, participant_label

if TYPE_CHECKING:
    from ceremony.adapters.card_turns import Look
    from ceremony.engine.core import Engine
    from ceremony.engine.ports import SecretOutput
    from ceremony.engine.prompts import ApprovalNeeded, Prompt
    from ceremony.tui.app import CeremonyApp

WATCH_POLL = 0.5  # seconds the watcher blocks on the reader before it checks for a stop


@dataclass(frozen=True)
class CardApprovals:
    """Participants without a key file approve with their OpenPGP card, in ``reader``
    (None: whichever reader holds a card)."""

    reader: str | None = None


def quorum_text(engine: Engine, prompt: ApprovalNeeded) -> Text:
    """The live count: who has approved (by name), how many more are needed, from whom."""
    script = engine.script
    kind = f"{prompt.what}s"  # approvals, witness acknowledgements, seal co-signatures ...
    got = ", ".join(participant_label(script, p) for p in prompt.collected)
    more = prompt.needed - len(prompt.collected)
    text = Text(f"{DONE if more <= 0 else MISSING} {kind} {len(prompt.collected)} of "
                f"{prompt.needed}", style="bold")
    text.append(f": {got or 'none yet'}")
    if more > 0:
        waiting = [p for p in prompt.eligible if p not in prompt.collected]
        text.append(f"; {more} more needed (from {', '.join(waiting)})")
    return text


class CardScreen(Screen[bool]):
    """One participant approves with their card; dismissed with True once it is recorded."""

    DEFAULT_CSS = """
    CardScreen #card-quorum, CardScreen #card-status, CardScreen #card-error,
    CardScreen #card-help { padding: 0 1; margin-bottom: 1; }
    CardScreen #card-pin { width: 40; margin: 0 1; }
    """
    BINDINGS = [  # noqa: RUF012
        Binding("escape", "back", "Back (no approval)"),
    ]

    # What a blocked card means here (after "... blocked after too many wrong PIN tries: ").
    blocked_means = ("it cannot sign. The card's administrator can unblock it with the admin "
                     "PIN; go back (Esc) and let another custodian approve.")

    def __init__(self, participant: str, reader: str | None) -> None:
        super().__init__()
        self.participant = participant
        self.reader = reader
        self.look: Look | None = None
        self._stop = threading.Event()
        self._signing = False

    @property
    def ceremony(self) -> CeremonyApp:
        return cast("CeremonyApp", self.app)

    @property
    def engine(self) -> Engine:
        engine = self.ceremony.engine
        assert engine is not None
        return engine

    def _prompt(self) -> ApprovalNeeded | None:
        from ceremony.engine.prompts import ApprovalNeeded

        prompt = self.engine.next_prompt()
        return prompt if isinstance(prompt, ApprovalNeeded) else None

    def compose(self) -> ComposeResult:
        label = participant_label(self.engine.script, self.participant)
        prompt = self._prompt()
        what = prompt.what if prompt else "approval"
        step = f" of step {prompt.step}" if prompt and prompt.step else ""
        yield Static(Text(f"{label}: insert your card for the {what}{step}",
                          style="bold reverse"), classes="bar")
        yield Static(id="card-quorum")
        yield Static(id="card-status")
        yield Static(id="card-error")
        yield Input(password=True, id="card-pin", placeholder="card PIN, then Enter")
        yield Static("Your card is checked before the PIN is asked: a wrong card costs no "
                     "PIN try. The PIN is not shown and not kept. Esc goes back without "
                     "approving.", markup=False, id="card-help")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#card-pin", Input).display = False
        self._refresh_quorum()
        self._status(Text(f"{WAITING} looking at the reader …"))
        self._watch()

    def on_unmount(self) -> None:
        self._stop.set()

    def _refresh_quorum(self) -> None:
        prompt = self._prompt()
        if prompt is not None:
            self.query_one("#card-quorum", Static).update(quorum_text(self.engine, prompt))

    def _status(self, text: Text) -> None:
        self.query_one("#card-status", Static).update(text)

    def _error(self, message: str) -> None:
        self.query_one("#card-error", Static).update(
            Text(f"{MISSING} {message}", style="bold") if message else Text())

    # ------------------------------------------------------------- the watcher

    def _watch(self) -> None:
        """Look at the reader in a thread whenever a card goes in or out, until stopped
        (the signature, or leaving the screen)."""
        self._stop.set()  # a watcher of before stops; this one has its own flag
        self._stop = stop = threading.Event()
        owners = {p.public_key_bytes: p.id for p in self.engine.script.participants}
        reader, app = self.reader, self.app

        def post(callback: Callable[..., None], *args: object) -> None:
            if not stop.is_set():
                with contextlib.suppress(RuntimeError):  # the app is closing
                    app.call_from_thread(callback, *args)

        def watch() -> None:
            from ceremony.adapters.card_turns import EMPTY, look, wait_for_change

            while not stop.is_set():
                try:
                    seen = look(reader, owners)
                except CardError as exc:
                    post(self._trouble, exc)
                    stop.wait(WATCH_POLL * 2)
                    continue
                if stop.is_set():
                    return
                post(self._seen, seen)
                try:  # block until a card goes in or out (checking for a stop meanwhile)
                    while not stop.is_set() and not wait_for_change(
                            seen.reader or reader, WATCH_POLL, seen.state != EMPTY):
                        pass
                except CardError as exc:
                    post(self._trouble, exc)
                    stop.wait(WATCH_POLL * 2)

        # A plain daemon thread, not a Textual worker: it may wait for a card for as long
        # as the custodian needs, and the app's workers are the engine's (one at a time).
        threading.Thread(target=watch, name="card watcher", daemon=True).start()

    def _trouble(self, error: CardError) -> None:
        self._status(Text(f"{MISSING} {error.describe()}"))

    def _seen(self, seen: Look) -> None:
        from ceremony.adapters.card_turns import HOLDER

        if not self.is_mounted:
            return
        self.look = seen
        pin = self.query_one("#card-pin", Input)
        mine = seen.state == HOLDER and seen.holder == self.participant
        if mine and seen.pin_tries == 0:
            self._status(Text(f"{MISSING} {self.participant}'s card is blocked after too "
                              f"many wrong PIN tries: {self.blocked_means}", style="bold"))
            pin.display = False
            return
        if mine:
            tries = "" if seen.pin_tries < 0 else \
                f" ({seen.pin_tries} PIN {'try' if seen.pin_tries == 1 else 'tries'} left)"
            self._status(Text(f"{DONE} {self.participant}'s card is in the reader{tries}. "
                              "Type the card's PIN, then Enter."))
            pin.display = True
            pin.focus()
            return
        pin.display = False
        pin.value = ""
        self._status(Text(f"{WAITING} {seen.sentence(self.participant)}. Insert "
                          f"{self.participant}'s card (take any other card out)."))

    # ------------------------------------------------------------- the signature

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "card-pin" or self._signing:
            return
        pin = bytearray(event.value.encode())
        event.input.value = ""
        if not pin:
            return
        self._sign(pin)

    def _sign(self, pin: bytearray) -> None:
        from ceremony.engine.prompts import Approval

        seen, prompt = self.look, self._prompt()
        participant = self.participant
        expected = self.engine.script.participant(participant)
        if seen is None or prompt is None or expected is None:
            _wipe(pin)
            return
        engine = self.engine
        self._stop.set()  # the watcher holds no session while it waits; it stops now
        self._signing = True
        self._error("")
        self.query_one("#card-pin", Input).display = False

        def sign_and_submit() -> Prompt:
            from ceremony.adapters.openpgp_card import CardSigner
            from ceremony.model import statements as st

            try:
                statement = prompt.for_participant(participant)
                signer = CardSigner(participant, lambda: pin, reader=seen.reader,
                                    public_key=expected.public_key_bytes)
                signature = signer.sign(st.message(statement))
            finally:
                _wipe(pin)
            return engine.submit(Approval(participant, statement, signature))

        if not self.ceremony.call_engine(f"Signing the {prompt.what} with {participant}'s card",
                                         sign_and_submit, self._signed, failed=self._failed):
            _wipe(pin)
            self._signing = False
            self.query_one("#card-pin", Input).display = True

    def _signed(self, _: Prompt) -> None:
        self._signing = False
        self.ceremony.refresh_screen()
        self.dismiss(True)

    def _failed(self, error: CeremonyError) -> None:
        """Nothing was recorded: say why, then look at the reader again."""
        self._signing = False
        if not isinstance(error, CardError):
            self.dismiss(False)
            self.ceremony.show_error(error)
            return
        self._error(error.describe().replace("\n  hint:", ". Hint:") +
                    ". Nothing was recorded.")
        self._refresh_quorum()
        self._watch()

    def action_back(self) -> None:
        if self._signing:
            return
        self._stop.set()
        self.dismiss(False)


# ----------------------------------------------------------------- shares to cards


class CardShareScreen(CardScreen):
    """A custodian whose share goes to their card (``[shares.delivery]``, ADR 17) inserts it
    while the provisioning action waits in the engine's worker (:class:`CardShareDesk`).

    The same turn as an approval: the card is named before any PIN, the PIN is typed
    masked; the worker then writes the share, reads it back and compares. A wrong PIN
    (with the tries left), a blocked card or a card pulled out stays on this screen and
    nothing is recorded; Esc gives up, and the engine rolls the step back. The share's
    words are never shown here.
    """

    blocked_means = ("it cannot take the share. The card's administrator can unblock it "
                     "with the admin PIN; Esc stops, and the step is rolled back.")

    def __init__(self, participant: str, reader: str | None, member: str,
                 answers: queue.SimpleQueue[tuple[bytearray, str | None] | None]) -> None:
        super().__init__(participant, reader)
        self.member = member
        self._answers = answers

    def compose(self) -> ComposeResult:
        label = participant_label(self.engine.script, self.participant)
        yield Static(Text(f"{label}: insert your card to receive your share ({self.member})",
                          style="bold reverse"), classes="bar")
        yield Static(id="card-quorum")
        yield Static(id="card-status")
        yield Static(id="card-error")
        yield Input(password=True, id="card-pin", placeholder="card PIN, then Enter")
        yield Static("Your share goes to your card, not to this screen: it is written to "
                     "the card's PIN-protected data object, read back and compared. Your "
                     "card is checked before the PIN is asked: a wrong card costs no PIN "
                     "try. The PIN is not shown and not kept. Esc stops without a share "
                     "(the step is rolled back).", markup=False, id="card-help")
        yield Footer()

    def _refresh_quorum(self) -> None:
        """(No approval here; the engine is busy in its worker and is not asked.)"""

    def _sign(self, pin: bytearray) -> None:
        seen = self.look
        if seen is None:
            _wipe(pin)
            return
        self._stop.set()  # the watcher holds no session while it waits; it stops now
        self._signing = True
        self._error("")
        self.query_one("#card-pin", Input).display = False
        self._status(Text(f"{WAITING} writing the share to {self.participant}'s card and "
                          "reading it back …"))
        self._answers.put((pin, seen.reader))  # the worker wipes it once the card has it

    def failed(self, error: CardError) -> None:
        """The card write failed: say why (nothing was recorded), then look again."""
        self._signing = False
        if not self.is_mounted:
            return
        self._error(error.describe().replace("\n  hint:", ". Hint:") +
                    ". The share was not delivered; nothing was recorded.")
        self._watch()

    def written(self) -> None:
        self._signing = False
        self._stop.set()
        if self.is_mounted:
            self.dismiss(True)

    def action_back(self) -> None:
        if self._signing:
            return
        self._stop.set()
        self._answers.put(None)
        self.dismiss(False)

    def on_unmount(self) -> None:
        super().on_unmount()
        self._answers.put(None)  # (a worker still waiting gives up; else nobody reads it)


class CardShareDesk:
    """The UI's SecretOutput when the script sends a share to a card (CER-SHARE-CARD).

    It wraps the UI's own output (the private screen and any sheets): a share whose
    ``context["delivery"]`` lists "sheet" goes there as before; one that lists "card" is
    written to the custodian's card by :class:`CardShareScreen`'s turn, from the engine's
    worker (this runs inside the provisioning action): the screen says what is in the
    reader and takes the PIN, the worker writes, reads back and compares
    (card_shares.write_to_card) and returns where the share went for ``shares.created``.
    A failure the custodian can fix (wrong card, wrong PIN, card pulled out) is retried on
    the screen; giving up raises, and the engine rolls the step back. No device library is
    imported before a share goes to a card.

    A rollback removes the sheets; unlike the headless run it does not empty the cards
    already written (the PIN is not kept to do it): they hold a share of a withdrawn set,
    which the next write overwrites.
    """

    places = ("sheet", "card")

    def __init__(self, app: CeremonyApp, inner: SecretOutput, reader: str | None) -> None:
        self.app = app
        self.inner = inner
        self.reader = reader

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        delivery = tuple(context.get("delivery") or ("sheet",))
        places = []
        if "card" in delivery:
            places.append(self._to_card(participant, f"group {group} member {member}",
                                        mnemonic, str(context.get("ceremony", ""))))
        if "sheet" in delivery:
            places.append(self.inner.write_share(participant, name, group, member, mnemonic,
                                                 context))
        return " and ".join(places)

    def remove_all(self) -> list[str]:
        return self.inner.remove_all()

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the app is closing
            self.app.call_from_thread(callback, *args)

    def _to_card(self, participant: str, member: str, mnemonic: str, ceremony_id: str) -> str:
        """(In the engine's worker.) The share on the participant's card, read back."""
        from ceremony.adapters.card_shares import CardHolder, write_to_card

        engine = self.app.engine
        who = engine.script.participant(participant) if engine else None
        if who is None or not ceremony_id:
            raise CardError(f"{participant}'s share cannot go to a card in this run",
                            hint="a bug: tell the ceremony's developers",
                            requirement="CER-SHARE-CARD")
        answers: queue.SimpleQueue[tuple[bytearray, str | None] | None] = queue.SimpleQueue()
        screen = CardShareScreen(participant, self.reader, member, answers)
        self._post(self.app.push_screen, screen)
        try:
            while True:
                answer = answers.get()
                if answer is None:
                    raise CardError(f"{participant}'s share was not written to their card: "
                                    "the card screen was left", hint=f"the step is rolled "
                                    f"back; do it again with {participant} and their card",
                                    requirement="CER-SHARE-CARD")
                pin, reader = answer
                holder = CardHolder(participant, who.public_key_bytes,
                                    functools.partial(_same, pin), reader)
                try:
                    where = write_to_card(holder, mnemonic, ceremony_id)
                except CardError as exc:
                    self._post(screen.failed, exc)
                    continue
                finally:
                    _wipe(pin)
                self._post(screen.written)
                return where
        except BaseException:
            self._post(_leave, screen)  # (a failure it could not show: the error modal does)
            raise


def _same(pin: bytearray) -> bytearray:
    return pin


def _leave(screen: CardShareScreen) -> None:
    """Take the card screen away (the worker has stopped waiting for it)."""
    screen._stop.set()
    if screen.is_mounted and screen.app.screen is screen:
        screen.dismiss(False)


def _wipe(pin: bytearray) -> None:
    for i in range(len(pin)):
        pin[i] = 0
