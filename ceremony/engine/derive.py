"""Seed mixing and root-key derivation: the documented, domain-separated KDFs (docs/kdf.md)."""

from __future__ import annotations

import hashlib
import hmac

from ceremony.model.script import RootKeySpec

SEED_DOMAIN = b"ceremony.seed.v1"
ROOT_KEY_DOMAIN = b"ceremony.root-key.v1"
FINGERPRINT_DOMAIN = b"ceremony.seed-fingerprint.v1"


def wipe(buffer: bytearray) -> None:
    """Overwrite a secret buffer in place."""
    for i in range(len(buffer)):
        buffer[i] = 0


def mix_seed(parts: list[tuple[str, bytes | bytearray]]) -> bytearray:
    """SHA-256 over the domain tag and each source's name and bytes, length-prefixed.

    The seed is as unpredictable as the best source: an attacker who knows or controls
    every source but one still faces that one's full entropy through the hash.
    """
    h = hashlib.sha256(SEED_DOMAIN)
    for name, data in parts:
        tag = name.encode("ascii")
        h.update(len(tag).to_bytes(2, "big") + tag + len(data).to_bytes(4, "big"))
        h.update(data)
    return bytearray(h.digest())


def _hkdf_sha256(ikm: bytearray, salt: bytes, info: bytes, length: int) -> bytearray:
    # RFC 5869 written out over bytearrays, so no immutable copy of the secret is left.
    prk = bytearray(hmac.new(salt, bytes(ikm), hashlib.sha256).digest())
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(bytes(prk), block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    wipe(prk)
    del out[length:]
    return out


# The order n of each ECDSA curve's base point (FIPS 186-5 / SEC 2), and its byte length.
EC_ORDERS: dict[str, tuple[int, int]] = {
    "ecdsa-p256": (0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551, 32),
    "ecdsa-p384": (int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                       "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16), 48),
}
# Extra candidate bytes beyond the order's length: the reduction's bias is below 2^-64.
EC_EXTRA_BYTES = 8


def derive_root_private(seed: bytearray, spec: RootKeySpec) -> bytearray:
    """The root key's private seed (Ed25519) or scalar (ECDSA, big-endian) for ``spec``.

    HKDF-SHA256 with one info string per kind and key id. For ECDSA the output is a
    candidate 8 bytes longer than the curve order and is reduced into [1, n-1] as FIPS 186-5
    A.2.1 does with extra random bits (docs/kdf.md).
    """
    info = ROOT_KEY_DOMAIN + b"|" + spec.kind.encode() + b"|" + bytes.fromhex(spec.key_id)
    if spec.algorithm == "ed25519":
        return _hkdf_sha256(seed, ROOT_KEY_DOMAIN, info, 32)
    if spec.algorithm == "rsa":
        raise ValueError(f"{spec.kind} root keys are generated in the token, not derived; "
                         "the seed derives their key-encryption key (derive_kek)")
    if spec.kind not in EC_ORDERS:
        raise ValueError(f"derivation for {spec.kind} is not implemented")
    order, size = EC_ORDERS[spec.kind]
    candidate = _hkdf_sha256(seed, ROOT_KEY_DOMAIN, info, size + EC_EXTRA_BYTES)
    try:
        # Python ints cannot be wiped; they live only for these two lines (docs/kdf.md).
        scalar = int.from_bytes(candidate, "big") % (order - 1) + 1
        return bytearray(scalar.to_bytes(size, "big"))
    finally:
        wipe(candidate)


# AES-256 key-encryption keys for root keys generated inside the token (RSA).
KEK_BYTES = 32


def derive_kek(seed: bytearray, spec: RootKeySpec) -> bytearray:
    """The AES-256 key-encryption key that wraps a token-generated root key (docs/kdf.md).

    HKDF-SHA256 with the root-key salt and the info string
    ``ceremony.root-key.v1|kek|<kind>|<key id bytes>``: independent of every derived root key
    (whose info has the kind right after the domain) and of other kinds and ids.
    """
    info = (ROOT_KEY_DOMAIN + b"|kek|" + spec.kind.encode() + b"|"
            + bytes.fromhex(spec.key_id))
    return _hkdf_sha256(seed, ROOT_KEY_DOMAIN, info, KEK_BYTES)


def seed_fingerprint(seed: bytearray, ceremony_id: str) -> str:
    """A public commitment to the seed, bound to the ceremony; reveals nothing usable."""
    mac = hmac.new(FINGERPRINT_DOMAIN + b"|" + ceremony_id.encode(), bytes(seed), hashlib.sha256)
    return mac.hexdigest()
