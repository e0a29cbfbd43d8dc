"""Implicit alternating least squares (iALS; Hu, Koren & Volinsky 2008) with Rendle's recipe.

Rendle, Krichene, Zhang & Koren, "Revisiting the Performance of iALS on Item Recommendation
Benchmarks" (RecSys 2022): unobserved weight α0 on all pairs, frequency-scaled regularisation,
a small N(0, (init_scale/√d)²) start drawn on the CPU. It minimises ::

    L(W, H) = Σ_{(u,i)∈S} c_ui (1 − w_u·h_i)² + α0 Σ_{u∈U} Σ_{i∈I} (w_u·h_i)²
              + λ ( Σ_u r_u ||w_u||² + Σ_i r_i ||h_i||² ),
    r_u = (|I_u| + α0·|I|)^ν,   r_i = (|U_i| + α0·|U|)^ν,

where S holds the observed pairs, c_ui their confidences (repeated pairs add up, so they are
summed once at start) and |I_u| the distinct items of user u. The all-pairs term includes the
observed pairs, so an observed pair weighs c_ui + α0 towards the target c_ui / (c_ui + α0).
Each half-step solves, for every user u with H fixed (items: symmetric, with G = WᵀW) ::

    (α0 G + Σ_{i∈I_u} c_ui h_i h_iᵀ + λ r_u I) w_u = Σ_{i∈I_u} c_ui h_i,   G = HᵀH.

``"cholesky"`` forms those systems (rows bucketed by length, padded histories multiplied by
bmm, in chunks within a memory budget) and solves them exactly; ``"cg"`` takes ``cg_steps``
conjugate-gradient steps from the current factors, each one sampled dense product (the dots
h_i·v) and one sparse-dense product, never forming a d×d matrix per row. On the CPU those
products run tile by tile, each tile the entries whose fixed factors fit in 4 MB
(:data:`TILE_BYTES`), so that the gathered rows stay in the cache (:func:`_tiles`): on 10M
interactions this cut the CPU time of a CG iteration by about 2.5 times. On a side whose
temporaries exceed :data:`MIN_SHARED_BYTES` the CPU's threads share the chunks of rows
(:func:`_over_chunks`), so the factors do not depend on the number of threads; a smaller side
is one chunk whose products use torch's threads. (The table below predates both.)

Measured on this project's 2-core CPU machine (torch 2.13 CPU build, implicit 0.7.3), on
synthetic data of 960K training interactions (50K users × 20K items, Zipf item popularity, 100
taste clusters; one event per user held out), defaults otherwise; seconds per iteration as the
median (minimum) over 10 iterations, then L and recall@20 of the held-out events after 10 ::

    solver              d   1 thread     2 threads*    L after 10   recall@20
    cg (3 steps)       64   0.71 (0.57)  0.41 (0.36)     574 905     0.205
    cholesky           64   5.57 (5.33)  5.13 (4.29)     574 897     0.205
    implicit CG        64   0.73 (0.59)  0.34 (0.30)           -     0.210
    implicit Cholesky  64   3.34 (2.71)  1.92 (1.51)           -     0.211
    cg (3 steps)      128   1.55 (1.13)  3.15 (2.47)     561 402     0.219
    cholesky          128   28.1 (24.7)  37.0 (23.1)     561 343     0.219
    implicit CG       128   1.29 (1.17)  1.18 (1.07)           -     0.217
    implicit Cholesky 128   9.22 (8.60)  9.49 (9.37)           -     0.218

(*) other jobs shared the cores (load 1.4 to 3.8); that slows torch's many short parallel
regions far more than implicit's one loop (2-thread cg took 0.41 to 2.5 s at d = 64). implicit
ran its best of a 3×3 grid (regularization 0.1, alpha 10); its loss is another one.

Defaults. ``solver="cg"``: 3 warm-started steps reach Cholesky's L within 0.02 % and its
recall within noise, 8 to 18 times faster on a CPU and on par with implicit's CG on 1 thread.
α0 = 0.03 and λ = 0.01 lie inside the ranges Rendle et al. tuned on four benchmarks (α0 0.007
to 0.3, λ 0.002 to 0.02, ν = 1, one unit of confidence per event) and were the most robust pair
of a grid at d = 128 on three data sets (mfrec's default data, MovieLens-100K, the synthetic
set): within 17 %, 6 % and 1 % of each one's best recall@20, where Rendle's MovieLens-20M pair
(0.1, 0.003) lost 33 % and 16 % on the two small dense sets. The best λ moves with the data
(0.003 to 0.03 here): tune it.

Distributed (:mod:`mfrec.train.distributed`): every process holds all interactions and both
factor tables; each solves its contiguous share of the users (then of the items), of about
equal cost, and the shares are all-gathered, so every process ends the half-step with the same
tables. Rows are solved independently, so the factors equal one process's up to the rounding of
differently shaped products; the observed part of the loss is summed over the shares.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mfrec.train import distributed
from mfrec.train.errors import ConfigError, DataValidationError, TrainingDivergedError
from mfrec.train.interactions import Interactions
from mfrec.train.model import MatrixFactorization

SOLVERS = ("cholesky", "cg")
# Bytes of temporaries one chunk of rows may allocate; a chunk holds at least one row.
CHUNK_BYTES = 256 * 2**20
# The CPU cuts each side into this many chunks of rows (at least), which its threads share,
# when a side's temporaries exceed MIN_SHARED_BYTES; a smaller side is one chunk whose products
# use torch's threads (on MovieLens 100K eight shared chunks took twice the time of one: the
# products are too short for the threads' handovers).
CPU_CHUNKS = 8
MIN_SHARED_BYTES = 8 * 2**20
# Bytes of fixed factors that one tile of a sparse product reads (see _tiles), by device type;
# other devices (CUDA) take all the columns in one tile.
TILE_BYTES = {"cpu": 4 * 2**20}


@dataclass(frozen=True)
class IALSParams:
    """Hyperparameters of :class:`IALSTrainer` (symbols as in the module docstring)."""

    embedding_dim: int = 128
    alpha0: float = 0.03
    regularization: float = 0.01
    nu: float = 1.0
    init_scale: float = 0.1
    solver: str = "cg"
    cg_steps: int = 3
    seed: int = 42

    def __post_init__(self) -> None:
        def within(value, low, high, kind=(int, float), closed=False):
            ok = isinstance(value, kind) and not isinstance(value, bool)
            return ok and (value >= low if closed else value > low) and value <= high

        inf = math.inf
        checks = [
            ("embedding_dim", within(self.embedding_dim, 1, inf, int, True), "an integer >= 1"),
            ("alpha0", within(self.alpha0, 0, 1e6), "a number in (0, 1e6]"),
            ("regularization", within(self.regularization, 0, 1e6), "a number in (0, 1e6]"),
            ("nu", within(self.nu, 0, 1, closed=True), "a number in [0, 1]"),
            ("init_scale", within(self.init_scale, 0, 1e3), "a number in (0, 1e3]"),
            ("solver", self.solver in SOLVERS, "one of " + ", ".join(map(repr, SOLVERS))),
            ("cg_steps", within(self.cg_steps, 1, inf, int, True), "an integer >= 1"),
            ("seed", within(self.seed, 0, 2**63 - 1, int, True), "an integer in [0, 2**63)"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"iALS {name}={getattr(self, name)!r}: must be {allowed}")


@contextmanager
def _csr_beta_accepted():
    """torch warns once that sparse CSR is beta; the operations used here are tested."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        yield


Tile = tuple[int, int, torch.Tensor]  # first column, end column, CSR (rows, end - first)


@dataclass
class _Side:
    """One side (users or items) of the interactions on the device. ``reg`` (n,) = λ·r;
    ``blocks``: the chunks of rows (first row, end row, tiles) that CG and the objective walk,
    each tile a CSR of the chunk's entries in a range of columns; for Cholesky, the rows as
    CSR (``indptr`` (n + 1,), ``indices`` and ``conf`` (nnz,)) and ``by_length``, chunks of
    rows of about equal length (rows (R,), padded width)."""

    reg: torch.Tensor
    blocks: list[tuple[int, int, list[Tile]]]
    indptr: torch.Tensor | None = None
    indices: torch.Tensor | None = None
    conf: torch.Tensor | None = None
    by_length: tuple[tuple[torch.Tensor, int], ...] = ()


def _row_costs(lengths: np.ndarray, d: int) -> np.ndarray:
    """Bytes of temporaries a CG row takes: eight (d,) vectors and a few scalars per entry."""
    return 32 * d + 16 * lengths


@_csr_beta_accepted()
def _side(rows, cols, conf, num_rows, num_cols, params, budget, device, share, tiled, exact):
    """Build a :class:`_Side` from entries sorted by row then column (NumPy arrays, shape
    (nnz,)); its chunks cover the rows ``share`` = [start, stop) only, this process's. The
    tiles are built when ``tiled``, the Cholesky structures when ``exact``."""
    d = params.embedding_dim
    lengths = np.bincount(rows, minlength=num_rows)
    first, last = share
    starts = np.concatenate([[0], np.cumsum(lengths)])
    reg = params.regularization * (lengths + params.alpha0 * num_cols) ** params.nu
    side = _Side(torch.as_tensor(reg, dtype=torch.float32, device=device), [])
    if tiled:
        width = TILE_BYTES.get(device.type, 0) // (4 * d) or num_cols
        costs = np.cumsum(_row_costs(lengths[first:last], d))
        if device.type == "cpu" and len(costs) and costs[-1] > MIN_SHARED_BYTES:
            budget = min(budget, int(costs[-1]) // CPU_CHUNKS + 1)  # shared (_over_chunks)
        for a, b in _cuts(costs, budget):
            a, b = a + first, b + first
            lo, hi = int(starts[a]), int(starts[b])
            tiles = _tiles(rows[lo:hi], cols[lo:hi], conf[lo:hi], a, b - a, num_cols, width)
            side.blocks.append((a, b, [(c0, c1, t.to(device)) for c0, c1, t in tiles]))
    if exact:
        side.indptr = torch.as_tensor(starts, device=device)
        side.indices = torch.as_tensor(cols, dtype=torch.int64, device=device)
        side.conf = torch.as_tensor(conf, dtype=torch.float32, device=device)
        side.by_length = _by_length(lengths, first, last, d, budget, device)
    return side


def _tiles(rows, cols, conf, first: int, num_rows: int, num_cols: int, width: int) -> list[Tile]:
    """The entries of the rows [first, first + num_rows) (sorted by row then column) cut by
    column into ranges of ``width``, each range a CSR (num_rows, width) on the CPU; empty
    ranges are left out.

    Why: a sparse product gathers one row of the fixed factors per entry. Once those factors
    outgrow the processor's cache (250K × 64 floats is 64 MB), every gather misses it: 10M
    interactions took 2.6 times as long per entry as 1M. A tile reads only ``width`` rows of
    them, which stay in cache while its entries are processed."""
    count = -(-num_cols // width)
    if count > 1:  # a stable sort by tile keeps each tile's entries in row order
        small = np.uint16 if count <= 2**16 else np.int64  # 16 bits: NumPy sorts by radix
        block = (cols // width).astype(small)
        order = np.argsort(block, kind="stable")
        cuts = np.concatenate([[0], np.cumsum(np.bincount(block, minlength=count))])
        del block
        rows, cols, conf = rows[order], cols[order], conf[order]
    else:
        cuts = np.array([0, len(cols)])
    # 32-bit indices where they fit: half the memory, and MKL's sparse product would otherwise
    # convert 64-bit ones to 32 bits on every call.
    index = np.int32 if max(len(cols), width) < 2**31 else np.int64
    tiles = []
    for number, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        if hi > lo:
            c0, c1 = number * width, min(num_cols, (number + 1) * width)
            lengths = np.bincount(rows[lo:hi] - first, minlength=num_rows)
            matrix = torch.sparse_csr_tensor(
                torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)]).astype(index)),
                torch.as_tensor((cols[lo:hi] - c0).astype(index, copy=False)),
                torch.as_tensor(conf[lo:hi], dtype=torch.float32), (num_rows, c1 - c0),
                check_invariants=False,
            )  # fmt: skip
            tiles.append((c0, c1, matrix))
    return tiles


def _by_length(lengths, first, last, d, budget, device) -> tuple[tuple[torch.Tensor, int], ...]:
    """Cholesky's chunks: rows sorted by history length and cut where the length grows by
    25 %, so that padding stays small; a row holds two (width, d) gathers and three (d, d)
    matrices."""
    order = np.argsort(lengths, kind="stable")
    order = order[(order >= first) & (order < last)]
    per_row = 4 * (2 * lengths[order] * d + 3 * d * d) + 24 * lengths[order]
    bucket = np.floor(np.log1p(lengths[order]) / np.log(1.25))
    edges = [0, *np.flatnonzero(np.diff(bucket)) + 1, len(order)]
    return tuple(
        (torch.as_tensor(order[s + a : s + b], device=device), int(lengths[order[s + b - 1]]))
        for s, e in zip(edges[:-1], edges[1:], strict=True)
        for a, b in _cuts(np.cumsum(per_row[s:e]), budget)
    )


def _cuts(cumulative: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive chunks of rows (at least one each) whose costs, summed as ``cumulative``
    (n,), stay within ``budget``."""
    cuts, start, n = [], 0, len(cumulative)
    while start < n:
        spent = cumulative[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(cumulative, spent + budget, side="right")))
        cuts.append((start, stop))
        start = stop
    return cuts


def _systems(side: _Side, rows, width: int, fixed, gram, alpha0: float):
    """The systems of ``rows`` (R,): matrices (R, d, d) and right-hand sides (R, d). Histories
    are padded to ``width`` with entry 0 at confidence 0, which adds exact zeros."""
    offsets = torch.arange(width, device=fixed.device)
    start = side.indptr[rows]
    valid = offsets < (side.indptr[rows + 1] - start)[:, None]
    pos = torch.where(valid, start[:, None] + offsets, 0)
    weight = torch.where(valid, side.conf[pos], 0.0)
    vectors = fixed.index_select(0, side.indices[pos].reshape(-1))
    vectors = vectors.view(len(rows), width, fixed.shape[1])
    weighted = vectors * weight[..., None]
    matrices = torch.baddbmm(gram.expand(len(rows), -1, -1), weighted.mT, vectors, beta=alpha0)
    matrices.diagonal(dim1=1, dim2=2).add_(side.reg[rows][:, None])
    return matrices, weighted.sum(1)


def _solve_cholesky(side: _Side, fixed, gram, alpha0: float, out) -> None:
    """Overwrite ``out`` (n, d) with the exact solution of every row's system."""
    failed = torch.zeros(len(out), dtype=torch.bool, device=out.device)
    for rows, width in side.by_length:
        matrices, rhs = _systems(side, rows, width, fixed, gram, alpha0)
        factor, info = torch.linalg.cholesky_ex(matrices)
        out.index_copy_(0, rows, torch.cholesky_solve(rhs[..., None], factor)[..., 0])
        failed.index_copy_(0, rows, info != 0)
    # The one synchronisation of a Cholesky half-step: float32 Cholesky fails only when λ·r is
    # tiny next to the Gram (ν = 0 with a small λ); LU then still gives an answer.
    if failed.any():
        for rows, width in side.by_length:
            bad = failed[rows]
            if bad.any():
                matrices, rhs = _systems(side, rows, width, fixed, gram, alpha0)
                out.index_copy_(0, rows[bad], torch.linalg.solve(matrices[bad], rhs[bad]))


@_csr_beta_accepted()
def _solve_cg(side: _Side, fixed, gram, alpha0: float, out, steps: int) -> None:
    """Improve ``out`` (n, d) in place by ``steps`` CG steps on every row's system. A product
    A_u v = α0 G v + λ r_u v + Σ_i c_ui (h_i·v) h_i takes, per tile, one sampled dense product
    (the dots, SDDMM) and one sparse-dense product: no (nnz, d) gather, no d×d matrix per row."""

    def solve(block) -> None:
        r0, r1, tiles = block
        reg = side.reg[r0:r1, None]

        scratch = [_scratch(tile) for _, _, tile in tiles]

        def product(v, shift=0.0):
            """A v, or with ``shift=1`` A v - b: the dots h_i·v become h_i·v - 1."""
            image = torch.addmm(v * reg, v, gram, alpha=alpha0)
            for (c0, c1, tile), dots in zip(tiles, scratch, strict=True):
                part = fixed[c0:c1]
                torch.sparse.sampled_addmm(dots, v, part.T, beta=0.0, out=dots)
                values = dots.values()
                if shift:
                    values.sub_(shift)
                values.mul_(tile.values())
                image.addmm_(dots, part)
            return image

        x = out[r0:r1]  # updated in place
        residual = product(x, shift=1.0).neg_()
        direction, norm = residual.clone(), residual.square().sum(1, keepdim=True)
        for _ in range(steps):
            image = product(direction)
            curvature = (direction * image).sum(1, keepdim=True)
            # A row that has converged exactly has zero curvature: step 0, not 0/0.
            step = torch.where(curvature > 0, norm / curvature, 0.0)
            x.addcmul_(step, direction)
            residual.addcmul_(step, image, value=-1.0)
            new_norm = residual.square().sum(1, keepdim=True)
            direction.mul_(torch.where(norm > 0, new_norm / norm, 0.0)).add_(residual)
            norm = new_norm

    _over_chunks(solve, side.blocks, out.device)


def _scratch(tile: torch.Tensor) -> torch.Tensor:
    """A CSR with ``tile``'s indices and values 0, into which ``sampled_addmm(..., out=)``
    writes the dots: without ``out`` it would copy the tile's indices and values each call
    (15 % of its time on 1M interactions). Zeros, not garbage: it computes 0·old + dot."""
    return torch.sparse_csr_tensor(
        tile.crow_indices(), tile.col_indices(), torch.zeros_like(tile.values()), tile.shape,
        check_invariants=False,
    )  # fmt: skip


def _over_chunks(solve, blocks, device) -> list:
    """``[solve(block) for block in blocks]``, on a CPU by threads that each take the next
    chunk and run its products single-threaded: a chunk's answer does not depend on the
    thread, and a thread that the OS deschedules does not hold up the other (torch splits
    each product evenly between its threads and waits for all: on this project's loaded
    2-core machine, 2 threads took 3 times the CPU time of 1 per iteration)."""
    workers = min(len(blocks), torch.get_num_threads() if device.type == "cpu" else 1)
    if workers <= 1:
        return [solve(block) for block in blocks]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(solve, blocks))
    finally:
        torch.set_num_threads(threads)


def _pairs(data: Interactions, confidences):
    """Distinct (user, item) pairs sorted by user then item, with summed confidences: users,
    items (int64) and confidences (float32), each of shape (nnz,)."""
    n = len(data)
    conf = None if confidences is None else np.asarray(confidences, dtype=np.float64)
    if conf is not None and conf.shape != (n,):
        raise DataValidationError(f"confidences have shape {conf.shape}, expected ({n},)")
    if n and conf is not None and not (np.isfinite(conf).all() and conf.min() >= 0):
        raise DataValidationError("confidences must be finite and >= 0")
    users = data.user_idx.astype(np.int64, copy=False)
    items = data.item_idx.astype(np.int64, copy=False)
    key = users * data.num_items + items
    if not (key[1:] >= key[:-1]).all():  # a stable sort, so sums run in the data's order
        key, order = _stable_sort(key)
        conf = None if conf is None else conf[order]
        users = items = None
    fresh = key[1:] != key[:-1]
    if fresh.all():  # no repeated pairs
        summed = np.ones(n, np.float32) if conf is None else conf.astype(np.float32)
    else:  # the first of each run of equal keys; np.unique's answer at a tenth of its time
        first = np.flatnonzero(np.concatenate([[True], fresh]))
        ones = np.ones(n) if conf is None else conf
        summed = np.add.reduceat(ones, first).astype(np.float32)
        key, users = key[first], None
    if users is None:
        users, items = np.divmod(key, data.num_items)
    return users, items, summed


def _stable_sort(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` (n,) of integers sorted, and ``np.argsort(keys, kind="stable")``. torch's stable
    sort of integers is a radix sort (in parallel): on 10M item indices it took a fifth of the
    CPU time of NumPy's 16-bit radix sorts in two passes, and it hands back the sorted keys,
    which saves a gather (a random gather of 10M fresh int64 took 0.1 to 0.8 s here)."""
    keys = np.require(keys, requirements="W")  # torch.from_numpy warns on a read-only array
    values, order = torch.sort(torch.from_numpy(keys), stable=True)
    return values.numpy(), order.numpy()


class IALSTrainer:
    """Fits a :class:`MatrixFactorization` by iALS: one epoch = a user step and an item step.

    The model's embeddings are the factors W (users) and H (items); its biases stay zero. CPU
    runs are bit-for-bit reproducible, also across :meth:`state_dict` / :meth:`load_state_dict`.

    Parameters
    ----------
    data : Interactions
    params : IALSParams
    device : torch.device
    confidences : ndarray of float32, shape (len(data),), or None
        c of each interaction (event value × recency weight, finite, >= 0); None: all ones.
    chunk_bytes : int
        Temporaries one chunk of rows may allocate; smaller chunks give the same solutions
        up to float rounding.
    """

    steps_per_epoch = 2

    def __init__(
        self,
        data: Interactions,
        params: IALSParams,
        device: torch.device,
        confidences: np.ndarray | None = None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.params, self.device = params, torch.device(device)
        self.group = distributed.current()
        users, items, conf = _pairs(data, confidences)
        sizes = (data.num_users, data.num_items)
        # 32-bit indices from here on where they fit: less memory at the peak of the setup.
        if max(sizes) < 2**31:
            users, items = users.astype(np.int32), items.astype(np.int32)
        # Each process solves a share of the users and of the items, of about equal cost, and
        # the shares are all-gathered after each half-step (module docstring).
        d, world = params.embedding_dim, self.group.world_size
        self._bounds = tuple(
            distributed.shard_bounds(_row_costs(np.bincount(rows, minlength=n), d), world)
            for rows, n in ((users, sizes[0]), (items, sizes[1]))
        )
        rank, exact = self.group.rank, params.solver == "cholesky"
        # The objective walks the users' tiles; the items' are needed by CG only. One side at
        # a time, each side's arrays freed once it is built (peak memory).
        args = (params, chunk_bytes, self.device)
        user_side = _side(users, items, conf, *sizes, *args, self._bounds[0][rank], True, exact)
        items, by_item = _stable_sort(items)  # the same pairs sorted by item, then user
        users = users[by_item]
        if len(conf) and conf.min() != conf.max():  # e.g. all ones: no gather needed
            conf = conf[by_item]
        del by_item
        item_side = _side(
            items, users, conf, *sizes[::-1], *args, self._bounds[1][rank], not exact, exact
        )
        self._sides = (user_side, item_side)
        del users, items, conf
        d = params.embedding_dim
        self.model = MatrixFactorization(*sizes, d, user_bias=False, seed=params.seed)
        # Rendle's start N(0, (init_scale/√d)²), drawn on the CPU so that a seed gives the same
        # factors on every device.
        generator = torch.Generator().manual_seed(params.seed)
        std = params.init_scale / math.sqrt(d)
        with torch.no_grad():
            for table in (self.model.user_embeddings, self.model.item_embeddings):
                table.copy_(torch.randn(table.shape, generator=generator) * std)
        self.model.requires_grad_(False).to(self.device)
        self.epoch = self.batch = 0
        self._grams: dict[int, tuple[int, torch.Tensor]] = {}  # see _gram

    def _gram(self, side: int) -> torch.Tensor:
        """FᵀF of the user (0) or item (1) factors F, kept until this trainer changes F (a
        half-step, a load): each iteration's objective needs both, and the next half-steps
        need them again (the same product of the same tensor, so the same bits). The table's
        address is checked too, in case the model was moved."""
        table = self._factors()[side]
        kept = self._grams.get(side)
        if kept is None or kept[0] != table.data_ptr():
            kept = self._grams[side] = (table.data_ptr(), table.T @ table)
        return kept[1]

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.user_embeddings.data, self.model.item_embeddings.data

    @torch.no_grad()
    def _half_step(self, users: bool) -> None:
        """Solve W with H fixed (``users``) or H with W fixed, in place."""
        params = self.params
        solved, fixed = self._factors() if users else self._factors()[::-1]
        side = self._sides[0 if users else 1]
        self._grams.pop(0 if users else 1, None)  # solved anew below
        gram = self._gram(1 if users else 0)
        if params.solver == "cholesky":
            _solve_cholesky(side, fixed, gram, params.alpha0, solved)
        else:
            _solve_cg(side, fixed, gram, params.alpha0, solved, params.cg_steps)
        self.group.all_gather_rows(solved, self._bounds[0 if users else 1])
        # One pass: a float64 sum of finite float32 values cannot overflow.
        if not bool(torch.isfinite(solved.sum(dtype=torch.float64))):
            raise TrainingDivergedError(
                f"iALS diverged: the {'user' if users else 'item'} factors became NaN or "
                f"infinite in iteration {self.epoch + 1}; raise regularization (now "
                f"{params.regularization}) or nu (now {params.nu}), or lower the confidences"
            )

    def run_epoch(
        self, should_stop: Callable[[], bool] = lambda: False, on_batch=None
    ) -> float | None:
        """One iteration, or the rest of an interrupted one: user step, then item step.

        ``on_batch()`` runs after each half-step, which :attr:`epoch`/:attr:`batch` already
        count. Returns L after the item step, or None when ``should_stop()`` became true before
        a half-step (the state is then ready for :meth:`state_dict`).

        Raises
        ------
        TrainingDivergedError
            The factors became NaN or infinite.
        """
        loss = None
        for half in range(self.batch, self.steps_per_epoch):
            if should_stop():
                return None
            self._half_step(users=half == 0)
            self.batch = half + 1
            if self.batch == self.steps_per_epoch:
                loss = self.objective()
                self.epoch, self.batch = self.epoch + 1, 0
            if on_batch is not None:
                on_batch()
        return loss

    @torch.no_grad()
    @_csr_beta_accepted()
    def objective(self) -> float:
        """L(W, H) of the module docstring: the all-pairs term is α0 Σ (WᵀW ∘ HᵀH), the observed
        terms one dot product per interaction; no (user, item) score matrix is formed."""
        user_factors, item_factors = self._factors()
        users, items = self._sides
        total = self.params.alpha0 * torch.sum(self._gram(0) * self._gram(1), dtype=torch.float64)

        def observed_part(block) -> torch.Tensor:
            r0, r1, tiles = block
            found = torch.zeros((), dtype=torch.float64, device=total.device)
            for c0, c1, tile in tiles:
                dots = _scratch(tile)
                v, part = user_factors[r0:r1], item_factors[c0:c1]
                torch.sparse.sampled_addmm(dots, v, part.T, beta=0.0, out=dots)
                residual = dots.values().sub_(1.0).square_().mul_(tile.values())
                found += torch.sum(residual, dtype=torch.float64)
            return found

        # This process's users, summed in the order of the chunks.
        parts = _over_chunks(observed_part, users.blocks, total.device)
        observed = sum(parts, torch.zeros((), dtype=torch.float64, device=total.device))
        total += self.group.all_reduce_(observed.reshape(1))[0]
        for side, factors in ((users, user_factors), (items, item_factors)):
            total += torch.sum(side.reg * factors.square().sum(1), dtype=torch.float64)
        return float(total)

    def state_dict(self) -> dict:
        """The factors and the position, as CPU tensors and ints."""
        user_factors, item_factors = self._factors()
        return {
            "user_embeddings": user_factors.cpu().clone(),
            "item_embeddings": item_factors.cpu().clone(),
            "epoch": self.epoch,
            "batch": self.batch,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict` of a trainer on the same data and parameters."""
        names = ("user_embeddings", "item_embeddings")
        for name, table in zip(names, self._factors(), strict=True):
            if tuple(state[name].shape) != tuple(table.shape):
                raise ConfigError(
                    f"the checkpoint's {name} have shape {tuple(state[name].shape)}, this "
                    f"trainer's {tuple(table.shape)}: it was saved for other data or another "
                    "embedding_dim"
                )
            table.copy_(state[name])
        self._grams.clear()
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
