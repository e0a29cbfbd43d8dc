"""The training loop: one code path for CPU and CUDA, resumable in the middle of an epoch.

The device is chosen once; the interaction arrays are moved to it once; each epoch shuffles
with :func:`torch.randperm` on the device and trains in large batches. Nothing synchronises
with the device (``.item()``) except at the end of an epoch, where the loss is logged.

Every step has the same shapes: the last batch of an epoch is padded to ``batch_size`` with
copies of its first interaction at weight 0 (their gradients are exactly 0 and they touch no
other row), user and item embeddings live in one table (one gather, one optimizer step), and
:class:`~mfrec.train.optim.RowAdam` never reads a data-dependent size back. A step is therefore
capturable; ``MFREC_COMPILE=1`` in the environment runs its scoring, loss and optimizer
through :func:`torch.compile` (negative sampling stays outside, with its generator).

Distributed (:mod:`mfrec.train.distributed`), data-parallel over interactions: every process
draws the same shuffle and the same negatives as one process would, and computes the loss of
its share of each batch (the batch cut into equal slices, padded at weight 0), scaled so that
the shares' losses add up to the batch's. The embedding rows each share gathered and their
gradients are all-gathered, and every process applies the same :class:`RowAdam` step to the
union (repeated rows add up, as within one process); the biases' dense gradients and the loss
are all-reduced in one call. Every process therefore holds the same model, equal to one
process's up to the order of floating-point sums. Exchanging the touched rows moves
``world × rows × (d + 2)`` numbers a step, an all-reduce of the whole table's gradient
``(num_users + num_items) × (d + 1)`` (a count per row marks the touched ones): the trainer
takes the all-reduce when the table is at most :data:`DENSE_RATIO` times the rows' bytes
(small catalogues, where one all-reduce beats an all-gather), else the rows.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable

import torch

from mfrec.train import distributed
from mfrec.train.config import TrainConfig, resolve_batch_size
from mfrec.train.errors import TrainingDivergedError
from mfrec.train.interactions import Interactions
from mfrec.train.losses import LOSS_FUNCTIONS, SHARED_NEGATIVES
from mfrec.train.model import MatrixFactorization
from mfrec.train.optim import RowAdam, row_adam_update
from mfrec.train.recency import training_weights
from mfrec.train.sampling import NegativeSampler, PositiveSet

logger = logging.getLogger(__name__)

# An epoch whose mean loss exceeds this multiple of an untrained model's loss (all scores 0)
# has diverged: every loss here starts near its zero-score value and should only go down.
DIVERGENCE_FACTOR = 10.0
# Peak learning rate of each cosine restart past the horizon, relative to the previous cycle's.
RESTART_DECAY = 0.5
# Distributed: the whole table's gradient is all-reduced, rather than the touched rows
# all-gathered, when it takes at most this many times the gathered rows' bytes. Measured with
# gloo on this machine's loopback, 2 processes (benchmarks/distributed.py, results
# distributed-20261203-1508): a step's rows of ML-100K (2 × 1,280 rows, 0.66 MB) took 1.2 ms
# in one all-gather, the all-reduce of its whole table (0.68 MB) 2.6 ms: the all-reduce pays
# only for tables under about half the rows' bytes.
DENSE_RATIO = 0.5
# Set to 1 to run the step's scoring, loss and optimizer through torch.compile.
COMPILE_ENV = "MFREC_COMPILE"


class Trainer:
    """Trains a :class:`MatrixFactorization` on one set of interactions, epoch by epoch.

    Parameters
    ----------
    data : Interactions
    config : TrainConfig
    device : torch.device
    horizon_epochs : int
        Epochs the learning-rate schedule spans (the refit uses the fit's horizon, so that its
        first epochs follow the same schedule as the ones that were validated), at batch 1024:
        a larger batch stretches it by :attr:`TrainConfig.epochs` / ``num_epochs``.
    """

    def __init__(
        self, data: Interactions, config: TrainConfig, device: torch.device, horizon_epochs: int
    ) -> None:
        config = resolve_batch_size(config, device.type)  # batch_size=auto: by the device
        self.config = config
        self.device = device
        self.group = distributed.current()
        self.users = torch.as_tensor(data.user_idx, dtype=torch.int64, device=device)
        self.items = torch.as_tensor(data.item_idx, dtype=torch.int64, device=device)
        self.weights = training_weights(data, config.recency_min_weight)
        if self.weights is not None:
            self.weights = torch.as_tensor(self.weights, dtype=torch.float32, device=device)
        counts = torch.as_tensor(data.item_counts(), device=device)
        self.model = MatrixFactorization(
            data.num_users, data.num_items, config.embedding_dim, config.user_bias, config.seed
        ).to(device)
        # User and item embeddings in one table (the model's parameters are views of it): a step
        # gathers all its rows with one index_select and updates them with one optimizer step.
        model = self.model
        self.num_users = data.num_users
        self.embeddings = torch.cat([model.user_embeddings.data, model.item_embeddings.data])
        model.user_embeddings.data = self.embeddings[: data.num_users]
        model.item_embeddings.data = self.embeddings[data.num_users :]
        # Lazy Adam on the embeddings: a step gathers its rows, back-propagates into them only
        # and updates only them, so it costs O(batch) rather than O(num_users + num_items).
        # The biases are small and dense (one fused Adam kernel).
        self.embedding_optimizer = RowAdam([self.embeddings], lr=config.learning_rate)
        self.bias_optimizer = torch.optim.Adam(
            model.bias_parameters(), lr=config.learning_rate, fused=True
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
        # The softmax's logQ correction, folded into the gathered item biases (one subtraction).
        self.item_logq = self.sampler.log_prob(torch.arange(data.num_items, device=device))
        if not self.shared:
            self.item_logq = None
        # Pairwise losses skip sampled "negatives" the user actually interacted with; the
        # softmax, a likelihood over all items, only removes each row's own positive.
        self.positives = (
            None if self.shared else PositiveSet(self.users, self.items, data.num_items)
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.users) / config.batch_size))
        # A data set smaller than a batch trains in one step of its own size.
        self.step_rows = min(config.batch_size, len(self.users)) or 1
        # This process's slice of each batch: positions and which of them are real rows.
        share = math.ceil(self.step_rows / self.group.world_size)
        positions = torch.arange(share, device=device) + self.group.rank * share
        self._share_real = positions < self.step_rows
        self._share_positions = torch.where(self._share_real, positions, 0)
        # How the processes exchange the rows a step touched (module docstring): the whole
        # table's gradient by one all-reduce when it is small, else the rows by an all-gather.
        rows = share * (2 + config.negatives) if not self.shared else 2 * share + config.negatives
        gathered_bytes = self.group.world_size * rows * (4 * config.embedding_dim + 8)
        table_bytes = self.embeddings.shape[0] * 4 * (config.embedding_dim + 1)
        self._dense = None
        if self.group.distributed and table_bytes <= DENSE_RATIO * gathered_bytes:
            self._dense = self.embeddings.new_zeros(table_bytes // 4)
        # The large-batch rule (TrainConfig.epochs): beyond batch 1024 the schedule spans
        # sqrt(batch / 1024) times the epochs asked for; the fit reaches them through
        # mfrec.train.phases' extensions while VALID improves.
        self.horizon_epochs = round(horizon_epochs * config.epochs / config.num_epochs)
        self.total_steps = self.horizon_epochs * self.steps_per_epoch
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches of the current epoch
        self.step = 0
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._shuffle_state = self.shuffle_generator.get_state()
        self._scores_and_loss = self._forward
        self._row_update = row_adam_update
        self._step_size = None
        if os.environ.get(COMPILE_ENV, "") == "1":
            self._step_size = torch.zeros((), device=device)
            self._scores_and_loss = torch.compile(self._forward, dynamic=False)
            self._row_update = torch.compile(row_adam_update, dynamic=False)

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
        order, weights, valid = self._epoch_order()
        rows = self.step_rows
        while self.batch < self.steps_per_epoch:
            if should_stop():
                return None
            batch = slice(self.batch * rows, (self.batch + 1) * rows)  # views: no kernel
            rate = self.learning_rate(self.step)
            self.embedding_optimizer.lr = rate
            for group in self.bias_optimizer.param_groups:
                group["lr"] = rate
            with torch.profiler.record_function("Trainer.step"):  # one range in a profile
                self.bias_optimizer.zero_grad(set_to_none=True)
                ranking_loss, gathered = self._loss(order[batch], weights[batch], valid[batch])
                ranking_loss.backward()
                ranking_loss = self._reduce(ranking_loss)
                self.bias_optimizer.step()
                self._update_rows(gathered)
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

    def _epoch_order(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This epoch's interaction order, padded to whole batches, with each position's loss
        weight (0 for padding) and share of its batch's real rows (1 / real rows, 0 for
        padding), all (steps_per_epoch * step_rows,).

        Padding repeats the first interaction of the last batch: its rows are touched by that
        batch anyway, and at weight 0 its gradients are exactly 0, so padding changes nothing
        but the shapes."""
        count = len(self.users)
        order = torch.randperm(count, generator=self.shuffle_generator, device=self.device)
        padding = self.steps_per_epoch * self.step_rows - count
        valid = torch.ones(count, device=self.device)
        weights = valid if self.weights is None else self.weights.index_select(0, order)
        if padding:
            last_first = order[(self.steps_per_epoch - 1) * self.step_rows]
            order = torch.cat([order, last_first.expand(padding)])
            valid = torch.cat([valid, valid.new_zeros(padding)])
            weights = torch.cat([weights, weights.new_zeros(padding)])
        # valid becomes 1 / (real rows of its batch) on real rows: a mean is then one sum.
        valid = valid.view(self.steps_per_epoch, -1)
        valid = (valid / valid.sum(dim=1, keepdim=True)).view(-1)
        return order, weights, valid

    def _loss(self, index: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor):
        """(ranking loss, gathered rows) of one batch (the L2 penalty is added to the
        gradients by :meth:`_update_rows`).

        The gathered rows are ``(row index, rows, valid)``: ``rows`` a leaf tensor of users,
        positive items, then negative items, whose ``.grad`` the backward pass fills; ``valid``
        each row's share of the batch (this process's rows only, when distributed).
        """
        config, size = self.config, len(index)
        # index_select rather than [index] throughout: several times faster on a CPU.
        user_idx = self.users.index_select(0, index)
        item_idx = self.items.index_select(0, index)
        if self.shared:
            negative_idx = self.sampler.sample((config.negatives,))
        else:
            negative_idx = self.sampler.sample((size, config.negatives))
            # Padding rows take the first row's negatives: rows that batch touches anyway.
            negative_idx = torch.where(valid[:, None] > 0, negative_idx, negative_idx[:1])
        batch_weight = weights.sum()
        if self.group.distributed:  # this process's share of the batch (module docstring)
            take, real = self._share_positions, self._share_real
            user_idx, item_idx = user_idx.index_select(0, take), item_idx.index_select(0, take)
            weights = torch.where(real, weights.index_select(0, take), 0.0)
            valid = torch.where(real, valid.index_select(0, take), 0.0)
            if not self.shared:
                negative_idx = negative_idx.index_select(0, take)
        if self.shared:
            mask = negative_idx[None, :] != item_idx[:, None]
        else:
            mask = ~self.positives.contains(user_idx, negative_idx)
        item_rows = torch.cat([item_idx, negative_idx.reshape(-1)])
        row_index = torch.cat([user_idx, item_rows + self.num_users])
        gathered = self.embeddings.index_select(0, row_index).requires_grad_()
        biases = self.model.item_biases.index_select(0, item_rows)
        if self.item_logq is not None:
            biases = biases - self.item_logq.index_select(0, item_rows)
        user_biases = None
        if self.config.user_bias:
            user_biases = self.model.user_biases.index_select(0, user_idx)
        if not self.group.distributed:
            ranking_loss = self._scores_and_loss(gathered, biases, user_biases, mask, weights)
            return ranking_loss, (row_index, gathered, valid)
        # The share's weighted mean times its part of the batch's weight: the shares' losses
        # add up to the batch's. A share of padding alone (weight 0) computes with weights 1,
        # then counts 0.
        share_weight = weights.sum()
        safe = torch.where(share_weight > 0, weights, 1.0)
        ranking_loss = self._scores_and_loss(gathered, biases, user_biases, mask, safe)
        return ranking_loss * (share_weight / batch_weight), (row_index, gathered, valid)

    def _reduce(self, ranking_loss: torch.Tensor) -> torch.Tensor:
        """Sum the biases' gradients and the loss over the processes (one all-reduce); the
        batch's loss."""
        if not self.group.distributed:
            return ranking_loss
        grads = [p.grad for p in self.model.bias_parameters()]
        flat = torch.cat([*(g.reshape(-1) for g in grads), ranking_loss.detach().reshape(1)])
        self.group.all_reduce_(flat)
        start = 0
        for grad in grads:
            grad.copy_(flat[start : start + grad.numel()].view_as(grad))
            start += grad.numel()
        return flat[-1]

    def _forward(self, gathered, biases, user_biases, mask, weights):
        """Scores and ranking loss from the gathered rows (the compiled part)."""
        size = len(weights)
        # split rather than slices: its backward is one cat, not one zero-filled gradient per
        # slice.
        users, positives, negatives = gathered.split([size, size, len(gathered) - 2 * size])
        positive_biases, negative_biases = biases.split([size, len(biases) - size])
        positive = (users * positives).sum(dim=1) + positive_biases
        if self.shared:
            negative = torch.addmm(negative_biases, users, negatives.T)
        else:
            negatives = negatives.view(size, -1, negatives.shape[1])
            negative = torch.einsum("bd,bnd->bn", users, negatives)
            negative = negative + negative_biases.view(negative.shape)
        if user_biases is not None:
            positive = positive + user_biases
            negative = negative + user_biases[:, None]
        return self.loss_fn(positive, negative, weights, negative_mask=mask)

    @torch.no_grad()
    def _update_rows(self, gathered) -> None:
        """The L2 penalty's gradient, then the lazy Adam step of the rows a batch gathered.

        The penalty is ``l2`` times the mean over the batch's real rows of
        ``|user|^2 + |positive item|^2``; its gradient, ``2 * l2 * valid * row`` on the user
        and positive rows (``valid`` is 1 / real rows, 0 on padding), is added directly: one
        kernel where autograd would take eight.
        """
        row_index, vectors, valid = gathered
        optimizer = self.embedding_optimizer
        if self.config.l2:
            front = vectors.grad[: 2 * len(valid)].view(2, len(valid), -1)
            front.addcmul_(vectors[: 2 * len(valid)].view_as(front), valid[:, None],
                           value=2 * self.config.l2)  # fmt: skip
        grad = vectors.grad
        if self._dense is not None:
            row_index, grad = self._all_reduce_rows(row_index, grad)
        elif self.group.distributed:  # the union of every share's rows, in rank order
            row_index, grad = self._all_gather_rows(row_index, grad)
        with torch.profiler.record_function("RowAdam.step"):
            step_size = optimizer.step_size(0)
            optimizer.steps[0] += 1
            if self._step_size is not None:  # compiled: a tensor, or each value recompiles
                step_size = self._step_size.fill_(step_size)
            beta1, beta2 = optimizer.betas
            self._row_update(
                self.embeddings, optimizer.moments[0], row_index, grad, step_size,
                beta1, beta2, optimizer.eps,
            )  # fmt: skip

    def _all_gather_rows(self, row_index: torch.Tensor, grad: torch.Tensor):
        """Every process's touched rows and their gradients, in one all-gather: the int64
        indices ride along as two float32 columns of the same bits."""
        packed = torch.cat([grad, row_index.view(torch.float32).view(-1, 2)], dim=1)
        packed = self.group.all_gather_cat(packed)
        row_index = packed[:, -2:].contiguous().view(torch.int64).view(-1)
        return row_index, packed[:, :-2]

    def _all_reduce_rows(self, row_index: torch.Tensor, grad: torch.Tensor):
        """The summed gradients of the rows any process touched, by one all-reduce of the
        whole table's gradient and a touched count per row (small tables)."""
        dense = self._dense.zero_().view(len(self.embeddings), -1)
        dense[:, :-1].index_add_(0, row_index, grad)
        dense[:, -1].index_add_(0, row_index, torch.ones_like(row_index, dtype=dense.dtype))
        self.group.all_reduce_(self._dense)
        touched = torch.nonzero(dense[:, -1]).squeeze(1)  # sorted, distinct
        return touched, dense.index_select(0, touched)[:, :-1]

    def _check_diverged(self, mean_loss: float) -> None:
        check_diverged(
            self.model,
            mean_loss,
            self.untrained_loss,
            self.epoch,
            f"lower learning_rate (now {self.config.learning_rate}) or raise l2 (now "
            f"{self.config.l2})",
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
        self.model.load_state_dict(state["model"])  # copies into the shared table
        optimizer_state = dict(state["embedding_optimizer"])
        if len(optimizer_state["steps"]) == 2:  # saved when users and items had two tables
            optimizer_state["steps"] = optimizer_state["steps"][:1]
            for name in ("exp_avg", "exp_avg_sq"):
                optimizer_state[name] = [torch.cat(optimizer_state[name])]
        self.embedding_optimizer.load_state_dict(optimizer_state)
        self.bias_optimizer.load_state_dict(state["bias_optimizer"])
        self._shuffle_state = state["shuffle_generator"]
        self.shuffle_generator.set_state(state["shuffle_generator"])
        self.sample_generator.set_state(state["sample_generator"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.loss_sum.copy_(state["loss_sum"])


def check_diverged(model, mean_loss: float, untrained_loss: float, epoch: int, advice: str):
    """Raise :class:`TrainingDivergedError` (ending in ``advice``) when the epoch's mean loss
    or ``model``'s weights are not finite, or the loss is over :data:`DIVERGENCE_FACTOR` times
    an untrained model's; shared by the SGD and the sequence trainers."""
    finite = math.isfinite(mean_loss) and all(
        bool(torch.isfinite(p).all()) for p in model.parameters()
    )
    if finite and mean_loss <= DIVERGENCE_FACTOR * untrained_loss:
        return
    why = (
        f"the loss is {mean_loss:.4g}, over {DIVERGENCE_FACTOR:g} times an untrained "
        f"model's {untrained_loss:.4g}"
        if finite
        else f"the loss or the weights became NaN or infinite (loss {mean_loss})"
    )
    raise TrainingDivergedError(f"training diverged in epoch {epoch}: {why}; {advice}")
