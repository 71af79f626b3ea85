"""What the engine asks for (prompts) and what front ends answer (answers); all frozen."""

from __future__ import annotations

from dataclasses import dataclass
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

    def for_participant(self, participant: str) -> dict[str, Any]:
        return {**self.template, "participant": participant}


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
class Finished:
    """The ceremony is sealed; nothing more to answer."""

    outcome: str  # "completed" | "aborted"
    head: str
    root_public_key: str | None


Prompt = BeginStep | ApprovalNeeded | ConfirmationNeeded | ActionReady | Finished


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


Answer = Begin | Approval | TypedConfirmation | Proceed | Abort


@dataclass(frozen=True)
class Status:
    ceremony_id: str
    rehearsal: bool
    step_index: int  # 0-based index of the current step; == steps_total when all are done
    steps_total: int
    step_id: str | None
    phase: str  # begin | approvals | witnesses | confirm | action | finished
    collected: tuple[str, ...]
    needed: int
    seq: int
    head: str
    outcome: str | None
