"""Custodian identity keys on a PKCS#11 token (issue 6 item 1, CER-IDENTITY), on SoftHSM2.

The custodian's own token is a second SoftHSM2 token next to the ceremony's, made with
softhsm2-util; its Ed25519 key is made by `ceremony custodian enroll --token ... --generate`.
What must hold: the token's signatures over approval statements verify; a token holding
another key is refused before any PIN is asked; a wrong PIN is one sentence and the PIN
buffer is wiped; a real run takes identity tokens where it refuses key files; a rehearsal
ceremony approved in part by a custodian's identity token verifies.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ceremony.adapters.pkcs11_token import find_token
from ceremony.adapters.token_identity import TokenKey, TokenSigner
from ceremony.cli.main import main
from ceremony.errors import AnswersError, Kind, TokenError
from ceremony.model import statements as st
from ceremony.model.answers import parse_answers
from ceremony.rehearsal import answers_toml, make_cast, simulated_answers
from tests.conftest import SoftHsm, run_cli
from tests.fakes import SeededRandom
from tests.test_crash import known_pin_texts, prepare_ceremony

pytestmark = pytest.mark.softhsm

PIN = "246810"
LABEL = "identity"


def identity_token(softhsm: SoftHsm, name: str) -> str:
    """A custodian's own token (in the ceremony token's SoftHSM2 directory): its URI."""
    label = f"{name}-id"
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN,
                    "--so-pin", "13572468"], check=True, capture_output=True,
                   env=softhsm.env)
    return f"pkcs11:token={label}"


def enrol(softhsm: SoftHsm, uri: str, pin_file: Path, *extra: str) -> tuple[int, str, str]:
    """`ceremony custodian enroll --token` in a subprocess: exit code, stdout, stderr."""
    done = run_cli("custodian", "enroll", "--token", uri, "--key-label", LABEL,
                   "--pin-file", str(pin_file), "--module", softhsm.module, *extra,
                   env=softhsm.env)
    assert "Traceback" not in done.stderr and PIN not in done.stdout + done.stderr
    return done.returncode, done.stdout, done.stderr


def public_line(stdout: str) -> bytes:
    found = re.findall(r'^public_key = "(ed25519:[^"]+)"$', stdout, re.M)
    assert len(found) == 1, stdout
    return st.decode_key(found[0])


@pytest.fixture
def enrolled(softhsm: SoftHsm, tmp_path: Path) -> tuple[str, bytes, Path]:
    """carol's identity token with a key made on it by the enrolment: URI, key, PIN file."""
    uri = identity_token(softhsm, "carol")
    pin_file = tmp_path / "carol.pin"
    pin_file.write_text(PIN + "\n")
    code, out, err = enrol(softhsm, uri, pin_file, "--generate")
    assert code == 0, err
    assert "PIN check: the token signed a test message after the PIN" in out
    key = public_line(out)
    find_token(softhsm.module, uri)  # this process's module sees the new tokens
    return uri, key, pin_file


class Pins:
    """A PIN source that hands out a fresh bytearray each time and keeps it to inspect."""

    def __init__(self, pin: str) -> None:
        self.pin = pin
        self.given: list[bytearray] = []

    def __call__(self) -> bytearray:
        self.given.append(bytearray(self.pin.encode()))
        return self.given[-1]


def test_enrolment_prints_the_key_and_its_signatures_verify(
        softhsm: SoftHsm, enrolled: tuple[str, bytes, Path]) -> None:
    uri, key, pin_file = enrolled
    code, out, _ = enrol(softhsm, uri, pin_file)  # read back, without --generate
    assert code == 0 and public_line(out) == key
    code, _, err = enrol(softhsm, uri, pin_file, "--generate")  # never replaces it
    assert code == Kind.DEVICE.value
    assert err.startswith(f"ceremony: the token {uri} already holds a key labelled 'identity'")

    pins = Pins(PIN)
    signer = TokenSigner("carol", TokenKey(softhsm.module, uri, LABEL), pins, public_key=key)
    assert signer.public_key == st.encode_key(key)
    statement = {"type": "ceremony.approval.v1", "ceremony_id": "sample-root-2026",
                 "step": "provision-root-key", "participant": "carol"}
    message = st.message(statement)
    signature = signer.sign(message)
    assert st.verify_ed25519(key, signature, message)
    assert not st.verify_ed25519(key, signature, message + b" ")
    assert len(pins.given) == 1 and not any(pins.given[0])  # asked once, then wiped


def test_a_token_with_another_key_is_refused_before_the_pin(
        softhsm: SoftHsm, enrolled: tuple[str, bytes, Path]) -> None:
    uri, _, _ = enrolled
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                    PublicFormat.Raw)
    pins = Pins(PIN)
    signer = TokenSigner("alice", TokenKey(softhsm.module, uri, LABEL), pins, public_key=other)
    with pytest.raises(TokenError) as error:
        signer.sign(b"approve")
    assert error.value.message == f"the token {uri} does not hold alice's identity key"
    assert error.value.requirement == "CER-IDENTITY"
    assert "no PIN was asked" in error.value.hint
    assert pins.given == []  # no PIN asked, so no try spent

    missing = TokenSigner("alice", TokenKey(softhsm.module, uri, "nothing"), pins,
                          public_key=other)
    with pytest.raises(TokenError, match="holds no Ed25519 public key named 'nothing'"):
        missing.sign(b"approve")
    assert pins.given == []


def test_a_wrong_pin_is_one_sentence_and_wiped(
        softhsm: SoftHsm, enrolled: tuple[str, bytes, Path]) -> None:
    uri, key, _ = enrolled
    pins = Pins("999999")
    signer = TokenSigner("carol", TokenKey(softhsm.module, uri, LABEL), pins, public_key=key)
    with pytest.raises(TokenError) as error:
        signer.sign(b"approve")
    assert error.value.message == "carol's identity token refused the PIN"
    assert "\n" not in error.value.message and "999999" not in error.value.describe()
    assert len(pins.given) == 1 and not any(pins.given[0])
    # The right PIN still works: the failed login left no session in the way.
    assert st.verify_ed25519(key, TokenSigner("carol", TokenKey(softhsm.module, uri, LABEL),
                                              Pins(PIN), public_key=key).sign(b"m"), b"m")


# ------------------------------------------------------------------ the answers file


def _answers_base(script: Any) -> str:
    return answers_toml(script, simulated_answers(script))


def test_the_answers_file_names_tokens_strictly(tmp_path: Path) -> None:
    template, _ = known_pin_texts()
    script = make_cast(template, SeededRandom("token-participants")).script
    base = _answers_base(script)
    (tmp_path / "a.pin").write_text(PIN)
    module = "/usr/lib/softhsm/libsofthsm2.so"
    whole = "".join(f'{p} = {{ uri = "pkcs11:token={p}-id", key_label = "identity", '
                    f'pin_file = "a.pin" }}\n' for p in ("alice", "bob", "carol", "wendy"))

    def parse(tokens: str) -> Any:
        return parse_answers(base + "\n[tokens]\n" + tokens, "answers.toml", script, tmp_path)

    def refused(tokens: str) -> str:
        with pytest.raises(AnswersError) as error:
            parse(tokens)
        return error.value.message

    alice_line = whole.splitlines()[0] + "\n"
    answers = parse(whole.replace(alice_line, 'alice = { uri = "pkcs11:token=alice-id", '
                                  f'key_label = "identity", key_id = "0a1b", module = '
                                  f'"{module}" }}\n'))
    alice = answers.tokens["alice"]
    assert (alice.uri, alice.key_label, alice.key_id, alice.pin_file, alice.module) == (
        "pkcs11:token=alice-id", "identity", "0a1b", None, module)
    assert answers.tokens["bob"].pin_file == tmp_path / "a.pin" and not answers.identities

    def with_alice(entry: str) -> str:
        return refused(whole.replace(alice_line, f"alice = {{ {entry} }}\n"))

    ok = 'uri = "pkcs11:token=alice-id", key_label = "identity"'
    assert re.search(r"tokens\.alice\.pin: is not a known field",
                     with_alice(ok + ', pin = "246810"'))
    assert re.search(r"tokens\.alice\.uri: 'token=alice' is not a PKCS#11 URI",
                     with_alice('uri = "token=alice", key_label = "identity"'))
    assert re.search(r"tokens\.alice\.uri: is the ceremony's own token",
                     with_alice(f'uri = "{script.token.uri}", key_label = "identity"'))
    assert re.search(r"tokens\.alice\.key_label: this required field is missing",
                     with_alice('uri = "pkcs11:token=alice-id"'))
    assert re.search(r"tokens\.alice\.key_id: 'XY' is not a key id in lowercase hex",
                     with_alice(ok + ', key_id = "XY"'))
    assert re.search(r"tokens\.alice\.pin_file: the file nope\.pin does not exist",
                     with_alice(ok + ', pin_file = "nope.pin"'))
    assert re.search(r"tokens\.alice\.module: the PKCS#11 module /nope\.so does not exist",
                     with_alice(ok + ', module = "/nope.so"'))
    assert re.search(r"tokens\.zed: 'zed' is not a participant",
                     refused(whole + 'zed = { uri = "pkcs11:token=z", key_label = "k" }\n'))
    assert "'bob' has no card under [cards]" in refused(
        "\n".join(line for line in whole.splitlines() if not line.startswith("bob")))
    both = parse_error(base + "\n[cards]\nalice = {}\n\n[tokens]\n" + whole, script, tmp_path)
    assert re.search(r"tokens\.alice: alice has both an identity token here and a card", both)


def parse_error(text: str, script: Any, base: Path) -> str:
    with pytest.raises(AnswersError) as error:
        parse_answers(text, "answers.toml", script, base)
    return error.value.message


def test_a_real_run_takes_identity_tokens_and_refuses_key_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --rehearsal: [identities] is refused (CER-IDENTITY); [tokens] is accepted,
    and the run goes on to the next check (here, the unsigned script)."""
    template, policy_text = known_pin_texts()
    cast = make_cast(template, SeededRandom("token-participants"))
    (tmp_path / "script.toml").write_text(cast.script_text)
    (tmp_path / "policy.toml").write_text(policy_text)
    (tmp_path / "id.pin").write_text(PIN)
    base = _answers_base(cast.script)
    tokens = "".join(f'{p} = {{ uri = "pkcs11:token={p}-id", key_label = "identity", '
                     'pin_file = "id.pin" }\n' for p in ("alice", "bob", "carol", "wendy"))
    (tmp_path / "answers.toml").write_text(base + "\n[tokens]\n" + tokens)
    common = ["run", str(tmp_path / "script.toml"), "--headless", "--out",
              str(tmp_path / "bundle"), "--state", str(tmp_path / "state.json")]
    assert main([*common, "--answers", str(tmp_path / "answers.toml")]) == \
        Kind.CHECK_FAILED.value
    err = capsys.readouterr().err
    assert "CER-IDENTITY" not in err and "[CER-SCRIPT-SIGNED]" in err

    key = tmp_path / "alice.pem"
    key.write_text("not read")
    keys = base.replace("[identities]\n", f'[identities]\nalice = "{key}"\n') + \
        "\n[tokens]\n" + tokens.replace("alice = {", "# alice = {")
    (tmp_path / "keys.toml").write_text(keys)
    assert main([*common, "--answers", str(tmp_path / "keys.toml")]) == Kind.BAD_INPUT.value
    assert capsys.readouterr().err.startswith(
        "ceremony: plain identity key files are allowed only in a rehearsal [CER-IDENTITY]")
    assert not (tmp_path / "bundle").exists()


def test_a_rehearsal_approved_with_an_identity_token_verifies(
        softhsm: SoftHsm, tmp_path: Path) -> None:
    """carol approves the key provisioning with her identity token (the others with
    rehearsal key files), through `ceremony run --headless`; the bundle verifies."""
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, activation="known-pin")
    uri = identity_token(softhsm, "carol")
    pin_file = c.directory / "carol.pin"
    pin_file.write_text(PIN + "\n")
    code, out, err = enrol(softhsm, uri, pin_file, "--generate")
    assert code == 0, err
    key = st.encode_key(public_line(out))
    carol = c.script.participant("carol")
    assert carol is not None
    c.script_path.write_text(c.script_path.read_text().replace(carol.public_key, key))
    c.sign()  # alice and bob authorize the script as it now is
    answers = c.answers_path.read_text()
    carol_file = re.search(r'^carol = ".*"\n', answers, re.M)
    assert carol_file is not None and 'approvals = ["alice", "bob"]' in answers
    answers = answers.replace(carol_file[0], "").replace('approvals = ["alice", "bob"]',
                                                         'approvals = ["alice", "carol"]')
    c.answers_path.write_text(answers + f'\n[tokens]\ncarol = {{ uri = "{uri}", key_label = '
                              f'"{LABEL}", pin_file = "carol.pin", module = '
                              f'"{softhsm.module}" }}\n')
    result = c.run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert PIN not in result.stdout + result.stderr + c.transcript.read_text()
    approvals = [e for e in c.entries() if e["event"] == "approval"]
    assert [e["actor"] for e in approvals] == ["alice", "carol"]
    verified = c.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.softhsm
def test_an_authorizer_signs_the_script_with_their_identity_token(
        softhsm: SoftHsm, tmp_path: Path, enrolled: tuple[str, bytes, Path]) -> None:
    """`ceremony script sign --token`: the key is checked against the script before the
    PIN, and the signature appended to SCRIPT.sigs verifies with the script's key."""
    from ceremony.model.authorization import parse_signatures

    uri, key, pin_file = enrolled
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, activation="known-pin")
    carol = c.script.participant("carol")
    assert carol is not None
    sigs = c.script_path.with_name(c.script_path.name + ".sigs")
    sigs.unlink(missing_ok=True)

    def sign(*extra: str) -> subprocess.CompletedProcess[str]:
        done = run_cli("script", "sign", str(c.script_path), "--as", "carol", "--token", uri,
                       "--module", softhsm.module, "--pin-file", str(pin_file), *extra,
                       env=softhsm.env)
        assert "Traceback" not in done.stderr and PIN not in done.stdout + done.stderr
        return done

    # The script still names carol's old key: refused before any PIN, nothing written.
    refused = sign("--key-label", LABEL)
    assert refused.returncode == Kind.DEVICE.value, refused.stderr
    assert "CER-IDENTITY" in refused.stderr and not sigs.exists()
    assert sign().returncode == Kind.BAD_INPUT.value  # --token without --key-label

    c.script_path.write_text(c.script_path.read_text().replace(
        carol.public_key, st.encode_key(key)))
    done = sign("--key-label", LABEL)
    assert done.returncode == 0, done.stderr
    assert "carol (custodian) signed script sample-root-2026" in done.stdout
    assert "1 signature(s) (carol) of the 2" in " ".join(done.stdout.split())
    [signed] = parse_signatures(sigs.read_bytes(), str(sigs))
    assert signed.participant == "carol"
    assert st.verify_ed25519(key, signed.signature, st.message(signed.statement))
