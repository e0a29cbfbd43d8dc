"""Negative item sampling on the training device, from a seeded :class:`torch.Generator`."""

from __future__ import annotations

import torch


class NegativeSampler:
    """Draws item indices uniformly or in proportion to ``(count + 1) ** alpha``.

    Popularity sampling inverts the cumulative distribution with :func:`torch.searchsorted`
    (exact, any catalogue size, one kernel); the ``+ 1`` keeps items absent from the training
    data sampleable so that their scores are pushed down too.

    Parameters
    ----------
    item_counts : Tensor (num_items,)
        Training interactions per item (used by ``method="popularity"``).
    method : {"uniform", "popularity"}
    alpha : float
        Popularity exponent; 0 is uniform, 1 is proportional to counts.
    generator : torch.Generator
        On the same device as ``item_counts``; the only source of randomness.
    """

    def __init__(
        self,
        item_counts: torch.Tensor,
        method: str,
        alpha: float,
        generator: torch.Generator,
    ) -> None:
        self.num_items = len(item_counts)
        self.method = method
        self.generator = generator
        self.device = item_counts.device
        if method == "popularity":
            weights = (item_counts.double() + 1.0) ** alpha
            probs = weights / weights.sum()
            self._log_probs = probs.float().log()
            cdf = torch.cumsum(probs, dim=0)
            self._cdf = cdf / cdf[-1]
        else:
            self._log_probs = None
            self._cdf = None

    def sample(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Item indices, int64 tensor of ``shape``, on the sampler's device."""
        if self._cdf is None:
            return torch.randint(
                self.num_items, shape, generator=self.generator, device=self.device
            )
        uniform = torch.rand(
            shape, generator=self.generator, device=self.device, dtype=torch.float64
        )
        # The last cdf entry is exactly 1 (x / x) and uniform < 1: the index is < num_items.
        return torch.searchsorted(self._cdf, uniform, right=True)

    def log_prob(self, item_idx: torch.Tensor) -> torch.Tensor | None:
        """log of each item's sampling probability, or None when sampling is uniform (the
        correction is then a constant)."""
        if self._log_probs is None:
            return None
        return self._log_probs.index_select(0, item_idx.reshape(-1)).view(item_idx.shape)


class PositiveSet:
    """Membership test for (user, item) pairs of the training data, on the device.

    The pairs are kept as sorted keys ``user_idx * num_items + item_idx``; a lookup is one
    :func:`torch.searchsorted`, so a batch of sampled negatives is checked without a Python
    loop.
    """

    def __init__(self, user_idx: torch.Tensor, item_idx: torch.Tensor, num_items: int) -> None:
        self.num_items = num_items
        self.keys = torch.unique(user_idx * num_items + item_idx)  # sorted

    def contains(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Bool tensor shaped like ``item_idx``: True where the user interacted with the item.

        ``user_idx`` (B,) is broadcast against ``item_idx`` (B,) or (B, N).
        """
        if item_idx.dim() > user_idx.dim():
            user_idx = user_idx[:, None]
        keys = user_idx * self.num_items + item_idx
        position = torch.searchsorted(self.keys, keys).clamp_(max=len(self.keys) - 1)
        return self.keys[position] == keys
