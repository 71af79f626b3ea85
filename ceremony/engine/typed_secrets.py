"""Secrets people type: custodian dice rolls and the SLIP-39 passphrase.

Parsing and checking only, shared by the engine, the headless runner and the UI. Every
refusal names a position (the 7th roll, the 3rd character), never a value, and nothing
here copies a secret into an immutable object: rolls and passphrases stay in bytearrays
that the caller wipes.
"""

from __future__ import annotations

from ceremony.errors import InputError

# SLIP-39 passphrases are printable ASCII (code points 32 to 126).
PASSPHRASE_MIN = 1
PASSPHRASE_MAX = 256
_SEPARATORS = frozenset(b" \t\r\n,")
_DIGITS = range(ord("0"), ord("9") + 1)

SILENT_MISMATCH_WARNING = (
    "A wrong passphrase is not refused when the shares are combined: it silently gives "
    "another secret. Only the root key's fingerprint check at recovery tells the "
    "difference. Keep the passphrase apart from the shares, and so that a recovery team "
    "can find it.")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def parse_rolls(text: bytes | bytearray | memoryview) -> bytearray:
    """Dice rolls typed as digits, with or without spaces (commas and newlines too), as
    one byte per roll (1 to 6). Refused with a sentence naming the first bad roll's
    position, never its value; the partial result is wiped before the refusal."""
    rolls = bytearray()
    view = memoryview(text).cast("B")
    try:
        for char in view:
            if char in _SEPARATORS:
                continue
            position = len(rolls) + 1
            if char not in _DIGITS or not 1 <= char - ord("0") <= 6:
                wipe_buffer(rolls)
                what = "is not a digit" if char not in _DIGITS else "is not 1 to 6"
                raise InputError(f"the {_ordinal(position)} roll {what}; a die shows 1 to 6",
                                 hint="type each roll as one digit from 1 to 6, with or "
                                      "without spaces", requirement="CER-DICE")
            rolls.append(char - ord("0"))
    finally:
        view.release()
    return rolls


def check_rolls(rolls: bytearray, count: int) -> None:
    """Exactly ``count`` rolls, each 1 to 6 (the engine's own check of an answer)."""
    for index, value in enumerate(rolls):
        if not 1 <= value <= 6:
            raise InputError(f"the {_ordinal(index + 1)} roll is not 1 to 6; a die shows 1 "
                             "to 6", hint="type the rolls again", requirement="CER-DICE")
    if len(rolls) != count:
        raise InputError(f"{len(rolls)} rolls were typed; the script asks for exactly "
                         f"{count}", hint=f"roll and type {count} rolls",
                         requirement="CER-DICE")


def check_passphrase(value: bytearray) -> None:
    """A SLIP-39 passphrase: 1 to 256 printable ASCII characters (no value in a refusal)."""
    if not PASSPHRASE_MIN <= len(value) <= PASSPHRASE_MAX:
        raise InputError(f"the passphrase has {len(value)} characters; it needs "
                         f"{PASSPHRASE_MIN} to {PASSPHRASE_MAX}", hint="type the passphrase "
                         "again", requirement="CER-PASSPHRASE")
    for index, char in enumerate(value):
        if not 32 <= char <= 126:
            raise InputError(f"the {_ordinal(index + 1)} character of the passphrase is not "
                             "printable ASCII (SLIP-39 allows only letters, digits, spaces "
                             "and ASCII punctuation)", hint="type the passphrase again",
                             requirement="CER-PASSPHRASE")


def same_secret(a: bytearray, b: bytearray) -> bool:
    """Constant-time equality of two typed secrets."""
    import hmac

    return hmac.compare_digest(a, b)


def wipe_buffer(buffer: bytearray) -> None:
    for i in range(len(buffer)):
        buffer[i] = 0


def read_secret_file(path: str, what: str) -> bytearray:
    """A file's bytes straight into a bytearray (no immutable copy), without one trailing
    newline. ``what`` names the file in a refusal ("the dice file")."""
    import os

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path} ({exc.strerror})",
                         hint="check the path in the answers file") from None
    try:
        size = os.fstat(fd).st_size
        buffer = bytearray(size)
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as handle:
            got = handle.readinto(buffer)
        if got != size:
            wipe_buffer(buffer)
            raise InputError(f"{what} {path} changed while it was read",
                             hint="read it again")
    finally:
        os.close(fd)
    for ending in (b"\r\n", b"\n"):
        if buffer.endswith(ending):
            buffer[-len(ending):] = b"\0" * len(ending)
            del buffer[-len(ending):]
            break
    return buffer
