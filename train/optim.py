"""Lazy Adam for embedding tables, updated through the rows a batch gathered.

A training step gathers the embedding rows it needs (``table[index]``) as leaf tensors, computes
the loss from them and back-propagates into those small ``(len(index), dim)`` tensors only. This
optimizer then adds up the gradients of repeated rows and applies Adam to the touched rows alone:
the "lazy" Adam of :class:`torch.optim.SparseAdam` (moments of untouched rows are left as they
are; one step count per table), with the same update formula, but without building and
coalescing sparse gradient tensors, which cost more than the matrix products of a step on a CPU.

Every shape in a step is fixed by ``len(index)``, and nothing waits for the device: repeated
rows are found with a sort and a :func:`torch.searchsorted` (each position's key is the first
position of its row in the sorted index) instead of :func:`torch.unique`, whose output size
depends on the data and must be read back by the host. Each position then updates its row with
its row's summed gradient; repeated positions write identical values. That keeps a step
capturable (CUDA graphs, ``torch.compile``) and free of host synchronisations.
"""

from __future__ import annotations

import math

import torch


def row_adam_update(
    table: torch.Tensor,
    moments: torch.Tensor,
    index: torch.Tensor,
    grad: torch.Tensor,
    step_size: float | torch.Tensor,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One lazy Adam step of the rows ``index`` of ``table``, in place (15 ATen ops).

    Parameters
    ----------
    table : Tensor (rows, dim)
    moments : Tensor (2, rows, dim)
        The first and second moments, stacked (one gather, one scatter; each moment of the
        gathered rows stays contiguous for the element-wise work).
    index : LongTensor (n,)
        Rows touched by the step, repeats allowed (their gradients add up).
    grad : Tensor (n, dim)
    step_size : float or 0-d Tensor
        ``lr * sqrt(1 - beta2^t) / (1 - beta1^t)``.
    """
    ordered = torch.sort(index).values
    # The first position of each position's row in the sorted index: a key shared by repeats.
    key = torch.searchsorted(ordered, index)
    summed = torch.zeros_like(grad).index_add_(0, key, grad)  # in position order, as before
    grad = summed.index_select(0, key)
    state = moments.index_select(1, index)
    exp_avg, exp_avg_sq = state[0], state[1]
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    moments.index_copy_(1, index, state)  # repeats write identical values
    denominator = exp_avg_sq.sqrt().add_(eps)
    values = table.index_select(0, index)
    if isinstance(step_size, torch.Tensor):
        values.sub_(exp_avg.div_(denominator).mul_(step_size))
    else:
        values.addcdiv_(exp_avg, denominator, value=-step_size)
    table.index_copy_(0, index, values)


class RowAdam:
    """Adam over the gathered rows of some 2-D parameters.

    Parameters
    ----------
    tables : list of Tensor (rows, dim)
        The parameters (updated in place, without autograd).
    lr : float
    betas : (float, float)
    eps : float
    """

    def __init__(
        self,
        tables: list[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.tables = list(tables)
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.steps = [0 for _ in self.tables]
        self.moments = [table.new_zeros((2, *table.shape)) for table in tables]

    @property
    def exp_avg(self) -> list[torch.Tensor]:
        return [moments[0] for moments in self.moments]

    @property
    def exp_avg_sq(self) -> list[torch.Tensor]:
        return [moments[1] for moments in self.moments]

    def step_size(self, which: int) -> float:
        """The step size of table ``which``'s next step (SparseAdam's bias correction)."""
        beta1, beta2 = self.betas
        step = self.steps[which] + 1
        return self.lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)

    @torch.no_grad()
    def step(self, which: int, index: torch.Tensor, grad: torch.Tensor) -> None:
        """One Adam step of table ``which`` from the gradients ``grad`` (len(index), dim) of
        the rows ``index`` (repeats allowed: their gradients add up, as for a dense step)."""
        with torch.profiler.record_function("RowAdam.step"):  # one phase in a profile
            step_size = self.step_size(which)
            self.steps[which] += 1
            beta1, beta2 = self.betas
            row_adam_update(
                self.tables[which], self.moments[which], index, grad, step_size,
                beta1, beta2, self.eps,
            )  # fmt: skip

    def state_dict(self) -> dict:
        return {
            "steps": list(self.steps),
            "exp_avg": [tensor.detach().cpu().clone() for tensor in self.exp_avg],
            "exp_avg_sq": [tensor.detach().cpu().clone() for tensor in self.exp_avg_sq],
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = [int(step) for step in state["steps"]]
        saved = state["exp_avg"] + state["exp_avg_sq"]
        for mine, value in zip(self.exp_avg + self.exp_avg_sq, saved, strict=True):
            mine.copy_(value)
