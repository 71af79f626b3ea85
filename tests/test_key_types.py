"""ECDSA P-256 and P-384 root keys: derivation, the token adapter on SoftHSM2, whole ceremonies.

The derivation is checked against an independent HKDF (``cryptography``'s); the token's keys
are read back in a separate python-pkcs11 session; signatures are verified with
``cryptography``; the ceremonies run through the real CLI and are verified by
``ceremony verify``. The Ed25519 path is covered by test_pkcs11.py and the golden vectors.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
import shamir_mnemonic
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pkcs11 import Attribute, KeyType, ObjectClass

from ceremony.adapters.pkcs11_token import Pkcs11Token
from ceremony.engine.derive import EC_ORDERS, derive_root_private
from ceremony.model import statements as st
from ceremony.model.script import RootKeySpec
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm
from tests.test_crash import Ceremony, prepare_ceremony, share_mnemonics

LABEL = "test ecdsa root key"
KEY_ID = "0a"
CURVES = {"p256": (ec.SECP256R1(), hashes.SHA256(), 32), "p384": (ec.SECP384R1(),
                                                                   hashes.SHA384(), 48)}
SEED = bytes(range(32))


def _spec(curve: str, key_id: str = KEY_ID, label: str = LABEL) -> RootKeySpec:
    return RootKeySpec("ecdsa", curve, None, label, key_id, 3650)


def _host_public(private: bytearray, curve: str) -> bytes:
    key = ec.derive_private_key(int.from_bytes(private, "big"), CURVES[curve][0])
    return key.public_key().public_bytes(serialization.Encoding.X962,
                                         serialization.PublicFormat.UncompressedPoint)


# ------------------------------------------------------------------ derivation (no token)


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_derivation_matches_an_independent_hkdf(curve: str) -> None:
    """docs/kdf.md, rebuilt from its text with cryptography's HKDF: the same scalar."""
    size = CURVES[curve][2]
    order = EC_ORDERS[f"ecdsa-{curve}"][0]
    info = b"ceremony.root-key.v1|ecdsa-" + curve.encode() + b"|" + bytes.fromhex(KEY_ID)
    candidate = HKDF(hashes.SHA256(), size + 8, b"ceremony.root-key.v1", info).derive(SEED)
    expected = (int.from_bytes(candidate, "big") % (order - 1) + 1).to_bytes(size, "big")
    private = derive_root_private(bytearray(SEED), _spec(curve))
    assert isinstance(private, bytearray)
    assert bytes(private) == expected
    assert 1 <= int.from_bytes(private, "big") < order


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_derivation_is_deterministic_and_domain_separated(curve: str) -> None:
    first = derive_root_private(bytearray(SEED), _spec(curve))
    assert derive_root_private(bytearray(SEED), _spec(curve)) == first
    others = {
        "another key id": derive_root_private(bytearray(SEED), _spec(curve, key_id="0b")),
        "another seed": derive_root_private(bytearray(b"\x01" * 32), _spec(curve)),
        "the other curve": derive_root_private(
            bytearray(SEED), _spec("p384" if curve == "p256" else "p256")),
        "ed25519": derive_root_private(bytearray(SEED), RootKeySpec(
            "ed25519", None, None, LABEL, KEY_ID, 3650)),
    }
    for what, other in others.items():
        assert bytes(other)[:16] != bytes(first)[:16], what
    # The label is not an input: a recovery may relabel the key and still rebuild it.
    assert derive_root_private(bytearray(SEED), _spec(curve, label="relabelled")) == first


def test_transcript_key_encoding_is_strict() -> None:
    point = _host_public(derive_root_private(bytearray(SEED), _spec("p256")), "p256")
    text = st.encode_key(point, "ecdsa-p256")
    assert text.startswith("ecdsa-p256:")
    assert st.decode_public_key(text) == ("ecdsa-p256", point)
    with pytest.raises(ValueError):
        st.decode_key(text)  # transcript and identity keys stay Ed25519
    for bad in ("ecdsa-p384:" + text.split(":")[1],  # a P-256 point labelled P-384
                "ecdsa-p521:" + text.split(":")[1],
                "ecdsa-p256:" + base64.b64encode(b"\x02" + point[1:33]).decode()):
        with pytest.raises(ValueError):
            st.decode_public_key(bad)
    off_curve = point[:-1] + bytes([point[-1] ^ 1])
    with pytest.raises(ValueError):
        st.public_key_object("ecdsa-p256", off_curve)


# ------------------------------------------------------------------ the token (SoftHSM2)


@pytest.fixture
def token(softhsm: SoftHsm) -> Iterator[Pkcs11Token]:
    opened = Pkcs11Token(softhsm.module, softhsm.uri, bytearray(softhsm.pin.encode()))
    yield opened
    opened.close()


def _read_back(softhsm: SoftHsm, label: str) -> dict[str, object]:
    """The private and public objects' attributes, in a separate python-pkcs11 session."""
    lib = pkcs11.lib(softhsm.module)
    with lib.get_token(token_label=softhsm.label).open() as session:
        (private,) = session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                          Attribute.LABEL: label})
        (public,) = session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                         Attribute.LABEL: label})
        out: dict[str, object] = {name.lower(): private[getattr(Attribute, name)] for name in (
            "SENSITIVE", "EXTRACTABLE", "PRIVATE", "TOKEN", "SIGN", "DECRYPT", "UNWRAP",
            "DERIVE", "KEY_TYPE", "EC_PARAMS", "ID")}
        try:
            out["value"] = bytes(private[Attribute.VALUE])
        except pkcs11.PKCS11Error as exc:
            out["value"] = type(exc).__name__
        out["public_key_type"] = public[Attribute.KEY_TYPE]
        out["public_params"] = public[Attribute.EC_PARAMS]
        out["ec_point"] = bytes(public[Attribute.EC_POINT])
    return out


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_import_sign_and_verify_on_softhsm(token: Pkcs11Token, softhsm: SoftHsm,
                                           curve: str) -> None:
    kind = f"ecdsa-{curve}"
    private = derive_root_private(bytearray(SEED), _spec(curve))
    expected = _host_public(private, curve)
    public = token.import_key(kind, LABEL, KEY_ID, private)
    assert public == expected
    assert token.find_public(kind, LABEL, KEY_ID) == expected
    key = ec.EllipticCurvePublicKey.from_encoded_point(CURVES[curve][0], public)
    message = b"a message signed inside the token"
    signature = token.sign(kind, LABEL, KEY_ID, message)
    # DER, verified by cryptography over the curve's hash (SHA-256 / SHA-384).
    r, s = decode_dss_signature(signature)
    assert encode_dss_signature(r, s) == signature
    key.verify(signature, message, ec.ECDSA(CURVES[curve][1]))
    assert st.verify_signature(kind, public, signature, message)
    assert not st.verify_signature(kind, public, signature, message + b"!")
    # ECDSA is randomized: a second signature differs and verifies too.
    again = token.sign(kind, LABEL, KEY_ID, message)
    assert again != signature
    key.verify(again, message, ec.ECDSA(CURVES[curve][1]))

    attributes = _read_back(softhsm, LABEL)
    assert attributes["key_type"] == attributes["public_key_type"] == KeyType.EC
    oid = {"p256": "1.2.840.10045.3.1.7", "p384": "1.3.132.0.34"}[curve]
    from pkcs11.util.ec import encode_named_curve_parameters
    assert attributes["ec_params"] == attributes["public_params"] == \
        encode_named_curve_parameters(oid)
    assert attributes["ec_point"] == bytes([0x04, len(expected)]) + expected  # DER OCTET STRING
    assert attributes["id"] == bytes.fromhex(KEY_ID)
    assert (attributes["sensitive"], attributes["extractable"], attributes["private"],
            attributes["token"], attributes["sign"]) == (True, False, True, True, True)
    assert (attributes["decrypt"], attributes["unwrap"], attributes["derive"]) == (
        False, False, False)
    assert attributes["value"] == "AttributeSensitive"
    objects = softhsm.objects()
    assert len(objects) == 2
    assert all(o.startswith(("Private Key Object; EC", "Public Key Object; EC")) for o in objects)
    assert not any("EC_EDWARDS" in o for o in objects)


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_same_seed_rebuilds_the_same_key_on_the_token(token: Pkcs11Token, curve: str) -> None:
    kind = f"ecdsa-{curve}"
    first = token.import_key(kind, LABEL, KEY_ID,
                             derive_root_private(bytearray(SEED), _spec(curve)))
    token.destroy(LABEL, KEY_ID)
    assert token.find_public(kind, LABEL, KEY_ID) is None
    rebuilt = token.import_key(kind, LABEL, KEY_ID,
                               derive_root_private(bytearray(SEED), _spec(curve)))
    assert rebuilt == first
    other = token.import_key(kind, "another", "0b",
                             derive_root_private(bytearray(SEED), _spec(curve, key_id="0b")))
    assert other != first


def test_find_public_refuses_a_key_of_another_curve(token: Pkcs11Token) -> None:
    token.import_key("ecdsa-p256", LABEL, KEY_ID,
                     derive_root_private(bytearray(SEED), _spec("p256")))
    from ceremony.errors import TokenError
    with pytest.raises(TokenError, match="not on the ecdsa-p384 curve"):
        token.find_public("ecdsa-p384", LABEL, KEY_ID)


# ------------------------------------------------------------------ whole ceremonies


def _ecdsa_ceremony(tmp_path: Path, softhsm: SoftHsm, curve: str) -> Ceremony:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, script_edit=(
        'algorithm = "ed25519"', f'algorithm = "ecdsa"\ncurve = "{curve}"'))
    assert c.script.root_key.kind == f"ecdsa-{curve}"
    result = c.run()
    assert result.returncode == 0, result.stdout + result.stderr
    return c


@pytest.mark.parametrize("curve", ["p256", "p384"])
def test_headless_ceremony_with_an_ecdsa_root_key(tmp_path: Path, softhsm: SoftHsm,
                                                  curve: str) -> None:
    kind = f"ecdsa-{curve}"
    c = _ecdsa_ceremony(tmp_path, softhsm, curve)
    verified = c.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "outcome completed" in verified.stdout

    created = [e["payload"] for e in c.entries() if e["event"] == "root_key.created"]
    assert len(created) == 1
    recorded = created[0]
    assert recorded["kind"] == kind
    assert recorded["public_key"].startswith(kind + ":")
    point = base64.b64decode(recorded["public_key"].split(":", 1)[1])
    assert len(point) == {"p256": 65, "p384": 97}[curve] and point[0] == 0x04
    assert recorded["fingerprint"] == hashlib.sha256(point).hexdigest()

    # The PEM is a SubjectPublicKeyInfo that cryptography loads, and it is the recorded key.
    pem = (c.out / "root-public-key.pem").read_bytes()
    key = serialization.load_pem_public_key(pem[pem.index(b"-----BEGIN"):])
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == CURVES[curve][0].name
    assert key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint) == point

    # The seal's proof of possession verifies with cryptography alone.
    seal = c.entries()[-1]["payload"]
    signature = base64.b64decode(seal["root_key_signature"])
    key.verify(signature, st.message(seal["statement"]), ec.ECDSA(CURVES[curve][1]))

    # Shares alone rebuild the key: two of the three sheets, the KDF, the same point.
    mnemonics = share_mnemonics(c.secret)
    seed = bytearray(shamir_mnemonic.combine_mnemonics(mnemonics[:2], b""))
    assert _host_public(derive_root_private(seed, c.script.root_key), curve) == point

    # On the token: the root key pair (EC) and nothing else.
    objects = softhsm.objects()
    assert sorted(o.split(";")[0] for o in objects) == ["Private Key Object",
                                                        "Public Key Object"]
    assert all("; EC" in o and "EC_EDWARDS" not in o for o in objects), objects


def _rewrite_seal(bundle: Path, signature: bytes) -> None:
    path = bundle / "transcript.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    seal = json.loads(lines[-1])
    seal["payload"]["root_key_signature"] = base64.b64encode(signature).decode()
    from ceremony.canonical import canonical_bytes
    lines[-1] = canonical_bytes(seal)
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_tampered_ecdsa_seal_signature_fails(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = _ecdsa_ceremony(tmp_path, softhsm, "p256")
    assert verify_bundle(c.out).ok
    seal = c.entries()[-1]["payload"]
    original = base64.b64decode(seal["root_key_signature"])
    message = st.message(seal["statement"])
    order = EC_ORDERS["ecdsa-p256"][0]

    # A well-formed signature of the same seal by another P-256 key: refused at signatures.
    other = ec.derive_private_key(12345, ec.SECP256R1()).sign(message, ec.ECDSA(hashes.SHA256()))
    _rewrite_seal(c.out, other)
    report = verify_bundle(c.out)
    failure = report.first_failure
    assert failure is not None and failure.name == "signatures"
    assert "root-key signature" in failure.detail
    assert failure.seq == len(c.entries()) - 1

    # A signature with one bit flipped in s: refused at signatures as well.
    r, s = decode_dss_signature(original)
    _rewrite_seal(c.out, encode_dss_signature(r, s ^ 1))
    failure = verify_bundle(c.out).first_failure
    assert failure is not None and failure.name == "signatures"

    # (r, n - s) is also a valid ECDSA signature of the seal (ECDSA is malleable): it passes
    # the signature check, but the seal line's bytes are pinned by the signed SHA256SUMS.
    _rewrite_seal(c.out, encode_dss_signature(r, order - s))
    failure = verify_bundle(c.out).first_failure
    assert failure is not None and failure.name == "checksums"
    assert "transcript.jsonl does not match" in failure.detail

    _rewrite_seal(c.out, original)
    assert verify_bundle(c.out).ok
    result = c.verify()
    assert result.returncode == 0, result.stdout + result.stderr
