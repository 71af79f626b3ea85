"""In-memory stand-ins for unit tests of the engine and for golden transcripts.

A fake is never the only test of a feature: every path here is also run against SoftHSM2
in the integration tests. The fake token is deterministic given its seeded randomness,
which is what makes a byte-identical golden transcript possible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.engine.ports import TokenObject
from ceremony.model import statements as st


class SeededRandom:
    """A deterministic byte stream: SHA-256 in counter mode over a seed label."""

    def __init__(self, label: str) -> None:
        self._label = label.encode()
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(self._label + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
        return out[:n]

    __call__ = random_bytes


class TickingClock:
    """Starts at a fixed moment and moves one second forward per reading."""

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(seconds=1)):
        self._now = start or datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        self._step = step

    def now(self) -> datetime:
        moment = self._now
        self._now += self._step
        return moment


@dataclass
class FakeToken:
    """A software token with the Token port's behaviour (Ed25519, ECDSA P-256 and P-384)."""

    random: SeededRandom
    keys: dict[tuple[str, str],
               Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = field(
        default_factory=dict)
    # RSA keys that may still be wrapped once (the adapter's CKA_EXTRACTABLE).
    extractable: set[tuple[str, str]] = field(default_factory=set)
    fail_import: bool = False
    calls: list[str] = field(default_factory=list)
    # How the fake was "logged in to": by default as the sample script's split activation
    # requires (two of its three officers presented their PIN shares).
    activation: dict[str, Any] = field(default_factory=lambda: {
        "mode": "split", "officers": ["alice", "bob", "carol"], "threshold": 2,
        "presented": ["alice", "bob"]})

    def describe(self) -> dict[str, Any]:
        return {"module": "fake", "label": "fake-token", "model": "FakeToken", "serial": "0",
                "manufacturer": "tests", "firmware": "0.0", "hardware": "0.0",
                "module_sha256": "0" * 64, "library": "fake 0.0",
                "mechanisms": ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA"],
                "activation": dict(self.activation)}

    def random_bytes(self, n: int) -> bytes:
        return self.random.random_bytes(n)

    @staticmethod
    def _pub(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
        if isinstance(key, rsa.RSAPrivateKey):
            return key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.public_key().public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
        return key.public_key().public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)

    def generate_ed25519(self, label: str, key_id: str) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self.random.random_bytes(32))
        self.keys[(label, key_id)] = key
        return self._pub(key)

    def import_ed25519(self, label: str, key_id: str, private_seed: bytearray) -> bytes:
        self.calls.append("import")
        if self.fail_import:
            from ceremony.errors import TokenError

            raise TokenError("the fake token refuses imports")
        key = Ed25519PrivateKey.from_private_bytes(bytes(private_seed))
        self.keys[(label, key_id)] = key
        return self._pub(key)

    def find_ed25519(self, label: str, key_id: str) -> bytes | None:
        key = self.keys.get((label, key_id))
        return None if key is None else self._pub(key)

    def sign_ed25519(self, label: str, key_id: str, data: bytes) -> bytes:
        key = self.keys[(label, key_id)]
        assert isinstance(key, Ed25519PrivateKey)
        return key.sign(data)

    def import_key(self, kind: str, label: str, key_id: str, private: bytearray) -> bytes:
        if kind == "ed25519":
            return self.import_ed25519(label, key_id, private)
        self.calls.append("import")
        if self.fail_import:
            from ceremony.errors import TokenError

            raise TokenError("the fake token refuses imports")
        key = ec.derive_private_key(int.from_bytes(private, "big"), st.EC_CURVES[kind][0])
        self.keys[(label, key_id)] = key
        return self._pub(key)

    def find_public(self, kind: str, label: str, key_id: str) -> bytes | None:
        return self.find_ed25519(label, key_id)

    def sign(self, kind: str, label: str, key_id: str, data: bytes) -> bytes:
        key = self.keys[(label, key_id)]
        if isinstance(key, rsa.RSAPrivateKey):
            from cryptography.hazmat.primitives import hashes

            return key.sign(data, st.rsa_pss(), hashes.SHA256())
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(st.ecdsa_hash(kind)))  # DER, like the adapter
        assert isinstance(key, Ed25519PrivateKey)
        return key.sign(data)

    def sign_pkcs1v15(self, kind: str, label: str, key_id: str, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        key = self.keys[(label, key_id)]
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == st.RSA_BITS[kind]
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    # RSA: cryptography's keys; the wrap is RFC 5649 over PKCS#8, as the adapter's.

    def generate_rsa(self, kind: str, label: str, key_id: str) -> bytes:
        self.calls.append("generate_rsa")
        key = rsa.generate_private_key(st.RSA_EXPONENT, st.RSA_BITS[kind])
        self.keys[(label, key_id)] = key
        self.extractable.add((label, key_id))
        return self._pub(key)

    def wrap_private(self, kind: str, label: str, key_id: str, kek: bytearray) -> bytes:
        from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

        from ceremony.errors import TokenError

        key = self.keys[(label, key_id)]
        assert isinstance(key, rsa.RSAPrivateKey)
        if (label, key_id) not in self.extractable:
            raise TokenError("the fake token refuses to wrap a non-extractable key")
        self.extractable.discard((label, key_id))
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return aes_key_wrap_with_padding(bytes(kek), der)

    def unwrap_private(self, kind: str, label: str, key_id: str, kek: bytearray,
                       blob: bytes, *, store: bool = True) -> bytes:
        from cryptography.hazmat.primitives.keywrap import (
            InvalidUnwrap,
            aes_key_unwrap_with_padding,
        )

        from ceremony.errors import TokenError

        try:
            der = aes_key_unwrap_with_padding(bytes(kek), blob)
        except InvalidUnwrap:
            raise TokenError("the wrapped root key does not unwrap under the key-encryption "
                             "key these shares derive") from None
        key = serialization.load_der_private_key(der, None)
        assert isinstance(key, rsa.RSAPrivateKey)
        if store:
            self.keys[(label, key_id)] = key
        return self._pub(key)

    def find_objects(self, label: str, key_id: str) -> list[TokenObject]:
        key = self.keys.get((label, key_id))
        if key is None:
            return []
        key_type = "EC" if isinstance(key, ec.EllipticCurvePrivateKey) else \
            "RSA" if isinstance(key, rsa.RSAPrivateKey) else "EC_EDWARDS"
        return [TokenObject(label, key_id, "private_key", key_type),
                TokenObject(label, key_id, "public_key", key_type)]

    def destroy(self, label: str, key_id: str) -> list[TokenObject]:
        found = self.find_objects(label, key_id)
        self.keys.pop((label, key_id), None)
        return found


@dataclass
class MemorySecrets:
    """Share sheets kept in memory (the test can look at what custodians would get)."""

    shares: dict[str, str] = field(default_factory=dict)

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        self.shares[f"{participant}-g{group}m{member}"] = mnemonic
        return f"memory {participant}-g{group}m{member}"

    def remove_all(self) -> list[str]:
        removed = sorted(self.shares)
        self.shares.clear()
        return removed


@dataclass
class StandInPrinter:
    """The TranscriptPrinter port without fpdf2: a one-page PDF whose page text names the
    sealed transcript's head (what the verifier checks), for engine unit tests."""

    calls: int = 0
    head: str | None = None  # print this head instead of the transcript's (a wrong printout)
    fail: Exception | None = None  # raised by the first call (fault injection)

    def write(self, bundle: Path, name: str) -> str:
        self.calls += 1
        if self.fail is not None:
            fail, self.fail = self.fail, None
            raise fail
        last = (bundle / "transcript.jsonl").read_bytes().splitlines()[-1]
        head = self.head or hashlib.sha256(last).hexdigest()
        text = f"BT /F1 8 Tf 20 20 Td (stand-in transcript head {head}) Tj ET".encode()
        pdf = (b"%PDF-1.4\n1 0 obj\n<< /Length " + str(len(text)).encode() +
               b" >>\nstream\n" + text + b"\nendstream\nendobj\n%%EOF\n")
        (bundle / name).write_bytes(pdf)
        return hashlib.sha256(pdf).hexdigest()


def passing_attestation(rehearsal: bool) -> dict[str, Any]:
    """A fixed all-pass environment attestation record, for engine tests on fakes and the
    golden transcripts (deterministic: no machine is read). Real front ends run the checks
    (ceremony/cli/attest.py attest_ceremony)."""
    from ceremony.model.attestation import CHECKS, CheckResult, attestation_record

    return attestation_record([CheckResult(cid, "pass", f"{name}: as constructed for tests")
                               for cid, name in CHECKS.items()], rehearsal=rehearsal)
