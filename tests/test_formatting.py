"""How a comparison is printed: a bound that touches zero and one that only rounds to it must not look alike."""

import math

from apo_utils.formatting import bound, interval, mean_sd, number


def test_a_bound_at_zero_and_a_bound_that_rounds_to_zero_read_differently():
    assert bound(0.0) == "0" and bound(-0.0) == "0"
    assert bound(-3.3291748815565385e-05) == "-0.000033"  # 05's MMPO − DPO (truth labels): excludes zero
    assert bound(0.0004) == "+0.00040" and bound(-0.0004878) == "-0.00049"
    assert bound(0.0005) == "+0.001" and bound(0.0167) == "+0.017" and bound(-1.2345) == "-1.234"
    for x in (1e-9, -2.5e-6, 4.99e-4):  # two significant digits, and the sign, whatever the size
        shown = bound(x)
        assert shown[0] == ("+" if x > 0 else "-") and math.isclose(float(shown), x, rel_tol=0.05)


def test_unbounded_intervals_and_single_seeds_say_so():
    assert bound(None) == "−∞" and bound(None, upper=True) == "+∞"
    assert bound(-math.inf) == "−∞" and bound(math.inf) == "+∞"
    assert interval(0.008, 0.0, 0.01686831834379773) == "+0.008 [0, +0.017]"
    assert mean_sd(0.5, 0.0, 1) == "0.500 (1 seed)" and mean_sd(0.5, 0.0123, 5) == "0.500 ± 0.012 (5)"


def test_rounding_that_carries_keeps_two_significant_digits_and_a_tiny_difference_shows_its_sign():
    assert bound(9.996e-05) == "+0.00010" and bound(-9.9996e-06) == "-0.000010"
    assert interval(-0.00002, -0.00004, -0.000001) == "-0.000020 [-0.000040, -0.0000010]"
    assert number(0.0) == "0" and number(0.1234) == "+0.123"
