"""Write the bad-input test vectors under tests/vectors/bad-input/ from the sample files.

Each vector starts from the packaged sample script and policy (what `ceremony sample`
writes) and a well-formed answers file, makes one edit that introduces one fault, and
records what the CLI must say in expect.toml (see tests/test_bad_input.py). The expected
line is found here by searching the edited text for a needle, independently of the
Locator under test. Run from the repository root:

    .venv/bin/python scripts/make_bad_input_vectors.py

It rewrites the whole directory; review the diff before committing.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ceremony.canonical import sha256_hex  # noqa: E402
from ceremony.rehearsal import sample_texts  # noqa: E402

OUT = REPO / "tests" / "vectors" / "bad-input"

# A well-formed answers file for the sample script. The identity key files it names do not
# exist: a malformed answers file must be refused before any of them (or a token) is opened.
ANSWERS = """\
ceremony_id = "sample-root-2026"

[identities]
# REHEARSAL identity keys (plain files are allowed in rehearsals only)
alice = "identities/alice.pem"
bob = "identities/bob.pem"
wendy = "identities/wendy.pem"

[[steps]]
id = "open"
witnesses = ["wendy"]

[[steps]]
id = "provision-root-key"
approvals = ["alice", "bob"]
witnesses = ["wendy"]
confirm = "PROVISION ROOT KEY"

[[steps]]
id = "close"
witnesses = ["wendy"]
"""

WENDY = 'wendy = "identities/wendy.pem"\n'
TOKENS = "\n[tokens]\n"

# The sample script pins the sample policy's SHA-256 on this line.
SHA_LINE = f'sha256 = "{sha256_hex(sample_texts()[1].encode())}"\n'
PROVISION = 'action = "provision_root_key"\n'
# In an edit, this marker becomes one byte that is not valid UTF-8 (Latin-1 "ö").
BAD_BYTE = "<0xF6>"

Edit = tuple[str, str]
Needle = str | tuple[str, int]  # a unique substring (or, with "^", line start), or (it, nth)


@dataclass
class Vector:
    group: str
    name: str
    file: str  # script.toml, policy.toml or answers.toml: the file the fault is in
    edits: list[Edit]
    path: str  # the field path the message must name
    says: str
    line: Needle | None = None
    exit: int = 2
    requirement: str = ""
    unpin: bool = False  # drop the policy pin from the script (the policy is edited)
    extra: dict[str, list[Edit]] = field(default_factory=dict)  # edits to the other files


def _edit(text: str, edits: list[Edit], where: str) -> str:
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"{where}: {old!r} occurs {text.count(old)} times, not once")
        text = text.replace(old, new)
    return text


def _line(text: str, needle: Needle, where: str) -> int:
    sub, nth = (needle, 1) if isinstance(needle, str) else needle
    if sub.startswith("^"):  # anchored: the line starts with the rest
        hits = [i for i, line in enumerate(text.splitlines(), start=1)
                if line.startswith(sub[1:])]
    else:
        hits = [i for i, line in enumerate(text.splitlines(), start=1) if sub in line]
    if isinstance(needle, str) and len(hits) != 1:
        raise SystemExit(f"{where}: line needle {sub!r} matches {len(hits)} lines")
    return hits[nth - 1]


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(vector: Vector, script: str, policy: str) -> None:
    where = f"{vector.group}/{vector.name}"
    texts = {"script.toml": script, "policy.toml": policy}
    if vector.group == "answers":
        texts["answers.toml"] = ANSWERS
    if vector.unpin:
        texts["script.toml"] = _edit(texts["script.toml"], [(SHA_LINE, "")], where)
    texts[vector.file] = _edit(texts[vector.file], vector.edits, where)
    for name, edits in vector.extra.items():
        texts[name] = _edit(texts[name], edits, where)
    directory = OUT / vector.group / vector.name
    directory.mkdir(parents=True)
    for name, text in texts.items():
        raw = text.encode("utf-8").replace(BAD_BYTE.encode(), b"\xf6")
        (directory / name).write_bytes(raw)
    expect = [
        f"# {where}: written by scripts/make_bad_input_vectors.py",
        f'command = "{"run" if vector.group == "answers" else "lint"}"',
        f"exit = {vector.exit}",
        f"file = {_toml_str(vector.file)}",
        f"field = {_toml_str(vector.path)}",
    ]
    if vector.line is not None:
        target = texts[vector.file].replace(BAD_BYTE, "?")
        expect.append(f"line = {_line(target, vector.line, where)}")
    expect.append(f"says = {_toml_str(vector.says)}")
    if vector.requirement:
        expect.append(f"requirement = {_toml_str(vector.requirement)}")
    (directory / "expect.toml").write_text("\n".join(expect) + "\n")


def S(name: str, edits: list[Edit], fld: str, says: str, line: Needle | None = None,
      ) -> Vector:
    return Vector("script", name, "script.toml", edits, fld, says, line)


def P(name: str, edits: list[Edit], fld: str, says: str, line: Needle | None = None,
      ) -> Vector:
    return Vector("policy", name, "policy.toml", edits, fld, says, line, unpin=True)


def A(name: str, edits: list[Edit], fld: str, says: str, line: Needle | None = None,
      ) -> Vector:
    return Vector("answers", name, "answers.toml", edits, fld, says, line)


def V(name: str, file: str, edits: list[Edit], fld: str, requirement: str, says: str,
      line: Needle | None = None, unpin: bool = False, extra: dict[str, list[Edit]] | None = None,
      ) -> Vector:
    return Vector("policy-violation", name, file, edits, fld, says, line, exit=1,
                  requirement=requirement, unpin=unpin, extra=extra or {})


# A [root_key.certificate] table and a certify_root_key step after provisioning.
PROVISION_END = 'confirm = "PROVISION ROOT KEY"\n'
CERTIFY = PROVISION_END + """
[root_key.certificate]
validity_days = 3650
csr = true

[root_key.certificate.subject]
common_name = "Sample Root CA"
country = "DE"

[[steps]]
id = "certify-root-key"
title = "Certify the root key"
instructions = "The root key signs its certificate and CSR."
action = "certify_root_key"
approvals = 2
witnesses = 1
confirm = "CERTIFY ROOT KEY"
"""


def _lifecycle(*lines: str) -> list[Edit]:
    """The sample policy with a [lifecycle] table of these lines at its end."""
    return [("max_shares_per_holder = 1\n",
             "max_shares_per_holder = 1\n\n[lifecycle]\n" + "".join(f"{x}\n" for x in lines))]


def _previous(*lines: str) -> list[Edit]:
    """The sample script with a [previous] table of these lines before [policy]."""
    return [("[policy]\n", "[previous]\n" + "".join(f"{x}\n" for x in lines) + "\n[policy]\n")]


def _certify(*edits: Edit) -> list[Edit]:
    """The sample with a certify step, then ``edits`` (applied to the result)."""
    text = CERTIFY
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"certify edit: {old!r} occurs {text.count(old)} times")
        text = text.replace(old, new)
    return [(PROVISION_END, text)]


ALICE_KEY = "ed25519:3TgAU4GbRe5KFz25uaf4eFO52u9Ls8RuQamR0sg+WVo="
BOB_KEY = "ed25519:FZElGp7Ph99WdvmP8dbjGpGLjA+d+0EEbr8668jYZwo="
MEMBERS = 'members = ["alice", "bob", "carol"]'

# [shares.delivery] after the sample's share group.
DELIVERY = "\n\n[shares.delivery]\n"

VECTORS: list[Vector] = [
    # ---- the script ---------------------------------------------------------------------
    S("toml-missing-value", [("version = 1\n", "version =\n")], "version",
      "not valid TOML", "version ="),
    S("toml-duplicate-key", [("version = 1\n", "version = 1\nversion = 2\n")], "version",
      "not valid TOML", "version = 2"),
    S("toml-unterminated-string",
      [('title = "Sample root key ceremony"', 'title = "Sample root key ceremony')],
      "title", "not valid TOML", "title = \"Sample"),
    S("not-utf8", [("Bob Custodian", f"Bob Cust{BAD_BYTE}dian")], "participants[2].name",
      "not UTF-8", "Bob Cust"),
    S("unknown-top-level-key", [('title = "Sample', 'colour = "blue"\ntitle = "Sample')],
      "colour", "is not a known field", "colour ="),
    S("unknown-step-key", [("approvals = 2\n", "approval = 2\n")], "steps[1].approval",
      "is not a known field", "approval = 2"),
    S("size-on-ed25519-key", [('id = "01"\n', 'id = "01"\nsize = 3072\n')],
      "root_key.size", "does not apply to ed25519 keys", "size = 3072"),
    S("unknown-root-key-field", [('id = "01"\n', 'id = "01"\ncolour = "red"\n')],
      "root_key.colour", "is not a known field", 'colour = "red"'),
    S("missing-title", [('title = "Sample root key ceremony"\n', "")], "title",
      "required field is missing"),
    S("missing-policy-table",
      [('[policy]\npath = "policy.toml"\n' + SHA_LINE, "")], "policy",
      "required field is missing"),
    S("missing-participant-role", [('role = "witness"\n', "")], "participants[4].role",
      "required field is missing", ("[[participants]]", 5)),
    S("ecdsa-without-curve", [('algorithm = "ed25519"', 'algorithm = "ecdsa"')],
      "root_key.curve", "required field is missing", "[root_key]"),
    S("version-boolean", [("version = 1\n", "version = true\n")], "version",
      "must be an integer, not a boolean", "version ="),
    S("version-float", [("version = 1\n", "version = 1.0\n")], "version",
      "must be an integer, not a float", "version ="),
    S("version-zero", [("version = 1\n", "version = 0\n")], "version",
      "0 is out of range", "version ="),
    S("approvals-boolean", [("approvals = 2\n", "approvals = true\n")], "steps[1].approvals",
      "must be an integer, not a boolean", "approvals ="),
    S("lifetime-out-of-range", [("lifetime_days = 3650", "lifetime_days = 40000")],
      "root_key.lifetime_days", "40000 is out of range", "lifetime_days"),
    S("title-empty", [('title = "Sample root key ceremony"', 'title = "   "')], "title",
      "must not be empty", "title = \"   "),
    S("step-title-too-long", [('title = "Close the ceremony"', f'title = "{"x" * 121}"')],
      "steps[2].title", "longer than 120 characters", "x" * 121),
    S("title-not-string", [('title = "Sample root key ceremony"', "title = 2026")], "title",
      "must be a string, not an integer", "title = 2026"),
    S("bad-ceremony-id", [('ceremony_id = "sample-root-2026"', 'ceremony_id = "Sample Root"')],
      "ceremony_id", "is not a lower-case id", "ceremony_id ="),
    S("bad-participant-id", [('id = "ada"', 'id = "Ada"')], "participants[0].id",
      "'Ada' is not a lower-case name", 'id = "Ada"'),
    S("bad-step-id", [('id = "open"', 'id = "Open"')], "steps[0].id",
      "'Open' is not a lower-case step id", 'id = "Open"'),
    S("duplicate-participant-id", [('id = "bob"', 'id = "alice"')], "participants[2].id",
      "participant 'alice' is listed twice", ('id = "alice"', 2)),
    S("duplicate-step-id", [('id = "close"', 'id = "open"')], "steps[2].id",
      "step 'open' is listed twice", ('id = "open"', 2)),
    S("duplicate-public-key", [(BOB_KEY, ALICE_KEY)], "participants[2].public_key",
      "is the same key as participant 'alice'", (ALICE_KEY, 2)),
    S("public-key-wrong-type", [(f'"{ALICE_KEY}"', f'"{ALICE_KEY.replace("ed25519", "ed448")}"')],
      "participants[1].public_key", "must start with 'ed25519:'", "ed448:"),
    S("public-key-bad-base64", [(ALICE_KEY, "ed25519:not base64!")],
      "participants[1].public_key", "is not valid base64", "not base64!"),
    S("public-key-short", [(ALICE_KEY, "ed25519:AAAA")], "participants[1].public_key",
      "must hold 32 bytes of Ed25519 public key, not 3", "ed25519:AAAA"),
    S("unknown-role", [('role = "auditor"', 'role = "observer"')], "participants[5].role",
      "'observer' is not one of", 'role = "observer"'),
    S("no-administrator", [('role = "administrator"', 'role = "custodian"')], "participants",
      "names no administrator", ("[[participants]]", 1)),
    S("unknown-algorithm", [('algorithm = "ed25519"', 'algorithm = "dsa"')],
      "root_key.algorithm", "'dsa' is not one of", "algorithm ="),
    S("rsa-size-not-allowed",
      [('algorithm = "ed25519"', 'algorithm = "rsa"\nsize = 2048')], "root_key.size",
      "2048 is not one of 3072, 4096", "size = 2048"),
    S("key-id-not-hex", [('id = "01"', 'id = "0g"')], "root_key.id",
      "'0g' is not 1 to 32 bytes in lower-case hex", 'id = "0g"'),
    S("label-not-ascii", [('label = "sample root key"', 'label = "sample röot key"')],
      "root_key.label", "is not 1 to 64 printable ASCII characters", "label ="),
    S("policy-sha256-not-hex", [(SHA_LINE, 'sha256 = "2B5D"\n')], "policy.sha256",
      "is not 64 lower-case hex digits", "sha256 ="),
    S("token-uri-not-pkcs11",
      [('uri = "pkcs11:token=ceremony-root"', 'uri = "token=ceremony-root"')], "token.uri",
      "is not a PKCS#11 URI", "uri ="),
    S("share-member-unknown", [(MEMBERS, 'members = ["alice", "bob", "mallory"]')],
      "shares.groups[0].members", "'mallory' is not a participant of this script",
      "members ="),
    S("share-member-not-custodian", [(MEMBERS, 'members = ["alice", "bob", "oscar"]')],
      "shares.groups[0].members", "'oscar' is an auditor, not a custodian", "members ="),
    S("share-members-duplicate", [(MEMBERS, 'members = ["alice", "bob", "bob"]')],
      "shares.groups[0].members", "lists the same entry twice", "members ="),
    S("share-member-not-string", [(MEMBERS, 'members = ["alice", 2, "carol"]')],
      "shares.groups[0].members", "entry 2 must be a string, not an integer", "members ="),
    S("share-threshold-above-members", [("[[shares.groups]]\nthreshold = 2\n",
                                         "[[shares.groups]]\nthreshold = 4\n")],
      "shares.groups[0].threshold", "4 is more than the 3 members", "threshold = 4"),
    S("activation-mode-unknown", [('mode = "split"', 'mode = "sticky-note"')],
      "token.activation.mode", "is not one of split, pin-pad, known-pin", "mode ="),
    S("activation-officer-unknown", [('officers = ["alice", "bob", "carol"]',
                                      'officers = ["alice", "bob", "mallory"]')],
      "token.activation.officers[2]", "'mallory' is not a participant", "officers ="),
    S("activation-officer-witness", [('officers = ["alice", "bob", "carol"]',
                                      'officers = ["alice", "bob", "wendy"]')],
      "token.activation.officers[2]", "only an administrator or a custodian may hold a PIN "
      "share", "officers ="),
    S("activation-threshold-above-officers",
      [('"carol"]\nthreshold = 2', '"carol"]\nthreshold = 4')],
      "token.activation.threshold", "4 is more than the 3 officers", "^threshold = 4"),
    S("activation-officers-on-pin-pad", [('mode = "split"', 'mode = "pin-pad"')],
      "token.activation.officers", "applies only to split activation, not pin-pad",
      "officers ="),
    S("share-threshold-one", [("[[shares.groups]]\nthreshold = 2\n",
                               "[[shares.groups]]\nthreshold = 1\n")],
      "shares.groups[0].threshold", "a threshold of 1 needs exactly one member",
      "^threshold = 1"),
    S("group-threshold-above-groups", [("group_threshold = 1", "group_threshold = 2")],
      "shares.group_threshold", "2 is more than the 1 groups", "group_threshold ="),
    S("approvals-above-approvers", [("approvals = 2\n", 'approvers = ["alice"]\napprovals = 2\n')],
      "steps[1].approvals", "2 approvals cannot come from 1 approvers", "approvals = 2"),
    S("approver-unknown", [("approvals = 2\n", 'approvers = ["alice", "zed"]\napprovals = 2\n')],
      "steps[1].approvers", "'zed' is not a participant of this script", "approvers ="),
    S("approver-not-custodian",
      [("approvals = 2\n", 'approvers = ["alice", "oscar"]\napprovals = 2\n')],
      "steps[1].approvers", "'oscar' is an auditor, not a custodian", "approvers ="),
    S("approvers-empty", [("approvals = 2\n", "approvers = []\napprovals = 2\n")],
      "steps[1].approvers", "must list 1 to 64 entries, not 0", "approvers ="),
    S("witnesses-above-named", [("witnesses = 1\n\n[[steps]]\nid = \"provision",
                                 "witnesses = 2\n\n[[steps]]\nid = \"provision")],
      "steps[0].witnesses", "2 witnesses are needed but the script names 1", "witnesses = 2"),
    S("unknown-action", [(PROVISION, 'action = "destroy_root_key"\n')], "steps[1].action",
      "'destroy_root_key' is not one of", "action ="),
    S("no-provision-step", [(PROVISION, "")], "steps",
      'must have exactly one step with action = "provision_root_key", not 0', ("[[steps]]", 1)),
    S("confirm-lower-case", [('confirm = "PROVISION ROOT KEY"', 'confirm = "provision root key"')],
      "steps[1].confirm", "is not 3 to 64 upper-case letters", "confirm ="),
    S("certificate-country-lower-case", _certify(('country = "DE"', 'country = "de"')),
      "root_key.certificate.subject.country", "is not a two-letter upper-case country code",
      'country = "de"'),
    S("certificate-key-usage-unknown",
      _certify(("csr = true\n", 'csr = true\nkey_usage = ["key_cert_sign", "encrypt"]\n')),
      "root_key.certificate.key_usage", "'encrypt' is not one of", "key_usage ="),
    S("certify-without-certificate-table",
      [(PROVISION_END, CERTIFY[:CERTIFY.index("[root_key")]
        + CERTIFY[CERTIFY.index("[[steps]]"):])],
      "steps[2].action", "certify_root_key needs a [root_key.certificate] table",
      'action = "certify_root_key"'),
    # [previous]: the key a replacement or rotation replaces (ADR 14).
    S("previous-reason-unknown", _previous('ceremony = "old-root-2020"',
                                           f'root_fingerprint = "{"ab" * 32}"',
                                           'reason = "expired"'),
      "previous.reason", "'expired' is not one of rotation, compromise", "reason ="),
    S("previous-fingerprint-short", _previous('ceremony = "old-root-2020"',
                                              'root_fingerprint = "abcd"',
                                              'reason = "rotation"'),
      "previous.root_fingerprint", "'abcd' is not 64 lower-case hex digits",
      "root_fingerprint ="),
    # ---- the policy ---------------------------------------------------------------------
    P("toml-trailing-junk", [("min_approvals = 2\n", "min_approvals = 2 2\n")],
      "quorum.min_approvals", "not valid TOML", "min_approvals ="),
    P("not-utf8", [('policy_id = "sample-root-policy"', f'policy_id = "sample-r{BAD_BYTE}ot"')],
      "policy_id", "not UTF-8", "policy_id ="),
    P("unknown-top-level-key", [("version = 1\n", 'version = 1\nowner = "security"\n')],
      "owner", "is not a known field", "owner ="),
    P("unknown-quorum-key", [("required_witnesses = 1\n",
                              "required_witnesses = 1\nmax_approvals = 5\n")],
      "quorum.max_approvals", "is not a known field", "max_approvals ="),
    P("missing-policy-id", [('policy_id = "sample-root-policy"\n', "")], "policy_id",
      "required field is missing"),
    P("missing-quorum-table", [("[quorum]\n", "[quorum_settings]\n")], "quorum",
      "required field is missing"),
    P("missing-min-approvals", [("min_approvals = 2\n", "")], "quorum.min_approvals",
      "required field is missing", "[quorum]"),
    P("bad-policy-id", [('policy_id = "sample-root-policy"', 'policy_id = "Sample Policy"')],
      "policy_id", "is not a lower-case id", "policy_id ="),
    P("version-float", [("version = 1\n", "version = 1.5\n")], "version",
      "must be an integer, not a float", "version ="),
    P("allowed-key-unknown", [('"rsa-4096"]', '"rsa-2048"]')], "allowed_keys",
      "'rsa-2048' is not one of", "allowed_keys ="),
    P("allowed-keys-empty", [('["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", "rsa-4096"]',
                              "[]")], "allowed_keys", "must list 1 to 5 entries, not 0",
      "allowed_keys ="),
    P("allowed-keys-duplicate", [('"rsa-4096"]', '"ed25519"]')], "allowed_keys",
      "lists the same entry twice", "allowed_keys ="),
    P("allowed-keys-not-array", [('["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", '
                                  '"rsa-4096"]', '"ed25519"')], "allowed_keys",
      "must be an array, not a string", "allowed_keys ="),
    P("rehearsal-allowed-string", [("rehearsal_allowed = true", 'rehearsal_allowed = "yes"')],
      "rehearsal_allowed", "must be true or false, not a string", "rehearsal_allowed ="),
    P("rehearsal-allowed-integer", [("rehearsal_allowed = true", "rehearsal_allowed = 1")],
      "rehearsal_allowed", "must be true or false, not an integer", "rehearsal_allowed ="),
    P("lifetime-zero", [("max_key_lifetime_days = 7300", "max_key_lifetime_days = 0")],
      "max_key_lifetime_days", "0 is out of range", "max_key_lifetime_days ="),
    P("max-threshold-below-min", [("max_member_threshold = 16", "max_member_threshold = 1")],
      "shares.max_member_threshold", "is smaller than min_member_threshold",
      "max_member_threshold ="),
    P("min-threshold-out-of-range", [("min_member_threshold = 2", "min_member_threshold = 17")],
      "shares.min_member_threshold", "17 is out of range (allowed 1 to 16)",
      "min_member_threshold ="),
    P("min-approvals-zero", [("min_approvals = 2", "min_approvals = 0")],
      "quorum.min_approvals", "0 is out of range", "min_approvals ="),
    P("witnesses-negative", [("required_witnesses = 1", "required_witnesses = -1")],
      "quorum.required_witnesses", "-1 is out of range", "required_witnesses ="),
    P("shares-not-table", [("[shares]\n", "[[shares]]\n")], "shares",
      "must be a table, not an array", "[[shares]]"),
    P("authorization-unknown-role", [('roles = ["custodian"]', 'roles = ["custodian", "boss"]')],
      "authorization.roles", "'boss' is not one of", "roles ="),
    P("authorization-signers-zero", [("signers = 2", "signers = 0")], "authorization.signers",
      "0 is out of range", "signers ="),
    P("authorization-required-missing", [("required = true\n", "")],
      "authorization.required", "required field is missing", "[authorization]"),
    P("separation-flag-string", [("witness_may_hold_share = false",
                                  'witness_may_hold_share = "no"')],
      "separation.witness_may_hold_share", "must be true or false, not a string",
      "witness_may_hold_share ="),
    P("separation-unknown-rule", [("max_shares_per_holder = 1",
                                   "max_shares_per_holder = 1\nauditor_may_approve = false")],
      "separation.auditor_may_approve", "is not a known field", "auditor_may_approve ="),
    P("separation-max-shares-zero", [("max_shares_per_holder = 1", "max_shares_per_holder = 0")],
      "separation.max_shares_per_holder", "0 is out of range", "max_shares_per_holder ="),
    # [lifecycle] (ADR 14): the rotation cadence and the lifecycle events' quorums.
    P("lifecycle-rotation-too-long", _lifecycle("rotation_months = 300"),
      "lifecycle.rotation_months", "300 months is longer than the key's longest lifetime",
      "rotation_months ="),
    P("lifecycle-rotation-zero", _lifecycle("rotation_months = 0"),
      "lifecycle.rotation_months", "0 is out of range", "rotation_months ="),
    P("lifecycle-event-quorum-below-min", _lifecycle("event_quorum = 1"),
      "lifecycle.event_quorum", "1 is below quorum.min_approvals (2)", "event_quorum ="),
    P("lifecycle-notice-string", _lifecycle('notice_days = "90"'),
      "lifecycle.notice_days", "must be an integer, not a string", "notice_days ="),
    P("lifecycle-unknown-field", _lifecycle("rotation_years = 2"),
      "lifecycle.rotation_years", "is not a known field", "rotation_years ="),
    # ---- the answers file ---------------------------------------------------------------
    A("toml-bare-string", [('confirm = "PROVISION ROOT KEY"', "confirm = PROVISION ROOT KEY")],
      "steps[1].confirm", "not valid TOML", "confirm ="),
    A("not-utf8", [('confirm = "PROVISION ROOT KEY"', f'confirm = "PR{BAD_BYTE}VISION"')],
      "steps[1].confirm", "not UTF-8", "confirm ="),
    A("wrong-ceremony", [('ceremony_id = "sample-root-2026"', 'ceremony_id = "other-root-2026"')],
      "ceremony_id", "'other-root-2026' is not the script's ceremony", "ceremony_id ="),
    A("bad-ceremony-id", [('ceremony_id = "sample-root-2026"', 'ceremony_id = "Sample"')],
      "ceremony_id", "'Sample' is not a ceremony id", "ceremony_id ="),
    A("missing-ceremony-id", [('ceremony_id = "sample-root-2026"\n', "")], "ceremony_id",
      "required field is missing"),
    A("unknown-top-level-key", [("[identities]", 'operator = "ada"\n\n[identities]')],
      "operator", "is not a known field", "operator ="),
    A("unknown-step-key", [('confirm = "PROVISION ROOT KEY"', 'typed = "PROVISION ROOT KEY"')],
      "steps[1].typed", "is not a known field", "typed ="),
    A("step-missing-id", [('id = "close"\n', "")], "steps[2].id", "required field is missing",
      ("[[steps]]", 3)),
    A("unknown-step", [('id = "close"', 'id = "destroy"')], "steps[2].id",
      "the script has no step 'destroy'", 'id = "destroy"'),
    A("step-answered-twice", [('id = "close"', 'id = "open"')], "steps[2].id",
      "step 'open' is answered twice", ('id = "open"', 2)),
    A("bad-step-id", [('id = "close"', 'id = "Close!"')], "steps[2].id",
      "'Close!' is not a step id", 'id = "Close!"'),
    A("approver-unknown", [('approvals = ["alice", "bob"]', 'approvals = ["alice", "mallory"]')],
      "steps[1].approvals", "'mallory' is not a participant of the script", "approvals ="),
    A("approver-is-witness", [('approvals = ["alice", "bob"]', 'approvals = ["alice", "wendy"]')],
      "steps[1].approvals", "'wendy' is a witness, not a custodian", "approvals ="),
    A("witness-is-custodian", [('witnesses = ["wendy"]\n\n[[steps]]\nid = "provision',
                                'witnesses = ["carol"]\n\n[[steps]]\nid = "provision')],
      "steps[0].witnesses", "'carol' is a custodian, not a witness", 'witnesses = ["carol"]'),
    A("approver-without-identity",
      [('approvals = ["alice", "bob"]', 'approvals = ["alice", "carol"]')],
      "steps[1].approvals",
      "'carol' has no card under [cards] (nor a rehearsal key under [identities])",
      "approvals ="),
    A("approvals-duplicate", [('approvals = ["alice", "bob"]', 'approvals = ["alice", "alice"]')],
      "steps[1].approvals", "lists the same entry twice", "approvals ="),
    A("approvals-not-array", [('approvals = ["alice", "bob"]', 'approvals = "alice"')],
      "steps[1].approvals", "must be an array, not a string", "approvals ="),
    A("confirm-empty", [('confirm = "PROVISION ROOT KEY"', 'confirm = ""')], "steps[1].confirm",
      "must not be empty", "confirm ="),
    A("identity-unknown-participant",
      [('wendy = "identities/wendy.pem"', 'wendy = "identities/wendy.pem"\n'
                                          'mallory = "identities/mallory.pem"')],
      "identities.mallory", "'mallory' is not a participant of the script", "mallory ="),
    A("identity-not-string", [('alice = "identities/alice.pem"', "alice = 1")],
      "identities.alice", "must be a string, not an integer", "alice = 1"),
    # ---- well-formed files that break the policy: exit 1 --------------------------------
    V("quorum", "script.toml", [("approvals = 2\n", "approvals = 1\n")], "steps[1].approvals",
      "CER-QUORUM", "needs at least 2 custodian approvals", "approvals = 1"),
    V("witness", "script.toml", [('witnesses = 1\nconfirm', 'witnesses = 0\nconfirm')],
      "steps[1].witnesses", "CER-WITNESS", "needs at least 1 witnesses", "witnesses = 0"),
    V("confirm", "script.toml", [('confirm = "PROVISION ROOT KEY"\n', "")], "steps[1].confirm",
      "CER-CONFIRM", "needs a typed confirmation phrase", ("[[steps]]", 2)),
    V("lifetime", "script.toml", [("lifetime_days = 3650", "lifetime_days = 8000")],
      "root_key.lifetime_days", "CER-POLICY-LIFETIME", "8000 days is longer",
      "lifetime_days ="),
    V("key-kind", "script.toml", [], "root_key.algorithm", "CER-POLICY-KEY",
      "a ed25519 root key is not allowed", "algorithm =", unpin=True,
      extra={"policy.toml": [('["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa-3072", '
                              '"rsa-4096"]', '["ecdsa-p256"]')]}),
    V("member-threshold", "script.toml", [], "shares.groups[0].threshold",
      "CER-POLICY-THRESHOLD", "2 is outside the policy's range 3 to 16", ("threshold = 2", 2),
      unpin=True, extra={"policy.toml": [("min_member_threshold = 2",
                                          "min_member_threshold = 3")]}),
    V("known-pin-not-allowed", "script.toml",
      [('mode = "split"\nofficers = ["alice", "bob", "carol"]\nthreshold = 2\n',
        'mode = "known-pin"\n')],
      "token.activation.mode", "CER-ACTIVATION", "known-pin activation of the token is not "
      "allowed by policy", 'mode = "known-pin"'),
    V("officer-threshold", "script.toml", [], "token.activation.threshold", "CER-ACTIVATION",
      "2 is below the policy's minimum of 3 officers", ("threshold = 2", 1), unpin=True,
      extra={"policy.toml": [("min_officer_threshold = 2", "min_officer_threshold = 3")]}),
    V("group-threshold", "script.toml", [], "shares.group_threshold", "CER-POLICY-THRESHOLD",
      "1 is below the policy's minimum of 2", "group_threshold =", unpin=True,
      extra={"policy.toml": [("min_group_threshold = 1", "min_group_threshold = 2")]}),
    V("certificate-validity", "script.toml",
      _certify(("validity_days = 3650", "validity_days = 3651")),
      "root_key.certificate.validity_days", "CER-CERT-VALIDITY",
      "3651 days is longer than the root key's lifetime of 3650 days", "validity_days ="),
    # The conflict matrix ([separation]), one vector per rule.
    V("separation-administrator-approves", "script.toml",
      [("approvals = 2\n", 'approvers = ["ada", "alice", "bob"]\napprovals = 2\n')],
      "steps[1].approvers", "CER-SEPARATION", "'ada' is the administrator and may approve "
      "step 'provision-root-key', which policy 'sample-root-policy' forbids ([separation] "
      "administrator_may_approve = false)", "approvers ="),
    V("separation-administrator-holds-share", "script.toml",
      [(MEMBERS, 'members = ["alice", "bob", "carol", "ada"]')], "shares.groups[0].members",
      "CER-SEPARATION", "'ada' is the administrator and holds a share of the seed",
      "members ="),
    V("separation-administrator-officer", "script.toml",
      [('officers = ["alice", "bob", "carol"]', 'officers = ["alice", "bob", "ada"]')],
      "token.activation.officers[2]", "CER-SEPARATION", "'ada' is the administrator and "
      "holds a PIN share of the token", "officers ="),
    V("separation-witness-holds-share", "script.toml",
      [(MEMBERS, 'members = ["alice", "bob", "carol", "wendy"]')], "shares.groups[0].members",
      "CER-SEPARATION", "'wendy' is a witness and holds a share of the seed", "members ="),
    V("separation-officer-holds-share", "script.toml",
      [('officers = ["alice", "bob", "carol"]', 'officers = ["ada", "alice"]')],
      "shares.groups[0].members", "CER-SEPARATION", "'alice' holds a PIN share of the token "
      "and a share of the seed", "members =", unpin=True,
      extra={"policy.toml": [("officer_may_hold_share = true", "officer_may_hold_share = false"),
                             ("administrator_may_be_officer = false",
                              "administrator_may_be_officer = true")]}),
    V("separation-two-shares", "script.toml",
      [(MEMBERS + "\n", MEMBERS + '\n\n[[shares.groups]]\nthreshold = 1\nmembers = ["alice"]\n')],
      "shares.groups[1].members", "CER-SEPARATION", "'alice' holds 2 shares of the seed "
      "(groups 1, 2), more than 1", ('members =', 2), unpin=True,
      extra={"policy.toml": [("min_member_threshold = 2", "min_member_threshold = 1")]}),
    V("authorizers-too-few", "script.toml", [], "participants", "CER-SCRIPT-SIGNED",
      "requires 4 authorizers (custodian) to sign the script, but it names 3",
      ("[[participants]]", 1), unpin=True,
      extra={"policy.toml": [("signers = 2", "signers = 4")]}),
    V("policy-pin", "script.toml", [], "policy.sha256", "CER-POLICY-PIN",
      "does not match the policy file policy.toml", "sha256 =",
      extra={"policy.toml": [("max_key_lifetime_days = 7300", "max_key_lifetime_days = 7299")]}),
    # [shares.delivery]: where each holder's share goes (docs/card-shares.md).
    S("delivery-unknown-holder", [(MEMBERS + "\n", MEMBERS + DELIVERY + 'mallory = ["card"]\n')],
      "shares.delivery.mallory", "'mallory' holds no share in [[shares.groups]]", "mallory ="),
    S("delivery-unknown-place", [(MEMBERS + "\n", MEMBERS + DELIVERY + 'alice = ["usb"]\n')],
      "shares.delivery.alice", "'usb' is not a place a share can go", "alice ="),
    S("delivery-empty", [(MEMBERS + "\n", MEMBERS + DELIVERY + "alice = []\n")],
      "shares.delivery.alice", "must list 1 to 2 entries, not 0", "alice ="),
    S("delivery-twice", [(MEMBERS + "\n", MEMBERS + DELIVERY + 'alice = ["card", "card"]\n')],
      "shares.delivery.alice", "lists the same entry twice", "alice ="),
    S("delivery-not-array", [(MEMBERS + "\n", MEMBERS + DELIVERY + 'alice = "card"\n')],
      "shares.delivery.alice", "must be an array", "alice ="),
    # [tokens]: identity keys on custodians' own PKCS#11 tokens (docs/custodian-guide.md 10a).
    A("token-pin-field", [(WENDY, WENDY + TOKENS + 'carol = { uri = "pkcs11:token=carol-id", '
                           'key_label = "identity", pin = "123456" }\n')],
      "tokens.carol.pin", "is not a known field", "carol = {"),
    A("token-not-a-uri", [(WENDY, WENDY + TOKENS + 'carol = { uri = "token=carol-id", '
                           'key_label = "identity" }\n')],
      "tokens.carol.uri", "'token=carol-id' is not a PKCS#11 URI", "carol = {"),
    A("token-and-key-file", [(WENDY, WENDY + TOKENS + 'bob = { uri = "pkcs11:token=bob-id", '
                              'key_label = "identity" }\n')],
      "tokens.bob", "bob has both an identity token here and a key file", "bob = {"),
    Vector("answers", "card-delivery-without-card", "answers.toml", [], "cards",
           "the script sends bob's share to their card, but [cards] names no card for bob",
           extra={"script.toml": [(MEMBERS + "\n", MEMBERS + DELIVERY + 'bob = ["card"]\n')]}),
]


def main() -> None:
    script, policy = sample_texts()
    names = [(v.group, v.name) for v in VECTORS]
    if len(set(names)) != len(names):
        raise SystemExit("two vectors share a name")
    if OUT.exists():
        shutil.rmtree(OUT)
    for vector in VECTORS:
        write(vector, script, policy)
    print(f"wrote {len(VECTORS)} vectors under {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
