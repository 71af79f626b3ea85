"""One error hierarchy for everything a user can get wrong or a device can refuse.

Every error carries one plain sentence (``message``), what to do next (``hint``) and,
where a security property is at stake, the requirement id it enforces (see
docs/requirements.md). The CLI alone maps the ``kind`` of an error to an exit code;
``ValueError`` and friends are programming mistakes, never user input.
"""

from __future__ import annotations

from enum import Enum


class Kind(Enum):
    """What went wrong, in the terms the exit codes use (see docs/exit-codes.md)."""

    CHECK_FAILED = 1  # a verification, policy or quorum check failed
    BAD_INPUT = 2  # bad usage or malformed input
    DEVICE = 3  # HSM, card or printer error
    INTERRUPTED = 130


class CeremonyError(Exception):
    """Base of every error a user should see as one plain sentence."""

    kind: Kind = Kind.BAD_INPUT

    def __init__(self, message: str, *, hint: str = "", requirement: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.requirement = requirement

    def __str__(self) -> str:
        return self.message

    def describe(self) -> str:
        """The message, the requirement id and the hint, as the CLI prints them."""
        text = self.message
        if self.requirement:
            text += f" [{self.requirement}]"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class InputError(CeremonyError):
    """A file or argument the user gave is malformed (exit 2)."""

    kind = Kind.BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        line: int | None = None,
        field: str = "",
        hint: str = "",
        requirement: str = "",
    ) -> None:
        self.file = file
        self.line = line
        self.field = field
        where = file
        if file and line is not None:
            where = f"{file}:{line}"
        prefix = where
        if field:
            prefix = f"{where}: {field}" if where else field
        full = f"{prefix}: {message}" if prefix else message
        super().__init__(full, hint=hint, requirement=requirement)


class ScriptError(InputError):
    """The ceremony script is malformed."""


class PolicyFileError(InputError):
    """The policy file is malformed."""


class AnswersError(InputError):
    """The answers file for a headless run is malformed."""


class BundleFormatError(InputError):
    """A bundle or transcript cannot be parsed at all."""


class UsageError(InputError):
    """The command line is wrong, or the command would destroy something."""


class CheckFailed(CeremonyError):
    """A check failed: policy, quorum, verification (exit 1)."""

    kind = Kind.CHECK_FAILED


class PolicyViolation(CheckFailed):
    """A well-formed script breaks its policy."""


class QuorumError(CheckFailed):
    """An approval is missing, duplicated, from the wrong person or badly signed."""


class VerificationError(CheckFailed):
    """A transcript or bundle does not verify."""


class DeviceError(CeremonyError):
    """An HSM, card, printer or file system refused (exit 3)."""

    kind = Kind.DEVICE


class TokenError(DeviceError):
    """The PKCS#11 module or token failed or is not the one expected."""


class CardError(DeviceError):
    """A smartcard, its reader or the PC/SC service refused (wrong PIN, blocked, no card)."""


class Interrupted(CeremonyError):
    """The operator interrupted the ceremony (exit 130)."""

    kind = Kind.INTERRUPTED
