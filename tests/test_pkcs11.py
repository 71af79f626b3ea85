"""The Pkcs11Token adapter against a real SoftHSM2 token (no mocks).

Attributes are read back through python-pkcs11 directly and objects are listed with
pkcs11-tool (``softhsm.objects()``), so the adapter is never its own witness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pkcs11 import Attribute, ObjectClass

from ceremony.adapters.pkcs11_token import Pkcs11Token
from ceremony.engine.ports import TokenObject
from ceremony.errors import CeremonyError, TokenError
from tests.conftest import SoftHsm, run_cli
from tests.test_crash import prepare_ceremony

# RFC 8032, section 7.1, TEST 1 (the empty message).
RFC8032_SECRET = bytes.fromhex(
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex(
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701"
    "cf9b46bd25bf5f0595bbe24655141438e7a100b")

LABEL = "test root key"
KEY_ID = "01"


def _open(softhsm: SoftHsm, uri: str | None = None, pin: str | None = None) -> Pkcs11Token:
    return Pkcs11Token(softhsm.module, uri or softhsm.uri,
                       bytearray((pin or softhsm.pin).encode()))


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[Pkcs11Token]:
    opened = _open(softhsm)
    yield opened
    opened.close()


def _private_key_attributes(softhsm: SoftHsm) -> dict[str, object]:
    """Attributes of the test key's private object, read in a separate python-pkcs11 session.

    The adapter's session has logged the user in; PKCS#11 shares that login with every
    session of the process, so this one sees private objects without a PIN of its own.
    ``value`` is what reading CKA_VALUE gives: the exception's class name, or the bytes.
    """
    lib = pkcs11.lib(softhsm.module)
    with lib.get_token(token_label=softhsm.label).open() as session:
        keys = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                         Attribute.LABEL: LABEL}))
        assert len(keys) == 1
        key = keys[0]
        out: dict[str, object] = {name.lower(): key[getattr(Attribute, name)] for name in (
            "SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE", "PRIVATE", "TOKEN", "SIGN",
            "DECRYPT", "UNWRAP", "DERIVE")}
        try:
            out["value"] = bytes(key[Attribute.VALUE])
        except pkcs11.PKCS11Error as exc:
            out["value"] = type(exc).__name__
    return out


def _plain_sentence(exc: CeremonyError) -> None:
    """One sentence, no library exception chained or named."""
    assert "\n" not in exc.message
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__
    text = exc.describe()
    for leak in ("PKCS11Error", "Traceback", "CKR_", "pkcs11.exceptions"):
        assert leak not in text


def test_open_by_token_label(softhsm: SoftHsm) -> None:
    opened = _open(softhsm, f"pkcs11:token={softhsm.label}")
    try:
        assert opened.describe()["label"] == softhsm.label
    finally:
        opened.close()


def test_open_by_serial(softhsm: SoftHsm) -> None:
    first = _open(softhsm)
    serial = first.describe()["serial"]
    first.close()
    assert serial
    opened = _open(softhsm, f"pkcs11:serial={serial}")
    try:
        described = opened.describe()
        assert described["serial"] == serial
        assert described["label"] == softhsm.label
    finally:
        opened.close()


def test_open_by_label_and_model(softhsm: SoftHsm) -> None:
    opened = _open(softhsm, f"pkcs11:model=SoftHSM%20v2;token={softhsm.label}")
    opened.close()


@pytest.mark.parametrize("uri", ["pkcs11:token=no-such-token", "pkcs11:serial=0000000000000000",
                                 "pkcs11:token={label};model=NotThisModel"])
def test_uri_matching_nothing_is_refused(softhsm: SoftHsm, uri: str) -> None:
    with pytest.raises(TokenError) as caught:
        _open(softhsm, uri.format(label=softhsm.label))
    assert caught.value.message.startswith("no token matches pkcs11:")
    _plain_sentence(caught.value)


def test_wrong_pin_is_refused(softhsm: SoftHsm) -> None:
    with pytest.raises(TokenError) as caught:
        _open(softhsm, pin="000000")
    assert caught.value.message == "the token refused the PIN"
    _plain_sentence(caught.value)
    # And the right PIN still works afterwards (one wrong try does not lock the token).
    _open(softhsm).close()


def test_generate_and_sign(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    public = token.generate_ed25519(LABEL, KEY_ID)
    assert len(public) == 32
    assert token.find_ed25519(LABEL, KEY_ID) == public
    message = b"a message signed inside the token"
    signature = token.sign_ed25519(LABEL, KEY_ID, message)
    Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    attributes = _private_key_attributes(softhsm)
    assert attributes["sensitive"] is True
    assert attributes["extractable"] is False
    assert attributes["never_extractable"] is True  # generated on the token
    assert attributes["value"] == "AttributeSensitive"


def test_import_rfc8032_vector(token: Pkcs11Token) -> None:
    seed = bytearray(RFC8032_SECRET)
    public = token.import_ed25519(LABEL, KEY_ID, seed)
    assert public == RFC8032_PUBLIC
    assert token.find_ed25519(LABEL, KEY_ID) == RFC8032_PUBLIC
    # Ed25519 is deterministic: the token must produce the RFC's exact signature.
    signature = token.sign_ed25519(LABEL, KEY_ID, b"")
    assert signature == RFC8032_SIGNATURE
    Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC).verify(signature, b"")
    other = b"another message"
    Ed25519PublicKey.from_public_bytes(RFC8032_PUBLIC).verify(
        token.sign_ed25519(LABEL, KEY_ID, other), other)


def test_imported_key_is_sensitive_and_not_extractable(token: Pkcs11Token,
                                                       softhsm: SoftHsm) -> None:
    token.import_ed25519(LABEL, KEY_ID, bytearray(RFC8032_SECRET))
    attributes = _private_key_attributes(softhsm)
    assert attributes["sensitive"] is True
    assert attributes["extractable"] is False
    assert attributes["private"] is True
    assert attributes["token"] is True
    assert attributes["sign"] is True
    # A root signing key can do nothing but sign (SoftHSM2 would default these to true).
    assert (attributes["decrypt"], attributes["unwrap"], attributes["derive"]) == (
        False, False, False)
    # CKA_VALUE cannot be read: the token answers CKR_ATTRIBUTE_SENSITIVE.
    assert attributes["value"] == "AttributeSensitive"


def test_find_objects_and_destroy(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    assert token.find_objects(LABEL, KEY_ID) == []
    assert token.find_ed25519(LABEL, KEY_ID) is None
    token.import_ed25519(LABEL, KEY_ID, bytearray(RFC8032_SECRET))
    token.generate_ed25519("another key", "02")
    expected = [TokenObject(LABEL, KEY_ID, "private_key", "EC_EDWARDS"),
                TokenObject(LABEL, KEY_ID, "public_key", "EC_EDWARDS")]
    assert sorted(token.find_objects(LABEL, KEY_ID), key=repr) == expected
    assert len(softhsm.objects()) == 4

    assert sorted(token.destroy(LABEL, KEY_ID), key=repr) == expected
    assert token.find_objects(LABEL, KEY_ID) == []
    assert len(softhsm.objects()) == 2  # only the other key's pair is left
    assert token.destroy(LABEL, KEY_ID) == []  # idempotent

    token.destroy("another key", "02")
    assert softhsm.objects() == []


def test_sign_without_key_is_a_token_error(token: Pkcs11Token) -> None:
    with pytest.raises(TokenError) as caught:
        token.sign_ed25519(LABEL, KEY_ID, b"data")
    assert "found 0" in caught.value.message


def test_describe(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    described = token.describe()
    assert described["label"] == softhsm.label
    assert described["model"] == "SoftHSM v2"
    assert described["serial"] and described["serial"] == described["serial"].strip()
    assert described["manufacturer"] == "SoftHSM project"
    with open(softhsm.module, "rb") as module:
        assert described["module_sha256"] == hashlib.sha256(module.read()).hexdigest()
    assert described["module"] == softhsm.module


def test_random_bytes(token: Pkcs11Token) -> None:
    first, second = token.random_bytes(32), token.random_bytes(32)
    assert len(first) == len(second) == 32
    assert first != second


def test_cli_reports_a_wrong_pin_in_one_sentence(tmp_path: Path, softhsm: SoftHsm) -> None:
    ceremony = prepare_ceremony(tmp_path / "ceremony", softhsm, activation="known-pin")
    ceremony.pin_path.write_text("000000\n")
    result = ceremony.run()
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == "ceremony: the token refused the PIN"
    for leak in ("Traceback", "PKCS11Error", "PinIncorrect"):
        assert leak not in result.stderr
    assert not ceremony.out.exists()
    assert softhsm.objects() == []


def test_cli_reports_an_unknown_token_in_one_sentence(tmp_path: Path, softhsm: SoftHsm) -> None:
    ceremony = prepare_ceremony(tmp_path / "ceremony", softhsm, activation="known-pin")
    result = run_cli("run", str(ceremony.script_path), "--headless", "--answers",
                     str(ceremony.answers_path), "--out", str(ceremony.out), "--rehearsal",
                     "--token", "pkcs11:token=not-here", "--module", softhsm.module,
                     "--pin-file", str(ceremony.pin_path), env=softhsm.env)
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == "ceremony: no token matches pkcs11:token=not-here"
    assert "Traceback" not in result.stderr
    assert not ceremony.out.exists()
