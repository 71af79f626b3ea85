"""Aborting a real headless ceremony on SoftHSM2: recorded, cleaned up, and still verifiable.

An ``abort = "reason"`` on a step of the answers file makes the headless runner abort at that
step's start. The failing-action case (a token that refuses the import) is in test_engine.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SoftHsm
from tests.test_crash import Ceremony, prepare_ceremony

REASON = "the witness saw the room's network cable plugged in"


def _aborted_run(tmp_path: Path, softhsm: SoftHsm, step: str) -> Ceremony:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, aborts={step: REASON})
    result = c.run()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"aborting before step {step}: {REASON}" in result.stdout
    assert "sealed: outcome aborted" in result.stdout
    return c


def _aborted_entry(c: Ceremony) -> dict[str, object]:
    entries = c.entries()
    events = [e["event"] for e in entries]
    assert events.count("ceremony.aborted") == 1
    assert events[-2:] == ["ceremony.aborted", "seal"]
    assert entries[-1]["payload"]["statement"]["outcome"] == "aborted"
    assert "root_key_signature" not in entries[-1]["payload"]
    aborted: dict[str, object] = entries[-2]["payload"]
    assert aborted["reason"] == REASON
    return aborted


def _assert_nothing_left(c: Ceremony) -> None:
    assert c.softhsm.objects() == []
    assert not c.secret.exists() or list(c.secret.iterdir()) == []
    assert not (c.out / "root-public-key.pem").exists()
    verified = c.verify()
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "outcome aborted" in verified.stdout
    assert "VERIFIED REHEARSAL" in verified.stdout


@pytest.mark.parametrize("step", ["open", "provision-root-key"])
def test_abort_before_provisioning(tmp_path: Path, softhsm: SoftHsm, step: str) -> None:
    c = _aborted_run(tmp_path, softhsm, step)
    aborted = _aborted_entry(c)
    assert aborted["destroyed_objects"] == []
    assert aborted["removed_share_sheets"] == 0
    assert aborted["removed_files"] == []
    assert "action.started" not in c.events()
    assert c.entries()[-2]["step"] == step
    _assert_nothing_left(c)


def test_abort_after_provisioning(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = _aborted_run(tmp_path, softhsm, "close")
    events = c.events()
    assert "action.completed" in events and "shares.created" in events
    aborted = _aborted_entry(c)
    label = c.script.root_key.label
    key_id = c.script.root_key.key_id
    destroyed = aborted["destroyed_objects"]
    assert isinstance(destroyed, list)
    assert sorted(json.dumps(o, sort_keys=True) for o in destroyed) == sorted(
        json.dumps({"label": label, "id": key_id, "class": cls, "key_type": "EC_EDWARDS"},
                   sort_keys=True) for cls in ("private_key", "public_key"))
    assert aborted["removed_share_sheets"] == 3
    assert aborted["removed_files"] == ["root-public-key.pem",
                                        "qr/root-public-key-REHEARSAL-qr-1-of-1.png"]
    assert c.entries()[-2]["step"] == "close"
    assert c.secret.is_dir()
    assert list(c.secret.iterdir()) == []
    _assert_nothing_left(c)


def test_sigkill_after_the_abort_is_sealed_on_resume(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm, aborts={"close": REASON})
    # seq 0..16 provision the key and complete two steps; the abort is seq 17.
    killed = c.run(kill_after=17)
    assert killed.returncode == -9, killed.stderr
    assert c.events()[-1] == "ceremony.aborted"
    assert c.softhsm.objects() != []  # the transcript key is still there to seal with
    resumed = c.run("--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "sealed: outcome aborted" in resumed.stdout
    assert c.events()[-3:] == ["ceremony.aborted", "ceremony.resumed", "seal"]
    aborted = c.entries()[-3]["payload"]
    assert aborted["removed_share_sheets"] == 3
    _assert_nothing_left(c)
