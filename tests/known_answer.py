"""The known-answer model (and a random one) shared by the serving tests (not a test module).

User ``u`` ranks items by ``|u - i|``, ties to the smaller ``i`` (score ``2ui - i^2 - i/2n``,
exact in float32); user ``u`` has seen item ``u``; item ``i``'s popularity is ``num_items - i``.
"""

from __future__ import annotations

import numpy as np

from mfrec.train.artifact import ModelArtifact

USER_IDS = ["302", "685", "user_000061", "u3"]
NUM_ITEMS = 8
# The seed's request file: two JSON lines, no final newline.
SEED = b'{"user_id": "685", "top_n": "5"}\n{"user_id": "302", "top_n": "5"}'


def known_answer() -> ModelArtifact:
    u, i = np.arange(len(USER_IDS), dtype=np.float32), np.arange(NUM_ITEMS, dtype=np.float32)
    return ModelArtifact(
        np.stack([2 * u, -np.ones_like(u)], 1),
        np.stack([i, i**2], 1),
        np.zeros(len(u), np.float32),
        (-i / (2 * NUM_ITEMS)).astype(np.float32),
        np.array(USER_IDS),
        np.array([f"i{k}" for k in range(NUM_ITEMS)]),
        (NUM_ITEMS - i).astype(np.float32),
        np.arange(len(u) + 1),
        np.arange(len(u)),
    )


def random_model(seed: int, num_users: int, num_items: int, dim: int = 16, seen: int = 5):
    """A seeded model of random float32 factors and biases (no ties), ids ``u<k>`` and
    ``i<k>``, random popularity, and ``seen`` random seen items per user."""
    rng = np.random.default_rng(seed)
    return ModelArtifact(
        rng.standard_normal((num_users, dim), dtype=np.float32),
        rng.standard_normal((num_items, dim), dtype=np.float32),
        rng.standard_normal(num_users, dtype=np.float32),
        rng.standard_normal(num_items, dtype=np.float32),
        np.array([f"u{k}" for k in range(num_users)]),
        np.array([f"i{k}" for k in range(num_items)]),
        rng.integers(1, 100, num_items).astype(np.float32),
        np.arange(num_users + 1) * seen,
        rng.integers(0, num_items, num_users * seen),
    )
