"""The script may pin the token's serial and model: any other token is refused untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.engine.core import Devices, Engine
from ceremony.errors import TokenError
from ceremony.model.policy import parse_policy
from ceremony.model.script import parse_script
from ceremony.rehearsal import Cast
from tests.conftest import SoftHsm
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation
from tests.test_crash import prepare_ceremony

URI_LINE = 'uri = "pkcs11:token=ceremony-root"\n'


def _pinned(text: str, **pins: str) -> str:
    lines = "".join(f'{name} = "{value}"\n' for name, value in pins.items())
    assert URI_LINE in text
    return text.replace(URI_LINE, URI_LINE + lines)


def test_pins_parse(cast: Cast) -> None:
    script = parse_script(_pinned(cast.script_text, serial="0123456789abcdef",
                                  model="SoftHSM v2"), "script.toml")
    assert (script.token.serial, script.token.model) == ("0123456789abcdef", "SoftHSM v2")


@pytest.mark.parametrize("pins", [{"serial": "not-this-one"}, {"model": "Luna K7"}])
def test_engine_refuses_another_token_before_writing(tmp_path: Path, cast: Cast,
                                                     policy_text: str,
                                                     pins: dict[str, str]) -> None:
    text = _pinned(cast.script_text, **pins)
    script = parse_script(text, "script.toml")
    token = FakeToken(SeededRandom("token"))
    devices = Devices(TickingClock(), SeededRandom("os"), token,
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    bundle = tmp_path / "bundle"
    with pytest.raises(TokenError) as info:
        Engine.start(script, parse_policy(policy_text, "policy.toml"), text.encode(),
                     policy_text.encode(), devices, bundle, rehearsal=True,
                     attestation=passing_attestation(True))
    assert info.value.requirement == "CER-TOKEN-PIN"
    assert "nothing was written" in info.value.message
    assert not bundle.exists()
    assert token.keys == {}


def test_the_pinned_token_is_accepted(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "c", softhsm)
    serial = _token_serial(softhsm)
    c.script_path.write_text(_pinned(c.script_path.read_text(), serial=serial,
                                     model="SoftHSM v2"))
    c.sign()  # (the authorizers sign the pinned script)
    result = c.run()
    assert result.returncode == 0, result.stderr
    assert c.verify().returncode == 0


def test_wrong_serial_is_refused_with_nothing_written(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "c", softhsm)
    c.script_path.write_text(_pinned(c.script_path.read_text(), serial="0000000000000000"))
    c.sign()
    result = c.run()
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("ceremony: the token's serial is ")
    assert "[CER-TOKEN-PIN]" in lines[0]
    assert "Traceback" not in result.stderr
    assert not c.out.exists()
    assert softhsm.objects() == []


def _token_serial(softhsm: SoftHsm) -> str:
    import pkcs11

    lib = pkcs11.lib(softhsm.module)
    lib.reinitialize()
    serial = lib.get_token(token_label=softhsm.label).serial
    return (serial.decode() if isinstance(serial, bytes) else str(serial)).strip()


@pytest.mark.parametrize(("edit", "expected"), [
    (("", ""), ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA"]),
    (('algorithm = "ed25519"', 'algorithm = "ecdsa"\ncurve = "p384"'),
     ["EC_EDWARDS_KEY_PAIR_GEN", "EDDSA", "ECDSA"]),
])
def test_started_entry_records_the_mechanisms_of_the_key_kind(
        tmp_path: Path, cast: Cast, policy_text: str, edit: tuple[str, str],
        expected: list[str]) -> None:
    import json

    text = cast.script_text.replace(*edit) if edit[0] else cast.script_text
    script = parse_script(text, "script.toml")
    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    Engine.start(script, parse_policy(policy_text, "policy.toml"), text.encode(),
                 policy_text.encode(), devices, tmp_path / "bundle", rehearsal=True,
                 attestation=passing_attestation(True))
    first = json.loads((tmp_path / "bundle" / "transcript.jsonl").read_text().splitlines()[0])
    assert first["payload"]["token"]["mechanisms"] == expected
