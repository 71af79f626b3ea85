"""Unit tests of the strict readers and parsers in ceremony.model."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ceremony.canonical import sha256_hex
from ceremony.errors import AnswersError, InputError, PolicyFileError, ScriptError
from ceremony.model.answers import parse_answers
from ceremony.model.policy import Policy, parse_policy
from ceremony.model.rules import check_policy
from ceremony.model.script import Script, parse_script
from ceremony.model.strict import Fields, Locator, Source, format_path, read_source
from ceremony.rehearsal import sample_texts
from tests.conftest import run_cli

SCRIPT, POLICY = sample_texts()


def _fields(text: str) -> Fields:
    return Source("t.toml", text).load()


def _line_of(text: str, start: str, nth: int = 1) -> int:
    """The 1-based number of the nth line starting with ``start`` (found without Locator)."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if line.startswith(start)]
    return hits[nth - 1]


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# ---- the samples ------------------------------------------------------------------------


def test_sample_script_and_policy_parse() -> None:
    script = parse_script(SCRIPT, "script.toml")
    policy = parse_policy(POLICY, "policy.toml")
    assert script.ceremony_id == "sample-root-2026"
    assert [s.id for s in script.steps] == ["open", "provision-root-key", "close"]
    assert [s.sensitive for s in script.steps] == [False, True, False]
    assert script.root_key.kind == "ed25519"
    assert script.shares.groups[0].members == ("alice", "bob", "carol")
    assert script.policy_sha256 == policy.sha256
    assert check_policy(script, policy, rehearsal=False, script_text=SCRIPT) == []
    assert check_policy(script, policy, rehearsal=True, script_text=SCRIPT) == []


def test_sample_lints_clean(tmp_path: Path) -> None:
    written = run_cli("sample", str(tmp_path / "s"))
    assert written.returncode == 0, written.stderr
    result = run_cli("lint", str(tmp_path / "s" / "script.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert ": ok (ceremony sample-root-2026 v1, 3 steps" in result.stdout


# ---- Locator ----------------------------------------------------------------------------


def test_locator_top_level_and_table_keys() -> None:
    where = Locator(SCRIPT)
    assert where.line(("ceremony_id",)) == _line_of(SCRIPT, "ceremony_id =")
    assert where.line(("title",)) == _line_of(SCRIPT, "title =")
    assert where.line(("policy",)) == _line_of(SCRIPT, "[policy]")
    assert where.line(("policy", "sha256")) == _line_of(SCRIPT, "sha256 =")
    assert where.line(("root_key", "lifetime_days")) == _line_of(SCRIPT, "lifetime_days =")
    assert where.line(("shares", "group_threshold")) == _line_of(SCRIPT, "group_threshold =")
    # A key that is not written falls back to its table; an unknown top-level key to None.
    assert where.line(("root_key", "curve")) == _line_of(SCRIPT, "[root_key]")
    assert where.line(("nonsense",)) is None


def test_locator_array_of_tables_elements() -> None:
    where = Locator(SCRIPT)
    for i in range(3):
        assert where.line(("steps", i)) == _line_of(SCRIPT, "[[steps]]", i + 1)
    assert where.line(("steps", 1, "approvals")) == _line_of(SCRIPT, "approvals =")
    assert where.line(("steps", 2, "id")) == _line_of(SCRIPT, 'id = "close"')
    # Witnesses are written in all three steps: each element finds its own.
    for i in range(3):
        assert where.line(("steps", i, "witnesses")) == _line_of(SCRIPT, "witnesses =", i + 1)
    # A field not written in element 0 falls back to that element's header.
    assert where.line(("steps", 0, "confirm")) == _line_of(SCRIPT, "[[steps]]", 1)
    assert where.line(("participants", 4, "role")) == _line_of(SCRIPT, 'role = "witness"')
    # The array as a whole is where its first element is.
    assert where.line(("participants",)) == _line_of(SCRIPT, "[[participants]]", 1)


def test_locator_nested_array_of_tables() -> None:
    text = "\n".join([
        "[shares]",                  # 1
        "group_threshold = 2",       # 2
        "",                          # 3
        "[[shares.groups]]",         # 4
        "threshold = 2",             # 5
        'members = ["a", "b"]',      # 6
        "",                          # 7
        "[[shares.groups]]",         # 8
        'members = ["c"]',           # 9
        "threshold = 1",             # 10
        "",                          # 11
        "[[steps]]",                 # 12
        'id = "x"',                  # 13
        "[steps.extra]",             # 14
        "note = 1",                  # 15
    ])
    tomllib.loads(text)  # it is valid TOML
    where = Locator(text)
    assert where.line(("shares", "group_threshold")) == 2
    assert where.line(("shares", "groups", 0)) == 4
    assert where.line(("shares", "groups", 0, "threshold")) == 5
    assert where.line(("shares", "groups", 1)) == 8
    assert where.line(("shares", "groups", 1, "threshold")) == 10
    assert where.line(("shares", "groups", 1, "members")) == 9
    assert where.line(("shares", "groups", 2, "members")) == 4  # no such group: the array
    # A sub-table header belongs to the latest element of its array.
    assert where.line(("steps", 0, "extra", "note")) == 15
    # In the sample, too.
    sample = Locator(SCRIPT)
    assert sample.line(("shares", "groups", 0, "members")) == _line_of(SCRIPT, "members =")


def test_locator_inline_values() -> None:
    text = "\n".join([
        'title = "t"',                                                # 1
        'token = { module = "/m.so", uri = "pkcs11:token=x" }',       # 2
        'root_key.algorithm = "ed25519"',                             # 3
        '"quoted key" = 1',                                           # 4
        "list = [",                                                   # 5
        '  "a",',                                                     # 6
        "]",                                                          # 7
        "[t]",                                                        # 8
        "inline = { a = 1, b = { c = 2 } }",                         # 9
        "  spaced   =   3   # comment",                              # 10
    ])
    tomllib.loads(text)
    where = Locator(text)
    # Keys inside an inline table are on the line of the table's key.
    assert where.line(("token", "uri")) == 2
    assert where.line(("token", "module")) == 2
    assert where.line(("root_key", "algorithm")) == 3
    assert where.line(("quoted key",)) == 4
    assert where.line(("list",)) == 5
    assert where.line(("t", "inline", "b", "c")) == 9
    assert where.line(("t", "spaced")) == 10


def test_locator_skips_multiline_strings() -> None:
    text = "\n".join([
        'instructions = """first line',    # 1
        "fake = 1",                        # 2: inside the string, not a key
        "[not-a-table]",                   # 3: inside the string, not a header
        'end"""',                          # 4
        "fake = 2",                        # 5
    ])
    assert tomllib.loads(text)["fake"] == 2
    where = Locator(text)
    assert where.line(("fake",)) == 5
    assert where.line(("not-a-table",)) is None
    # A line inside the string belongs to the string's key.
    assert where.path_at(2) == ("instructions",)
    assert where.path_at(5) == ("fake",)


def test_locator_ignores_quotes_in_comments() -> None:
    text = "\n".join([
        '# long text goes between """ quotes',  # 1
        "a = 1",                                # 2
        "# and ''' works too",                  # 3
        "[t]",                                  # 4
        "b = 2",                                # 5
    ])
    tomllib.loads(text)
    where = Locator(text)
    assert where.line(("a",)) == 2
    assert where.line(("t", "b")) == 5


def test_format_path() -> None:
    assert format_path(()) == ""
    assert format_path(("title",)) == "title"
    assert format_path(("steps", 1, "approvals")) == "steps[1].approvals"
    assert format_path(("shares", "groups", 0, "members")) == "shares.groups[0].members"


def test_error_names_file_line_and_field() -> None:
    text = _edit(SCRIPT, "approvals = 2\n", "approvals = 65\n")
    with pytest.raises(ScriptError) as caught:
        parse_script(text, "my.toml")
    error = caught.value
    assert error.file == "my.toml"
    assert error.field == "steps[1].approvals"
    assert error.line == _line_of(text, "approvals =")
    assert str(error).startswith(f"my.toml:{error.line}: steps[1].approvals: 65 is out of range")


def test_syntax_error_names_the_field_on_its_line() -> None:
    text = _edit(SCRIPT, 'label = "sample root key"', "label = sample root key")
    with pytest.raises(ScriptError) as caught:
        parse_script(text, "script.toml")
    assert caught.value.line == _line_of(text, "label =")
    assert caught.value.field == "root_key.label"
    assert "not valid TOML" in caught.value.message


def test_non_utf8_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "script.toml"
    path.write_bytes(SCRIPT.encode().replace(b"Wendy Witness", b"Wendy W\xfftness"))
    with pytest.raises(ScriptError) as caught:
        read_source(path, ScriptError, "script")
    assert caught.value.line == _line_of(SCRIPT, 'name = "Wendy')
    assert caught.value.field == "participants[4].name"
    assert "not UTF-8" in caught.value.message


# ---- types ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "false"])
def test_booleans_are_not_integers(value: str) -> None:
    f = _fields(f"n = {value}\n")
    with pytest.raises(InputError, match="n: must be an integer, not a boolean"):
        f.integer("n", low=0, high=10)


def test_booleans_are_refused_in_script_and_policy() -> None:
    with pytest.raises(ScriptError, match=r"steps\[0\]\.witnesses: must be an integer"):
        parse_script(_edit(SCRIPT, "witnesses = 1\n\n[[steps]]\nid = \"provision",
                           "witnesses = true\n\n[[steps]]\nid = \"provision"), "s.toml")
    with pytest.raises(PolicyFileError, match=r"quorum\.min_approvals: must be an integer"):
        parse_policy(_edit(POLICY, "min_approvals = 2", "min_approvals = true"), "p.toml")
    # ... and integers are not booleans.
    with pytest.raises(PolicyFileError, match="rehearsal_allowed: must be true or false, "
                                              "not an integer"):
        parse_policy(_edit(POLICY, "rehearsal_allowed = true", "rehearsal_allowed = 1"),
                     "p.toml")


@pytest.mark.parametrize("value", ["2.0", "2.5", "inf", "nan", "2e0"])
def test_floats_are_not_integers(value: str) -> None:
    f = _fields(f"n = {value}\n")
    with pytest.raises(InputError, match="n: must be an integer, not a float"):
        f.integer("n", low=0, high=10)


def test_integer_range_and_default() -> None:
    f = _fields("a = 3\nb = -1\n")
    assert f.integer("a", low=0, high=3) == 3
    with pytest.raises(InputError, match=r"-1 is out of range \(allowed 0 to 3\)"):
        f.integer("b", low=0, high=3)
    assert f.integer("c", low=0, high=3, default=2) == 2
    with pytest.raises(InputError, match="c: this required field is missing"):
        f.integer("c", low=0, high=3)


def test_strings_are_not_numbers_or_dates() -> None:
    f = _fields("a = 1\nb = 1979-05-27\n")
    with pytest.raises(InputError, match="a: must be a string, not an integer"):
        f.text("a")
    with pytest.raises(InputError, match="b: must be a string, not a date"):
        f.text("b")


def test_str_list_refuses_duplicates() -> None:
    f = _fields('xs = ["a", "b", "a"]\n')
    with pytest.raises(InputError, match="xs: lists the same entry twice"):
        f.str_list("xs")


def test_str_list_refuses_non_strings_and_bad_lengths() -> None:
    assert _fields('xs = ["a", "b"]\n').str_list("xs") == ("a", "b")
    with pytest.raises(InputError, match="entry 2 must be a string, not an integer"):
        _fields('xs = ["a", 1]\n').str_list("xs")
    with pytest.raises(InputError, match="must list 1 to 2 entries, not 3"):
        _fields('xs = ["a", "b", "c"]\n').str_list("xs", min_len=1, max_len=2)
    with pytest.raises(InputError, match="must be an array, not a string"):
        _fields('xs = "a"\n').str_list("xs")
    assert _fields("").str_list("xs", required=False, default=()) == ()


def test_unknown_keys_are_refused() -> None:
    f = _fields("a = 1\nb = 2\n")
    f.integer("a", low=0, high=5)
    with pytest.raises(InputError, match=r"t\.toml:2: b: is not a known field"):
        f.done()


# ---- answers ----------------------------------------------------------------------------

ANSWERS = """\
ceremony_id = "sample-root-2026"

[identities]
alice = "keys/alice.pem"
bob = "keys/bob.pem"
wendy = "keys/wendy.pem"

[[steps]]
id = "provision-root-key"
approvals = ["alice", "bob"]
witnesses = ["wendy"]
confirm = "PROVISION ROOT KEY"
"""


def test_answers_parse(tmp_path: Path) -> None:
    script = parse_script(SCRIPT, "script.toml")
    answers = parse_answers(ANSWERS, "answers.toml", script, tmp_path)
    assert answers.identities["alice"] == (tmp_path / "keys" / "alice.pem").resolve()
    step = answers.steps["provision-root-key"]
    assert step.approvals == ("alice", "bob")
    assert step.witnesses == ("wendy",)
    assert step.confirm == "PROVISION ROOT KEY"


def test_answers_refuse_a_step_of_another_script(tmp_path: Path) -> None:
    script = parse_script(SCRIPT, "script.toml")
    text = _edit(ANSWERS, 'id = "provision-root-key"', 'id = "sign-intermediate"')
    with pytest.raises(AnswersError) as caught:
        parse_answers(text, "answers.toml", script, tmp_path)
    assert caught.value.field == "steps[0].id"
    assert caught.value.line == _line_of(text, 'id = "sign')


# ---- check_policy -----------------------------------------------------------------------


def _violations(script_edits: list[tuple[str, str]], policy_edits: list[tuple[str, str]],
                *, rehearsal: bool = False) -> list[tuple[str, str]]:
    script_text, policy_text = SCRIPT, POLICY
    for old, new in script_edits:
        script_text = _edit(script_text, old, new)
    for old, new in policy_edits:
        policy_text = _edit(policy_text, old, new)
    script: Script = parse_script(script_text, "script.toml")
    policy: Policy = parse_policy(policy_text, "policy.toml")
    found = check_policy(script, policy, rehearsal=rehearsal, script_text=script_text)
    for v in found:
        assert v.message.startswith("script.toml:"), v.message
        assert v.hint
    return [(v.requirement, v.message) for v in found]


UNPIN = (f'sha256 = "{sha256_hex(POLICY.encode())}"\n', "")


@pytest.mark.parametrize(("requirement", "field", "script_edits", "policy_edits"), [
    ("CER-POLICY-PIN", "policy.sha256", [],
     [("max_key_lifetime_days = 7300", "max_key_lifetime_days = 7301")]),
    ("CER-POLICY-KEY", "root_key.algorithm", [UNPIN],
     [('allowed_keys = ["ed25519", ', 'allowed_keys = [')]),
    ("CER-POLICY-LIFETIME", "root_key.lifetime_days",
     [("lifetime_days = 3650", "lifetime_days = 7301")], []),
    ("CER-POLICY-THRESHOLD", "shares.group_threshold", [UNPIN],
     [("min_group_threshold = 1", "min_group_threshold = 2")]),
    ("CER-POLICY-THRESHOLD", "shares.groups[0].threshold", [UNPIN],
     [("max_member_threshold = 16", "max_member_threshold = 1"),
      ("min_member_threshold = 2", "min_member_threshold = 1")]),
    ("CER-QUORUM", "steps[1].approvals", [("approvals = 2\n", "approvals = 1\n")], []),
    ("CER-WITNESS", "steps[1].witnesses", [("witnesses = 1\nconfirm", "witnesses = 0\nconfirm")],
     []),
    ("CER-CONFIRM", "steps[1].confirm", [('confirm = "PROVISION ROOT KEY"\n', "")], []),
    ("CER-ACTIVATION", "token.activation.mode", [UNPIN, ('mode = "split"', 'mode = "pin-pad"'),
                                                  ('officers = ["alice", "bob", "carol"]\n'
                                                   'threshold = 2\n', "")],
     [('allowed_activation = ["split", "pin-pad"]', 'allowed_activation = ["split"]')]),
    ("CER-ACTIVATION", "token.activation.threshold", [UNPIN],
     [("min_officer_threshold = 2", "min_officer_threshold = 3")]),
])
def test_check_policy_each_violation(requirement: str, field: str,
                                     script_edits: list[tuple[str, str]],
                                     policy_edits: list[tuple[str, str]]) -> None:
    found = _violations(script_edits, policy_edits)
    assert [r for r, _ in found] == [requirement], found
    assert f": {field}: " in found[0][1]


def test_check_policy_rehearsal_not_allowed() -> None:
    edits = [("rehearsal_allowed = true", "rehearsal_allowed = false")]
    assert _violations([UNPIN], edits, rehearsal=False) == []
    found = _violations([UNPIN], edits, rehearsal=True)
    assert [r for r, _ in found] == ["CER-REHEARSAL"]
    assert ": policy.path: " in found[0][1]


def test_check_policy_lists_every_violation_in_script_order() -> None:
    found = _violations([("lifetime_days = 3650", "lifetime_days = 8000"),
                         ("approvals = 2\n", "approvals = 1\n"),
                         ('confirm = "PROVISION ROOT KEY"\n', "")], [])
    assert [r for r, _ in found] == ["CER-POLICY-LIFETIME", "CER-QUORUM", "CER-CONFIRM"]


def test_check_policy_line_numbers() -> None:
    text = _edit(SCRIPT, "approvals = 2\n", "approvals = 1\n")
    found = _violations([("approvals = 2\n", "approvals = 1\n")], [])
    assert found[0][1].startswith(f"script.toml:{_line_of(text, 'approvals =')}: ")


def test_unclosed_array_names_no_innocent_field() -> None:
    text = _edit(SCRIPT, 'members = ["alice", "bob", "carol"]', 'members = ["alice", "bob"')
    with pytest.raises(ScriptError) as caught:
        parse_script(text, "script.toml")
    assert "not valid TOML (unclosed array)" in caught.value.message
    assert caught.value.field == ""
