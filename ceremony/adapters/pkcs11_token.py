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
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from ceremony.engine.derive import wipe
from ceremony.engine.ports import TokenObject
from ceremony.errors import TokenError, UsageError

ED25519_OID = "1.3.101.112"
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


class Pkcs11Token:
    """An open, logged-in read-write session on one token."""

    def __init__(self, module: str, uri: str, pin: bytearray) -> None:
        self.module = module
        attrs = parse_uri(uri)
        if not Path(module).is_file():
            raise TokenError(f"the PKCS#11 module {module} does not exist",
                             hint="install it (softhsm2 for rehearsal) or pass --module")
        try:
            self._lib = pkcs11.lib(module)
            self._lib.reinitialize()
            tokens = list(self._lib.get_tokens(token_label=attrs.get("token"),
                                               token_serial=(attrs["serial"].encode()
                                                             if "serial" in attrs else None)))
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"the PKCS#11 module {module} failed to list tokens "
                             f"({type(exc).__name__})", hint="check the module and the "
                             "token are present") from None
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
        self._token = tokens[0]
        try:
            self._session = self._token.open(rw=True, user_pin=pin.decode())
        except pkcs11.PinIncorrect:
            raise TokenError("the token refused the PIN", hint="check the PIN; the token "
                             "locks after too many wrong tries") from None
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"cannot log in to the token ({type(exc).__name__})") from None
        self._params = encode_named_curve_parameters(ED25519_OID)

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
            "label": t.label, "model": t.model, "serial": _text(t.serial),
            "manufacturer": t.manufacturer_id,
            "firmware": "{}.{}".format(*slot.firmware_version),
            "hardware": "{}.{}".format(*slot.hardware_version),
            "mechanisms": ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA"],
        }

    def random_bytes(self, n: int) -> bytes:
        try:
            return bytes(self._session.generate_random(n * 8))  # python-pkcs11 takes bits
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"the token's random generator failed ({type(exc).__name__})") \
                from None

    def generate_ed25519(self, label: str, key_id: str) -> bytes:
        common = {Attribute.LABEL: label, Attribute.ID: bytes.fromhex(key_id),
                  Attribute.TOKEN: True}
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
            self.destroy(label, key_id)
            raise TokenError(f"the token could not generate an Ed25519 key "
                             f"({type(exc).__name__})", hint="the token may not support "
                             "Ed25519 (EC_EDWARDS_KEY_PAIR_GEN)") from None

    def import_ed25519(self, label: str, key_id: str, private_seed: bytearray) -> bytes:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        value = bytes(private_seed)
        try:
            public = Ed25519PrivateKey.from_private_bytes(value).public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            common = {Attribute.LABEL: label, Attribute.ID: bytes.fromhex(key_id),
                      Attribute.TOKEN: True, Attribute.KEY_TYPE: KeyType.EC_EDWARDS,
                      Attribute.EC_PARAMS: self._params}
            self._session.create_object({
                **common, Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.VALUE: value,
                Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                # A signing key does nothing else: SoftHSM2 defaults these to true.
                Attribute.DECRYPT: False, Attribute.UNWRAP: False, Attribute.DERIVE: False})
            self._session.create_object({
                **common, Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                Attribute.EC_POINT: _der_octet_string(public), Attribute.VERIFY: True})
        except pkcs11.PKCS11Error as exc:
            self.destroy(label, key_id)
            raise TokenError(f"the token refused to store the root key "
                             f"({type(exc).__name__}); nothing was left on it",
                             hint="check the token has space and supports Ed25519") from None
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
            raise TokenError(f"cannot list the token's objects ({type(exc).__name__})") \
                from None

    def find_ed25519(self, label: str, key_id: str) -> bytes | None:
        for obj in self._objects(label, key_id):
            if obj.object_class == ObjectClass.PUBLIC_KEY:
                return _raw_point(obj[Attribute.EC_POINT])
        return None

    def sign_ed25519(self, label: str, key_id: str, data: bytes) -> bytes:
        keys = [o for o in self._objects(label, key_id)
                if o.object_class == ObjectClass.PRIVATE_KEY]
        if len(keys) != 1:
            raise TokenError(f"expected one private key labelled {label!r} id {key_id} on the "
                             f"token, found {len(keys)}")
        try:
            return bytes(keys[0].sign(data, mechanism=Mechanism.EDDSA))
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"the token failed to sign with {label!r} "
                             f"({type(exc).__name__})") from None

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
        found = self.find_objects(label, key_id)
        try:
            for obj in self._objects(label, key_id):
                obj.destroy()
        except pkcs11.PKCS11Error as exc:
            raise TokenError(f"the token refused to destroy {label!r} "
                             f"({type(exc).__name__})", hint="destroy it by hand with "
                             "pkcs11-tool before reusing the token") from None
        return found


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value).strip()


def module_path(explicit: str | None, script_module: str | None) -> str:
    return explicit or script_module or os.environ.get("CEREMONY_PKCS11_MODULE") \
        or DEFAULT_MODULE
