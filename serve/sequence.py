"""Serving a sequence model (``model=sequence``): user vectors from histories, by the model.

A sequence artifact's ``user_embeddings`` already hold each known user's vector after their
stored history (:meth:`mfrec.train.sequence_trainer.SequenceTrainer.export_arrays`), so user
requests, ranking, similar items and the lists are served exactly as for matrix factorisation.
What differs is a ``history`` request: there is no fold-in; the history itself is encoded.
A known user's stored history (their newest ``max_history`` training items, oldest first) comes
first and the request's items follow it, in the order given (the newest last); an unknown
user's history is the request's items alone. Only the newest ``max_history`` items count.

With ``blend_user=true`` the artifact also keeps the model's per-user table
(``sequence.user_table``, one row per known user) and a known user's vector is the encoded
history plus their row, as in training; an unknown user has no row, so their vector is the
encoded history alone (the user part is zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mfrec.train.artifact import ModelArtifact
from mfrec.train.errors import ArtifactError
from mfrec.train.sequence_model import SequenceModel
from mfrec.train.sequence_trainer import HISTORY_INDPTR, HISTORY_ITEMS
from mfrec.train.sequences import left_pad

# The model's shape, from the artifact's saved configuration.
SHAPE = ("embedding_dim", "num_blocks", "num_heads", "max_history")


def is_sequence(artifact: ModelArtifact) -> bool:
    """Whether ``artifact`` holds a sequence model."""
    return bool(artifact.sequence)


class SequenceEncoder:
    """The artifact's sequence model on ``device``, at rest (no dropout), and its histories.

    Raises
    ------
    ArtifactError
        The artifact's configuration or sequence arrays do not make a model of its shape.
    """

    def __init__(self, artifact: ModelArtifact, device: torch.device) -> None:
        self.artifact, self.device = artifact, device
        arrays = dict(artifact.sequence)
        try:
            self.indptr = np.asarray(arrays.pop(HISTORY_INDPTR), dtype=np.int64)
            self.items = np.asarray(arrays.pop(HISTORY_ITEMS), dtype=np.int64)
            shape = {name: int(artifact.config[name]) for name in SHAPE}
            num_users = artifact.num_users if "user_table" in arrays else 0
            model = SequenceModel(artifact.num_items, **shape, num_users=num_users)
            state = {name: torch.from_numpy(np.asarray(value)) for name, value in arrays.items()}
            state["item_embeddings"] = torch.from_numpy(
                np.asarray(artifact.item_embeddings, np.float32)
            )
            state["item_biases"] = torch.from_numpy(np.asarray(artifact.item_biases, np.float32))
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ArtifactError(
                f"the sequence model in this artifact cannot be rebuilt ({exc}); retrain it "
                "with this mfrec version"
            ) from None
        if len(self.indptr) != artifact.num_users + 1:
            raise ArtifactError(
                f"{HISTORY_INDPTR} has {len(self.indptr)} entries for {artifact.num_users} "
                "users; retrain the model"
            )
        self.model = model.to(device).eval()
        self.max_history = shape["max_history"]

    def stored_history(self, user_idx: int) -> np.ndarray:
        """A known user's stored history (item indices, oldest first)."""
        return self.items[self.indptr[user_idx] : self.indptr[user_idx + 1]]

    def user_vectors(
        self, histories: Sequence[np.ndarray], users: torch.Tensor, trained: torch.Tensor
    ) -> torch.Tensor:
        """Vectors for fresh ``histories`` (item indices, oldest first), one per row of
        ``users`` (-1: unknown); a known user with an empty history keeps ``trained[user]``.

        Returns
        -------
        Tensor (len(histories), embedding_dim) on the device
        """
        user_list = users.tolist()
        full = [
            h if u < 0 else np.concatenate([self.stored_history(u), h])
            for h, u in zip(histories, user_list, strict=True)
        ]
        padded = left_pad(full, self.max_history, self.artifact.num_items)
        vectors = self.model.encode_users(padded, user_list)
        keep = torch.tensor(
            [len(h) == 0 and u >= 0 for h, u in zip(histories, user_list, strict=True)],
            device=vectors.device,
        )
        if keep.any():
            vectors = torch.where(keep[:, None], trained[users.clamp(min=0)], vectors)
        return vectors
