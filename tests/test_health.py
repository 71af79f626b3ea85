"""SP 800-90B 4.4 health tests (ceremony.health): cutoffs against the standard and
independent figures, failures at the right index, good sources passing, and records that
never carry a sample value.

The expected cutoffs are typed from SP 800-90B and from other projects' published
constants, never produced by the code under test; the failure indices are checked against
deliberately naive oracles written here.
"""

from __future__ import annotations

import json
import math
import os
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from ceremony.canonical import canonical_bytes
from ceremony.health import (
    BINARY_WINDOW,
    DEFAULT_ALPHA,
    NON_BINARY_WINDOW,
    HealthResult,
    HealthSpec,
    alpha_text,
    apt_cutoff,
    binomial_tail,
    byte_samples,
    check,
    dice_spec,
    os_spec,
    rct_cutoff,
    token_spec,
)

# SP 800-90B Table 2, the W = 512 (non-binary) column, alpha = 2^-20.
TABLE_2_W512 = {0.5: 410, 1: 311, 2: 177, 4: 62, 8: 13}

# The binary W = 1024 column, by the same definition (1 + CRITBINOM(1024, 2^-H, 1 - 2^-20)).
# H = 0.5 -> 793 is also the reset value (0x319) of the 1024-sample APT cutoff register of
# Nordic's nRF54L15 (no copy of the standard's binary column was at hand to type from).
TABLE_2_W1024 = {0.2: 941, 0.4: 840, 0.5: 793, 0.6: 748, 0.8: 664, 1: 589}


@pytest.mark.parametrize(("h", "cutoff"), sorted(TABLE_2_W512.items()))
def test_apt_cutoffs_match_sp800_90b_table_2_non_binary(h: float, cutoff: int) -> None:
    assert apt_cutoff(NON_BINARY_WINDOW, h) == cutoff


@pytest.mark.parametrize(("h", "cutoff"), sorted(TABLE_2_W1024.items()))
def test_apt_cutoffs_binary_window(h: float, cutoff: int) -> None:
    assert apt_cutoff(BINARY_WINDOW, h) == cutoff


@pytest.mark.parametrize(("window", "h", "log2_alpha", "critbinom"), [
    # Google tock-on-titan (fips_health_tests.h): W = 1024, H = 1.0 -> 624, beside an RCT
    # at alpha = 2^-40.
    (1024, 1.0, 40, 624),
    # Nordic nRF54LS05 datasheet: W = 512, H = 8, alpha = 2^-20: 1 + CRITBINOM(...) = 13.
    (512, 8.0, 20, 12),
])
def test_apt_cutoff_is_one_plus_critbinom_as_others_publish_it(
        window: int, h: float, log2_alpha: int, critbinom: int) -> None:
    assert apt_cutoff(window, h, Fraction(1, 2**log2_alpha)) == 1 + critbinom


def test_the_w_minus_one_reading_does_not_reproduce_table_2() -> None:
    """Why the definition uses W trials: the 'exact' count (the first sample always counts,
    W - 1 trials) gives 1 + smallest c with P(Bin(W-1, p) >= c) <= alpha, which differs
    from Table 2 at H = 0.5, 2, 4, 8. Its machinery is checked against jitterentropy's
    published table (alpha = 2^-30, H = 1/osr, C = 2 + qbinom(1 - 2^-30, 511, 2^-H))."""
    def exact(window: int, h: float, alpha: Fraction) -> int:
        # 1 + the smallest c with P(Bin(W - 1, p) >= c) <= alpha, in integers:
        # the tail's numerator over b^(W-1), accumulated from the top.
        p = Fraction(2.0 ** -h)
        a, b, n = p.numerator, p.denominator, window - 1
        tail = 0
        for c in range(n, -1, -1):
            tail += math.comb(n, c) * a**c * (b - a) ** (n - c)
            if Fraction(tail, b**n) > alpha:
                return 1 + (c + 1)
        raise AssertionError("unreachable")

    jitterentropy = [325, 422, 459, 477, 488, 494, 499, 502]
    assert [exact(512, 1 / osr, Fraction(1, 2**30)) for osr in range(1, 9)] == jitterentropy
    differs = {h for h, c in TABLE_2_W512.items() if exact(512, h, DEFAULT_ALPHA) != c}
    assert differs == {0.5, 2, 4, 8}
    for h in TABLE_2_W512:  # at most one count apart, and never below the standard's value
        assert 0 <= exact(512, h, DEFAULT_ALPHA) - apt_cutoff(512, h) <= 1


@pytest.mark.parametrize(("h", "cutoff"), [
    (1, 21), (2, 11), (0.5, 41), (8, 4), (7, 4), (6, 5), (4, 6), (math.log2(6), 9)])
def test_rct_cutoffs(h: float, cutoff: int) -> None:
    # C = 1 + ceil(20 / H)
    assert rct_cutoff(h) == cutoff


@settings(max_examples=200, deadline=None)
@given(hs.floats(min_value=0.05, max_value=16, allow_nan=False),
       hs.integers(min_value=10, max_value=60))
def test_rct_cutoff_is_the_smallest_run_with_probability_at_most_alpha(
        h: float, log2_alpha: int) -> None:
    c = rct_cutoff(h, Fraction(1, 2**log2_alpha))
    # a run of c has probability 2^(-H (c-1)) <= alpha; a run of c - 1 would exceed alpha
    assert Fraction(h) * (c - 1) >= log2_alpha
    assert Fraction(h) * (c - 2) < log2_alpha


@settings(max_examples=40, deadline=None)
@given(hs.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.5, 7.0, 8.0]),
       hs.sampled_from([10, 20, 30, 40]))
def test_apt_cutoff_bounds_the_false_positive_rate(h: float, log2_alpha: int) -> None:
    alpha = Fraction(1, 2**log2_alpha)
    c = apt_cutoff(512, h, alpha)
    p = Fraction(2.0 ** -h)
    assert binomial_tail(512, p, c) <= alpha < binomial_tail(512, p, c - 1)


def test_cutoffs_fall_as_h_rises() -> None:
    hs_ = [0.25 * k for k in range(2, 33)]
    rct = [rct_cutoff(h) for h in hs_]
    apt = [apt_cutoff(512, h) for h in hs_]
    assert rct == sorted(rct, reverse=True) and apt == sorted(apt, reverse=True)


def test_binomial_tail_by_hand() -> None:
    half = Fraction(1, 2)
    assert binomial_tail(4, half, 3) == Fraction(5, 16)  # (4 + 1) / 16
    assert binomial_tail(4, half, 0) == 1 and binomial_tail(4, half, 5) == 0
    assert binomial_tail(3, Fraction(1, 6), 3) == Fraction(1, 216)


def test_source_specs() -> None:
    assert (os_spec().rct_cutoff, os_spec().apt_window, os_spec().apt_cutoff) == (4, 512, 18)
    assert token_spec().apt_cutoff == 18 and token_spec().name == "token"
    dice = dice_spec()
    assert (dice.rct_cutoff, dice.apt_window, dice.apt_cutoff) == (9, 512, 129)
    assert dice.sample_values == range(1, 7)
    # the dice cutoff is the same with p = 1/6 exactly as with the double nearest 2^-log2(6)
    assert binomial_tail(512, Fraction(1, 6), 129) <= DEFAULT_ALPHA \
        < binomial_tail(512, Fraction(1, 6), 128)
    assert HealthSpec("coin", 1, 1).apt_window == 1024


@pytest.mark.parametrize("kwargs", [
    {"name": "", "min_entropy_per_sample": 7, "bits_per_sample": 8},
    {"name": "x", "min_entropy_per_sample": 0, "bits_per_sample": 8},
    {"name": "x", "min_entropy_per_sample": 9, "bits_per_sample": 8},
    {"name": "x", "min_entropy_per_sample": float("nan"), "bits_per_sample": 8},
    {"name": "x", "min_entropy_per_sample": 3, "bits_per_sample": 3, "values": range(1, 7)},
    {"name": "x", "min_entropy_per_sample": 2, "bits_per_sample": 3, "values": range(1, 9)},
    {"name": "x", "min_entropy_per_sample": 7, "bits_per_sample": 8, "alpha": Fraction(1)},
    {"name": "x", "min_entropy_per_sample": 0.01, "bits_per_sample": 1},  # APT cannot fail
    {"name": "x", "min_entropy_per_sample": 30, "bits_per_sample": 32},  # APT always fails
])
def test_meaningless_specs_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HealthSpec(**kwargs)  # type: ignore[arg-type]


# --- failures at the right index ---------------------------------------------------------

def test_stuck_source_fails_rct_at_the_cutoff() -> None:
    result = check(bytes([0x5A]) * 64, os_spec())
    assert not result.passed
    assert result.failed_test == "repetition-count"
    assert result.failure_index == result.rct_failed_at == 3  # the 4th identical byte
    assert result.apt_failed_at == 17  # the stuck value also swamps the window
    dice = check([4] * 30, dice_spec())
    assert (dice.failed_test, dice.failure_index) == ("repetition-count", 8)


def test_stuck_after_a_good_start() -> None:
    data = bytes([1, 2, 3, 4, 5]) + bytes([9]) * 10
    assert check(data, os_spec()).rct_failed_at == 5 + 3


def test_runs_just_below_the_cutoff_pass_rct() -> None:
    runs = b"".join(bytes([v]) * 3 for v in range(100))  # runs of 3, cutoff 4
    result = check(runs, os_spec())
    assert result.rct_failed_at is None and result.passed


def test_biased_source_fails_apt_not_rct() -> None:
    # every other sample is the window's first value; the others are distinct from it and
    # from their neighbours, so no run ever forms.
    biased = [0xA7 if i % 2 == 0 else (i // 2) % 100 for i in range(512)]
    result = check(biased, os_spec())
    assert result.failed_test == "adaptive-proportion"
    assert result.rct_failed_at is None
    assert result.apt_failed_at == 2 * (18 - 1)  # the 18th occurrence of the first value


def test_a_random_biased_source_fails_apt() -> None:
    rng = random.Random(90)
    data = bytes(0x33 if rng.random() < 0.2 else rng.randrange(256) for _ in range(2048))
    result = check(data, os_spec())
    assert result.apt_failed_at is not None and not result.passed


def test_apt_restarts_in_each_window() -> None:
    # window 1: the first value occurs 17 times (one short); window 2 starts afresh
    first = [7] + [7 if i % 2 else 100 + i % 50 for i in range(1, 33)] + \
        [200 + i % 50 for i in range(33, 512)]
    assert first.count(7) == 17
    second = [8 if i % 2 == 0 else 1 + i % 5 for i in range(40)]
    result = check(first + second, os_spec())
    assert result.rct_failed_at is None
    assert result.apt_failed_at == 512 + 2 * (18 - 1)


def test_the_first_sample_counts_in_the_window() -> None:
    # 17 more copies of the first value make 18 = the cutoff: the first sample counts as 1
    data = [5] + [5 if i % 2 else 6 for i in range(1, 35)]
    assert data.count(5) == 18
    assert check(data, os_spec()).apt_failed_at == 33
    assert check(data[:33], os_spec()).apt_failed_at is None


# --- good sources pass -------------------------------------------------------------------

def test_os_urandom_passes() -> None:
    # a false alarm here has probability about 2^-14 (a run of 4 identical bytes in 1024)
    for spec in (os_spec(), token_spec()):
        result = check(byte_samples(os.urandom(1024)), spec)
        assert result.passed, result.message()
    assert check(byte_samples(bytearray(os.urandom(32))), os_spec()).passed


def test_seeded_uniform_dice_pass() -> None:
    rng = random.Random(20240601)
    rolls = [rng.randint(1, 6) for _ in range(5000)]
    result = check(rolls, dice_spec())
    assert result.passed, result.message()
    assert result.samples == 5000 and result.apt_reachable


def test_reachability_is_reported() -> None:
    hundred = check([1, 2, 3, 4, 5, 6] * 16 + [1, 2, 3, 4], dice_spec())
    assert hundred.rct_reachable and not hundred.apt_reachable  # 100 rolls < cutoff 129
    assert check(os.urandom(32), os_spec()).apt_reachable  # 32 >= 18
    empty = check(b"", os_spec())
    assert empty.passed and not empty.rct_reachable and not empty.apt_reachable


def test_out_of_range_samples_are_refused_without_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        check([1, 2, 0xBEE7], HealthSpec("wide", 8, 8))
    assert "2" in str(caught.value) and "48871" not in str(caught.value)
    with pytest.raises(ValueError, match="sample 1 "):
        check([1, 7, 2], dice_spec())
    with pytest.raises(ValueError):
        check([1, True], dice_spec())  # a bool is an int to Python, not a die face


# --- property tests against naive oracles ------------------------------------------------

def _rct_oracle(samples: list[int], cutoff: int) -> int | None:
    for end in range(cutoff - 1, len(samples)):
        if len(set(samples[end - cutoff + 1:end + 1])) == 1:
            return end
    return None


def _apt_oracle(samples: list[int], window: int, cutoff: int) -> int | None:
    for start in range(0, len(samples), window):
        block = samples[start:start + window]
        for end in range(len(block)):
            if block[:end + 1].count(block[0]) >= cutoff:
                return start + end
    return None


SMALL_ALPHABET = HealthSpec("small", 8, 8)  # RCT cutoff 4, APT cutoff 13 in 512


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.integers(min_value=0, max_value=2), max_size=700))
def test_failure_indices_match_the_oracles(samples: list[int]) -> None:
    result = check(samples, SMALL_ALPHABET)
    assert result.rct_failed_at == _rct_oracle(samples, 4)
    assert result.apt_failed_at == _apt_oracle(samples, 512, 13)
    assert result.passed == (result.rct_failed_at is None and result.apt_failed_at is None)
    if not result.passed:
        indices = [i for i in (result.rct_failed_at, result.apt_failed_at) if i is not None]
        assert result.failure_index == min(indices)


@settings(max_examples=100, deadline=None)
@given(hs.data())
def test_failure_indices_match_the_oracles_across_windows(data: hs.DataObject) -> None:
    # wider alphabets: runs are rarer and the APT count builds over whole windows
    size = data.draw(hs.integers(min_value=2, max_value=60))
    samples = data.draw(hs.lists(hs.integers(0, size - 1), min_size=400, max_size=1300))
    result = check(samples, SMALL_ALPHABET)
    assert result.rct_failed_at == _rct_oracle(samples, 4)
    assert result.apt_failed_at == _apt_oracle(samples, 512, 13)


RUNS_BELOW_CUTOFF = hs.lists(hs.tuples(hs.integers(0, 255), hs.integers(1, 3)), max_size=200)


@settings(max_examples=200, deadline=None)
@given(RUNS_BELOW_CUTOFF)
def test_rct_never_fails_when_no_run_reaches_the_cutoff(runs: list[tuple[int, int]]) -> None:
    samples: list[int] = []
    for value, length in runs:
        if samples and samples[-1] == value:
            value = (value + 1) % 256
        samples += [value] * length  # every run shorter than the cutoff of 4
    assert check(samples, os_spec()).rct_failed_at is None


@settings(max_examples=200, deadline=None)
@given(hs.lists(hs.integers(0, 5), max_size=60), hs.integers(1, 6), hs.integers(9, 20))
def test_rct_fails_exactly_where_an_inserted_run_reaches_the_cutoff(
        prefix: list[int], face: int, length: int) -> None:
    prefix = [v + 1 for v in prefix]
    samples = prefix + [face] * length
    result = check(samples, dice_spec())
    # the run of `face` may have started inside the prefix
    start = len(prefix)
    while start > 0 and samples[start - 1] == face:
        start -= 1
    expected = _rct_oracle(samples, 9)
    assert expected is not None and expected <= start + 8
    assert result.rct_failed_at == expected


# --- records and messages carry no sample value ------------------------------------------

DISTINCTIVE = 0xBEEF  # 48879


def _texts(result: HealthResult) -> list[str]:
    record = result.as_record()
    return [json.dumps(record), canonical_bytes(record).decode(), str(result),
            result.message(), repr(result)]


@pytest.mark.parametrize("samples", [
    [DISTINCTIVE] * 50,  # fails the RCT
    [DISTINCTIVE if i % 2 == 0 else i for i in range(200)],  # fails the APT
    [DISTINCTIVE, *range(1, 300)],  # passes
])
def test_record_never_contains_sample_values(samples: list[int]) -> None:
    result = check(samples, HealthSpec("wide", 8, 16))
    for text in _texts(result):
        lowered = text.lower()
        for needle in ("48879", "beef", "0xbeef", "\\xbe\\xef"):
            assert needle not in lowered, (needle, text)


@settings(max_examples=100, deadline=None)
@given(hs.lists(hs.integers(0, 7), max_size=600))
def test_records_hold_only_parameters_counts_and_indices(samples: list[int]) -> None:
    result = check(samples, HealthSpec("octal", 3, 3))
    record = result.as_record()
    allowed_ints = {result.samples, 3, result.rct_cutoff, result.apt_window,
                    result.apt_cutoff, result.rct_failed_at, result.apt_failed_at}

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            assert value in allowed_ints
        else:
            assert isinstance(value, str)
            assert value in {"octal", "3", "2^-20", "NIST SP 800-90B 4.4"}

    walk(record)
    canonical_bytes(record)  # no floats: the transcript's encoding accepts it


def test_record_shape() -> None:
    record = check(bytes([1]) * 10, os_spec()).as_record()
    assert record == {
        "source": "os", "samples": 10, "bits_per_sample": 8,
        "min_entropy_per_sample": "7", "alpha": "2^-20", "standard": "NIST SP 800-90B 4.4",
        "repetition_count": {"cutoff": 4, "cutoff_reachable": True, "passed": False,
                             "failed_at": 3},
        "adaptive_proportion": {"window": 512, "cutoff": 18, "cutoff_reachable": False,
                                "passed": True, "failed_at": None},
        "passed": False,
    }
    assert check([1, 2], dice_spec()).as_record()["min_entropy_per_sample"] == \
        repr(math.log2(6))
    assert alpha_text(Fraction(1, 1000)) == "1/1000"


def test_failure_message_names_the_test_and_index() -> None:
    message = str(check(bytes([3]) * 8, token_spec()))
    assert "token" in message and "repetition-count" in message and "sample 3" in message
