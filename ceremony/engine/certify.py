"""Build a root certificate and a CSR whose signatures are made on the token.

``cryptography`` builds X.509 structures but signs them only with a private key it holds.
The root key never leaves the token, so:

1. ``cryptography`` builds the certificate (or request) and signs it with a throwaway key of
   the root key's algorithm (for RSA a smaller key: its size shows nowhere in the result).
   For a certificate the root public key is set explicitly, so the throwaway key only
   contributes the signature; the ``TBSCertificate`` bytes, including the signature
   AlgorithmIdentifier inside them, are exactly those the root key must sign. A
   request always carries its signer's public key, so there the SubjectPublicKeyInfo is
   replaced by the root key's.
2. The token signs those bytes (``Token.sign``: Ed25519 over the bytes, RFC 8410; ECDSA over
   SHA-256 / SHA-384 of them, DER, which is ecdsa-with-SHA256 / SHA384, RFC 5758; for RSA
   ``Token.sign_pkcs1v15``, RSASSA-PKCS1-v1_5 with SHA-256 on the token, CKM_SHA256_RSA_PKCS,
   which is sha256WithRSAEncryption, RFC 4055 / RFC 8017: the RSA certificate signature
   every relying party accepts, unlike the PSS the seal uses).
3. asn1crypto reassembles ``SEQUENCE { tbs, signatureAlgorithm, signatureValue }`` with the
   token's signature. asn1crypto keeps the DER of parts it parsed and did not change, so the
   signed bytes go into the result untouched; it is already installed (python-pkcs11 depends
   on it) and saves a hand-written DER encoder.
4. The result is checked with ``cryptography`` alone (:func:`check_certificate`,
   :func:`check_csr`) before the ceremony records it; the verifier checks it again with its
   own code (ceremony/verify/certificates.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asn1crypto import csr as asn1_csr
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceremony.errors import CheckFailed
from ceremony.model import statements as st
from ceremony.model.certificate import SIGNATURE_OIDS, SUBJECT_OIDS, CertificateSpec

Signer = Callable[[bytes], bytes]  # data -> signature made on the token

SIGNATURE_ALGORITHMS = {kind: f"{label} ({SIGNATURE_OIDS[kind]})" for kind, label in (
    ("ed25519", "ed25519"), ("ecdsa-p256", "ecdsa-with-SHA256"),
    ("ecdsa-p384", "ecdsa-with-SHA384"), ("rsa-3072", "sha256WithRSAEncryption"),
    ("rsa-4096", "sha256WithRSAEncryption"))}
# The throwaway RSA key's size does not reach the result (see _throwaway): 2048 bits is
# quick to generate.
_THROWAWAY_RSA_BITS = 2048


@dataclass(frozen=True)
class Built:
    der: bytes
    pem: bytes


def serial_from(random: bytes) -> int:
    """A positive serial number of at most 20 octets (RFC 5280, 4.1.2.2) from 16 random bytes."""
    return (int.from_bytes(random[:16], "big") >> 1) or 1


def name(spec: CertificateSpec) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.ObjectIdentifier(SUBJECT_OIDS[field]), value)
                      for field, value in spec.subject])


def _extensions(spec: CertificateSpec, public: st.PublicKey,
                ) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical): basic constraints, key usage, subject key identifier."""
    usage = set(spec.key_usage)
    return [
        (x509.BasicConstraints(ca=True, path_length=spec.path_length), True),
        (x509.KeyUsage(
            digital_signature="digital_signature" in usage, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign="key_cert_sign" in usage, crl_sign="crl_sign" in usage,
            encipher_only=False, decipher_only=False), True),
        (x509.SubjectKeyIdentifier.from_public_key(public), False),
    ]


def _throwaway(kind: str) -> tuple[
        Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        hashes.SHA256 | hashes.SHA384 | None]:
    """A key of the root key's algorithm, and its hash: only the signature
    AlgorithmIdentifier it makes reaches the result (for RSA, cryptography's default
    padding, PKCS#1 v1.5: sha256WithRSAEncryption with NULL parameters, RFC 4055)."""
    if kind == "ed25519":
        return Ed25519PrivateKey.generate(), None
    if kind in st.EC_CURVES:
        digest = hashes.SHA256() if kind == "ecdsa-p256" else hashes.SHA384()
        assert digest.name == st.ecdsa_hash(kind).name
        return ec.generate_private_key(st.EC_CURVES[kind][0]), digest
    if kind in st.RSA_BITS:
        return rsa.generate_private_key(st.RSA_EXPONENT, _THROWAWAY_RSA_BITS), hashes.SHA256()
    raise ValueError(f"no certificate support for {kind} root keys")


def _algorithm(draft: Any, kind: str) -> Any:
    """The draft's signature AlgorithmIdentifier, checked to be the kind's."""
    algorithm = draft["signature_algorithm"]
    if algorithm["algorithm"].dotted != SIGNATURE_OIDS[kind]:
        raise ValueError(f"cryptography chose the signature algorithm "
                         f"{algorithm['algorithm'].dotted} for an {kind} key")
    return algorithm


def build_certificate(spec: CertificateSpec, kind: str, public_raw: bytes, serial: int,
                      now: datetime, sign: Signer) -> Built:
    """The self-signed root certificate, signed by ``sign`` (the root key on the token)."""
    public = st.public_key_object(kind, public_raw)
    start = now.replace(microsecond=0)
    subject = name(spec)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(public).serial_number(serial).not_valid_before(start)
               .not_valid_after(start + timedelta(days=spec.validity_days)))
    for extension, critical in _extensions(spec, public):
        builder = builder.add_extension(extension, critical=critical)
    draft_key, digest = _throwaway(kind)
    draft = asn1_x509.Certificate.load(
        builder.sign(draft_key, digest).public_bytes(serialization.Encoding.DER))
    tbs = draft["tbs_certificate"].dump()
    final = asn1_x509.Certificate({"tbs_certificate": draft["tbs_certificate"],
                                   "signature_algorithm": _algorithm(draft, kind),
                                   "signature_value": sign(tbs)})
    der = final.dump()
    return Built(der, x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM))


def build_csr(spec: CertificateSpec, kind: str, public_raw: bytes, sign: Signer) -> Built:
    """A PKCS#10 request for the root key with the same subject and extensions."""
    public = st.public_key_object(kind, public_raw)
    builder = x509.CertificateSigningRequestBuilder().subject_name(name(spec))
    for extension, critical in _extensions(spec, public):
        builder = builder.add_extension(extension, critical=critical)
    draft_key, digest = _throwaway(kind)
    draft = asn1_csr.CertificationRequest.load(
        builder.sign(draft_key, digest).public_bytes(serialization.Encoding.DER))
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    old = draft["certification_request_info"]
    info = asn1_csr.CertificationRequestInfo({
        "version": old["version"], "subject": old["subject"],
        "subject_pk_info": asn1_keys.PublicKeyInfo.load(spki),
        "attributes": old["attributes"]})
    signed = info.dump()
    final = asn1_csr.CertificationRequest({"certification_request_info": info,
                                           "signature_algorithm": _algorithm(draft, kind),
                                           "signature": sign(signed)})
    der = final.dump()
    return Built(der, x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM))


def _same_key(found: object, kind: str, public_raw: bytes) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    expected = st.public_key_object(kind, public_raw).public_bytes(*spki)
    return hasattr(found, "public_bytes") and found.public_bytes(*spki) == expected


def check_certificate(der: bytes, spec: CertificateSpec, kind: str, public_raw: bytes,
                      serial: int) -> x509.Certificate:
    """Load with ``cryptography`` and check everything before it is recorded."""
    def bad(what: str) -> CheckFailed:
        return CheckFailed(f"the root certificate signed on the token {what}",
                           hint="the token or its module is faulty; abort",
                           requirement="CER-CERTIFICATE")
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise bad("does not verify under its own key") from None
    if not _same_key(cert.public_key(), kind, public_raw):
        raise bad("is not for the root key")
    if cert.subject != name(spec) or cert.serial_number != serial:
        raise bad("does not have the subject and serial it was built with")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    if lifetime != timedelta(days=spec.validity_days):
        raise bad("does not have the validity it was built with")
    return cert


def check_csr(der: bytes, spec: CertificateSpec, kind: str, public_raw: bytes) -> None:
    try:
        request = x509.load_der_x509_csr(der)
        valid = request.is_signature_valid
    except (ValueError, TypeError):
        valid = False
    if not valid or not _same_key(request.public_key(), kind, public_raw) \
            or request.subject != name(spec):
        raise CheckFailed("the certificate signing request signed on the token does not "
                          "verify under the root key", hint="the token or its module is "
                          "faulty; abort", requirement="CER-CERTIFICATE")
