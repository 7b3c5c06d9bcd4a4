"""Seeds with A1111's rules, without torch (the queue fixes seeds when it accepts a job): −1 means random."""

from __future__ import annotations

import random

SEED_MAX = 4294967294  # A1111: random.randrange(4294967294)


def resolve_seed(seed: int) -> int:
    """A concrete seed: the given one, or a random one in 0…2³²−2 when it is −1 (or any negative)."""
    if seed >= 0:
        return seed
    return random.SystemRandom().randrange(SEED_MAX)
