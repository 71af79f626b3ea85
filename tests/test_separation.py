"""Separation of duties: the policy's conflict matrix ([separation], CER-SEPARATION).

Each rule, broken by the sample script with one edit: `ceremony lint` exits 1 naming the
file, line and field with [CER-SEPARATION]; Engine.start refuses before anything is
written; the rule relaxed in the policy lets the same script through (and, for an
administrator who may approve, a whole ceremony runs and verifies with their approval);
and the verifier's policy step catches a bundle whose script breaks the matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ceremony.adapters.slip39 import Slip39Splitter
from ceremony.canonical import sha256_hex
from ceremony.engine.core import Devices, Engine
from ceremony.errors import PolicyViolation
from ceremony.headless import run_headless
from ceremony.model.policy import Separation, parse_policy
from ceremony.model.rules import check_policy
from ceremony.rehearsal import Cast, make_cast, sample_texts, simulated_answers
from ceremony.verify import verify_bundle
from tests.conftest import run_cli
from tests.fakes import FakeToken, MemorySecrets, SeededRandom, TickingClock, passing_attestation

Edit = tuple[str, str]
MEMBERS = 'members = ["alice", "bob", "carol"]'
OFFICERS = 'officers = ["alice", "bob", "carol"]'


@dataclass(frozen=True)
class Rule:
    name: str  # the [separation] setting the script breaks
    script: tuple[Edit, ...]
    policy: tuple[Edit, ...]  # edits that make the sample policy's matrix the one broken
    field: str
    line: str  # the script line the violation is on
    says: str
    relaxed: Edit  # the policy edit that allows it


RULES = [
    Rule("administrator_may_approve",
         (("approvals = 2\n", 'approvers = ["ada", "alice", "bob"]\napprovals = 2\n'),), (),
         "steps[1].approvers", "approvers =", "'ada' is the administrator and may approve step "
         "'provision-root-key', which policy 'sample-root-policy' forbids ([separation] "
         "administrator_may_approve = false)",
         ("administrator_may_approve = false", "administrator_may_approve = true")),
    Rule("administrator_may_hold_share",
         ((MEMBERS, 'members = ["alice", "bob", "carol", "ada"]'),), (),
         "shares.groups[0].members", "members =",
         "'ada' is the administrator and holds a share of the seed",
         ("administrator_may_hold_share = false", "administrator_may_hold_share = true")),
    Rule("administrator_may_be_officer",
         ((OFFICERS, 'officers = ["alice", "bob", "ada"]'),), (),
         "token.activation.officers[2]", "officers =",
         "'ada' is the administrator and holds a PIN share of the token",
         ("administrator_may_be_officer = false", "administrator_may_be_officer = true")),
    Rule("witness_may_hold_share",
         ((MEMBERS, 'members = ["alice", "bob", "carol", "wendy"]'),), (),
         "shares.groups[0].members", "members =",
         "'wendy' is a witness and holds a share of the seed",
         ("witness_may_hold_share = false", "witness_may_hold_share = true")),
    Rule("officer_may_hold_share",
         ((OFFICERS, 'officers = ["ada", "alice"]'),),
         (("officer_may_hold_share = true", "officer_may_hold_share = false"),
          ("administrator_may_be_officer = false", "administrator_may_be_officer = true")),
         "shares.groups[0].members", "members =",
         "'alice' holds a PIN share of the token and a share of the seed",
         ("officer_may_hold_share = false", "officer_may_hold_share = true")),
    Rule("max_shares_per_holder",
         ((MEMBERS + "\n", MEMBERS + '\n\n[[shares.groups]]\nthreshold = 1\n'
                                     'members = ["alice"]\n'),),
         (("min_member_threshold = 2", "min_member_threshold = 1"),),
         "shares.groups[1].members", 'members = ["alice"]',
         "'alice' holds 2 shares of the seed (groups 1, 2), more than 1",
         ("max_shares_per_holder = 1", "max_shares_per_holder = 2")),
]
IDS = [r.name for r in RULES]


def _edit(text: str, edits: tuple[Edit, ...] | list[Edit]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def texts(rule: Rule, relaxed: bool = False) -> tuple[str, str]:
    """The sample script and policy with the rule's edits; the script pins the policy."""
    script, policy = sample_texts()
    old_pin = sha256_hex(policy.encode())
    policy = _edit(policy, [*rule.policy, *([rule.relaxed] if relaxed else [])])
    script = _edit(script, [*rule.script, (old_pin, sha256_hex(policy.encode()))])
    return script, policy


def _devices() -> Devices:
    return Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                   Slip39Splitter(SeededRandom("slip39")), MemorySecrets())


def _cast(script: str) -> Cast:
    return make_cast(script, SeededRandom("participants"))


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_lint_names_the_conflict(rule: Rule, tmp_path: Path) -> None:
    script, policy = texts(rule)
    (tmp_path / "script.toml").write_text(script)
    (tmp_path / "policy.toml").write_text(policy)
    result = run_cli("lint", "script.toml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[-1] == "script.toml: 1 policy violation(s)", result.stderr
    line = next(i for i, text in enumerate(script.splitlines(), 1) if rule.line in text)
    assert lines[0].startswith(f"ceremony: script.toml:{line}: {rule.field}: "), lines[0]
    assert rule.says in lines[0]
    assert lines[0].endswith("[CER-SEPARATION]")
    assert lines[1].startswith("  hint: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_the_engine_refuses_before_anything_is_written(rule: Rule, tmp_path: Path) -> None:
    script, policy_text = texts(rule)
    cast = _cast(script)
    token = FakeToken(SeededRandom("token"))
    devices = _devices()
    devices.token = token
    with pytest.raises(PolicyViolation) as refused:
        Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                     cast.script_text.encode(), policy_text.encode(), devices,
                     tmp_path / "bundle", rehearsal=True,
                     attestation=passing_attestation(True))
    assert refused.value.requirement == "CER-SEPARATION"
    assert rule.says in refused.value.message and f": {rule.field}: " in refused.value.message
    assert not (tmp_path / "bundle").exists()
    assert token.keys == {}


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_a_policy_that_allows_it_lets_it_through(rule: Rule) -> None:
    script, policy_text = texts(rule, relaxed=True)
    cast = _cast(script)
    found = check_policy(cast.script, parse_policy(policy_text, "policy.toml"),
                         rehearsal=False, script_text=cast.script_text)
    assert found == []


def test_an_administrator_allowed_to_approve_approves(tmp_path: Path) -> None:
    """With administrator_may_approve = true, ada approves the provisioning step (the
    answers name her first), the engine accepts her signature and the bundle verifies."""
    script, policy_text = texts(RULES[0], relaxed=True)
    cast = _cast(script)
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(), _devices(),
                          tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    finished = run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                            lambda _: None)
    assert finished.outcome == "completed"
    report = verify_bundle(tmp_path / "bundle")
    assert report.ok, report.first_failure
    assert {"step": "provision-root-key", "participant": "ada", "role": "custodian"}.items() \
        <= next(a for a in report.approvals if a["participant"] == "ada").items()


def test_the_verifier_rechecks_the_matrix(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle made by an engine that skipped the check (patched out here) fails the
    verifier's policy step, naming the conflict."""
    import ceremony.engine.core as core

    script, policy_text = texts(RULES[3])  # wendy, a witness, holds a share
    cast = _cast(script)
    monkeypatch.setattr(core, "check_policy", lambda *a, **k: [])
    engine = Engine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                          cast.script_text.encode(), policy_text.encode(), _devices(),
                          tmp_path / "bundle", rehearsal=True,
                          attestation=passing_attestation(True))
    finished = run_headless(engine, simulated_answers(cast.script), cast.signers,  # type: ignore[arg-type]
                            lambda _: None)
    assert finished.outcome == "completed"
    report = verify_bundle(tmp_path / "bundle")
    failed = report.first_failure
    assert failed is not None and (failed.number, failed.name) == (8, "policy")
    assert failed.requirement == "CER-SEPARATION"
    assert "'wendy' is a witness and holds a share of the seed" in failed.detail


def test_a_policy_without_the_table_keeps_the_strict_defaults() -> None:
    _, policy_text = sample_texts()
    start = policy_text.index("[separation]")
    policy = parse_policy(policy_text[:start], "policy.toml")
    assert policy.separation == Separation()
    assert not policy.separation.administrator_may_approve
    assert not policy.separation.witness_may_hold_share
    assert policy.separation.max_shares_per_holder == 1
    script, _ = texts(RULES[0])
    found = check_policy(_cast(script).script, policy, rehearsal=False)
    assert [v.requirement for v in found if v.requirement != "CER-POLICY-PIN"] == [
        "CER-SEPARATION"]


def test_an_auditor_never_holds_a_share_or_approves() -> None:
    """Auditors come later, from outside: the script grammar refuses them these duties
    (exit 2), whatever the policy says."""
    from ceremony.errors import ScriptError
    from ceremony.model.script import parse_script

    script, _ = sample_texts()
    for edits in ([(MEMBERS, 'members = ["alice", "bob", "oscar"]')],
                  [("approvals = 2\n", 'approvers = ["oscar", "alice"]\napprovals = 2\n')]):
        with pytest.raises(ScriptError, match="'oscar' is an auditor, not a custodian"):
            parse_script(_edit(script, edits), "script.toml")
