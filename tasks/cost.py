"""MTurk cost arithmetic: the one home of MTurk's fee, shared by the HIT builder (preview), the
publisher (budget cap), the reviewer (bonuses) and the task server's billing.

MTurk charges a commission of 20% of the reward (and of bonuses), or 40% for HITs with 10 or
more assignments, plus 5% of the reward for HITs that require the Masters qualification; each
fee is rounded half-up to the cent and is at least $0.01 per assignment or bonus payment
(../shared/MTURK.md; https://www.mturk.com/pricing). Amounts are Decimals in dollars, rounded
per payment, so that rounding never lets a batch slip past a budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["DEFAULT_ASSIGNMENTS", "LARGE_HIT", "MASTERS_RATE", "MIN_FEE", "REWARD_PATTERN",
           "CostEstimate", "bonus_fee", "estimate_cost", "fee_rate", "parse_reward", "reward_fee"]

#: Assignments (workers) per HIT unless ``tasks build --assignments`` says otherwise. The
#: builder writes the number into each manifest line (``"assignments"``); the publisher uses
#: that, so the build's cost preview and what publishing commits agree.
DEFAULT_ASSIGNMENTS = 3

REWARD_PATTERN = re.compile(r"^[0-9]+(\.)?[0-9]{0,2}$")


def parse_reward(reward: str | float) -> Decimal:
    """Parse a reward in dollars as MTurk accepts it (``"0.10"``, no currency symbol).

    Raises
    ------
    ValueError
        If the value does not match MTurk's ``^[0-9]+(\\.)?[0-9]{0,2}$`` pattern.
    """
    text = f"{reward:.2f}" if isinstance(reward, float) else str(reward).strip()
    if not REWARD_PATTERN.match(text):
        raise ValueError(
            f"reward {reward!r}: expected dollars like '0.10' "
            "(pattern ^[0-9]+(\\.)?[0-9]{0,2}$)"
        )
    return Decimal(text)


#: MTurk's line between small and large HITs: from this many assignments on the commission is
#: 40%, and a HIT created with fewer can never be extended to this many
#: (``CreateAdditionalAssignmentsForHIT``).
LARGE_HIT = 10


#: The smallest fee MTurk takes on an assignment or a bonus payment.
MIN_FEE = Decimal("0.01")
#: MTurk's extra fee, on the reward, for HITs that require the Masters qualification.
MASTERS_RATE = Decimal("0.05")
_CENT = Decimal("0.01")


def fee_rate(assignments_per_hit: int) -> Decimal:
    """MTurk commission: 20%, or 40% when a HIT has :data:`LARGE_HIT` (10) or more
    assignments."""
    return Decimal("0.40") if assignments_per_hit >= LARGE_HIT else Decimal("0.20")


def reward_fee(reward: Decimal, assignments_per_hit: int, *, masters: bool = False) -> Decimal:
    """MTurk's fee on one approved assignment's reward, in dollars.

    ``reward * (fee_rate(assignments_per_hit) + 0.05 if masters)``, rounded half-up to the
    cent, and at least :data:`MIN_FEE` ($0.01).
    """
    rate = fee_rate(assignments_per_hit) + (MASTERS_RATE if masters else Decimal(0))
    return max(MIN_FEE, (reward * rate).quantize(_CENT, ROUND_HALF_UP))


def bonus_fee(amount: Decimal) -> Decimal:
    """MTurk's fee on one bonus payment: 20% rounded half-up to the cent, at least $0.01."""
    return max(MIN_FEE, (amount * Decimal("0.20")).quantize(_CENT, ROUND_HALF_UP))


@dataclass(frozen=True)
class CostEstimate:
    """Cost of a batch in dollars (rewards, MTurk fees, total)."""

    n_hits: int
    assignments_per_hit: int
    reward: Decimal
    rewards: Decimal
    fees: Decimal
    total: Decimal
    masters: bool = False

    def summary(self) -> str:
        """One line for the console."""
        rate = fee_rate(self.assignments_per_hit) + (MASTERS_RATE if self.masters else 0)
        floor = (" (the $0.01 minimum per assignment)"
                 if (self.reward * rate).quantize(_CENT, ROUND_HALF_UP) < MIN_FEE else "")
        return (
            f"{self.n_hits} HITs x {self.assignments_per_hit} assignments x ${self.reward} = "
            f"${self.rewards} + {int(rate * 100)}% MTurk fee{floor} ${self.fees} = "
            f"${self.total} total"
        )


def estimate_cost(n_hits: int, assignments_per_hit: int, reward: str | float, *,
                  masters: bool = False) -> CostEstimate:
    """Total cost of publishing ``n_hits`` HITs with the given assignments and reward.

    The fee is computed per assignment (:func:`reward_fee`: rounded half-up to the cent, at
    least $0.01), as MTurk bills it; ``masters`` adds the Masters qualification's 5%.
    """
    if n_hits < 0 or assignments_per_hit < 1:
        raise ValueError("n_hits must be >= 0 and assignments_per_hit >= 1")
    r = parse_reward(reward)
    fee_each = reward_fee(r, assignments_per_hit, masters=masters)
    count = n_hits * assignments_per_hit
    rewards = r * count
    fees = fee_each * count
    return CostEstimate(n_hits, assignments_per_hit, r, rewards, fees, rewards + fees, masters)
