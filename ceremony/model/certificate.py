"""The root certificate and CSR a script asks for: ``[root_key.certificate]``, strictly read.

The engine builds and signs them (ceremony/engine/certify.py); the verifier checks the files
against the transcript (ceremony/verify/certificates.py). Both take the subject, validity and
extensions from here, so what an approval binds (through the step digest) is what is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ceremony.model.strict import Fields

# The subject's attributes, in the order they appear in the Name (X.520 / RFC 5280):
# (script field, OpenSSL short name, longest value allowed by RFC 5280's upper bounds, OID).
SUBJECT_ATTRIBUTES: tuple[tuple[str, str, int, str], ...] = (
    ("country", "C", 2, "2.5.4.6"),
    ("state_or_province", "ST", 128, "2.5.4.8"),
    ("locality", "L", 128, "2.5.4.7"),
    ("organization", "O", 64, "2.5.4.10"),
    ("organizational_unit", "OU", 64, "2.5.4.11"),
    ("common_name", "CN", 64, "2.5.4.3"),
)
SUBJECT_OIDS = {name: oid for name, _, _, oid in SUBJECT_ATTRIBUTES}
# The signature algorithm of a certificate or request signed by a root key of each kind:
# Ed25519 (RFC 8410), ecdsa-with-SHA256 / SHA384 (RFC 5758), and for RSA
# sha256WithRSAEncryption (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 / RFC 4055), the RSA
# signature every relying party accepts. (The seal's RSA signatures are PSS: statements.py.)
SIGNATURE_OIDS = {"ed25519": "1.3.101.112", "ecdsa-p256": "1.2.840.10045.4.3.2",
                  "ecdsa-p384": "1.2.840.10045.4.3.3",
                  "rsa-3072": "1.2.840.113549.1.1.11", "rsa-4096": "1.2.840.113549.1.1.11"}
KEY_USAGES = ("key_cert_sign", "crl_sign", "digital_signature")
DEFAULT_KEY_USAGE = ("key_cert_sign", "crl_sign")
# Printable text without control characters (it goes into a UTF8String).
_TEXT = r"[^\x00-\x1f\x7f]+"

CERTIFICATE_FILE = "root-certificate.pem"
CSR_FILE = "root-csr.pem"


@dataclass(frozen=True)
class CertificateSpec:
    """What ``certify_root_key`` makes: a self-signed certificate and/or a CSR."""

    subject: tuple[tuple[str, str], ...]  # (script field, value), in SUBJECT_ATTRIBUTES order
    validity_days: int
    self_signed: bool
    csr: bool
    path_length: int | None  # basic constraints: always cA = TRUE (a root)
    key_usage: tuple[str, ...]  # in KEY_USAGES order

    @property
    def subject_text(self) -> str:
        """The subject in RFC 4514 order (most specific first), as the transcript records it."""
        short = {name: code for name, code, _, _ in SUBJECT_ATTRIBUTES}
        return ",".join(f"{short[name]}={_escape(value)}"
                        for name, value in reversed(self.subject))

    def definition(self) -> dict[str, Any]:
        """The public description that goes into the certify step's digest."""
        return {"subject": dict(self.subject), "validity_days": self.validity_days,
                "self_signed": self.self_signed, "csr": self.csr,
                "basic_constraints": {"ca": True, "path_length": self.path_length},
                "key_usage": list(self.key_usage), "subject_key_identifier": True}


def _escape(value: str) -> str:
    """RFC 4514 escaping of an attribute value."""
    out = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if out.startswith(("#", " ")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def parse_certificate(table: Fields) -> CertificateSpec:
    """Read ``[root_key.certificate]``; the caller checks the steps that use it."""
    sub = table.table("subject")
    assert sub is not None
    subject: list[tuple[str, str]] = []
    for name, _, longest, _ in SUBJECT_ATTRIBUTES:
        if name == "country":
            value = sub.text(name, required=False, pattern=r"[A-Z]{2}", max_len=2,
                             what="a two-letter upper-case country code (ISO 3166)")
        else:
            value = sub.text(name, required=name == "common_name", pattern=_TEXT,
                             max_len=longest, what="text without control characters")
        if value is not None:
            subject.append((name, value))
    sub.done()
    validity = table.integer("validity_days", low=1, high=36500)
    self_signed = table.flag("self_signed", default=True)
    csr = table.flag("csr", default=False)
    if not (self_signed or csr):
        raise table.fail("csr", "self_signed and csr are both false: there is nothing to make",
                         hint="set self_signed = true, csr = true, or both")
    path_length = None
    bc = table.table("basic_constraints", required=False)
    if bc is not None:
        ca = bc.flag("ca", default=True)
        if ca is not True:
            raise bc.fail("ca", "must be true: a root certificate is a CA certificate")
        path_length = bc.integer("path_length", low=0, high=16, required=False)
        bc.done()
    usage = table.str_list("key_usage", required=False, min_len=1, max_len=len(KEY_USAGES),
                           default=DEFAULT_KEY_USAGE)
    for item in usage:
        if item not in KEY_USAGES:
            raise table.fail("key_usage", f"{item!r} is not one of {', '.join(KEY_USAGES)}")
    if "key_cert_sign" not in usage:
        raise table.fail("key_usage", "must include key_cert_sign: a CA certificate signs "
                                      "certificates (RFC 5280, 4.2.1.9)")
    table.done()
    return CertificateSpec(tuple(subject), validity, self_signed, csr, path_length,
                           tuple(u for u in KEY_USAGES if u in usage))
