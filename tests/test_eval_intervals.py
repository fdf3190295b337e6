"""Bootstrap intervals over identities and the verdicts drawn from them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hyperlora_core.eval.intervals import Interval, difference_interval, mean_interval, per_identity, verdict


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 40), st.integers(1, 6)), elements=st.floats(0, 1)))
def test_the_interval_holds_the_mean_and_lies_within_the_data(values):
    ci = mean_interval(values, resamples=400)
    per = per_identity(values)
    assert ci.low <= ci.mean + 1e-12 and ci.mean <= ci.high + 1e-12
    assert per.min() - 1e-12 <= ci.low and ci.high <= per.max() + 1e-12


def test_more_identities_give_a_narrower_interval():
    rng = np.random.default_rng(0)
    few, many = rng.random((16, 6)) > 0.4, rng.random((256, 6)) > 0.4
    assert (mean_interval(many).high - mean_interval(many).low) < 0.5 * (mean_interval(few).high - mean_interval(few).low)


def test_a_constant_sample_has_a_point_interval():
    ci = mean_interval(np.full((10, 6), 0.5))
    assert ci == Interval(0.5, 0.5, 0.5)


def test_the_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    """Coverage over 200 independent samples of 64 Bernoulli(0.6) identities (6 judgements each)."""
    rng = np.random.default_rng(1)
    covered = sum(not mean_interval(rng.random((64, 6)) < 0.6, resamples=500).excludes(0.6) for _ in range(200))
    assert 175 <= covered <= 199, covered  # 95 % of 200 = 190; a binomial 99.9 % range is about 178-198


def test_paired_differences_see_what_unpaired_means_hide():
    """Per identity the LoRA adds +0.1 on top of a large spread between identities: the paired interval
    excludes zero, while the two means' own intervals overlap."""
    rng = np.random.default_rng(2)
    base = rng.random((48, 1)) * 0.8
    a, b = base + 0.1 + rng.normal(0, 0.01, (48, 1)), base
    d = difference_interval(a, b)
    assert d.low > 0.08 and d.high < 0.12
    assert mean_interval(a).low < mean_interval(b).high  # unpaired, they overlap
    assert verdict(d).startswith("confirmed")
    assert verdict(difference_interval(b, a)).startswith("refuted")


def test_an_interval_around_zero_is_not_distinguishable_with_its_numbers():
    text = verdict(Interval(0.007, -0.021, 0.034))
    assert text == "not distinguishable (difference +0.007, 95 % CI [-0.021, +0.034])"


def test_unpaired_or_too_small_inputs_are_refused():
    with pytest.raises(ValueError, match="same identities"):
        difference_interval(np.zeros((4, 6)), np.zeros((5, 6)))
    with pytest.raises(ValueError, match="at least 2 identities"):
        mean_interval(np.zeros((1, 6)))


def test_a_bound_at_zero_after_float_sums_does_not_exclude_zero():
    """A paired difference whose lower quantile is exactly zero comes out as about 1e-17 from float sums: that is
    zero, so the claim is not distinguishable, not confirmed."""
    assert verdict(Interval(0.031, 1e-17, 0.062)).startswith("not distinguishable")
    assert not Interval(0.031, 1e-17, 0.062).excludes(0.0)
    assert verdict(Interval(0.031, 0.001, 0.062)).startswith("confirmed")
