"""Root certificates and CSRs (issue 4, item 4): built from the script, signed on the token.

On SoftHSM2 a whole ceremony runs through the real CLI with a certify_root_key step, for
every root key kind (RSA: sha256WithRSAEncryption, PKCS#1 v1.5 signed on the token); the
bundle is checked by `ceremony verify`, by `openssl x509` / `openssl req` and by
``cryptography``, and an altered certificate fails verification. With the fakes: the
policy's lifetime limits the validity, a tampered certificate fails verification, a failed
certification is rolled back without touching the root key, and the script's
[root_key.certificate] table is read strictly.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ceremony.engine.prompts import (
    ActionReady,
    ApprovalNeeded,
    Begin,
    BeginStep,
    ConfirmationNeeded,
    Finished,
    Proceed,
    TypedConfirmation,
)
from ceremony.errors import CheckFailed, PolicyViolation, ScriptError, TokenError
from ceremony.model import statements as st
from ceremony.model.policy import parse_policy
from ceremony.model.rules import check_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import make_cast, sample_texts
from ceremony.transcript import parse_lines
from ceremony.verify import verify_bundle
from ceremony.verify.certificates import (
    CertificateProblem,
    check_certificates,
    signature_verifies,
)
from tests.conftest import SoftHsm, require, run_cli
from tests.fakes import SeededRandom
from tests.test_crash import prepare_ceremony
from tests.test_engine import Run, _start

PROVISION_END = 'confirm = "PROVISION ROOT KEY"\n'
CERT_TABLE = """
[root_key.certificate]
validity_days = 3650
self_signed = true
csr = true
key_usage = ["key_cert_sign", "crl_sign"]

[root_key.certificate.subject]
common_name = "Sample Root CA"
organization = "Example, Org"
country = "DE"

[root_key.certificate.basic_constraints]
path_length = 1
"""
CERTIFY_STEP = """
[[steps]]
id = "certify-root-key"
title = "Certify the root key"
instructions = "Two custodians approve; the root key signs its certificate and CSR."
action = "certify_root_key"
approvals = 2
witnesses = 1
confirm = "CERTIFY ROOT KEY"
"""
# One edit of the sample script: the table and a certify step right after provisioning.
CERTIFY = (PROVISION_END, PROVISION_END + CERT_TABLE + CERTIFY_STEP)
SUBJECT = "CN=Sample Root CA,O=Example\\, Org,C=DE"


def _edit_for(kind: str) -> tuple[str, str] | None:
    if kind == "ed25519":
        return None
    if kind.startswith("rsa-"):
        return ('algorithm = "ed25519"', f'algorithm = "rsa"\nsize = {kind[4:]}')
    return ('algorithm = "ed25519"', f'algorithm = "ecdsa"\ncurve = "{kind[6:]}"')


def _signed_by_root(kind: str, raw: bytes, signature: bytes, data: bytes) -> bool:
    """The signature checked with cryptography alone (RSA: PKCS#1 v1.5, SHA-256)."""
    if not kind.startswith("rsa-"):
        return st.verify_signature(kind, raw, signature, data)
    key = serialization.load_der_public_key(raw)
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _certificate_check(bundle: Path, der: bytes | None = None) -> str:
    """What the verifier's certificate check says of the bundle, with ``der`` (when given) in
    place of the certificate and the transcript's fingerprint and file digest of it patched
    in memory only, so that the check gets past the digests to the certificate itself."""
    lines = parse_lines((bundle / "transcript.jsonl").read_bytes(), "transcript.jsonl")
    if der is not None:
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        (bundle / "root-certificate.pem").write_bytes(pem)
        for line in lines:
            payload = line.entry.payload
            if line.entry.event == "certificate.created":
                payload["fingerprint"] = hashlib.sha256(der).hexdigest()
            elif line.entry.event == "action.completed" and \
                    "root-certificate.pem" in payload["files"]:
                payload["files"]["root-certificate.pem"] = hashlib.sha256(pem).hexdigest()
    script = parse_script((bundle / "script.toml").read_text(), "script.toml")
    policy = parse_policy((bundle / "policy.toml").read_text(), "policy.toml")
    root = next(line.entry.payload["public_key"] for line in lines
                if line.entry.event == "root_key.created")
    try:
        check_certificates(bundle, script, policy, lines, st.decode_public_key(root), lines[-1])
    except CertificateProblem as problem:
        return problem.detail
    return "ok"


def _openssl(*args: str) -> str:
    tool = shutil.which("openssl")
    require(tool is not None, "openssl")
    assert tool is not None
    result = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


# ------------------------------------------------------------------ SoftHSM2, end to end


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072",
                                  "rsa-4096"])
def test_certified_ceremony_on_softhsm(tmp_path: Path, softhsm: SoftHsm, kind: str) -> None:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, script_edit=_edit_for(kind),
                         more_edits=(CERTIFY,))
    assert c.script.root_key.kind == kind and c.script.certificate is not None
    result = c.run()
    assert result.returncode == 0, result.stdout + result.stderr
    verified = c.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "outcome completed" in verified.stdout

    entries = c.entries()
    root = next(e["payload"] for e in entries if e["event"] == "root_key.created")
    (made,) = [e["payload"] for e in entries if e["event"] == "certificate.created"]
    (request,) = [e["payload"] for e in entries if e["event"] == "csr.created"]
    completed = [e for e in entries if e["event"] == "action.completed"][-1]
    assert completed["step"] == "certify-root-key"
    assert completed["payload"]["created"] == []

    # openssl parses the certificate (a rehearsal's first line is a REHEARSAL note, which
    # the PEM reader skips) and shows the script's subject and extensions.
    cert_path, csr_path = c.out / "root-certificate.pem", c.out / "root-csr.pem"
    assert cert_path.read_bytes().startswith(b"REHEARSAL")
    text = _openssl("x509", "-in", str(cert_path), "-text", "-noout")
    assert "Subject: C = DE, O = \"Example, Org\", CN = Sample Root CA" in text, text
    assert "Issuer: C = DE, O = \"Example, Org\", CN = Sample Root CA" in text
    assert "CA:TRUE, pathlen:1" in text
    assert "X509v3 Key Usage: critical" in text and "Certificate Sign, CRL Sign" in text
    assert "X509v3 Subject Key Identifier" in text
    algorithm = {"ed25519": "ED25519", "ecdsa-p256": "ecdsa-with-SHA256",
                 "ecdsa-p384": "ecdsa-with-SHA384", "rsa-3072": "sha256WithRSAEncryption",
                 "rsa-4096": "sha256WithRSAEncryption"}[kind]
    assert f"Signature Algorithm: {algorithm}" in text
    if kind.startswith("rsa-"):
        assert f"Public-Key: ({kind[4:]} bit)" in text
        assert "Exponent: 65537 (0x10001)" in text
    # openssl checks the self-signature and the request's signature itself.
    _openssl("verify", "-CAfile", str(cert_path), "-check_ss_sig", str(cert_path))
    assert "verify OK" in _openssl("req", "-in", str(csr_path), "-verify", "-noout")

    # cryptography: the certificate verifies under its own key, which is the root key.
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(cert)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    pem = (c.out / "root-public-key.pem").read_bytes()
    root_key = serialization.load_pem_public_key(pem[pem.index(b"-----BEGIN"):])
    assert cert.public_key().public_bytes(*spki) == root_key.public_bytes(*spki)
    kind_, raw = st.decode_public_key(root["public_key"])
    assert kind_ == kind
    assert _signed_by_root(kind, raw, cert.signature, cert.tbs_certificate_bytes)
    if kind.startswith("rsa-"):
        # sha256WithRSAEncryption is PKCS#1 v1.5, made on the token with SHA256_RSA_PKCS,
        # which the transcript records among the mechanisms; not the seal's PSS.
        assert isinstance(cert.signature_algorithm_parameters, padding.PKCS1v15)
        assert len(cert.signature) == int(kind[4:]) // 8
        assert not st.verify_signature(kind, raw, cert.signature, cert.tbs_certificate_bytes)
        assert "SHA256_RSA_PKCS" in entries[0]["payload"]["token"]["mechanisms"]
        assert made["signature_algorithm"] == request["signature_algorithm"] == (
            "sha256WithRSAEncryption (1.2.840.113549.1.1.11)")
    else:
        assert "SHA256_RSA_PKCS" not in entries[0]["payload"]["token"]["mechanisms"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=3650)
    assert cert.subject.rfc4514_string() == SUBJECT == made["subject"]
    assert made["fingerprint"] == hashlib.sha256(
        cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert made["serial"] == f"{cert.serial_number:x}" and made["public_key"] == root[
        "public_key"]
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    assert _signed_by_root(kind, raw, csr.signature, csr.tbs_certrequest_bytes)
    assert csr.public_key().public_bytes(*spki) == root_key.public_bytes(*spki)
    assert request["fingerprint"] == hashlib.sha256(
        csr.public_bytes(serialization.Encoding.DER)).hexdigest()
    for name in ("root-certificate.pem", "root-csr.pem"):
        digest = hashlib.sha256((c.out / name).read_bytes()).hexdigest()
        assert completed["payload"]["files"][name] == digest

    # Certifying created nothing on the token: the root key pair only.
    assert len(softhsm.objects()) == 2

    # The verifier's own signature check: it passes the certificate as made, and fails one
    # whose signature has one bit flipped (the transcript's digests of it patched in memory,
    # so the digests do not catch it first).
    original = cert_path.read_bytes()
    der = cert.public_bytes(serialization.Encoding.DER)
    assert _certificate_check(c.out) == "ok"
    flipped = der[:-1] + bytes([der[-1] ^ 1])  # the signature is the DER's last element
    assert _certificate_check(c.out, flipped) == (
        "root-certificate.pem: its signature does not verify under the root key")

    # `ceremony verify` on an altered file (one base64 character of the signature): exit 1,
    # naming the file and the certificate requirement; the original bytes verify again.
    body = original.splitlines()
    body[-2] = body[-2][:-3] + (b"A" if body[-2][-3:-2] != b"A" else b"B") + body[-2][-2:]
    cert_path.write_bytes(b"\n".join(body) + b"\n")
    refused = c.verify()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "CER-CERTIFICATE" in refused.stdout + refused.stderr
    assert "root-certificate.pem" in refused.stdout + refused.stderr
    cert_path.write_bytes(original)
    again = c.verify()
    assert again.returncode == 0, again.stdout + again.stderr


# ------------------------------------------------------------------ fakes


@dataclass
class _Driver:
    run: Run

    def until(self, stop_step: str | None = None, stop_at_action: bool = False,
              stop_at_begin: bool = False) -> None:
        """Answer prompts as the first eligible participants would."""
        engine = self.run.engine
        while True:
            prompt = engine.next_prompt()
            if isinstance(prompt, Finished):
                return
            if isinstance(prompt, BeginStep):
                if stop_at_begin and prompt.step == stop_step:
                    return
                engine.submit(Begin())
            elif isinstance(prompt, ApprovalNeeded):
                who = next(p for p in prompt.eligible if p not in prompt.collected)
                self.run.approve(who)
            elif isinstance(prompt, ConfirmationNeeded):
                engine.submit(TypedConfirmation(prompt.phrase))
            else:
                assert isinstance(prompt, ActionReady)
                if stop_at_action and prompt.step == stop_step:
                    return
                engine.submit(Proceed())


def _certified(tmp_path: Path) -> Run:
    run = _start(tmp_path, script_edit=CERTIFY)
    _Driver(run).until()
    return run


def test_certified_ceremony_with_fakes_verifies(tmp_path: Path) -> None:
    run = _certified(tmp_path)
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    events = run.events()
    assert events.count("certificate.created") == events.count("csr.created") == 1
    cert = x509.load_pem_x509_certificate((run.bundle / "root-certificate.pem").read_bytes())
    # The serial comes from the randomness port (deterministic here), the validity from the
    # engine's clock.
    again = _certified(tmp_path / "again")
    other = x509.load_pem_x509_certificate(
        (again.bundle / "root-certificate.pem").read_bytes())
    assert cert.serial_number == other.serial_number
    assert cert.not_valid_before_utc == other.not_valid_before_utc


def test_tampered_certificate_fails_verification(tmp_path: Path) -> None:
    run = _certified(tmp_path)
    path = run.bundle / "root-certificate.pem"
    original = path.read_bytes()
    lines = run.transcript.read_text().splitlines()
    recorded = next(i for i, line in enumerate(lines) if '"certificate.created"' in line)

    # One byte of the signature changed (inside the base64): the file digest no longer
    # matches what action.completed recorded; reported at the certificate.created entry.
    body = original.splitlines()
    body[-2] = body[-2][:-3] + (b"A" if body[-2][-3:-2] != b"A" else b"B") + body[-2][-2:]
    path.write_bytes(b"\n".join(body) + b"\n")
    failure = verify_bundle(run.bundle).first_failure
    assert failure is not None and failure.name == "seal"
    assert failure.requirement == "CER-CERTIFICATE"
    assert failure.seq == recorded
    assert "root-certificate.pem" in failure.detail

    # Another certificate with the same subject, made by a different key, in its place.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    real = x509.load_pem_x509_certificate(original)
    impostor_key = Ed25519PrivateKey.generate()
    impostor = (x509.CertificateBuilder().subject_name(real.subject).issuer_name(real.subject)
                .public_key(impostor_key.public_key()).serial_number(real.serial_number)
                .not_valid_before(real.not_valid_before_utc)
                .not_valid_after(real.not_valid_after_utc)
                .sign(impostor_key, None))
    path.write_bytes(impostor.public_bytes(serialization.Encoding.PEM))
    failure = verify_bundle(run.bundle).first_failure
    assert failure is not None and failure.requirement == "CER-CERTIFICATE"

    path.unlink()
    failure = verify_bundle(run.bundle).first_failure
    assert failure is not None and failure.requirement == "CER-CERTIFICATE"
    assert "not in the bundle" in failure.detail

    path.write_bytes(original)
    assert verify_bundle(run.bundle).ok


def test_validity_beyond_the_lifetime_is_refused(tmp_path: Path) -> None:
    template, policy_text = sample_texts()
    # Longer than the root key's lifetime (3650): refused by run, naming the requirement.
    longer = template.replace(*CERTIFY).replace("validity_days = 3650", "validity_days = 3651")
    with pytest.raises(PolicyViolation) as caught:
        _start(tmp_path, script_edit=(template, longer))
    assert caught.value.requirement == "CER-CERT-VALIDITY"
    assert "3651 days is longer than the root key's lifetime of 3650" in caught.value.message
    assert not (tmp_path / "bundle").exists()

    # Longer than the policy's maximum key lifetime, with a key lifetime within the policy.
    policy = parse_policy(policy_text.replace("max_key_lifetime_days = 7300",
                                              "max_key_lifetime_days = 3000"), "policy.toml")
    cast = make_cast(template.replace(*CERTIFY), SeededRandom("participants"))
    found = check_policy(cast.script, policy, rehearsal=True, script_text=cast.script_text)
    cert = [v for v in found if v.requirement == "CER-CERT-VALIDITY"]
    assert len(cert) == 1, found
    assert "policy's maximum key lifetime of 3000" in cert[0].message
    line = cast.script_text.splitlines().index("validity_days = 3650") + 1
    assert f"script.toml:{line}: root_key.certificate.validity_days" in cert[0].message

    # lint says the same, with exit 1 and the requirement id.
    (tmp_path / "lint").mkdir()
    (tmp_path / "lint" / "script.toml").write_text(
        cast.script_text.replace("validity_days = 3650", "validity_days = 3651"))
    (tmp_path / "lint" / "policy.toml").write_text(policy_text)
    result = run_cli("lint", "script.toml", cwd=tmp_path / "lint")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CER-CERT-VALIDITY" in result.stdout + result.stderr


class _SignFails(Exception):
    pass


def test_failed_certification_is_rolled_back_and_keeps_the_root_key(tmp_path: Path) -> None:
    run = _start(tmp_path, script_edit=CERTIFY)
    driver = _Driver(run)
    driver.until("certify-root-key", stop_at_action=True)
    token = run.token
    rk = run.cast.script.root_key
    real_sign = token.sign
    calls = {"n": 0}

    def flaky(kind: str, label: str, key_id: str, data: bytes) -> bytes:
        calls["n"] += 1
        if calls["n"] == 2:  # the certificate is signed and written; the CSR fails
            raise TokenError("the token was removed")
        return real_sign(kind, label, key_id, data)

    token.sign = flaky  # type: ignore[method-assign]
    with pytest.raises(TokenError):
        run.engine.submit(Proceed())
    token.sign = real_sign  # type: ignore[method-assign]
    assert run.events()[-1] == "action.rolled_back"
    assert not (run.bundle / "root-certificate.pem").exists()
    assert (run.bundle / "root-public-key.pem").exists()
    assert (rk.label, rk.key_id) in token.keys and len(run.secrets.shares) == 3
    assert run.engine.state.root_public is not None
    rolled = [line for line in run.transcript.read_text().splitlines()
              if '"action.rolled_back"' in line][-1]
    assert '"removed_files":["root-certificate.pem"]' in rolled
    assert '"destroyed_objects":[]' in rolled
    # Proceed again: it certifies, seals with the root key and verifies.
    driver.until()
    report = verify_bundle(run.bundle)
    assert report.ok, report.first_failure
    assert report.root_public_key is not None


def test_abort_after_certification_removes_the_files(tmp_path: Path) -> None:
    from ceremony.engine.prompts import Abort
    run = _start(tmp_path, script_edit=CERTIFY)
    _Driver(run).until("close", stop_at_begin=True)
    assert isinstance(run.engine.next_prompt(), BeginStep)
    assert (run.bundle / "root-certificate.pem").exists()
    run.engine.submit(Abort("testing"))
    assert not (run.bundle / "root-certificate.pem").exists()
    assert not (run.bundle / "root-csr.pem").exists()
    report = verify_bundle(run.bundle)
    assert report.ok and report.outcome == "aborted", report.first_failure


def test_approval_binds_the_certificate_spec(tmp_path: Path) -> None:
    template, _ = sample_texts()
    script = parse_script(template.replace(*CERTIFY), "script.toml")
    step = script.step("certify-root-key")
    assert step is not None and step.sensitive
    definition = script.step_definition(step)
    assert definition["certificate"]["subject"] == {
        "country": "DE", "organization": "Example, Org", "common_name": "Sample Root CA"}
    other = parse_script(template.replace(*CERTIFY).replace("Sample Root CA", "Other CA"),
                         "script.toml")
    step2 = other.step("certify-root-key")
    assert step2 is not None
    assert st.step_digest(other.step_definition(step2)) != st.step_digest(definition)


# ------------------------------------------------------------------ the script, strictly


def _parse(edit: tuple[str, str], base: tuple[str, str] = CERTIFY) -> str:
    template, _ = sample_texts()
    text = template.replace(*base)
    assert edit[0] in text
    with pytest.raises(ScriptError) as caught:
        parse_script(text.replace(*edit), "script.toml")
    return str(caught.value)


@pytest.mark.parametrize("edit, says", [
    (('country = "DE"', 'country = "de"'), "two-letter upper-case country code"),
    (('country = "DE"', 'country = "DEU"'), "longer than 2 characters"),
    (('common_name = "Sample Root CA"\n', ""), "subject.common_name: this required field"),
    (('common_name = "Sample Root CA"\n', 'common_name = "Sample Root CA"\nserial = "1"\n'),
     "subject.serial: is not a known field"),
    (("self_signed = true\ncsr = true", "self_signed = false\ncsr = false"),
     "there is nothing to make"),
    (('key_usage = ["key_cert_sign", "crl_sign"]', 'key_usage = ["crl_sign"]'),
     "must include key_cert_sign"),
    (('key_usage = ["key_cert_sign", "crl_sign"]', 'key_usage = ["key_cert_sign", "encrypt"]'),
     "'encrypt' is not one of key_cert_sign, crl_sign, digital_signature"),
    (("path_length = 1", "ca = false"), "must be true: a root certificate is a CA"),
    (("path_length = 1", "path_length = -1"), "-1 is out of range"),
    (("validity_days = 3650", "validity_days = 0"), "0 is out of range"),
    (('action = "certify_root_key"', 'action = "certify_root_key"\naction2 = 1'),
     "action2: is not a known field"),
])
def test_bad_certificate_tables(edit: tuple[str, str], says: str) -> None:
    assert says in _parse(edit)


def test_certify_step_order_and_pairing() -> None:
    template, _ = sample_texts()
    # Before provisioning: refused, naming the step.
    first_step = '[[steps]]\nid = "open"'
    early = (first_step, CERTIFY_STEP.strip() + "\n\n" + first_step)
    text = template.replace(PROVISION_END, PROVISION_END + CERT_TABLE).replace(*early)
    with pytest.raises(ScriptError, match="certified before it exists") as caught:
        parse_script(text, "script.toml")
    assert caught.value.field == "steps[0].action"
    # A table without a step, and a step without a table.
    with pytest.raises(ScriptError, match="nothing would use this table"):
        parse_script(template.replace(PROVISION_END, PROVISION_END + CERT_TABLE),
                     "script.toml")
    with pytest.raises(ScriptError, match=r"needs a \[root_key.certificate\] table"):
        parse_script(template.replace(PROVISION_END, PROVISION_END + CERTIFY_STEP),
                     "script.toml")
    # Two certify steps.
    twice = CERTIFY_STEP.replace("certify-root-key", "certify-again")
    with pytest.raises(ScriptError, match="the only step with"):
        parse_script(template.replace(PROVISION_END, PROVISION_END + CERT_TABLE
                                      + CERTIFY_STEP + twice), "script.toml")


def test_certificate_signature_is_over_the_exact_tbs_bytes() -> None:
    """The engine's assembly: the token's signature lands on the TBS bytes unchanged."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ceremony.engine import certify

    template, _ = sample_texts()
    spec = parse_script(template.replace(*CERTIFY), "script.toml").certificate
    assert spec is not None
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    signed: list[bytes] = []

    def sign(data: bytes) -> bytes:
        signed.append(data)
        return key.sign(data)

    built = certify.build_certificate(spec, "ed25519", raw, 7,
                                      datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), sign)
    cert = x509.load_der_x509_certificate(built.der)
    assert signed == [cert.tbs_certificate_bytes]
    assert cert.signature == base64.b64decode(base64.b64encode(cert.signature))
    assert cert.not_valid_before_utc == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    certify.check_certificate(built.der, spec, "ed25519", raw, 7)
    request = certify.build_csr(spec, "ed25519", raw, sign)
    assert signed[-1] == x509.load_der_x509_csr(request.der).tbs_certrequest_bytes
    certify.check_csr(request.der, spec, "ed25519", raw)
    # A signature by another key is caught before anything is recorded.
    other = Ed25519PrivateKey.generate()
    bad = certify.build_certificate(spec, "ed25519", raw, 7, datetime.now(UTC), other.sign)
    with pytest.raises(Exception, match="does not verify under its own key"):
        certify.check_certificate(bad.der, spec, "ed25519", raw, 7)


def test_rsa_certificate_is_pkcs1v15_over_the_exact_tbs_bytes() -> None:
    """RSA: sha256WithRSAEncryption, PKCS#1 v1.5 with SHA-256, over the exact TBS bytes; a
    PSS signature (the seal's scheme) in its place is caught by the engine's check before
    anything is recorded, and refused by the verifier's signature check."""
    from datetime import UTC, datetime

    from ceremony.engine import certify

    template, _ = sample_texts()
    spec = parse_script(template.replace(*CERTIFY), "script.toml").certificate
    assert spec is not None
    key = rsa.generate_private_key(65537, 3072)
    raw = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    root = ("rsa-3072", raw)
    signed: list[bytes] = []

    def sign(data: bytes) -> bytes:
        signed.append(data)
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def sign_pss(data: bytes) -> bytes:
        return key.sign(data, st.rsa_pss(), hashes.SHA256())

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    built = certify.build_certificate(spec, "rsa-3072", raw, 7, now, sign)
    cert = x509.load_der_x509_certificate(built.der)
    assert signed == [cert.tbs_certificate_bytes]
    assert cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.11"
    # The root key is the certificate's key (the throwaway key's size shows nowhere).
    assert cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == raw
    certify.check_certificate(built.der, spec, "rsa-3072", raw, 7)
    assert signature_verifies(root, cert.signature, cert.tbs_certificate_bytes)
    assert not signature_verifies(root, b"\x00" + cert.signature, cert.tbs_certificate_bytes)
    request = certify.build_csr(spec, "rsa-3072", raw, sign)
    csr = x509.load_der_x509_csr(request.der)
    assert signed[-1] == csr.tbs_certrequest_bytes
    assert csr.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.11"
    certify.check_csr(request.der, spec, "rsa-3072", raw)
    assert signature_verifies(root, csr.signature, csr.tbs_certrequest_bytes)

    pss = certify.build_certificate(spec, "rsa-3072", raw, 7, now, sign_pss)
    with pytest.raises(CheckFailed, match="does not verify under its own key"):
        certify.check_certificate(pss.der, spec, "rsa-3072", raw, 7)
    wrong = x509.load_der_x509_certificate(pss.der)
    # A valid PSS signature by the root key, but not the certificate's algorithm.
    assert st.verify_signature("rsa-3072", raw, wrong.signature, wrong.tbs_certificate_bytes)
    assert not signature_verifies(root, wrong.signature, wrong.tbs_certificate_bytes)
    with pytest.raises(CheckFailed, match="does not verify under the root key"):
        certify.check_csr(certify.build_csr(spec, "rsa-3072", raw, sign_pss).der, spec,
                          "rsa-3072", raw)


def test_rsa_root_key_certificate_is_accepted_and_its_mechanism_recorded() -> None:
    """An RSA script with [root_key.certificate] parses (it was refused before RSA
    certificates were supported), and its ceremony records SHA256_RSA_PKCS."""
    from ceremony.engine.core import mechanisms_for

    template, _ = sample_texts()
    rsa_edit = ('algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 3072')
    certified = parse_script(template.replace(*rsa_edit).replace(*CERTIFY), "script.toml")
    assert certified.root_key.kind == "rsa-3072" and certified.certificate is not None
    assert mechanisms_for(certified) == [
        "EC_EDWARDS_KEY_PAIR_GEN", "EDDSA", "RSA_PKCS_KEY_PAIR_GEN", "SHA256_RSA_PKCS_PSS",
        "AES_KEY_WRAP_PAD", "SHA256_RSA_PKCS"]
    plain = parse_script(template.replace(*rsa_edit), "script.toml")
    assert "SHA256_RSA_PKCS" not in mechanisms_for(plain)
    ecdsa = parse_script(template.replace(*CERTIFY).replace(
        'algorithm = "ed25519"', 'algorithm = "ecdsa"\ncurve = "p256"'), "script.toml")
    assert mechanisms_for(ecdsa) == ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA", "ECDSA"]
