"""The check of a script against its policy, shared by lint, run and the verifier."""

from __future__ import annotations

from collections.abc import Callable

from ceremony.errors import PolicyViolation
from ceremony.model.policy import Policy
from ceremony.model.script import Script
from ceremony.model.strict import Locator, format_path


def check_policy(script: Script, policy: Policy, *, rehearsal: bool,
                 script_text: str | None = None) -> list[PolicyViolation]:
    """Every way ``script`` breaks ``policy``, in script order; empty when it complies."""
    where = Locator(script_text) if script_text is not None else None
    out: list[PolicyViolation] = []

    def fail(path: tuple[str | int, ...], message: str, requirement: str, hint: str) -> None:
        line = where.line(path) if where else None
        loc = f"{script.source_name}:{line}" if line else script.source_name
        out.append(PolicyViolation(f"{loc}: {format_path(path)}: {message}", hint=hint,
                                   requirement=requirement))

    if script.policy_sha256 is not None and script.policy_sha256 != policy.sha256:
        fail(("policy", "sha256"), f"does not match the policy file {policy.source_name} "
             f"(its SHA-256 is {policy.sha256})", "CER-POLICY-PIN",
             "review the policy change, then update policy.sha256 in the script")
    if script.root_key.kind not in policy.allowed_keys:
        fail(("root_key", "algorithm"), f"a {script.root_key.kind} root key is not allowed by "
             f"policy {policy.policy_id!r}", "CER-POLICY-KEY",
             f"use one of: {', '.join(policy.allowed_keys)}")
    if script.root_key.lifetime_days > policy.max_key_lifetime_days:
        fail(("root_key", "lifetime_days"), f"{script.root_key.lifetime_days} days is longer "
             f"than the policy's maximum of {policy.max_key_lifetime_days}",
             "CER-POLICY-LIFETIME", "shorten the key lifetime")
    _check_certificate_validity(script, policy, fail)
    activation = script.token.activation
    if activation.mode not in policy.allowed_activation:
        fail(("token", "activation", "mode"),
             f"{activation.mode} activation of the token is not allowed by policy "
             f"{policy.policy_id!r}", "CER-ACTIVATION",
             f"use one of: {', '.join(policy.allowed_activation)} "
             "([token.activation] in the script)")
    elif activation.mode == "split" and activation.threshold < policy.min_officer_threshold:
        fail(("token", "activation", "threshold"), f"{activation.threshold} is below the "
             f"policy's minimum of {policy.min_officer_threshold} officers", "CER-ACTIVATION",
             "raise the threshold or name more officers")
    if script.shares.group_threshold < policy.min_group_threshold:
        fail(("shares", "group_threshold"), f"{script.shares.group_threshold} is below the "
             f"policy's minimum of {policy.min_group_threshold}", "CER-POLICY-THRESHOLD",
             "raise the group threshold or add groups")
    for i, group in enumerate(script.shares.groups):
        if not policy.min_member_threshold <= group.threshold <= policy.max_member_threshold:
            fail(("shares", "groups", i, "threshold"), f"{group.threshold} is outside the "
                 f"policy's range {policy.min_member_threshold} to "
                 f"{policy.max_member_threshold}", "CER-POLICY-THRESHOLD",
                 "change the group's threshold")
    for i, step in enumerate(script.steps):
        if not step.sensitive:
            continue
        if step.approvals < policy.min_approvals:
            fail(("steps", i, "approvals"), f"step {step.id!r} needs at least "
                 f"{policy.min_approvals} custodian approvals by policy, not {step.approvals}",
                 "CER-QUORUM", "raise approvals for this step")
        if step.witnesses < policy.required_witnesses:
            fail(("steps", i, "witnesses"), f"step {step.id!r} needs at least "
                 f"{policy.required_witnesses} witnesses by policy, not {step.witnesses}",
                 "CER-WITNESS", "raise witnesses for this step")
        if not step.confirm:
            fail(("steps", i, "confirm"), f"step {step.id!r} is sensitive and needs a typed "
                 "confirmation phrase", "CER-CONFIRM", "add confirm = \"...\" to the step")
    if policy.require_dice and script.recovery is None and not script.entropy.dice_rolls:
        fail(("entropy", "dice_rolls"), f"policy {policy.policy_id!r} requires custodian dice "
             "in the seed, and the script asks for none", "CER-DICE",
             "add [entropy] with dice_rolls (50 or more) and dice_roller")
    _check_seal_and_deviations(script, policy, fail)
    _check_separation(script, policy, fail)
    _check_authorizers(script, policy, fail)
    if rehearsal and not policy.rehearsal_allowed:
        fail(("policy", "path"), f"policy {policy.policy_id!r} does not allow rehearsals",
             "CER-REHEARSAL", "rehearse with a policy that allows it")
    return out


Fail = Callable[[tuple[str | int, ...], str, str, str], None]


def _check_seal_and_deviations(script: Script, policy: Policy, fail: Fail) -> None:
    """[seal] witnesses and [deviations] quorum need enough witnesses and custodians."""
    witnesses = len(script.with_role("witness"))
    if policy.seal_witnesses > witnesses:
        fail(("participants",), f"policy {policy.policy_id!r} needs {policy.seal_witnesses} "
             f"witnesses to co-sign the seal, but the script names {witnesses}",
             "CER-SEAL-WITNESS", "add witnesses to the script, or lower [seal] witnesses "
             "in the policy")
    custodians = len(script.with_role("custodian"))
    if policy.deviation_quorum > custodians:
        fail(("participants",), f"policy {policy.policy_id!r} needs {policy.deviation_quorum} "
             f"custodian approvals for a deviation, but the script names {custodians} "
             "custodians", "CER-DEVIATION", "add custodians to the script, or lower "
             "[deviations] quorum in the policy")


def _check_separation(script: Script, policy: Policy, fail: Fail) -> None:
    """The policy's conflict matrix ([separation]): who may combine which duties.

    Duties: the administrator, the approvers of each step, the witnesses, the crypto
    officers of [token.activation] and the holders of the seed's shares ([shares]).
    """
    sep, pid = policy.separation, policy.policy_id

    def conflict(path: tuple[str | int, ...], message: str, rule: str) -> None:
        value = getattr(sep, rule)
        setting = str(value).lower() if isinstance(value, bool) else str(value)
        fail(path, f"{message}, which policy {pid!r} forbids ([separation] {rule} = "
             f"{setting})", "CER-SEPARATION", "give the duty to someone else, or change "
             "the policy's [separation] after review")

    role = {p.id: p.role for p in script.participants}
    officers = script.token.activation.officers
    if not sep.administrator_may_be_officer:
        for i, officer in enumerate(officers):
            if role[officer] == "administrator":
                conflict(("token", "activation", "officers", i), f"{officer!r} is the "
                         "administrator and holds a PIN share of the token",
                         "administrator_may_be_officer")
    held: dict[str, list[int]] = {}
    for g, group in enumerate(script.shares.groups):
        for member in group.members:
            held.setdefault(member, []).append(g)
            where = ("shares", "groups", g, "members")
            if role[member] == "administrator" and not sep.administrator_may_hold_share:
                conflict(where, f"{member!r} is the administrator and holds a share of the "
                         "seed", "administrator_may_hold_share")
            if role[member] == "witness" and not sep.witness_may_hold_share:
                conflict(where, f"{member!r} is a witness and holds a share of the seed",
                         "witness_may_hold_share")
            if member in officers and not sep.officer_may_hold_share:
                conflict(where, f"{member!r} holds a PIN share of the token and a share of "
                         "the seed", "officer_may_hold_share")
    for member, groups in held.items():
        if len(groups) > sep.max_shares_per_holder:
            conflict(("shares", "groups", groups[sep.max_shares_per_holder], "members"),
                     f"{member!r} holds {len(groups)} shares of the seed (groups "
                     f"{', '.join(str(g + 1) for g in groups)}), more than "
                     f"{sep.max_shares_per_holder}", "max_shares_per_holder")
    if not sep.administrator_may_approve:
        for i, step in enumerate(script.steps):
            for who in step.approvers:
                if role[who] == "administrator":
                    conflict(("steps", i, "approvers"), f"{who!r} is the administrator and "
                             f"may approve step {step.id!r}", "administrator_may_approve")


def _check_authorizers(script: Script, policy: Policy, fail: Fail) -> None:
    """A script the policy wants signed must name enough participants who may sign it."""
    auth = policy.authorization
    eligible = [p.id for p in script.participants if p.role in auth.roles]
    if auth.required and len(eligible) < auth.signers:
        fail(("participants",), f"policy {policy.policy_id!r} requires {auth.signers} "
             f"authorizers ({', '.join(auth.roles)}) to sign the script, but it names "
             f"{len(eligible)}", "CER-SCRIPT-SIGNED",
             "add participants with an authorizing role, or review the policy")


def _check_certificate_validity(script: Script, policy: Policy,
                                fail: Callable[[tuple[str | int, ...], str, str, str], None],
                                ) -> None:
    """A root certificate may not outlive its key, nor the policy's maximum key lifetime."""
    spec = script.certificate
    if spec is None:
        return
    where = ("root_key", "certificate", "validity_days")
    if spec.validity_days > script.root_key.lifetime_days:
        fail(where, f"{spec.validity_days} days is longer than the root key's lifetime of "
             f"{script.root_key.lifetime_days} days", "CER-CERT-VALIDITY",
             "shorten the certificate's validity to at most root_key.lifetime_days")
    if spec.validity_days > policy.max_key_lifetime_days:
        fail(where, f"{spec.validity_days} days is longer than the policy's maximum key "
             f"lifetime of {policy.max_key_lifetime_days}", "CER-CERT-VALIDITY",
             "shorten the certificate's validity")
