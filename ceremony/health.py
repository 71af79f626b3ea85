"""NIST SP 800-90B section 4.4 continuous health tests over a ceremony's entropy samples.

The Repetition Count Test (4.4.1) and the Adaptive Proportion Test (4.4.2) run over the
samples a ceremony actually mixes into its seed: the OS generator's bytes, the token's
``C_GenerateRandom`` bytes and custodian dice rolls (docs/entropy.md). They are tripwires
for catastrophic failure (a stuck, constant or heavily biased source), not an entropy
estimate. A failed test raises nothing: :func:`check` returns a :class:`HealthResult` and
the caller decides (the engine stops before a seed exists).

Sample values are secret. Nothing here puts a sample value in a result, a record, a
message or an exception; results hold counts, cutoffs and indices only, and :func:`check`
iterates the caller's buffer without copying it.

Standard library only; the cutoffs are computed exactly with integer arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

#: SP 800-90B's value for the 4.4 tests (its Table 2 is computed for it): at most one
#: false alarm in 2^20 per RCT sample and per APT window when the source meets its H.
DEFAULT_ALPHA = Fraction(1, 2**20)

#: APT window sizes, SP 800-90B 4.4.2: 1024 samples for a binary source, 512 otherwise.
BINARY_WINDOW = 1024
NON_BINARY_WINDOW = 512

#: Assessed min-entropy per byte of the OS generator's and the token's output. Both are
#: conditioned DRBG outputs whose true H is 8 bits per byte if they work; we hold them to
#: 7 because neither comes with an SP 800-90B assessment we can cite for this machine, so
#: full entropy would be a claim, not a measurement (docs/entropy.md, "Chosen H").
OS_MIN_ENTROPY_PER_BYTE = 7.0
TOKEN_MIN_ENTROPY_PER_BYTE = 7.0

#: A fair six-sided die: log2(6) ~ 2.585 bits per roll.
DICE_MIN_ENTROPY_PER_ROLL = math.log2(6)
DICE_FACES = range(1, 7)

TestName = Literal["repetition-count", "adaptive-proportion"]


def _neg_log2_alpha(alpha: Fraction) -> Fraction | float:
    """-log2(alpha), exact when alpha is a power of two (the usual case), else a float."""
    if alpha.numerator == 1 and alpha.denominator & (alpha.denominator - 1) == 0:
        return Fraction(alpha.denominator.bit_length() - 1)
    return math.log2(alpha.denominator) - math.log2(alpha.numerator)


def _max_probability(h: float) -> Fraction:
    """p = 2^-H, the probability of the most likely sample value: exact for integral H,
    otherwise the exact value of the nearest double (the cutoffs cannot tell the
    difference)."""
    if float(h).is_integer():
        return Fraction(1, 2 ** int(h))
    return Fraction(2.0 ** -h)


def alpha_text(alpha: Fraction) -> str:
    """``"2^-20"`` for a power of two, else ``"numerator/denominator"``."""
    if alpha.numerator == 1 and alpha.denominator & (alpha.denominator - 1) == 0:
        return f"2^-{alpha.denominator.bit_length() - 1}"
    return f"{alpha.numerator}/{alpha.denominator}"


def entropy_text(h: float) -> str:
    """H as the transcript records it (no floats there): ``"7"``, or the shortest
    round-tripping decimal (``"2.584962500721156"`` for log2(6))."""
    return str(int(h)) if float(h).is_integer() else repr(float(h))


@lru_cache(maxsize=64)
def rct_cutoff(h: float, alpha: Fraction = DEFAULT_ALPHA) -> int:
    """SP 800-90B 4.4.1: C = 1 + ceil(-log2(alpha) / H).

    A run of C identical samples has probability at most 2^(-H (C - 1)) <= alpha when every
    sample has min-entropy H; C is the smallest such count.
    """
    _check_h(h)
    _check_alpha(alpha)
    ratio = _neg_log2_alpha(alpha) / Fraction(h)  # exact for alpha = 2^-k
    return 1 + math.ceil(ratio)


def binomial_tail(n: int, p: Fraction, c: int) -> Fraction:
    """P(X >= c) for X ~ Binomial(n, p), exactly."""
    if c <= 0:
        return Fraction(1)
    if c > n:
        return Fraction(0)
    a, b = p.numerator, p.denominator
    total = sum(math.comb(n, k) * a**k * (b - a) ** (n - k) for k in range(c, n + 1))
    return Fraction(total, b**n)


@lru_cache(maxsize=64)
def apt_cutoff(window: int, h: float, alpha: Fraction = DEFAULT_ALPHA) -> int:
    """SP 800-90B 4.4.2: the smallest C with P(X >= C) <= alpha, X ~ Binomial(W, 2^-H).

    This is the standard's own definition, ``C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)``,
    and it reproduces its Table 2 (W = 512: H = 1 -> 311, H = 8 -> 13...). It treats all
    W samples of a window as trials although the test's count B starts at 1 for the
    window's first sample, so the exact false-alarm rate is P(1 + Binomial(W - 1, p) >= C).
    The cutoff exact for that is this one or one higher: the standard's value is never the
    more lenient (docs/entropy.md, "The W or W - 1 question").
    """
    _check_h(h)
    _check_alpha(alpha)
    if window < 2:
        raise ValueError("the adaptive proportion window must hold at least 2 samples")
    p = _max_probability(h)
    a, b = p.numerator, p.denominator
    # Integer form of "tail > alpha": sum_k comb(W,k) a^k (b-a)^(W-k) * den > num * b^W.
    limit = alpha.numerator * b**window
    tail = 0
    power_a, power_rest = a**window, 1  # a^k and (b - a)^(W - k), walking k down from W
    for k in range(window, -1, -1):
        tail += math.comb(window, k) * power_a * power_rest
        if tail * alpha.denominator > limit:
            return k + 1
        if k:
            power_a //= a
            power_rest *= b - a
    return 0  # unreachable: P(X >= 0) = 1 > alpha


def _check_h(h: float) -> None:
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError("min-entropy per sample must be a positive number of bits")


def _check_alpha(alpha: Fraction) -> None:
    if not (isinstance(alpha, Fraction) and 0 < alpha < 1):
        raise ValueError("alpha must be a Fraction strictly between 0 and 1")


@dataclass(frozen=True)
class HealthSpec:
    """One entropy source's health-test parameters, with the cutoffs they give.

    ``name`` is the source as the transcript names it (``os``, ``token``...);
    ``min_entropy_per_sample`` is the documented, assessed H in bits;
    ``bits_per_sample`` is the sample width (1 makes the source binary: W = 1024);
    ``alpha`` the false-positive probability; ``values`` the legal sample values
    (default every ``bits_per_sample``-bit value; dice use 1..6).
    """

    name: str
    min_entropy_per_sample: float
    bits_per_sample: int
    alpha: Fraction = DEFAULT_ALPHA
    values: range | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.isascii() or not self.name.isprintable():
            raise ValueError("an entropy source needs a printable ASCII name")
        if not (isinstance(self.bits_per_sample, int) and 1 <= self.bits_per_sample <= 64):
            raise ValueError(f"{self.name}: bits per sample must be between 1 and 64")
        _check_h(self.min_entropy_per_sample)
        _check_alpha(self.alpha)
        values = self.sample_values
        if values.step != 1 or len(values) < 2 or values.start < 0 \
                or values.stop > 2**self.bits_per_sample:
            raise ValueError(f"{self.name}: the sample values must be a contiguous range of "
                             f"at least 2 values within {self.bits_per_sample} bits")
        if self.min_entropy_per_sample > math.log2(len(values)):
            raise ValueError(f"{self.name}: H cannot exceed log2 of the number of sample "
                             f"values ({math.log2(len(values)):g} bits)")
        if not 2 <= self.apt_cutoff <= self.apt_window:
            # C = 1 would fail on every window, C > W never: SP 800-90B wants a test that
            # can fail and does not fail a healthy source.
            raise ValueError(f"{self.name}: these parameters give an adaptive proportion "
                             f"cutoff of {self.apt_cutoff} for a window of "
                             f"{self.apt_window}; the test would be meaningless")

    @property
    def sample_values(self) -> range:
        return self.values if self.values is not None else range(2**self.bits_per_sample)

    @property
    def binary(self) -> bool:
        return self.bits_per_sample == 1

    @property
    def rct_cutoff(self) -> int:
        return rct_cutoff(self.min_entropy_per_sample, self.alpha)

    @property
    def apt_window(self) -> int:
        return BINARY_WINDOW if self.binary else NON_BINARY_WINDOW

    @property
    def apt_cutoff(self) -> int:
        return apt_cutoff(self.apt_window, self.min_entropy_per_sample, self.alpha)


def os_spec(name: str = "os") -> HealthSpec:
    """The OS generator's bytes: 8-bit samples held to H = 7 (docs/entropy.md)."""
    return HealthSpec(name, OS_MIN_ENTROPY_PER_BYTE, 8)


def token_spec(name: str = "token") -> HealthSpec:
    """The token's C_GenerateRandom bytes: 8-bit samples held to H = 7 (docs/entropy.md)."""
    return HealthSpec(name, TOKEN_MIN_ENTROPY_PER_BYTE, 8)


def dice_spec(name: str = "dice") -> HealthSpec:
    """Rolls of a six-sided die typed in by hand: samples 1..6, H = log2(6)."""
    return HealthSpec(name, DICE_MIN_ENTROPY_PER_ROLL, 3, values=DICE_FACES)


def byte_samples(data: bytes | bytearray | memoryview) -> memoryview:
    """View a byte string as 8-bit samples (0..255) without copying the secret.

    The view pins a ``bytearray``: let it go (or ``release()`` it) before resizing the
    buffer; overwriting it in place (``derive.wipe``) is fine."""
    return memoryview(data).cast("B")


@dataclass(frozen=True)
class HealthResult:
    """The outcome of both tests over one source's samples: parameters, counts, indices.

    ``rct_failed_at`` / ``apt_failed_at`` are the 0-based index of the sample at which
    each test first signalled (the run, or the window's count, reached the cutoff), or
    None. Each test stops at its own first failure. No sample value is kept.
    """

    source: str
    samples: int
    bits_per_sample: int
    min_entropy_per_sample: float
    alpha: Fraction
    rct_cutoff: int
    apt_window: int
    apt_cutoff: int
    rct_failed_at: int | None
    apt_failed_at: int | None

    @property
    def passed(self) -> bool:
        return self.rct_failed_at is None and self.apt_failed_at is None

    @property
    def failed_test(self) -> TestName | None:
        """The test that signalled first (the RCT on a tie), or None."""
        if self.rct_failed_at is not None and (self.apt_failed_at is None
                                               or self.rct_failed_at <= self.apt_failed_at):
            return "repetition-count"
        if self.apt_failed_at is not None:
            return "adaptive-proportion"
        return None

    @property
    def failure_index(self) -> int | None:
        """The 0-based sample index of the first failure, or None."""
        if self.failed_test == "repetition-count":
            return self.rct_failed_at
        return self.apt_failed_at

    @property
    def rct_reachable(self) -> bool:
        """Whether the samples were enough for the RCT to fail at all (n >= its cutoff)."""
        return self.samples >= self.rct_cutoff

    @property
    def apt_reachable(self) -> bool:
        """Whether some window held enough samples for the APT to fail at all."""
        return min(self.samples, self.apt_window) >= self.apt_cutoff

    def as_record(self) -> dict[str, Any]:
        """The transcript record: parameters, cutoffs, outcomes; never a sample value."""
        return {
            "source": self.source,
            "samples": self.samples,
            "bits_per_sample": self.bits_per_sample,
            "min_entropy_per_sample": entropy_text(self.min_entropy_per_sample),
            "alpha": alpha_text(self.alpha),
            "standard": "NIST SP 800-90B 4.4",
            "repetition_count": {
                "cutoff": self.rct_cutoff,
                "cutoff_reachable": self.rct_reachable,
                "passed": self.rct_failed_at is None,
                "failed_at": self.rct_failed_at,
            },
            "adaptive_proportion": {
                "window": self.apt_window,
                "cutoff": self.apt_cutoff,
                "cutoff_reachable": self.apt_reachable,
                "passed": self.apt_failed_at is None,
                "failed_at": self.apt_failed_at,
            },
            "passed": self.passed,
        }

    def message(self) -> str:
        """One plain sentence for the operator; no sample value."""
        h, a = entropy_text(self.min_entropy_per_sample), alpha_text(self.alpha)
        if self.passed:
            return (f"the {self.source} entropy source passed the SP 800-90B health tests "
                    f"over {self.samples} samples (H = {h} bits per sample, alpha = {a}; "
                    f"repetition count cutoff {self.rct_cutoff}, adaptive proportion cutoff "
                    f"{self.apt_cutoff} in a window of {self.apt_window})")
        if self.failed_test == "repetition-count":
            detail = (f"the same value came {self.rct_cutoff} times in a row, ending at "
                      f"sample {self.rct_failed_at}")
        else:
            detail = (f"the first value of a {self.apt_window}-sample window occurred "
                      f"{self.apt_cutoff} times in it, the last at sample {self.apt_failed_at}")
        return (f"the {self.source} entropy source failed the SP 800-90B {self.failed_test} "
                f"test: {detail} (H = {h} bits per sample, alpha = {a}); do not use "
                f"its output")

    def __str__(self) -> str:
        return self.message()


def check(samples: Sequence[int] | bytes | bytearray | memoryview,
          spec: HealthSpec) -> HealthResult:
    """Run the Repetition Count and Adaptive Proportion Tests over ``samples``.

    RCT (SP 800-90B 4.4.1): B counts the current run of identical samples, the first
    sample of a run counting 1; it fails at the sample where B reaches ``rct_cutoff``.
    APT (4.4.2): consecutive, non-overlapping windows of W samples; A is a window's first
    sample and B = 1; each later sample equal to A adds 1; it fails at the sample where B
    reaches ``apt_cutoff``. A last, partial window is tested as far as it goes.

    A sample outside ``spec.sample_values`` is a malformed input (a ValueError naming its
    index, never its value); a failed test is a result, not an exception.
    """
    values = spec.sample_values
    rct_limit, window, apt_limit = spec.rct_cutoff, spec.apt_window, spec.apt_cutoff
    rct_at: int | None = None
    apt_at: int | None = None
    run_value = apt_value = -1
    run = apt_count = position = count = 0
    for index, sample in enumerate(samples):
        count += 1
        if isinstance(sample, bool) or not isinstance(sample, int) or sample not in values:
            raise ValueError(f"sample {index} of the {spec.name} entropy source is not one "
                             f"of its values ({values.start}..{values.stop - 1})")
        if rct_at is None:
            if index > 0 and sample == run_value:
                run += 1
            else:
                run_value, run = sample, 1
            if run >= rct_limit:
                rct_at = index
        if apt_at is None:
            if position == 0:
                apt_value, apt_count = sample, 1
            elif sample == apt_value:
                apt_count += 1
            if position > 0 and apt_count >= apt_limit:
                apt_at = index
            position = (position + 1) % window
    return HealthResult(
        source=spec.name, samples=count, bits_per_sample=spec.bits_per_sample,
        min_entropy_per_sample=spec.min_entropy_per_sample, alpha=spec.alpha,
        rct_cutoff=rct_limit, apt_window=window, apt_cutoff=apt_limit,
        rct_failed_at=rct_at, apt_failed_at=apt_at)
