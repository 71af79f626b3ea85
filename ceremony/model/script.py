"""The ceremony script: who is in the room, what key to make, how to share it, which steps."""

from __future__ import annotations

import base64
import binascii
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ceremony.canonical import sha256_hex
from ceremony.errors import ScriptError
from ceremony.model.certificate import CertificateSpec, parse_certificate
from ceremony.model.previous import PreviousKey, read_previous
from ceremony.model.strict import Fields, Source, read_source

ROLES = ("administrator", "custodian", "witness", "auditor")
ALGORITHMS = ("ed25519", "ecdsa", "rsa")
CURVES = ("p256", "p384")
RSA_SIZES = (3072, 4096)
# The ceremony rebuilds the seed from every minimal quorum of shares (CER-SHARES-PROOF); a
# scheme with more quorums than this is refused (about ten seconds of proof here).
MAX_PROOF_QUORUMS = 20000
ACTIONS = ("none", "provision_root_key", "certify_root_key", "recover_root_key")
# How the token's user PIN is entered (docs/hsm-guide.md): "split" random PINs whose SLIP-39
# shares crypto officers hold, the token's own "pin-pad", or a "known-pin" someone types.
ACTIVATION_MODES = ("split", "pin-pad", "known-pin")
# Who may hold a share of the token's PINs (witnesses and auditors only watch).
OFFICER_ROLES = ("administrator", "custodian")
# Who may be named to approve a step, and to hold a share of the seed: the policy's
# [separation] then says which of these combinations it allows (CER-SEPARATION, ADR 12).
APPROVER_ROLES = ("custodian", "administrator")
HOLDER_ROLES = ("custodian", "administrator", "witness")
# Steps whose action creates or exposes key material: the policy's quorum applies to them.
# (Certifying signs with the root key, so it needs the quorum as well; recovering rebuilds
# the root key from the custodians' shares into a new token.)
SENSITIVE_ACTIONS = ("provision_root_key", "certify_root_key", "recover_root_key")
# The actions that put the root key on the token: provisioning, or (in a recovery script,
# one with a [recovery] table) rebuilding it from the shares of an earlier ceremony.
KEY_ACTIONS = ("provision_root_key", "recover_root_key")
# Where a custodian's share can go ([shares.delivery]; default a sheet): a paper share sheet,
# and/or the private data object of their OpenPGP card (docs/card-shares.md).
DELIVERY_PLACES = ("sheet", "card")


def card_delivery(fingerprint: str) -> str:
    """How a share delivered to a card starts its ``delivered_to`` record: the card named by
    its signature key's fingerprint (SHA-256, hex), which must be the holder's identity key."""
    return f"OpenPGP card with key fingerprint {fingerprint}"


# [entropy] dice_rolls: custodian dice mixed into the seed (docs/entropy.md). At log2(6) bits
# per roll the dice alone must carry at least 128 bits: ceil(128 / 2.585) = 50 rolls. At most
# one SP 800-90B adaptive-proportion window (512 samples) is typed.
MIN_DICE_ROLLS = math.ceil(128 / math.log2(6))
MAX_DICE_ROLLS = 512

ID_PATTERN = r"[a-z0-9][a-z0-9._-]{2,63}"
PARTICIPANT_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
STEP_PATTERN = r"[a-z][a-z0-9-]{0,47}"


@dataclass(frozen=True)
class Participant:
    id: str
    name: str
    role: str
    public_key: str  # "ed25519:" + standard base64 of the 32-byte key

    @property
    def public_key_bytes(self) -> bytes:
        return base64.b64decode(self.public_key.split(":", 1)[1])


@dataclass(frozen=True)
class RootKeySpec:
    algorithm: str
    curve: str | None
    size: int | None
    label: str
    key_id: str  # hex CKA_ID
    lifetime_days: int

    @property
    def kind(self) -> str:
        """The policy's name for this key kind: ed25519, ecdsa-p256, rsa-3072 ..."""
        if self.algorithm == "ecdsa":
            return f"ecdsa-{self.curve}"
        if self.algorithm == "rsa":
            return f"rsa-{self.size}"
        return self.algorithm


@dataclass(frozen=True)
class ShareGroup:
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class ShareScheme:
    group_threshold: int
    groups: tuple[ShareGroup, ...]
    # SLIP-39's PBKDF2 work factor: 10000 * 2^e iterations (0 to 15), and whether the share
    # set may later be extended with more shares of the same secret (recorded either way).
    iteration_exponent: int = 1
    extendable: bool = True
    # A SLIP-39 passphrase is typed at the split and at every recovery (never in the script:
    # only whether there is one). A wrong one silently rebuilds another seed.
    passphrase: bool = False
    # [shares.delivery]: where a holder's share goes when not (only) to a sheet, sorted by
    # holder: ("alice", ("card",)) or ("bob", ("card", "sheet")) (docs/card-shares.md).
    delivery: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def delivery_of(self, holder: str) -> tuple[str, ...]:
        """Where ``holder``'s share goes: "sheet" (the default), "card", or both."""
        return dict(self.delivery).get(holder, ("sheet",))

    @property
    def quorums(self) -> int:
        """How many minimal quorums there are: each choice of groups, each threshold of members."""
        return sum(math.prod(math.comb(len(self.groups[g].members), self.groups[g].threshold)
                             for g in chosen)
                   for chosen in itertools.combinations(range(len(self.groups)),
                                                        self.group_threshold))


@dataclass(frozen=True)
class EntropySpec:
    """[entropy]: custodian dice mixed into the seed as a third source (0: no dice)."""

    dice_rolls: int = 0
    dice_roller: str | None = None  # the participant who rolls and types them

    def definition(self) -> dict[str, Any]:
        return {"dice_rolls": self.dice_rolls, "dice_roller": self.dice_roller}


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    instructions: str
    action: str
    approvals: int
    approvers: tuple[str, ...]
    witnesses: int
    confirm: str | None

    @property
    def sensitive(self) -> bool:
        return self.action in SENSITIVE_ACTIONS


@dataclass(frozen=True)
class Activation:
    """[token.activation]: how the token is logged in to (absent: a known PIN)."""

    mode: str = "known-pin"
    officers: tuple[str, ...] = ()  # split: officer i holds member share i of each PIN
    threshold: int = 0  # split: how many officers must present their PIN shares

    def record(self, presented: tuple[str, ...] = ()) -> dict[str, Any]:
        """What the transcript records of a login: the mode and who presented shares."""
        if self.mode != "split":
            return {"mode": self.mode}
        return {"mode": "split", "officers": list(self.officers), "threshold": self.threshold,
                "presented": sorted(presented)}

    def problem(self, record: object) -> str | None:
        """Why ``record`` (how the token was logged in) falls short of this activation."""
        if not isinstance(record, dict) or not isinstance(record.get("mode"), str):
            return "the token's login is not recorded"
        if record["mode"] != self.mode:
            return (f"the token was logged in by {record['mode']} activation, but the script "
                    f"requires {self.mode}")
        if self.mode != "split":
            return None
        presented = record.get("presented")
        if not isinstance(presented, list) or not all(isinstance(p, str) for p in presented):
            return "the officers who presented PIN shares are not recorded"
        if (record.get("officers"), record.get("threshold")) != (list(self.officers),
                                                                 self.threshold):
            return "the recorded officers and threshold are not the script's"
        strangers = [p for p in presented if p not in self.officers]
        if strangers:
            return f"{', '.join(strangers)} presented a PIN share but is not an officer"
        if len(set(presented)) < self.threshold:
            return (f"{len(set(presented))} officer(s) presented PIN shares; the script "
                    f"requires {self.threshold}")
        return None


@dataclass(frozen=True)
class TokenSpec:
    module: str | None
    uri: str | None
    serial: str | None = None  # when set, any other token is refused before anything is written
    model: str | None = None
    activation: Activation = Activation()


@dataclass(frozen=True)
class RecoverySpec:
    """[recovery]: the earlier ceremony whose root key a recovery script rebuilds.

    ``transcript_head`` is that ceremony's transcript head (the SHA-256 of its seal line,
    which ``ceremony verify`` prints) and ``root_fingerprint`` its root key's fingerprint:
    a recovery approved under this script can only rebuild exactly that key.
    """

    ceremony: str
    transcript_head: str
    root_fingerprint: str

    def definition(self) -> dict[str, str]:
        return {"ceremony": self.ceremony, "transcript_head": self.transcript_head,
                "root_fingerprint": self.root_fingerprint}


@dataclass(frozen=True)
class Script:
    ceremony_id: str
    version: int
    title: str
    policy_path: str
    policy_sha256: str | None
    token: TokenSpec
    participants: tuple[Participant, ...]
    root_key: RootKeySpec
    shares: ShareScheme
    steps: tuple[Step, ...]
    sha256: str
    source_name: str
    # [root_key.certificate]: what a certify_root_key step makes (None: no such step).
    certificate: CertificateSpec | None = None
    # [recovery]: the original ceremony a recover_root_key step rebuilds the key of.
    recovery: RecoverySpec | None = None
    # [entropy]: custodian dice for the seed (none by default).
    entropy: EntropySpec = EntropySpec()
    # [previous]: the root key this script's new key replaces (rotation, compromise).
    previous: PreviousKey | None = None

    @property
    def key_action(self) -> str:
        """The action that puts the root key on the token in this script."""
        return "recover_root_key" if self.recovery is not None else "provision_root_key"

    def participant(self, pid: str) -> Participant | None:
        return next((p for p in self.participants if p.id == pid), None)

    def with_role(self, role: str) -> tuple[Participant, ...]:
        return tuple(p for p in self.participants if p.role == role)

    def step(self, sid: str) -> Step | None:
        return next((s for s in self.steps if s.id == sid), None)

    def step_definition(self, step: Step) -> dict[str, Any]:
        """The public description of a step that approvals bind to (through its digest)."""
        out: dict[str, Any] = {
            "id": step.id, "title": step.title, "instructions": step.instructions,
            "action": step.action, "approvals": step.approvals,
            "approvers": list(step.approvers), "witnesses": step.witnesses,
            "confirm": step.confirm,
        }
        if step.action in KEY_ACTIONS:
            rk = self.root_key
            out["root_key"] = {"kind": rk.kind, "label": rk.label, "id": rk.key_id,
                               "lifetime_days": rk.lifetime_days}
            out["shares"] = {"group_threshold": self.shares.group_threshold,
                             "groups": [{"threshold": g.threshold, "members": list(g.members)}
                                        for g in self.shares.groups]}
            # Only when used, so that the digests of scripts without them stay as they were.
            if self.shares.passphrase:
                out["shares"]["passphrase"] = True
            if step.action == "provision_root_key" and self.shares.delivery:
                out["shares"]["delivery"] = {h: list(p) for h, p in self.shares.delivery}
            if step.action == "provision_root_key" and self.entropy.dice_rolls:
                out["entropy"] = self.entropy.definition()
        if step.action == "recover_root_key" and self.recovery is not None:
            out["recovery"] = self.recovery.definition()
        if step.action == "certify_root_key" and self.certificate is not None:
            out.update(_certify_definition(self))
        return out


def _certify_definition(script: Script) -> dict[str, Any]:
    """What a certify_root_key step's digest adds: the key it certifies and the spec."""
    rk, spec = script.root_key, script.certificate
    assert spec is not None
    return {"root_key": {"kind": rk.kind, "label": rk.label, "id": rk.key_id,
                         "lifetime_days": rk.lifetime_days},
            "certificate": spec.definition()}


def _activation(act: Fields) -> Activation:
    mode = act.choice("mode", ACTIVATION_MODES)
    if mode != "split":
        for name in ("officers", "threshold"):
            if name in act.data:
                raise act.fail(name, f"applies only to split activation, not {mode}",
                               hint="remove it, or set mode = \"split\"")
        act.done()
        return Activation(mode)
    officers = tuple(act.str_list("officers", min_len=2, max_len=16))
    if len(set(officers)) != len(officers):
        raise act.fail("officers", "names an officer twice",
                       hint="each officer holds one share of each PIN")
    threshold = act.integer("threshold", low=2, high=16)
    if threshold > len(officers):
        raise act.fail("threshold", f"{threshold} is more than the {len(officers)} officers",
                       hint="lower the threshold or name more officers")
    act.done()
    return Activation(mode, officers, threshold)


def article(role: str) -> str:
    """'an auditor', 'a custodian': the role with its indefinite article, for messages."""
    return f"an {role}" if role[:1] in "aeiou" else f"a {role}"


def _public_key(f: Fields, name: str) -> str:
    value: str = f.text(name, max_len=120)
    prefix, _, b64 = value.partition(":")
    if prefix != "ed25519":
        raise f.fail(name, "must start with 'ed25519:' (the only identity key type so far)")
    try:
        raw = base64.b64decode(b64, validate=True)
    except binascii.Error:
        raise f.fail(name, "is not valid base64 after 'ed25519:'") from None
    if len(raw) != 32:
        raise f.fail(name, f"must hold 32 bytes of Ed25519 public key, not {len(raw)}")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise f.fail(name, "is not a valid Ed25519 public key") from None
    return value


def parse_script(text: str, name: str) -> Script:
    """Strictly parse script TOML; raise ScriptError naming file, line and field."""
    top = Source(name, text, ScriptError).load()
    ceremony_id = top.text("ceremony_id", pattern=ID_PATTERN,
                          what="a lower-case id of 3 to 64 letters, digits, '.', '_' or '-'")
    version = top.integer("version", low=1, high=2**31)
    title = top.text("title", max_len=200)

    pol = top.table("policy")
    assert pol is not None
    policy_path = pol.text("path", max_len=400)
    policy_sha = pol.text("sha256", required=False, pattern=r"[0-9a-f]{64}",
                         what="64 lower-case hex digits")
    pol.done()

    tok = top.table("token", required=False)
    token = TokenSpec(None, None)
    if tok is not None:
        module = tok.text("module", required=False, max_len=400)
        uri = tok.text("uri", required=False, pattern=r"pkcs11:.*", max_len=400,
                      what="a PKCS#11 URI (RFC 7512) starting with 'pkcs11:'")
        serial = tok.text("serial", required=False, pattern=r"[ -~]{1,16}", max_len=16,
                          what="a token serial number (1 to 16 printable characters)")
        model = tok.text("model", required=False, pattern=r"[ -~]{1,16}", max_len=16,
                         what="a token model (1 to 16 printable characters)")
        act = tok.table("activation", required=False)
        tok.done()
        token = TokenSpec(module, uri, serial, model,
                          _activation(act) if act is not None else Activation())

    participants: list[Participant] = []
    seen_keys: dict[str, str] = {}
    for i, p in enumerate(top.tables("participants", min_len=1, max_len=64)):
        pid = p.text("id", pattern=PARTICIPANT_PATTERN,
                    what="a lower-case name of up to 32 letters, digits, '_' or '-'")
        if any(q.id == pid for q in participants):
            raise p.fail("id", f"participant {pid!r} is listed twice")
        pname = p.text("name", max_len=100)
        role = p.choice("role", ROLES)
        key = _public_key(p, "public_key")
        if key in seen_keys:
            raise p.fail("public_key", f"is the same key as participant {seen_keys[key]!r}",
                         hint="every participant needs an identity key of their own")
        seen_keys[key] = pid
        p.done()
        participants.append(Participant(pid, pname, role, key))
        del i
    by_id = {p.id: p for p in participants}
    for i, officer in enumerate(token.activation.officers):
        if officer not in by_id:
            raise top.source.fail(("token", "activation", "officers", i),
                                  f"{officer!r} is not a participant of the script")
        if by_id[officer].role not in OFFICER_ROLES:
            raise top.source.fail(("token", "activation", "officers", i),
                                  f"{officer!r} is {article(by_id[officer].role)}; only an "
                                  "administrator or a custodian may hold a PIN share")
    custodians = [p.id for p in participants if p.role == "custodian"]
    witnesses = [p.id for p in participants if p.role == "witness"]
    if not any(p.role == "administrator" for p in participants):
        raise top.fail("participants", "names no administrator",
                       hint="add a participant with role = \"administrator\"")
    if not custodians:
        raise top.fail("participants", "names no custodian",
                       hint="add participants with role = \"custodian\"")

    rk = top.table("root_key")
    assert rk is not None
    algorithm = rk.choice("algorithm", ALGORITHMS)
    curve = size = None
    if algorithm == "ecdsa":
        curve = rk.choice("curve", CURVES)
    if algorithm == "rsa":
        size = rk.integer("size", low=2048, high=8192)
        if size not in RSA_SIZES:
            raise rk.fail("size", f"{size} is not one of {', '.join(map(str, RSA_SIZES))}")
    for option, applies_to in (("curve", "ecdsa"), ("size", "rsa")):
        if option in rk.data and algorithm != applies_to:
            raise rk.fail(option, f"does not apply to {algorithm} keys (only to {applies_to})",
                          hint=f"remove {option}, or change the algorithm")
    label = rk.text("label", pattern=r"[ -~]{1,64}", max_len=64,
                   what="1 to 64 printable ASCII characters")
    key_id = rk.text("id", pattern=r"(?:[0-9a-f]{2}){1,32}", max_len=64,
                    what="1 to 32 bytes in lower-case hex")
    lifetime = rk.integer("lifetime_days", low=1, high=36500)
    cert_table = rk.table("certificate", required=False)
    certificate = parse_certificate(cert_table) if cert_table is not None else None
    rk.done()
    root_key = RootKeySpec(algorithm, curve, size, label, key_id, lifetime)

    sh = top.table("shares")
    assert sh is not None
    groups: list[ShareGroup] = []
    group_tables = sh.tables("groups", min_len=1, max_len=16)
    for g in group_tables:
        members = g.str_list("members", min_len=1, max_len=16)
        for m in members:
            if m not in by_id:
                raise g.fail("members", f"{m!r} is not a participant of this script")
            if by_id[m].role not in HOLDER_ROLES:
                raise g.fail("members", f"{m!r} is {article(by_id[m].role)}, not a custodian",
                             hint="custodians hold shares (an administrator or a witness "
                                  "only where the policy's [separation] allows it)")
        threshold = g.integer("threshold", low=1, high=16)
        if threshold > len(members):
            raise g.fail("threshold", f"{threshold} is more than the {len(members)} members")
        if threshold == 1 and len(members) > 1:
            raise g.fail("threshold", "a threshold of 1 needs exactly one member (SLIP-39)",
                         hint="raise the threshold or list one member")
        g.done()
        groups.append(ShareGroup(threshold, members))
    group_threshold = sh.integer("group_threshold", low=1, high=16)
    if group_threshold > len(groups):
        raise sh.fail("group_threshold", f"{group_threshold} is more than the {len(groups)} groups")
    exponent = sh.integer("iteration_exponent", low=0, high=15, required=False)
    extendable = sh.flag("extendable", default=True)
    passphrase = sh.flag("passphrase", default=False)
    dt = sh.table("delivery", required=False)
    delivery = _delivery(dt, groups) if dt is not None else ()
    sh.done()
    shares = ShareScheme(group_threshold, tuple(groups),
                         1 if exponent is None else exponent, extendable, passphrase, delivery)
    if shares.quorums > MAX_PROOF_QUORUMS:
        raise sh.fail("groups", f"this scheme has {shares.quorums} minimal quorums; the "
                      f"ceremony proves every one, and at most {MAX_PROOF_QUORUMS} can be proven",
                      hint="use smaller groups or lower thresholds")

    steps: list[Step] = []
    for s in top.tables("steps", min_len=1, max_len=200):
        sid = s.text("id", pattern=STEP_PATTERN,
                    what="a lower-case step id of letters, digits and '-'")
        if any(x.id == sid for x in steps):
            raise s.fail("id", f"step {sid!r} is listed twice")
        stitle = s.text("title", max_len=120)
        instructions = s.text("instructions", max_len=4000)
        action = s.choice("action", ACTIONS, default="none")
        approvers = s.str_list("approvers", required=False, min_len=1, max_len=64,
                               default=tuple(custodians))
        for a in approvers:
            if a not in by_id:
                raise s.fail("approvers", f"{a!r} is not a participant of this script")
            if by_id[a].role not in APPROVER_ROLES:
                raise s.fail("approvers", f"{a!r} is {article(by_id[a].role)}, not a custodian",
                             hint="custodians approve steps (the administrator only where "
                                  "the policy's [separation] allows it)")
        approvals = s.integer("approvals", low=0, high=64, default=0)
        if approvals > len(approvers):
            raise s.fail("approvals", f"{approvals} approvals cannot come from "
                                      f"{len(approvers)} approvers")
        n_witnesses = s.integer("witnesses", low=0, high=64, default=0)
        if n_witnesses > len(witnesses):
            raise s.fail("witnesses", f"{n_witnesses} witnesses are needed but the script "
                                      f"names {len(witnesses)}")
        confirm = s.text("confirm", required=False, pattern=r"[A-Z0-9 -]{3,64}", max_len=64,
                        what="3 to 64 upper-case letters, digits, spaces or '-'")
        s.done()
        steps.append(Step(sid, stitle, instructions, action, approvals, approvers,
                          n_witnesses, confirm))
    ent = top.table("entropy", required=False)
    entropy = _entropy(ent, by_id) if ent is not None else EntropySpec()
    rec = top.table("recovery", required=False)
    recovery = _recovery(rec, ceremony_id) if rec is not None else None
    prev = top.table("previous", required=False)
    previous = read_previous(prev, ceremony_id, ID_PATTERN) if prev is not None else None
    if previous is not None and recovery is not None:
        raise top.fail("previous", "a recovery rebuilds its original's key; it replaces "
                       "no other key", hint="remove [previous] from the recovery script")
    if recovery is not None and entropy.dice_rolls:
        raise top.fail("entropy", "a recovery rebuilds the original's seed from its shares; "
                       "it makes no new seed, so it takes no dice",
                       hint="remove [entropy] from the recovery script")
    key_steps = _check_key_steps(top, steps, recovery is not None)
    _check_certify_steps(top, steps, key_steps, certificate is not None)
    top.done()
    return Script(ceremony_id, version, title, policy_path, policy_sha, token,
                  tuple(participants), root_key, shares, tuple(steps),
                  sha256_hex(text.encode("utf-8")), name, certificate, recovery, entropy,
                  previous)


def _entropy(ent: Fields, by_id: dict[str, Participant]) -> EntropySpec:
    """[entropy]: how many dice rolls go into the seed, and who rolls them."""
    rolls = ent.integer("dice_rolls", low=0, high=MAX_DICE_ROLLS)
    if 0 < rolls < MIN_DICE_ROLLS:
        raise ent.fail("dice_rolls", f"{rolls} rolls carry {rolls * math.log2(6):.0f} bits; "
                       f"at least {MIN_DICE_ROLLS} are needed for the dice alone to carry "
                       "128 bits (log2(6) = 2.585 bits per roll)",
                       hint=f"set dice_rolls to {MIN_DICE_ROLLS} or more, or 0 for no dice")
    roller = ent.text("dice_roller", required=rolls > 0, pattern=PARTICIPANT_PATTERN,
                      what="the id of the participant who rolls the dice")
    if roller is not None and roller not in by_id:
        raise ent.fail("dice_roller", f"{roller!r} is not a participant of this script")
    if roller is not None and not rolls:
        raise ent.fail("dice_roller", "names a roller, but dice_rolls is 0",
                       hint="set dice_rolls, or remove dice_roller")
    ent.done()
    return EntropySpec(rolls, roller)


def _delivery(dt: Fields, groups: list[ShareGroup]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """[shares.delivery]: holder = ["card"], ["sheet"] or both (CER-SHARE-CARD)."""
    holders = [m for g in groups for m in g.members]
    out: list[tuple[str, tuple[str, ...]]] = []
    for key in sorted(dt.data):
        if key not in holders:
            raise dt.fail(key, f"{key!r} holds no share in [[shares.groups]]",
                          hint=f"the holders are {', '.join(holders)}")
        places = dt.str_list(key, min_len=1, max_len=2)
        for place in places:
            if place not in DELIVERY_PLACES:
                raise dt.fail(key, f"{place!r} is not a place a share can go",
                              hint="use \"card\" (the custodian's OpenPGP card), \"sheet\" "
                                   "(a paper share sheet), or both")
        out.append((key, tuple(sorted(places))))
    dt.done()
    return tuple(out)


def _recovery(rec: Fields, ceremony_id: str) -> RecoverySpec:
    """[recovery]: which ceremony's root key this recovery script rebuilds."""
    original = rec.text("ceremony", pattern=ID_PATTERN, what="the original ceremony's id")
    if original == ceremony_id:
        raise rec.fail("ceremony", "is this script's own ceremony_id; a recovery is a new "
                       "ceremony with an id of its own", hint="give the recovery a new "
                       "ceremony_id, and name the original ceremony here")
    hexdigest = r"[0-9a-f]{64}"
    head = rec.text("transcript_head", pattern=hexdigest, what="64 lower-case hex digits "
                    "(the original's transcript head, as `ceremony verify` prints it)")
    fingerprint = rec.text("root_fingerprint", pattern=hexdigest, what="64 lower-case hex "
                           "digits (the original's root key fingerprint)")
    rec.done()
    return RecoverySpec(original, head, fingerprint)


def _check_key_steps(top: Fields, steps: list[Step], recovery: bool) -> int:
    """Exactly one step puts the root key on the token: provisioning it, or, in a
    recovery script, rebuilding it; the other action may not appear. Its index."""
    wanted = "recover_root_key" if recovery else "provision_root_key"
    other = "provision_root_key" if recovery else "recover_root_key"
    found = [i for i, s in enumerate(steps) if s.action == wanted]
    for i, s in enumerate(steps):
        if s.action == other:
            why = ("a recovery script rebuilds the root key of the ceremony its [recovery] "
                   "table names; it does not provision a new one") if recovery else (
                   "recover_root_key needs a [recovery] table naming the ceremony whose "
                   "root key it rebuilds")
            raise top.source.fail(("steps", i, "action"), why,
                                  hint="see docs/recovery-guide.md")
    if len(found) != 1:
        raise top.fail("steps", f"must have exactly one step with action = "
                                f"\"{wanted}\", not {len(found)}")
    return found[0]


def _check_certify_steps(top: Fields, steps: list[Step], provision: int,
                         has_spec: bool) -> None:
    """At most one certify_root_key step, after the root key exists, and only with a spec."""
    certify = [i for i, s in enumerate(steps) if s.action == "certify_root_key"]
    if len(certify) > 1:
        raise top.source.fail(("steps", certify[1], "action"), "must be the only step with "
                              f"action = \"certify_root_key\" (there are {len(certify)})")
    if certify and certify[0] < provision:
        raise top.source.fail(("steps", certify[0], "action"), "the root key is certified "
                              "before it exists: this step comes before the "
                              f"{steps[provision].action} step", hint="move the step after "
                              f"{steps[provision].id!r}")
    if certify and not has_spec:
        raise top.source.fail(("steps", certify[0], "action"), "certify_root_key needs a "
                              "[root_key.certificate] table saying what to make",
                              hint="add [root_key.certificate] (see docs/hsm-guide.md)")
    if has_spec and not certify:
        raise top.source.fail(("root_key", "certificate"), "no step has action = "
                              "\"certify_root_key\", so nothing would use this table",
                              hint="add a certify_root_key step after provisioning, or "
                                   "remove the table")


def load_script(path: Path) -> Script:
    source = read_source(path, ScriptError, "script")
    return parse_script(source.text, source.name)
