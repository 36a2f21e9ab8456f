"""MTurk cost arithmetic shared by the HIT builder (preview) and the publisher (budget cap).

MTurk charges a commission of 20% of the reward (and of bonuses), or 40% for HITs with 10 or
more assignments (see ../shared/MTURK.md). Amounts are handled in integer cents so that rounding
never lets a batch slip past a budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["DEFAULT_ASSIGNMENTS", "LARGE_HIT", "REWARD_PATTERN", "CostEstimate", "estimate_cost",
           "fee_rate", "parse_reward"]

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


def fee_rate(assignments_per_hit: int) -> Decimal:
    """MTurk commission: 20%, or 40% when a HIT has :data:`LARGE_HIT` (10) or more
    assignments."""
    return Decimal("0.40") if assignments_per_hit >= LARGE_HIT else Decimal("0.20")


@dataclass(frozen=True)
class CostEstimate:
    """Cost of a batch in dollars (rewards, MTurk fees, total)."""

    n_hits: int
    assignments_per_hit: int
    reward: Decimal
    rewards: Decimal
    fees: Decimal
    total: Decimal

    def summary(self) -> str:
        """One line for the console."""
        rate = int(fee_rate(self.assignments_per_hit) * 100)
        return (
            f"{self.n_hits} HITs x {self.assignments_per_hit} assignments x ${self.reward} = "
            f"${self.rewards} + {rate}% MTurk fee ${self.fees} = ${self.total} total"
        )


def estimate_cost(n_hits: int, assignments_per_hit: int, reward: str | float) -> CostEstimate:
    """Total cost of publishing ``n_hits`` HITs with the given assignments and reward.

    The fee is computed per assignment and rounded half-up to the cent, as MTurk bills it.
    """
    if n_hits < 0 or assignments_per_hit < 1:
        raise ValueError("n_hits must be >= 0 and assignments_per_hit >= 1")
    r = parse_reward(reward)
    fee_each = (r * fee_rate(assignments_per_hit)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    count = n_hits * assignments_per_hit
    rewards = r * count
    fees = fee_each * count
    return CostEstimate(n_hits, assignments_per_hit, r, rewards, fees, rewards + fees)
