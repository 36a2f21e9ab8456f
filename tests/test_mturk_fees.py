"""MTurk's fee, in its one home (tasks.cost), against the published pricing worked by hand:
20% of the reward, 40% from 10 assignments on, 5% more with Masters, each fee rounded half-up
to the cent and at least $0.01 per assignment or bonus payment (https://www.mturk.com/pricing).
The builder's preview, the publisher's budget, the reviewer's bonuses and the task server's
billing all charge through it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tasks.cost import (
    LARGE_HIT,
    MIN_FEE,
    bonus_fee,
    estimate_cost,
    fee_rate,
    parse_reward,
    reward_fee,
)
from tasks.server.mturk_ops import assignment_cost_cents

D = Decimal


@pytest.mark.parametrize(("reward", "assignments", "masters", "fee"), [
    ("0.10", 3, False, "0.02"),
    ("0.10", 9, False, "0.02"),
    ("0.10", 10, False, "0.04"),     # 40% from LARGE_HIT assignments on
    ("0.33", 3, False, "0.07"),      # 0.066 rounds up
    ("0.32", 3, False, "0.06"),      # 0.064 rounds down
    ("0.08", 3, False, "0.02"),      # 0.016
    ("0.07", 3, False, "0.01"),      # 0.014
    ("0.02", 3, False, "0.01"),      # 0.004 rounds to 0: the $0.01 minimum
    ("0.01", 3, False, "0.01"),      # a 100% fee
    ("0.00", 3, False, "0.01"),
    ("0.10", 3, True, "0.03"),       # 25% of 0.10 is 0.025: half-up, not half-even
    ("0.10", 10, True, "0.05"),      # 45% of 0.10 is 0.045
    ("0.30", 3, True, "0.08"),       # 0.075
    ("1.00", 12, True, "0.45"),
])
def test_reward_fee_by_hand(reward, assignments, masters, fee):
    assert reward_fee(D(reward), assignments, masters=masters) == D(fee)
    assert assignment_cost_cents(reward, assignments) == round(
        (D(reward) + reward_fee(D(reward), assignments)) * 100)


def test_fee_rates_and_the_minimum():
    assert LARGE_HIT == 10
    assert D("0.01") == MIN_FEE
    assert fee_rate(1) == fee_rate(LARGE_HIT - 1) == D("0.20")
    assert fee_rate(LARGE_HIT) == fee_rate(100) == D("0.40")
    # the server bills the same: reward + fee in cents
    assert assignment_cost_cents("0.02", 3) == 3
    assert assignment_cost_cents("0.50", 3) == 60
    assert assignment_cost_cents("0.50", 10) == 70


@pytest.mark.parametrize(("amount", "fee"), [("1.00", "0.20"), ("0.08", "0.02"),
                                             ("0.07", "0.01"), ("0.04", "0.01"),
                                             ("0.01", "0.01"), ("2.33", "0.47")])
def test_bonus_fee_is_20_percent_at_least_a_cent(amount, fee):
    # bonuses pay 20% whatever the HIT's size
    assert bonus_fee(D(amount)) == D(fee)


def test_estimate_counts_the_minimum_per_assignment():
    est = estimate_cost(100, 3, "0.02")
    assert (est.rewards, est.fees, est.total) == (D("6.00"), D("3.00"), D("9.00"))
    assert est.summary() == ("100 HITs x 3 assignments x $0.02 = $6.00 + 20% MTurk fee "
                             "(the $0.01 minimum per assignment) $3.00 = $9.00 total")
    plain = estimate_cost(2, 3, "0.10")
    assert plain.summary() == ("2 HITs x 3 assignments x $0.10 = $0.60 + 20% MTurk fee $0.12 "
                               "= $0.72 total")
    # the minimum is named only where it binds: 0.05 x 20% is exactly 0.01, and 0.02 x 25%
    # (Masters) is 0.005, which rounds half-up to 0.01
    assert "minimum" not in estimate_cost(1, 1, "0.05").summary()
    assert "minimum" not in estimate_cost(1, 1, "0.02", masters=True).summary()
    assert "minimum" in estimate_cost(1, 1, "0.01", masters=True).summary()
    masters = estimate_cost(2, 10, "0.10", masters=True)
    assert (masters.fees, masters.total) == (D("1.00"), D("3.00"))
    assert "45% MTurk fee $1.00" in masters.summary()
    assert estimate_cost(0, 3, "0.10").total == 0


@pytest.mark.parametrize(("n", "k"), [(-1, 3), (1, 0)])
def test_estimate_refuses_impossible_batches(n, k):
    with pytest.raises(ValueError, match=r"^n_hits must be >= 0 and assignments_per_hit >= 1$"):
        estimate_cost(n, k, "0.10")


@pytest.mark.parametrize("bad", ["$0.10", "0.101", "-1", "1e-2", "", ".5"])
def test_rewards_outside_mturks_pattern_are_refused(bad):
    with pytest.raises(ValueError) as err:
        parse_reward(bad)
    assert str(err.value) == (f"reward {bad!r}: expected dollars like '0.10' "
                              "(pattern ^[0-9]+(\\.)?[0-9]{0,2}$)")


def test_rewards_inside_the_pattern():
    assert parse_reward("0.10") == D("0.10")
    assert parse_reward(" 2 ") == D("2")
    assert parse_reward("1.") == D("1")
    assert parse_reward(0.1) == D("0.10")
    assert parse_reward(0.1 + 0.2) == D("0.30")  # a float is read to the cent
