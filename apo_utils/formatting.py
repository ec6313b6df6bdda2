"""How the kit prints the numbers a reader compares with zero: an interval's bounds and a mean over seeds.

One place for it, so that the README, the book and notebook 06 print a comparison the same way."""

from __future__ import annotations

import math


def number(x: float) -> str:
    """A difference or a bound, signed, to three decimals; exactly 0 as "0", and a value that three decimals would
    show as ±0.000 to two significant digits. "[-0.004, -0.000033]" excludes zero (a verdict) and "[0, +0.017]"
    reaches it (not resolved): printed as [-0.004, -0.000] and [+0.000, +0.017] the two would look alike."""
    if x == 0:
        return "0"
    if abs(x) >= 0.0005:
        return f"{x:+.3f}"
    digits = 1 - math.floor(math.log10(abs(x)))
    shown = f"{x:+.{digits}f}"
    return f"{x:+.{digits - 1}f}" if abs(float(shown)) >= 10 ** (2 - digits) else shown  # 9.996e-5: +0.00010


def bound(x: float | None, upper: bool = False) -> str:
    """An interval's bound (`number`); a JSON record stores a single seed's unbounded interval as null."""
    if x is None:
        return "+∞" if upper else "−∞"
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return number(x)


def interval(diff: float, low: float | None, high: float | None) -> str:
    """"difference [low, high]", as the findings quote it (`tests/test_prose_numbers.py` reads this form)."""
    return f"{number(diff)} [{bound(low)}, {bound(high, True)}]"


def mean_sd(mean: float, sd: float, n: int) -> str:
    """Mean ± sd over n seeds; one seed has no spread to show, so it says so instead of "± 0.000"."""
    return f"{mean:.3f} (1 seed)" if n == 1 else f"{mean:.3f} ± {sd:.3f} ({n})"
