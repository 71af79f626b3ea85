"""The narrow interfaces through which the engine reaches the world.

Adapters in ceremony.adapters implement these against real devices (SoftHSM2 or a vendor
PKCS#11 module, the OS, the file system); tests may implement them in memory. Nothing here
imports a device library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class Randomness(Protocol):
    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes from this source."""
        ...


@dataclass(frozen=True)
class TokenObject:
    """A key object on the token, described by public attributes only."""

    label: str
    key_id: str  # hex CKA_ID
    object_class: str  # "private_key" | "public_key" | "secret_key"
    key_type: str

    def as_dict(self) -> dict[str, str]:
        return {"label": self.label, "id": self.key_id, "class": self.object_class,
                "key_type": self.key_type}


def kek_label(label: str) -> str:
    """The label of the short-lived key-encryption key object for the root key ``label``."""
    return f"{label} kek"


class Token(Protocol):
    """One PKCS#11 token with an open, logged-in session."""

    def describe(self) -> dict[str, Any]:
        """Public identity of module and token, for the transcript."""
        ...

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes from the token's generator."""
        ...

    def generate_ed25519(self, label: str, key_id: str) -> bytes:
        """Generate a non-extractable Ed25519 key pair on the token; return the public key."""
        ...

    def import_ed25519(self, label: str, key_id: str, private_seed: bytearray) -> bytes:
        """Import an Ed25519 private key as sensitive and non-extractable; return its public key."""
        ...

    def find_ed25519(self, label: str, key_id: str) -> bytes | None:
        """The public key of the Ed25519 pair with this label and id, if present."""
        ...

    def sign_ed25519(self, label: str, key_id: str, data: bytes) -> bytes:
        """Sign ``data`` with the private key of that label and id, on the token."""
        ...

    def import_key(self, kind: str, label: str, key_id: str, private: bytearray) -> bytes:
        """Import a root key of ``kind`` (ed25519, ecdsa-p256, ecdsa-p384) as sensitive,
        non-extractable and sign-only; return its public key bytes as the transcript encodes
        them (Ed25519: 32 raw bytes; ECDSA: the uncompressed point). ``private`` is the
        Ed25519 seed or the ECDSA scalar, big-endian, at the curve's byte length."""
        ...

    def find_public(self, kind: str, label: str, key_id: str) -> bytes | None:
        """The public key bytes (as import_key returns them) of that pair, if present."""
        ...

    def sign(self, kind: str, label: str, key_id: str, data: bytes) -> bytes:
        """Sign ``data`` on the token with that key: Ed25519 (RFC 8032), ECDSA over the
        kind's hash (SHA-256 for P-256, SHA-384 for P-384) returned as DER, or for RSA kinds
        RSASSA-PSS (SHA-256, MGF1-SHA-256, salt 32)."""
        ...

    def sign_pkcs1v15(self, kind: str, label: str, key_id: str, data: bytes) -> bytes:
        """Sign ``data`` on the token with that RSA key (rsa-3072, rsa-4096) as RSASSA-PKCS1-v1_5
        with SHA-256 (CKM_SHA256_RSA_PKCS): the sha256WithRSAEncryption signature of a root
        certificate or CSR. Exactly the modulus length long."""
        ...

    def generate_rsa(self, kind: str, label: str, key_id: str) -> bytes:
        """Generate an RSA key pair of ``kind`` (rsa-3072, rsa-4096; e = 65537) inside the
        token: private key sensitive, sign-only, extractable only so that ``wrap_private``
        can wrap it once. Return the public key as DER SubjectPublicKeyInfo."""
        ...

    def wrap_private(self, kind: str, label: str, key_id: str, kek: bytearray) -> bytes:
        """Wrap that private key with AES_KEY_WRAP_PAD (RFC 5649) under ``kek`` (AES-256,
        imported as a sensitive, non-extractable session object with WRAP/UNWRAP only and
        destroyed before returning, on every path), then make the private key
        non-extractable. Return the wrapped blob (a wrapped PKCS#8 PrivateKeyInfo)."""
        ...

    def unwrap_private(self, kind: str, label: str, key_id: str, kek: bytearray,
                       blob: bytes, *, store: bool = True) -> bytes:
        """Unwrap ``blob`` under ``kek`` into the token as a sensitive, non-extractable,
        sign-only private key with that label and id (a token object and its public key
        object if ``store``, else a session object destroyed before returning); the KEK is
        destroyed on every path. Return the public key as DER SubjectPublicKeyInfo. A blob
        that does not unwrap under ``kek`` raises a TokenError with one plain sentence."""
        ...

    def find_objects(self, label: str, key_id: str) -> list[TokenObject]:
        """Every object with this label and id."""
        ...

    def destroy(self, label: str, key_id: str) -> list[TokenObject]:
        """Destroy every object with this label and id; return what was destroyed."""
        ...


@dataclass(frozen=True)
class ShareInfo:
    """One SLIP-39 share as read back (recovery): its public metadata and its words.

    ``mnemonic`` is the share in its one canonical spelling (lower case, single spaces),
    which is what the ceremony committed to; it is kept out of ``repr`` so that no log,
    traceback or error can print it.
    """

    identifier: int
    group: int  # 1-based group index
    member: int  # 1-based member index
    group_threshold: int
    group_count: int
    member_threshold: int
    iteration_exponent: int
    extendable: bool
    mnemonic: str = field(repr=False)


class ShareSplitter(Protocol):
    def split(self, secret: bytearray, group_threshold: int,
              groups: list[tuple[int, int]], *, iteration_exponent: int = 1,
              extendable: bool = True,
              passphrase: bytearray | None = None) -> tuple[int, list[list[str]]]:
        """Split ``secret`` into SLIP-39 mnemonics (encrypted under ``passphrase``, none
        when None); return (identifier, groups of shares)."""
        ...

    def prove_all(self, groups: list[list[str]], group_threshold: int,
                  thresholds: list[int], secret: bytearray, *,
                  passphrase: bytearray | None = None) -> int:
        """Rebuild from every minimal quorum; the number of quorums, or CheckFailed."""
        ...

    def combine(self, mnemonics: list[str], *,
                passphrase: bytearray | None = None) -> bytearray:
        """Recover the secret from a quorum of mnemonics."""
        ...

    def read_share(self, mnemonic: str) -> ShareInfo:
        """Read one share typed or given back for a recovery: SLIP-39 words, length,
        checksum. Raise CheckFailed with a phrase saying what is wrong (never a word of the
        share), to follow "the share ... ": e.g. "fails its SLIP-39 checksum"."""
        ...

    def recover(self, mnemonics: list[str], *,
                passphrase: bytearray | None = None) -> bytearray:
        """The secret from shares of one set that reach its thresholds, any number per group
        and in any order (recovery). Exactly a threshold of them is combined; every share
        beyond it must give the same encrypted master secret when it takes the place of one
        of those (CheckFailed otherwise). A wrong ``passphrase`` is not detected here: it
        gives another secret (SLIP-39 has no passphrase check)."""
        ...


class SecretOutput(Protocol):
    """Where share sheets go: a place the operator names, never the bundle."""

    def write_share(self, participant: str, name: str, group: int, member: int,
                    mnemonic: str, context: dict[str, Any]) -> str:
        """Write one custodian's share sheet; return a public description of where."""
        ...

    def remove_all(self) -> list[str]:
        """Remove every share sheet of this ceremony (rollback); return what was removed."""
        ...


def delivers_to(output: SecretOutput, place: str) -> bool:
    """Whether ``output`` can deliver a share to ``place`` ([shares.delivery]): every output
    writes sheets; only one that lists "card" in its ``places`` (adapters/card_shares.py)
    writes to custodians' cards. The engine passes each share's places in
    ``context["delivery"]``."""
    return place == "sheet" or place in getattr(output, "places", ())


class PublicCodes(Protocol):
    """QR images of public material in the bundle, each read back before it counts."""

    def write(self, directory: Path, stem: str, kind: str, data: bytes) -> list[str]:
        """Write ``data`` as QR parts named after ``stem`` in ``directory``, decode each back
        and compare with ``data`` (CheckFailed, with nothing left, when they differ); return
        the file names written, in part order."""
        ...


class TranscriptPrinter(Protocol):
    """The printed transcript, made inside the bundle between the seal and the signed
    checksum list, so that the list covers it (ADR 16)."""

    def write(self, bundle: Path, name: str) -> str:
        """Check the sealed transcript in ``bundle`` (every verifier step but the checksum
        list, which does not exist yet), lay out its printed transcript, read every QR
        code back from the rendered pages, and write it atomically as ``bundle/name``;
        return its SHA-256. The same sealed transcript gives the same bytes, so writing it
        again (a resume) changes nothing. Raise a CeremonyError with nothing left behind
        when it cannot be made."""
        ...
