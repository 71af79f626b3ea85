"""Custodian identity keys on a PKCS#11 token: the custodian's own token, not the ceremony's.

An Ed25519 key pair on a token (a USB HSM, a smartcard through its vendor's PKCS#11 module)
found by its label (and, when given, its id) signs the custodian's approvals like their
OpenPGP card would (ADR 20): ``participant``, ``public_key`` and ``sign(message)``, the
interface of ``KeyFileSigner`` and ``CardSigner``. Unlike a key file it is allowed in a
real ceremony (CER-IDENTITY).

Each signature is its own session: the token's public key is read and compared with the
one the script names before any PIN is asked (a wrong token costs no PIN try), then the
PIN (from its file or typed without echo) logs in, the token signs with CKM_EDDSA, the
session logs out, and the signature is checked against the script's key. The PIN is in a
bytearray wiped once the token has it. Every failure is a ``TokenError`` (exit 3) with one
plain sentence (``pkcs11_token.token_error``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from ceremony.adapters.pkcs11_token import ED25519_OID, _raw_point, find_token, token_error
from ceremony.engine.derive import wipe
from ceremony.errors import TokenError, UsageError
from ceremony.model.statements import encode_key

REQUIREMENT = "CER-IDENTITY"


@dataclass(frozen=True)
class TokenKey:
    """Where a participant's identity key is: the token, its module, the key's label/id."""

    module: str
    uri: str
    label: str
    key_id: str | None = None  # hex; None: the one Ed25519 key with that label


def _template(cls: ObjectClass, label: str, key_id: bytes | None) -> dict[Attribute, Any]:
    template: dict[Attribute, Any] = {Attribute.CLASS: cls,
                                      Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                                      Attribute.LABEL: label}
    if key_id is not None:
        template[Attribute.ID] = key_id
    return template


def _key_name(where: TokenKey) -> str:
    return repr(where.label) + (f" (id {where.key_id})" if where.key_id else "")


def _named(where: TokenKey) -> str:
    return f"the key {_key_name(where)}"


def read_public(session: Any, where: TokenKey) -> tuple[bytes, bytes | None]:
    """The raw Ed25519 public key labelled ``where.label`` (and its CKA_ID), readable
    without a login; a TokenError unless there is exactly one."""
    wanted = bytes.fromhex(where.key_id) if where.key_id else None
    doing = f"reading the public key {where.label!r}"
    try:
        found = list(session.get_objects(_template(ObjectClass.PUBLIC_KEY, where.label,
                                                   wanted)))
    except pkcs11.PKCS11Error as exc:
        raise token_error(exc, doing) from None
    if not found:
        raise TokenError(f"the token {where.uri} holds no Ed25519 public key named "
                         f"{_key_name(where)}",
                         hint="check key_label (and key_id), or enrol the key with "
                              "`ceremony custodian enroll --token URI --key-label LABEL "
                              "--generate`", requirement=REQUIREMENT)
    if len(found) > 1:
        raise TokenError(f"the token {where.uri} holds {len(found)} Ed25519 public keys "
                         f"labelled {where.label!r}",
                         hint="name the one to use by its id (key_id, hex)",
                         requirement=REQUIREMENT)
    try:
        point = bytes(found[0][Attribute.EC_POINT])
    except pkcs11.PKCS11Error as exc:
        raise token_error(exc, doing) from None
    if wanted is None:
        with contextlib.suppress(pkcs11.PKCS11Error):
            wanted = bytes(found[0][Attribute.ID]) or None  # the private half has it too
    return _raw_point(point), wanted


class TokenSigner:
    """A participant's identity key on their own PKCS#11 token, as an approval signer.

    ``public_key`` is the raw key the script names for ``participant`` (None: read it from
    the token, as enrolment does). ``reset`` re-initializes the module when the token is
    first looked up: only for a process with no other session on that module (enrolment);
    during a run the ceremony's own token may share it.
    """

    def __init__(self, participant: str, where: TokenKey, pin_source: Callable[[], bytearray],
                 *, public_key: bytes | None = None, reset: bool = False) -> None:
        self.participant = participant
        self.where = where
        self._pin_source = pin_source
        self._reset = reset
        if public_key is None:
            _, token = self._token()
            public_key, _ = self._check(token, None)
        self._public = public_key

    @property
    def public_key(self) -> str:
        return encode_key(self._public)

    @property
    def public_key_bytes(self) -> bytes:
        return self._public

    def _token(self) -> tuple[Any, Any]:
        lib, token = find_token(self.where.module, self.where.uri, reset=self._reset)
        self._reset = False  # once is enough; later sessions may share the module
        return lib, token

    def _check(self, token: Any, expected: bytes | None) -> tuple[bytes, bytes | None]:
        """The token's key (and id), read without a PIN; refused unless it is ``expected``."""
        try:
            session = token.open()
        except pkcs11.PKCS11Error as exc:
            raise token_error(exc, f"opening {self.participant}'s identity token") from None
        try:
            found, key_id = read_public(session, self.where)
        finally:
            with contextlib.suppress(pkcs11.PKCS11Error):
                session.close()
        if expected is not None and found != expected:
            raise TokenError(
                f"the token {self.where.uri} does not hold {self.participant}'s identity key",
                hint=f"the script names {encode_key(expected)}; {_named(self.where)} on the "
                     f"token is {encode_key(found)}; no PIN was asked and nothing was signed",
                requirement=REQUIREMENT)
        return found, key_id

    def sign(self, message: bytes) -> bytes:
        _, token = self._token()
        _, key_id = self._check(token, self._public)
        session = self._login(token)
        try:
            signature = self._sign_in(session, key_id, message)
        finally:
            with contextlib.suppress(pkcs11.PKCS11Error):
                session.close()  # C_Logout, then C_CloseSession
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self._public).verify(signature, message)
        except InvalidSignature:
            raise TokenError(f"the signature from {self.participant}'s identity token does "
                             "not verify with its key",
                             hint="the token or its module may be faulty; do not use it",
                             requirement=REQUIREMENT) from None
        return signature

    def _login(self, token: Any) -> Any:
        pin = self._pin_source()
        try:
            try:
                text = pin.decode()
            except UnicodeDecodeError:
                raise UsageError(f"{self.participant}'s identity token PIN is not UTF-8 "
                                 "text", hint="check the PIN file holds only the PIN") from None
            try:
                return token.open(user_pin=text)
            except pkcs11.PKCS11Error as exc:
                error = token_error(exc, f"logging in to {self.participant}'s identity token")
                raise TokenError(error.message.replace(
                    "the token", f"{self.participant}'s identity token", 1),
                    hint=error.hint) from None
        finally:
            wipe(pin)

    def _sign_in(self, session: Any, key_id: bytes | None, message: bytes) -> bytes:
        doing = f"signing with {self.participant}'s identity key"
        try:
            keys = list(session.get_objects(_template(ObjectClass.PRIVATE_KEY,
                                                      self.where.label, key_id)))
            if len(keys) != 1:
                raise TokenError(f"the token {self.where.uri} holds {len(keys)} Ed25519 "
                                 f"private keys named {_key_name(self.where)}, not one",
                                 hint="the private key must carry the label and id of its "
                                      "public key", requirement=REQUIREMENT)
            return bytes(keys[0].sign(message, mechanism=Mechanism.EDDSA))
        except pkcs11.PKCS11Error as exc:
            raise token_error(exc, doing) from None


def generate_identity(token: Any, where: TokenKey, pin: bytearray, key_id: bytes) -> bytes:
    """A new Ed25519 identity pair on ``token`` (sensitive, never extractable, sign-only;
    the public half readable without a login): its raw public key. Refused when a key with
    that label is there already, so enrolment never replaces a custodian's identity."""
    try:
        text = pin.decode()
    except UnicodeDecodeError:
        raise UsageError("the token PIN is not UTF-8 text",
                         hint="check the PIN file holds only the PIN") from None
    finally:
        wipe(pin)
    try:
        session = token.open(rw=True, user_pin=text)
    except pkcs11.PKCS11Error as exc:
        raise token_error(exc, "logging in to the identity token") from None
    try:
        existing = [o for cls in (ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY)
                    for o in session.get_objects({Attribute.CLASS: cls,
                                                  Attribute.LABEL: where.label})]
        if existing:
            raise TokenError(f"the token {where.uri} already holds a key labelled "
                             f"{where.label!r}",
                             hint="enrol it without --generate, or choose another "
                                  "--key-label; an identity key is never replaced here")
        common = {Attribute.LABEL: where.label, Attribute.ID: key_id, Attribute.TOKEN: True}
        public, _ = session.generate_keypair(
            KeyType.EC_EDWARDS, mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
            public_template={**common, Attribute.EC_PARAMS: encode_named_curve_parameters(
                ED25519_OID), Attribute.VERIFY: True, Attribute.PRIVATE: False},
            private_template={**common, Attribute.SENSITIVE: True,
                              Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                              Attribute.PRIVATE: True, Attribute.DECRYPT: False,
                              Attribute.UNWRAP: False, Attribute.DERIVE: False})
        return _raw_point(bytes(public[Attribute.EC_POINT]))
    except pkcs11.PKCS11Error as exc:
        raise token_error(exc, "generating the Ed25519 identity key") from None
    finally:
        with contextlib.suppress(pkcs11.PKCS11Error):
            session.close()
