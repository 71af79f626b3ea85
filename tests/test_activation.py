"""Split-knowledge activation on real SoftHSM2 tokens, through the real `ceremony` command.

The issue's demand: the split-knowledge login works with exactly M officers and fails with
M-1; no PIN appears in the transcript, logs or output. Every command here runs as a
subprocess (`run_cli`), every token is a fresh SoftHSM2 token (the `softhsm` fixture: user
PIN 123456 and SO PIN 654321 as its transport PINs), and what the token accepts is checked
with tools independent of our adapter: pkcs11-tool for the user PIN, python-pkcs11 directly
for the SO PIN and the token's flags, and OpenSC's pkcs11-spy (a logging PKCS#11 module put
between the CLI and SoftHSM2) to prove a refused login never reached the token at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from shamir_mnemonic.wordlist import WORD_INDEX_MAP

from ceremony.adapters.activation import combine_pin, read_sheet, read_sheets
from ceremony.adapters.identity import KeyFileSigner
from ceremony.canonical import sha256_hex
from ceremony.model.script import Script, load_script
from ceremony.rehearsal import answers_toml, make_cast, sample_texts, simulated_answers
from tests.conftest import SoftHsm, require, run_cli
from tests.fakes import SeededRandom
from tests.test_crash import known_pin_texts

OFFICERS = ("alice", "bob", "carol")
SPLIT_BLOCK = 'mode = "split"\nofficers = ["alice", "bob", "carol"]\nthreshold = 2\n'
SPY_MODULES = ("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so",
               "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so", "/usr/lib/pkcs11-spy.so")
QUORUM_ONE = ("ceremony: 2 of the crypto officers (alice, bob, carol) must present their PIN "
              "shares; 1 did [CER-ACTIVATION]")
PIN_FLAGS = (pkcs11.TokenFlag.USER_PIN_COUNT_LOW | pkcs11.TokenFlag.USER_PIN_FINAL_TRY
             | pkcs11.TokenFlag.USER_PIN_LOCKED)


# ------------------------------------------------------------------ setup


@dataclass
class Split:
    """A ceremony directory (script, policy, answers, identity keys) for one token.

    ``cli`` runs the real command against the token and keeps its stdout and stderr, so a
    test can check at the end that no PIN or PIN share reached any output.
    """

    directory: Path
    softhsm: SoftHsm
    script: Script
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def script_path(self) -> Path:
        return self.directory / "script.toml"

    @property
    def answers_path(self) -> Path:
        return self.directory / "answers.toml"

    def cli(self, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        result = run_cli(*args, env=env or self.softhsm.env)
        n = len(self.outputs) // 2
        self.outputs[f"#{n} {args[:2]} stdout"] = result.stdout
        self.outputs[f"#{n} {args[:2]} stderr"] = result.stderr
        return result

    def pin_file(self, pin: str, name: str = "transport-so-pin") -> Path:
        path = self.directory / name
        path.write_text(pin + "\n")
        return path

    def activate(self, secret_out: Path, *login: str,
                 script: Path | None = None) -> subprocess.CompletedProcess[str]:
        """`ceremony hsm activate --rehearsal` (a development machine attests only as a
        rehearsal, CER-ATTEST); ``login`` defaults to the transport SO PIN from a file."""
        login = login or ("--so-pin-file", str(self.pin_file(self.softhsm.so_pin)))
        return self.cli("hsm", "activate", str(script or self.script_path), "--secret-out",
                        str(secret_out), "--token", self.softhsm.uri, "--module",
                        self.softhsm.module, "--rehearsal", *login)

    def run(self, out: Path, *sheets: Path, extra: tuple[str, ...] = (),
            module: str | None = None, env: dict[str, str] | None = None,
            script: Path | None = None) -> subprocess.CompletedProcess[str]:
        """A headless rehearsal-marked `ceremony run` with these officers' PIN share sheets."""
        return self.cli("run", str(script or self.script_path), "--headless", "--answers",
                        str(self.answers_path), "--out", str(out), "--rehearsal", "--token",
                        self.softhsm.uri, "--module", module or self.softhsm.module,
                        *share_args(*sheets), *extra, env=env)

    def inventory(self, bundle: Path, *sheets: Path, module: str | None = None,
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.cli("hsm", "inventory", "--token", self.softhsm.uri, "--module",
                        module or self.softhsm.module, "--bundle", str(bundle),
                        *share_args(*sheets), env=env)


def share_args(*sheets: Path) -> tuple[str, ...]:
    return tuple(a for sheet in sheets for a in ("--pin-share", str(sheet)))


def prepare(directory: Path, softhsm: SoftHsm,
            texts: tuple[str, str] | None = None) -> Split:
    """The sample script (or ``texts``) with seeded identity keys, its policy and answers."""
    directory.mkdir(parents=True)
    template, policy_text = texts or sample_texts()
    cast = make_cast(template, SeededRandom("activation-participants"))
    (directory / "script.toml").write_text(cast.script_text)
    (directory / "policy.toml").write_text(policy_text)
    keys = directory / "identities"
    keys.mkdir(mode=0o700)
    identities = {}
    for pid, signer in cast.signers.items():
        assert isinstance(signer, KeyFileSigner)
        signer.save(keys / f"{pid}.pem")
        identities[pid] = keys / f"{pid}.pem"
    (directory / "answers.toml").write_text(
        answers_toml(cast.script, simulated_answers(cast.script, identities)))
    return Split(directory, softhsm, cast.script)


def with_activation(block: str) -> tuple[str, str]:
    """The sample script with another [token.activation] body, and the sample policy."""
    template, policy_text = sample_texts()
    assert SPLIT_BLOCK in template
    return template.replace(SPLIT_BLOCK, block), policy_text


def sheets_of(directory: Path, *officers: str) -> list[Path]:
    return [directory / "pin-shares" / f"pin-share-{o}.txt" for o in officers]


@dataclass(frozen=True)
class Secrets:
    """What must never leave the sheets: both PINs and every share on them."""

    user_pin: str
    so_pin: str
    mnemonics: dict[str, str]  # "alice user" -> the 20 words


def secrets_of(script: Script, secret_out: Path) -> Secrets:
    """The PINs rebuilt here from the sheets (every pair of officers gives the same ones)."""
    activation = script.token.activation
    pins = {}
    for which in ("user", "so"):
        found = {combine_pin(activation, read_sheets(sheets_of(secret_out, *pair), which)
                             )[0].decode() for pair in (OFFICERS[:2], OFFICERS[1:],
                                                        OFFICERS[::2])}
        assert len(found) == 1
        pins[which] = found.pop()
        assert re.fullmatch(r"[0-9a-f]{32}", pins[which])
    mnemonics = {f"{officer} {which}": read_sheet(sheet, which)[1]
                 for officer, sheet in zip(OFFICERS, sheets_of(secret_out, *OFFICERS),
                                           strict=True) for which in ("user", "so")}
    assert pins["user"] != pins["so"]
    return Secrets(pins["user"], pins["so"], mnemonics)


def leaks(secrets: Secrets, haystacks: dict[str, bytes]) -> list[str]:
    """Where a PIN, a share or any 4 of its words in a row (any separator) occur.

    A PIN counts as leaked when any 10 of its hex digits in a row occur (either case), or 5
    of its raw bytes: part of a PIN is a leak too (by chance, 10 given hex digits turn up
    in a bundle's digests with odds of about 1 in 10 million).
    """
    needles: dict[str, bytes] = {}
    for name, pin in (("user PIN", secrets.user_pin), ("SO PIN", secrets.so_pin)):
        raw = bytes.fromhex(pin)
        for i in range(len(pin) - 9):
            needles[f"{name} digits {i + 1}..{i + 10}"] = pin[i:i + 10].encode()
            needles[f"{name} digits {i + 1}..{i + 10} (upper case)"] = (
                pin[i:i + 10].upper().encode())
        for i in range(len(raw) - 4):
            needles[f"{name} raw bytes {i + 1}..{i + 5}"] = raw[i:i + 5]
    for name, mnemonic in secrets.mnemonics.items():
        needles[f"{name} share"] = mnemonic.encode()
    found = [f"{what} in {where}" for what, needle in needles.items()
             for where, hay in haystacks.items() if needle in hay]
    for name, mnemonic in secrets.mnemonics.items():
        share_words = mnemonic.split()
        assert len(share_words) == 20
        # Words 1 to 4 are only the set's header (identifier and parameters), which the
        # custodians' seed shares can have too by chance (1 in 32768): every run of four
        # from word 2 on holds some of the share's value.
        for k in range(1, len(share_words) - 3):
            joined = r"[^a-z]+".join(re.escape(w) for w in share_words[k:k + 4])
            pattern = re.compile(rf"(?<![a-z]){joined}(?![a-z])".encode())
            found += [f"{name} share words {k + 1}..{k + 4} in {where}"
                      for where, hay in haystacks.items() if pattern.search(hay.lower())]
    return found


# ------------------------------------------------------------------ the token, seen directly


def user_login_works(softhsm: SoftHsm, pin: str) -> bool:
    """Whether the token takes ``pin`` as its user PIN (pkcs11-tool, not our adapter)."""
    tool = shutil.which("pkcs11-tool")
    require(tool is not None, "pkcs11-tool (opensc)")
    assert tool
    result = subprocess.run([tool, "--module", softhsm.module, "--token-label", softhsm.label,
                             "--login", "--pin", pin, "--list-objects"], capture_output=True,
                            text=True, env=softhsm.env, check=False)
    assert result.returncode == 0 or "CKR_PIN_INCORRECT" in result.stderr, result.stderr
    return result.returncode == 0


def _token(softhsm: SoftHsm) -> Any:
    lib = pkcs11.lib(softhsm.module)
    lib.reinitialize()  # SoftHSM2 reads its token files again: what other processes did
    return lib.get_token(token_label=softhsm.label)


def so_login_works(softhsm: SoftHsm, so_pin: str) -> bool:
    """Whether the token takes ``so_pin`` as its SO PIN (python-pkcs11 directly)."""
    try:
        _token(softhsm).open(rw=True, so_pin=so_pin).close()
    except pkcs11.PinIncorrect:
        return False
    return True


def token_flags(softhsm: SoftHsm) -> int:
    """CK_TOKEN_INFO flags: SoftHSM2 sets CKF_USER_PIN_COUNT_LOW after a wrong user PIN."""
    return int(_token(softhsm).flags)


def spy(softhsm: SoftHsm, log: Path) -> tuple[str, dict[str, str]]:
    """OpenSC's pkcs11-spy in front of the token's module: (module, env) logging every call."""
    module = next((m for m in SPY_MODULES if Path(m).is_file()), None)
    require(module is not None, "pkcs11-spy (opensc)")
    assert module
    return module, {**softhsm.env, "PKCS11SPY": softhsm.module, "PKCS11SPY_OUTPUT": str(log)}


def token_calls(log: Path) -> list[str]:
    """The PKCS#11 functions the spy saw called ([] when the module was never loaded)."""
    if not log.exists():
        return []
    return re.findall(r"^\d+: (C_\w+)", log.read_text(errors="replace"), re.M)


def assert_refused(result: subprocess.CompletedProcess[str], code: int, first: str) -> None:
    """Exit ``code``, nothing on stdout, and one sentence (``first``) and a hint on stderr."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == first, result.stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), result.stderr
    assert "Traceback" not in result.stderr


def activation_record(bundle: Path) -> Any:
    started = json.loads((bundle / "transcript.jsonl").read_text().splitlines()[0])
    assert started["event"] == "ceremony.started"
    return started["payload"]["token"]["activation"]


# ------------------------------------------------------------------ exactly M, not M-1


def test_activate_then_exactly_m_officers_log_in(tmp_path: Path, softhsm: SoftHsm) -> None:
    """`hsm activate` from the transport PINs; M-1 officers refused before the token is
    touched; M officers run a ceremony that verifies; no PIN or share anywhere else."""
    s = prepare(tmp_path / "c", softhsm)
    secret_out = tmp_path / "officers"
    assert user_login_works(softhsm, "123456")  # the transport PIN, before

    activated = s.activate(secret_out)
    assert activated.returncode == 0, activated.stderr
    assert activated.stderr == ""
    assert ("split 2 of 3 among alice, bob, carol" in activated.stdout
            and f"PIN share sheets: {secret_out / 'pin-shares'}" in activated.stdout)
    sheets_dir = secret_out / "pin-shares"
    assert sorted(p.name for p in secret_out.iterdir()) == ["pin-shares"]  # no partial left
    assert sorted(p.name for p in sheets_dir.iterdir()) == [
        f"pin-share-{o}.txt" for o in OFFICERS]
    for path in (secret_out, sheets_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for officer, sheet in zip(OFFICERS, sheets_of(secret_out, *OFFICERS), strict=True):
        assert stat.S_IMODE(sheet.stat().st_mode) == 0o600, sheet
        text = sheet.read_text()
        assert text.startswith("REHEARSAL: not a real PIN share\n")  # (--rehearsal)
        assert f"crypto officer {officer.capitalize()} Custodian ({officer})" in text
        assert f"\nofficer: {officer}\n" in text
        assert "any 2 of the 3 officers (alice, bob, carol)" in text
    secrets = secrets_of(s.script, secret_out)

    # The token has the new PINs only (seen with pkcs11-tool and python-pkcs11 directly).
    baseline = token_flags(softhsm)
    assert not baseline & PIN_FLAGS
    assert so_login_works(softhsm, secrets.so_pin)

    # M-1: one officer's sheet is refused before the module is even loaded (the spy saw
    # no call at all), the token's PIN flags are as they were, no bundle is written.
    spy_log = tmp_path / "spy-refused.log"
    module, env = spy(softhsm, spy_log)
    refused = s.run(tmp_path / "refused", *sheets_of(secret_out, "alice"), module=module,
                    env=env)
    assert_refused(refused, 1, QUORUM_ONE)
    assert token_calls(spy_log) == []
    assert token_flags(softhsm) == baseline
    assert not (tmp_path / "refused").exists()
    assert not (tmp_path / "refused.secret").exists()

    # M: alice and bob run the ceremony; it verifies and records who logged in.
    bundle = tmp_path / "bundle"
    done = s.run(bundle, *sheets_of(secret_out, "alice", "bob"))
    assert done.returncode == 0, done.stderr
    assert "sealed: outcome completed" in done.stdout
    verified = s.cli("verify", str(bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert activation_record(bundle) == {"mode": "split", "officers": list(OFFICERS),
                                         "threshold": 2, "presented": ["alice", "bob"]}

    # Inventory with two other officers' sheets, through the spy: it does log in (so the
    # spy is a sound witness of the refusal above), and finds no drift.
    spy_log = tmp_path / "spy-inventory.log"
    module, env = spy(softhsm, spy_log)
    inventory = s.inventory(bundle, *sheets_of(secret_out, "bob", "carol"), module=module,
                            env=env)
    assert inventory.returncode == 0, inventory.stderr
    assert "no drift" in inventory.stdout
    assert "C_Login" in token_calls(spy_log)

    # The transport user PIN is gone; the rebuilt one logs in (after the wrong one, too).
    assert not user_login_works(softhsm, "123456")
    assert not so_login_works(softhsm, softhsm.so_pin)
    assert user_login_works(softhsm, secrets.user_pin)

    # No PIN and no share in the bundle, in any output, or on another officer's sheet.
    haystacks = {str(p.relative_to(tmp_path)): p.read_bytes()
                 for p in sorted(bundle.rglob("*")) if p.is_file()}
    assert {"transcript.jsonl", "script.toml", "SHA256SUMS"} <= {Path(h).name
                                                                 for h in haystacks}
    # Nor on the custodians' (seed) share sheets the ceremony wrote beside the bundle.
    custodians = sorted(p for p in (tmp_path / "bundle.secret").rglob("*") if p.is_file())
    assert len([p for p in custodians if p.suffix == ".txt"]) == 3
    haystacks.update({str(p.relative_to(tmp_path)): p.read_bytes() for p in custodians})
    haystacks.update({where: text.encode() for where, text in s.outputs.items()})
    assert len(s.outputs) == 10  # activate, run x2, verify, inventory: stdout and stderr
    assert leaks(secrets, haystacks) == []
    alices = Secrets(secrets.user_pin, secrets.so_pin, {
        k: v for k, v in secrets.mnemonics.items() if k.startswith("alice ")})
    assert len(alices.mnemonics) == 2
    assert leaks(alices, {o: sheets_of(secret_out, o)[0].read_bytes()
                          for o in ("bob", "carol")}) == []


def test_all_three_officers_log_in_too(tmp_path: Path, softhsm: SoftHsm) -> None:
    """Over the threshold: every officer presents a share; each is checked and recorded."""
    s = prepare(tmp_path / "c", softhsm)
    secret_out = tmp_path / "officers"
    assert s.activate(secret_out).returncode == 0
    bundle = tmp_path / "bundle"
    done = s.run(bundle, *sheets_of(secret_out, "carol", "alice", "bob"))
    assert done.returncode == 0, done.stderr
    verified = s.cli("verify", str(bundle))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert activation_record(bundle)["presented"] == list(OFFICERS)
    assert leaks(secrets_of(s.script, secret_out), {
        **{where: text.encode() for where, text in s.outputs.items()},
        "transcript": (bundle / "transcript.jsonl").read_bytes()}) == []


# ------------------------------------------------------------------ refusals


def _edited(sheet: Path, target: Path, line: str, change: Callable[[str], str]) -> Path:
    """A copy of ``sheet`` with the value of its ``line`` (e.g. "officer") changed."""
    out = []
    for text in sheet.read_text().splitlines(keepends=True):
        key, sep, value = text.partition(":")
        out.append(f"{key}: {change(value.strip())}\n" if sep and key == line else text)
    target.write_text("".join(out))
    return target


def test_bad_pin_shares_are_refused_before_the_token(tmp_path: Path,
                                                     softhsm: SoftHsm) -> None:
    """Every wrong way of presenting PIN shares: one plain sentence, its exit code, no
    traceback, no word of a share printed, nothing written, and no PKCS#11 call at all."""
    s = prepare(tmp_path / "c", softhsm)
    secret_out = tmp_path / "officers"
    assert s.activate(secret_out).returncode == 0
    alice, bob, carol = sheets_of(secret_out, *OFFICERS)
    bob_words = read_sheet(bob, "user")[1].split()
    typo = "xylophone"
    assert typo not in WORD_INDEX_MAP
    fake = tmp_path / "fake"
    fake.mkdir()

    mistyped = _edited(bob, fake / "mistyped.txt", "user-pin-share", lambda v: " ".join(
        [*bob_words[:4], typo, *bob_words[5:]]))
    swapped = _edited(bob, fake / "swapped.txt", "user-pin-share", lambda v: " ".join(
        [*bob_words[:4], bob_words[5], bob_words[4], *bob_words[6:]]))
    assert bob_words[4] != bob_words[5]
    short = _edited(bob, fake / "short.txt", "user-pin-share",
                    lambda v: " ".join(bob_words[:19]))
    alice_as_bob = _edited(alice, fake / "alice-as-bob.txt", "officer", lambda v: "bob")
    so_as_user = _edited(bob, fake / "so-as-user.txt", "user-pin-share",
                         lambda v: read_sheet(bob, "so")[1])
    stranger = _edited(carol, fake / "stranger.txt", "officer", lambda v: "mallory")
    pin_file = s.pin_file("0123456789abcdef0123456789abcdef", "a-pin")

    cases: list[tuple[tuple[str, ...], int, str]] = [
        (("--pin-file", str(pin_file)), 2,
         "ceremony: the script's token is activated by split knowledge: no one knows its "
         "PIN, so --pin-file does not apply [CER-ACTIVATION]"),
        ((), 1, QUORUM_ONE.replace("1 did", "0 did")),
        (share_args(alice), 1, QUORUM_ONE),
        (share_args(alice, alice), 1,
         f"ceremony: {alice}: officer alice presented a PIN share twice [CER-ACTIVATION]"),
        (share_args(carol, alice_as_bob), 1,
         "ceremony: --pin-share: the PIN share presented by bob is the share of alice "
         "[CER-ACTIVATION]"),
        (share_args(alice, mistyped), 2,
         "ceremony: --pin-share: word 5 of bob's PIN share is not a SLIP-39 word"),
        (share_args(alice, swapped), 2,
         "ceremony: --pin-share: bob's PIN share fails its checksum"),
        (share_args(alice, short), 2,
         "ceremony: --pin-share: bob's PIN share has 19 words, not 20"),
        (share_args(alice, so_as_user), 1,
         "ceremony: --pin-share: the PIN shares do not fit together: they are from "
         "different activations of the token (or one is the SO PIN share) [CER-ACTIVATION]"),
        (share_args(alice, stranger), 1,
         "ceremony: --pin-share: 'mallory' is not a crypto officer of this script "
         "[CER-ACTIVATION]"),
        (share_args(alice, s.answers_path), 2,
         f"ceremony: {s.answers_path}: officer: it is not a PIN share sheet (no 'officer' "
         "line)"),
        (share_args(alice, fake / "lost.txt"), 2,
         f"ceremony: {fake / 'lost.txt'}: cannot read the PIN share sheet (No such file or "
         "directory)"),
    ]
    baseline = token_flags(softhsm)
    spy_log = tmp_path / "spy.log"
    module, env = spy(softhsm, spy_log)
    out = tmp_path / "bundle"
    for args, code, first in cases:
        refused = s.run(out, extra=args, module=module, env=env)
        assert_refused(refused, code, first)
        for word in (typo, bob_words[4], bob_words[5]):
            assert not re.search(rf"\b{word}\b", refused.stderr), (word, refused.stderr)
    assert token_calls(spy_log) == []
    assert token_flags(softhsm) == baseline
    assert not out.exists() and not out.with_name("bundle.secret").exists()
    # --pin-share for an inventory needs a bundle: its script names the officers.
    assert_refused(s.cli("hsm", "inventory", "--token", softhsm.uri, *share_args(alice, bob)),
                   2, "ceremony: --pin-share needs --bundle: the bundle's script names the "
                   "officers and the threshold")
    assert leaks(secrets_of(s.script, secret_out), {k: v.encode() for k, v in s.outputs.items()}
                 ) == []


def test_reactivation_with_so_pin_shares(tmp_path: Path, softhsm: SoftHsm) -> None:
    """Two officers' SO-PIN shares re-activate the token with new PINs: the old user-PIN
    shares are refused by the token, the new ones log in, old and new never combine."""
    s = prepare(tmp_path / "c", softhsm)
    first, second = tmp_path / "first", tmp_path / "second"
    assert s.activate(first).returncode == 0
    bundle = tmp_path / "bundle"
    assert s.run(bundle, *sheets_of(first, "alice", "bob")).returncode == 0
    old = secrets_of(s.script, first)

    # One officer's SO-PIN share is not enough to re-activate; the token is not touched.
    assert_refused(s.activate(second, *_so_shares(first, "carol")), 1, QUORUM_ONE)
    assert not second.exists()

    again = s.activate(second, *_so_shares(first, "alice", "carol"))
    assert again.returncode == 0, again.stderr
    assert "split 2 of 3 among alice, bob, carol" in again.stdout
    new = secrets_of(s.script, second)
    assert new.user_pin != old.user_pin and new.so_pin != old.so_pin
    assert so_login_works(softhsm, new.so_pin)

    # The old user-PIN shares combine (they are a valid set) but the token refuses the PIN.
    baseline = token_flags(softhsm)
    assert not baseline & PIN_FLAGS
    assert_refused(s.inventory(bundle, *sheets_of(first, "alice", "bob")), 3,
                   "ceremony: the token refused the PIN")
    # That wrong PIN did reach the token (SoftHSM2 counts it): the flags probe is sound.
    assert token_flags(softhsm) & pkcs11.TokenFlag.USER_PIN_COUNT_LOW
    new_ok = s.inventory(bundle, *sheets_of(second, "bob", "carol"))
    assert new_ok.returncode == 0, new_ok.stderr
    assert "no drift" in new_ok.stdout
    assert not token_flags(softhsm) & PIN_FLAGS  # a right PIN clears the count

    # Old and new shares never combine, also as a share beyond the threshold.
    mixed = ("ceremony: --pin-share: the PIN shares do not fit together: they are from "
             "different activations of the token (or one is the SO PIN share) "
             "[CER-ACTIVATION]")
    new_alice, new_bob = sheets_of(second, "alice", "bob")
    (old_carol,) = sheets_of(first, "carol")
    assert_refused(s.inventory(bundle, new_alice, old_carol), 1, mixed)
    assert_refused(s.inventory(bundle, new_alice, new_bob, old_carol), 1, mixed)
    assert token_flags(softhsm) == baseline

    # The old SO-PIN shares do not re-activate any more; no sheets are left behind.
    third = tmp_path / "third"
    assert_refused(s.activate(third, *_so_shares(first, "alice", "bob")), 3,
                   "ceremony: the token refused the SO PIN")
    assert [p for p in third.rglob("*") if p.is_file()] == []
    assert not (third / "pin-shares").exists()
    assert user_login_works(softhsm, new.user_pin)
    assert not user_login_works(softhsm, old.user_pin)
    assert leaks(new, {k: v.encode() for k, v in s.outputs.items()}) == []
    assert leaks(old, {k: v.encode() for k, v in s.outputs.items()}) == []


def _so_shares(secret_out: Path, *officers: str) -> tuple[str, ...]:
    return tuple(a for sheet in sheets_of(secret_out, *officers)
                 for a in ("--so-pin-share", str(sheet)))


def test_activation_refusals_leave_the_token_as_it_was(tmp_path: Path,
                                                       softhsm: SoftHsm) -> None:
    """A wrong transport SO PIN (exit 3), an existing DIR/pin-shares (exit 2) and two SO
    PIN sources (exit 2): the transport PINs still work, no sheet is written or replaced."""
    s = prepare(tmp_path / "c", softhsm)
    wrong = tmp_path / "wrong"
    assert_refused(s.activate(wrong, "--so-pin-file", str(s.pin_file("000000", "wrong-pin"))),
                   3, "ceremony: the token refused the SO PIN")
    assert [p for p in wrong.rglob("*") if p.is_file()] == []
    assert not (wrong / "pin-shares").exists()

    existing = tmp_path / "existing"
    (existing / "pin-shares").mkdir(parents=True)
    (existing / "pin-shares" / "pin-share-alice.txt").write_text("an earlier sheet\n")
    assert_refused(s.activate(existing), 2,
                   f"ceremony: {existing / 'pin-shares'} already exists; activation never "
                   "overwrites PIN shares")
    assert [p.name for p in (existing / "pin-shares").iterdir()] == ["pin-share-alice.txt"]
    assert (existing / "pin-shares" / "pin-share-alice.txt").read_text() == (
        "an earlier sheet\n")

    both = ("--so-pin-file", str(s.pin_file(softhsm.so_pin)), "--so-pin-share",
            str(existing / "pin-shares" / "pin-share-alice.txt"))
    assert_refused(s.activate(tmp_path / "both", *both), 2,
                   "ceremony: give either --so-pin-file or --so-pin-share, not both")
    assert not (tmp_path / "both").exists()

    assert user_login_works(softhsm, "123456")
    assert so_login_works(softhsm, softhsm.so_pin)


def test_pin_pad_on_softhsm_is_refused(tmp_path: Path, softhsm: SoftHsm) -> None:
    """SoftHSM2 has no PIN pad: a pin-pad script is refused with a sentence (exit 3)."""
    s = prepare(tmp_path / "c", softhsm, with_activation('mode = "pin-pad"\n'))
    assert s.script.token.activation.mode == "pin-pad"
    out = tmp_path / "bundle"
    assert_refused(s.run(out), 3, f"ceremony: the token {softhsm.label!r} has no PIN pad "
                   "[CER-ACTIVATION]")
    assert_refused(s.run(out, extra=("--pin-file", str(s.pin_file("123456", "pin")))), 2,
                   "ceremony: the script's token takes its PIN on its own PIN pad, so "
                   "--pin-file does not apply [CER-ACTIVATION]")
    assert_refused(s.activate(tmp_path / "officers"), 2,
                   "ceremony: the script's token activation is pin-pad, not split "
                   "[CER-ACTIVATION]")
    assert not out.exists() and not (tmp_path / "officers").exists()
    assert user_login_works(softhsm, "123456")


def test_known_pin_scripts(tmp_path: Path, softhsm: SoftHsm) -> None:
    """--pin-share does not apply to a known-PIN script; the sample policy refuses one."""
    s = prepare(tmp_path / "c", softhsm, known_pin_texts())
    assert s.script.token.activation.mode == "known-pin"
    fake = tmp_path / "sheet.txt"
    fake.write_text("officer: alice\nuser-pin-share: not checked\n")
    out = tmp_path / "bundle"
    assert_refused(s.run(out, fake), 2,
                   "ceremony: the script's token activation is known-pin, so --pin-share "
                   "does not apply [CER-ACTIVATION]")
    assert not out.exists()

    # The sample policy allows split and pin-pad only.
    template, policy_text = with_activation('mode = "known-pin"\n')
    assert f'sha256 = "{sha256_hex(policy_text.encode())}"' in template
    strict = tmp_path / "strict"
    strict.mkdir()
    (strict / "script.toml").write_text(template)
    (strict / "policy.toml").write_text(policy_text)
    linted = run_cli("lint", str(strict / "script.toml"))
    assert linted.returncode == 1, linted.stdout + linted.stderr
    assert linted.stdout == ""
    first = linted.stderr.splitlines()[0]
    assert first.startswith("ceremony: ") and first.endswith("[CER-ACTIVATION]"), first
    assert ("known-pin activation of the token is not allowed by policy "
            "'sample-root-policy'") in first
    assert "script.toml: 1 policy violation(s)" in linted.stderr
    assert "Traceback" not in linted.stderr
    # hsm activate checks the same policy before it touches the token.
    activated = run_cli("hsm", "activate", str(strict / "script.toml"), "--secret-out",
                        str(tmp_path / "officers"), "--token", softhsm.uri, "--so-pin-file",
                        str(s.pin_file(softhsm.so_pin)), env=softhsm.env)
    assert activated.returncode == 1, activated.stderr
    assert activated.stderr.splitlines()[0].endswith("[CER-ACTIVATION]")
    assert not (tmp_path / "officers").exists()
    assert user_login_works(softhsm, "123456")


# ------------------------------------------------------------------ rehearsal


def test_rehearsal_activates_by_split_knowledge(tmp_path: Path) -> None:
    """`ceremony rehearse` activates its throwaway token: REHEARSAL-marked sheets in
    OUT/secret/pin-shares, the first two officers log in, nothing secret is printed."""
    require(Path(SoftHsm.module).is_file(), "SoftHSM2")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    env["TMPDIR"] = str(tmp_path)  # where the throwaway token lives (and is removed)
    result = run_cli("rehearse", "--out", str(out), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    sheets_dir = out / "secret" / "pin-shares"
    assert stat.S_IMODE(sheets_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in sheets_dir.iterdir()) == [
        f"pin-share-{o}.txt" for o in OFFICERS]
    for sheet in sheets_dir.iterdir():
        assert sheet.read_text().startswith("REHEARSAL: not a real PIN share\n")
        assert stat.S_IMODE(sheet.stat().st_mode) == 0o600
    assert activation_record(out / "bundle") == {
        "mode": "split", "officers": list(OFFICERS), "threshold": 2,
        "presented": ["alice", "bob"]}
    haystacks = {"stdout": result.stdout.encode(), "stderr": result.stderr.encode()}
    haystacks.update({str(p.relative_to(out)): p.read_bytes()
                      for p in sorted((out / "bundle").rglob("*")) if p.is_file()})
    script = load_script(out / "secret" / "script.toml")
    assert leaks(secrets_of(script, out / "secret"), haystacks) == []
