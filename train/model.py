"""The matrix factorisation model: user and item embeddings plus biases, dot-product score.

``score(u, i) = user_embeddings[u] @ item_embeddings[i] + user_biases[u] + item_biases[i]``,
the same formula :mod:`mfrec.train.artifact` documents, so a model and its artifact score alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Initial embeddings ~ N(0, INIT_STD^2): small enough that all scores start near zero (every
# loss starts in its linear regime), large enough to break the symmetry between factors.
INIT_STD = 0.1


class MatrixFactorization(nn.Module):
    """User/item embeddings with an item bias and an optional user bias.

    The initial weights are drawn on the CPU from ``torch.Generator().manual_seed(seed)`` and
    then moved, so a seed gives the same starting point on every device. ``forward`` and
    ``score_shared`` gather embedding rows by plain indexing; the trainer gathers the rows of a
    batch itself and scores them with :meth:`score_rows`, so that its optimizer
    (:class:`mfrec.train.optim.RowAdam`) touches only those rows, not whole tables.

    Parameters
    ----------
    num_users, num_items, embedding_dim : int
    user_bias : bool
        Learn a per-user bias. It shifts all of a user's scores equally, so it never changes a
        ranking; it only matters to losses that compare scores across users (pointwise).
    seed : int
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int,
        user_bias: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.user_embeddings = nn.Parameter(
            torch.randn(num_users, embedding_dim, generator=generator) * INIT_STD
        )
        self.item_embeddings = nn.Parameter(
            torch.randn(num_items, embedding_dim, generator=generator) * INIT_STD
        )
        self.item_biases = nn.Parameter(torch.zeros(num_items))
        self.user_biases = nn.Parameter(torch.zeros(num_users), requires_grad=user_bias)

    @property
    def num_users(self) -> int:
        return self.user_embeddings.shape[0]

    @property
    def num_items(self) -> int:
        return self.item_embeddings.shape[0]

    def forward(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) pairs.

        Parameters
        ----------
        user_idx : LongTensor (B,)
        item_idx : LongTensor (B,) or (B, N)

        Returns
        -------
        Tensor (B,) or (B, N)
        """
        users, items = self.user_embeddings[user_idx], self.item_embeddings[item_idx]
        return self.score_rows(users, items, user_idx, item_idx)

    def score_shared(self, user_idx: torch.Tensor, item_idx: torch.Tensor) -> torch.Tensor:
        """Scores of every user against one shared set of items, (B,) x (N,) -> (B, N)."""
        users, items = self.user_embeddings[user_idx], self.item_embeddings[item_idx]
        return self.score_rows(users, items, user_idx, item_idx, shared=True)

    def score_rows(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        user_idx: torch.Tensor,
        item_idx: torch.Tensor,
        shared: bool = False,
    ) -> torch.Tensor:
        """Scores from embedding rows already gathered (the training step's leaf tensors).

        ``users`` (B, d) are the rows of ``user_idx`` (B,); ``items`` are the rows of
        ``item_idx``: (B,) for one item per user, (B, N) for N items per user, or, with
        ``shared``, (N,) items scored against every user. Returns (B,) or (B, N).
        """
        # index_select (its backward is index_add_) is much faster on a CPU than [idx].
        user_bias = self.user_biases.index_select(0, user_idx)
        item_bias = self.item_biases.index_select(0, item_idx.reshape(-1)).view(item_idx.shape)
        if shared:
            return users @ items.T + item_bias + user_bias[:, None]
        if item_idx.dim() == 2:
            dot = torch.einsum("bd,bnd->bn", users, items)
            return dot + item_bias + user_bias[:, None]
        return (users * items).sum(dim=-1) + item_bias + user_bias

    def bias_parameters(self) -> list[nn.Parameter]:
        """The trainable biases (dense gradients)."""
        return [p for p in (self.item_biases, self.user_biases) if p.requires_grad]

    @torch.no_grad()
    def score_users(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of the given users for all items, (B,) -> (B, num_items)."""
        scores = self.user_embeddings[user_idx] @ self.item_embeddings.T + self.item_biases
        return scores + self.user_biases[user_idx][:, None]

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights as float32 NumPy arrays named as in :class:`ModelArtifact`."""
        return {
            name: getattr(self, name).detach().cpu().numpy().astype(np.float32)
            for name in ("user_embeddings", "item_embeddings", "user_biases", "item_biases")
        }

    @classmethod
    def from_arrays(cls, arrays, device: str | torch.device = "cpu") -> MatrixFactorization:
        """Rebuild a model from :meth:`arrays` or a :class:`ModelArtifact` (anything with
        those four attributes or keys), on ``device``."""

        def get(name):
            return arrays[name] if isinstance(arrays, dict) else getattr(arrays, name)

        user_embeddings = np.asarray(get("user_embeddings"))
        num_users, embedding_dim = user_embeddings.shape
        num_items = len(get("item_embeddings"))
        model = cls(num_users, num_items, embedding_dim)
        with torch.no_grad():
            for name in ("user_embeddings", "item_embeddings", "user_biases", "item_biases"):
                getattr(model, name).copy_(torch.from_numpy(np.asarray(get(name), np.float32)))
        return model.to(device)
