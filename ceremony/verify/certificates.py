"""Verification of the root certificate and CSR in a completed bundle (requirement CER-CERTIFICATE).

Independent of the engine's code that built them: the files are loaded with ``cryptography``,
their signatures are checked over the signed bytes with the verifier's own signature check
(:func:`signature_verifies`: for Ed25519 and ECDSA ``statements.verify_signature``, the same
one that checks the seal; for RSA sha256WithRSAEncryption, RSASSA-PKCS1-v1_5 with SHA-256,
checked here with ``cryptography``), and every field is compared with the script and with
what the transcript recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ceremony.canonical import sha256_hex
from ceremony.model import statements as st
from ceremony.model.certificate import SIGNATURE_OIDS, SUBJECT_OIDS, CertificateSpec
from ceremony.model.policy import Policy
from ceremony.model.script import Script
from ceremony.transcript import Line, format_time

EVENTS = ("certificate.created", "csr.created")


class CertificateProblem(Exception):
    def __init__(self, detail: str, line: Line) -> None:
        super().__init__(detail)
        self.detail = detail
        self.line = line


@dataclass
class _Made:
    line: Line
    digests: dict[str, str]  # the action.completed files of its action


def _in_effect(script: Script, lines: list[Line]) -> dict[str, _Made]:
    """The certificate events not undone by a rollback, with their action's file digests."""
    made: dict[str, _Made] = {}
    pending: dict[str, Line] = {}
    for line in lines:
        e = line.entry
        step = script.step(e.step) if e.step else None
        if step is None or step.action != "certify_root_key":
            continue
        if e.event == "action.started":
            pending = {}
        elif e.event in EVENTS:
            pending[e.event] = line
        elif e.event == "action.rolled_back":
            pending, made = {}, {}
        elif e.event == "action.completed":
            files = e.payload["files"]
            made = {k: _Made(v, files if isinstance(files, dict) else {})
                    for k, v in pending.items()}
    return made


def check_certificates(bundle: Path, script: Script, policy: Policy, lines: list[Line],
                       root: tuple[str, bytes] | None, last: Line) -> None:
    """Raise CertificateProblem unless the certificate and CSR the script asks for are right."""
    spec = script.certificate
    if spec is None:
        return
    made = _in_effect(script, lines)
    wanted = {"certificate.created": spec.self_signed, "csr.created": spec.csr}
    for event, want in wanted.items():
        if want and event not in made:
            raise CertificateProblem(f"the script asks for a {event.split('.')[0]} but no "
                                     f"{event} entry records one", last)
        if not want and event in made:
            raise CertificateProblem(f"{event} records something the script does not ask for",
                                     made[event].line)
    if root is None:
        raise CertificateProblem("there is no root key for the certificate", last)
    if "certificate.created" in made:
        _check_certificate(bundle, script, policy, spec, made["certificate.created"], root)
    if "csr.created" in made:
        _check_csr(bundle, spec, made["csr.created"], root)


def _file(bundle: Path, made: _Made, what: str) -> tuple[bytes, dict[str, Any]]:
    p = made.line.entry.payload
    name = p["file"]
    if not isinstance(name, str) or "/" in name or not (bundle / name).is_file():
        raise CertificateProblem(f"the {what} file {name!r} is not in the bundle", made.line)
    data = (bundle / name).read_bytes()
    if made.digests.get(name) != sha256_hex(data):
        raise CertificateProblem(f"{name} does not match its digest in action.completed",
                                 made.line)
    return data, p


def _same_subject(name: x509.Name, spec: CertificateSpec) -> bool:
    got = [(a.oid.dotted_string, a.value) for a in name]
    return got == [(SUBJECT_OIDS[field], value) for field, value in spec.subject] and all(
        len(rdn) == 1 for rdn in name.rdns)


def _key_matches(found: Any, root: tuple[str, bytes]) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(found.public_bytes(*spki) == st.public_key_object(*root).public_bytes(*spki))


def signature_verifies(root: tuple[str, bytes], signature: bytes, signed: bytes) -> bool:
    """True when ``signature`` over ``signed`` verifies under the root key with the signature
    algorithm its kind's certificates use (model/certificate.py SIGNATURE_OIDS)."""
    kind, raw = root
    if kind not in st.RSA_BITS:
        return st.verify_signature(kind, raw, signature, signed)
    # sha256WithRSAEncryption: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017, 8.2), the signature
    # exactly the modulus length. Not the seal's PSS: a PSS signature here does not verify.
    try:
        key = st.public_key_object(kind, raw)
        if not isinstance(key, rsa.RSAPublicKey) or len(signature) != st.RSA_BITS[kind] // 8:
            return False
        key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_certificate(bundle: Path, script: Script, policy: Policy, spec: CertificateSpec,
                       made: _Made, root: tuple[str, bytes]) -> None:
    data, p = _file(bundle, made, "certificate")
    line = made.line

    def fail(what: str) -> CertificateProblem:
        return CertificateProblem(f"{p['file']}: {what}", line)
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise fail("is not a PEM X.509 certificate") from None
    der = cert.public_bytes(serialization.Encoding.DER)
    if sha256_hex(der) != p["fingerprint"]:
        raise fail("does not match the fingerprint the transcript records")
    if p["public_key"] != st.encode_key(root[1], root[0]) or not _key_matches(
            cert.public_key(), root):
        raise fail("is not for the root key the transcript records")
    if cert.signature_algorithm_oid.dotted_string != SIGNATURE_OIDS[root[0]] or \
            not signature_verifies(root, cert.signature, cert.tbs_certificate_bytes):
        raise fail("its signature does not verify under the root key")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise fail("is not a valid self-signed certificate") from None
    if not _same_subject(cert.subject, spec) or cert.issuer != cert.subject or \
            p["subject"] != spec.subject_text:
        raise fail("its subject is not the script's")
    if p["serial"] != f"{cert.serial_number:x}":
        raise fail("its serial number is not the one the transcript records")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if (p["not_before"], p["not_after"]) != (format_time(start), format_time(end)):
        raise fail("its validity is not the one the transcript records")
    days = spec.validity_days
    if end - start != timedelta(days=days) or p["validity_days"] != days:
        raise fail(f"its validity is not the script's {days} days")
    if days > script.root_key.lifetime_days or days > policy.max_key_lifetime_days:
        raise fail("its validity is longer than the root key's lifetime or the policy's "
                   "maximum")
    if not parse_time_ok(line, start):
        raise fail("its validity starts later than the entry that records it")
    _check_extensions(cert.extensions, spec, root, fail)


def parse_time_ok(line: Line, start: Any) -> bool:
    """not_before is the engine's clock when it built the certificate: before the entry."""
    return format_time(start) <= line.entry.time


def _check_extensions(extensions: x509.Extensions, spec: CertificateSpec,
                      root: tuple[str, bytes], fail: Any) -> None:
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints)
        ku = extensions.get_extension_for_class(x509.KeyUsage)
        ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        raise fail("lacks basic constraints, key usage or subject key identifier") from None
    if not bc.critical or not bc.value.ca or bc.value.path_length != spec.path_length:
        raise fail("its basic constraints are not the script's (critical, CA)")
    usage = {"key_cert_sign": ku.value.key_cert_sign, "crl_sign": ku.value.crl_sign,
             "digital_signature": ku.value.digital_signature}
    if not ku.critical or {k for k, v in usage.items() if v} != set(spec.key_usage) or any(
            (ku.value.content_commitment, ku.value.key_encipherment,
             ku.value.data_encipherment, ku.value.key_agreement)):
        raise fail("its key usage is not the script's")
    if ski.value != x509.SubjectKeyIdentifier.from_public_key(st.public_key_object(*root)):
        raise fail("its subject key identifier is not that of the root key")


def _check_csr(bundle: Path, spec: CertificateSpec, made: _Made,
               root: tuple[str, bytes]) -> None:
    data, p = _file(bundle, made, "certificate signing request")

    def fail(what: str) -> CertificateProblem:
        return CertificateProblem(f"{p['file']}: {what}", made.line)
    try:
        request = x509.load_pem_x509_csr(data)
    except ValueError:
        raise fail("is not a PEM certificate signing request") from None
    if sha256_hex(request.public_bytes(serialization.Encoding.DER)) != p["fingerprint"]:
        raise fail("does not match the fingerprint the transcript records")
    if p["public_key"] != st.encode_key(root[1], root[0]) or not _key_matches(
            request.public_key(), root):
        raise fail("is not for the root key the transcript records")
    if request.signature_algorithm_oid.dotted_string != SIGNATURE_OIDS[root[0]] or \
            not signature_verifies(root, request.signature, request.tbs_certrequest_bytes) or \
            not request.is_signature_valid:
        raise fail("its signature does not verify under the root key")
    if not _same_subject(request.subject, spec) or p["subject"] != spec.subject_text:
        raise fail("its subject is not the script's")
    _check_extensions(request.extensions, spec, root, fail)
