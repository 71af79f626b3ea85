"""The ceremony policy (policy as code) and the check of a script against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ceremony.canonical import sha256_hex
from ceremony.errors import PolicyFileError
from ceremony.model.strict import Source, read_source

KEY_KINDS = ("ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096")
ACTIVATION_MODES = ("split", "pin-pad", "known-pin")


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
    top.done()
    return Policy(policy_id, version, allowed, min_t, max_t, min_g, min_approvals, witnesses,
                  rehearsal, lifetime, sha256_hex(text.encode("utf-8")), name, activation,
                  min_officers)


def load_policy(path: Path) -> Policy:
    source = read_source(path, PolicyFileError, "policy")
    return parse_policy(source.text, source.name)
