"""Training the sequence model (``model=sequence``): next-item prediction with mfrec's sampled
softmax, resumable in the middle of an epoch, on the same device path as the other trainers.

Each user's time-ordered interactions are cut into windows of ``max_history`` targets
(:meth:`mfrec.train.sequences.UserSequences.windows`), moved to the device once. An epoch
shuffles the windows (its own generator, rewound to the epoch's start on resume) and takes
``batch_size // max_history`` of them per step, so ``batch_size`` counts target positions per
step as it counts interactions for the SGD model. At every position the model's output is scored
against the target item and one set of ``num_negatives`` items shared by the whole step, drawn
by popularity (:class:`~mfrec.train.sampling.NegativeSampler`), with the logQ correction
(:func:`~mfrec.train.losses.sampled_softmax_loss`); a negative equal to the target is left out.
Positions are weighted by the data's weights and the recency weights
(:func:`~mfrec.train.recency.training_weights`); empty positions weigh 0.

All parameters take dense Adam steps (the blocks are dense, and the shared negatives touch much
of the item table every step) under the SGD model's learning-rate schedule. Dropout draws from
the sampling generator, so a resumed job draws the same masks and negatives as an uninterrupted
one: resume is exact on the CPU.

The trainer exposes what :class:`~mfrec.train.phases.TrainingRun` drives (``model``, ``epoch``,
``batch``, ``steps_per_epoch``, ``run_epoch``, ``state_dict``/``load_state_dict``) and
:meth:`SequenceTrainer.export_arrays`, the artifact's arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from mfrec.train.config import TrainConfig, resolve_batch_size
from mfrec.train.interactions import Interactions
from mfrec.train.loop import Trainer, check_diverged
from mfrec.train.losses import sampled_softmax_loss
from mfrec.train.recency import training_weights
from mfrec.train.sampling import NegativeSampler
from mfrec.train.sequence_model import SequenceModel
from mfrec.train.sequences import UserSequences

# Prefix of the sequence model's own arrays in the artifact (ModelArtifact.sequence).
HISTORY_INDPTR = "history_indptr"
HISTORY_ITEMS = "history_items"


def build_model(num_items: int, config: TrainConfig, num_users: int = 0) -> SequenceModel:
    """An untrained :class:`SequenceModel` of ``config``'s shape (its seed, its dropout), with
    a table of ``num_users`` user vectors when ``config.blend_user``."""
    return SequenceModel(
        num_items,
        config.embedding_dim,
        config.num_blocks,
        config.num_heads,
        config.max_history,
        config.dropout,
        config.seed,
        num_users if config.blend_user else 0,
    )


def multi_target_softmax_loss(positive, negative, weights) -> torch.Tensor:
    """Sampled-softmax cross-entropy of each of a row's positives against the row's negatives.

    Each positive ``j`` of row ``n`` is a separate softmax over itself and the row's negatives
    (not the row's other positives): ``-log(exp p[n, j] / (exp p[n, j] + sum_m exp q[n, m]))``,
    the negatives' sum computed once per row. With one positive per row this is
    :func:`~mfrec.train.losses.sampled_softmax_loss`. Logits already carry the logQ correction.

    Parameters
    ----------
    positive : Tensor (N, span)
    negative : Tensor (N, M)
        ``-inf`` where a negative is left out.
    weights : Tensor (N, span)

    Returns
    -------
    Tensor ()
        The weighted mean over every (row, positive) pair.
    """
    negative_sum = torch.logsumexp(negative, dim=1, keepdim=True)
    loss = torch.logaddexp(positive, negative_sum) - positive
    return (loss * weights).sum() / weights.sum().clamp(min=1e-12)


class SequenceTrainer:
    """Trains a :class:`SequenceModel` on one set of interactions, epoch by epoch.

    Parameters
    ----------
    data : Interactions
    config : TrainConfig
    device : torch.device
    horizon_epochs : int
        Epochs the learning-rate schedule spans (as for :class:`~mfrec.train.loop.Trainer`).
    """

    # The SGD model's schedule: warm-up, cosine over the horizon, restarts past it.
    learning_rate = Trainer.learning_rate

    def __init__(
        self, data: Interactions, config: TrainConfig, device: torch.device, horizon_epochs: int
    ) -> None:
        config = resolve_batch_size(config, device.type)
        self.config, self.device = config, device
        sequences = UserSequences.from_interactions(data)
        length = config.max_history
        weights = training_weights(data, config.recency_min_weight)
        windows, target_weights = sequences.windows(length, weights, config.next_items)
        self.windows = torch.as_tensor(windows, device=device)
        self.target_weights = torch.as_tensor(target_weights, device=device)
        self.window_users = torch.as_tensor(sequences.window_users(length), device=device)
        self.model = build_model(data.num_items, config, data.num_users).to(device)
        self.model.set_histories(sequences.last(length))
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.learning_rate, fused=True
        )
        self.shuffle_generator = torch.Generator(device).manual_seed(config.seed)
        self.sample_generator = torch.Generator(device).manual_seed(config.seed + 1)
        counts = torch.as_tensor(data.item_counts(), device=device)
        self.sampler = NegativeSampler(
            counts, config.negative_sampling, config.negative_alpha, self.sample_generator
        )
        self.item_logq = self.sampler.log_prob(torch.arange(data.num_items, device=device))
        # auto: at most the catalogue (an explicit value is checked against it by
        # TrainConfig.check_catalogue); the full catalogue as negatives measured no better
        # across the panel than 512 (benchmarks/NOTES.md, "The sequence model, session 6")
        self.num_negatives = config.negatives
        if config.num_negatives is None:
            self.num_negatives = min(config.negatives, data.num_items)
        self.untrained_loss = float(
            sampled_softmax_loss(torch.zeros(1), torch.zeros(1, self.num_negatives))
        )
        self.sequences_per_step = max(1, config.batch_size // length)
        self.steps_per_epoch = max(1, math.ceil(len(windows) / self.sequences_per_step))
        self.horizon_epochs = round(horizon_epochs * config.epochs / config.num_epochs)
        self.total_steps = self.horizon_epochs * self.steps_per_epoch
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches of the current epoch
        self.step = 0
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._shuffle_state = self.shuffle_generator.get_state()

    def run_epoch(self, should_stop: Callable[[], bool] = lambda: False, on_batch=None):
        """Train one epoch (or the rest of an interrupted one); the mean loss, or None when
        ``should_stop()`` became true between two batches.

        Raises
        ------
        TrainingDivergedError
            The loss or the weights are NaN or infinite, or the loss exceeds
            :data:`~mfrec.train.loop.DIVERGENCE_FACTOR` times an untrained model's.
        """
        if self.batch == 0:
            self.loss_sum.zero_()
        self.shuffle_generator.set_state(self._shuffle_state)
        order = torch.randperm(
            len(self.windows), generator=self.shuffle_generator, device=self.device
        )
        size = self.sequences_per_step
        while self.batch < self.steps_per_epoch:
            if should_stop():
                return None
            index = order[self.batch * size : (self.batch + 1) * size]
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(self.step)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(index)
            loss.backward()
            self.optimizer.step()
            self.loss_sum += loss.detach()
            self.batch += 1
            self.step += 1
            if on_batch is not None:
                on_batch()
        mean_loss = self.loss_sum.item() / self.steps_per_epoch
        self._shuffle_state = self.shuffle_generator.get_state()
        self.epoch += 1
        self.batch = 0
        self._check_diverged(mean_loss)
        return mean_loss

    def _loss(self, index: torch.Tensor) -> torch.Tensor:
        """The weighted sampled-softmax loss of the windows ``index`` (every position, each of
        its ``next_items`` targets)."""
        model, length = self.model, self.config.max_history
        windows = self.windows.index_select(0, index)
        weights = self.target_weights.index_select(0, index).reshape(-1, self.config.next_items)
        outputs = model.encode(windows[:, :length], self.sample_generator)
        user_part = model.user_part(self.window_users.index_select(0, index))
        if user_part is not None:  # blend_user: the user's own vector at every position
            outputs = outputs + user_part[:, None, :]
        outputs = outputs.reshape(-1, outputs.shape[-1])
        # (positions, span): target j of position t is window item t + 1 + j. Empty targets
        # point at the last item; their weight is 0, so they add nothing.
        targets = windows[:, 1:].unfold(1, self.config.next_items, 1)[:, :length]
        targets = targets.reshape(weights.shape).clamp(max=model.num_items - 1)
        negatives = self.sampler.sample((self.num_negatives,))
        positive = (outputs[:, None, :] * model.item_embeddings[targets]).sum(dim=2)
        positive = positive + model.item_biases[targets]
        negative = torch.addmm(
            model.item_biases.index_select(0, negatives),
            outputs,
            model.item_embeddings.index_select(0, negatives).T,
        )
        if self.item_logq is not None:
            positive = positive - self.item_logq[targets]
            negative = negative - self.item_logq.index_select(0, negatives)
        # A negative that is one of the position's own targets is left out.
        own = torch.where(weights > 0, targets, -1)
        hit = (negatives[None, None, :] == own[:, :, None]).any(dim=1)
        return multi_target_softmax_loss(positive, negative.masked_fill(hit, -math.inf), weights)

    def _check_diverged(self, mean_loss: float) -> None:
        check_diverged(
            self.model,
            mean_loss,
            self.untrained_loss,
            self.epoch,
            f"lower learning_rate (now {self.config.learning_rate}) or raise dropout (now "
            f"{self.config.dropout})",
        )

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where training stands (tensors and numbers)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "shuffle_generator": self._shuffle_state,
            "sample_generator": self.sample_generator.get_state(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "loss_sum": self.loss_sum.detach().cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._shuffle_state = state["shuffle_generator"]
        self.shuffle_generator.set_state(state["shuffle_generator"])
        self.sample_generator.set_state(state["sample_generator"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.loss_sum.copy_(state["loss_sum"])

    def export_arrays(self, state: dict, data: Interactions) -> dict:
        """The artifact's arrays for the weights ``state`` (a :meth:`SequenceModel.state_dict`)
        with ``data`` (all the training data) as the users' histories.

        ``user_embeddings`` are each user's vector after their newest ``max_history`` items,
        the items kept in ``sequence`` (``history_indptr``/``history_items``, oldest first) for
        serving; so the artifact scores a known user as the model does, with the matrix
        factorisation formula (zero user biases). ``sequence`` also holds every weight of the
        model but the item table and biases, which are ``item_embeddings``/``item_biases``.
        """
        model = build_model(data.num_items, self.config, data.num_users).to(self.device)
        model.load_state_dict(state)
        sequences = UserSequences.from_interactions(data)
        users = model.encode_users(
            sequences.last(self.config.max_history), np.arange(data.num_users)
        )
        indptr, items = sequences.recent_csr(self.config.max_history)
        weights = {
            name: value.detach().cpu().float().numpy()
            for name, value in state.items()
            if name not in ("item_embeddings", "item_biases")
        }

        def numpy(name):
            return state[name].detach().cpu().float().numpy()

        return {
            "user_embeddings": users.cpu().float().numpy(),
            "item_embeddings": numpy("item_embeddings"),
            "user_biases": np.zeros(data.num_users, np.float32),
            "item_biases": numpy("item_biases"),
            "sequence": {**weights, HISTORY_INDPTR: indptr, HISTORY_ITEMS: items},
        }
