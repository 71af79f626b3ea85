"""What the engine asks for (prompts) and what front ends answer (answers); all frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BeginStep:
    """A new step: show its instructions; answer with :class:`Begin`."""

    step: str
    index: int
    total: int
    title: str
    instructions: str


@dataclass(frozen=True)
class ApprovalNeeded:
    """Signed approvals (custodians) or acknowledgements (witnesses) still missing.

    ``statement`` is what the next participant signs (with their own name filled in by
    :meth:`for_participant`); answer with :class:`Approval`.
    """

    step: str
    role: str
    eligible: tuple[str, ...]
    collected: tuple[str, ...]
    needed: int
    template: dict[str, Any]
    # "step": a step's approvals or acknowledgements; "deviation": custodians approve going
    # on after a deviation (``step`` is the step it was declared in, or ""); "seal": the
    # witnesses co-sign the seal after the last step (``step`` is "") (ADR 15).
    kind: str = "step"

    def for_participant(self, participant: str) -> dict[str, Any]:
        return {**self.template, "participant": participant}

    @property
    def what(self) -> str:
        """What is being signed, for sentences: "approval", "seal co-signature", ..."""
        if self.kind == "seal":
            return "seal co-signature"
        if self.kind == "deviation":
            return "deviation approval"
        return "approval" if self.role == "custodian" else "witness acknowledgement"


@dataclass(frozen=True)
class ConfirmationNeeded:
    """The administrator must type ``phrase`` exactly; answer with :class:`TypedConfirmation`."""

    step: str
    phrase: str


@dataclass(frozen=True)
class ActionReady:
    """Everything the step needs is in; answer :class:`Proceed` to do it."""

    step: str
    action: str
    description: str


@dataclass(frozen=True)
class GroupProgress:
    """One share group of a recovery: who holds its shares, who has presented theirs."""

    group: int  # 1-based
    threshold: int
    holders: tuple[str, ...]  # in member order
    presented: tuple[str, ...]  # in the order they were presented

    @property
    def complete(self) -> bool:
        return len(self.presented) >= self.threshold

    def describe(self) -> str:
        """``group 1: 1 of 2 (alice)``: what a front end shows for the group."""
        who = f" ({', '.join(self.presented)})" if self.presented else ""
        done = ", complete" if self.complete else ""
        return f"group {self.group}: {len(self.presented)} of {self.threshold}{who}{done}"


@dataclass(frozen=True)
class SharesNeeded:
    """A recovery: custodians present their shares of the original ceremony, in any order.

    Answer :class:`ShareOffered` for each; every share is checked at once and a bad one is
    refused with a sentence naming the custodian. Once ``ready`` (``group_threshold`` groups
    complete), :class:`Proceed` rebuilds the key, compares its fingerprint with
    ``fingerprint`` before the token is touched, and imports it; more shares may still be
    offered first (every one is checked against the others).
    """

    step: str
    original: str  # the original ceremony's id
    fingerprint: str  # the original root key's fingerprint, which the rebuilt key must have
    group_threshold: int
    groups: tuple[GroupProgress, ...]

    @property
    def ready(self) -> bool:
        return sum(g.complete for g in self.groups) >= self.group_threshold

    @property
    def presented(self) -> tuple[str, ...]:
        return tuple(p for g in self.groups for p in g.presented)

    @property
    def eligible(self) -> tuple[str, ...]:
        """Holders who have not presented yet."""
        return tuple(h for g in self.groups for h in g.holders if h not in g.presented)

    @property
    def needed(self) -> int:
        """The fewest shares that complete a quorum (the smallest group thresholds)."""
        return sum(sorted(g.threshold for g in self.groups)[: self.group_threshold])

    def describe(self) -> str:
        """One line of progress, e.g. ``1 of 1 groups needed; group 1: 1 of 2 (alice)``."""
        complete = sum(g.complete for g in self.groups)
        return (f"{complete} of {self.group_threshold} group(s) complete; "
                + "; ".join(g.describe() for g in self.groups))


@dataclass(frozen=True)
class DiceNeeded:
    """Before the seed is made: ``roller`` rolls a six-sided die ``count`` times and types
    the rolls; answer :class:`DiceRolls`. The rolls stay in the engine's memory until the
    seed is mixed, never written: after a crash they are asked for again."""

    step: str
    count: int
    roller: str


@dataclass(frozen=True)
class PassphraseNeeded:
    """The SLIP-39 passphrase: typed twice before the shares are made (``purpose``
    "split"), once before a recovery rebuilds the seed ("recover"); answer
    :class:`Passphrase`. ``warning`` is what a front end shows next to the fields."""

    step: str
    purpose: str  # "split" | "recover"
    warning: str

    @property
    def twice(self) -> bool:
        return self.purpose == "split"


@dataclass(frozen=True)
class Finished:
    """The ceremony is sealed; nothing more to answer."""

    outcome: str  # "completed" | "aborted"
    head: str
    root_public_key: str | None


Prompt = (BeginStep | ApprovalNeeded | ConfirmationNeeded | ActionReady | SharesNeeded
          | DiceNeeded | PassphraseNeeded | Finished)


@dataclass(frozen=True)
class Begin:
    pass


@dataclass(frozen=True)
class Approval:
    participant: str
    statement: dict[str, Any]
    signature: bytes


@dataclass(frozen=True)
class TypedConfirmation:
    text: str


@dataclass(frozen=True)
class Proceed:
    pass


@dataclass(frozen=True)
class Abort:
    reason: str


@dataclass(frozen=True)
class ShareOffered:
    """A custodian presents their SLIP-39 share (recovery). The words never leave memory:
    they are not recorded, not printed and not in ``repr``."""

    participant: str
    mnemonic: str = field(repr=False)


@dataclass(frozen=True)
class DiceRolls:
    """The rolls, one byte per roll (values 1 to 6), in the order rolled. The engine takes
    a copy and wipes this buffer, accepted or not; the rolls are never in ``repr``."""

    rolls: bytearray = field(repr=False)


@dataclass(frozen=True)
class Passphrase:
    """The SLIP-39 passphrase, and (at the split) the second typing of it, as printable
    ASCII bytes. The engine wipes both buffers, accepted or not; never in ``repr``."""

    value: bytearray = field(repr=False)
    repeated: bytearray | None = field(default=None, repr=False)


Answer = (Begin | Approval | TypedConfirmation | Proceed | Abort | ShareOffered | DiceRolls
          | Passphrase)


@dataclass(frozen=True)
class Status:
    ceremony_id: str
    rehearsal: bool
    step_index: int  # 0-based index of the current step; == steps_total when all are done
    steps_total: int
    step_id: str | None
    # begin | approvals | witnesses | deviation | seal | confirm | dice | passphrase | shares
    # | action | finished
    phase: str
    collected: tuple[str, ...]
    needed: int
    seq: int
    head: str
    outcome: str | None
