"""What gets signed: the canonical statements of approvals, checkpoints, seals and checksums.

The engine builds these to be signed and the verifier rebuilds them from the transcript
to check; both import them from here, so the two can never drift apart.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ceremony.canonical import canonical_bytes, digest

APPROVAL = "ceremony.approval.v1"
CHECKPOINT = "ceremony.checkpoint.v1"
SEAL = "ceremony.seal.v1"
CHECKSUMS = "ceremony.checksums.v1"


def encode_key(raw: bytes) -> str:
    return "ed25519:" + base64.b64encode(raw).decode("ascii")


def decode_key(text: str) -> bytes:
    prefix, _, b64 = text.partition(":")
    if prefix != "ed25519":
        raise ValueError("not an ed25519 key")
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return raw


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
