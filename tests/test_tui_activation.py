"""Split-knowledge activation in the UI: the crypto officers type their PIN shares.

Each officer picks their name on the start screen and types the 20 words of their
user-PIN share into a masked field; the share is checked at once (words, checksum, whose
share it is) and the token opens, in the worker, once the threshold of officers has
presented. The full run is on a real SoftHSM2 token activated for the sample script.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Button, Input, OptionList

from ceremony.adapters.activation import activate, combine_pin, read_sheet, split_secret
from ceremony.model.policy import parse_policy
from ceremony.rehearsal import Cast, make_cast, sample_texts
from ceremony.tui.app import CeremonyApp, OpenedDevices, RunSetup, TypedPinShares
from ceremony.tui.devices import token_opener
from ceremony.tui.screens import CeremonyScreen, ErrorModal, StartScreen
from ceremony.verify.core import verify_bundle
from tests.conftest import SoftHsm
from tests.fakes import SeededRandom, passing_attestation
from tests.test_tui_run import FULL_RUN, SIZE
from tests.tui_helpers import (
    drive,
    fake_opener,
    fake_setup,
    flat_text,
    screen_text,
    settle,
    sync,
    type_text,
)

NOT_A_WORD = "qzxvk"  # no SLIP-39 word, and nothing the screen says otherwise


def entries(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (bundle / "transcript.jsonl").read_text().splitlines()]


def softhsm_setup(tmp_path: Path, softhsm: SoftHsm, cast: Cast, policy_text: str
                  ) -> tuple[RunSetup, dict[str, str]]:
    """As `ceremony run SCRIPT --rehearsal` builds it for the sample (split) script with no
    --pin-share: the fixture token is activated first, its sheets in tmp; returns the
    setup and each officer's user-PIN share as read from their sheet."""
    activation = cast.script.token.activation
    done = activate(softhsm.module, softhsm.uri, cast.script,
                    bytearray(softhsm.so_pin.encode()), tmp_path / "officers")
    shares = dict(read_sheet(done.sheets / f"pin-share-{o}.txt") for o in activation.officers)
    pin, _ = combine_pin(activation, {o: shares[o] for o in ("alice", "bob")})
    softhsm.pin = pin.decode()  # for softhsm.objects(), which logs in with pkcs11-tool
    typed = TypedPinShares(activation)
    opener = token_opener(softhsm.module, softhsm.uri, cast.script.ceremony_id,
                          tmp_path / "secret", typed_shares=typed)
    setup = RunSetup(cast.script, parse_policy(policy_text, "policy.toml"),
                     cast.script_text.encode(), policy_text.encode(), tmp_path / "bundle",
                     True, opener, cast.signers,  # type: ignore[arg-type]
                     typed_shares=typed, device_name=softhsm.uri,
                     attestation=passing_attestation(True))
    return setup, shares


def never(pin: bytearray | None) -> OpenedDevices:
    raise AssertionError("the token must not be opened")


def fake_split_setup(tmp_path: Path, cast: Cast, policy_text: str
                     ) -> tuple[RunSetup, dict[str, str]]:
    """The typed-shares start screen with PIN shares of a made-up PIN; the token never opens."""
    activation = cast.script.token.activation
    shares = split_secret(bytearray(SeededRandom("pin")(16)), activation,
                          random_bytes=SeededRandom("split"))
    setup = fake_setup(tmp_path / "bundle", cast, policy_text, open_devices=never,
                       typed_shares=TypedPinShares(activation))
    return setup, shares


def start(app: App[Any]) -> StartScreen:
    assert isinstance(app.screen, StartScreen)
    return app.screen


async def pick(pilot: Pilot[Any], officer: str) -> None:
    """Highlight ``officer`` in the officers' list with the arrow keys and press Enter."""
    officers = start(pilot.app).query_one("#officers", OptionList)
    assert officers.has_focus
    for _ in range(len(officers.options)):
        option = officers.highlighted_option
        if option is not None and option.id == officer:
            break
        await pilot.press("down")
    await pilot.press("enter")
    await settle(pilot)
    assert start(pilot.app).query_one("#share", Input).has_focus


async def enter_share(pilot: Pilot[Any], share: str, *, keys: bool = True) -> None:
    """Type ``share`` key by key (about 60 ms a key under Pilot), or, for the retries,
    paste it into the focused field (the Input takes it as typed), then press Enter."""
    if keys:
        await type_text(pilot, share)
    else:
        field = pilot.app.focused
        assert isinstance(field, Input) and field.id == "share"
        field.post_message(events.Paste(share))
        await pilot.pause()
    await pilot.press("enter")
    await settle(pilot)


async def present(pilot: Pilot[Any], officer: str, share: str, *, keys: bool = True) -> None:
    await pick(pilot, officer)
    await enter_share(pilot, share, keys=keys)


def share_words_shown(share: str, before: str, after: str, said: str = "") -> set[str]:
    """Words of ``share`` on the screen now that were not on it before it was typed (nor in
    ``said``, the UI's own sentence: "type", "check" are SLIP-39 words too), and any two
    of its words in a row."""
    shown = set(re.findall(r"[a-z]+", after)) - set(re.findall(r"[a-z]+", before + said))
    words = share.split()
    pairs = {" ".join(words[i:i + 2]) for i in range(len(words) - 1)}
    return (shown & set(words)) | {p for p in pairs if p in after}


@pytest.mark.softhsm
@sync
async def test_officers_type_their_shares_and_the_ceremony_runs(
        tmp_path: Path, softhsm: SoftHsm, cast: Cast, policy_text: str) -> None:
    """alice, then bob, type their user-PIN shares; the token opens; the run is sealed."""
    setup, shares = softhsm_setup(tmp_path, softhsm, cast, policy_text)
    typed = setup.typed_shares
    assert typed is not None
    app = CeremonyApp(setup)
    # 40 lines: the start screen scrolls at 24 once the temporary directory's long name
    # wraps (longer under pytest-xdist), and this test reads its last lines.
    async with app.run_test(size=(80, 40)) as pilot:
        await settle(pilot)
        text = flat_text(app)
        assert "2 of the 3 crypto officers type their user-PIN shares" in text
        assert "✗ 2 more officers needed before the token can be opened" in text, screen_text(app)
        assert start(app).query_one("#next", Button).disabled
        await present(pilot, "alice", shares["alice"])
        text = flat_text(app)
        assert "Alice Custodian (alice) ✓ 1 of 2" in text
        assert "✗ 1 more officer needed before the token can be opened" in text
        assert app.opened is None
        await present(pilot, "bob", shares["bob"])
        assert app.opened is not None, app.token_error
        assert typed.presented == () and not typed._shares  # wiped once the token had it
        assert not start(app).query("#share")  # the field is gone with the shares
        text = flat_text(app)
        assert "✓ ok token: found: label " + softhsm.label in text
        assert "logged in with the PIN shares of alice, bob" in text
        await pilot.press("c")
        await settle(pilot)
        for _ in app.setup.script.participants:
            await pilot.press("space", "down")
        await pilot.press("b")
        await settle(pilot)
        assert isinstance(app.screen, CeremonyScreen)
        await drive(pilot)
        assert "COMPLETED and sealed" in screen_text(app)
    bundle = tmp_path / "bundle"
    recorded = entries(bundle)
    assert [e["event"] for e in recorded] == FULL_RUN
    login = recorded[0]["payload"]["token"]["activation"]
    assert login == {"mode": "split", "officers": ["alice", "bob", "carol"], "threshold": 2,
                     "presented": ["alice", "bob"]}
    transcript = (bundle / "transcript.jsonl").read_text()
    for share in shares.values():
        assert " ".join(share.split()[:2]) not in transcript
    report = verify_bundle(bundle)
    assert report.ok, report.first_failure
    assert len(softhsm.objects()) == 2  # the root key pair


@pytest.mark.softhsm
@sync
async def test_one_officer_alone_cannot_open(tmp_path: Path, softhsm: SoftHsm, cast: Cast,
                                             policy_text: str) -> None:
    """After alice, the open button and key are disabled; carol's share completes it."""
    setup, shares = softhsm_setup(tmp_path, softhsm, cast, policy_text)
    app = CeremonyApp(setup)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await present(pilot, "alice", shares["alice"])
        screen = start(app)
        assert screen.query_one("#next", Button).disabled
        assert screen.check_action("open_token", ()) is None  # shown, disabled
        assert "✗ 1 more officer needed before the token can be opened" in flat_text(app)
        await pilot.press("o")
        await settle(pilot)
        screen.action_open_token()  # even called directly, one share does not open it
        await settle(pilot)
        assert app.opened is None and app.token_error == ""
        assert not (tmp_path / "bundle").exists()
        officers = screen.query_one("#officers", OptionList)
        alice = officers.get_option("alice")
        assert alice.disabled  # an officer presents once
        await present(pilot, "carol", shares["carol"], keys=False)
        assert app.opened is not None, app.token_error
        assert app.token_info is not None
        assert app.token_info["activation"]["presented"] == ["alice", "carol"]


@sync
async def test_mistyped_word_is_named_by_position_only(tmp_path: Path, cast: Cast,
                                                       policy_text: str) -> None:
    setup, shares = fake_split_setup(tmp_path, cast, policy_text)
    typed = setup.typed_shares
    assert typed is not None
    words = shares["alice"].split()
    app = CeremonyApp(setup)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = screen_text(app)
        screen = start(app)
        wrong = [*words[:4], NOT_A_WORD, *words[5:]]
        await present(pilot, "alice", " ".join(wrong))
        sentence = ("word 5 of alice's PIN share is not a SLIP-39 word: type the words "
                    "exactly as on the PIN share sheet")
        assert screen.share_problem == sentence
        after = screen_text(app)
        assert sentence in flat_text(app)
        assert NOT_A_WORD not in after
        assert not share_words_shown(shares["alice"], before, after, sentence)
        assert screen.query_one("#share", Input).value == ""  # cleared
        assert not typed.presented and not typed._shares
        assert app.opened is None and not (tmp_path / "bundle").exists()  # nothing recorded
        # Two words swapped: every word is a SLIP-39 word, so the checksum catches it.
        swapped = [*words[:6], words[7], words[6], *words[8:]]
        await enter_share(pilot, " ".join(swapped), keys=False)  # alice is still typing
        sentence = ("alice's PIN share fails its checksum: a word is mistyped or out of "
                    "order; check it against the sheet")
        assert screen.share_problem == sentence
        assert not share_words_shown(shares["alice"], before, screen_text(app), sentence)
        # bob typing alice's share: refused as the share of another officer.
        await pilot.press("escape")  # back to the officers' list
        await settle(pilot)
        await present(pilot, "bob", shares["alice"], keys=False)
        sentence = ("the PIN share presented by bob is the share of alice: each officer "
                    "presents their own share")
        assert screen.share_problem == sentence
        assert not share_words_shown(shares["alice"], before, screen_text(app), sentence)
        assert not typed.presented
        # Typed right, in capitals: accepted.
        await pilot.press("escape")
        await settle(pilot)
        await present(pilot, "alice", shares["alice"].upper(), keys=False)
        assert screen.share_problem == "" and typed.presented == ("alice",)
        assert "Alice Custodian (alice) ✓ 1 of 2" in flat_text(app)
        assert not share_words_shown(shares["alice"], before, screen_text(app))
    typed.wipe()


@sync
async def test_typed_share_is_masked(tmp_path: Path, cast: Cast, policy_text: str) -> None:
    """While an officer types, the screen (and a screenshot of it) shows only bullets."""
    setup, shares = fake_split_setup(tmp_path, cast, policy_text)
    app = CeremonyApp(setup)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = screen_text(app)
        await pick(pilot, "bob")
        field = start(app).query_one("#share", Input)
        assert field.password
        assert "PIN share of Bob Custodian (bob)" in flat_text(app)
        await type_text(pilot, shares["bob"])
        await settle(pilot)
        assert field.value == shares["bob"]  # typed, in memory only until Enter
        shown = screen_text(app)
        assert "•" * 20 in shown
        assert not share_words_shown(shares["bob"], before, shown)
        await pilot.press("enter")
        await settle(pilot)
        assert field.value == ""
        assert not share_words_shown(shares["bob"], before, screen_text(app))
    assert setup.typed_shares is not None
    setup.typed_shares.wipe()


@sync
async def test_shares_that_do_not_fit_are_dropped(tmp_path: Path, cast: Cast,
                                                  policy_text: str) -> None:
    """Each share passes its own check, but they are of two activations: combine_pin (in
    the opening worker, before any token) refuses; the shares are wiped, officers retype."""
    activation = cast.script.token.activation
    typed = TypedPinShares(activation)
    first = split_secret(bytearray(SeededRandom("pin-1")(16)), activation,
                         random_bytes=SeededRandom("split-1"))
    second = split_secret(bytearray(SeededRandom("pin-2")(16)), activation,
                          random_bytes=SeededRandom("split-2"))
    opener = token_opener("/nonexistent/module.so", "pkcs11:token=none",
                          cast.script.ceremony_id, None, typed_shares=typed)
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text, open_devices=opener,
                                 typed_shares=typed))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await present(pilot, "alice", first["alice"], keys=False)
        await present(pilot, "bob", second["bob"], keys=False)
        assert isinstance(app.screen, ErrorModal)
        assert "the PIN shares do not fit together" in flat_text(app)
        assert app.opened is None and typed.presented == () and not typed._shares
        await pilot.press("enter")
        await settle(pilot)
        text = flat_text(app)
        assert "✗ 2 more officers needed before the token can be opened" in text, screen_text(app)
        assert app.token_error.startswith("PIN share: the PIN shares do not fit together")
        assert "✓ 1 of 2" not in text
        assert start(app).query_one("#officers", OptionList).has_focus


@sync
async def test_pin_pad_token_opens_without_a_typed_pin(tmp_path: Path,
                                                       policy_text: str) -> None:
    """A pin-pad script: a line says where the PIN goes; the opener gets no PIN."""
    template = sample_texts()[0]
    block = 'mode = "split"\nofficers = ["alice", "bob", "carol"]\nthreshold = 2\n'
    assert block in template
    cast = make_cast(template.replace(block, 'mode = "pin-pad"\n'),
                     SeededRandom("participants"))
    given: list[bytearray | None] = []

    def opener(pin: bytearray | None) -> OpenedDevices:
        given.append(pin)
        return fake_opener()(pin)

    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text, open_devices=opener))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "enter the PIN on the token's PIN pad" in flat_text(app)
        assert not start(app).query(Input)
        await pilot.press("o")
        await settle(pilot)
        assert app.opened is not None and given == [None]
