"""The training loop: one code path for CPU and CUDA, resumable in the middle of an epoch.

The device is chosen once; the interaction arrays are moved to it once; each epoch shuffles
with :func:`torch.randperm` on the device and trains in large batches. Nothing synchronises
with the device (``.item()``) except at the end of an epoch, where the loss is logged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from mfrec.train.config import TrainConfig
from mfrec.train.errors import TrainingDivergedError
from mfrec.train.interactions import Interactions
from mfrec.train.losses import LOSS_FUNCTIONS, SHARED_NEGATIVES
from mfrec.train.model import MatrixFactorization
from mfrec.train.optim import RowAdam
from mfrec.train.recency import training_weights
from mfrec.train.sampling import NegativeSampler, PositiveSet

logger = logging.getLogger(__name__)

# An epoch whose mean loss exceeds this multiple of an untrained model's loss (all scores 0)
# has diverged: every loss here starts near its zero-score value and should only go down.
DIVERGENCE_FACTOR = 10.0
# Peak learning rate of each cosine restart past the horizon, relative to the previous cycle's.
RESTART_DECAY = 0.5


class Trainer:
    """Trains a :class:`MatrixFactorization` on one set of interactions, epoch by epoch.

    Parameters
    ----------
    data : Interactions
    config : TrainConfig
    device : torch.device
    horizon_epochs : int
        Epochs the learning-rate schedule spans (the refit uses the fit's horizon, so that its
        first epochs follow the same schedule as the ones that were validated).
    """

    def __init__(
        self, data: Interactions, config: TrainConfig, device: torch.device, horizon_epochs: int
    ) -> None:
        self.config = config
        self.device = device
        self.users = torch.as_tensor(data.user_idx, dtype=torch.int64, device=device)
        self.items = torch.as_tensor(data.item_idx, dtype=torch.int64, device=device)
        self.weights = training_weights(data, config.recency_min_weight)
        if self.weights is not None:
            self.weights = torch.as_tensor(self.weights, dtype=torch.float32, device=device)
        counts = torch.as_tensor(data.item_counts(), device=device)
        self.model = MatrixFactorization(
            data.num_users, data.num_items, config.embedding_dim, config.user_bias, config.seed
        ).to(device)
        # Lazy Adam on the embeddings: a step gathers its rows, back-propagates into them only
        # and updates only them, so it costs O(batch) rather than O(num_users + num_items).
        # The biases are small and dense.
        self.embedding_optimizer = RowAdam(
            [self.model.user_embeddings.data, self.model.item_embeddings.data],
            lr=config.learning_rate,
        )
        self.bias_optimizer = torch.optim.Adam(
            self.model.bias_parameters(), lr=config.learning_rate
        )
        # Two generators: the shuffle's is rewound to the start of an interrupted epoch on
        # resume, the sampler's continues from where it stopped.
        self.shuffle_generator = torch.Generator(device).manual_seed(config.seed)
        self.sample_generator = torch.Generator(device).manual_seed(config.seed + 1)
        self.sampler = NegativeSampler(
            counts, config.negative_sampling, config.negative_alpha, self.sample_generator
        )
        self.loss_fn = LOSS_FUNCTIONS[config.loss]
        self.untrained_loss = float(self.loss_fn(torch.zeros(1), torch.zeros(1, config.negatives)))
        self.shared = config.loss in SHARED_NEGATIVES
        # Pairwise losses skip sampled "negatives" the user actually interacted with; the
        # softmax, a likelihood over all items, only removes each row's own positive.
        self.positives = (
            None if self.shared else PositiveSet(self.users, self.items, data.num_items)
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.users) / config.batch_size))
        self.total_steps = horizon_epochs * self.steps_per_epoch
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches of the current epoch
        self.step = 0
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._shuffle_state = self.shuffle_generator.get_state()

    def learning_rate(self, step: int) -> float:
        """Linear warm-up over ``warmup_epochs``, then constant or cosine decay to 0 over the
        horizon. Past the horizon (a fit that :mod:`mfrec.train.phases` extends because VALID
        still improves) cosine restarts: cycle ``c`` of ``horizon_epochs`` epochs decays from
        ``learning_rate * RESTART_DECAY ** c``. The rate depends on the step alone, so a refit
        replays the fit's rates exactly."""
        config = self.config
        warmup = config.warmup_epochs * self.steps_per_epoch
        if step < warmup:
            return config.learning_rate * (step + 1) / warmup
        if config.lr_schedule != "cosine":
            return config.learning_rate
        if step >= self.total_steps:  # a restart cycle
            cycle, within = divmod(step - self.total_steps, self.total_steps)
            progress = within / self.total_steps
            peak = config.learning_rate * RESTART_DECAY ** (cycle + 1)
        else:
            progress = (step - warmup) / max(1, self.total_steps - warmup)
            peak = config.learning_rate
        return peak * 0.5 * (1.0 + math.cos(math.pi * progress))

    def run_epoch(self, should_stop: Callable[[], bool] = lambda: False, on_batch=None):
        """Train one epoch (or the rest of an interrupted one).

        Returns the mean training loss (the ranking loss, without the L2 penalty), or None
        when ``should_stop()`` became true between two batches; the trainer's state then
        stands mid-epoch, ready for :meth:`state_dict`.

        Raises
        ------
        TrainingDivergedError
            The epoch's loss or the weights are NaN or infinite, or the loss exceeds
            :data:`DIVERGENCE_FACTOR` times an untrained model's.
        """
        if self.batch == 0:
            self.loss_sum.zero_()
        # The shuffle generator restarts from its state at the start of this epoch, so that an
        # epoch resumed mid-way sees the same order as the one that was interrupted.
        self.shuffle_generator.set_state(self._shuffle_state)
        order = torch.randperm(
            len(self.users), generator=self.shuffle_generator, device=self.device
        )
        batch_size = self.config.batch_size
        while self.batch < self.steps_per_epoch:
            if should_stop():
                return None
            index = order[self.batch * batch_size : (self.batch + 1) * batch_size]
            rate = self.learning_rate(self.step)
            self.embedding_optimizer.lr = rate
            for group in self.bias_optimizer.param_groups:
                group["lr"] = rate
            self.bias_optimizer.zero_grad(set_to_none=True)
            ranking_loss, loss, rows = self._loss(index)
            loss.backward()
            self.bias_optimizer.step()
            for table, (row_index, gathered) in enumerate(rows):
                self.embedding_optimizer.step(table, row_index, gathered.grad)
            self.loss_sum += ranking_loss.detach()
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

    def _loss(self, index: torch.Tensor):
        """(ranking loss, ranking loss + L2 penalty, gathered rows) of one batch.

        The rows are ``[(user rows, user vectors), (item rows, item vectors)]``: the embedding
        rows the batch read, gathered as leaf tensors whose ``.grad`` the backward pass fills.
        """
        config, model = self.config, self.model
        # index_select rather than [index] throughout: several times faster on a CPU.
        user_idx = self.users.index_select(0, index)
        item_idx = self.items.index_select(0, index)
        weights = None if self.weights is None else self.weights.index_select(0, index)
        if self.shared:
            negative_idx = self.sampler.sample((config.negatives,))
        else:
            negative_idx = self.sampler.sample((len(index), config.negatives))
        item_rows = torch.cat([item_idx, negative_idx.reshape(-1)])
        users = model.user_embeddings.detach().index_select(0, user_idx).requires_grad_()
        items = model.item_embeddings.detach().index_select(0, item_rows).requires_grad_()
        positive_vectors, negative_vectors = items[: len(item_idx)], items[len(item_idx) :]
        positive = model.score_rows(users, positive_vectors, user_idx, item_idx)
        extra = {}
        if self.shared:
            negative = model.score_rows(
                users, negative_vectors, user_idx, negative_idx, shared=True
            )
            extra["negative_mask"] = negative_idx[None, :] != item_idx[:, None]
            if config.negative_sampling == "popularity":
                extra["positive_logq"] = self.sampler.log_prob(item_idx)
                extra["negative_logq"] = self.sampler.log_prob(negative_idx)
        else:
            negative_vectors = negative_vectors.reshape(*negative_idx.shape, -1)
            negative = model.score_rows(users, negative_vectors, user_idx, negative_idx)
            extra["negative_mask"] = ~self.positives.contains(user_idx, negative_idx)
        loss = self.loss_fn(positive, negative, weights, **extra)
        rows = [(user_idx, users), (item_rows, items)]
        if config.l2 == 0:
            return loss, loss, rows
        norms = users.pow(2).sum(dim=1) + positive_vectors.pow(2).sum(dim=1)
        return loss, loss + config.l2 * norms.mean(), rows

    def _check_diverged(self, mean_loss: float) -> None:
        finite = math.isfinite(mean_loss) and all(
            bool(torch.isfinite(p).all()) for p in self.model.parameters()
        )
        limit = DIVERGENCE_FACTOR * self.untrained_loss
        if finite and mean_loss <= limit:
            return
        why = (
            f"the loss is {mean_loss:.4g}, over {DIVERGENCE_FACTOR:g} times an untrained "
            f"model's {self.untrained_loss:.4g}"
            if finite
            else f"the loss or the weights became NaN or infinite (loss {mean_loss})"
        )
        raise TrainingDivergedError(
            f"training diverged in epoch {self.epoch}: {why}; lower learning_rate (now "
            f"{self.config.learning_rate}) or raise l2 (now {self.config.l2})"
        )

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where training stands (tensors and numbers)."""
        return {
            "model": self.model.state_dict(),
            "embedding_optimizer": self.embedding_optimizer.state_dict(),
            "bias_optimizer": self.bias_optimizer.state_dict(),
            "shuffle_generator": self._shuffle_state,
            "sample_generator": self.sample_generator.get_state(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "loss_sum": self.loss_sum.detach().cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.embedding_optimizer.load_state_dict(state["embedding_optimizer"])
        self.bias_optimizer.load_state_dict(state["bias_optimizer"])
        self._shuffle_state = state["shuffle_generator"]
        self.shuffle_generator.set_state(state["shuffle_generator"])
        self.sample_generator.set_state(state["sample_generator"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.loss_sum.copy_(state["loss_sum"])
