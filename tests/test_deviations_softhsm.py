"""A deviation declared and approved, and the seal co-signed, in a real `ceremony run` on
SoftHSM2, killed with SIGKILL right after the deviation and resumed (ADR 15); then
`ceremony verify` passes, and fails naming the entry when a witness's co-signature or a
custodian's approval of the deviation is altered.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ceremony.canonical import canonical_bytes, sha256_hex
from ceremony.model import statements as st
from ceremony.verify import verify_bundle
from tests.conftest import SoftHsm, run_cli
from tests.test_crash import assert_only_root_key, assert_verifies, prepare_ceremony

REASON = "Carol stands in for Bob, who is ill; the script names both as custodians."
DEVIATION = ('deviations = [{ kind = "person-substituted", by = "ada", reason = '
             f'{json.dumps(REASON)} }}]\n')


def rechained(lines: list[dict[str, Any]]) -> bytes:
    """The entries as transcript bytes, each prev the hash of the line before (nothing
    re-signed: the transcript key is gone with the seal)."""
    prev, out = "0" * 64, b""
    for entry in lines:
        line = canonical_bytes({**entry, "prev": prev})
        out += line + b"\n"
        prev = sha256_hex(line)
    return out


def test_deviation_and_witnessed_seal_on_softhsm(tmp_path: Path, softhsm: SoftHsm) -> None:
    c = prepare_ceremony(tmp_path / "ceremony", softhsm)
    # The policy asks for one seal co-signature and two approvals per deviation; the script
    # pins the new policy and is signed again.
    policy = c.directory / "policy.toml"
    old = policy.read_text()
    new = old + "\n[seal]\nwitnesses = 1\n\n[deviations]\nquorum = 2\n"
    policy.write_text(new)
    script = c.script_path.read_text()
    assert sha256_hex(old.encode()) in script
    c.script_path.write_text(script.replace(sha256_hex(old.encode()), sha256_hex(new.encode())))
    c.sign()
    answers = c.answers_path.read_text()
    marker = 'id = "provision-root-key"\n'
    assert marker in answers and "[seal]\nwitnesses = [\"wendy\"]" in answers
    c.answers_path.write_text(answers.replace(marker, marker + DEVIATION))

    # Killed right after the deviation is on disk: it was declared, not yet approved.
    first = c.run(kill_after=6)
    assert first.returncode != 0
    assert [e["event"] for e in c.entries()][5:] == ["step.started", "deviation"]
    resumed = c.run("--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "carol approved the deviation" not in resumed.stdout
    assert "alice approved the deviation (1 of 2)" in resumed.stdout
    assert "wendy co-signed the seal (1 of 1)" in resumed.stdout
    entries = c.entries()
    events = [e["event"] for e in entries]
    # Declared once (the resumed run did not declare it again), approved by two custodians
    # before anything else of the step, and the seal co-signed just before the seal.
    assert events.count("deviation") == 1
    after = events.index("deviation")
    assert events[after + 1:after + 5] == ["ceremony.resumed", "checkpoint",
                                           "deviation.approved", "deviation.approved"]
    assert events[-2:] == ["seal.witnessed", "seal"]
    deviation = entries[after]
    assert (deviation["actor"], deviation["step"], deviation["payload"]) == (
        "ada", "provision-root-key",
        {"kind": "person-substituted", "reason": REASON, "quorum": 2})
    seal = entries[-1]["payload"]["statement"]
    assert seal["witnesses"] == [{"participant": "wendy", "seq": len(entries) - 2}]
    assert_verifies(c)
    assert_only_root_key(c)

    # Altered co-signature, altered deviation approval: verify names that entry.
    original = [json.loads(x) for x in c.transcript.read_text().splitlines()]
    copy = tmp_path / "tampered"
    shutil.copytree(c.out, copy)
    for event, field in (("seal.witnessed", "signature"), ("deviation.approved", "signature"),
                         ("deviation.approved", "reason")):
        lines = json.loads(json.dumps(original))
        target = next(e for e in lines if e["event"] == event)
        if field == "signature":
            raw = bytearray(st.unb64(target["payload"]["signature"]))
            raw[-1] ^= 0x40
            target["payload"]["signature"] = st.b64(bytes(raw))
        else:
            target["payload"]["statement"]["reason"] = "Nobody was substituted."
        (copy / "transcript.jsonl").write_bytes(rechained(lines))
        report = verify_bundle(copy)
        failed = report.first_failure
        assert failed is not None and failed.seq == target["seq"], (event, field, failed)
        assert failed.line == target["seq"] + 1
        assert failed.requirement in ("CER-SEAL-WITNESS", "CER-DEVIATION")
    result = run_cli("verify", str(copy), env=softhsm.env)
    assert result.returncode == 1
    assert f"line {target['seq'] + 1}" in result.stdout + result.stderr
