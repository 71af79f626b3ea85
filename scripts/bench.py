#!/usr/bin/env python3
"""Benchmarks for the performance targets of `ceremony` (prints figures, never asserts).

    .venv/bin/python scripts/bench.py            # 100,000-entry transcript
    .venv/bin/python scripts/bench.py --quick    # 10,000 entries, fewer repeats

Three targets, each measured against a baseline taken in the same run:

1. verify   `ceremony verify` on a synthetic N-entry transcript vs a bare loop that only
            parses the lines (json.loads) and recomputes the SHA-256 chain. Target: <= 2x.
            Also: a per-step breakdown, a cProfile of verify_bundle, and two reference
            loops (the stdlib re-encode check; the bare loop with orjson.loads).
2. help     `ceremony --help` wall time vs `python -c pass`. Target: < 0.3 s.
3. rehearse `ceremony rehearse` wall time vs one `softhsm2-util --init-token`. Target: < 15 s.
4. tui      `ceremony run SCRIPT` from process start to its first screen painted (the app
            runs headless and exits right after, CEREMONY_TUI_EXIT_AFTER_FIRST_SCREEN=1)
            vs `python -c pass`. Target: < 1.5 s.
5. sign     N Ed25519 signatures on one SoftHSM2 token through Pkcs11Token.sign_ed25519 vs
            a bare python-pkcs11 loop holding the private key object (key.sign(data,
            mechanism=EDDSA)), same token, same session, same run. Target: >= 0.9x the bare
            loop's signatures/s. Also shown: the adapter with its key-handle cache emptied
            before every call (a token search per signature, as before the cache).
7. card     a custodian card's signature round trip (CardSigner.sign: connect, SELECT, key
            check, VERIFY, PSO:CDS, reset, host verify) through pcscd + vpcd + the virtual
            card (tests/vcard; pcscd started as the tests' fixture does, under its lock),
            median and p95 of N rounds, vs a bare APDU round trip and an in-process Ed25519
            signature. Target: < 50 ms.

The synthetic bundle is made by the real engine with the test fakes (tests/fakes.py): the
sample script with seeded participant keys, a FakeToken for the transcript and root keys,
and ~N/steps `note` entries added in the middle of every step through Engine.add_note, so
it is a genuine, verifiable bundle (approvals, checkpoints, seal, signed SHA256SUMS). The
writer fsyncs every entry; the bundle is written under /dev/shm (tmpfs), where fsync is
nearly free, so 100k entries take seconds instead of minutes. Timings are best-of-R.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import itertools
import json
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for tests.fakes

import ceremony.verify.core as vcore  # noqa: E402
from ceremony.engine.core import Engine  # noqa: E402
from ceremony.engine.prompts import Answer, Begin, Prompt  # noqa: E402

try:
    import orjson
except ImportError:
    orjson = None  # type: ignore[assignment]

VENV_BIN = Path(sys.executable).parent
CEREMONY = VENV_BIN / "ceremony"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# A few realistic note texts (a witness's remarks), some not ASCII, none outside the BMP.
NOTE_TEXTS = (
    "witness confirms the room has no network",
    "Zoë checked the tamper-evident bag serial: TEB-{i:06d}",
    "camera {i} recording; clock shows 03:04 UTC",
    "custodian left the room for 2 minutes, door log entry {i}",
    "Ünterschrift auf Blatt {i} geprüft — ok",
)


# ---------------------------------------------------------------- output helpers

Row = tuple[str, str, str, str]
TABLE: list[Row] = []


def say(text: str = "") -> None:
    print(text, flush=True)


def best_of(repeat: int, func: Callable[[], object]) -> float:
    return interleaved(repeat, {"": func})[""][0]


def interleaved(repeat: int, funcs: dict[str, Callable[[], object]]
                ) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of `repeat` runs of each function, taking turns.

    CPU is this process's plus its finished children's user+sys time: less disturbed than
    wall time by other processes on a busy machine.
    """
    best = dict.fromkeys(funcs, (float("inf"), float("inf")))
    for _ in range(repeat):
        for name, func in funcs.items():
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            func()
            wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_quiet(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): "
                           f"{result.stderr.decode(errors='replace')[-500:]}")


# ---------------------------------------------------------------- 1. synthetic bundle

def build_bundle(bundle: Path, entries: int) -> int:
    """Run the sample ceremony with fakes, adding notes inside every step; return #entries."""
    from ceremony.adapters.slip39 import Slip39Splitter
    from ceremony.engine.core import Devices
    from ceremony.headless import run_headless
    from ceremony.model.policy import parse_policy
    from ceremony.rehearsal import make_cast, sample_texts, simulated_answers
    from tests.fakes import (
        FakeToken,
        MemorySecrets,
        SeededRandom,
        TickingClock,
        passing_attestation,
    )

    script_text, policy_text = sample_texts()
    cast = make_cast(script_text, SeededRandom("participants"))
    steps = len(cast.script.steps)
    fixed = 12  # the sample ceremony's own entries (3 steps), measured
    per_step = max(0, entries - fixed) // steps
    witness = cast.script.with_role("witness")[0].id

    class NotingEngine(Engine):
        """The real engine; after each step starts, a witness adds `per_step` notes."""

        def submit(self, answer: Answer) -> Prompt:
            prompt = super().submit(answer)
            if isinstance(answer, Begin):
                for i in range(per_step):
                    self.add_note(witness, NOTE_TEXTS[i % len(NOTE_TEXTS)].format(i=i))
            return prompt

    devices = Devices(TickingClock(), SeededRandom("os"), FakeToken(SeededRandom("token")),
                      Slip39Splitter(SeededRandom("slip39")), MemorySecrets())
    engine = NotingEngine.start(cast.script, parse_policy(policy_text, "policy.toml"),
                                cast.script_text.encode(), policy_text.encode(),
                                devices, bundle, rehearsal=True,
                                attestation=passing_attestation(True))
    finished = run_headless(engine, simulated_answers(cast.script),
                            cast.signers, lambda _: None)  # type: ignore[arg-type]
    if finished.outcome != "completed":
        raise RuntimeError(f"the synthetic ceremony ended {finished.outcome}")
    return (bundle / "transcript.jsonl").read_bytes().count(b"\n")


# ---------------------------------------------------------------- 1a. the baseline

def bare_loop(path: Path) -> int:
    """Baseline: read, split, json.loads each line, recompute the SHA-256 chain."""
    data = path.read_bytes()
    prev = "0" * 64
    loads, sha256 = json.loads, hashlib.sha256
    count = 0
    for raw in data[:-1].split(b"\n"):
        if loads(raw)["prev"] != prev:
            raise RuntimeError(f"chain broken at line {count + 1}")
        prev = sha256(raw).hexdigest()
        count += 1
    return count


# The same bare loop as a program of its own, to compare with `ceremony verify` as a
# command: both then pay for starting the interpreter.
BARE_LOOP_PROGRAM = """
import hashlib, json, sys
prev = "0" * 64
for raw in open(sys.argv[1], "rb").read()[:-1].split(b"\\n"):
    if json.loads(raw)["prev"] != prev:
        sys.exit("chain broken")
    prev = hashlib.sha256(raw).hexdigest()
"""


# ---------------------------------------------------------------- 1b. references

def floor_loop(path: Path) -> int:
    """For reference: the bare loop plus the stdlib C re-encode and compare of each line.

    This is what a canonical-form check costs with the json module alone; it is why the
    verifier uses orjson when it is installed (see ceremony/canonical.py).
    """
    decode = json.JSONDecoder().decode
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
    sha256 = hashlib.sha256
    prev = "0" * 64
    count = 0
    for raw in path.read_bytes()[:-1].split(b"\n"):
        value = decode(raw.decode("utf-8"))
        if encode(value).encode("utf-8") != raw or value["prev"] != prev:
            raise RuntimeError("floor loop: line not canonical or chain broken")
        prev = sha256(raw).hexdigest()
        count += 1
    return count


def orjson_bare_loop(path: Path) -> int | None:
    """For reference: the bare loop with orjson.loads instead of json.loads (if installed)."""
    if orjson is None:
        return None
    prev = "0" * 64
    count = 0
    for raw in path.read_bytes()[:-1].split(b"\n"):
        if orjson.loads(raw)["prev"] != prev:
            raise RuntimeError("orjson bare loop: chain broken")
        prev = hashlib.sha256(raw).hexdigest()
        count += 1
    return count


# ---------------------------------------------------------------- 1c. the verify benchmark

def time_steps(bundle: Path, repeat: int) -> list[tuple[str, float]]:
    """Per-step time of verify_bundle (best of `repeat` for each step)."""
    names = ["_" + name for name in vcore.STEP_NAMES]
    best: dict[str, float] = dict.fromkeys(names, float("inf"))

    def timed(name: str, func: Callable[[dict[str, Any], vcore.Report], None]) -> Callable[
            [dict[str, Any], vcore.Report], None]:
        def wrapper(ctx: dict[str, Any], report: vcore.Report) -> None:
            start = time.perf_counter()
            func(ctx, report)
            best[name] = min(best[name], time.perf_counter() - start)
        return wrapper

    with patched([(vcore, n, timed(n, getattr(vcore, n))) for n in names]):
        for _ in range(repeat):
            vcore.verify_bundle(bundle)
    return [(n.lstrip("_"), best[n]) for n in names]


@contextlib.contextmanager
def patched(patches: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Temporarily replace module attributes (here: to time each verifier step)."""
    with contextlib.ExitStack() as stack:
        for target, name, value in patches:
            stack.enter_context(mock.patch.object(target, name, value))
        yield


def profile_verify(bundle: Path, top: int) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    vcore.verify_bundle(bundle)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    for order in ("cumulative", "tottime"):
        out.write(f"--- top {top} by {order} ---\n")
        stats.sort_stats(order).print_stats(top)
    return re.sub(r"\n{3,}", "\n\n", out.getvalue())


def bench_verify(entries: int, repeat: int, workdir: Path, profile: bool) -> None:
    say(f"== 1. verify: synthetic transcript of ~{entries:,} entries")
    bundle = workdir / "bundle"
    start = time.perf_counter()
    count = build_bundle(bundle, entries)
    size = (bundle / "transcript.jsonl").stat().st_size
    say(f"built {bundle} in {time.perf_counter() - start:.1f} s: {count:,} entries, "
        f"{size / 1e6:.1f} MB (engine + fakes, fsync per entry on "
        f"{'tmpfs' if str(workdir).startswith('/dev/shm') else 'disk'})")
    reference = vcore.verify_bundle(bundle)
    if not reference.ok:
        raise RuntimeError(f"the synthetic bundle does not verify: {reference.first_failure}")
    say(f"verify_bundle: VERIFIED, {reference.entries:,} entries, outcome "
        f"{reference.outcome}")

    transcript = bundle / "transcript.jsonl"
    funcs: dict[str, Callable[[], object]] = {
        "a": lambda: bare_loop(transcript),
        "b": lambda: vcore.verify_bundle(bundle),
        "c": lambda: run_quiet([str(CEREMONY), "verify", str(bundle)]),
        "d": lambda: run_quiet([sys.executable, "-c", BARE_LOOP_PROGRAM, str(transcript)]),
        "f": lambda: floor_loop(transcript),
    }
    if orjson is not None:
        funcs["o"] = lambda: orjson_bare_loop(transcript)
    say(f"timing (best of {repeat}, all variants taking turns; load average "
        f"{os.getloadavg()[0]:.2f})...")
    best = interleaved(repeat, funcs)
    (bare, bare_cpu) = best["a"]

    def show(text: str, key: str) -> None:
        wall, cpu = best[key]
        say(f"{text:<48} {wall:7.3f} s {wall / bare:6.2f}x   {cpu:7.3f} s {cpu / bare_cpu:6.2f}x")

    say(f"{'':<48} {'wall':>9} {'ratio':>7}   {'CPU':>9} {'ratio':>7}")
    show("(a) bare loop (json.loads + sha256 chain)", "a")
    show("(b) verify_bundle in-process", "b")
    show("(c) `ceremony verify BUNDLE` subprocess", "c")
    show("(d) bare loop as a subprocess", "d")
    show("(f) reference: (a) + stdlib re-encode check", "f")
    if "o" in best:
        show("(o) reference: (a) with orjson.loads", "o")
    rows = [("b", "verify (b) in-process"), ("c", "verify (c) CLI subprocess"),
            ("f", "reference (a) + stdlib re-encode")]
    if "o" in best:
        rows.append(("o", "reference (a) with orjson.loads"))
    for key, text in rows:
        TABLE.append((text, f"{best[key][0]:.3f} s / {bare:.3f} s",
                      f"{best[key][0] / bare:.2f}x (CPU {best[key][1] / bare_cpu:.2f}x)",
                      "<= 2x" if key in "bc" else "-"))
    TABLE.append(("verify (c) CLI vs (d) bare-loop program", f"{best['c'][0]:.3f} s / "
                  f"{best['d'][0]:.3f} s", f"{best['c'][0] / best['d'][0]:.2f}x", "<= 2x"))
    if "o" in best:
        TABLE.append(("verify (b) vs orjson bare loop", f"{best['b'][0]:.3f} s / "
                      f"{best['o'][0]:.3f} s", f"{best['b'][0] / best['o'][0]:.2f}x", "-"))

    say(f"\nper-step time of verify_bundle (best of {repeat} per step):")
    steps = time_steps(bundle, repeat)
    total = sum(seconds for _, seconds in steps)
    for name, seconds in steps:
        say(f"  {name:<11} {seconds:8.3f} s  {seconds / total:6.1%}")
    if profile:
        say("\ncProfile of verify_bundle (profiling inflates per-call costs):")
        say(profile_verify(bundle, 15))


# ---------------------------------------------------------------- 2. --help

def bench_help(repeat: int) -> None:
    say("\n== 2. `ceremony --help` start-up")
    python = str(VENV_BIN / "python")
    base = best_of(repeat, lambda: run_quiet([python, "-c", "pass"]))
    helped = best_of(repeat, lambda: run_quiet([str(CEREMONY), "--help"]))
    say(f"python -c pass     {base:6.3f} s")
    say(f"ceremony --help    {helped:6.3f} s   (+{helped - base:.3f} s over bare Python)")
    TABLE.append(("ceremony --help (python -c pass)", f"{helped:.3f} s ({base:.3f} s)",
                  f"{helped / base:.1f}x", "< 0.3 s"))
    result = subprocess.run([python, "-X", "importtime", "-m", "ceremony.cli.main", "--help"],
                            capture_output=True, text=True, check=False)
    rows = []
    for text in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", text)
        if match:
            rows.append((int(match[2]), int(match[1]), len(match[3]) // 2, match[4]))
    rows.sort(reverse=True)
    say("biggest imports (-X importtime; cumulative / self, microseconds; depth):")
    for cumulative, own, depth, module in rows[:12]:
        say(f"  {cumulative:8,} {own:8,}  {depth}  {module}")


# ---------------------------------------------------------------- 3. rehearse

def bench_rehearse(repeat: int, workdir: Path) -> None:
    say("\n== 3. `ceremony rehearse`")
    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).is_file():
        say("SoftHSM2 is not installed here: skipped (scripts/setup.sh installs it)")
        TABLE.append(("ceremony rehearse", "skipped", "-", "< 15 s"))
        return
    counter = iter(range(10**6))

    def init_token() -> None:
        directory = workdir / f"token-{next(counter)}"
        (directory / "tokens").mkdir(parents=True)
        conf = directory / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {directory / 'tokens'}\n"
                        "objectstore.backend = file\nlog.level = ERROR\n")
        run_quiet([util, "--init-token", "--free", "--label", "bench", "--pin", "123456",
                   "--so-pin", "654321"], env={**os.environ, "SOFTHSM2_CONF": str(conf)})

    def rehearse() -> None:
        run_quiet([str(CEREMONY), "rehearse", "--out",
                   str(workdir / f"rehearsal-{next(counter)}")])

    token = best_of(repeat, init_token)
    total = best_of(repeat, rehearse)
    say(f"softhsm2-util --init-token    {token:6.3f} s")
    say(f"ceremony rehearse --out DIR   {total:6.3f} s   ({os.cpu_count()} CPUs; output on "
        f"{'tmpfs' if str(workdir).startswith('/dev/shm') else 'disk'})")
    TABLE.append(("ceremony rehearse (one init-token)", f"{total:.3f} s ({token:.3f} s)",
                  f"{total / token:.1f}x", "< 15 s"))


# ---------------------------------------------------------------- 4. tui first screen

def bench_tui(repeat: int, workdir: Path) -> None:
    say("\n== 4. `ceremony run SCRIPT`: process start to the first screen painted")
    python = str(VENV_BIN / "python")
    workdir.mkdir(parents=True)
    run_quiet([str(CEREMONY), "sample", str(workdir / "sample")])
    env = {**os.environ, "CEREMONY_TUI_EXIT_AFTER_FIRST_SCREEN": "1"}
    counter = iter(range(10**6))

    def first_screen() -> None:
        result = subprocess.run([str(CEREMONY), "run", str(workdir / "sample" / "script.toml"),
                                 "--out", str(workdir / f"bundle-{next(counter)}"),
                                 "--rehearsal"], capture_output=True, text=True, env=env,
                                check=False)
        if "was not started" not in result.stderr:
            raise RuntimeError(f"the UI did not start: {result.stdout}{result.stderr}")

    base = best_of(repeat, lambda: run_quiet([python, "-c", "pass"]))
    shown = best_of(repeat, first_screen)
    say(f"python -c pass                 {base:6.3f} s")
    say(f"ceremony run: first screen     {shown:6.3f} s   ({os.cpu_count()} CPUs)")
    TABLE.append(("ceremony run, first screen (python -c pass)", f"{shown:.3f} s ({base:.3f} s)",
                  f"{shown / base:.1f}x", "< 1.5 s"))


# ---------------------------------------------------------------- 5. sign

def bench_sign(count: int, repeat: int, workdir: Path) -> None:
    """Signatures/s: our adapter vs a bare python-pkcs11 loop on the same token and session."""
    say(f"\n== sign: {count:,} Ed25519 signatures on SoftHSM2, adapter vs bare python-pkcs11")
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).is_file():
        say("SoftHSM2 is not installed: skipped (scripts/setup.sh installs it)")
        return
    import pkcs11
    from pkcs11 import Attribute, Mechanism, ObjectClass

    from ceremony.adapters.pkcs11_token import Pkcs11Token
    from ceremony.adapters.softhsm import create_token

    # SOFTHSM2_CONF must be set before the module is loaded in this process.
    made = create_token(workdir, "bench-sign")
    token = Pkcs11Token(made.module, made.uri, bytearray(made.pin))
    label, key_id = "bench key", "01"
    try:
        token.generate_ed25519(label, key_id)
        [key] = list(token._session.get_objects({Attribute.LABEL: label,
                                                 Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        data = [f"message {i}".encode() for i in range(count)]

        def bare() -> None:
            for d in data:
                key.sign(d, mechanism=Mechanism.EDDSA)

        def adapter() -> None:
            for d in data:
                token.sign_ed25519(label, key_id, d)

        def uncached() -> None:
            for d in data:
                token._keys.clear()
                token.sign_ed25519(label, key_id, d)

        say(f"timing (best of {repeat}, taking turns; load average "
            f"{os.getloadavg()[0]:.2f})...")
        best = interleaved(repeat, {"bare": bare, "adapter": adapter, "uncached": uncached})
        rate = {name: count / wall for name, (wall, _) in best.items()}
        for name, text in (("bare", "bare python-pkcs11 loop"),
                           ("adapter", "Pkcs11Token.sign_ed25519"),
                           ("uncached", "Pkcs11Token.sign_ed25519, no handle cache")):
            say(f"{text:<44} {rate[name]:9,.0f} sig/s  {rate[name] / rate['bare']:5.2f}x")
        TABLE.append(("sign via adapter (bare python-pkcs11)",
                      f"{rate['adapter']:,.0f}/s ({rate['bare']:,.0f}/s)",
                      f"{rate['adapter'] / rate['bare']:.2f}x", ">= 0.9x"))
    except pkcs11.PKCS11Error as exc:
        say(f"the token failed ({type(exc).__name__}): sign benchmark not measured")
    finally:
        token.close()


# ---------------------------------------------------------------- 6. shares

def bench_shares(repeat: int) -> None:
    """Proving every minimal quorum: at the encrypted-master-secret level vs full combines."""
    import math

    import shamir_mnemonic

    from ceremony.adapters.slip39 import Slip39Splitter

    secret = bytearray(os.urandom(32))
    # 3-of-5 and 5-of-9 are issue 5's targets (under 2 s on a 2-core machine); the others
    # show how the proof grows.
    for threshold, members, exponent in ((2, 3, 1), (3, 5, 1), (5, 9, 1), (5, 10, 1),
                                         (8, 16, 1)):
        count = math.comb(members, threshold)
        say(f"\n== shares: prove all {count:,} quorums of {threshold} of {members} "
            f"(iteration exponent {exponent})")
        splitter = Slip39Splitter(iteration_exponent=exponent)
        _, groups = splitter.split(secret, 1, [(threshold, members)])

        sample = list(itertools.islice(itertools.combinations(groups[0], threshold), 20))

        def ems_level(splitter: Slip39Splitter = splitter, groups: list[list[str]] = groups,
                      threshold: int = threshold, count: int = count) -> None:
            assert splitter.prove_all(groups, 1, [threshold], secret) == count

        def full_combine(sample: list[tuple[str, ...]] = sample) -> None:
            # The baseline: decrypt (PBKDF2) every quorum, as combine_mnemonics does.
            for quorum in sample:
                assert shamir_mnemonic.combine_mnemonics(list(quorum)) == bytes(secret)

        best = interleaved(repeat if count < 1000 else 1,
                           {"ems": ems_level, "full": full_combine})
        ems_per = best["ems"][0] / count
        full_per = best["full"][0] / len(sample)
        say(f"encrypted master secret, all quorums   {best['ems'][0]:8.3f} s "
            f"({ems_per * 1e3:.2f} ms per quorum)")
        say(f"full combine (PBKDF2), {len(sample)} quorums       {best['full'][0]:8.3f} s "
            f"({full_per * 1e3:.2f} ms per quorum; all would take {full_per * count:.1f} s)")
        target = "< 2 s" if (threshold, members) in ((3, 5), (5, 9)) else "(no target)"
        TABLE.append((f"share proof {threshold}-of-{members} ({count:,} quorums)",
                      f"{best['ems'][0]:.2f} s", f"{full_per / ems_per:.0f}x faster", target))


def bench_share_check(repeat: int, workdir: Path) -> None:
    """`ceremony shares check BUNDLE --share-file F` as a custodian runs it, against the
    interpreter's own start-up (`python -c pass`) in the same run."""
    say("\n== shares check: one custodian checks their share against a rehearsal bundle")
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).is_file():
        say("SoftHSM2 is not installed here: skipped (scripts/setup.sh installs it)")
        TABLE.append(("ceremony shares check", "skipped", "-", "< 1 s"))
        return
    out = workdir / "share-check"
    run_quiet([str(CEREMONY), "rehearse", "--out", str(out)])
    bundle = next(out.glob("**/bundle"))
    sheet = sorted(out.glob("**/shares/*.txt"))[0]

    def check() -> None:
        run_quiet([str(CEREMONY), "shares", "check", str(bundle), "--share-file", str(sheet)])

    def startup() -> None:
        run_quiet([sys.executable, "-c", "pass"])

    best = interleaved(repeat, {"check": check, "python": startup})
    say(f"ceremony shares check        {best['check'][0]:6.3f} s")
    say(f"python -c pass (baseline)    {best['python'][0]:6.3f} s")
    TABLE.append(("ceremony shares check", f"{best['check'][0]:.3f} s",
                  f"{best['check'][0] / best['python'][0]:.0f}x python start-up", "< 1 s"))


# ---------------------------------------------------------------- 7. card

def bench_card(rounds: int, workdir: Path) -> None:
    """A custodian card's signature round trip through pcscd, vpcd and the virtual card.

    Each round is what one approval costs: CardSigner.sign over an approval-sized statement
    (connect, SELECT, the application data, the key check, VERIFY, PSO:CDS chained, reset,
    then the signature verified on the host). Baselines from the same run: one bare APDU
    round trip (SELECT on an open connection) and one Ed25519 signature in process.
    """
    import statistics

    say(f"\n== card: {rounds} card signature round trips (CardSigner.sign) through pcscd + "
        "vpcd + the virtual card")
    from tests.pcsc_fixtures import VPCD_DRIVER, VirtualCard, _pcscd, running_pcscd

    pcscd = _pcscd()
    try:
        import smartcard  # noqa: F401
    except ImportError:
        say("pyscard is not installed: skipped (scripts/setup.sh installs it)")
        return
    if pcscd is None or not VPCD_DRIVER.is_file():
        say("pcscd or vsmartcard's vpcd is not installed: skipped (scripts/setup.sh)")
        return
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ceremony.adapters.openpgp_card import OpenPgpCard

    def refuse(why: str) -> None:
        raise RuntimeError(why)

    workdir.mkdir(parents=True, exist_ok=True)
    statement = json.dumps({"type": "ceremony.approval.v1", "ceremony": "sample-root-2026",
                            "participant": "alice", "step": "provision-root-key",
                            "script_sha256": "a" * 64, "step_digest": "b" * 64,
                            "head": "c" * 64, "time": "2026-01-01T00:00:00.000000Z",
                            "note": "x" * 120}, sort_keys=True).encode()
    (workdir / "pcscd").mkdir(parents=True)
    with running_pcscd(workdir / "pcscd", pcscd, refuse) as stack:
        card = VirtualCard(stack, workdir / "card.json").create()
        card.insert()
        try:
            from ceremony.adapters.openpgp_card import CardSigner

            with OpenPgpCard(card.reader) as session:
                public = session.generate(bytearray(b"12345678")).public_key
            signer = CardSigner("alice", lambda: bytearray(b"123456"), reader=card.reader,
                                public_key=public)
            apdus = 0
            raw = OpenPgpCard._transmit_raw

            def counted(self: OpenPgpCard, apdu: list[int]) -> tuple[bytes, int]:
                nonlocal apdus
                apdus += 1
                return raw(self, apdu)

            with mock.patch.object(OpenPgpCard, "_transmit_raw", counted):
                signer.sign(statement)  # warm-up, and the number of commands it takes
            select = [0x00, 0xA4, 0x04, 0x00, 6, *bytes.fromhex("D27600012401")]
            key = Ed25519PrivateKey.generate()
            signs, bare, local = [], [], []
            say(f"timing (load average {os.getloadavg()[0]:.2f})...")
            with OpenPgpCard(card.reader) as session:
                for _ in range(rounds):
                    t = time.perf_counter()
                    session._transmit_raw(list(select))
                    bare.append(time.perf_counter() - t)
            for _ in range(rounds):
                t = time.perf_counter()
                signer.sign(statement)
                signs.append(time.perf_counter() - t)
                t = time.perf_counter()
                key.sign(statement)
                local.append(time.perf_counter() - t)
        finally:
            card.remove()

    def stats(samples: list[float]) -> tuple[float, float]:
        ordered = sorted(samples)
        return (statistics.median(ordered) * 1e3,
                ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1e3)

    rows = (("card signature round trip (CardSigner.sign)", signs),
            ("bare APDU round trip (SELECT, open session)", bare),
            ("Ed25519 signature in process", local))
    for text, samples in rows:
        median, p95 = stats(samples)
        say(f"{text:<46} median {median:8.2f} ms  p95 {p95:8.2f} ms")
    median, p95 = stats(signs)
    say(f"one round trip: {apdus} commands of {len(statement)}-byte statement; "
        f"{median / stats(bare)[0]:.0f}x a bare APDU")
    TABLE.append(("card signature round trip (bare APDU)",
                  f"{median:.1f} ms, p95 {p95:.1f} ms ({stats(bare)[0]:.2f} ms)",
                  f"{median / stats(bare)[0]:.0f}x", "< 50 ms"))


# ---------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="10,000 entries, fewer repeats")
    parser.add_argument("--entries", type=int, help="transcript size (default 100,000; "
                        "10,000 with --quick)")
    parser.add_argument("--repeat", type=int, help="best of how many (default 5; 3 quick)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--only", choices=("verify", "help", "rehearse", "tui", "sign", "shares",
                                           "card"),
                        action="append",
                        help="run only this part (repeatable)")
    parser.add_argument("--signatures", type=int, help="signatures per run of the sign "
                        "part (default 2,000; 500 with --quick)")
    parser.add_argument("--rounds", type=int, help="card signature round trips of the card "
                        "part (default 100; 20 with --quick)")
    parser.add_argument("--workdir", type=Path, help="where to build the bundle (default: "
                        "a temporary directory under /dev/shm when it exists)")
    args = parser.parse_args(argv)
    entries = args.entries or (10_000 if args.quick else 100_000)
    repeat = args.repeat or (3 if args.quick else 5)
    parts = args.only or ["verify", "help", "rehearse", "tui", "sign", "shares", "card"]
    parent = args.workdir or (Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    workdir = Path(tempfile.mkdtemp(prefix="ceremony-bench-", dir=parent))
    say(f"ceremony benchmarks: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"workdir {workdir}")
    try:
        if "verify" in parts:
            bench_verify(entries, repeat, workdir / "verify", not args.no_profile)
        if "help" in parts:
            bench_help(10 if not args.quick else 5)
        if "rehearse" in parts:
            bench_rehearse(repeat, workdir / "rehearse")
        if "tui" in parts:
            bench_tui(repeat, workdir / "tui")
        if "sign" in parts:
            bench_sign(args.signatures or (500 if args.quick else 2000), repeat,
                       workdir / "sign")
        if "shares" in parts:
            bench_shares(repeat)
            bench_share_check(repeat, workdir)
        if "card" in parts:
            bench_card(args.rounds or (20 if args.quick else 100), workdir / "card")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    say("\n== summary")
    widths = [max(len(r[i]) for r in [("target", "measured", "ratio", "goal"), *TABLE])
              for i in range(4)]
    for row in [("target", "measured", "ratio", "goal"), *TABLE]:
        say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
