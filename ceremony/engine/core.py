"""The ceremony engine: a state machine over a script, with the transcript as its log.

Front ends loop over ``next_prompt()`` / ``submit(answer)`` / ``status()``. Every state
change is first written (and fsynced) to the transcript, and the engine's state is only
ever what the transcript says: :meth:`Engine.resume` rebuilds it by folding the entries,
so a crash at any point loses nothing that was recorded and repeats nothing that was done.
Device actions are bracketed by ``action.started`` (naming what will be created) and
``action.completed``; anything between the two is rolled back on failure or on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony import __version__, health
from ceremony.canonical import canonical_bytes, digest, sha256_hex
from ceremony.durable import write_atomically
from ceremony.engine import certify
from ceremony.engine import rsa as rsa_keys
from ceremony.engine.derive import derive_root_private, mix_seed, seed_fingerprint, wipe
from ceremony.engine.ports import (
    Clock,
    PublicCodes,
    Randomness,
    SecretOutput,
    ShareSplitter,
    Token,
    TranscriptPrinter,
    delivers_to,
    kek_label,
)
from ceremony.engine.prompts import (
    Abort,
    ActionReady,
    Answer,
    Approval,
    ApprovalNeeded,
    Begin,
    BeginStep,
    ConfirmationNeeded,
    DiceNeeded,
    DiceRolls,
    Finished,
    GroupProgress,
    Passphrase,
    PassphraseNeeded,
    Proceed,
    Prompt,
    ShareOffered,
    SharesNeeded,
    Status,
    TypedConfirmation,
)
from ceremony.engine.recovery import ORIGINAL_DIR, OriginalBundle, copy_bundle, load_original
from ceremony.engine.typed_secrets import (
    SILENT_MISMATCH_WARNING,
    check_passphrase,
    check_rolls,
    same_secret,
)
from ceremony.errors import (
    CeremonyError,
    CheckFailed,
    DeviceError,
    InputError,
    QuorumError,
    TokenError,
    UsageError,
)
from ceremony.model import statements as st
from ceremony.model.attestation import policy_waived, require_attested
from ceremony.model.authorization import (
    BUNDLE_SIGS_FILE,
    Presented,
    authorization_record,
    rollback_record,
)
from ceremony.model.certificate import CERTIFICATE_FILE, CSR_FILE
from ceremony.model.policy import Policy
from ceremony.model.recovery import FINGERPRINT_CHECK, SEED_CHECK, recovery_problem
from ceremony.model.rules import check_policy
from ceremony.model.script import Script, Step
from ceremony.transcript import (
    Entry,
    TranscriptWriter,
    entry_hash,
    format_time,
    parse_lines,
    parse_time,
    repair_tail,
)

SCRIPT_FILE = "script.toml"
POLICY_FILE = "policy.toml"
TRANSCRIPT_FILE = "transcript.jsonl"
ROOT_PEM_FILE = "root-public-key.pem"
CHECKSUMS_FILE = "SHA256SUMS"
CHECKSUMS_SIG_FILE = "SHA256SUMS.sig"
REHEARSAL_FILE = "REHEARSAL.txt"
PRINTED_FILE = "transcript.pdf"
ENGINE_ACTOR = "engine"


@dataclass
class Devices:
    """Everything the engine touches outside its own memory."""

    clock: Clock
    os_random: Randomness
    token: Token
    splitter: ShareSplitter
    secrets: SecretOutput
    # QR images of the public key, certificate and CSR in the bundle (None: none are made).
    codes: PublicCodes | None = None
    # The printed transcript inside the bundle, made after the seal (None: none is made).
    printer: TranscriptPrinter | None = None


# Where the bundle keeps the QR parts of its public files (docs/qr-format.md).
QR_DIR = "qr"

# The longest reason a deviation may give (ADR 15).
DEVIATION_REASON_MAX = 400

# Bytes drawn from each entropy source: one adaptive-proportion window (docs/entropy.md).
ENTROPY_BYTES = 512


def transcript_key_label(ceremony_id: str) -> str:
    return f"ceremony-transcript {ceremony_id}"


def transcript_key_id(ceremony_id: str) -> str:
    return sha256_hex(b"ceremony.transcript-key.v1|" + ceremony_id.encode())[:16]


def share_commitment(ceremony_id: str, mnemonic: str) -> str:
    """A public commitment to one share: lets a custodian check it later, reveals nothing."""
    return digest({"type": "ceremony.share-commitment.v1", "ceremony": ceremony_id,
                   "share": mnemonic})


@dataclass
class _StepState:
    started: bool = False
    approvals: list[str] = field(default_factory=list)
    witnesses: list[str] = field(default_factory=list)
    confirmed: bool = False
    action_started: dict[str, Any] | None = None
    action_done: bool = False
    started_at: str = ""
    # Recovery: the shares presented in the open action, as (participant, group, member).
    presented: list[tuple[str, int, int]] = field(default_factory=list)
    # Rollbacks of this step's action, the step-retried deviations declared for them, and
    # the last rollback's reason: a retry is a deviation (ADR 15).
    failures: int = 0
    retries: int = 0
    failure: str = ""
    # (kind, reason) of every deviation declared in this step (the headless runner's
    # memory of what its answers file already declared, across a resume).
    deviations: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Deviation:
    """A deviation still waiting for its quorum of custodian approvals (ADR 15)."""

    seq: int
    hash: str  # SHA-256 of the deviation's line: what the approvals bind to
    time: str
    step: str | None
    kind: str
    reason: str
    quorum: int
    by: str = ""  # who declared it
    approvals: list[str] = field(default_factory=list)


@dataclass
class _State:
    index: int = 0
    step: _StepState = field(default_factory=_StepState)
    root_public: str | None = None  # as the transcript writes it ("ed25519:...")
    outcome: str | None = None
    sealed: bool = False
    deviation: _Deviation | None = None  # open: nothing else goes on until it is approved
    # After the last step: when it completed, and the witnesses' seal co-signatures, as
    # (participant, seq of their seal.witnessed entry).
    steps_done_at: str = ""
    seal_witnesses: list[tuple[str, int]] = field(default_factory=list)


class Engine:
    """One ceremony in progress. Create with :meth:`start` or :meth:`resume`."""

    def __init__(self, script: Script, policy: Policy, devices: Devices, bundle: Path,
                 writer: TranscriptWriter, transcript_public: bytes, rehearsal: bool,
                 state: _State, original: OriginalBundle | None = None) -> None:
        self.script = script
        self.policy = policy
        self.devices = devices
        self.bundle = bundle
        self.writer = writer
        self.transcript_public = transcript_public
        self.rehearsal = rehearsal
        self.state = state
        self.admin = script.with_role("administrator")[0].id
        self.last_event = ""
        self._tk = (transcript_key_label(script.ceremony_id),
                    transcript_key_id(script.ceremony_id))
        # A recovery: the original bundle (its copy in this bundle), and the shares presented
        # in the open action, by participant. Memory only: never written, never logged.
        self.original = original
        self._shares: dict[str, str] = {}
        # Typed before the key step's action: custodian dice (one byte per roll) and the
        # SLIP-39 passphrase. Memory only, wiped when used, refused or rolled back; after a
        # crash they are asked for again.
        self._dice: bytearray | None = None
        self._passphrase: bytearray | None = None
        # This session's environment attestation (ceremony.started's, or the one a resume
        # brought) and the time it was recorded: checked again before any secret exists.
        self.attestation: dict[str, Any] | None = None
        self.attested_at = ""

    # ---------------------------------------------------------------- construction

    @classmethod
    def start(cls, script: Script, policy: Policy, script_bytes: bytes, policy_bytes: bytes,
              devices: Devices, bundle: Path, *, rehearsal: bool,
              original: OriginalBundle | None = None,
              authorization: Presented | None = None,
              attestation: dict[str, Any] | None = None) -> Engine:
        """Begin a new ceremony in an empty bundle directory.

        A recovery script (one with a [recovery] table) needs ``original``, the verified
        bundle of the ceremony whose root key it rebuilds (engine/recovery.py
        ``load_original``); it is checked against the script and copied into the bundle.
        ``authorization`` is the script's authorizers' signatures and what the version state
        says ran last (model/authorization.py): a script without the policy's quorum of
        signatures, or not newer than the last version sealed, is refused; only a
        rehearsal may go without either, and the transcript says so.
        ``attestation`` is the environment's record (model/attestation.py; the front end
        runs the checks and applies signed waivers): refused unless it passes (CER-ATTEST),
        and recorded in ceremony.started.
        """
        _check_runnable(script, policy, script_bytes, policy_bytes, rehearsal)
        _check_attested(attestation, script, policy, rehearsal, devices)
        _check_original(script, original, rehearsal)
        authorization = authorization or Presented()
        authorized = authorization_record(script, policy, authorization, rehearsal=rehearsal)
        rollback = rollback_record(script, authorization, rehearsal=rehearsal)
        if bundle.exists() and any(bundle.iterdir()):
            raise UsageError(f"the output directory {bundle} already exists and is not empty",
                             hint="choose a new --out directory, or use --resume to continue "
                                  "the ceremony recorded there")
        token = devices.token
        check_token_identity(script, token.describe())
        rk = script.root_key
        if token.find_objects(rk.label, rk.key_id):
            raise TokenError(f"the token already holds a key labelled {rk.label!r} with id "
                             f"{rk.key_id}", hint="use a fresh token, or change root_key.label "
                             "and root_key.id in the script", requirement="CER-NO-CLOBBER")
        bundle.mkdir(parents=True, exist_ok=True)
        _write_file(bundle / SCRIPT_FILE, script_bytes)
        _write_file(bundle / POLICY_FILE, policy_bytes)
        if authorization.sigs is not None:
            _write_file(bundle / BUNDLE_SIGS_FILE, authorization.sigs)
        if rehearsal:
            _write_file(bundle / REHEARSAL_FILE, REHEARSAL_NOTE.encode())
        if original is not None:
            # The recovery bundle carries the original so that it verifies on its own; from
            # here on the engine reads the copy, which must be what was verified.
            copy_bundle(original.path, bundle / ORIGINAL_DIR)
            copied = load_original(bundle / ORIGINAL_DIR)
            if copied.record != original.record:
                raise CheckFailed(f"the original bundle {original.path} changed while it was "
                                  "being copied", requirement="CER-RECOVERY")
            original = copied
        label, key_id = transcript_key_label(script.ceremony_id), transcript_key_id(
            script.ceremony_id)
        leftovers = [o.as_dict() for o in token.destroy(label, key_id)]
        public = token.generate_ed25519(label, key_id)
        writer = TranscriptWriter(bundle / TRANSCRIPT_FILE, script.ceremony_id)
        engine = cls(script, policy, devices, bundle, writer, public, rehearsal, _State(),
                     original)
        assert attestation is not None  # (_check_attested)
        started = engine._write(ENGINE_ACTOR, None, "ceremony.started", {
            "tool": f"ceremony {__version__}",
            "script_id": script.ceremony_id, "script_version": script.version,
            "script_sha256": script.sha256, "policy_id": policy.policy_id,
            "policy_version": policy.version, "policy_sha256": policy.sha256,
            "rehearsal": rehearsal, "transcript_key": st.encode_key(public),
            "token": {**token.describe(), "mechanisms": mechanisms_for(script)},
            "leftovers_destroyed": leftovers,
            "authorization": authorized, "rollback": rollback,
            "attestation": attestation,
        })
        engine.attestation, engine.attested_at = attestation, started.time
        return engine

    @classmethod
    def resume(cls, script: Script, policy: Policy, devices: Devices, bundle: Path, *,
               attestation: dict[str, Any] | None = None) -> Engine:
        """Continue the ceremony recorded in ``bundle`` after a crash or a stop.

        ``attestation`` is the environment attested again now (refused unless it passes,
        and recorded in ceremony.resumed); without it the ceremony may finish what needs no
        secret, but refuses to make a seed or take a share (CER-ATTEST).
        """
        path = bundle / TRANSCRIPT_FILE
        if not path.is_file() or path.stat().st_size == 0:
            raise UsageError(f"there is no transcript to resume in {bundle}",
                             hint="start the ceremony without --resume")
        pinned = bundle / SCRIPT_FILE
        if not pinned.is_file() or sha256_hex(pinned.read_bytes()) != script.sha256:
            raise UsageError("this script is not the one the unfinished ceremony started with",
                             hint=f"resume with the exact script in {pinned}",
                             requirement="CER-SCRIPT-PIN")
        repaired = repair_tail(path)  # only now: a refused resume leaves the file untouched
        lines = parse_lines(path.read_bytes(), str(path))
        prev = lines[0].entry.prev
        for line in lines:
            if line.entry.prev != prev or line.entry.ceremony != script.ceremony_id:
                raise CheckFailed(f"{path}:{line.number}: the transcript's hash chain is "
                                  "broken; it cannot be resumed",
                                  hint="run `ceremony verify` on the bundle to see why",
                                  requirement="CER-CHAIN")
            prev = line.hash
        first = lines[0].entry
        if first.event != "ceremony.started":
            raise CheckFailed(f"{path}:1: the transcript does not begin with ceremony.started",
                              requirement="CER-CHAIN")
        if first.payload.get("script_sha256") != script.sha256:
            raise UsageError("this script is not the one the unfinished ceremony started with",
                             hint=f"resume with the exact script in {bundle / SCRIPT_FILE}",
                             requirement="CER-SCRIPT-PIN")
        rehearsal = bool(first.payload.get("rehearsal"))
        if attestation is not None:
            _check_attested(attestation, script, policy, rehearsal, devices)
        public = st.decode_key(first.payload["transcript_key"])
        original = None
        if script.recovery is not None:  # read back, and verified again, from the copy
            original = load_original(bundle / ORIGINAL_DIR)
            _check_original(script, original, rehearsal)
        state = _fold(script, [ln.entry for ln in lines])
        last = lines[-1]
        writer = TranscriptWriter(path, script.ceremony_id, seq=last.entry.seq + 1,
                                  head=last.hash, last_time=parse_time(last.entry.time))
        engine = cls(script, policy, devices, bundle, writer, public, rehearsal, state,
                     original)
        if state.sealed:
            engine._finalize()
            return engine
        check_token_identity(script, devices.token.describe())
        recorded = first.payload.get("token", {})
        current = devices.token.describe()
        if (recorded.get("serial"), recorded.get("model")) != (current.get("serial"),
                                                                current.get("model")):
            raise TokenError(f"this is token {current.get('serial')!r}, but the ceremony "
                             f"started on token {recorded.get('serial')!r}",
                             hint="insert the token the ceremony started on",
                             requirement="CER-TOKEN-PIN")
        found = devices.token.find_ed25519(*engine._tk)
        if found != public:
            raise TokenError("the ceremony's transcript key is not on this token",
                             hint="insert the token the ceremony started on",
                             requirement="CER-TRANSCRIPT-KEY")
        resumed = engine._write(ENGINE_ACTOR, None, "ceremony.resumed", {
            "after_seq": last.entry.seq, "repaired_bytes": repaired,
            **({"attestation": attestation} if attestation is not None else {})})
        if attestation is not None:
            engine.attestation, engine.attested_at = attestation, resumed.time
        if state.step.action_started is not None and not state.step.action_done:
            engine._rollback_action("interrupted before it completed")
        if state.outcome == "aborted":
            engine._seal("aborted")
        elif state.index >= len(script.steps):
            engine._maybe_seal()  # (after its witnesses' co-signatures, ADR 15)
        else:
            # Killed after a step's last requirement (or its action.completed) but before
            # step.completed: complete it now, as submit() would have, instead of asking
            # again for an answer that was already given (or redoing a finished action).
            engine._advance()
        if not engine.state.sealed and engine.last_event != "checkpoint":
            # Sign what the resume wrote (and a step.completed whose checkpoint was lost).
            engine._checkpoint()
        return engine

    # ---------------------------------------------------------------- the loop

    def status(self) -> Status:
        s, prompt = self.state, self.next_prompt()
        step = self._step()
        collected: tuple[str, ...] = ()
        needed = 0
        phase = {BeginStep: "begin", ConfirmationNeeded: "confirm", ActionReady: "action",
                 SharesNeeded: "shares", DiceNeeded: "dice", PassphraseNeeded: "passphrase",
                 Finished: "finished"}.get(type(prompt), "")
        if isinstance(prompt, ApprovalNeeded):
            phase = "approvals" if prompt.role == "custodian" else "witnesses"
            if prompt.kind != "step":
                phase = prompt.kind
            collected, needed = prompt.collected, prompt.needed
        elif isinstance(prompt, SharesNeeded):
            collected, needed = prompt.presented, prompt.needed
        return Status(self.script.ceremony_id, self.rehearsal, s.index, len(self.script.steps),
                      step.id if step else None, phase, collected, needed, self.writer.seq,
                      self.writer.head, s.outcome)

    def next_prompt(self) -> Prompt:
        """What the ceremony needs next. Pure: reading it changes nothing."""
        s = self.state
        if s.sealed or s.outcome is not None:
            return Finished(s.outcome or "completed", self.writer.head, s.root_public)
        if s.deviation is not None:
            return self._deviation_prompt(s.deviation)
        step = self._step()
        if step is None:  # every step done: the witnesses co-sign the seal
            return self._seal_prompt()
        if not s.step.started:
            return BeginStep(step.id, s.index, len(self.script.steps), step.title,
                             step.instructions)
        if len(s.step.approvals) < step.approvals:
            return self._approval_prompt(step, "custodian", step.approvers, s.step.approvals,
                                         step.approvals)
        witnesses = tuple(p.id for p in self.script.with_role("witness"))
        if len(s.step.witnesses) < step.witnesses:
            return self._approval_prompt(step, "witness", witnesses, s.step.witnesses,
                                         step.witnesses)
        if step.confirm and not s.step.confirmed:
            return ConfirmationNeeded(step.id, step.confirm)
        typed = self._typed_secret_prompt(step)
        if typed is not None:
            return typed
        if step.action == "recover_root_key" and not s.step.action_done:
            return self._shares_prompt(step)
        return ActionReady(step.id, step.action, ACTION_TEXT[step.action])

    def submit(self, answer: Answer) -> Prompt:
        """Apply one answer; raise a CeremonyError (changing nothing) if it is refused."""
        prompt = self.next_prompt()
        if isinstance(answer, Abort):
            if isinstance(prompt, Finished):
                raise UsageError("the ceremony is already sealed; there is nothing to abort")
            self._abort(answer.reason)
            return self.next_prompt()
        step = self._step()
        if isinstance(prompt, ApprovalNeeded) and prompt.kind != "step":
            # An open deviation, or the seal's co-signatures: only those signatures (or an
            # abort) are taken; every other answer is refused, nothing written (ADR 15).
            if not isinstance(answer, Approval):
                _wipe_answer(answer)
                raise self._blocked(prompt, answer)
            self._accept_approval(prompt, answer)
            self._advance()
            return self.next_prompt()
        if isinstance(prompt, Finished) or step is None:
            raise UsageError("the ceremony is already sealed")
        if isinstance(prompt, BeginStep) and isinstance(answer, Begin):
            self._write(self.admin, step.id, "step.started", {
                "index": self.state.index, "title": step.title, "action": step.action,
                "step_digest": st.step_digest(self.script.step_definition(step))})
        elif isinstance(prompt, ApprovalNeeded) and isinstance(answer, Approval):
            self._accept_approval(prompt, answer)
        elif isinstance(prompt, ConfirmationNeeded) and isinstance(answer, TypedConfirmation):
            if answer.text != prompt.phrase:
                raise QuorumError(f"the typed confirmation does not match {prompt.phrase!r}",
                                  hint="type the phrase exactly, in capitals",
                                  requirement="CER-CONFIRM")
            self._write(self.admin, step.id, "confirmation", {"phrase": prompt.phrase})
        elif isinstance(prompt, ActionReady) and isinstance(answer, Proceed):
            if self._declare_retry(step):  # the retry waits for its deviation's quorum
                return self.next_prompt()
            self._run_action(step)
        elif isinstance(prompt, DiceNeeded) and isinstance(answer, DiceRolls):
            self._accept_dice(prompt, answer)
        elif isinstance(prompt, PassphraseNeeded) and isinstance(answer, Passphrase):
            self._accept_passphrase(prompt, answer)
        elif isinstance(prompt, SharesNeeded) and isinstance(answer, ShareOffered):
            if self._declare_retry(step):  # (the share is not taken: offered again after)
                return self.next_prompt()
            self._accept_share(step, prompt, answer)
        elif isinstance(prompt, SharesNeeded) and isinstance(answer, Proceed):
            if not prompt.ready:
                raise QuorumError(f"the shares presented do not yet rebuild the key: "
                                  f"{prompt.describe()}", hint="more custodians present "
                                  "their shares first", requirement="CER-RECOVERY")
            self._guarded(step, self._recover_root_key)
        else:
            _wipe_answer(answer)
            raise UsageError(f"the ceremony is waiting for {type(prompt).__name__}, "
                             f"not {type(answer).__name__}",
                             hint="answer the current prompt")
        self._advance()
        return self.next_prompt()

    def declare_deviation(self, participant: str, kind: str, reason: str) -> Prompt:
        """Record a deviation from the script (ADR 15): a card replaced, a person standing
        in for another, anything else the room departs from the script in.

        ``participant`` declares it (any participant of the script); ``kind`` is one of
        statements.DECLARED_KINDS; ``reason`` is one sentence, public (it is printed).
        With the policy's [deviations] quorum, nothing but the custodians' approvals of it
        (or an abort) is taken until the quorum is reached. Refused (nothing written): an
        unknown participant or kind, an empty reason, a deviation still open, a sealed
        ceremony.
        """
        s = self.state
        if s.sealed or s.outcome is not None:
            raise UsageError("the ceremony is sealed; a deviation can no longer be declared")
        if self.script.participant(participant) is None:
            raise InputError(f"{participant!r} is not a participant of this ceremony, so "
                             "cannot declare a deviation", hint="the participant who "
                             "declares it must be on the script's list",
                             requirement="CER-DEVIATION")
        if kind not in st.DECLARED_KINDS:
            what = "recorded by the engine when an action runs again" \
                if kind in st.DEVIATION_KINDS else "not a kind of deviation"
            raise InputError(f"{kind!r} is {what}",
                             hint=f"declare one of: {', '.join(st.DECLARED_KINDS)}",
                             requirement="CER-DEVIATION")
        text = " ".join(reason.split())
        if not text or len(text) > DEVIATION_REASON_MAX:
            raise InputError(f"a deviation needs a reason of 1 to {DEVIATION_REASON_MAX} "
                             "characters", hint="say in one sentence what departs from the "
                             "script and why", requirement="CER-DEVIATION")
        if s.deviation is not None:
            raise QuorumError(f"the deviation at entry {s.deviation.seq} is still waiting "
                              f"for {s.deviation.quorum} custodian approvals",
                              hint="the custodians approve it, or the administrator aborts",
                              requirement="CER-DEVIATION")
        self._declare(participant, kind, text)
        self._advance()
        return self.next_prompt()

    def declared_deviations(self) -> tuple[tuple[str, str], ...]:
        """(kind, reason) of the deviations declared in the current step so far."""
        return tuple(self.state.step.deviations)

    def add_note(self, actor: str, text: str) -> Entry:
        """Record a participant's note (a witness's deviation, say) in the transcript."""
        if self.script.participant(actor) is None:
            raise InputError(f"{actor!r} is not a participant of this ceremony")
        if self.state.sealed:
            raise UsageError("the ceremony is sealed; notes can no longer be added")
        step = self._step()
        return self._write(actor, step.id if step and self.state.step.started else None,
                           "note", {"text": text})

    # ---------------------------------------------------------------- internals

    def _require_attested(self) -> None:
        """CER-ATTEST: no secret unless this session's attestation passes (start or resume)."""
        require_attested(self.attestation, self.policy, self.rehearsal, script=self.script,
                         at=self.attested_at or None)

    def _step(self) -> Step | None:
        steps = self.script.steps
        return steps[self.state.index] if self.state.index < len(steps) else None

    def _now(self) -> datetime:
        return self.devices.clock.now()

    def _write(self, actor: str, step: str | None, event: str, payload: dict[str, Any],
               moment: datetime | None = None) -> Entry:
        entry = self.writer.append(moment or self._now(), actor, step, event, payload)
        self.state = _apply(self.script, self.state, entry)
        self.last_event = event
        return entry

    def _declare(self, actor: str, kind: str, reason: str) -> None:
        step = self._step()
        self._write(actor, step.id if step and self.state.step.started else None,
                    "deviation", {"kind": kind, "reason": reason,
                                  "quorum": self.policy.deviation_quorum})

    def _declare_retry(self, step: Step) -> bool:
        """Running an action again after it was rolled back is a deviation (ADR 15): record
        it first. True when it now waits for the custodians' approvals."""
        s = self.state.step
        if s.failures <= s.retries:
            return False
        reason = f"the action of step {step.id!r} runs again after it was rolled back: " \
                 f"{s.failure}"
        if len(reason) > DEVIATION_REASON_MAX:
            reason = reason[: DEVIATION_REASON_MAX - 3] + "..."
        self._declare(self.admin, "step-retried", reason)
        return self.state.deviation is not None

    def _blocked(self, prompt: ApprovalNeeded, answer: Answer) -> CeremonyError:
        """Why an answer other than the signature awaited is refused (ADR 15)."""
        dev = self.state.deviation
        if prompt.kind == "deviation" and dev is not None:
            return QuorumError(f"the {dev.kind} deviation at entry {dev.seq} needs "
                               f"{dev.quorum} custodian approvals before the ceremony goes "
                               f"on ({len(dev.approvals)} so far); "
                               f"{type(answer).__name__} was not taken",
                               hint="the custodians approve the deviation, or the "
                                    "administrator aborts", requirement="CER-DEVIATION")
        return QuorumError(f"the seal needs the co-signatures of {prompt.needed} witnesses "
                           f"({len(prompt.collected)} so far); {type(answer).__name__} was "
                           "not taken", hint="the witnesses co-sign the seal, or the "
                           "administrator aborts", requirement="CER-SEAL-WITNESS")

    def _deviation_prompt(self, dev: _Deviation) -> ApprovalNeeded:
        template = st.deviation_statement(
            ceremony=self.script.ceremony_id, script_sha256=self.script.sha256,
            deviation=dev.hash, seq=dev.seq, step=dev.step, kind=dev.kind, reason=dev.reason,
            participant="", time=format_time(self._now()))
        custodians = tuple(p.id for p in self.script.with_role("custodian"))
        return ApprovalNeeded(dev.step or "", "custodian", custodians, tuple(dev.approvals),
                              dev.quorum, template, kind="deviation")

    def _seal_prompt(self) -> ApprovalNeeded:
        template = st.seal_witness_statement(
            ceremony=self.script.ceremony_id, script_sha256=self.script.sha256,
            head=self.writer.head, entries=self.writer.seq, outcome="completed",
            participant="", time=format_time(self._now()))
        witnesses = tuple(p.id for p in self.script.with_role("witness"))
        return ApprovalNeeded("", "witness", witnesses,
                              tuple(p for p, _ in self.state.seal_witnesses),
                              self.policy.seal_witnesses, template, kind="seal")

    def _approval_prompt(self, step: Step, role: str, eligible: tuple[str, ...],
                         collected: list[str], needed: int) -> ApprovalNeeded:
        template = st.approval_statement(
            ceremony=self.script.ceremony_id, script_sha256=self.script.sha256, step=step.id,
            step_digest=st.step_digest(self.script.step_definition(step)),
            head=self.writer.head, role=role, participant="",
            time=format_time(self._now()))
        return ApprovalNeeded(step.id, role, eligible, tuple(collected), needed, template)

    def _accept_approval(self, prompt: ApprovalNeeded, answer: Approval) -> None:
        who = answer.participant
        kind = prompt.what
        dev = self.state.deviation
        # What it is for, where its window opens, what records it, which rule refuses it.
        if prompt.kind == "deviation" and dev is not None:
            where, since = f"for the deviation at entry {dev.seq}", dev.time
            event, requirement = "deviation.approved", "CER-DEVIATION"
        elif prompt.kind == "seal":
            where, since = "for the seal", self.state.steps_done_at
            event, requirement = "seal.witnessed", "CER-SEAL-WITNESS"
        else:
            where, since = f"for step {prompt.step!r}", self.state.step.started_at
            event = "approval" if prompt.role == "custodian" else "witness.ack"
            requirement = "CER-QUORUM"
        if who not in prompt.eligible:
            raise QuorumError(f"{who!r} may not give the {kind} {where}",
                              hint=f"eligible: {', '.join(prompt.eligible)}",
                              requirement=requirement)
        if who in prompt.collected:
            raise QuorumError(f"{who!r} has already given the {kind} {where}",
                              hint="each participant counts once", requirement=requirement)
        expected = prompt.for_participant(who)
        statement = answer.statement
        same = {k: v for k, v in statement.items() if k != "time"} == {
            k: v for k, v in expected.items() if k != "time"}
        if not same or set(statement) != set(expected):
            raise QuorumError(f"the {kind} from {who!r} was made for another ceremony, step or "
                              "transcript head", hint="sign the statement of the current prompt",
                              requirement="CER-APPROVAL-BINDING")
        try:
            signed_at = parse_time(str(statement["time"]))
        except ValueError:
            raise QuorumError(f"the {kind} from {who!r} has a malformed time",
                              requirement="CER-APPROVAL-BINDING") from None
        if not parse_time(since) <= signed_at <= self._now():
            window = "this step's window" if prompt.kind == "step" else f"its window ({where})"
            raise QuorumError(f"the {kind} from {who!r} was signed outside {window}",
                              hint="sign again now", requirement="CER-APPROVAL-BINDING")
        participant = self.script.participant(who)
        assert participant is not None
        if not st.verify_ed25519(participant.public_key_bytes, answer.signature,
                                 st.message(statement)):
            raise QuorumError(f"the signature on the {kind} from {who!r} does not verify "
                              "with their identity key", hint="sign with the key the script "
                              "names for them", requirement="CER-APPROVAL-SIG")
        self._write(who, prompt.step or None, event,
                    {"statement": statement, "signature": st.b64(answer.signature)})

    def _advance(self) -> None:
        s = self.state
        if s.deviation is not None or s.sealed or s.outcome is not None:
            return  # an open deviation holds everything (ADR 15)
        step = self._step()
        if step is None:
            self._maybe_seal()
            return
        prompt = self.next_prompt()
        done = isinstance(prompt, ActionReady) and (
            step.action == "none" or self.state.step.action_done)
        if not done:
            return
        self._write(ENGINE_ACTOR, step.id, "step.completed", {"index": self.state.index})
        self._checkpoint()
        if self.state.index >= len(self.script.steps):
            self._maybe_seal()

    def _maybe_seal(self) -> None:
        """After the last step: seal once the policy's witnesses have co-signed (ADR 15)."""
        s = self.state
        if s.sealed or s.outcome is not None or s.deviation is not None:
            return
        if len(s.seal_witnesses) >= self.policy.seal_witnesses:
            self._seal("completed")

    def _sign_transcript(self, statement: dict[str, Any]) -> str:
        return st.b64(self.devices.token.sign_ed25519(*self._tk, st.message(statement)))

    def _checkpoint(self) -> None:
        statement = st.checkpoint_statement(ceremony=self.script.ceremony_id,
                                            seq=self.writer.seq - 1, head=self.writer.head)
        self._write(ENGINE_ACTOR, None, "checkpoint",
                    {"statement": statement, "signature": self._sign_transcript(statement)})

    def _seal(self, outcome: str) -> None:
        moment = self._now()
        witnessed = None  # a completed seal names its witnesses' co-signatures (ADR 15)
        if outcome == "completed" and self.policy.seal_witnesses:
            witnessed = [{"participant": p, "seq": q} for p, q in self.state.seal_witnesses]
        statement = st.seal_statement(
            ceremony=self.script.ceremony_id, script_sha256=self.script.sha256,
            policy_sha256=self.policy.sha256, head=self.writer.head, entries=self.writer.seq,
            outcome=outcome, time=format_time(moment), witnesses=witnessed)
        payload: dict[str, Any] = {"statement": statement,
                                   "transcript_signature": self._sign_transcript(statement)}
        if outcome == "completed":
            rk = self.script.root_key
            payload["root_key_signature"] = st.b64(self.devices.token.sign(
                rk.kind, rk.label, rk.key_id, st.message(statement)))
        self._write(ENGINE_ACTOR, None, "seal", payload, moment)
        self._finalize()

    def _finalize(self) -> None:
        """Write the printed transcript and the signed checksum list that covers it, then
        retire the transcript key. Idempotent: until the list's signature exists, both are
        made again from the sealed transcript, which gives the same bytes (ADR 16)."""
        sums_path = self.bundle / CHECKSUMS_FILE
        if not (self.bundle / CHECKSUMS_SIG_FILE).is_file():
            if self.devices.printer is not None:
                self._print_transcript(self.devices.printer)
            for name in (CHECKSUMS_FILE, CHECKSUMS_SIG_FILE):  # a crash's, never listed
                (self.bundle / f"{name}.tmp").unlink(missing_ok=True)
            sums = checksum_list(self.bundle)
            statement = st.checksums_statement(ceremony=self.script.ceremony_id,
                                               checksums=sums)
            signature = self._sign_transcript(statement)
            _write_file(sums_path, sums)
            _write_file(self.bundle / CHECKSUMS_SIG_FILE, (signature + "\n").encode())
        self.devices.token.destroy(*self._tk)
        self.writer.close()

    def _print_transcript(self, printer: TranscriptPrinter) -> None:
        """The printed transcript into the bundle; a failure leaves the ceremony sealed and
        the bundle unfinished (no checksum list), which a resume finishes."""
        try:
            printer.write(self.bundle, PRINTED_FILE)
        except CeremonyError as exc:
            kind = CheckFailed if isinstance(exc, CheckFailed) else DeviceError
            raise kind(f"the ceremony is sealed, but its printed transcript could not be "
                       f"made, so the bundle is not finished: {exc.message}",
                       hint=(f"{exc.hint}; then " if exc.hint else "") + "resume the "
                       "ceremony (--resume) to finish the bundle",
                       requirement="CER-PRINT") from exc

    # ---------------------------------------------------------------- actions

    def _run_action(self, step: Step) -> None:
        if step.action == "recover_root_key":  # (its prompt is SharesNeeded until done)
            raise ValueError("recover_root_key runs from the SharesNeeded prompt")
        if step.action == "certify_root_key":
            self._run_certify(step)
            return
        if step.action != "provision_root_key":
            raise ValueError(f"no handler for action {step.action}")
        rk = self.script.root_key
        if rk.kind not in st.PUBLIC_KEY_BYTES:
            raise InputError(f"root keys of kind {rk.kind} cannot be provisioned by this "
                             "version yet", hint="use algorithm = \"ed25519\" or \"ecdsa\"")
        self._bracketed(step, [{"label": rk.label, "id": rk.key_id}], self._provision_root_key)

    def _bracketed(self, step: Step, will_create: list[dict[str, str]],
                   work: Callable[[Step], None]) -> None:
        """Run a device action between action.started and its completion or rollback."""
        self._write(self.admin, step.id, "action.started",
                    {"action": step.action, "will_create": will_create})
        self._guarded(step, work)

    def _guarded(self, step: Step, work: Callable[[Step], None]) -> None:
        """Run the device work of an open action; on any failure roll the action back."""
        try:
            work(step)
        except CeremonyError as exc:
            self._rollback_action(exc.message)
            raise
        except Exception as exc:  # a device library failing in a way we did not foresee
            self._rollback_action(f"{type(exc).__name__}")
            raise TokenError(f"the step {step.id!r} failed and was rolled back "
                             f"({type(exc).__name__})", hint="check the token, then retry "
                             "or abort") from exc

    def _collect_seed(self, step: Step) -> bytearray:
        """The seed, mixed from sources that each passed the SP 800-90B health tests.

        Every source gives one full adaptive-proportion window of bytes; a source that fails
        stops the step before anything is mixed (docs/entropy.md). The transcript records
        the sources, their sample counts, cutoffs and results, never a value. Custodian dice
        (``[entropy]``), typed before the action, are the third source, tested the same way
        over the rolls typed and wiped here whatever happens.
        """
        self._require_attested()
        drawn = [("os", bytearray(self.devices.os_random.random_bytes(ENTROPY_BYTES)),
                  health.os_spec()),
                 ("token", bytearray(self.devices.token.random_bytes(ENTROPY_BYTES)),
                  health.token_spec())]
        dice, self._dice = self._dice, None
        if dice is not None:
            drawn.append(("dice", dice, health.dice_spec()))
        try:
            if self.script.entropy.dice_rolls and dice is None:
                raise UsageError("the dice rolls were not typed", hint="type them, then "
                                 "retry the step", requirement="CER-DICE")
            results = [health.check(health.byte_samples(data), spec) for _, data, spec in drawn]
            for result in results:
                if not result.passed:
                    hint = ("roll a fair die again (real rolls, no patterns), then retry the "
                            "step or abort" if result.source == "dice" else
                            "check the source (a failing token generator needs the vendor), "
                            "then retry the step or abort")
                    raise CheckFailed(f"{result.message()}; no seed was made", hint=hint,
                                      requirement="CER-ENTROPY-HEALTH")
            seed = mix_seed([(name, data) for name, data, _ in drawn])
            sources = [{"source": name, "bytes": len(data), "health": result.as_record(),
                        **({"rolled_by": self.script.entropy.dice_roller}
                           if name == "dice" else {})}
                       for (name, data, _), result in zip(drawn, results, strict=True)]
        finally:
            for _, data, _ in drawn:
                wipe(data)
        self._write(ENGINE_ACTOR, step.id, "entropy.collected", {
            "sources": sources, "combiner": "sha256-length-prefixed (docs/kdf.md)",
            "seed_bytes": len(seed)})
        return seed

    def _provision_root_key(self, step: Step) -> None:
        if self.script.root_key.algorithm == "rsa":
            self._provision_rsa_root_key(step)
            return
        token, script, rk = self.devices.token, self.script, self.script.root_key
        seed = self._collect_seed(step)
        private = bytearray()
        try:
            private = derive_root_private(seed, rk)
            expected_raw = public_from_private(rk.kind, private)
            public = token.import_key(rk.kind, rk.label, rk.key_id, private)
            wipe(private)
            challenge = canonical_bytes({"type": "ceremony.pairwise.v1",
                                         "ceremony": script.ceremony_id,
                                         "key": st.encode_key(expected_raw, rk.kind)})
            signature = token.sign(rk.kind, rk.label, rk.key_id, challenge)
            if public != expected_raw or not st.verify_signature(rk.kind, expected_raw,
                                                                 signature, challenge):
                raise TokenError("the new root key failed its pairwise-consistency test",
                                 hint="the token or its module is faulty; abort",
                                 requirement="CER-PAIRWISE")
            self._record_root_key(step, seed, public, {}, {})
        finally:
            wipe(seed)
            wipe(private)

    def _record_root_key(self, step: Step, seed: bytearray, public: bytes,
                         record: dict[str, Any], files: dict[str, str]) -> None:
        """Record the tested root key, split the seed, write the PEM and close the action."""
        rk, token = self.script.root_key, self.devices.token
        created = self._write(ENGINE_ACTOR, step.id, "root_key.created", {
            "kind": rk.kind, "label": rk.label, "id": rk.key_id,
            "public_key": st.encode_key(public, rk.kind),
            "fingerprint": sha256_hex(public),
            "pairwise_check": "passed (signed on token, verified with cryptography)",
            "attributes": {"sensitive": True, "extractable": False},
            "derivation": DERIVATION_TEXT[rk.algorithm],
            **record,
        })
        self._split_shares(step, seed, {"fingerprint": sha256_hex(public),
                                        "created": created.time})
        pem = st.public_key_object(rk.kind, public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        if self.rehearsal:
            pem = b"REHEARSAL: not a production key\n" + pem
        _write_file(self.bundle / ROOT_PEM_FILE, pem)
        files = {**files, **self._public_codes(ROOT_PEM_FILE, pem)}
        self._write(ENGINE_ACTOR, step.id, "action.completed", {
            "action": step.action,
            "created": [o.as_dict() for o in token.find_objects(rk.label, rk.key_id)],
            "files": {ROOT_PEM_FILE: sha256_hex(pem), **files},
        })

    def _split_shares(self, step: Step, seed: bytearray,
                      sheet_facts: dict[str, str] | None = None) -> None:
        """Split the seed, hand each share to its sheet, prove every quorum, record the set.

        ``sheet_facts`` (the root key's fingerprint and the time it was recorded) go onto
        each share sheet, with the share set's identifier. With ``[shares] passphrase`` the
        passphrase typed before the action encrypts the set and the proof uses it; it is
        wiped afterwards, on every path, and the transcript only says one is required.
        """
        script = self.script
        scheme = script.shares
        passphrase = self._passphrase
        if scheme.passphrase and passphrase is None:
            raise UsageError("the SLIP-39 passphrase was not typed", hint="type it, then "
                             "retry the step", requirement="CER-PASSPHRASE")
        try:
            self._split_with(step, seed, passphrase, sheet_facts)
        finally:
            self._forget_passphrase()

    def _split_with(self, step: Step, seed: bytearray, passphrase: bytearray | None,
                    sheet_facts: dict[str, str] | None) -> None:
        script = self.script
        scheme = script.shares
        undeliverable = sorted({h for h, places in scheme.delivery for p in places
                                if not delivers_to(self.devices.secrets, p)})
        if undeliverable:  # (before the split: no share exists yet)
            raise CheckFailed(f"the script sends the shares of {', '.join(undeliverable)} to "
                              "their cards, but this run has no cards set up for them",
                              hint="run headless with [cards] in the answers file "
                                   "(docs/card-shares.md)", requirement="CER-SHARE-CARD")
        identifier, groups = self.devices.splitter.split(
            seed, scheme.group_threshold, [(g.threshold, len(g.members)) for g in scheme.groups],
            iteration_exponent=scheme.iteration_exponent, extendable=scheme.extendable,
            passphrase=passphrase)
        holders = []
        for gi, (group, mnemonics) in enumerate(zip(scheme.groups, groups, strict=True)):
            for mi, (member, mnemonic) in enumerate(zip(group.members, mnemonics, strict=True)):
                participant = script.participant(member)
                assert participant is not None
                where = self.devices.secrets.write_share(
                    member, participant.name, gi + 1, mi + 1, mnemonic,
                    {"ceremony": script.ceremony_id, "rehearsal": self.rehearsal,
                     "key_label": script.root_key.label, "identifier": identifier,
                     "delivery": list(scheme.delivery_of(member)), **(sheet_facts or {})})
                holders.append({"participant": member, "group": gi + 1, "member": mi + 1,
                                "commitment": share_commitment(script.ceremony_id, mnemonic),
                                "delivered_to": where})
        # Prove the whole set before the seed is gone: every minimal quorum (each choice of
        # groups, each threshold of their members) must give the same seed back.
        quorums = self.devices.splitter.prove_all(
            groups, scheme.group_threshold, [g.threshold for g in scheme.groups], seed,
            passphrase=passphrase)
        del groups
        self._write(ENGINE_ACTOR, step.id, "shares.created", {
            "scheme": "slip39", "identifier": identifier,
            "group_threshold": scheme.group_threshold,
            "groups": [{"threshold": g.threshold, "count": len(g.members)}
                       for g in scheme.groups],
            "iteration_exponent": scheme.iteration_exponent, "extendable": scheme.extendable,
            "passphrase": "required" if scheme.passphrase else "none",
            "holders": holders, "seed_fingerprint": seed_fingerprint(seed, script.ceremony_id),
            "reconstruction_check": {"quorums": quorums, "result": "passed",
                                     "method": "every minimal quorum to the same encrypted "
                                               "master secret; one decrypted to the seed"},
        })

    def _rollback_action(self, reason: str) -> None:
        self._forget_shares()
        step = self._step()
        if step is not None and step.action == "certify_root_key":
            # Certifying created files only: the root key and the shares stay.
            destroyed = {"destroyed_objects": [], "removed_share_sheets": 0,
                         "removed_files": self._remove_certificate_files()}
        else:
            destroyed = self._destroy_created()
        self._write(ENGINE_ACTOR, step.id if step else None, "action.rolled_back",
                    {"reason": reason, **destroyed})

    def _provision_rsa_root_key(self, step: Step) -> None:
        """An RSA root key: generated in the token, tested, exported once wrapped (rsa.py)."""
        token, script, rk = self.devices.token, self.script, self.script.root_key
        seed = self._collect_seed(step)
        try:
            public = token.generate_rsa(rk.kind, rk.label, rk.key_id)
            challenge = canonical_bytes({"type": "ceremony.pairwise.v1",
                                         "ceremony": script.ceremony_id,
                                         "key": st.encode_key(public, rk.kind)})
            signature = token.sign(rk.kind, rk.label, rk.key_id, challenge)
            if token.find_public(rk.kind, rk.label, rk.key_id) != public or \
                    not st.verify_signature(rk.kind, public, signature, challenge):
                raise TokenError("the new root key failed its pairwise-consistency test",
                                 hint="the token or its module is faulty; abort",
                                 requirement="CER-PAIRWISE")
            blob = rsa_keys.wrap_rsa(token, seed, rk)
            _write_file(self.bundle / st.WRAPPED_FILE, blob)
            self._record_root_key(step, seed, public,
                                  {"wrapped": st.wrapped_record(sha256_hex(blob))},
                                  {st.WRAPPED_FILE: sha256_hex(blob)})
        finally:
            wipe(seed)

    def _destroy_created(self) -> dict[str, Any]:
        rk = self.script.root_key
        objects = [o.as_dict() for o in self.devices.token.destroy(rk.label, rk.key_id)]
        if rk.algorithm == "rsa":  # a KEK left by a failure in the middle of a wrap
            objects += [o.as_dict() for o in self.devices.token.destroy(kek_label(rk.label),
                                                                         rk.key_id)]
        shares = self.devices.secrets.remove_all()
        pem = self.bundle / ROOT_PEM_FILE
        files = []
        if pem.exists():
            pem.unlink()
            files.append(ROOT_PEM_FILE)
        files += self._remove_codes(ROOT_PEM_FILE)
        if (self.bundle / st.WRAPPED_FILE).exists():
            (self.bundle / st.WRAPPED_FILE).unlink()
            files.append(st.WRAPPED_FILE)
        files += self._remove_certificate_files()
        return {"destroyed_objects": objects, "removed_share_sheets": len(shares),
                "removed_files": files}

    def _run_certify(self, step: Step) -> None:
        """certify_root_key: the action bracket around :meth:`_certify_root_key`."""
        self._bracketed(step, [], self._certify_root_key)

    def _certify_root_key(self, step: Step) -> None:
        """Build, sign on the token, verify and write the root certificate and/or CSR."""
        spec, rk, token = self.script.certificate, self.script.root_key, self.devices.token
        if spec is None or self.state.root_public is None:
            raise CheckFailed("there is no root key to certify", requirement="CER-CERTIFICATE")
        kind, public = st.decode_public_key(self.state.root_public)
        if token.find_public(kind, rk.label, rk.key_id) != public:
            raise TokenError("the root key on the token is not the one the transcript "
                             "records", hint="insert the token the ceremony started on",
                             requirement="CER-CERTIFICATE")

        def sign(data: bytes) -> bytes:
            if kind in st.RSA_BITS:  # sha256WithRSAEncryption, not the seal's PSS (certify.py)
                return token.sign_pkcs1v15(kind, rk.label, rk.key_id, data)
            return token.sign(kind, rk.label, rk.key_id, data)

        files: dict[str, str] = {}
        prefix = b"REHEARSAL: not a production key\n" if self.rehearsal else b""
        if spec.self_signed:
            serial = certify.serial_from(self.devices.os_random.random_bytes(16))
            built = certify.build_certificate(spec, kind, public, serial, self._now(), sign)
            cert = certify.check_certificate(built.der, spec, kind, public, serial)
            _write_file(self.bundle / CERTIFICATE_FILE, prefix + built.pem)
            files[CERTIFICATE_FILE] = sha256_hex(prefix + built.pem)
            files.update(self._public_codes(CERTIFICATE_FILE, built.pem))
            self._write(ENGINE_ACTOR, step.id, "certificate.created", {
                "file": CERTIFICATE_FILE, "serial": f"{serial:x}",
                "subject": spec.subject_text,
                "not_before": format_time(cert.not_valid_before_utc),
                "not_after": format_time(cert.not_valid_after_utc),
                "validity_days": spec.validity_days,
                "public_key": self.state.root_public,
                "signature_algorithm": certify.SIGNATURE_ALGORITHMS[kind],
                "fingerprint": sha256_hex(built.der),
                "check": "passed (verified under its own key with cryptography)"})
        if spec.csr:
            built = certify.build_csr(spec, kind, public, sign)
            certify.check_csr(built.der, spec, kind, public)
            _write_file(self.bundle / CSR_FILE, prefix + built.pem)
            files[CSR_FILE] = sha256_hex(prefix + built.pem)
            files.update(self._public_codes(CSR_FILE, built.pem))
            self._write(ENGINE_ACTOR, step.id, "csr.created", {
                "file": CSR_FILE, "subject": spec.subject_text,
                "public_key": self.state.root_public,
                "signature_algorithm": certify.SIGNATURE_ALGORITHMS[kind],
                "fingerprint": sha256_hex(built.der),
                "check": "passed (signature verified with cryptography)"})
        self._write(ENGINE_ACTOR, step.id, "action.completed",
                    {"action": step.action, "created": [], "files": files})

    # ---------------------------------------------------------------- recovery

    def _original(self) -> OriginalBundle:
        if self.original is None:
            raise ValueError("a recover_root_key step without an original bundle")
        return self.original

    def _shares_prompt(self, step: Step) -> SharesNeeded:
        record, presented = self._original().record, self.state.step.presented
        groups = tuple(
            GroupProgress(i + 1, g.threshold, g.members,
                          tuple(p for p, group, _ in presented if group == i + 1))
            for i, g in enumerate(self.script.shares.groups))
        return SharesNeeded(step.id, record.ceremony_id, record.fingerprint,
                            self.script.shares.group_threshold, groups)

    def _accept_share(self, step: Step, prompt: SharesNeeded, answer: ShareOffered) -> None:
        """Check one presented share against the original at once; record who presented it.

        Refused (one sentence naming the custodian, nothing written): someone who holds no
        share, a second presentation, words that are not a SLIP-39 share or fail its
        checksum, a share of another set, and a share whose commitment is not the one the
        original recorded for that custodian (another custodian's, or altered). The share
        itself stays in memory only, until the key is rebuilt or the action rolled back.
        """
        self._require_attested()
        record = self._original().record
        who, name = answer.participant, f"ceremony {record.ceremony_id}"
        holder = record.holder(who)
        if holder is None:
            raise QuorumError(f"{who!r} holds no share of {name}", hint="the holders are "
                              f"{', '.join(h.participant for h in record.holders)}",
                              requirement="CER-RECOVERY")
        if who in prompt.presented:
            raise QuorumError(f"{who} has already presented their share in this recovery",
                              hint="each custodian presents their share once",
                              requirement="CER-RECOVERY")
        try:
            info = self.devices.splitter.read_share(answer.mnemonic)
        except CheckFailed as exc:
            raise CheckFailed(f"the share {who} presented {exc.message}; it was not used",
                              hint=f"compare it word by word with {who}'s share sheet, then "
                                   "present it again", requirement="CER-RECOVERY") from None
        scheme = (record.identifier, record.group_threshold,
                  len(record.script.shares.groups), record.iteration_exponent,
                  record.extendable)
        if (info.identifier, info.group_threshold, info.group_count, info.iteration_exponent,
                info.extendable) != scheme:
            raise CheckFailed(f"the share {who} presented is a share of another set (share "
                              f"set {info.identifier}), not of {name} (share set "
                              f"{record.identifier})", hint=f"check that {who}'s share sheet "
                              f"names ceremony {record.ceremony_id}",
                              requirement="CER-RECOVERY")
        commitment = share_commitment(record.ceremony_id, info.mnemonic)
        if commitment != holder.commitment:
            other = record.holder_with(commitment)
            if other is not None:
                raise CheckFailed(f"the share presented as {who}'s is recorded as "
                                  f"{other.participant}'s (group {other.group} member "
                                  f"{other.member}), not {who}'s", hint="each custodian "
                                  "presents their own share, under their own name",
                                  requirement="CER-RECOVERY")
            raise CheckFailed(f"the share {who} presented does not match {who}'s recorded "
                              "share: it is corrupt or someone else's", hint="compare it "
                              f"word by word with {who}'s share sheet; if it reads the same, "
                              "the sheet was altered", requirement="CER-RECOVERY")
        s = self.state.step
        if s.action_started is None or s.action_done:
            rk = self.script.root_key
            self._write(self.admin, step.id, "action.started",
                        {"action": step.action,
                         "will_create": [{"label": rk.label, "id": rk.key_id}]})
        self._write(who, step.id, "share.presented",
                    {"participant": who, "group": holder.group, "member": holder.member,
                     "commitment": holder.commitment})
        self._shares[who] = info.mnemonic

    def _forget_shares(self) -> None:
        # Python strings cannot be wiped (docs/kdf.md); dropping them is what can be done.
        self._shares.clear()
        self._forget_typed()

    # ---------------------------------------------------------------- dice and passphrase

    def _typed_secret_prompt(self, step: Step) -> DiceNeeded | PassphraseNeeded | None:
        """Dice, then the passphrase, before a key step's action (while not done) and only
        while they are not in memory: a crash or a rollback asks for them again."""
        if self.state.step.action_done or step.action not in ("provision_root_key",
                                                               "recover_root_key"):
            return None
        entropy = self.script.entropy
        if step.action == "provision_root_key" and entropy.dice_rolls and self._dice is None:
            assert entropy.dice_roller is not None
            return DiceNeeded(step.id, entropy.dice_rolls, entropy.dice_roller)
        if step.action == "provision_root_key":
            needed, purpose = self.script.shares.passphrase, "split"
        else:
            needed, purpose = self._original().record.passphrase, "recover"
        if needed and self._passphrase is None:
            return PassphraseNeeded(step.id, purpose, SILENT_MISMATCH_WARNING)
        return None

    def _accept_dice(self, prompt: DiceNeeded, answer: DiceRolls) -> None:
        """Keep a copy of the rolls (exactly the count, each 1 to 6); the answer's buffer is
        wiped either way. Nothing is written: the health tests run when the seed is made."""
        try:
            self._require_attested()  # (dice are a secret: CER-ATTEST)
            check_rolls(answer.rolls, prompt.count)
            self._dice = bytearray(answer.rolls)
        finally:
            wipe(answer.rolls)

    def _accept_passphrase(self, prompt: PassphraseNeeded, answer: Passphrase) -> None:
        """Keep a copy of the passphrase (printable ASCII; at the split, typed the same
        twice); the answer's buffers are wiped either way. Nothing is written."""
        try:
            self._require_attested()  # (the passphrase is a secret: CER-ATTEST)
            check_passphrase(answer.value)
            if prompt.twice and (answer.repeated is None
                                 or not same_secret(answer.value, answer.repeated)):
                raise InputError("the two typings of the passphrase differ",
                                 hint="type the passphrase twice, the same both times",
                                 requirement="CER-PASSPHRASE")
            self._passphrase = bytearray(answer.value)
        finally:
            _wipe_answer(answer)

    def _forget_passphrase(self) -> None:
        if self._passphrase is not None:
            wipe(self._passphrase)
        self._passphrase = None

    def _forget_typed(self) -> None:
        if self._dice is not None:
            wipe(self._dice)
        self._dice = None
        self._forget_passphrase()

    def _recover_root_key(self, step: Step) -> None:
        """Rebuild the seed and the root key; compare before the token; import and test.

        The rebuilt key's public half is computed on the host (Ed25519, ECDSA: derived;
        RSA: the original's wrapped blob opened with the seed's KEK) and its fingerprint
        compared with the original's, then the seed's fingerprint with the original's, all
        before any token call: shares that rebuild another key put nothing on the token.
        """
        self._require_attested()
        original = self._original()
        record, token, rk = original.record, self.devices.token, self.script.root_key
        presented = list(self.state.step.presented)
        if record.passphrase and self._passphrase is None:
            raise UsageError("the SLIP-39 passphrase was not typed", hint="type it, then "
                             "rebuild the key", requirement="CER-PASSPHRASE")
        try:
            seed = self.devices.splitter.recover([self._shares[p] for p, _, _ in presented],
                                                 passphrase=self._passphrase)
        finally:
            self._forget_shares()
        private = bytearray()
        try:
            blob = original.wrapped_blob() if rk.algorithm == "rsa" else b""
            if rk.algorithm == "rsa":
                expected = rsa_keys.public_from_blob(seed, rk, blob)
            else:
                private = derive_root_private(seed, rk)
                expected = public_from_private(rk.kind, private)
            fingerprint = sha256_hex(expected)
            if fingerprint != record.fingerprint or \
                    st.encode_key(expected, rk.kind) != record.public_key:
                if record.passphrase:  # the likeliest cause: a mistyped passphrase
                    raise CheckFailed(f"the shares and the passphrase rebuild a root key "
                                      f"with fingerprint {fingerprint}, not the root key of "
                                      f"ceremony {record.ceremony_id} ({record.fingerprint}); "
                                      "nothing was put on the token", hint="a wrong "
                                      "passphrase silently rebuilds another key: type the "
                                      "passphrase again, then present the shares again",
                                      requirement="CER-PASSPHRASE")
                raise CheckFailed(f"the shares rebuild a root key with fingerprint "
                                  f"{fingerprint}, not the root key of ceremony "
                                  f"{record.ceremony_id} ({record.fingerprint}); nothing was "
                                  "put on the token", hint="check that the shares and the "
                                  "original bundle are of the same ceremony",
                                  requirement="CER-RECOVERY")
            if seed_fingerprint(seed, record.ceremony_id) != record.seed_fingerprint:
                raise CheckFailed(f"the shares rebuild another seed than ceremony "
                                  f"{record.ceremony_id}'s; nothing was put on the token",
                                  requirement="CER-RECOVERY")
            # Only now the token: the key is the original's.
            if rk.algorithm == "rsa":
                public = rsa_keys.rebuild_rsa(token, seed, rk, blob)
            else:
                public = token.import_key(rk.kind, rk.label, rk.key_id, private)
                wipe(private)
            challenge = canonical_bytes({"type": "ceremony.pairwise.v1",
                                         "ceremony": self.script.ceremony_id,
                                         "key": st.encode_key(expected, rk.kind)})
            signature = token.sign(rk.kind, rk.label, rk.key_id, challenge)
            if public != expected or token.find_public(rk.kind, rk.label, rk.key_id) != \
                    expected or not st.verify_signature(rk.kind, expected, signature,
                                                        challenge):
                raise TokenError("the recovered root key failed its pairwise-consistency "
                                 "test", hint="the token or its module is faulty; abort",
                                 requirement="CER-PAIRWISE")
        finally:
            wipe(seed)
            wipe(private)
        self._write(ENGINE_ACTOR, step.id, "root_key.recovered", {
            "kind": rk.kind, "label": rk.label, "id": rk.key_id,
            "public_key": st.encode_key(public, rk.kind), "fingerprint": sha256_hex(public),
            "original_ceremony": record.ceremony_id, "original_head": record.head,
            "contributors": [{"participant": p, "group": g, "member": m}
                             for p, g, m in presented],
            "fingerprint_check": FINGERPRINT_CHECK, "seed_check": SEED_CHECK,
            "pairwise_check": "passed (signed on token, verified with cryptography)",
            "attributes": {"sensitive": True, "extractable": False},
            "derivation": RECOVERY_DERIVATION_TEXT[rk.algorithm],
        })
        pem = st.public_key_object(rk.kind, public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        if self.rehearsal:
            pem = b"REHEARSAL: not a production key\n" + pem
        _write_file(self.bundle / ROOT_PEM_FILE, pem)
        codes = self._public_codes(ROOT_PEM_FILE, pem)
        self._write(ENGINE_ACTOR, step.id, "action.completed", {
            "action": step.action,
            "created": [o.as_dict() for o in token.find_objects(rk.label, rk.key_id)],
            "files": {ROOT_PEM_FILE: sha256_hex(pem), **codes},
        })

    def _remove_certificate_files(self) -> list[str]:
        removed = []
        for name in (CERTIFICATE_FILE, CSR_FILE):
            if (self.bundle / name).exists():
                (self.bundle / name).unlink()
                removed.append(name)
            removed += self._remove_codes(name)
        return removed

    def _public_codes(self, name: str, pem: bytes) -> dict[str, str]:
        """QR parts of a public file in BUNDLE/qr, read back before the step records them.

        The parts carry the PEM itself (a rehearsal's marker line stays in the file; the
        parts' names say REHEARSAL instead). Returns {relative path: SHA-256} for the
        action's ``files``.
        """
        codes = self.devices.codes
        if codes is None:
            return {}
        body = pem.split(b"\n", 1)[1] if pem.startswith(b"REHEARSAL") else pem
        directory = self.bundle / QR_DIR
        names = codes.write(directory, _code_stem(name, self.rehearsal), "pem", body)
        return {f"{QR_DIR}/{n}": sha256_hex((directory / n).read_bytes()) for n in names}

    def _remove_codes(self, name: str) -> list[str]:
        """Remove the QR parts of the public file ``name`` (a rollback); their paths."""
        directory = self.bundle / QR_DIR
        if not directory.is_dir():
            return []
        removed = []
        for path in sorted(directory.glob(f"{_code_stem(name, self.rehearsal)}-qr-*")):
            path.unlink()
            removed.append(f"{QR_DIR}/{path.name}")
        return removed

    def _abort(self, reason: str) -> None:
        self._forget_shares()
        destroyed = self._destroy_created()
        step = self._step()
        self._write(self.admin, step.id if step else None, "ceremony.aborted",
                    {"reason": reason, **destroyed})
        self._seal("aborted")


ACTION_TEXT = {
    "none": "Complete this step.",
    "provision_root_key": "Generate the seed from OS and token randomness, derive the root "
                          "key, install it in the token as non-extractable, test it, and "
                          "split the seed into SLIP-39 shares for the custodians.",
    "certify_root_key": "Build the root certificate and/or certificate signing request the "
                        "script describes, sign it with the root key on the token, verify "
                        "it, and write it to the bundle.",
    "recover_root_key": "Rebuild the seed from the custodians' shares, rebuild the root key, "
                        "check its fingerprint is the original's before the token is "
                        "touched, install it in the token as non-extractable and test it.",
}

# What root_key.created records as the derivation (docs/kdf.md has the details).
DERIVATION_TEXT = {"ed25519": "hkdf-sha256 (docs/kdf.md)",
                   "ecdsa": "hkdf-sha256, +8 bytes reduced into [1, n-1] (docs/kdf.md)",
                   "rsa": "generated in the token; exported once, wrapped under an aes-256 "
                          "key-encryption key derived from the seed (docs/kdf.md)"}

# What root_key.recovered records as the derivation: the same key, rebuilt.
RECOVERY_DERIVATION_TEXT = {
    "ed25519": DERIVATION_TEXT["ed25519"], "ecdsa": DERIVATION_TEXT["ecdsa"],
    "rsa": "unwrapped from the original's root-key.wrapped under the key-encryption key "
           "derived from the seed (docs/kdf.md)"}


def _wipe_answer(answer: Answer) -> None:
    """Overwrite the secret buffers of a typed answer (dice, passphrase)."""
    if isinstance(answer, DiceRolls):
        wipe(answer.rolls)
    elif isinstance(answer, Passphrase):
        wipe(answer.value)
        if answer.repeated is not None:
            wipe(answer.repeated)


def public_from_private(kind: str, private: bytearray) -> bytes:
    """The public key bytes (as the transcript encodes them) of a derived private key.

    Computed on the host so the pairwise test compares the token's key with an independent
    result: Ed25519's raw 32 bytes, or ECDSA's uncompressed point.
    """
    if kind == "ed25519":
        return Ed25519PrivateKey.from_private_bytes(bytes(private)).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key = ec.derive_private_key(int.from_bytes(private, "big"), st.EC_CURVES[kind][0])
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


REHEARSAL_NOTE = """REHEARSAL
This bundle was made by `ceremony rehearse` on a throwaway SoftHSM2 token with simulated
custodians. Nothing in it is a production key; do not trust it for anything but practice.
"""


# The PKCS#11 mechanisms a ceremony uses, by root-key kind (the transcript key is always
# Ed25519). Recorded in ceremony.started so an auditor knows what the token was asked to do.
_TRANSCRIPT_MECHANISMS = ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA"]
_ROOT_MECHANISMS = {
    "ed25519": [],
    "ecdsa-p256": ["ECDSA"],
    "ecdsa-p384": ["ECDSA"],
    "rsa-3072": ["RSA_PKCS_KEY_PAIR_GEN", "SHA256_RSA_PKCS_PSS", "AES_KEY_WRAP_PAD"],
    "rsa-4096": ["RSA_PKCS_KEY_PAIR_GEN", "SHA256_RSA_PKCS_PSS", "AES_KEY_WRAP_PAD"],
}
# What a certify_root_key step adds: RSA certificates and CSRs are sha256WithRSAEncryption
# (PKCS#1 v1.5, engine/certify.py); the other kinds sign them as they sign the seal.
_CERTIFY_MECHANISMS = {"rsa-3072": ["SHA256_RSA_PKCS"], "rsa-4096": ["SHA256_RSA_PKCS"]}


def mechanisms_for(script: Script) -> list[str]:
    """The mechanisms this script's ceremony uses on the token."""
    kind = script.root_key.kind
    certify_mechanisms = _CERTIFY_MECHANISMS.get(kind, []) if script.certificate else []
    root = _ROOT_MECHANISMS[kind]
    if script.recovery is not None:  # an RSA key is unwrapped into the token, not generated
        root = [m for m in root if m != "RSA_PKCS_KEY_PAIR_GEN"]
    return _TRANSCRIPT_MECHANISMS + root + certify_mechanisms


def check_token_identity(script: Script, description: dict[str, Any]) -> None:
    """Refuse a token other than the one the script pins (before anything is written)."""
    for name, expected in (("serial", script.token.serial), ("model", script.token.model)):
        found = str(description.get(name, "")).strip()
        if expected is not None and found != expected:
            raise TokenError(f"the token's {name} is {found!r}, but the script expects "
                             f"{expected!r}; nothing was written",
                             hint="insert the token the script names, or fix token."
                                  f"{name} in the script", requirement="CER-TOKEN-PIN")
    problem = script.token.activation.problem(description.get("activation"))
    if problem:
        raise QuorumError(f"the token was not activated as the script requires: {problem}; "
                          "nothing was written", hint="log in as token.activation in the "
                          "script says (docs/hsm-guide.md)", requirement="CER-ACTIVATION")


def _check_original(script: Script, original: OriginalBundle | None, rehearsal: bool) -> None:
    """A recovery script needs the original it names, and fits it; others take none."""
    if script.recovery is None:
        if original is not None:
            raise UsageError("the script has no [recovery] table, so it recovers nothing",
                             hint="run it with `ceremony run`, or add a [recovery] table")
        return
    if original is None:
        raise UsageError(f"the script recovers ceremony {script.recovery.ceremony}: give its "
                         "bundle with --original BUNDLE", hint="run it with `ceremony recover "
                         "SCRIPT --original BUNDLE` (docs/recovery-guide.md)",
                         requirement="CER-RECOVERY")
    problem = recovery_problem(script, original.record, rehearsal=rehearsal)
    if problem:
        raise CheckFailed(f"{problem}; nothing was written", hint="the [recovery] table, "
                          "[root_key] and [shares] of the script must name the original "
                          f"bundle {original.path} (docs/recovery-guide.md)",
                          requirement="CER-RECOVERY")


def _check_attested(record: dict[str, Any] | None, script: Script, policy: Policy,
                    rehearsal: bool, devices: Devices) -> None:
    """Refuse a record that does not pass (before anything is written); a policy waiver's
    signatures are checked as of now."""
    at = format_time(devices.clock.now()) if policy_waived(record) else None
    require_attested(record, policy, rehearsal, script=script, at=at)


def _check_runnable(script: Script, policy: Policy, script_bytes: bytes, policy_bytes: bytes,
                    rehearsal: bool) -> None:
    if sha256_hex(script_bytes) != script.sha256 or sha256_hex(policy_bytes) != policy.sha256:
        raise ValueError("script or policy bytes do not match the parsed objects")
    violations = check_policy(script, policy, rehearsal=rehearsal)
    if violations:
        raise violations[0]


_write_file = write_atomically  # (temp file, fsync, rename, fsync the directory)


def _code_stem(name: str, rehearsal: bool) -> str:
    """The QR parts' name stem for a public file: root-public-key, or ...-REHEARSAL."""
    stem = name.rsplit(".", 1)[0]
    return f"{stem}-REHEARSAL" if rehearsal else stem


def checksum_list(bundle: Path) -> bytes:
    """``sha256sum``-compatible lines for every bundle file except the list and its signature."""
    lines = []
    for path in sorted(bundle.rglob("*")):
        rel = path.relative_to(bundle).as_posix()
        if path.is_file() and rel not in (CHECKSUMS_FILE, CHECKSUMS_SIG_FILE):
            lines.append(f"{sha256_hex(path.read_bytes())}  {rel}\n")
    return "".join(lines).encode()


def _apply(script: Script, state: _State, entry: Entry) -> _State:
    """Fold one transcript entry into the engine state (used live and on resume)."""
    s = state
    event, p = entry.event, entry.payload
    if event == "step.started":
        s.step = _StepState(started=True, started_at=entry.time)
    elif event == "approval":
        s.step.approvals.append(entry.actor)
    elif event == "witness.ack":
        s.step.witnesses.append(entry.actor)
    elif event == "confirmation":
        s.step.confirmed = True
    elif event == "action.started":
        s.step.action_started = p
        s.step.action_done = False
        s.step.presented = []
    elif event == "share.presented":
        s.step.presented.append((entry.actor, p["group"], p["member"]))
    elif event == "action.completed":
        s.step.action_done = True
    elif event == "action.rolled_back":
        s.step.failures += 1
        s.step.failure = str(p.get("reason", ""))
        if (s.step.action_started or {}).get("action") != "certify_root_key":
            s.root_public = None  # undoing a certification leaves the root key in place
        s.step.action_started = None
        s.step.action_done = False
        s.step.presented = []
    elif event in ("root_key.created", "root_key.recovered"):
        st.decode_public_key(p["public_key"])  # a malformed key stops a resume here
        s.root_public = p["public_key"]
    elif event == "step.completed":
        s.index += 1
        s.step = _StepState()
        s.steps_done_at = entry.time
    elif event == "deviation":
        s.step.deviations.append((p["kind"], p["reason"]))
        if p["kind"] == "step-retried":
            s.step.retries += 1
        if p["quorum"] > 0:
            s.deviation = _Deviation(entry.seq, entry_hash(entry.line()), entry.time,
                                     entry.step, p["kind"], p["reason"], p["quorum"],
                                     entry.actor)
    elif event == "deviation.approved":
        if s.deviation is not None:
            s.deviation.approvals.append(entry.actor)
            if len(s.deviation.approvals) >= s.deviation.quorum:
                s.deviation = None
    elif event == "seal.witnessed":
        s.seal_witnesses.append((entry.actor, entry.seq))
    elif event == "ceremony.aborted":
        s.outcome = "aborted"
        s.root_public = None
    elif event == "seal":
        s.sealed = True
        s.outcome = p["statement"]["outcome"]
    return s


def _fold(script: Script, entries: list[Entry]) -> _State:
    state = _State()
    for entry in entries:
        state = _apply(script, state, entry)
    return state
