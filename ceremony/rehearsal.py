"""`ceremony rehearse`: the sample ceremony end to end on a throwaway SoftHSM2 token.

Simulated participants get fresh identity keys (rehearsal key files, marked as such), the
sample script is rewritten with their public keys, and the headless runner answers for
them. Everything secret (share sheets, identity keys) goes to ``OUT/secret``; the public
bundle goes to ``OUT/bundle`` and is verified before the summary is printed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceremony.errors import UsageError
from ceremony.model.answers import Answers, StepAnswers
from ceremony.model.script import Script, parse_script

if TYPE_CHECKING:
    from ceremony.adapters.softhsm import ThrowawayToken
    from ceremony.model.policy import Policy


def sample_texts() -> tuple[str, str]:
    """The packaged sample script and policy, as a user would copy them."""
    data = resources.files("ceremony").joinpath("data")
    return data.joinpath("script.toml").read_text(), data.joinpath("policy.toml").read_text()


def sample_recovery_text() -> str:
    """The packaged sample recovery script (docs/recovery-guide.md)."""
    return resources.files("ceremony").joinpath("data", "recovery.toml").read_text()


@dataclass
class Cast:
    """Simulated participants: the script rewritten with their keys, and their signers."""

    script_text: str
    script: Script
    signers: dict[str, object]


def make_cast(script_text: str, random_bytes: Callable[[int], bytes]) -> Cast:
    """Give every participant of the template a fresh identity key and put it in the script."""
    from ceremony.adapters.identity import KeyFileSigner

    template = parse_script(script_text, "script.toml")
    signers: dict[str, object] = {}
    for participant in template.participants:
        signer = KeyFileSigner.generate(participant.id, random_bytes(32))
        script_text = script_text.replace(participant.public_key, signer.public_key)
        signers[participant.id] = signer
    script = parse_script(script_text, "script.toml")
    return Cast(script_text, script, signers)


def simulated_answers(script: Script, identities: dict[str, Path] | None = None) -> Answers:
    """Answers in which the first eligible people approve and the phrase is typed right."""
    witnesses = tuple(p.id for p in script.with_role("witness"))
    steps = {
        s.id: StepAnswers(s.id, s.approvers[: s.approvals], witnesses[: s.witnesses],
                          s.confirm, None)
        for s in script.steps
    }
    # Whatever the policy's [seal] and [deviations] ask for (ADR 15): the first of these.
    custodians = tuple(p.id for p in script.with_role("custodian"))
    return Answers(script.ceremony_id, identities or {}, steps, "(simulated participants)",
                   deviation_approvals=custodians, seal_witnesses=witnesses)


def answers_toml(script: Script, answers: Answers) -> str:
    """The simulated answers as a file a user can read and reuse with `ceremony run`."""
    lines = [f'ceremony_id = "{script.ceremony_id}"', "", "[identities]",
             "# REHEARSAL identity keys (plain files are allowed in rehearsals only)"]
    lines += [f'{pid} = "{path}"' for pid, path in answers.identities.items()]
    for s in answers.steps.values():
        lines += ["", "[[steps]]", f'id = "{s.step}"']
        if s.approvals:
            lines.append("approvals = [" + ", ".join(f'"{a}"' for a in s.approvals) + "]")
        if s.witnesses:
            lines.append("witnesses = [" + ", ".join(f'"{a}"' for a in s.witnesses) + "]")
        if s.confirm:
            lines.append(f'confirm = "{s.confirm}"')
    for table, field, names in (("seal", "witnesses", answers.seal_witnesses),
                                ("deviations", "approvals", answers.deviation_approvals)):
        if names:
            lines += ["", f"[{table}]", f"{field} = [" + ", ".join(f'"{a}"' for a in names)
                      + "]"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write a file of the secret directory readable by its owner only (0600, like the rest)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} already exists; a rehearsal never overwrites a bundle",
                         hint="choose another --out directory, or remove the old one")


@dataclass
class Rehearsal:
    """A prepared rehearsal: simulated cast, its files under ``secret``, the sample policy."""

    bundle: Path
    secret: Path
    cast: Cast
    policy_text: str
    answers: Answers
    sigs: bytes = b""  # script.toml.sigs: the simulated authorizers' signatures

    @property
    def sigs_path(self) -> Path:
        return self.secret / "script.toml.sigs"

    @property
    def shares(self) -> Path:
        return self.secret / "shares"


def prepare_rehearsal(out: Path, random_bytes: Callable[[int], bytes] = secrets.token_bytes
                      ) -> Rehearsal:
    """Make the cast and write its keys, script, policy and answers under ``OUT/secret``.

    Shared by the headless `ceremony rehearse` and `ceremony rehearse --tui`.
    """
    from ceremony.adapters.identity import KeyFileSigner

    prepare_out(out)
    bundle, secret = out / "bundle", out / "secret"
    script_template, policy_text = sample_texts()
    secret.mkdir(parents=True, mode=0o700)
    cast = make_cast(script_template, random_bytes)
    identities = {}
    (secret / "identities").mkdir(mode=0o700)
    for pid, signer in cast.signers.items():
        assert isinstance(signer, KeyFileSigner)
        path = secret / "identities" / f"{pid}.pem"
        signer.save(path)
        identities[pid] = path
    _write_private(secret / "script.toml", cast.script_text)
    _write_private(secret / "policy.toml", policy_text)
    answers = simulated_answers(cast.script, identities)
    _write_private(secret / "answers.toml", answers_toml(cast.script, answers))
    from ceremony.adapters.system import SystemClock
    from ceremony.model.policy import parse_policy
    from ceremony.transcript import format_time

    sigs = sign_script(cast.script, parse_policy(policy_text, "policy.toml"), cast.signers,
                       format_time(SystemClock().now()))
    _write_private(secret / "script.toml.sigs", sigs.decode())
    return Rehearsal(bundle, secret, cast, policy_text, answers, sigs)


def sign_script(script: Script, policy: Policy, signers: dict[str, object], time: str) -> bytes:
    """SCRIPT.sigs as the first authorizers the policy needs would sign it (simulated),
    in the form `ceremony script sign` writes (docs/script-signing.md)."""
    from ceremony.model import statements as st
    from ceremony.model.authorization import authorizers, signature_line, statement_for

    out = b""
    for pid in authorizers(script, policy)[: policy.authorization.signers]:
        participant, signer = script.participant(pid), signers[pid]
        assert participant is not None
        sign: Callable[[bytes], bytes] = getattr(signer, "sign")  # noqa: B009
        statement = statement_for(script, pid, participant.role, time)
        out += signature_line(statement, sign(st.message(statement)))
    return out


def rehearsal_attestation(script: Script, policy: Policy,
                          say: Callable[[str], None] = print) -> dict[str, Any]:
    """This machine attested for a rehearsal (its own checks waived, and saying so), before
    the throwaway token is made and its PINs drawn (CER-ATTEST)."""
    from ceremony.adapters.softhsm import SOFTHSM_MODULE
    from ceremony.cli.attest import attest_ceremony

    return attest_ceremony(None, script, policy, rehearsal=True, module=SOFTHSM_MODULE,
                           say=say)


@contextlib.contextmanager
def throwaway_token(say: Callable[[str], None] = print) -> Iterator[ThrowawayToken]:
    """A fresh SoftHSM2 token in a temporary directory, removed afterwards."""
    from ceremony.adapters.softhsm import create_token

    workdir = Path(tempfile.mkdtemp(prefix="ceremony-rehearsal-token-"))
    try:
        throwaway = create_token(workdir, f"rehearsal-{secrets.token_hex(4)}")
        say(f"REHEARSAL on a throwaway SoftHSM2 token ({throwaway.label}) with simulated "
            "participants")
        yield throwaway
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def rehearsal_login(throwaway: ThrowawayToken, script: Script, secret: Path
                    ) -> tuple[bytearray, dict[str, object]]:
    """Activate the throwaway token as the script says; the PIN and the login record.

    For split activation the token gets random PINs split among the script's officers,
    their PIN share sheets go to ``secret/pin-shares``, and the first ``threshold``
    simulated officers present theirs; otherwise the transport PIN is used as a known PIN.
    """
    from ceremony.adapters.activation import activate, combine_pin, read_sheets

    activation = script.token.activation
    if activation.mode != "split":
        return bytearray(throwaway.pin), activation.record()
    done = activate(throwaway.module, throwaway.uri, script, throwaway.so_pin, secret,
                    rehearsal=True)
    present = activation.officers[: activation.threshold]
    return combine_pin(activation, read_sheets(
        [done.sheets / f"pin-share-{officer}.txt" for officer in present]))


def rehearse(out: Path, say: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Run the sample ceremony on a fresh SoftHSM2 token; return (bundle, secret dir)."""
    from ceremony.adapters.pkcs11_token import Pkcs11Token
    from ceremony.adapters.qrcodes import BundleCodes
    from ceremony.adapters.sharesheets import ShareSheetDirectory
    from ceremony.adapters.slip39 import Slip39Splitter
    from ceremony.adapters.system import OsRandomness, SystemClock
    from ceremony.adapters.transcript_pdf import BundlePrinter
    from ceremony.engine.core import Devices, Engine
    from ceremony.engine.derive import wipe
    from ceremony.headless import run_headless
    from ceremony.model.authorization import Presented
    from ceremony.model.policy import parse_policy

    r = prepare_rehearsal(out)
    cast = r.cast
    policy = parse_policy(r.policy_text, "policy.toml")
    attested: list[str] = []  # (said after the REHEARSAL line)
    attestation = rehearsal_attestation(cast.script, policy, attested.append)
    with throwaway_token(say) as throwaway:
        for line in attested:
            say(line)
        pin, login = rehearsal_login(throwaway, cast.script, r.secret)
        try:
            token = Pkcs11Token(throwaway.module, throwaway.uri, pin, login=login)
        finally:
            wipe(pin)
        try:
            devices = Devices(SystemClock(), OsRandomness(), token, Slip39Splitter(),
                              ShareSheetDirectory(r.shares, cast.script.ceremony_id),
                              BundleCodes(), BundlePrinter())
            engine = Engine.start(cast.script, policy, cast.script_text.encode(),
                                  r.policy_text.encode(), devices, r.bundle, rehearsal=True,
                                  authorization=Presented(r.sigs, str(r.sigs_path)),
                                  attestation=attestation)
            run_headless(engine, r.answers, cast.signers, say)  # type: ignore[arg-type]
        finally:
            token.close()
    return r.bundle, r.secret
