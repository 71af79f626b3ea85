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


def public_from_blob(seed: bytearray, spec: RootKeySpec, blob: bytes) -> bytes:
    """The public key (DER SubjectPublicKeyInfo) inside the wrapped blob, opened on the host.

    A recovery compares the rebuilt key's fingerprint with the original's before any token
    is touched: the KEK derived from ``seed`` opens the blob with ``cryptography``'s RFC 5649
    unwrap (the same computation the token does), the PKCS#8 DER is read by its own length
    (SoftHSM2 zero-pads it before wrapping; docs/kdf.md), and only its public half is kept.
    A blob that does not open under these shares' KEK raises CheckFailed. (The unwrapped DER
    is an immutable ``bytes``, as the derived keys passed to ``cryptography`` are: freed, not
    wiped; docs/kdf.md, secret hygiene.)
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

    from ceremony.errors import CheckFailed

    if spec.kind not in st.RSA_BITS:
        raise ValueError(f"{spec.kind} root keys are derived from the seed, not unwrapped")
    kek = derive_kek(seed, spec)
    try:
        der = aes_key_unwrap_with_padding(bytes(kek), blob)
    except InvalidUnwrap:
        raise CheckFailed("the original's wrapped root key does not open under the "
                          "key-encryption key these shares derive: they rebuild another "
                          "seed; nothing was put on the token",
                          requirement="CER-RECOVERY") from None
    finally:
        wipe(kek)
    try:
        key = serialization.load_der_private_key(der[:_der_length(der)], None)
    except ValueError:
        raise CheckFailed("the original's wrapped root key is not a PKCS#8 private key; "
                          "nothing was put on the token", requirement="CER-RECOVERY") from None
    finally:
        del der
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CheckFailed("the original's wrapped root key is not an RSA key; nothing was put "
                          "on the token", requirement="CER-RECOVERY")
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_length(der: bytes) -> int:
    """The length of the DER SEQUENCE at the start of ``der`` (header included)."""
    if len(der) < 2 or der[0] != 0x30:
        return len(der)
    if der[1] < 0x80:
        return 2 + der[1]
    size = der[1] & 0x7F
    return 2 + size + int.from_bytes(der[2:2 + size], "big")
