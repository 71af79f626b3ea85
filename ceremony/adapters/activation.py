"""Split-knowledge activation: random token PINs that no one sees, split among officers.

`ceremony hsm activate` takes a token over from its transport PINs: it draws a random
user PIN and SO PIN (128 bits each, written as 32 hex digits), splits each with SLIP-39
among the crypto officers the script names (one group, M of N, officer i holding member
share i), writes each officer's PIN share sheet to a secret directory, and only then sets
the PINs on the token (C_InitPIN as the SO, then C_SetPIN of the SO PIN). Logging in later
takes M officers presenting their user-PIN shares: ``combine_pin`` checks each share
(words, checksum, which officer it belongs to) before the token sees a PIN, so a mistyped
share never costs one of the token's PIN retries. See docs/hsm-guide.md and ADR 0008.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import shamir_mnemonic
from shamir_mnemonic import shamir
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from ceremony.adapters.pkcs11_token import find_token, text_value, token_error
from ceremony.engine.derive import wipe
from ceremony.errors import InputError, QuorumError, TokenError, UsageError
from ceremony.model.script import Activation, Script

PIN_SECRET_BYTES = 16  # 128 bits: the PIN is their 32 lower-case hex digits
SHEETS_DIR = "pin-shares"
_LOCK = threading.Lock()


def pin_from_secret(secret: bytes | bytearray) -> bytearray:
    """The PIN the token is given for a PIN secret: its hex digits, as ASCII."""
    out = bytearray(len(secret) * 2)
    digits = b"0123456789abcdef"
    for i, byte in enumerate(secret):
        out[2 * i], out[2 * i + 1] = digits[byte >> 4], digits[byte & 15]
    return out


def split_secret(secret: bytearray, activation: Activation,
                 random_bytes: Callable[[int], bytes] | None = None) -> dict[str, str]:
    """Each officer's SLIP-39 share of ``secret`` (officer i gets member i, M of N)."""
    with _LOCK:
        saved = shamir.RANDOM_BYTES
        if random_bytes is not None:
            shamir.RANDOM_BYTES = random_bytes
        try:
            groups = shamir_mnemonic.generate_mnemonics(
                1, [(activation.threshold, len(activation.officers))], bytes(secret), b"",
                extendable=True, iteration_exponent=0)
        finally:
            shamir.RANDOM_BYTES = saved
    return dict(zip(activation.officers, groups[0], strict=True))


def _check_words(officer: str, mnemonic: str, where: str) -> None:
    words = mnemonic.split()
    for i, word in enumerate(words, start=1):
        if word not in WORD_INDEX_MAP:
            raise InputError(f"{where}: word {i} of {officer}'s PIN share is not a SLIP-39 word",
                             hint="type the words exactly as on the PIN share sheet")
    if len(words) != 20:
        raise InputError(f"{where}: {officer}'s PIN share has {len(words)} words, not 20",
                         hint="type every word of the PIN share, in order")


def check_share(activation: Activation, officer: str, mnemonic: str,
                where: str = "PIN shares") -> None:
    """Refuse a PIN share that ``combine_pin`` would refuse, before any other is presented.

    The officer must be one of the script's, the share 20 SLIP-39 words with a valid
    checksum, and the share of that officer (member index). No message names a word.
    """
    if officer not in activation.officers:
        raise QuorumError(f"{where}: {officer!r} is not a crypto officer of this script",
                          hint=f"the officers are {', '.join(activation.officers)}",
                          requirement="CER-ACTIVATION")
    _check_words(officer, mnemonic, where)
    try:
        share = shamir_mnemonic.Share.from_mnemonic(mnemonic)
    except shamir_mnemonic.MnemonicError:
        raise InputError(f"{where}: {officer}'s PIN share fails its checksum",
                         hint="a word is mistyped or out of order; check it against "
                              "the sheet") from None
    if share.index != activation.officers.index(officer):
        holder = (activation.officers[share.index]
                  if share.index < len(activation.officers) else "no officer")
        raise QuorumError(f"{where}: the PIN share presented by {officer} is the share of "
                          f"{holder}", hint="each officer presents their own share",
                          requirement="CER-ACTIVATION")


def combine_pin(activation: Activation, presented: Mapping[str, str],
                where: str = "PIN shares") -> tuple[bytearray, dict[str, Any]]:
    """The user PIN rebuilt from the officers' shares, and the login record to keep.

    Every share is checked before anything is combined: SLIP-39 words and checksum, and
    that it is the share of the officer presenting it. Fewer than the threshold is a quorum
    failure; shares of another activation do not combine. No message names a word.
    """
    if activation.mode != "split":
        raise UsageError("the script's token is not activated by split knowledge",
                         hint="PIN shares apply only when token.activation.mode is split")
    for officer, mnemonic in presented.items():
        check_share(activation, officer, mnemonic, where)
    if len(presented) < activation.threshold:
        raise QuorumError(f"{activation.threshold} of the crypto officers "
                          f"({', '.join(activation.officers)}) must present their PIN shares; "
                          f"{len(presented)} did", hint="call another officer with their PIN "
                          "share sheet", requirement="CER-ACTIVATION")
    # SLIP-39 combines exactly the threshold of shares: the first M (in the script's order)
    # give the secret, and every share beyond them must give it too with M-1 of them.
    shares = [presented[o] for o in activation.officers if o in presented]
    m = activation.threshold
    subsets = [shares[:m]] + [[*shares[:m - 1], extra] for extra in shares[m:]]
    found: list[bytearray] = []
    try:
        for subset in subsets:
            found.append(bytearray(shamir_mnemonic.combine_mnemonics(subset, b"")))
        if any(other != found[0] for other in found[1:]):
            raise shamir_mnemonic.MnemonicError("the shares give different secrets")
    except shamir_mnemonic.MnemonicError:
        for secret in found:
            wipe(secret)
        raise QuorumError(f"{where}: the PIN shares do not fit together: they are from "
                          "different activations of the token (or one is the SO PIN share)",
                          hint="present the user-PIN shares of the token's latest activation",
                          requirement="CER-ACTIVATION") from None
    try:
        return pin_from_secret(found[0]), activation.record(tuple(presented))
    finally:
        for secret in found:
            wipe(secret)


# ------------------------------------------------------------------ share sheets


def sheet_text(officer: str, name: str, user_share: str, so_share: str,
               context: Mapping[str, Any]) -> str:
    """One officer's PIN share sheet: who, which token, both shares, what to do with it."""
    lines = ["REHEARSAL: not a real PIN share\n"] if context.get("rehearsal") else []
    lines += [
        f"PIN shares of crypto officer {name} ({officer})\n",
        f"token: {context['token']}\n",
        f"script: {context['ceremony']}\n",
        f"any {context['threshold']} of the {context['count']} officers "
        f"({', '.join(context['officers'])}) log in together.\n",
        "Keep this sheet sealed, apart from the other officers' sheets; never type it where "
        "anyone can read it.\n\n",
        f"officer: {officer}\n",
        f"user-pin-share: {user_share}\n",
        f"so-pin-share: {so_share}\n",
    ]
    return "".join(lines)


def read_sheet(path: Path, which: str = "user") -> tuple[str, str]:
    """(officer, mnemonic) from a PIN share sheet; ``which`` is "user" or "so"."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise InputError(f"cannot read the PIN share sheet ({reason})",
                         file=str(path)) from None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("officer", "user-pin-share", "so-pin-share"):
            fields[key] = value.strip()
    for key in ("officer", f"{which}-pin-share"):
        if not fields.get(key):
            raise InputError(f"it is not a PIN share sheet (no {key!r} line)",
                             file=str(path), field=key,
                             hint="pass the sheet `ceremony hsm activate` wrote for the officer")
    return fields["officer"], fields[f"{which}-pin-share"]


def read_sheets(paths: list[Path], which: str = "user") -> dict[str, str]:
    presented: dict[str, str] = {}
    for path in paths:
        officer, mnemonic = read_sheet(path, which)
        if officer in presented:
            raise QuorumError(f"{path}: officer {officer} presented a PIN share twice",
                              hint="each officer counts once", requirement="CER-ACTIVATION")
        presented[officer] = mnemonic
    return presented


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


# ------------------------------------------------------------------ activation


@dataclass(frozen=True)
class Activated:
    """What `hsm activate` did: where the sheets are and the public facts to print."""

    sheets: Path
    token: str
    officers: tuple[str, ...]
    threshold: int
    user_share_set: int
    so_share_set: int


def activate(module: str, uri: str, script: Script, current_so_pin: bytearray,
             secret_out: Path, *, rehearsal: bool = False,
             random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> Activated:
    """Give the token fresh random user and SO PINs, split among the script's officers.

    ``current_so_pin`` is the SO PIN the token has now (its transport PIN, or the PIN
    rebuilt from the SO-PIN shares of an earlier activation). The sheets are written
    before the token is changed, so no PIN exists only inside the token; if the token
    refuses, the sheets are removed again and the token keeps its old PINs.
    """
    activation = script.token.activation
    if activation.mode != "split":
        raise UsageError(f"the script's token activation is {activation.mode}, not split",
                         hint="set [token.activation] mode = \"split\" with officers and a "
                              "threshold", requirement="CER-ACTIVATION")
    final = secret_out / SHEETS_DIR
    if final.exists():
        raise UsageError(f"{final} already exists; activation never overwrites PIN shares",
                         hint="choose another --secret-out directory")
    _lib, token = find_token(module, uri)
    described = f"{token.label} (serial {text_value(token.serial)}, {token.model})"
    user_secret = bytearray(random_bytes(PIN_SECRET_BYTES))
    so_secret = bytearray(random_bytes(PIN_SECRET_BYTES))
    user_pin, so_pin = pin_from_secret(user_secret), pin_from_secret(so_secret)
    try:
        user_shares = split_secret(user_secret, activation)
        so_shares = split_secret(so_secret, activation)
        ids = (shamir_mnemonic.Share.from_mnemonic(next(iter(user_shares.values()))).identifier,
               shamir_mnemonic.Share.from_mnemonic(next(iter(so_shares.values()))).identifier)
        secret_out.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = secret_out / f".{SHEETS_DIR}.partial-{secrets.token_hex(4)}"
        partial.mkdir(mode=0o700)
        context = {"rehearsal": rehearsal, "token": described, "ceremony": script.ceremony_id,
                   "threshold": activation.threshold, "count": len(activation.officers),
                   "officers": activation.officers}
        for officer in activation.officers:
            person = script.participant(officer)
            name = person.name if person else officer
            _write_private(partial / f"pin-share-{officer}.txt",
                           sheet_text(officer, name, user_shares[officer], so_shares[officer],
                                      context))
        try:
            _set_pins(token, current_so_pin, so_pin, user_pin)
        except _UserPinChanged:
            partial.rename(final)  # the new user PIN exists only on these sheets now
            raise
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        partial.rename(final)
        _check_pins(token, user_pin, so_pin)
        return Activated(final, described, activation.officers, activation.threshold, *ids)
    finally:
        for secret in (user_secret, so_secret, user_pin, so_pin):
            wipe(secret)


class _UserPinChanged(TokenError):
    """The user PIN was set but the SO PIN was not: the new sheets must be kept."""


def _set_pins(token: Any, current_so_pin: bytearray, so_pin: bytearray,
              user_pin: bytearray) -> None:
    """Set the user PIN as the SO, then the SO PIN."""
    try:
        session = token.open(rw=True, so_pin=current_so_pin.decode())
    except pkcs11.PKCS11Error as exc:
        error = token_error(exc, "logging in as the security officer")
        raise TokenError(error.message.replace("the PIN", "the SO PIN"),
                         hint="pass the token's current SO PIN (its transport PIN, or the "
                              "SO-PIN shares of the last activation)") from None
    try:
        try:
            session.init_pin(user_pin.decode())
        except pkcs11.PKCS11Error as exc:
            raise token_error(exc, "setting the new user PIN") from None
        try:
            session.set_pin(current_so_pin.decode(), so_pin.decode())
        except pkcs11.PKCS11Error as exc:
            error = token_error(exc, "setting the new SO PIN")
            raise _UserPinChanged(error.message + "; the user PIN was already changed, so "
                                  "keep the new sheets (their SO-PIN shares are not valid: "
                                  "the SO PIN is unchanged)", hint=error.hint) from None
    finally:
        with contextlib.suppress(pkcs11.PKCS11Error):
            session.close()


def _check_pins(token: Any, user_pin: bytearray, so_pin: bytearray) -> None:
    """Log in with each new PIN once, to prove the token took them."""
    for pin, who in ((user_pin, "user_pin"), (so_pin, "so_pin")):
        try:
            token.open(rw=True, **{who: pin.decode()}).close()
        except pkcs11.PKCS11Error as exc:
            error = token_error(exc, "checking the new PINs")
            raise TokenError(error.message + "; the PINs were set, so keep the new sheets",
                             hint=error.hint) from None
