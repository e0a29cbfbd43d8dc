"""Lazy Adam for embedding tables, updated through the rows a batch gathered.

A training step gathers the embedding rows it needs (``table[index]``) as leaf tensors, computes
the loss from them and back-propagates into those small ``(len(index), dim)`` tensors only. This
optimizer then adds up the gradients of repeated rows and applies Adam to the touched rows alone:
the "lazy" Adam of :class:`torch.optim.SparseAdam` (moments of untouched rows are left as they
are; one step count per table), with the same update formula, but without building and
coalescing sparse gradient tensors, which cost more than the matrix products of a step on a CPU.
"""

from __future__ import annotations

import math

import torch


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
        self.exp_avg = [torch.zeros_like(table) for table in self.tables]
        self.exp_avg_sq = [torch.zeros_like(table) for table in self.tables]

    @torch.no_grad()
    def step(self, which: int, index: torch.Tensor, grad: torch.Tensor) -> None:
        """One Adam step of table ``which`` from the gradients ``grad`` (len(index), dim) of
        the rows ``index`` (repeats allowed: their gradients add up, as for a dense step)."""
        with torch.profiler.record_function("RowAdam.step"):  # one phase in a profile
            self._step(which, index, grad)

    def _step(self, which: int, index: torch.Tensor, grad: torch.Tensor) -> None:
        table = self.tables[which]
        rows, inverse = torch.unique(index, return_inverse=True)
        summed = torch.zeros((len(rows), table.shape[1]), dtype=grad.dtype, device=grad.device)
        summed.index_add_(0, inverse, grad)
        beta1, beta2 = self.betas
        self.steps[which] += 1
        step = self.steps[which]
        # index_select/index_copy_ rather than [rows]: several times faster on a CPU.
        exp_avg = self.exp_avg[which].index_select(0, rows)
        exp_avg.mul_(beta1).add_(summed, alpha=1 - beta1)
        exp_avg_sq = self.exp_avg_sq[which].index_select(0, rows)
        exp_avg_sq.mul_(beta2).addcmul_(summed, summed, value=1 - beta2)
        self.exp_avg[which].index_copy_(0, rows, exp_avg)
        self.exp_avg_sq[which].index_copy_(0, rows, exp_avg_sq)
        # SparseAdam's form: lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
        step_size = self.lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        update = exp_avg.div_(exp_avg_sq.sqrt_().add_(self.eps))
        values = table.index_select(0, rows).add_(update, alpha=-step_size)
        table.index_copy_(0, rows, values)  # rows are unique: a copy, cheaper than index_add_

    def state_dict(self) -> dict:
        return {
            "steps": list(self.steps),
            "exp_avg": [tensor.detach().cpu() for tensor in self.exp_avg],
            "exp_avg_sq": [tensor.detach().cpu() for tensor in self.exp_avg_sq],
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = [int(step) for step in state["steps"]]
        saved = state["exp_avg"] + state["exp_avg_sq"]
        for mine, value in zip(self.exp_avg + self.exp_avg_sq, saved, strict=True):
            mine.copy_(value)
