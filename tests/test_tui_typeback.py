"""Typing a share back after seeing it: completion, per-word marks, checksum, exact match.

The pure part (ceremony.tui.typeback: the word list, completion, RS1024, the typed words in
a bytearray) is checked against shamir_mnemonic; the screen is driven with Pilot on the
fake token. The real SoftHSM2 run types every share back through tests.tui_helpers
(hand_out_shares), as every full-ceremony test does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import shamir_mnemonic
from shamir_mnemonic import rs1024
from shamir_mnemonic.wordlist import WORD_INDEX_MAP, WORDLIST, mnemonic_to_indices
from textual.pilot import Pilot
from textual.widgets import Input, Static

from ceremony.engine.prompts import ConfirmationNeeded, Finished
from ceremony.rehearsal import Cast
from ceremony.tui import typeback
from ceremony.tui.app import CeremonyApp
from ceremony.tui.screens import (
    AbortedModal,
    AbortModal,
    DistributionScreen,
    PrivacyModal,
    PrivateShareScreen,
    TypeBackScreen,
)
from ceremony.tui.shares import ShareSlot
from ceremony.verify.core import verify_bundle
from tests.test_tui_run import SIZE, entries
from tests.tui_helpers import (
    drive,
    fake_setup,
    flat_text,
    open_and_roll_call,
    prefixes,
    screen_text,
    settle,
    sync,
    type_back,
    type_text,
)

NOT_A_WORD = "qzxv"  # no SLIP-39 word, and nothing the screen says otherwise

# ------------------------------------------------------------------ the pure part


def mnemonics(extendable: bool, size: int) -> list[str]:
    groups: list[list[str]] = shamir_mnemonic.generate_mnemonics(
        1, [(2, 3)], bytes(range(size)), b"", extendable=extendable)
    return groups[0]


def test_four_letters_name_every_word() -> None:
    assert len(WORDLIST) == 1024
    for index, word in enumerate(WORDLIST):
        assert typeback.complete(word[:4]) == index
        assert typeback.complete(word) == index
        assert typeback.complete(word.upper()) == index
        assert typeback.complete(word[:3]) is None  # too short to name a word
        assert typeback.complete(word + "x") is None
        assert typeback.suggestion(word[:4]) == word
    assert typeback.complete("acadx") is None  # letters after the fourth must follow it
    assert typeback.complete(NOT_A_WORD) is None
    assert typeback.suggestion("ACAD") == "ACADemic"  # as typed, then the rest
    assert typeback.suggestion("acad ") is None


@pytest.mark.parametrize("extendable", [True, False])
@pytest.mark.parametrize("size", [16, 32])
def test_checksum_agrees_with_shamir_mnemonic(extendable: bool, size: int) -> None:
    custom = b"shamir_extendable" if extendable else b"shamir"
    for mnemonic in mnemonics(extendable, size):
        indices = mnemonic_to_indices(mnemonic)
        assert len(indices) == (20 if size == 16 else 33)
        assert typeback.checksum_ok(indices)
        for position in range(len(indices)):  # any one word changed: refused, as SLIP-39
            changed = list(indices)
            changed[position] = (changed[position] + 1 + position) % 1024
            assert not typeback.checksum_ok(changed)
            assert not rs1024.verify_checksum(changed, custom)
        swapped = list(indices)
        swapped[5], swapped[6] = swapped[6], swapped[5]
        assert typeback.checksum_ok(swapped) == rs1024.verify_checksum(swapped, custom)


def test_typed_share_is_a_bytearray_of_indices_and_is_wiped() -> None:
    shares = mnemonics(True, 16)
    mnemonic = shares[0]
    secret = bytearray(mnemonic.encode())
    words = mnemonic.split()
    assert typeback.word_count(secret) == 20
    typed = typeback.TypedShare(20)
    for word in words[:5]:
        typed.add(WORD_INDEX_MAP[word])
    assert typed.count == 5 and not typed.complete and not typed.checksum_ok()
    typed.back()
    assert typed.count == 4 and not any(typed._data[8:])
    for word in words[4:]:
        typed.add(typeback.complete(word[:4]) or 0)
    assert typed.complete and typed.checksum_ok()
    assert typed.first_mismatch(secret) is None
    with pytest.raises(ValueError, match="every word"):
        typed.add(0)
    other = shares[1].split()
    first = next(i for i, (a, b) in enumerate(zip(words, other, strict=True)) if a != b)
    assert typed.first_mismatch(bytearray(shares[1].encode())) == first + 1
    typed.truncate(3)
    assert typed.count == 3 and not any(typed._data[6:])
    typed.wipe()
    assert typed.count == 0 and typed._data == bytearray(40)
    assert secret == bytearray(mnemonic.encode())  # the shown share is not touched


# ------------------------------------------------------------------ on the screen


async def to_distribution(pilot: Pilot[Any]) -> CeremonyApp:
    app = pilot.app
    assert isinstance(app, CeremonyApp)
    await settle(pilot)
    await open_and_roll_call(pilot)
    await drive(pilot, stop=lambda p, i: isinstance(p, ConfirmationNeeded))
    await type_text(pilot, "PROVISION ROOT KEY")
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press("n")  # run the provisioning
    await settle(pilot)
    assert isinstance(app.screen, DistributionScreen)
    return app


async def show_and_start_typing(pilot: Pilot[Any]) -> TypeBackScreen:
    await pilot.press("enter")
    await settle(pilot)
    assert isinstance(pilot.app.screen, PrivacyModal)
    await pilot.press("y")
    await settle(pilot)
    assert isinstance(pilot.app.screen, PrivateShareScreen)
    await pilot.press("w")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, TypeBackScreen)
    return screen


def tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text))


def runs(share: list[str], text: str) -> list[str]:
    """Numbered words and any two words of ``share`` in a row that are in ``text``."""
    pairs = [" ".join(share[i:i + 2]) for i in range(len(share) - 1)]
    numbered = [f"{i}. {w}" for i, w in enumerate(share, start=1)]
    return [t for t in pairs + numbered if t in text]


@sync
async def test_type_back_refuses_until_the_share_matches(tmp_path: Path, cast: Cast,
                                                         policy_text: str) -> None:
    """A mistyped word, a wrong SLIP-39 word, another custodian's share: each refused with
    a sentence naming a position only; the custodian's own share then advances."""
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await to_distribution(pilot)
        assert app.shares is not None
        slot, other_slot = app.shares.slots[0], app.shares.slots[1]
        share, other = slot.words(), other_slot.words()
        n = len(share)
        screen = await show_and_start_typing(pilot)
        field = screen.query_one("#word", Input)
        assert field.has_focus
        # Typing starts: the words are off the screen, the private screen's included.
        private = next(s for s in app.screen_stack if isinstance(s, PrivateShareScreen))
        assert str(private.query_one("#share-words", Static).content) == ""
        start = screen_text(app)
        assert runs(share, start) == []
        assert f"word 1 of {n}:" in start

        # Two words by their first four letters, then a mistyped word.
        await type_text(pilot, prefixes(share[:2]) + NOT_A_WORD + " ")
        await settle(pilot)
        text = flat_text(app)
        assert f"word 3 of {n}: ✗ not a SLIP-39 word; type it again" in text
        assert "2 ✓ 3 ✗ 4 …" in text
        assert NOT_A_WORD not in text and field.value == ""
        assert screen.typed.count == 2

        # Autocomplete: four letters, and the field shows the whole word.
        await type_text(pilot, share[2][:4])
        await settle(pilot)
        assert field.value == share[2][:4] and field._suggestion == share[2]
        assert f"word 3 of {n}: {share[2]}" in screen_text(app)
        await pilot.press("space")
        await settle(pilot)
        assert screen.typed.count == 3 and field.value == ""
        assert f"word 3 of {n}: ✓ a SLIP-39 word" in flat_text(app)
        # No word typed (nor shown) stays on the screen once taken.
        shown = tokens(screen_text(app)) - tokens(start)
        assert not shown & set(share), shown & set(share)

        # Backspace in the empty field goes back one word.
        await pilot.press("backspace")
        await settle(pilot)
        assert screen.typed.count == 2
        assert f"back to word 3 of {n}" in flat_text(app)

        # A wrong word that is a SLIP-39 word: the checksum fails; from word 1 again.
        wrong = list(share)
        wrong[9] = next(w for w in WORDLIST if w != share[9])
        await type_back(pilot, wrong[2:], keys=False)
        assert screen.typed.count == 0 and not slot.delivered
        text = flat_text(app)
        assert "what you typed fails the SLIP-39 checksum" in text
        assert "Type it again from word 1" in text and "1 ▶ 2 …" in text
        assert wrong[9] not in tokens(screen_text(app)) - tokens(start)

        # Another custodian's share: valid, but not this one; named by position only.
        first = next(i for i, (a, b) in enumerate(zip(share, other, strict=True)) if a != b)
        await type_back(pilot, other, keys=False)
        text = flat_text(app)
        assert f"✗ word {first + 1} does not match your share" in text
        assert screen.typed.count == first and not slot.delivered
        assert runs(other, screen_text(app)) == []
        assert not (tokens(screen_text(app)) - tokens(start)) & set(other)
        assert isinstance(app.screen, TypeBackScreen)

        # The right words from there: it matches, the share is wiped, the next one waits.
        secret = slot.secret
        await type_back(pilot, share[first:], keys=False)
        assert isinstance(app.screen, DistributionScreen)
        assert slot.delivered and secret == bytearray(len(secret))
        assert not screen.typed._data.strip(b"\0")
        assert not other_slot.delivered
        text = flat_text(app)
        assert "typed back" in text and "2 share(s) still to hand out" in text
        assert runs(share, screen_text(app)) == [] and runs(other, screen_text(app)) == []
        transcript = (tmp_path / "bundle" / "transcript.jsonl").read_text()
        assert " ".join(share[:2]) not in transcript


@sync
async def test_nothing_skips_the_type_back_but_abort(tmp_path: Path, cast: Cast,
                                                     policy_text: str) -> None:
    """Esc goes back to the share (what was typed is dropped), then back to the list with
    the share still to hand out; continuing is refused; the ceremony's abort ends it."""
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await to_distribution(pilot)
        assert app.shares is not None and app.engine is not None
        slot = app.shares.slots[0]
        share = slot.words()
        screen = await show_and_start_typing(pilot)
        await type_back(pilot, share[:3], keys=False)
        assert screen.typed.count == 3
        await pilot.press("escape")  # see the share again
        await settle(pilot)
        assert isinstance(app.screen, PrivateShareScreen)
        assert screen.typed._data == bytearray(len(screen.typed._data))  # dropped, wiped
        assert all(f"{i}. {w}" in screen_text(app) for i, w in enumerate(share, start=1))
        await pilot.press("w")
        await settle(pilot)
        again = app.screen
        assert isinstance(again, TypeBackScreen) and again is not screen
        assert again.typed.count == 0 and f"word 1 of {len(share)}:" in screen_text(app)
        await pilot.press("escape", "escape")  # back to the share, then hide it
        await settle(pilot)
        assert isinstance(app.screen, DistributionScreen)
        assert not slot.delivered and any(slot.secret)
        assert runs(share, screen_text(app)) == []
        seq = app.engine.writer.seq
        await pilot.press("c")  # continue: refused while shares are still to hand out
        await settle(pilot)
        assert isinstance(app.screen, DistributionScreen) and app.engine.writer.seq == seq
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AbortModal)
        await type_text(pilot, "ABORT")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AbortedModal)
        assert "share sheets removed" in flat_text(app)
        assert not slot.secret.strip(b"\0")  # wiped by the rollback
        assert isinstance(app.engine.next_prompt(), Finished)
        await pilot.press("enter")
        await settle(pilot)
        assert not any(isinstance(s, DistributionScreen) for s in app.screen_stack)
        assert "ABORTED and sealed" in screen_text(app)
    recorded = entries(tmp_path / "bundle")
    assert [e["event"] for e in recorded][-2:] == ["ceremony.aborted", "seal"]
    assert verify_bundle(tmp_path / "bundle").ok


@sync
async def test_enter_takes_the_last_word_and_case_is_ignored(tmp_path: Path, cast: Cast,
                                                             policy_text: str) -> None:
    """A share of its own (SLIP-39 test vector words of the snapshot), typed in capitals,
    whole words, the last one taken by Enter."""
    from tests.test_tui_snapshots import FAKE_SHARE

    slot = ShareSlot("alice", "Alice Custodian", 1, 1, bytearray(FAKE_SHARE.encode()))
    app = CeremonyApp(fake_setup(tmp_path / "bundle", cast, policy_text))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        closed: list[None] = []
        app.push_screen(PrivateShareScreen(slot), closed.append)
        await settle(pilot)
        await pilot.press("w")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TypeBackScreen)
        words = FAKE_SHARE.upper().split()
        field = screen.query_one("#word", Input)
        field.value = " ".join(words[:-1]) + " "  # whole words, in capitals
        await settle(pilot)
        assert screen.typed.count == 19
        await type_text(pilot, words[-1][:4])
        await pilot.press("enter")
        await settle(pilot)
        assert slot.delivered and not slot.secret.strip(b"\0") and closed == [None]
