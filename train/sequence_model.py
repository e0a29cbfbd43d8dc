"""The self-attentive next-item model (``model=sequence``): a user is their recent history.

A history of item indices, oldest first and left-padded to ``max_history`` positions
(:mod:`mfrec.train.sequences`), is embedded (item embedding times ``sqrt(embedding_dim)`` plus a
learned embedding of each position), passed through ``num_blocks`` causal transformer blocks
(pre-norm: ``x + attention(norm(x))``, then ``x + feed_forward(norm(x))``) and a final layer
norm. The output at each position is the user's vector after that item; it is scored against
the same item embedding table that embeds the inputs::

    score(history, i) = encode(history)[-1] @ item_embeddings[i] + item_biases[i]

This is the architecture of SASRec (Kang & McAuley 2018, "Self-attentive sequential
recommendation"), with pre-norm blocks and an item bias; mfrec trains it with its sampled
softmax and logQ correction (:mod:`mfrec.train.sequence_trainer`).

With ``num_users > 0`` (``blend_user=true``) a learned per-user vector is added to the
sequence's output, as matrix factorisation's user vector is (``user_table``)::

    score(u, history, i) = (encode(history)[-1] + user_table[u]) @ item_embeddings[i] + ...

so a user is both their recent history and a free vector of their own. A user the table does
not know (a fresh user served from a ``history`` alone) gets a zero user part: the sequence's
output alone.

Causality: position ``t`` attends only to positions ``<= t`` that hold an item, so the output
after an item never depends on the items that follow it (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mfrec.train.model import INIT_STD

# Users encoded at once by score_users: (users, max_history, embedding_dim) activations.
SCORE_USERS_CHUNK = 2048


def _dropout(x: torch.Tensor, rate: float, generator: torch.Generator | None) -> torch.Tensor:
    """Inverted dropout drawn from ``generator`` (None: no dropout, the model at rest).

    Not :func:`torch.nn.functional.dropout`, whose draws come from the global generator: with
    the trainer's own generator a resumed job draws exactly the masks of an uninterrupted one.
    """
    if generator is None or rate == 0.0:
        return x
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= rate
    return x * keep / (1.0 - rate)


class CausalBlock(nn.Module):
    """One pre-norm transformer block: multi-head self-attention under a mask, then a
    position-wise feed-forward layer, each added to its input."""

    def __init__(self, embedding_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(embedding_dim)
        self.qkv = nn.Linear(embedding_dim, 3 * embedding_dim)
        self.attention_out = nn.Linear(embedding_dim, embedding_dim)
        self.feed_forward_norm = nn.LayerNorm(embedding_dim)
        self.feed_forward_in = nn.Linear(embedding_dim, embedding_dim)
        self.feed_forward_out = nn.Linear(embedding_dim, embedding_dim)

    def forward(self, x, mask, rate: float, generator=None) -> torch.Tensor:
        """``x`` (B, L, d), ``mask`` (B, L, L) bool (query, key) -> (B, L, d)."""
        batch, length, dim = x.shape
        qkv = self.qkv(self.attention_norm(x)).view(batch, length, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, d / heads)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None])
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        x = x + _dropout(self.attention_out(attended), rate, generator)
        hidden = F.gelu(self.feed_forward_in(self.feed_forward_norm(x)))
        hidden = self.feed_forward_out(_dropout(hidden, rate, generator))
        return x + _dropout(hidden, rate, generator)


class SequenceModel(nn.Module):
    """Item and position embeddings, causal blocks, and the item table as the output layer.

    The initial weights come from ``seed`` alone (drawn on the CPU under a forked global
    generator, which is left as it was), so a seed gives the same model on every device.

    Parameters
    ----------
    num_items, embedding_dim, num_blocks, num_heads, max_history : int
    dropout : float
        Rate of the dropout on the embedded inputs and inside each block, while training.
    seed : int
    num_users : int
        Rows of the per-user table added to the output (``blend_user``); 0: no table.
    """

    def __init__(
        self,
        num_items: int,
        embedding_dim: int,
        num_blocks: int,
        num_heads: int,
        max_history: int,
        dropout: float = 0.0,
        seed: int = 0,
        num_users: int = 0,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.item_embeddings = nn.Parameter(torch.randn(num_items, embedding_dim) * INIT_STD)
            self.item_biases = nn.Parameter(torch.zeros(num_items))
            self.positions = nn.Parameter(torch.randn(max_history, embedding_dim) * INIT_STD)
            self.blocks = nn.ModuleList(
                CausalBlock(embedding_dim, num_heads) for _ in range(num_blocks)
            )
            self.output_norm = nn.LayerNorm(embedding_dim)
            # Drawn last, so the other weights of a seed are those of a model without it.
            table = torch.randn(num_users, embedding_dim) * INIT_STD if num_users else None
            self.register_parameter("user_table", table if table is None else nn.Parameter(table))
        # Each user's newest max_history items (set_histories): what score_users encodes.
        # Not part of state_dict: weights are saved, histories come from the data.
        self.register_buffer(
            "histories", torch.empty(0, max_history, dtype=torch.int64), persistent=False
        )

    @property
    def num_items(self) -> int:
        return self.item_embeddings.shape[0]

    @property
    def max_history(self) -> int:
        return self.positions.shape[0]

    def set_histories(self, histories: np.ndarray) -> None:
        """Each user's newest items, (num_users, max_history), left-padded with ``num_items``."""
        self.histories = torch.as_tensor(histories, dtype=torch.int64, device=self.positions.device)

    def encode(self, items: torch.Tensor, generator: torch.Generator | None = None):
        """The vector after each position of left-padded histories.

        Parameters
        ----------
        items : LongTensor (B, max_history)
            Item indices, ``num_items`` for an empty position.
        generator : torch.Generator, optional
            Dropout's source while training; None for the model at rest.

        Returns
        -------
        Tensor (B, max_history, embedding_dim)
        """
        batch, length = items.shape
        present = items < self.num_items
        rows = items.clamp(max=self.num_items - 1).reshape(-1)
        x = self.item_embeddings.index_select(0, rows).view(batch, length, -1)
        x = x * (present[..., None] * math.sqrt(x.shape[-1])) + self.positions[-length:]
        x = _dropout(x, self.dropout, generator)
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        # A query attends to earlier-or-same positions that hold an item; an empty position
        # attends to itself only (its output is never used, but must not be NaN).
        mask = (causal & present[:, None, :]) | torch.eye(
            length, dtype=torch.bool, device=items.device
        )
        for block in self.blocks:
            x = block(x, mask, self.dropout, generator)
        return self.output_norm(x)

    def user_part(self, user_idx: torch.Tensor | None) -> torch.Tensor | None:
        """The per-user vectors added to the output, (B,) -> (B, d); rows of ``user_idx`` < 0
        (users the table does not know) are zero. None without a table or without users."""
        if self.user_table is None or user_idx is None:
            return None
        rows = self.user_table.index_select(0, user_idx.clamp(min=0))
        return rows * (user_idx >= 0)[:, None]

    def user_vectors(self, items: torch.Tensor, user_idx: torch.Tensor | None = None):
        """The vector after the newest item of each history, plus the user part of
        ``user_idx`` (:meth:`user_part`), (B, max_history), (B,) -> (B, d)."""
        vectors = self.encode(items)[:, -1]
        part = self.user_part(user_idx)
        return vectors if part is None else vectors + part

    @torch.no_grad()
    def score_users(self, user_idx: torch.Tensor) -> torch.Tensor:
        """Scores of the given users (from their :meth:`set_histories`) for all items,
        (B,) -> (B, num_items)."""
        scores = []
        for start in range(0, len(user_idx), SCORE_USERS_CHUNK):
            rows = user_idx[start : start + SCORE_USERS_CHUNK]
            vectors = self.user_vectors(self.histories.index_select(0, rows), rows)
            scores.append(torch.addmm(self.item_biases, vectors, self.item_embeddings.T))
        if not scores:
            return self.item_embeddings.new_zeros(0, self.num_items)
        return torch.cat(scores)

    @torch.no_grad()
    def encode_users(self, histories: np.ndarray, user_idx=None) -> torch.Tensor:
        """:meth:`user_vectors` of left-padded histories (num_users, max_history), in chunks,
        with the user part of ``user_idx`` (array-like (num_users,), -1: none; None: none)."""
        device = self.positions.device
        histories = torch.as_tensor(histories, dtype=torch.int64, device=device)
        if user_idx is not None:
            user_idx = torch.as_tensor(user_idx, dtype=torch.int64, device=device)
        chunks = [
            self.user_vectors(
                histories[start : start + SCORE_USERS_CHUNK],
                None if user_idx is None else user_idx[start : start + SCORE_USERS_CHUNK],
            )
            for start in range(0, len(histories), SCORE_USERS_CHUNK)
        ]
        if not chunks:
            return self.positions.new_zeros(0, self.positions.shape[1])
        return torch.cat(chunks)
