"""The ceremony's Textual app: a loop around the engine, with people answering the prompts.

Every engine call (opening the token, Engine.start/resume, submit) runs in one thread
worker at a time (python-pkcs11 blocks), behind a busy screen with a spinner; the result
or the refused answer comes back to the event loop, which redraws from ``next_prompt()``
and ``status()``. Devices are built lazily by ``RunSetup.open_devices`` inside that worker,
so importing this module loads no device library.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from textual.app import App
from textual.binding import Binding

from ceremony.errors import CeremonyError, DeviceError
from ceremony.tui.shares import PrivateShares

if TYPE_CHECKING:
    from ceremony.engine.core import Devices, Engine
    from ceremony.engine.prompts import Answer, Prompt
    from ceremony.engine.recovery import OriginalBundle
    from ceremony.headless import Signer
    from ceremony.model.authorization import Presented
    from ceremony.model.policy import Policy
    from ceremony.model.script import Activation, Script
    from ceremony.transcript import Entry
    from ceremony.tui.cards import CardApprovals
    from ceremony.tui.typeback import TypedShare

T = TypeVar("T")

TRANSCRIPT_FILE = "transcript.jsonl"
EXIT_AFTER_FIRST_SCREEN = "CEREMONY_TUI_EXIT_AFTER_FIRST_SCREEN"


@dataclass
class OpenedDevices:
    """What ``open_devices`` returns: the engine's devices, the UI's share holder, a closer."""

    devices: Devices
    shares: PrivateShares
    close: Callable[[], None] = lambda: None


class TypedPinShares:
    """The user-PIN shares the crypto officers type on the start screen (split activation).

    Each share is checked the moment it is typed, with the checks ``combine_pin`` makes
    (SLIP-39 words, checksum, the share of the officer presenting it), so a mistyped share
    never reaches the token. A share is kept only as a bytearray, only until the token is
    opened: ``combine`` (run by the opener in the worker) rebuilds the PIN and wipes every
    share, and ``wipe`` drops them on any failure. No message names a word.
    """

    WHERE = "PIN share"  # the prefix combine_pin's messages carry, dropped on screen

    def __init__(self, activation: Activation) -> None:
        self.activation = activation
        self._shares: dict[str, bytearray] = {}

    @property
    def presented(self) -> tuple[str, ...]:
        """The officers whose share was accepted, in the order they presented."""
        return tuple(self._shares)

    def waiting(self) -> tuple[str, ...]:
        return tuple(o for o in self.activation.officers if o not in self._shares)

    def missing(self) -> int:
        """How many more officers must present their share before the token can open."""
        return max(0, self.activation.threshold - len(self._shares))

    def complete(self) -> bool:
        return self.missing() == 0

    def present(self, officer: str, typed: str) -> None:
        """Check ``typed`` as ``officer``'s user-PIN share and keep it; CeremonyError if not.

        Loads the share library now (the moment of checking), never at UI start.
        """
        from ceremony.adapters.activation import check_share
        from ceremony.errors import QuorumError

        if officer in self._shares:
            raise QuorumError(f"{officer} already presented a PIN share",
                              hint="each officer counts once", requirement="CER-ACTIVATION")
        if self.complete():
            raise QuorumError("enough officers have presented their PIN shares",
                              hint="open the token")
        mnemonic = " ".join(typed.lower().split())
        check_share(self.activation, officer, mnemonic, where=self.WHERE)
        self._shares[officer] = bytearray(mnemonic.encode())

    def combine(self) -> tuple[bytearray, dict[str, Any]]:
        """The PIN rebuilt from the typed shares and the login record; the shares are wiped."""
        from ceremony.adapters.activation import combine_pin

        try:
            return combine_pin(self.activation,
                               {o: bytes(s).decode() for o, s in self._shares.items()},
                               where=self.WHERE)
        finally:
            self.wipe()

    def wipe(self) -> None:
        for share in self._shares.values():
            share[:] = bytes(len(share))
        self._shares.clear()


@dataclass
class RunSetup:
    """Everything the UI needs to run one ceremony; built by the CLI (or a test)."""

    script: Script
    policy: Policy
    script_bytes: bytes
    policy_bytes: bytes
    out: Path
    rehearsal: bool
    # Runs in a worker thread: opens the token (with the PIN, if one is asked in the UI).
    open_devices: Callable[[bytearray | None], OpenedDevices]
    signers: Mapping[str, Signer] = field(default_factory=dict)
    needs_pin: bool = False
    # Split activation with no PIN share sheets: the officers type their user-PIN shares on
    # the start screen, and open_devices (token_opener's typed_shares) combines them.
    typed_shares: TypedPinShares | None = None
    device_name: str = ""  # how the token is named before it is opened (URI)
    clock_text: Callable[[], str] | None = None
    # A recovery (`ceremony recover`): the verified original bundle the root key is rebuilt
    # from (on a resume, the recovery's own copy of it). None for any other ceremony.
    original: OriginalBundle | None = None
    # The script's authorizers' signatures and the version state (`ceremony run` reads them;
    # None: none presented, which only a rehearsal may run with).
    authorization: Presented | None = None
    # The environment's attestation record (cli/attest.py attest_ceremony), for the engine's
    # start or resume; None: not attested, so the engine makes no secret (CER-ATTEST).
    attestation: dict[str, Any] | None = None
    # Participants without a signer above approve with their OpenPGP card (ceremony run);
    # None: no cards (a rehearsal in the UI signs with its key files alone).
    cards: CardApprovals | None = None

    @property
    def pin_pad(self) -> bool:
        """Whether the token's PIN is entered on its own PIN pad when it is opened."""
        return self.script.token.activation.mode == "pin-pad" and not self.needs_pin


@dataclass
class Check:
    """One line of the environment checklist: ok is None while not yet checked."""

    name: str
    ok: bool | None
    detail: str

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "…"}[self.ok]


@dataclass
class Stopped:
    """Where an unfinished ceremony in --out stopped (read from its transcript)."""

    entries: list[Entry]
    step_index: int
    sealed: bool


def read_entries(path: Path) -> list[Entry]:
    """The transcript's complete lines (a torn last line after a crash is left out)."""
    from ceremony.transcript import parse_lines

    data = path.read_bytes()
    data = data[: data.rfind(b"\n") + 1]
    return [line.entry for line in parse_lines(data, str(path))] if data else []


def stopped_at(out: Path) -> Stopped | None:
    """The unfinished ceremony recorded in ``out``, if there is one."""
    path = out / TRANSCRIPT_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return None
    entries = read_entries(path)
    done = sum(1 for e in entries if e.event == "step.completed")
    return Stopped(entries, done, any(e.event == "seal" for e in entries))


def environment_checks(setup: RunSetup, token: dict[str, Any] | None,
                       token_error: str = "") -> list[Check]:
    """The start screen's checklist: output directory, clock, token."""
    out = setup.out
    parent = out if out.exists() else out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    writable = os.access(parent, os.W_OK | os.X_OK)
    checks = [Check("output directory", writable,
                    f"{out} is {'writable' if writable else 'NOT writable'}")]
    clock = setup.clock_text() if setup.clock_text else _utc_now()
    checks.append(Check("clock", True, f"{clock} (compare with the room's clock)"))
    if token is not None:
        checks.append(Check("token", True, f"found: label {token.get('label')}, serial "
                                           f"{token.get('serial')}, model {token.get('model')}"))
    elif token_error:
        checks.append(Check("token", False, token_error))
    else:
        checks.append(Check("token", None, f"{setup.device_name or 'the token'}: not opened "
                                           "yet (press o)"))
    return checks


SEED_BYTES = 32  # the engine's seed, when an original does not say (SLIP-39: 33 words)
_SHARE_METADATA_WORDS = 7  # SLIP-39: identifier, indices, thresholds and checksum words


def share_length(original: OriginalBundle) -> int:
    """How many words each share of ``original`` has: SLIP-39's 7 words around the seed's,
    10 bits a word (the seed's size is what the original's entropy.collected records)."""
    seed_bytes = SEED_BYTES
    for entry in read_entries(original.path / TRANSCRIPT_FILE):
        size = entry.payload.get("seed_bytes") if entry.event == "entropy.collected" else None
        if isinstance(size, int) and size > 0:
            seed_bytes = size
    return _SHARE_METADATA_WORDS + -(-seed_bytes * 8 // 10)


def _utc_now() -> str:
    from datetime import UTC, datetime

    return f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"


class CeremonyApp(App[str]):
    """`ceremony run` in the terminal: start screen, roll call, one screen per step."""

    CSS_PATH = "ceremony.tcss"
    TITLE = "ceremony"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012 (Textual's own pattern)
        Binding("f1", "help", "Help", show=False),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, setup: RunSetup) -> None:
        super().__init__()
        self.setup = setup
        self.opened: OpenedDevices | None = None
        self.engine: Engine | None = None
        self.present: set[str] = set()
        self.busy = False
        self.token_info: dict[str, Any] | None = None
        self.token_error = ""
        self.stopped = stopped_at(setup.out)
        self.exit_after_first_screen = bool(os.environ.get(EXIT_AFTER_FIRST_SCREEN))

    # ------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        from ceremony.tui.screens import StartScreen

        self.push_screen(StartScreen())
        if self.exit_after_first_screen:
            self.call_after_refresh(self.exit, "first-screen")

    def on_unmount(self) -> None:
        if self.setup.typed_shares is not None:  # quit before the token was opened
            self.setup.typed_shares.wipe()
        self.close_devices()

    def close_devices(self) -> None:
        if self.opened is not None:
            self.opened.shares.wipe_all()
            self.opened.close()
            self.opened = None

    @property
    def shares(self) -> PrivateShares | None:
        return self.opened.shares if self.opened else None

    # ------------------------------------------------------------ engine calls

    def call_engine(self, label: str, fn: Callable[[], T], then: Callable[[T], None],
                    failed: Callable[[CeremonyError], None] | None = None) -> bool:
        """Run ``fn`` in the engine's worker (one at a time), then ``then`` on the UI thread.

        A CeremonyError shows as an error modal (or goes to ``failed``); the engine has
        written nothing for a refused answer, so the user can retry or abort.
        """
        from ceremony.tui.screens import BusyScreen

        if self.busy:
            self.notify("… still working on the previous action", severity="warning")
            return False
        self.busy = True
        self.push_screen(BusyScreen(label))

        def work() -> None:
            try:
                result = fn()
            except CeremonyError as exc:
                self.call_from_thread(self._engine_failed, exc, failed)
                return
            except Exception as exc:  # a bug or an unforeseen device failure
                error = DeviceError(f"{label} failed unexpectedly ({type(exc).__name__})",
                                    hint="the transcript holds what was done; quit and "
                                    "resume, or abort")
                self.call_from_thread(self._engine_failed, error, failed)
                return
            self.call_from_thread(self._engine_done, then, result)

        self.run_worker(work, name=label, group="engine", exclusive=True, thread=True)
        return True

    def _end_busy(self) -> None:
        from ceremony.tui.screens import BusyScreen

        self.busy = False
        if isinstance(self.screen, BusyScreen):
            self.pop_screen()

    def _engine_done(self, then: Callable[[T], None], result: T) -> None:
        self._end_busy()
        then(result)

    def _engine_failed(self, error: CeremonyError,
                       failed: Callable[[CeremonyError], None] | None = None) -> None:
        self._end_busy()
        if failed is not None:
            failed(error)
        else:
            self.show_error(error)

    def show_error(self, error: CeremonyError) -> None:
        from ceremony.tui.screens import ErrorModal

        self.push_screen(ErrorModal(error))

    # ------------------------------------------------------------ the steps of a run

    def open_token(self, pin: bytearray | None) -> None:
        """Open the token in a worker and fill in the checklist's token line."""
        def opened(result: OpenedDevices) -> None:
            self.opened = result
            self.token_info = result.devices.token.describe()
            self.token_error = ""
            self.refresh_screen()

        typed = self.setup.typed_shares

        def fail_wrapped() -> OpenedDevices:
            try:
                return self._with_cards(self.setup.open_devices(pin))
            except CeremonyError as exc:
                self.token_error = exc.message
                raise
            finally:
                if pin is not None:
                    for i in range(len(pin)):
                        pin[i] = 0
                if typed is not None:  # the opener has combined them; never kept longer
                    typed.wipe()

        label = ("Opening the token: enter the PIN on the token's PIN pad"
                 if self.setup.pin_pad else "Opening the token")
        if not self.call_engine(label, fail_wrapped, opened):
            if typed is not None:
                typed.wipe()
            return

    def _with_cards(self, opened: OpenedDevices) -> OpenedDevices:
        """(In the worker.) When the script sends a share to a custodian's card and this
        run takes cards, the engine's share output goes through the card screen
        (tui/cards.py CardShareDesk); else it is the opener's, which the engine refuses
        to split with (CER-SHARE-CARD)."""
        setup = self.setup
        if setup.cards is not None and setup.original is None and any(
                "card" in places for _, places in setup.script.shares.delivery):
            from ceremony.tui.cards import CardShareDesk

            opened.devices.secrets = CardShareDesk(self, opened.devices.secrets,
                                                   setup.cards.reader)
        return opened

    def roll_call(self) -> None:
        from ceremony.tui.screens import RollCallScreen

        self.push_screen(RollCallScreen())

    def first_step_index(self) -> int:
        return self.stopped.step_index if self.stopped else 0

    def begin(self) -> None:
        """Start (or resume) the ceremony in the engine's worker."""
        from ceremony.engine.core import Engine

        opened, s = self.opened, self.setup
        if opened is None:
            return
        stopped = self.stopped

        def start() -> Engine:
            if stopped is not None:
                return Engine.resume(s.script, s.policy, opened.devices, s.out,
                                     attestation=s.attestation)
            return Engine.start(s.script, s.policy, s.script_bytes, s.policy_bytes,
                                opened.devices, s.out, rehearsal=s.rehearsal,
                                original=s.original, authorization=s.authorization,
                                attestation=s.attestation)

        def started(engine: Engine) -> None:
            from ceremony.tui.screens import CeremonyScreen

            self.engine = engine
            self.switch_screen(CeremonyScreen())

        self.call_engine("Resuming the ceremony" if stopped else "Starting the ceremony",
                         start, started)

    def submit(self, answer: Answer, label: str,
               then: Callable[[Prompt], None] | None = None) -> None:
        engine = self.engine
        if engine is None:
            return

        def done(prompt: Prompt) -> None:
            self.refresh_screen()
            if then is not None:
                then(prompt)

        self.call_engine(label, lambda: engine.submit(answer), done)

    def approve(self, participant: str) -> None:
        """Have ``participant`` sign the current approval statement and submit it."""
        from ceremony.engine.prompts import Approval, ApprovalNeeded
        from ceremony.model import statements as st

        engine = self.engine
        if engine is None:
            return
        prompt = engine.next_prompt()
        if not isinstance(prompt, ApprovalNeeded):
            return
        who = engine.script.participant(participant)
        name = who.name if who else participant
        signer = self.setup.signers.get(participant)
        if signer is None and self.setup.cards is not None:
            if participant not in self.present:
                self.show_error(DeviceError(f"{name} ({participant}) is not marked present",
                                            hint="mark them present in the roll call (key p)"))
                return
            from ceremony.tui.cards import CardScreen

            self.push_screen(CardScreen(participant, self.setup.cards.reader),
                             lambda _: self.refresh_screen())
            return
        if signer is None:
            self.show_error(DeviceError(
                f"the signing device of {name} ({participant}) is not available",
                hint="this run signs with rehearsal key files only: give theirs under "
                "[identities] of --answers (`ceremony run` asks for each card instead)"))
            return
        if participant not in self.present:
            self.show_error(DeviceError(f"{name} ({participant}) is not marked present",
                                        hint="mark them present in the roll call (key p)"))
            return

        def sign_and_submit() -> Prompt:
            statement = prompt.for_participant(participant)
            signature = signer.sign(st.message(statement))
            return engine.submit(Approval(participant, statement, signature))

        kind = "approval" if prompt.role == "custodian" else "acknowledgement"
        self.call_engine(f"Recording the {kind} of {name}", sign_and_submit,
                         lambda _: self.refresh_screen())

    def offer_share(self, participant: str, typed: TypedShare,
                    done: Callable[[CeremonyError | None], None]) -> None:
        """Present the share ``participant`` typed (a recovery) to the engine, in the worker.

        The words become a string only inside the worker, for ShareOffered, and are dropped
        right after; ``typed`` is wiped whatever the engine says. ``done`` gets None when the
        share was accepted, else the engine's refusal (one sentence naming the custodian).
        """
        from ceremony.engine.prompts import ShareOffered
        from ceremony.errors import UsageError

        engine = self.engine
        if engine is None:
            typed.wipe()
            done(UsageError("the recovery has not started", hint="begin it first"))
            return
        who = engine.script.participant(participant)
        name = who.name if who else participant

        def offer() -> Prompt:
            mnemonic = typed.mnemonic()
            try:
                return engine.submit(ShareOffered(participant, mnemonic))
            finally:
                typed.wipe()
                del mnemonic

        def accepted(after: Prompt) -> None:
            from ceremony.engine.prompts import ApprovalNeeded
            from ceremony.errors import QuorumError

            self.refresh_screen()
            if isinstance(after, ApprovalNeeded) and after.kind == "deviation":
                # The rebuild starts again after a rollback: a deviation (ADR 15), recorded
                # first; the share was not taken and is presented again once it is approved.
                done(QuorumError("the recovery starts again after it was rolled back, which "
                                 "is a deviation: the custodians approve it first; the share "
                                 "was not used", hint=f"{name} presents the share again "
                                 "after the approvals", requirement="CER-DEVIATION"))
                return
            done(None)

        if not self.call_engine(f"Checking the share of {name} against the original's "
                                "record", offer, accepted, failed=done):
            typed.wipe()
            done(UsageError("the previous action is still running; nothing was presented",
                            hint=f"{name} presents the share again"))

    def proceed(self) -> None:
        """Do the step's action; after a provisioning, hand the shares out privately."""
        from ceremony.engine.prompts import Proceed

        def after(_: Prompt) -> None:
            self.distribute_if_needed()

        self.submit(Proceed(), "Working on the token", after)

    def distribute_if_needed(self) -> None:
        from ceremony.tui.screens import DistributionScreen

        shares = self.shares
        if shares is not None and shares.pending():
            self.push_screen(DistributionScreen())

    def abort(self, reason: str) -> None:
        from ceremony.engine.prompts import Abort

        engine = self.engine
        if engine is None:
            return

        def done(_: Prompt) -> None:
            from ceremony.tui.screens import AbortedModal, DistributionScreen, RecoveryScreen

            # Aborted while handing out shares (the rollback removed them) or while the
            # custodians presented theirs (the engine forgot them): back to the step.
            while isinstance(self.screen, DistributionScreen | RecoveryScreen):
                self.pop_screen()
            self.refresh_screen()
            entries = read_entries(engine.writer.path)
            aborted = next((e for e in reversed(entries) if e.event == "ceremony.aborted"),
                           None)
            self.push_screen(AbortedModal(aborted.payload if aborted else {}))

        self.call_engine("Aborting: rolling back on the token",
                         lambda: engine.submit(Abort(reason)), done)

    # ------------------------------------------------------------ helpers for screens

    def entries(self) -> list[Entry]:
        if self.engine is None:
            return []
        return read_entries(self.engine.writer.path)

    def refresh_screen(self) -> None:
        refresh = getattr(self.screen, "refresh_view", None)
        if callable(refresh):
            refresh()
        for screen in self.screen_stack:
            if screen is not self.screen:
                other = getattr(screen, "refresh_view", None)
                if callable(other):
                    other()

    def action_help(self) -> None:
        from ceremony.tui.screens import HelpModal

        if not isinstance(self.screen, HelpModal):
            self.push_screen(HelpModal())

    def finish_message(self) -> str:
        """What the CLI prints after the UI closes."""
        engine = self.engine
        if engine is None:
            return "the ceremony was not started"
        status = engine.status()
        if status.outcome is not None and status.phase == "finished":
            return (f"sealed: outcome {status.outcome}, head {status.head}; bundle "
                    f"{engine.bundle}")
        return (f"stopped at step {status.step_index + 1} of {status.steps_total} "
                f"({status.step_id}); run the same command again to resume")
