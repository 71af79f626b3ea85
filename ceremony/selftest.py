"""`ceremony selftest`: the installed tree against its signed manifest, then known answers.

Run before the day and at the start of it (the live image's boot test runs it too). The
known-answer tests catch a broken or substituted crypto library, not a malicious one:
SHA-256 (FIPS 180-2 "abc"), Ed25519 (RFC 8032 test 1), the canonical encoding (RFC 8785
key order), SLIP-39 (the specification's vector 1) and a pairwise-consistency test of a
fresh Ed25519 and P-256 key (sign, then verify).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.canonical import canonical_bytes
from ceremony.manifest import PACKAGE_DIR, verify_tree
from ceremony.model.attestation import TOOL

# Public test vectors, not secrets.
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"  # noqa: S105
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIGNATURE = ("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590"
                     "a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
SLIP39_MNEMONIC = ("duckling enlarge academic academic agency result length solution fridge "
                   "kidney coal piece deal husband erode duke ajar critical decision keyboard")
SLIP39_SECRET = "bb54aac4b89dc868ba37d9cc21b2cece"  # noqa: S105 (passphrase "TREZOR")


@dataclass(frozen=True)
class SelfTest:
    id: str
    ok: bool
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "result": "pass" if self.ok else "fail",
                "sentence": self.sentence}


class KnownAnswerError(Exception):
    """A known-answer test gave another answer."""


def _expect(ok: bool, message: str) -> None:
    # Not `assert`: python -O would remove the test.
    if not ok:
        raise KnownAnswerError(message)


def _sha256() -> str:
    got = hashlib.sha256(b"abc").hexdigest()
    _expect(got == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            f"SHA-256 of 'abc' is {got}")
    return "SHA-256 of 'abc' is the FIPS 180-2 value"


def _ed25519() -> str:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET))
    public = key.public_key().public_bytes_raw().hex()
    _expect(public == RFC8032_PUBLIC, "the public key differs from RFC 8032 test 1")
    _expect(key.sign(b"").hex() == RFC8032_SIGNATURE, "the signature differs from RFC 8032")
    return "Ed25519 reproduces RFC 8032 test 1 (public key and signature)"


def _canonical() -> str:
    got = canonical_bytes({"\u20ac": 1, "\r": 2, "a": [True, None, "\u00e9"], "1": "x"})
    _expect(got == '{"\\r":2,"1":"x","a":[true,null,"é"],"€":1}'.encode(),
            f"the canonical bytes are {got!r}")
    return "the canonical encoding orders keys and escapes as RFC 8785"


def _slip39() -> str:
    import shamir_mnemonic

    secret = shamir_mnemonic.combine_mnemonics([SLIP39_MNEMONIC], b"TREZOR")
    _expect(secret.hex() == SLIP39_SECRET, "the master secret differs from the SLIP-39 vector")
    return "SLIP-39 recovers the specification's vector 1"


def _pairwise() -> str:
    ed = Ed25519PrivateKey.generate()
    message = b"ceremony selftest pairwise consistency"
    ed.public_key().verify(ed.sign(message), message)
    p256 = ec.generate_private_key(ec.SECP256R1())
    p256.public_key().verify(p256.sign(message, ec.ECDSA(hashes.SHA256())), message,
                             ec.ECDSA(hashes.SHA256()))
    try:
        ed.public_key().verify(ed.sign(message), message + b"!")
    except InvalidSignature:
        return "fresh Ed25519 and P-256 keys sign and verify; an altered message fails"
    raise KnownAnswerError("a signature over another message verified")


KNOWN_ANSWERS: dict[str, Callable[[], str]] = {
    "KAT-SHA256": _sha256, "KAT-ED25519": _ed25519, "KAT-CANONICAL": _canonical,
    "KAT-SLIP39": _slip39, "PCT-SIGN": _pairwise,
}


def run_selftest(package_dir: Path = PACKAGE_DIR, manifest: Path | None = None,
                 keys: Path | None = None) -> list[SelfTest]:
    """The manifest check (CER-ATTEST-TOOL) and every known-answer test, in order."""
    tree = verify_tree(package_dir, manifest, keys)
    out = [SelfTest(TOOL, tree.ok, tree.sentence)]
    for name, test in KNOWN_ANSWERS.items():
        try:
            out.append(SelfTest(name, True, test()))
        except Exception as exc:  # any failure of a crypto library is a failed test
            out.append(SelfTest(name, False, f"failed: {exc or type(exc).__name__}"))
    return out
