"""RSA 3072 and 4096 root keys: generated in the token, exported only wrapped, rebuilt.

The KEK derivation is checked against an independent HKDF (``cryptography``'s), the wrap
against an independent RFC 5649 unwrap; the token's objects are read back in a separate
python-pkcs11 session and with pkcs11-tool; signatures are verified with ``cryptography``;
the rebuild goes into a second SoftHSM2 token (both tokens live in the fixture's one token
directory, since SOFTHSM2_CONF selects the directory); whole ceremonies run through the real
CLI and are verified by ``ceremony verify``.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
import shamir_mnemonic
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding
from pkcs11 import Attribute, KeyType, ObjectClass

from ceremony.adapters.pkcs11_token import Pkcs11Token
from ceremony.engine.derive import derive_kek, derive_root_private
from ceremony.engine.rsa import rebuild_rsa, wrap_rsa
from ceremony.errors import TokenError
from ceremony.model import statements as st
from ceremony.model.script import RootKeySpec
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.test_crash import Ceremony, prepare_ceremony, share_mnemonics

LABEL = "test rsa root key"
KEY_ID = "0a"
SEED = bytes(range(32))


def _spec(size: int = 3072, key_id: str = KEY_ID, label: str = LABEL) -> RootKeySpec:
    return RootKeySpec("rsa", None, size, label, key_id, 3650)


# ------------------------------------------------------------------ KEK and encoding (no token)


@pytest.mark.parametrize("size", [3072, 4096])
def test_kek_matches_an_independent_hkdf(size: int) -> None:
    """docs/kdf.md, rebuilt from its text with cryptography's HKDF: the same AES-256 KEK."""
    info = b"ceremony.root-key.v1|kek|rsa-" + str(size).encode() + b"|" + bytes.fromhex(KEY_ID)
    expected = HKDF(hashes.SHA256(), 32, b"ceremony.root-key.v1", info).derive(SEED)
    kek = derive_kek(bytearray(SEED), _spec(size))
    assert isinstance(kek, bytearray) and bytes(kek) == expected


def test_kek_is_domain_separated_and_rsa_keys_are_not_derived() -> None:
    first = derive_kek(bytearray(SEED), _spec())
    assert derive_kek(bytearray(SEED), _spec(label="relabelled")) == first
    for other in (derive_kek(bytearray(SEED), _spec(4096)),
                  derive_kek(bytearray(SEED), _spec(key_id="0b")),
                  derive_kek(bytearray(b"\x01" * 32), _spec()),
                  derive_root_private(bytearray(SEED), RootKeySpec(
                      "ed25519", None, None, LABEL, KEY_ID, 3650))):
        assert bytes(other) != bytes(first)
    with pytest.raises(ValueError, match="generated in the token, not derived"):
        derive_root_private(bytearray(SEED), _spec())


def test_rsa_key_encoding_is_strict() -> None:
    key = rsa.generate_private_key(65537, 3072)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    text = st.encode_key(der, "rsa-3072")
    assert text.startswith("rsa-3072:")
    assert st.decode_public_key(text) == ("rsa-3072", der)
    assert isinstance(st.public_key_object("rsa-3072", der), rsa.RSAPublicKey)
    with pytest.raises(ValueError):
        st.decode_public_key("rsa-4096:" + text.split(":")[1])  # a 3072-bit key as 4096
    odd = rsa.generate_private_key(3, 3072).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError):  # exponent 3: other length, and refused anyway
        st.public_key_object("rsa-3072", odd)
    message = b"a message"
    signature = key.sign(message, st.rsa_pss(), hashes.SHA256())
    assert st.verify_signature("rsa-3072", der, signature, message)
    assert not st.verify_signature("rsa-3072", der, signature, message + b"!")
    # PKCS#1 v1.5, or PSS with another salt length, is not the format's signature.
    from cryptography.hazmat.primitives.asymmetric import padding
    assert not st.verify_signature("rsa-3072", der, key.sign(
        message, padding.PKCS1v15(), hashes.SHA256()), message)
    assert not st.verify_signature("rsa-3072", der, key.sign(
        message, padding.PSS(padding.MGF1(hashes.SHA256()), 20), hashes.SHA256()), message)


# ------------------------------------------------------------------ the token (SoftHSM2)


def add_token(softhsm: SoftHsm, label: str) -> SoftHsm:
    """A second token in the same token directory (SOFTHSM2_CONF picks the directory)."""
    other = SoftHsm(softhsm.directory, softhsm.conf, label, softhsm.pin)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin",
                    other.pin, "--so-pin", "654321"], check=True, capture_output=True,
                   env=other.env)
    return other


def _open(softhsm: SoftHsm) -> Pkcs11Token:
    return Pkcs11Token(softhsm.module, softhsm.uri, bytearray(softhsm.pin.encode()))


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[Pkcs11Token]:
    opened = _open(softhsm)
    yield opened
    opened.close()


def _private_attributes(softhsm: SoftHsm, label: str) -> dict[str, object]:
    """The private key's attributes, in a separate python-pkcs11 session."""
    lib = pkcs11.lib(softhsm.module)  # (no reinitialize: it would close every session)
    # Login state is per token and process: our adapter's login lets this session see it.
    with lib.get_token(token_label=softhsm.label).open() as session:
        (private,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                          Attribute.LABEL: label})
        out: dict[str, object] = {name.lower(): private[getattr(Attribute, name)] for name in (
            "SENSITIVE", "EXTRACTABLE", "ALWAYS_SENSITIVE", "NEVER_EXTRACTABLE", "PRIVATE",
            "TOKEN", "SIGN", "DECRYPT", "UNWRAP", "DERIVE", "KEY_TYPE", "ID")}
        for name in ("VALUE", "PRIVATE_EXPONENT", "PRIME_1"):
            try:
                out[name.lower()] = bytes(private[getattr(Attribute, name)])
            except pkcs11.PKCS11Error as exc:
                out[name.lower()] = type(exc).__name__
    return out


def _pss_verify(public_der: bytes, signature: bytes, message: bytes) -> None:
    key = serialization.load_der_public_key(public_der)
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, message, st.rsa_pss(), hashes.SHA256())


def _pkcs8_from_blob(kek: bytes, blob: bytes) -> rsa.RSAPrivateKey:
    """An independent RFC 5649 unwrap; the PKCS#8 DER is read by its own length (SoftHSM2
    zero-pads it to a multiple of 8 before wrapping)."""
    der = aes_key_unwrap_with_padding(kek, blob)
    assert der[:2] == b"\x30\x82"
    length = 4 + int.from_bytes(der[2:4], "big")
    assert der[length:] == bytes(len(der) - length)
    key = serialization.load_der_private_key(der[:length], None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_generate_wrap_and_rebuild_into_a_second_token(token: Pkcs11Token,
                                                       softhsm: SoftHsm) -> None:
    spec = _spec()
    started = time.monotonic()
    public = token.generate_rsa(spec.kind, LABEL, KEY_ID)
    generated = time.monotonic() - started
    assert st.public_key_object("rsa-3072", public).key_size == 3072  # type: ignore[union-attr]
    assert token.find_public(spec.kind, LABEL, KEY_ID) == public
    message = b"a message signed inside the token"
    signature = token.sign(spec.kind, LABEL, KEY_ID, message)
    assert len(signature) == 384
    _pss_verify(public, signature, message)
    assert st.verify_signature(spec.kind, public, signature, message)
    assert token.sign(spec.kind, LABEL, KEY_ID, message) != signature  # PSS is randomized

    before = _private_attributes(softhsm, LABEL)
    assert (before["sensitive"], before["always_sensitive"], before["private"],
            before["token"], before["sign"]) == (True, True, True, True, True)
    assert (before["decrypt"], before["unwrap"], before["derive"]) == (False, False, False)
    assert before["extractable"] is True  # only so that it can be wrapped, once
    assert before["key_type"] == KeyType.RSA and before["id"] == bytes.fromhex(KEY_ID)
    assert before["private_exponent"] == before["prime_1"] == "AttributeSensitive"
    assert before["value"] in ("AttributeSensitive", "AttributeTypeInvalid")

    blob = wrap_rsa(token, bytearray(SEED), spec)
    after = _private_attributes(softhsm, LABEL)
    assert after["extractable"] is False and after["never_extractable"] is False
    assert after["sensitive"] is True and after["private_exponent"] == "AttributeSensitive"
    # The KEK and the unwrap check's session object are gone: the pair, nothing else.
    objects = softhsm.objects()
    assert sorted(o.split(";")[0] for o in objects) == ["Private Key Object",
                                                        "Public Key Object"], objects
    assert all("; RSA" in o for o in objects), objects
    with pytest.raises(TokenError):  # a second export is refused by the token
        wrap_rsa(token, bytearray(SEED), spec)
    assert len(softhsm.objects()) == 2  # ... and leaves no KEK behind

    # RFC 5649 over PKCS#8, checked without the token: the KEK from docs/kdf.md opens it.
    kek = bytes(derive_kek(bytearray(SEED), spec))
    independent = _pkcs8_from_blob(kek, blob)
    assert independent.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == public

    # Shares + blob rebuild the key in a second token: the same public key, signs the same.
    second = add_token(softhsm, softhsm.label + "-b")
    other = _open(second)
    try:
        started = time.monotonic()
        assert rebuild_rsa(other, bytearray(SEED), spec, blob) == public
        rebuilt = time.monotonic() - started
        assert other.find_public(spec.kind, LABEL, KEY_ID) == public
        _pss_verify(public, other.sign(spec.kind, LABEL, KEY_ID, message), message)
        attributes = _private_attributes(second, LABEL)
        assert (attributes["sensitive"], attributes["extractable"], attributes["sign"],
                attributes["decrypt"], attributes["unwrap"], attributes["derive"]) == (
            True, False, True, False, False, False)
        assert attributes["private_exponent"] == "AttributeSensitive"
        assert sorted(o.split(";")[0] for o in second.objects()) == [
            "Private Key Object", "Public Key Object"]  # no KEK left

        # A blob wrapped under another KEK (other shares) fails with one plain sentence.
        with pytest.raises(TokenError) as caught:
            rebuild_rsa(other, bytearray(b"\x01" * 32), _spec(label="another"), blob)
        assert caught.value.message == (
            "the wrapped root key does not unwrap under the key-encryption key these shares "
            "derive: it was wrapped under another key, or altered")
        assert len(second.objects()) == 2  # nothing added: no key, no KEK
    finally:
        other.close()
    print(f"\nRSA-3072 keygen {generated:.2f} s, rebuild {rebuilt:.3f} s")


def test_tampered_blob_does_not_unwrap(token: Pkcs11Token, softhsm: SoftHsm) -> None:
    spec = _spec()
    token.generate_rsa(spec.kind, LABEL, KEY_ID)
    blob = wrap_rsa(token, bytearray(SEED), spec)
    token.destroy(LABEL, KEY_ID)
    with pytest.raises(TokenError, match="does not unwrap under the key-encryption key"):
        rebuild_rsa(token, bytearray(SEED), spec, blob[:-1] + bytes([blob[-1] ^ 1]))
    assert softhsm.objects() == []


# ------------------------------------------------------------------ whole ceremonies


def _rsa_ceremony(tmp_path: Path, softhsm: SoftHsm, size: int) -> Ceremony:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, script_edit=(
        'algorithm = "ed25519"', f'algorithm = "rsa"\nsize = {size}'))
    assert c.script.root_key.kind == f"rsa-{size}"
    result = c.run()
    assert result.returncode == 0, result.stdout + result.stderr
    return c


def _check_rsa_ceremony(c: Ceremony, softhsm: SoftHsm, size: int) -> None:
    kind = f"rsa-{size}"
    verified = c.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "outcome completed" in verified.stdout

    (recorded,) = [e["payload"] for e in c.entries() if e["event"] == "root_key.created"]
    assert recorded["kind"] == kind
    der = base64.b64decode(recorded["public_key"].split(":", 1)[1])
    assert recorded["fingerprint"] == hashlib.sha256(der).hexdigest()
    assert recorded["attributes"] == {"sensitive": True, "extractable": False}
    blob = (c.out / st.WRAPPED_FILE).read_bytes()
    assert recorded["wrapped"]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert recorded["wrapped"]["mechanism"] == "AES_KEY_WRAP_PAD"
    assert recorded["wrapped"]["kek_destroyed"] is True
    (completed,) = [e["payload"] for e in c.entries() if e["event"] == "action.completed"]
    assert completed["files"][st.WRAPPED_FILE] == hashlib.sha256(blob).hexdigest()
    assert sorted((o["class"], o["key_type"]) for o in completed["created"]) == [
        ("private_key", "RSA"), ("public_key", "RSA")]

    pem = (c.out / "root-public-key.pem").read_bytes()
    key = serialization.load_pem_public_key(pem[pem.index(b"-----BEGIN"):])
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == size
    assert key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo) == der
    seal = c.entries()[-1]["payload"]
    key.verify(base64.b64decode(seal["root_key_signature"]), st.message(seal["statement"]),
               st.rsa_pss(), hashes.SHA256())

    # On the token: exactly the RSA key pair (no KEK, no transcript key).
    objects = softhsm.objects()
    assert sorted(o.split(";")[0] for o in objects) == ["Private Key Object",
                                                        "Public Key Object"], objects
    assert all("; RSA" in o for o in objects), objects

    # Two of the three share sheets plus the bundle's blob rebuild it in a second token.
    seed = bytearray(shamir_mnemonic.combine_mnemonics(share_mnemonics(c.secret)[:2], b""))
    second = add_token(softhsm, softhsm.label + "-r")
    other = _open(second)
    try:
        assert rebuild_rsa(other, seed, c.script.root_key, blob) == der
    finally:
        other.close()


def test_headless_ceremony_with_an_rsa_3072_root_key(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = _rsa_ceremony(tmp_path, softhsm, 3072)
    _check_rsa_ceremony(c, softhsm, 3072)
    # Inventory against the bundle: the RSA pair is what the transcript recorded, no drift.
    inventory = run_cli("hsm", "inventory", "--token", softhsm.uri, "--module",
                        softhsm.module, "--pin-file", str(c.pin_path), "--bundle", str(c.out),
                        env=softhsm.env)
    assert inventory.returncode == 0, inventory.stdout + inventory.stderr

    # A tampered blob: `ceremony verify` refuses the bundle (exit 1) and names the file.
    path = c.out / st.WRAPPED_FILE
    blob = path.read_bytes()
    path.write_bytes(blob[:100] + bytes([blob[100] ^ 1]) + blob[101:])
    result = c.verify()
    assert result.returncode == 1
    assert "root-key.wrapped" in result.stdout + result.stderr
    failure = verify_bundle(c.out).first_failure
    assert failure is not None and failure.name == "seal"
    assert failure.requirement == "CER-RSA-WRAP"
    path.write_bytes(blob)  # the original bytes verify again
    assert verify_bundle(c.out).ok


def test_headless_ceremony_with_an_rsa_4096_root_key(tmp_path: Path, softhsm: SoftHsm) -> None:
    started = time.monotonic()
    c = _rsa_ceremony(tmp_path, softhsm, 4096)
    print(f"\nRSA-4096 headless ceremony {time.monotonic() - started:.1f} s")
    _check_rsa_ceremony(c, softhsm, 4096)


def test_abort_after_an_rsa_root_key_removes_key_kek_and_blob(tmp_path: Path,
                                                              softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, aborts={"close": "drill"},
                         script_edit=('algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 3072'))
    result = c.run()
    assert result.returncode == 0, result.stderr
    assert "sealed: outcome aborted" in result.stdout
    entries = c.entries()
    (aborted,) = [e["payload"] for e in entries if e["event"] == "ceremony.aborted"]
    assert st.WRAPPED_FILE in aborted["removed_files"]
    assert {(o["class"], o["key_type"]) for o in aborted["destroyed_objects"]} == {
        ("private_key", "RSA"), ("public_key", "RSA")}
    assert not (c.out / st.WRAPPED_FILE).exists()
    assert softhsm.objects() == []
    verified = c.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
