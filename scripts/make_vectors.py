#!/usr/bin/env python3
"""Regenerate the golden and tamper vectors under tests/vectors: the ONLY writer of them.

    .venv/bin/python scripts/make_vectors.py            # rewrite tests/vectors/{golden,tamper}
    .venv/bin/python scripts/make_vectors.py --out DIR  # write them under DIR instead

The golden bundles come from the real engine driven headless with the seeded fakes of
tests/fakes.py (fixed clock, seeded token, OS randomness and SLIP-39 splitter, share sheets
kept in memory), exactly as tests/test_smoke_engine.py runs it. With those fixed the ceremony
is byte-for-byte reproducible, and tests/test_golden.py checks that it still is. A bundle
never holds a share (shares go to MemorySecrets), so the golden files hold no secret.

Each tamper vector is a copy of the golden bundle with one attack applied and an
``expect.json`` naming the verifier step that must fail and the transcript line it must
name (null where the attack is not on the transcript). tests/vectors/canonical/ is
hand-written (its expected outputs must not come from our own encoder), not made here.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: E402
    Ed25519PrivateKey,
)

from ceremony.adapters.slip39 import Slip39Splitter  # noqa: E402
from ceremony.canonical import canonical_bytes  # noqa: E402
from ceremony.engine.core import (  # noqa: E402
    CHECKSUMS_FILE,
    CHECKSUMS_SIG_FILE,
    SCRIPT_FILE,
    TRANSCRIPT_FILE,
    Devices,
    Engine,
    checksum_list,
)
from ceremony.headless import run_headless  # noqa: E402
from ceremony.model import statements as st  # noqa: E402
from ceremony.model.authorization import BUNDLE_SIGS_FILE, Presented  # noqa: E402
from ceremony.model.policy import parse_policy  # noqa: E402
from ceremony.rehearsal import (  # noqa: E402
    make_cast,
    sample_texts,
    sign_script,
    simulated_answers,
)
from tests.fakes import (  # noqa: E402
    FakeToken,
    MemorySecrets,
    SeededRandom,
    TickingClock,
    passing_attestation,
)

VECTORS = REPO / "tests" / "vectors"
SAMPLE_ID_LINE = 'ceremony_id = "sample-root-2026"'
OTHER_ID = "other-root-2026"
ABORT_REASON = "the witness saw the share sheets printed on an unlisted printer"
ABORT_BEFORE = "close"
SIGNED_AT = "2026-01-01T00:00:00.000000Z"  # when the authorizers signed the script


@dataclasses.dataclass(frozen=True)
class Ceremony:
    """One scripted, seeded ceremony: the variants differ only in these fields."""

    seed_prefix: str = ""  # prefixed to the device seeds; "" is tests/test_smoke_engine.py's
    ceremony_id: str | None = None  # None: the sample script's own id
    abort_before: str | None = None  # abort when this step would begin (after provisioning)


GOLDEN = Ceremony()
OTHER = Ceremony(seed_prefix="other-", ceremony_id=OTHER_ID)
ABORTED = Ceremony(abort_before=ABORT_BEFORE)


def run_ceremony(bundle: Path, which: Ceremony = GOLDEN) -> tuple[FakeToken, MemorySecrets]:
    """Run the scripted ceremony with the seeded fakes into ``bundle`` (a new directory)."""
    script_text, policy_text = sample_texts()
    if which.ceremony_id is not None:
        assert SAMPLE_ID_LINE in script_text, "the sample script's ceremony_id line changed"
        script_text = script_text.replace(SAMPLE_ID_LINE,
                                          f'ceremony_id = "{which.ceremony_id}"')
    cast = make_cast(script_text, SeededRandom("participants"))  # as the `cast` fixture
    p = which.seed_prefix
    token = FakeToken(SeededRandom(p + "token"))
    secrets = MemorySecrets()
    devices = Devices(TickingClock(), SeededRandom(p + "os"), token,
                      Slip39Splitter(SeededRandom(p + "slip39")), secrets)
    policy = parse_policy(policy_text, "policy.toml")
    # Alice and Bob authorize the script (script.toml.sigs, checked at the start and copied
    # into the bundle); the rollback check is waived, as in any rehearsal without a state.
    sigs = sign_script(cast.script, policy, cast.signers, SIGNED_AT)
    engine = Engine.start(cast.script, policy, cast.script_text.encode(), policy_text.encode(),
                          devices, bundle, rehearsal=True,
                          authorization=Presented(sigs, BUNDLE_SIGS_FILE),
                          attestation=passing_attestation(True))
    answers = simulated_answers(cast.script)
    if which.abort_before is not None:
        steps = dict(answers.steps)
        steps[which.abort_before] = dataclasses.replace(steps[which.abort_before],
                                                        abort=ABORT_REASON)
        answers = dataclasses.replace(answers, steps=steps)
    finished = run_headless(engine, answers, cast.signers,  # type: ignore[arg-type]
                            lambda _: None)
    expected = "aborted" if which.abort_before else "completed"
    assert finished.outcome == expected, finished
    return token, secrets


def transcript_private_key(which: Ceremony = GOLDEN) -> Ed25519PrivateKey:
    """The ceremony's transcript key, re-derived from the token seed (its first draw).

    Only an attacker who controls the ceremony's token has it; the tamper vectors use it
    to show what the approval binding still catches when checkpoints and seal are re-signed.
    """
    return Ed25519PrivateKey.from_private_bytes(
        SeededRandom(which.seed_prefix + "token").random_bytes(32))


# ---------------------------------------------------------------- transcript surgery

def read_lines(bundle: Path) -> list[bytes]:
    data = (bundle / TRANSCRIPT_FILE).read_bytes()
    assert data.endswith(b"\n")
    return data[:-1].split(b"\n")


def write_lines(bundle: Path, lines: list[bytes], *, terminated: bool = True) -> None:
    data = b"\n".join(lines) + (b"\n" if terminated else b"")
    (bundle / TRANSCRIPT_FILE).write_bytes(data)


def entries(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


def find(items: list[dict[str, Any]], event: str, step: str | None = None,
         actor: str | None = None) -> int:
    """Index of the first entry with this event (and step, actor); 0-based."""
    for i, e in enumerate(items):
        if e["event"] == event and (step is None or e["step"] == step) and (
                actor is None or e["actor"] == actor):
            return i
    raise LookupError(f"no {event} entry for step {step!r}, actor {actor!r}")


def rechain(items: list[dict[str, Any]], *, resign: Ed25519PrivateKey | None = None,
            root: Ed25519PrivateKey | None = None) -> list[bytes]:
    """Renumber and re-hash the entries honestly, as an attacker who recomputes hashes.

    Without ``resign`` the signed checkpoints and the seal keep their old statements (the
    attacker lacks the transcript key); with it they are rebuilt and signed again.
    """
    out: list[bytes] = []
    prev = "0" * 64
    for seq, e in enumerate(items):
        e = {**e, "seq": seq, "prev": prev}
        if resign is not None and e["event"] == "checkpoint":
            statement = st.checkpoint_statement(ceremony=e["ceremony"], seq=seq - 1, head=prev)
            e["payload"] = {"statement": statement,
                            "signature": st.b64(resign.sign(st.message(statement)))}
        elif resign is not None and e["event"] == "seal":
            old = e["payload"]["statement"]
            statement = {**old, "head": prev, "entries": seq, "time": e["time"]}
            payload = {"statement": statement,
                       "transcript_signature": st.b64(resign.sign(st.message(statement)))}
            if "root_key_signature" in e["payload"]:
                assert root is not None
                payload["root_key_signature"] = st.b64(root.sign(st.message(statement)))
            e["payload"] = payload
        line = canonical_bytes(e)
        out.append(line)
        prev = hashlib.sha256(line).hexdigest()
    return out


def resign_checksums(bundle: Path, key: Ed25519PrivateKey, ceremony: str) -> None:
    sums = checksum_list(bundle)
    statement = st.checksums_statement(ceremony=ceremony, checksums=sums)
    (bundle / CHECKSUMS_FILE).write_bytes(sums)
    (bundle / CHECKSUMS_SIG_FILE).write_bytes(
        (st.b64(key.sign(st.message(statement))) + "\n").encode())


# ---------------------------------------------------------------- the attacks

Expect = dict[str, Any]


@dataclasses.dataclass
class Sources:
    """What the attacks draw on: the golden bundle, the other ceremony, the golden token."""

    golden: Path
    other: Path
    token: FakeToken


def _expect(step: str, line: int | None, detail: str, why: str) -> Expect:
    return {"step": step, "line": line, "detail": detail, "attack": why}


def byte_flipped_entry(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    i = find(entries(lines), "step.started", "provision-root-key")
    old = b'"title":"Generate'
    assert old in lines[i]
    lines[i] = lines[i].replace(old, b'"title":"Gemerate')  # still canonical: only the hash
    write_lines(bundle, lines)
    return _expect("chain", i + 2, f"hash of line {i + 1}",
                   f"one byte of line {i + 1} (the step title) changed; the line stays "
                   "canonical JSON, so the next line's prev no longer matches")


def byte_flipped_syntax(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    i = find(entries(lines), "approval")
    assert lines[i].startswith(b'{"actor"')
    lines[i] = b"[" + lines[i][1:]  # no longer JSON
    write_lines(bundle, lines)
    return _expect("parse", i + 1, "malformed",
                   f"the first byte of line {i + 1} changed; the line is no longer JSON")


def dropped_entry(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    i = find(entries(lines), "witness.ack", "provision-root-key")
    del lines[i]
    write_lines(bundle, lines)
    return _expect("chain", i + 1, "seq is",
                   f"line {i + 1} (a witness acknowledgement) removed")


def reordered_entries(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    i = find(entries(lines), "approval")
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    write_lines(bundle, lines)
    return _expect("chain", i + 1, "seq is",
                   f"lines {i + 1} and {i + 2} (the two custodian approvals) swapped")


def duplicated_entry(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    i = find(entries(lines), "approval")
    lines.insert(i + 1, lines[i])
    write_lines(bundle, lines)
    return _expect("chain", i + 2, "seq is",
                   f"line {i + 1} (a custodian approval) written twice")


def truncated_tail(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    del lines[-1]
    write_lines(bundle, lines)
    return _expect("seal", len(lines), "without a seal",
                   "the last line (the seal) removed; every remaining line is intact")


def truncated_mid_line(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    write_lines(bundle, lines, terminated=False)
    return _expect("parse", len(lines), "not terminated",
                   "the file cut in the middle of its last line (a torn write)")


def spliced_entry(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    theirs = read_lines(src.other)
    i = find(entries(lines), "approval", actor="bob")
    j = find(entries(theirs), "approval", actor="bob")
    assert i == j
    lines[i] = theirs[j]
    write_lines(bundle, lines)
    return _expect("chain", i + 1, "prev does not match",
                   f"line {i + 1} (bob's approval) replaced by bob's approval from ceremony "
                   f"{OTHER_ID!r}, as it is there")


def spliced_entry_rechained(bundle: Path, src: Sources) -> Expect:
    items = entries(read_lines(bundle))
    theirs = entries(read_lines(src.other))
    i = find(items, "approval", actor="bob")
    items[i] = theirs[find(theirs, "approval", actor="bob")]
    write_lines(bundle, rechain(items))
    return _expect("chain", i + 1, "spliced in from another transcript",
                   f"line {i + 1} replaced by bob's approval from ceremony {OTHER_ID!r}, "
                   "then seq and prev of every line recomputed")


def _replay(bundle: Path) -> tuple[list[dict[str, Any]], int]:
    """Wendy's acknowledgement of step 'open' replayed as her acknowledgement of 'close'.

    The attacker moves the entry (its step, seq, time and prev set for its new place) but
    cannot change the statement Wendy signed, which names step 'open' and its head.
    """
    items = entries(read_lines(bundle))
    source = items[find(items, "witness.ack", "open")]
    k = find(items, "witness.ack", "close")
    items[k] = {**source, "step": "close", "time": items[k]["time"]}
    return items, k


def replayed_approval(bundle: Path, src: Sources) -> Expect:
    items, k = _replay(bundle)
    write_lines(bundle, rechain(items))
    c = find(items[k:], "checkpoint") + k
    return _expect("signatures", c + 1, "checkpoint does not cover",
                   f"line {k + 1}: wendy's acknowledgement of step 'open' replayed in step "
                   "'close', every hash recomputed; the next checkpoint (line "
                   f"{c + 1}) signed the old head, so it is the first line that fails")


def replayed_approval_resigned(bundle: Path, src: Sources) -> Expect:
    items, k = _replay(bundle)
    key = transcript_private_key()
    assert st.encode_key(key.public_key().public_bytes_raw()) == \
        items[0]["payload"]["transcript_key"]
    rk = src.token.keys[("sample root key", "01")]
    write_lines(bundle, rechain(items, resign=key, root=rk))
    resign_checksums(bundle, key, items[0]["ceremony"])
    return _expect("quorum", k + 1, "replayed",
                   f"as replayed-approval, by an attacker holding the transcript key and "
                   "the root key: checkpoints, seal and SHA256SUMS re-signed, so only the "
                   f"approval binding catches line {k + 1}")


def forged_seal(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    seal = json.loads(lines[-1])
    forger = Ed25519PrivateKey.from_private_bytes(SeededRandom("forger").random_bytes(32))
    seal["payload"]["transcript_signature"] = st.b64(
        forger.sign(st.message(seal["payload"]["statement"])))
    lines[-1] = canonical_bytes(seal)
    write_lines(bundle, lines)
    return _expect("signatures", len(lines), "transcript-key signature does not verify",
                   "the seal's transcript-key signature replaced by one from another key")


def respelled_seal_signature(bundle: Path, src: Sources) -> Expect:
    lines = read_lines(bundle)
    seal = json.loads(lines[-1])
    payload = seal["payload"]
    payload["transcript_signature"] = b64_flip_padding(payload["transcript_signature"])
    lines[-1] = canonical_bytes(seal)
    write_lines(bundle, lines)
    return _expect("signatures", len(lines), "base64",
                   "the seal's transcript signature re-spelled: the last base64 digit "
                   "changed in its unused low bits, so it decodes to the same signature")


def altered_script(bundle: Path, src: Sources) -> Expect:
    path = bundle / SCRIPT_FILE
    text = path.read_bytes()
    old = b"witnesses = 1\nconfirm"
    assert old in text
    path.write_bytes(text.replace(old, b"witnesses = 0\nconfirm"))
    return _expect("start", 1, "another script",
                   "script.toml changed (the provisioning step needs no witness)")


def extra_file(bundle: Path, src: Sources) -> Expect:
    (bundle / "NOTES.txt").write_bytes(b"added after the ceremony\n")
    return _expect("checksums", None, "files not in SHA256SUMS: NOTES.txt",
                   "a file added to the bundle")


def removed_script_sigs(bundle: Path, src: Sources) -> Expect:
    (bundle / BUNDLE_SIGS_FILE).unlink()
    return _expect("start", 1, f"has no {BUNDLE_SIGS_FILE}",
                   f"{BUNDLE_SIGS_FILE} (the authorizers' signatures over the script) removed")


def _drop_bob(bundle: Path) -> bytes:
    path = bundle / BUNDLE_SIGS_FILE
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if b'"participant":"bob"' not in line]
    assert len(kept) == len(lines) - 1
    path.write_bytes(b"".join(kept))
    return b"".join(kept)


def altered_script_sigs(bundle: Path, src: Sources) -> Expect:
    _drop_bob(bundle)
    return _expect("start", 1, "SHA-256 differs",
                   f"bob's signature removed from {BUNDLE_SIGS_FILE}: the file is no longer "
                   "the one ceremony.started records")


def script_sigs_dropped_resigned(bundle: Path, src: Sources) -> Expect:
    kept = _drop_bob(bundle)
    items = entries(read_lines(bundle))
    record = items[0]["payload"]["authorization"]
    record["file_sha256"] = hashlib.sha256(kept).hexdigest()
    record["signatures"] = [s for s in record["signatures"] if s["participant"] != "bob"]
    key = transcript_private_key()
    rk = src.token.keys[("sample root key", "01")]
    write_lines(bundle, rechain(items, resign=key, root=rk))
    resign_checksums(bundle, key, items[0]["ceremony"])
    return _expect("start", 1, "authorized by 1 of the 2",
                   f"bob's signature removed from {BUNDLE_SIGS_FILE} and ceremony.started's "
                   "record rewritten to match, by an attacker holding the transcript key and "
                   "the root key (every hash, checkpoint, the seal and SHA256SUMS re-signed): "
                   "the policy's quorum of authorizers catches it")


def _rewrite_attestation(bundle: Path, src: Sources,
                         change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite ceremony.started's attestation record as an attacker holding the transcript
    key and the root key would: every hash, checkpoint, the seal and SHA256SUMS re-signed."""
    items = entries(read_lines(bundle))
    change(items[0]["payload"]["attestation"])
    key = transcript_private_key()
    rk = src.token.keys[("sample root key", "01")]
    write_lines(bundle, rechain(items, resign=key, root=rk))
    resign_checksums(bundle, key, items[0]["ceremony"])


def attestation_failed_resigned(bundle: Path, src: Sources) -> Expect:
    def fail_module(record: dict[str, Any]) -> None:
        module = next(c for c in record["checks"] if c["id"] == "CER-ATTEST-MODULE")
        module.update(result="fail", sentence="the PKCS#11 module is not a pinned digest",
                      hint="use the approved module")
        record["passed"] = False

    _rewrite_attestation(bundle, src, fail_module)
    return _expect("start", 1, "PKCS#11 module: the PKCS#11 module is not a pinned digest",
                   "ceremony.started's attestation rewritten to show a failed check (as if "
                   "the engine's gate had been bypassed), re-signed throughout: the "
                   "verifier re-checks the record")


def attestation_waiver_forged_resigned(bundle: Path, src: Sources) -> Expect:
    def waive_module(record: dict[str, Any]) -> None:
        module = next(c for c in record["checks"] if c["id"] == "CER-ATTEST-MODULE")
        module.update(result="waived", waived_by="policy", approved_by=["alice", "bob"],
                      reason="forged", signatures=[])
        record["waived"] = [c["id"] for c in record["checks"] if c["result"] == "waived"]

    _rewrite_attestation(bundle, src, waive_module)
    return _expect("start", 1, "does not allow waiving CER-ATTEST-MODULE",
                   "a policy waiver added to ceremony.started's attestation without the "
                   "policy allowing it or any signature, re-signed throughout")


def missing_signature(bundle: Path, src: Sources) -> Expect:
    (bundle / CHECKSUMS_SIG_FILE).unlink()
    return _expect("bundle", None, "missing SHA256SUMS.sig", "SHA256SUMS.sig removed")


ATTACKS: dict[str, Callable[[Path, Sources], Expect]] = {
    "byte-flipped-entry": byte_flipped_entry,
    "byte-flipped-syntax": byte_flipped_syntax,
    "dropped-entry": dropped_entry,
    "reordered-entries": reordered_entries,
    "duplicated-entry": duplicated_entry,
    "truncated-tail": truncated_tail,
    "truncated-mid-line": truncated_mid_line,
    "spliced-entry": spliced_entry,
    "spliced-entry-rechained": spliced_entry_rechained,
    "replayed-approval": replayed_approval,
    "replayed-approval-resigned": replayed_approval_resigned,
    "forged-seal": forged_seal,
    "respelled-seal-signature": respelled_seal_signature,
    "altered-script": altered_script,
    "extra-file": extra_file,
    "missing-sha256sums-sig": missing_signature,
    "removed-script-sigs": removed_script_sigs,
    "altered-script-sigs": altered_script_sigs,
    "script-sigs-dropped-resigned": script_sigs_dropped_resigned,
    "attestation-failed-resigned": attestation_failed_resigned,
    "attestation-waiver-forged-resigned": attestation_waiver_forged_resigned,
}


# ---------------------------------------------------------------- writing

def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def generate(root: Path) -> None:
    """Write golden/{bundle,other-bundle,aborted-bundle} and tamper/<attack>/ under root."""
    golden = root / "golden"
    token, secrets = run_ceremony(_fresh(golden / "bundle"), GOLDEN)
    assert secrets.shares, "the golden ceremony made no shares"
    for mnemonic in secrets.shares.values():  # no secret may reach a committed file
        for path in (golden / "bundle").rglob("*"):
            assert not path.is_file() or mnemonic.encode() not in path.read_bytes()
    run_ceremony(_fresh(golden / "other-bundle"), OTHER)
    run_ceremony(_fresh(golden / "aborted-bundle"), ABORTED)
    sources = Sources(golden / "bundle", golden / "other-bundle", token)
    tamper = _fresh(root / "tamper")
    for name, attack in ATTACKS.items():
        target = tamper / name / "bundle"
        shutil.copytree(sources.golden, target)
        expect = attack(target, sources)
        (tamper / name / "expect.json").write_text(
            json.dumps(expect, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--out", type=Path, default=VECTORS,
                        help="where to write golden/ and tamper/ (default tests/vectors)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:  # build aside, then swap in whole
        generate(Path(tmp))
        for part in ("golden", "tamper"):
            shutil.copytree(Path(tmp) / part, _fresh(args.out / part))
    print(f"wrote {args.out / 'golden'} and {args.out / 'tamper'}")
    return 0


def b64_flip_padding(text: str) -> str:
    """A second base64 spelling of the same bytes (the unused low bits of the last digit)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = text.rstrip("=")
    last = alphabet.index(body[-1])
    flipped = body[:-1] + alphabet[last ^ 1] + text[len(body):]
    assert base64.b64decode(flipped) == base64.b64decode(text)
    return flipped


if __name__ == "__main__":
    sys.exit(main())
