"""What gets signed: the canonical statements of approvals, checkpoints, seals and checksums.

The engine builds these to be signed and the verifier rebuilds them from the transcript
to check; both import them from here, so the two can never drift apart.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ceremony.canonical import canonical_bytes, digest

APPROVAL = "ceremony.approval.v1"
CHECKPOINT = "ceremony.checkpoint.v1"
SEAL = "ceremony.seal.v1"
CHECKSUMS = "ceremony.checksums.v1"
SCRIPT_AUTHORIZATION = "ceremony.script-authorization.v1"
SEAL_WITNESS = "ceremony.seal-witness.v1"
DEVIATION_APPROVAL = "ceremony.deviation-approval.v1"
# What a deviation from the script can be (docs/transcript-format.md, `deviation`).
DEVIATION_KINDS = ("step-retried", "card-replaced", "person-substituted", "other")
# The kinds a participant declares; the engine itself records a step-retried deviation
# when an action runs again after it was rolled back.
DECLARED_KINDS = DEVIATION_KINDS[1:]


# Root key kinds and the length of their public key bytes in the transcript: Ed25519's 32
# raw bytes (RFC 8032); for ECDSA the uncompressed SEC 1 point 04 || X || Y; for RSA the
# DER SubjectPublicKeyInfo (RFC 8017 / RFC 5280) with public exponent 65537.
PUBLIC_KEY_BYTES = {"ed25519": 32, "ecdsa-p256": 65, "ecdsa-p384": 97,
                    "rsa-3072": 422, "rsa-4096": 550}
# RSA root key kinds: modulus bits. Signatures are RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
RSA_BITS = {"rsa-3072": 3072, "rsa-4096": 4096}
RSA_EXPONENT = 65537
RSA_PSS_SALT = 32
EC_CURVES: dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm]] = {
    "ecdsa-p256": (ec.SECP256R1(), hashes.SHA256()),
    "ecdsa-p384": (ec.SECP384R1(), hashes.SHA384()),
}
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def rsa_pss() -> padding.PSS:
    """The RSA root keys' signature padding: PSS with MGF1-SHA-256 and a 32-byte salt."""
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=RSA_PSS_SALT)


def _rsa_public_key(kind: str, raw: bytes) -> rsa.RSAPublicKey:
    """An RSA key from its DER SubjectPublicKeyInfo: canonical DER, the kind's size, e=65537."""
    key = serialization.load_der_public_key(raw)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"not an {kind} public key")
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if der != raw or key.key_size != RSA_BITS[kind] or \
            key.public_numbers().e != RSA_EXPONENT:
        raise ValueError(f"not an {kind} public key in canonical DER with exponent 65537")
    return key


def encode_key(raw: bytes, kind: str = "ed25519") -> str:
    """A public key as the transcript writes it: ``kind:`` then base64 of its bytes."""
    if kind not in PUBLIC_KEY_BYTES:
        raise ValueError(f"unknown key kind {kind!r}")
    return kind + ":" + base64.b64encode(raw).decode("ascii")


def decode_key(text: str) -> bytes:
    """An Ed25519 key (identity and transcript keys are always Ed25519)."""
    kind, raw = decode_public_key(text)
    if kind != "ed25519":
        raise ValueError("not an ed25519 key")
    return raw


def decode_public_key(text: str) -> tuple[str, bytes]:
    """(kind, public key bytes) of a key of any kind the format knows; length checked."""
    kind, _, b64text = text.partition(":")
    if kind not in PUBLIC_KEY_BYTES:
        raise ValueError(f"unknown key kind {kind!r}")
    raw = base64.b64decode(b64text, validate=True)
    if len(raw) != PUBLIC_KEY_BYTES[kind]:
        raise ValueError(f"an {kind} public key has {PUBLIC_KEY_BYTES[kind]} bytes")
    if base64.b64encode(raw).decode("ascii") != b64text:
        raise ValueError("the key is not in canonical base64")
    return kind, raw


def public_key_object(kind: str, raw: bytes) -> PublicKey:
    """The ``cryptography`` key for transcript key bytes; ValueError if not a valid key."""
    if kind == "ed25519":
        return Ed25519PublicKey.from_public_bytes(raw)
    if kind in RSA_BITS:
        return _rsa_public_key(kind, raw)
    if kind not in EC_CURVES or len(raw) != PUBLIC_KEY_BYTES[kind] or raw[0] != 0x04:
        raise ValueError(f"not an uncompressed {kind} point")
    # from_encoded_point checks that the point is on the curve.
    return ec.EllipticCurvePublicKey.from_encoded_point(EC_CURVES[kind][0], raw)


def ecdsa_hash(kind: str) -> hashes.HashAlgorithm:
    """The hash an ECDSA key of ``kind`` signs with: SHA-256 for P-256, SHA-384 for P-384."""
    return EC_CURVES[kind][1]


def verify_signature(kind: str, public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` verifies under a key of ``kind``.

    Ed25519: RFC 8032. ECDSA: a DER Ecdsa-Sig-Value (RFC 3279) over the kind's hash of
    ``message``, in strict DER only (re-encoding must give the same bytes).
    """
    if kind == "ed25519":
        return verify_ed25519(public_key, signature, message)
    if kind in RSA_BITS:
        return verify_rsa_pss(kind, public_key, signature, message)
    try:
        key = public_key_object(kind, public_key)
        r, s = decode_dss_signature(signature)
        if encode_dss_signature(r, s) != signature:
            return False
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(signature, message, ec.ECDSA(ecdsa_hash(kind)))
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_rsa_pss(kind: str, public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is an RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32) signature of
    ``message`` under the RSA key of ``kind``, exactly the modulus length long."""
    try:
        key = _rsa_public_key(kind, public_key)
        if len(signature) != RSA_BITS[kind] // 8:
            return False
        key.verify(signature, message, rsa_pss(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# A root key generated in the token (RSA) is exported once, wrapped, into this bundle file;
# root_key.created records where and how (docs/transcript-format.md).
WRAPPED_FILE = "root-key.wrapped"
WRAP_MECHANISM = "AES_KEY_WRAP_PAD"
WRAP_KEK = "aes-256, hkdf-sha256 of the seed (docs/kdf.md)"


def wrapped_record(blob_sha256: str) -> dict[str, Any]:
    """root_key.created's ``wrapped`` member for a blob with this SHA-256 (hex)."""
    return {"file": WRAPPED_FILE, "sha256": blob_sha256, "mechanism": WRAP_MECHANISM,
            "format": "pkcs8", "kek": WRAP_KEK, "kek_destroyed": True,
            "unwrap_check": "passed (unwrapped in the token to the same public key)"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def verify_ed25519(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def step_digest(step: dict[str, Any]) -> str:
    """Digest of what a step will do: its definition plus the key and share spec it acts on."""
    return digest(step)


def approval_statement(*, ceremony: str, script_sha256: str, step: str, step_digest: str,
                       head: str, role: str, participant: str, time: str) -> dict[str, Any]:
    return {"type": APPROVAL, "ceremony": ceremony, "script_sha256": script_sha256,
            "step": step, "step_digest": step_digest, "head": head, "role": role,
            "participant": participant, "time": time}


def script_authorization_statement(*, ceremony: str, version: int, script_sha256: str,
                                   participant: str, role: str, time: str) -> dict[str, Any]:
    """An authorizer's signature over a script's exact bytes (its SHA-256), for one
    ceremony id and version (docs/script-signing.md)."""
    return {"type": SCRIPT_AUTHORIZATION, "ceremony": ceremony, "version": version,
            "script_sha256": script_sha256, "participant": participant, "role": role,
            "time": time}


def checkpoint_statement(*, ceremony: str, seq: int, head: str) -> dict[str, Any]:
    return {"type": CHECKPOINT, "ceremony": ceremony, "seq": seq, "head": head}


def seal_statement(*, ceremony: str, script_sha256: str, policy_sha256: str, head: str,
                   entries: int, outcome: str, time: str,
                   witnesses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The seal binds the whole transcript (head, count) and its own entry's time.

    ``witnesses``: a completed ceremony under a policy with a [seal] table names the
    witnesses' co-signatures it closes over (participant and seq of each seal.witnessed
    entry); without one (or for an aborted ceremony) the member is absent.
    """
    statement: dict[str, Any] = {
        "type": SEAL, "ceremony": ceremony, "script_sha256": script_sha256,
        "policy_sha256": policy_sha256, "head": head, "entries": entries,
        "outcome": outcome, "time": time}
    if witnesses is not None:
        statement["witnesses"] = witnesses
    return statement


def seal_witness_statement(*, ceremony: str, script_sha256: str, head: str, entries: int,
                           outcome: str, participant: str, time: str) -> dict[str, Any]:
    """A witness co-signs the seal: the transcript as it stands before the seal (its head
    and entry count) and the outcome it will be sealed with (ADR 15)."""
    return {"type": SEAL_WITNESS, "ceremony": ceremony, "script_sha256": script_sha256,
            "head": head, "entries": entries, "outcome": outcome,
            "participant": participant, "time": time}


def deviation_statement(*, ceremony: str, script_sha256: str, deviation: str, seq: int,
                        step: str | None, kind: str, reason: str, participant: str,
                        time: str) -> dict[str, Any]:
    """A custodian approves continuing after a deviation: bound to the deviation entry
    (``deviation`` is the SHA-256 of its line, the head right after it, and ``seq`` its
    number) and to what it says (ADR 15)."""
    return {"type": DEVIATION_APPROVAL, "ceremony": ceremony, "script_sha256": script_sha256,
            "deviation": deviation, "seq": seq, "step": step, "kind": kind,
            "reason": reason, "participant": participant, "time": time}


def checksums_statement(*, ceremony: str, checksums: bytes) -> dict[str, Any]:
    return {"type": CHECKSUMS, "ceremony": ceremony,
            "sha256sums": digest({"bytes": b64(checksums)})}


def message(statement: dict[str, Any]) -> bytes:
    """The bytes a signer signs: the canonical encoding of the statement."""
    return canonical_bytes(statement)


@dataclass(frozen=True)
class SignedLine:
    """One signed statement, as read from line ``line`` of a detached-signature file
    (a script's .sigs, a script's .waivers)."""

    line: int
    statement: dict[str, Any]
    signature: bytes

    @property
    def participant(self) -> str:
        return str(self.statement["participant"])


def signed_line(statement: dict[str, Any], signature: bytes) -> bytes:
    """One line of a detached-signature file: canonical JSON, then a newline."""
    return canonical_bytes({"signature": b64(signature), "statement": statement}) + b"\n"
