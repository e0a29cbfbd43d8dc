"""Shared test data: users whose tastes drift from one topic to the next (auto and search tests)."""

import numpy as np

from mfrec.train.interactions import Interactions


def drifting_data(num_users: int = 90, seed: int = 0) -> Interactions:
    """Three topics of 30 items. Each user's first 24 interactions are in one topic and the
    last 12 (the validation hold-out among them) in the next: tastes that drift."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for user in range(num_users):
        old, new = user % 3, (user + 1) % 3
        chosen = [*(old * 30 + rng.choice(30, 24, replace=False))]
        chosen += [*(new * 30 + rng.choice(30, 12, replace=False))]
        users += [user] * len(chosen)
        items += chosen
        times += list(range(len(chosen)))
    return Interactions.from_ids(np.array(users), np.array(items), timestamps=np.array(times))
