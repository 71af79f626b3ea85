"""The engine's Token port over any PKCS#11 module, through python-pkcs11.

Library errors are wrapped here into TokenError with one plain sentence; nothing above this
module sees a PKCS11Error. Tokens are found by label or RFC 7512 URI, never by slot number
(slot ids move). Written against SoftHSM2 but uses nothing specific to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.util.ec import encode_named_curve_parameters

from ceremony.engine.derive import wipe
from ceremony.engine.ports import TokenObject, kek_label
from ceremony.errors import TokenError, UsageError
from ceremony.inventory import FoundObject
from ceremony.model import statements as st

ED25519_OID = "1.3.101.112"
# ECDSA root key kinds: the named curve's OID (CKA_EC_PARAMS) and the scalar's byte length.
EC_KINDS = {"ecdsa-p256": ("1.2.840.10045.3.1.7", 32), "ecdsa-p384": ("1.3.132.0.34", 48)}
DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_CLASS_NAMES = {ObjectClass.PRIVATE_KEY: "private_key", ObjectClass.PUBLIC_KEY: "public_key",
                ObjectClass.SECRET_KEY: "secret_key"}


def parse_uri(uri: str) -> dict[str, str]:
    """The path attributes of an RFC 7512 PKCS#11 URI (token, serial, model, manufacturer)."""
    if not uri.startswith("pkcs11:"):
        raise UsageError(f"{uri!r} is not a PKCS#11 URI", hint="write it as pkcs11:token=LABEL")
    path = uri[len("pkcs11:"):].split("?", 1)[0]
    out: dict[str, str] = {}
    for part in filter(None, path.split(";")):
        name, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"{uri!r}: {part!r} is not name=value")
        out[name] = unquote(value)
    if not out.keys() & {"token", "serial"}:
        raise UsageError(f"{uri!r} names neither token nor serial",
                         hint="add token=LABEL or serial=SERIAL")
    return out


def _der_octet_string(data: bytes) -> bytes:
    return bytes([0x04, len(data)]) + data


def _raw_point(ec_point: bytes) -> bytes:
    # CKA_EC_POINT holds a DER OCTET STRING around the 32 raw bytes; some modules give raw.
    if len(ec_point) == 34 and ec_point[0] == 0x04 and ec_point[1] == 32:
        return ec_point[2:]
    if len(ec_point) == 32:
        return ec_point
    raise TokenError("the token returned an Ed25519 public key in an unknown encoding")


_RSA_E = (65537).to_bytes(3, "big")
# What a module may answer when a blob does not unwrap under the KEK given (SoftHSM2 2.6:
# CKR_GENERAL_ERROR; the standard codes for a bad or altered wrapped key).
_UNWRAP_REFUSED = {"GeneralError", "FunctionFailed", "WrappedKeyInvalid", "WrappedKeyLenRange",
                   "EncryptedDataInvalid", "EncryptedDataLenRange", "DataInvalid"}


def _rsa_bits(kind: str) -> int:
    if kind not in st.RSA_BITS:
        raise ValueError(f"{kind} is not an RSA root key kind")
    return st.RSA_BITS[kind]


def _rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    """DER SubjectPublicKeyInfo of an RSA public key given as PKCS#11 big integers."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    return RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(
        modulus, "big")).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _rsa_checked(kind: str, der: bytes) -> bytes:
    try:
        st.public_key_object(kind, der)
    except ValueError:
        raise TokenError(f"the token made an RSA key that is not an {kind} key with "
                         "exponent 65537") from None
    return der


def _ec_kind(kind: str) -> tuple[str, int]:
    if kind not in EC_KINDS:
        raise ValueError(f"no token support for root keys of kind {kind}")
    return EC_KINDS[kind]


def _ec_point(ec_point: bytes, length: int) -> bytes:
    # A DER OCTET STRING around the uncompressed point 04||X||Y (short-form length, as
    # both 65 and 97 are below 128); some modules give the bare point.
    if len(ec_point) == length + 2 and ec_point[:2] == bytes([0x04, length]):
        return ec_point[2:]
    if len(ec_point) == length and ec_point[0] == 0x04:
        return ec_point
    raise TokenError("the token returned an EC public key in an unknown encoding")


# ------------------------------------------------ PKCS#11 errors as one plain sentence

_REMOVED = ("the token was removed while {doing}",
            "reconnect the token, then run the same command with --resume; a step that did "
            "not finish is rolled back")
# python-pkcs11 exception class name -> (sentence, hint). {doing} is what we were doing.
_SENTENCES: dict[str, tuple[str, str]] = {
    "PinIncorrect": ("the token refused the PIN",
                     "check the PIN; the token locks after too many wrong tries"),
    "PinInvalid": ("the token refused the PIN", "check the PIN file holds only the PIN"),
    "PinLenRange": ("the token refused the PIN: it has a length the token does not accept",
                    "check the PIN file holds only the PIN"),
    "PinLocked": ("the token's user PIN is locked after too many wrong tries",
                  "the security officer must unblock it (reset the user PIN with the SO PIN) "
                  "before anything can be done on this token"),
    "PinExpired": ("the token's user PIN has expired",
                   "change it with the token's own tools, then retry"),
    "UserPinNotInitialized": ("the token has no user PIN set",
                              "initialize the token's user PIN, then retry"),
    "MechanismInvalid": ("the token does not support the mechanism needed for {doing}",
                         "use a token and module that offer it (`pkcs11-tool -M` lists "
                         "what a token supports)"),
    "MechanismParamInvalid": ("the token does not accept the parameters needed for {doing}",
                              "use a token and module that offer it (`pkcs11-tool -M` lists "
                              "what a token supports)"),
    "FunctionNotSupported": ("the PKCS#11 module does not support {doing}",
                             "use a module that implements it, or another token"),
    "DomainParamsInvalid": ("the token does not support the curve needed for {doing}",
                            "use a token that supports it"),
    "NoSuchToken": ("no such token: it is not available for {doing}",
                    "insert the token, or fix the URI (`pkcs11-tool --list-slots` shows "
                    "what is there)"),
    "SlotIDInvalid": ("no such token: its slot went away while {doing}",
                      "reconnect the token and run the command again"),
    "TokenNotRecognised": ("the token is not recognised by its PKCS#11 module",
                           "check the module matches the token (--module)"),
    "TokenNotPresent": ("the token is not present: it was removed while {doing}",
                        _REMOVED[1]),
    "DeviceRemoved": _REMOVED,
    "SessionReadOnly": ("the token is read-only: it refused to write while {doing}",
                        "make the token writable (write-protect switch or the module's "
                        "read-only setting), then retry"),
    "TokenWriteProtected": ("the token is write-protected: it refused to write while {doing}",
                            "make the token writable (write-protect switch or the module's "
                            "read-only setting), then retry"),
    "SessionReadOnlyExists": ("the token refused a read-write session while {doing}",
                              "close other programs using the token, then retry"),
    "SessionClosed": ("the session with the token was closed while {doing}",
                      "check the token is still connected, then run the command again"),
    "SessionHandleInvalid": ("the session with the token was closed while {doing}",
                             "check the token is still connected, then run the command "
                             "again"),
    "SessionCount": ("the token has too many open sessions", "close other programs using "
                     "the token, then retry"),
    "UserNotLoggedIn": ("the token logged us out while {doing}",
                        "check the token is still connected, then run the command again"),
    "DeviceMemory": ("the token ran out of memory while {doing}",
                     "free space on the token, then retry"),
    "HostMemory": ("the PKCS#11 module ran out of memory while {doing}",
                   "close other programs, then retry"),
    "DeviceError": ("the token failed while {doing}",
                    "check the token and its module, then retry"),
    "AttributeSensitive": ("the token refused to reveal a protected attribute while {doing}",
                           "this is expected for secret values; report it if it is not"),
}
# Errors that say little: the adapter first checks whether the token is still there.
_AMBIGUOUS = {"GeneralError", "DeviceError", "FunctionFailed", "ObjectHandleInvalid",
              "KeyHandleInvalid", "SessionHandleInvalid", "SessionClosed", "UserNotLoggedIn"}


def token_error(exc: BaseException, doing: str, *, removed: bool = False) -> TokenError:
    """One plain sentence (exit 3) for a python-pkcs11 exception raised while ``doing``.

    The one place where library errors become user errors: every call site of the adapter
    goes through it (via ``Pkcs11Token._fail``), so no PKCS11Error leaves this module.
    ``removed`` says the adapter found the token gone after the error. Enforces
    CER-DEVICE-ERROR (docs/requirements.md).
    """
    name = type(exc).__name__
    sentence, hint = _REMOVED if removed else _SENTENCES.get(name, (
        "the token failed while {doing}",
        f"check the token and its module, then retry (the module reported {name})"))
    return TokenError(sentence.format(doing=doing), hint=hint)


def find_token(module: str, uri: str, *, reset: bool = True) -> tuple[Any, Any]:
    """The loaded module and the one token ``uri`` names (RFC 7512), or a TokenError.

    ``reset`` re-initializes the module first (so it sees tokens added since it was
    loaded); that closes every session the process has on it, so a second token of the
    same module (a custodian's identity token during a run) is found with ``reset=False``.
    """
    attrs = parse_uri(uri)
    if not Path(module).is_file():
        raise TokenError(f"the PKCS#11 module {module} does not exist",
                         hint="install it (softhsm2 for rehearsal) or pass --module")
    try:
        lib = pkcs11.lib(module)
        if reset:
            lib.reinitialize()
    except pkcs11.PKCS11Error as exc:
        if type(exc) is pkcs11.PKCS11Error:  # dlopen failed: not a PKCS#11 library
            raise TokenError(f"the PKCS#11 module {module} could not be loaded",
                             hint="check --module names the vendor's PKCS#11 library "
                                  "(a .so file)") from None
        raise token_error(exc, "loading the PKCS#11 module") from None
    try:
        tokens = list(lib.get_tokens(token_label=attrs.get("token"),
                                     token_serial=(attrs["serial"].encode()
                                                   if "serial" in attrs else None)))
    except pkcs11.PKCS11Error as exc:
        raise token_error(exc, "listing the tokens") from None
    for name in ("model", "manufacturer"):
        if name in attrs:
            key = "manufacturer_id" if name == "manufacturer" else name
            tokens = [t for t in tokens if getattr(t, key) == attrs[name]]
    if not tokens:
        raise TokenError(f"no token matches {uri}", hint="insert the token, or fix the "
                         "URI (`pkcs11-tool --list-slots` shows what is there)")
    if len(tokens) > 1:
        raise TokenError(f"{len(tokens)} tokens match {uri}",
                         hint="add serial=... to the URI to pick one")
    return lib, tokens[0]


class Pkcs11Token:
    """An open, logged-in read-write session on one token."""

    def __init__(self, module: str, uri: str, pin: bytearray | None,
                 login: dict[str, Any] | None = None) -> None:
        """Log in to the token ``uri`` names with ``pin`` (None: on the token's PIN pad).

        ``login`` is what the transcript records of how the PIN came to be (the mode and,
        for split activation, who presented PIN shares); never the PIN.
        """
        self.module = module
        self._lib, self._token = find_token(module, uri)
        self.login = login or {"mode": "known-pin" if pin is not None else "pin-pad"}
        if pin is None and not self._token.flags & pkcs11.TokenFlag.PROTECTED_AUTHENTICATION_PATH:
            raise TokenError(f"the token {self._token.label!r} has no PIN pad",
                             hint="use split activation for this token, or one with a PIN pad "
                                  "(token.activation.mode in the script)",
                             requirement="CER-ACTIVATION")
        try:
            self._session = self._token.open(
                rw=True, user_pin=pkcs11.PROTECTED_AUTH if pin is None else pin.decode())
        except pkcs11.PKCS11Error as exc:
            raise token_error(exc, "logging in") from None
        self._params = encode_named_curve_parameters(ED25519_OID)
        # Private key handles by (label, id), so signing does not search the token each
        # time; dropped when that label and id is destroyed or created again.
        self._keys: dict[tuple[str, str], Any] = {}

    def _fail(self, exc: BaseException, doing: str) -> TokenError:
        """The TokenError for ``exc``; for a vague error, first check the token is still there.

        A token pulled out (or a SoftHSM2 token directory deleted) shows up as a general
        error or a vanished handle; C_GetTokenInfo on its slot then fails, which tells
        "the token was removed" apart from "the token failed".
        """
        removed = type(exc).__name__ in _AMBIGUOUS and not self._present()
        return token_error(exc, doing, removed=removed)

    def _present(self) -> bool:
        """Whether the token still answers C_GetTokenInfo on its slot."""
        try:
            self._token.slot.get_token()
        except pkcs11.PKCS11Error:
            return False
        return True

    def _failed_creating(self, exc: BaseException, doing: str, label: str,
                         key_id: str) -> TokenError:
        """The error for a failed key creation, after destroying whatever part of it exists."""
        error = self._fail(exc, doing)
        try:
            self.destroy(label, key_id)
        except TokenError:
            return TokenError(error.message, hint="part of the key may be left on the token: "
                              "check with `ceremony hsm inventory` and destroy it by hand; "
                              + error.hint)
        return TokenError(f"{error.message}; nothing of the key was left on it",
                          hint=error.hint)

    def close(self) -> None:
        with contextlib.suppress(pkcs11.PKCS11Error):
            self._session.close()

    def describe(self) -> dict[str, Any]:
        t, lib = self._token, self._lib
        digest = hashlib.sha256(Path(self.module).read_bytes()).hexdigest()
        slot = t.slot
        return {
            "module": self.module, "module_sha256": digest,
            "library": f"{lib.library_description.strip()} "
                       f"{lib.library_version[0]}.{lib.library_version[1]}",
            "label": t.label, "model": t.model, "serial": text_value(t.serial),
            "manufacturer": t.manufacturer_id,
            "firmware": "{}.{}".format(*slot.firmware_version),
            "hardware": "{}.{}".format(*slot.hardware_version),
            "mechanisms": ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA"],
            "activation": self.login,
        }

    def _store_signing_pair(self, key_type: KeyType, params: bytes, label: str, key_id: str,
                            value: bytes, point: bytes) -> None:
        """Store an imported EC-family private key and its public key as one signing pair."""
        common = {Attribute.LABEL: label, Attribute.ID: bytes.fromhex(key_id),
                  Attribute.TOKEN: True, Attribute.KEY_TYPE: key_type,
                  Attribute.EC_PARAMS: params}
        self._session.create_object({
            **common, Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.VALUE: value,
            Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
            # A signing key does nothing else: SoftHSM2 defaults these to true.
            Attribute.DECRYPT: False, Attribute.UNWRAP: False, Attribute.DERIVE: False})
        self._session.create_object({
            **common, Attribute.CLASS: ObjectClass.PUBLIC_KEY,
            Attribute.EC_POINT: _der_octet_string(point), Attribute.VERIFY: True})

    def random_bytes(self, n: int) -> bytes:
        try:
            return bytes(self._session.generate_random(n * 8))  # python-pkcs11 takes bits
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, "reading random bytes from the token") from None

    def generate_ed25519(self, label: str, key_id: str) -> bytes:
        common = {Attribute.LABEL: label, Attribute.ID: bytes.fromhex(key_id),
                  Attribute.TOKEN: True}
        self._keys.pop((label, key_id), None)
        try:
            public, _ = self._session.generate_keypair(
                KeyType.EC_EDWARDS, mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                public_template={**common, Attribute.EC_PARAMS: self._params,
                                 Attribute.VERIFY: True},
                private_template={**common, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                                  Attribute.PRIVATE: True, Attribute.DECRYPT: False,
                                  Attribute.UNWRAP: False, Attribute.DERIVE: False})
            return _raw_point(public[Attribute.EC_POINT])
        except pkcs11.PKCS11Error as exc:
            raise self._failed_creating(exc, "generating an Ed25519 key", label,
                                        key_id) from None

    def import_ed25519(self, label: str, key_id: str, private_seed: bytearray) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        value = bytes(private_seed)
        self._keys.pop((label, key_id), None)
        try:
            public = Ed25519PrivateKey.from_private_bytes(value).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self._store_signing_pair(KeyType.EC_EDWARDS, self._params, label, key_id,
                                     value, public)
        except pkcs11.PKCS11Error as exc:
            raise self._failed_creating(exc, "storing the root key", label, key_id) from None
        finally:
            # Best effort: CPython keeps no reference to the bytes object after this.
            scratch = bytearray(value)
            wipe(scratch)
            del value
        found = self.find_ed25519(label, key_id)
        if found is None:
            raise TokenError("the root key is not readable back from the token")
        return found

    def _objects(self, label: str, key_id: str) -> list[Any]:
        try:
            return list(self._session.get_objects({Attribute.LABEL: label,
                                                   Attribute.ID: bytes.fromhex(key_id)}))
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, "listing the token's objects") from None

    def find_ed25519(self, label: str, key_id: str) -> bytes | None:
        for obj in self._objects(label, key_id):
            if obj.object_class == ObjectClass.PUBLIC_KEY:
                try:
                    point = bytes(obj[Attribute.EC_POINT])
                except pkcs11.PKCS11Error as exc:
                    raise self._fail(exc, f"reading the public key {label!r}") from None
                return _raw_point(point)
        return None

    def _private_key(self, label: str, key_id: str) -> Any:
        """The one private key object of that label and id (cached: see ``self._keys``)."""
        key = self._keys.get((label, key_id))
        if key is None:
            keys = [o for o in self._objects(label, key_id)
                    if o.object_class == ObjectClass.PRIVATE_KEY]
            if len(keys) != 1:
                raise TokenError(f"expected one private key labelled {label!r} id {key_id} "
                                 f"on the token, found {len(keys)}")
            key = self._keys[(label, key_id)] = keys[0]
        return key

    def sign_ed25519(self, label: str, key_id: str, data: bytes) -> bytes:
        doing = f"signing with {label!r}"
        key = self._private_key(label, key_id)
        try:
            return bytes(key.sign(data, mechanism=Mechanism.EDDSA))
        except (pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid) as exc:
            # The cached handle went stale (destroyed by another session or program): look
            # the key up once more, unless the token itself is gone.
            self._keys.pop((label, key_id), None)
            if not self._present():
                raise token_error(exc, doing, removed=True) from None
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, doing) from None
        try:
            return bytes(self._private_key(label, key_id).sign(data,
                                                               mechanism=Mechanism.EDDSA))
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, doing) from None

    # ------------------------------------------------ root keys of every kind (ports.Token)

    def import_key(self, kind: str, label: str, key_id: str, private: bytearray) -> bytes:
        """Import a root key of ``kind`` as sensitive, non-extractable and sign-only."""
        if kind == "ed25519":
            return self.import_ed25519(label, key_id, private)
        oid, size = _ec_kind(kind)
        if len(private) != size:
            raise ValueError(f"an {kind} private scalar has {size} bytes")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        value = bytes(private)
        self._keys.pop((label, key_id), None)
        try:
            point = ec.derive_private_key(int.from_bytes(value, "big"),
                                          st.EC_CURVES[kind][0]).public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
            self._store_signing_pair(KeyType.EC, encode_named_curve_parameters(oid), label,
                                     key_id, value, point)
        except pkcs11.PKCS11Error as exc:
            raise self._failed_creating(exc, f"storing the {kind} root key", label,
                                        key_id) from None
        finally:
            scratch = bytearray(value)
            wipe(scratch)
            del value
        found = self.find_public(kind, label, key_id)
        if found is None:
            raise TokenError("the root key is not readable back from the token")
        return found

    def find_public(self, kind: str, label: str, key_id: str) -> bytes | None:
        """The public key bytes of that pair (ECDSA: the uncompressed point), if present."""
        if kind == "ed25519":
            return self.find_ed25519(label, key_id)
        if kind in st.RSA_BITS:
            return self._find_rsa_public(label, key_id)
        oid, size = _ec_kind(kind)
        for obj in self._objects(label, key_id):
            if obj.object_class == ObjectClass.PUBLIC_KEY:
                try:
                    params, point = obj[Attribute.EC_PARAMS], obj[Attribute.EC_POINT]
                except pkcs11.PKCS11Error as exc:
                    raise self._fail(exc, f"reading the public key {label!r}") from None
                if bytes(params) != encode_named_curve_parameters(oid):
                    raise TokenError(f"the public key {label!r} is not on the {kind} curve")
                return _ec_point(bytes(point), 2 * size + 1)
        return None

    def sign(self, kind: str, label: str, key_id: str, data: bytes) -> bytes:
        """Sign on the token: Ed25519, or ECDSA over the host-computed hash, as DER.

        SoftHSM2 2.6 has no ECDSA_SHA256/384 mechanism, so the hash is computed here and
        signed with plain CKM_ECDSA; its raw r||s is re-encoded as a DER Ecdsa-Sig-Value.
        """
        if kind == "ed25519":
            return self.sign_ed25519(label, key_id, data)
        if kind in st.RSA_BITS:
            return self._sign_rsa_pss(label, key_id, data)
        _, size = _ec_kind(kind)
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        digest = hashlib.new("sha256" if size == 32 else "sha384", data).digest()
        doing = f"signing with {label!r}"
        try:
            raw = bytes(self._private_key(label, key_id).sign(digest,
                                                              mechanism=Mechanism.ECDSA))
        except (pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid) as exc:
            # A stale cached handle, as in sign_ed25519: look the key up once more.
            self._keys.pop((label, key_id), None)
            if not self._present():
                raise token_error(exc, doing, removed=True) from None
            try:
                raw = bytes(self._private_key(label, key_id).sign(digest,
                                                                  mechanism=Mechanism.ECDSA))
            except pkcs11.PKCS11Error as again:
                raise self._fail(again, doing) from None
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, doing) from None
        if len(raw) != 2 * size:
            raise TokenError(f"the token returned an {kind} signature of {len(raw)} bytes")
        return encode_dss_signature(int.from_bytes(raw[:size], "big"),
                                    int.from_bytes(raw[size:], "big"))

    # --------------------------------------- RSA root keys (generated here, exported wrapped)

    def generate_rsa(self, kind: str, label: str, key_id: str) -> bytes:
        """An RSA pair generated in the token (e = 65537); return its DER SubjectPublicKeyInfo.

        The private key is sensitive and sign-only; CKA_EXTRACTABLE is true only because
        C_WrapKey needs it, and ``wrap_private`` turns it off right after the one wrap.
        (CKA_WRAP_WITH_TRUSTED is not set: it needs a KEK with CKA_TRUSTED, which only the
        security officer may set, and the ceremony logs in as the user.)
        """
        bits = _rsa_bits(kind)
        common = {Attribute.LABEL: label, Attribute.ID: bytes.fromhex(key_id),
                  Attribute.TOKEN: True}
        self._keys.pop((label, key_id), None)
        try:
            public, _ = self._session.generate_keypair(
                KeyType.RSA, bits, mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
                public_template={**common, Attribute.PUBLIC_EXPONENT: _RSA_E,
                                 Attribute.VERIFY: True, Attribute.ENCRYPT: False,
                                 Attribute.WRAP: False},
                private_template={**common, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                                  Attribute.EXTRACTABLE: True, Attribute.SIGN: True,
                                  Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                                  Attribute.DERIVE: False})
            der = _rsa_spki(bytes(public[Attribute.MODULUS]),
                            bytes(public[Attribute.PUBLIC_EXPONENT]))
        except pkcs11.PKCS11Error as exc:
            raise self._failed_creating(exc, f"generating an {kind} key", label,
                                        key_id) from None
        return _rsa_checked(kind, der)

    def _import_kek(self, label: str, key_id: str, kek: bytearray) -> Any:
        """The AES-256 KEK as a session object: sensitive, non-extractable, WRAP/UNWRAP only."""
        if len(kek) != 32:
            raise ValueError("the key-encryption key is AES-256 (32 bytes)")
        value = bytes(kek)
        try:
            return self._session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                Attribute.VALUE: value, Attribute.LABEL: kek_label(label),
                Attribute.ID: bytes.fromhex(key_id), Attribute.TOKEN: False,
                Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False, Attribute.WRAP: True, Attribute.UNWRAP: True,
                Attribute.ENCRYPT: False, Attribute.DECRYPT: False, Attribute.SIGN: False,
                Attribute.VERIFY: False, Attribute.DERIVE: False})
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, "importing the key-encryption key") from None
        finally:
            scratch = bytearray(value)
            wipe(scratch)
            del value

    def _destroy_kek(self, secret: Any) -> None:
        try:
            secret.destroy()
        except pkcs11.PKCS11Error as exc:
            error = self._fail(exc, "destroying the key-encryption key")
            raise TokenError(error.message, hint="it is a session object: closing the session "
                             "(ending the program) removes it; " + error.hint) from None

    def wrap_private(self, kind: str, label: str, key_id: str, kek: bytearray) -> bytes:
        """Wrap the private key under ``kek`` (AES_KEY_WRAP_PAD), then make it non-extractable.

        The KEK is destroyed on every path. The blob is RFC 5649 over the PKCS#8
        PrivateKeyInfo (SoftHSM2 2.6 zero-pads the PKCS#8 to a multiple of 8 first).
        """
        _rsa_bits(kind)
        key = self._private_key(label, key_id)
        secret = self._import_kek(label, key_id, kek)
        try:
            blob = bytes(secret.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_PAD))
            key[Attribute.EXTRACTABLE] = False  # one wrap, then never again
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, f"wrapping the root key {label!r}") from None
        finally:
            self._destroy_kek(secret)
        return blob

    def unwrap_private(self, kind: str, label: str, key_id: str, kek: bytearray,
                       blob: bytes, *, store: bool = True) -> bytes:
        """Unwrap ``blob`` into a sensitive, non-extractable, sign-only private key.

        With ``store`` it becomes a token object and a public key object is created next to
        it; without, it is a session object destroyed before returning (a check that the
        blob unwraps). The KEK is destroyed on every path.
        """
        _rsa_bits(kind)
        doing = f"unwrapping the root key {label!r}"
        self._keys.pop((label, key_id), None)
        secret = self._import_kek(label, key_id, kek)
        try:
            try:
                key = secret.unwrap_key(
                    ObjectClass.PRIVATE_KEY, KeyType.RSA, blob, id=bytes.fromhex(key_id),
                    label=label, mechanism=Mechanism.AES_KEY_WRAP_PAD, store=store,
                    template={Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                              Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                              Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                              Attribute.DERIVE: False,
                              # python-pkcs11 adds these by default; a private key has none.
                              Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT,
                              Attribute.WRAP: DEFAULT})
            except pkcs11.PKCS11Error as exc:
                if type(exc).__name__ in _UNWRAP_REFUSED and self._present():
                    raise TokenError(
                        "the wrapped root key does not unwrap under the key-encryption key "
                        "these shares derive: it was wrapped under another key, or altered",
                        hint="check the bundle with `ceremony verify`, and that the shares "
                             "come from the ceremony that made this bundle") from None
                raise self._fail(exc, doing) from None
            try:
                modulus = bytes(key[Attribute.MODULUS])
                exponent = bytes(key[Attribute.PUBLIC_EXPONENT])
                if store:
                    self._session.create_object({
                        Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
                        Attribute.LABEL: label, Attribute.ID: bytes.fromhex(key_id),
                        Attribute.TOKEN: True, Attribute.MODULUS: modulus,
                        Attribute.PUBLIC_EXPONENT: exponent, Attribute.VERIFY: True,
                        Attribute.ENCRYPT: False, Attribute.WRAP: False})
                else:
                    key.destroy()
            except pkcs11.PKCS11Error as exc:
                if store:
                    raise self._failed_creating(exc, doing, label, key_id) from None
                raise self._fail(exc, doing) from None
        finally:
            self._destroy_kek(secret)
        der = _rsa_spki(modulus, exponent)
        try:
            return _rsa_checked(kind, der)
        except TokenError:
            if store:
                self.destroy(label, key_id)
            raise

    def _find_rsa_public(self, label: str, key_id: str) -> bytes | None:
        for obj in self._objects(label, key_id):
            if obj.object_class == ObjectClass.PUBLIC_KEY:
                try:
                    modulus, exponent = obj[Attribute.MODULUS], obj[Attribute.PUBLIC_EXPONENT]
                except pkcs11.PKCS11Error as exc:
                    raise self._fail(exc, f"reading the public key {label!r}") from None
                return _rsa_spki(bytes(modulus), bytes(exponent))
        return None

    def _sign_rsa_pss(self, label: str, key_id: str, data: bytes) -> bytes:
        """RSASSA-PSS on the token: SHA-256, MGF1-SHA-256, 32-byte salt."""
        return self._sign_rsa(label, key_id, data, Mechanism.SHA256_RSA_PKCS_PSS,
                              (Mechanism.SHA256, MGF.SHA256, st.RSA_PSS_SALT))

    def sign_pkcs1v15(self, kind: str, label: str, key_id: str, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256 on the token (CKM_SHA256_RSA_PKCS): the
        sha256WithRSAEncryption signature of a root certificate or CSR."""
        size = _rsa_bits(kind) // 8
        signature = self._sign_rsa(label, key_id, data, Mechanism.SHA256_RSA_PKCS, None)
        if len(signature) != size:
            raise TokenError(f"the token returned an {kind} signature of {len(signature)} "
                             f"bytes, not {size}", hint="the token or its module is faulty")
        return signature

    def _sign_rsa(self, label: str, key_id: str, data: bytes, mechanism: Mechanism,
                  param: Any) -> bytes:
        doing = f"signing with {label!r}"
        try:
            return bytes(self._private_key(label, key_id).sign(
                data, mechanism=mechanism, mechanism_param=param))
        except (pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid) as exc:
            # A stale cached handle, as in sign_ed25519: look the key up once more.
            self._keys.pop((label, key_id), None)
            if not self._present():
                raise token_error(exc, doing, removed=True) from None
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, doing) from None
        try:
            return bytes(self._private_key(label, key_id).sign(
                data, mechanism=mechanism, mechanism_param=param))
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, doing) from None

    def find_objects(self, label: str, key_id: str) -> list[TokenObject]:
        out = []
        for obj in self._objects(label, key_id):
            try:
                key_type = KeyType(obj[Attribute.KEY_TYPE]).name
            except (pkcs11.PKCS11Error, ValueError):
                key_type = "unknown"
            out.append(TokenObject(label, key_id,
                                   _CLASS_NAMES.get(obj.object_class, str(obj.object_class)),
                                   key_type))
        return out

    def destroy(self, label: str, key_id: str) -> list[TokenObject]:
        self._keys.pop((label, key_id), None)
        found = self.find_objects(label, key_id)
        try:
            for obj in self._objects(label, key_id):
                obj.destroy()
        except pkcs11.PKCS11Error as exc:
            error = self._fail(exc, f"destroying {label!r}")
            raise TokenError(error.message, hint="destroy it by hand with pkcs11-tool "
                             "before reusing the token; " + error.hint) from None
        return found

    # ------------------------------------------------ inventory (ceremony hsm inventory)

    def inventory(self) -> list[FoundObject]:
        """Every object the logged-in session can see, with public attributes only.

        Fingerprints follow ceremony/inventory.py: SHA-256 of the raw public key for EC and
        EdDSA keys, of the DER SubjectPublicKeyInfo for RSA.
        """
        try:
            objects = list(self._session.get_objects())
            return sorted((self._record(o) for o in objects),
                          key=lambda r: (r.label, r.key_id, r.object_class))
        except pkcs11.PKCS11Error as exc:
            raise self._fail(exc, "listing the token's objects") from None

    def _record(self, obj: Any) -> FoundObject:
        def get(attribute: Attribute) -> Any:
            try:
                return obj[attribute]
            except pkcs11.PKCS11Error:  # not applicable to this class, or not readable
                return None

        cls = _INVENTORY_CLASSES.get(obj.object_class, "other")
        raw_id = get(Attribute.ID)
        key_type = ""
        if cls in ("private_key", "public_key", "secret_key"):
            try:
                key_type = KeyType(get(Attribute.KEY_TYPE)).name
            except ValueError:
                key_type = "unknown"
        sensitive = extractable = None
        if cls in ("private_key", "secret_key"):
            sensitive, extractable = get(Attribute.SENSITIVE), get(Attribute.EXTRACTABLE)
        return FoundObject(str(get(Attribute.LABEL) or ""),
                           bytes(raw_id).hex() if raw_id is not None else "", cls, key_type,
                           sensitive, extractable, _public_fingerprint(cls, key_type, get))


_INVENTORY_CLASSES = {**_CLASS_NAMES, ObjectClass.CERTIFICATE: "certificate",
                      ObjectClass.DATA: "data"}


def _public_fingerprint(cls: str, key_type: str, get: Any) -> str:
    """SHA-256 hex of the public key the object holds or exposes, or ""."""
    if key_type in ("EC", "EC_EDWARDS", "EC_MONTGOMERY") and cls == "public_key":
        point = get(Attribute.EC_POINT)
        if point is None:
            return ""
        return hashlib.sha256(_unwrap_octet_string(bytes(point))).hexdigest()
    if key_type == "RSA" and cls in ("public_key", "private_key"):
        modulus, exponent = get(Attribute.MODULUS), get(Attribute.PUBLIC_EXPONENT)
        if modulus is None or exponent is None:
            return ""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

        der = RSAPublicNumbers(int.from_bytes(bytes(exponent), "big"),
                               int.from_bytes(bytes(modulus), "big")).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(der).hexdigest()
    return ""


def _unwrap_octet_string(data: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point; some modules give it bare."""
    if len(data) >= 2 and data[0] == 0x04:
        length, start = data[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, start = int.from_bytes(data[2:2 + count], "big"), 2 + count
        if start + length == len(data):
            return data[start:]
    return data


def text_value(value: Any) -> str:
    """A token-info field (bytes padded with blanks, or str) as plain text."""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value).strip()


def module_path(explicit: str | None, script_module: str | None) -> str:
    return explicit or script_module or os.environ.get("CEREMONY_PKCS11_MODULE") \
        or DEFAULT_MODULE
