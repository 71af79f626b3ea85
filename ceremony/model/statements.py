"""What gets signed: the canonical statements of approvals, checkpoints, seals and checksums.

The engine builds these to be signed and the verifier rebuilds them from the transcript
to check; both import them from here, so the two can never drift apart.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
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


# Root key kinds and the length of their public key bytes in the transcript: Ed25519's 32
# raw bytes (RFC 8032); for ECDSA the uncompressed SEC 1 point 04 || X || Y.
PUBLIC_KEY_BYTES = {"ed25519": 32, "ecdsa-p256": 65, "ecdsa-p384": 97}
EC_CURVES: dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm]] = {
    "ecdsa-p256": (ec.SECP256R1(), hashes.SHA256()),
    "ecdsa-p384": (ec.SECP384R1(), hashes.SHA384()),
}
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey


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


def checkpoint_statement(*, ceremony: str, seq: int, head: str) -> dict[str, Any]:
    return {"type": CHECKPOINT, "ceremony": ceremony, "seq": seq, "head": head}


def seal_statement(*, ceremony: str, script_sha256: str, policy_sha256: str, head: str,
                   entries: int, outcome: str, time: str) -> dict[str, Any]:
    """The seal binds the whole transcript (head, count) and its own entry's time."""
    return {"type": SEAL, "ceremony": ceremony, "script_sha256": script_sha256,
            "policy_sha256": policy_sha256, "head": head, "entries": entries,
            "outcome": outcome, "time": time}


def checksums_statement(*, ceremony: str, checksums: bytes) -> dict[str, Any]:
    return {"type": CHECKSUMS, "ceremony": ceremony,
            "sha256sums": digest({"bytes": b64(checksums)})}


def message(statement: dict[str, Any]) -> bytes:
    """The bytes a signer signs: the canonical encoding of the statement."""
    return canonical_bytes(statement)
