"""RSA root keys: generated inside the token, exported only wrapped under a seed-derived KEK.

An RSA key cannot be derived from the seed the way Ed25519 and ECDSA keys are (docs/kdf.md):
the token generates it, and the seed derives an AES-256 key-encryption key (KEK) that wraps
the private key once (CKM_AES_KEY_WRAP_PAD, RFC 5649). The wrapped blob is public-safe and
goes into the bundle; the shares (seed -> KEK) plus the blob rebuild the key in any token.
"""

from __future__ import annotations

from ceremony.engine.derive import derive_kek, wipe
from ceremony.engine.ports import Token
from ceremony.model import statements as st
from ceremony.model.script import RootKeySpec


def wrap_rsa(token: Token, seed: bytearray, spec: RootKeySpec) -> bytes:
    """Wrap the token's RSA root key under the seed's KEK; check the blob unwraps to it.

    Returns the blob. The KEK lives in the token only for each call (a session object,
    destroyed by the adapter) and in host memory in a bytearray wiped here on every path.
    The check unwraps the blob into a session object (destroyed at once) and compares the
    public key with the token's, so a blob that would not rebuild the key is never recorded.
    """
    kek = derive_kek(seed, spec)
    try:
        blob = token.wrap_private(spec.kind, spec.label, spec.key_id, kek)
        rebuilt = token.unwrap_private(spec.kind, f"{spec.label} unwrap check", spec.key_id,
                                       kek, blob, store=False)
    finally:
        wipe(kek)
    if rebuilt != token.find_public(spec.kind, spec.label, spec.key_id):
        from ceremony.errors import CheckFailed

        raise CheckFailed("the wrapped root key does not unwrap to the same key",
                          hint="the token or its module is faulty; abort",
                          requirement="CER-RSA-WRAP")
    return blob


def rebuild_rsa(token: Token, seed: bytearray, spec: RootKeySpec, blob: bytes) -> bytes:
    """Rebuild the RSA root key ``spec`` in ``token`` from the seed and the bundle's blob.

    Derives the KEK, unwraps the blob into the token as a sensitive, non-extractable,
    sign-only private key (with its public key object) under the spec's label and id, and
    returns the public key as DER SubjectPublicKeyInfo (compare it with the transcript's).
    A blob wrapped under another KEK raises a TokenError with one plain sentence.
    """
    if spec.kind not in st.RSA_BITS:
        raise ValueError(f"{spec.kind} root keys are derived from the seed, not unwrapped")
    kek = derive_kek(seed, spec)
    try:
        return token.unwrap_private(spec.kind, spec.label, spec.key_id, kek, blob)
    finally:
        wipe(kek)
