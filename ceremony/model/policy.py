"""The ceremony policy (policy as code) and the check of a script against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ceremony.canonical import sha256_hex
from ceremony.errors import PolicyFileError
from ceremony.model.attestation import AttestationPolicy, read_attestation
from ceremony.model.lifecycle import Lifecycle, read_lifecycle
from ceremony.model.strict import Fields, Source, read_source

# The script's roles (model/script.py ROLES): the roles [authorization] may name.
ROLES = ("administrator", "custodian", "witness", "auditor")
KEY_KINDS = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096")
ACTIVATION_MODES = ("split", "pin-pad", "known-pin")


@dataclass(frozen=True)
class Authorization:
    """[authorization]: who must sign a script's exact bytes before it runs (ADR 12).

    Authorizers are the script's participants with one of ``roles``; ``signers`` distinct
    ones must sign (`ceremony script sign`) when ``required``. Without the table nothing
    is required (signatures that are there are still checked).
    """

    required: bool = False
    signers: int = 1
    roles: tuple[str, ...] = ("custodian",)

    def record(self) -> dict[str, object]:
        """What the transcript records of this table."""
        return {"required": self.required, "signers": self.signers, "roles": list(self.roles)}


@dataclass(frozen=True)
class Separation:
    """[separation]: which duties one participant may combine (CER-SEPARATION, ADR 12).

    Duties: the administrator (runs the ceremony), a step's approvers, the witnesses, the
    crypto officers of [token.activation], and the holders of the seed's shares ([shares]).
    The defaults (no table) are the strict ones except where earlier versions allowed it.
    """

    administrator_may_approve: bool = False
    administrator_may_hold_share: bool = False
    administrator_may_be_officer: bool = True
    witness_may_hold_share: bool = False
    officer_may_hold_share: bool = True
    max_shares_per_holder: int = 1


SEPARATION_FLAGS = ("administrator_may_approve", "administrator_may_hold_share",
                    "administrator_may_be_officer", "witness_may_hold_share",
                    "officer_may_hold_share")


@dataclass(frozen=True)
class Policy:
    policy_id: str
    version: int
    allowed_keys: tuple[str, ...]
    min_member_threshold: int
    max_member_threshold: int
    min_group_threshold: int
    min_approvals: int
    required_witnesses: int
    rehearsal_allowed: bool
    max_key_lifetime_days: int
    sha256: str
    source_name: str
    # [token]: how a token's PIN may be entered, and the fewest officers a split PIN needs.
    allowed_activation: tuple[str, ...] = ("split", "pin-pad")
    min_officer_threshold: int = 2
    # [attestation]: which environment checks may be waived, by how many approvals.
    attestation: AttestationPolicy = AttestationPolicy()  # noqa: RUF009 (frozen)
    # [authorization] and [separation] (ADR 12): who signs scripts; who may combine duties.
    authorization: Authorization = Authorization()
    separation: Separation = Separation()
    # [seal] witnesses and [deviations] quorum (ADR 15): how many of the script's witnesses
    # co-sign a completed ceremony's seal, and how many custodian approvals a deviation
    # from the script needs before the ceremony goes on (0, without the tables).
    seal_witnesses: int = 0
    deviation_quorum: int = 0
    # [lifecycle] (ADR 14): the key's rotation cadence and its lifecycle events' quorums.
    lifecycle: Lifecycle = Lifecycle()  # noqa: RUF009 (frozen)
    # [entropy] require_dice: every ceremony script must mix custodian dice into its seed.
    require_dice: bool = False


def _authorization(table: Fields) -> Authorization:
    required = table.flag("required")
    signers = table.integer("signers", low=1, high=16)
    roles = tuple(table.str_list("roles", min_len=1, max_len=len(ROLES)))
    for role in roles:
        if role not in ROLES:
            raise table.fail("roles", f"{role!r} is not one of {', '.join(ROLES)}")
    table.done()
    return Authorization(required, signers, roles)


def _separation(table: Fields) -> Separation:
    defaults = Separation()
    flags = {name: table.flag(name, default=getattr(defaults, name))
             for name in SEPARATION_FLAGS}
    most = table.integer("max_shares_per_holder", low=1, high=16,
                         default=defaults.max_shares_per_holder)
    table.done()
    return Separation(**flags, max_shares_per_holder=most)


def _seal_and_deviations(top: Fields) -> tuple[int, int]:
    """[seal] witnesses and [deviations] quorum (ADR 15); 0 and 0 without the tables."""
    witnesses = quorum = 0
    seal = top.table("seal", required=False)
    if seal is not None:
        witnesses = seal.integer("witnesses", low=0, high=16)
        seal.done()
    deviations = top.table("deviations", required=False)
    if deviations is not None:
        quorum = deviations.integer("quorum", low=0, high=16)
        deviations.done()
    return witnesses, quorum


def parse_policy(text: str, name: str) -> Policy:
    """Strictly parse policy TOML; raise PolicyFileError naming file, line and field."""
    top = Source(name, text, PolicyFileError).load()
    policy_id = top.text("policy_id", pattern=r"[a-z0-9][a-z0-9._-]{2,63}",
                        what="a lower-case id of 3 to 64 letters, digits, '.', '_' or '-'")
    version = top.integer("version", low=1, high=2**31)
    allowed = top.str_list("allowed_keys", min_len=1, max_len=len(KEY_KINDS))
    for kind in allowed:
        if kind not in KEY_KINDS:
            raise top.fail("allowed_keys", f"{kind!r} is not one of {', '.join(KEY_KINDS)}")
    shares = top.table("shares")
    assert shares is not None
    min_t = shares.integer("min_member_threshold", low=1, high=16)
    max_t = shares.integer("max_member_threshold", low=1, high=16)
    min_g = shares.integer("min_group_threshold", low=1, high=16)
    if max_t < min_t:
        raise shares.fail("max_member_threshold", "is smaller than min_member_threshold")
    shares.done()
    quorum = top.table("quorum")
    assert quorum is not None
    min_approvals = quorum.integer("min_approvals", low=1, high=16)
    witnesses = quorum.integer("required_witnesses", low=0, high=16)
    quorum.done()
    rehearsal = top.flag("rehearsal_allowed")
    lifetime = top.integer("max_key_lifetime_days", low=1, high=36500)
    activation: tuple[str, ...] = ("split", "pin-pad")
    min_officers = 2
    token = top.table("token", required=False)
    if token is not None:
        activation = tuple(token.str_list("allowed_activation", min_len=1,
                                          max_len=len(ACTIVATION_MODES)))
        for mode in activation:
            if mode not in ACTIVATION_MODES:
                raise token.fail("allowed_activation",
                                 f"{mode!r} is not one of {', '.join(ACTIVATION_MODES)}")
        min_officers = token.integer("min_officer_threshold", low=2, high=16)
        token.done()
    attestation = read_attestation(top.table("attestation", required=False), min_approvals)
    auth = top.table("authorization", required=False)
    authorization = _authorization(auth) if auth is not None else Authorization()
    sep = top.table("separation", required=False)
    separation = _separation(sep) if sep is not None else Separation()
    lifecycle = read_lifecycle(top.table("lifecycle", required=False), min_approvals,
                               lifetime)
    ent = top.table("entropy", required=False)
    require_dice = False
    if ent is not None:
        require_dice = ent.flag("require_dice", default=False)
        ent.done()
    seal_witnesses, deviation_quorum = _seal_and_deviations(top)
    top.done()
    return Policy(policy_id, version, allowed, min_t, max_t, min_g, min_approvals, witnesses,
                  rehearsal, lifetime, sha256_hex(text.encode("utf-8")), name, activation,
                  min_officers, attestation=attestation, authorization=authorization,
                  separation=separation, require_dice=require_dice, lifecycle=lifecycle,
                  seal_witnesses=seal_witnesses, deviation_quorum=deviation_quorum)


def load_policy(path: Path) -> Policy:
    source = read_source(path, PolicyFileError, "policy")
    return parse_policy(source.text, source.name)
