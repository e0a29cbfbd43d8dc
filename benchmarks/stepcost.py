"""What one mfrec training step costs: ATen ops (kernels), bytes moved, and the card's peak.

- :func:`count_ops`: the compute ops of a profiled stretch of steps, per step. An ATen op is
  counted when it launches work of its own: leaf ops only (an op whose ATen children do the
  work is not counted again), without views, allocations, no-ops (``resolve_conj``) and ops on
  0-dimensional CPU scalars (a GPU receives those as kernel arguments). On a GPU each counted op
  is about one kernel; the issue's target is ≤ 40 per step.
- :func:`bytes_per_step`: the bytes a step reads and writes, counted pass by pass from the ops
  :class:`mfrec.train.loop.Trainer` runs (gathered rows, the score matrix, the lazy Adam of the
  touched rows, the dense Adam of the biases), not from whole tables;
- :data:`PEAK_BANDWIDTH`: the memory bandwidth of the cards benchmark T targets.
"""

from __future__ import annotations

from collections import Counter

# Bytes per second, from NVIDIA's data sheets (H100 SXM5 HBM3, H200 HBM3e, A10G GDDR6).
PEAK_BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A10G": 0.6e12}
# Ops that launch no kernel of their own: views, allocations, metadata and no-ops.
NO_KERNEL = {
    "aten::" + name
    for name in (
        "view alias as_strided slice select narrow t transpose permute expand expand_as unsqueeze "
        "squeeze reshape _reshape_alias _unsafe_view view_as unbind split split_with_sizes "
        "detach detach_ lift_fresh empty empty_like empty_strided new_empty resize_ set_ "
        "requires_grad_ resolve_conj resolve_neg result_type item _local_scalar_dense to "
        "contiguous clone numpy_T is_nonzero"
    ).split()
}
# Composite ops counted as one kernel, whatever their CPU implementation calls inside.
ONE_KERNEL = {"aten::sort", "aten::sum", "aten::dot", "aten::mm", "aten::addmm", "aten::bmm"}


def peak_bandwidth(device_name: str) -> float | None:
    """The card's peak memory bandwidth (bytes/s) from its name, or None when unknown."""
    for card, peak in PEAK_BANDWIDTH.items():
        if card in device_name.upper():
            return peak
    return None


def _inside_one_kernel(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name in ONE_KERNEL:
            return True
        parent = parent.cpu_parent
    return False


def _scalar_only(event) -> bool:
    shapes = [shape for shape in (event.input_shapes or []) if shape]
    return bool(event.input_shapes) and not shapes and event.name not in ("aten::cat",)


def count_ops(events, steps: int) -> dict:
    """ATen ops per step in profiler ``events`` (recorded with ``record_shapes=True``).

    Returns ``{"kernels_per_step": float, "aten_ops_per_step": float, "by_op": {name: per
    step}}``: ``kernels_per_step`` is the count described in the module docstring,
    ``aten_ops_per_step`` every ATen op that is not a view or allocation, at any depth.
    """
    kernels, every = Counter(), 0
    for event in events:
        name = event.name
        if not name.startswith("aten::") or name in NO_KERNEL:
            continue
        every += 1
        if _inside_one_kernel(event) or _scalar_only(event):
            continue
        working = [c for c in event.cpu_children if c.name.startswith("aten::")]
        if name in ONE_KERNEL or not [c for c in working if c.name not in NO_KERNEL]:
            kernels[name] += 1
    steps = max(1, steps)
    return {
        "kernels_per_step": sum(kernels.values()) / steps,
        "aten_ops_per_step": every / steps,
        "by_op": {name: count / steps for name, count in kernels.most_common()},
    }


def bytes_per_step(
    batch_size: int,
    negatives: int,
    shared: bool,
    embedding_dim: int,
    bias_rows: int,
    popularity: bool = True,
) -> dict:
    """Bytes read + written by one training step of :class:`mfrec.train.loop.Trainer`.

    Counted per pass over each array the step touches (float32 = 4 bytes, int64 = 8):

    - ``indices``: the batch's user/item indices, the negatives drawn, the row index;
    - ``gather``: the R embedding rows (users, positives, negatives) read from the table and
      written to the leaf tensor, their biases and logQ;
    - ``scores``: the B x (N + 1) logits: 7 passes forward (addmm, mask, where, cat,
      log-softmax), 9 backward (select, log-softmax, where, two matrix products, bias sum),
      plus the boolean mask twice each way;
    - ``row_grads``: the gathered rows' gradient (matrix products out, split's cat, the
      unbind/stack of users and positives, the L2 term): 6 passes of R x d;
    - ``row_adam``: the lazy Adam of the R rows: 38 passes of R x d (zeros, index_add, the
      summed gradient, moments gathered and scattered, the update, the table rows gathered and
      scattered; see :func:`mfrec.train.optim.row_adam_update`) plus the sort of the indices;
    - ``bias_adam``: the dense biases (``bias_rows``): zeroed gradient, fused Adam (4 reads,
      3 writes).

    Returns
    -------
    dict
        Bytes per part and ``total``.
    """
    b, d = batch_size, embedding_dim
    drawn = negatives if shared else batch_size * negatives
    rows = 2 * b + drawn
    item_rows = b + drawn
    score = b * (negatives + 1)
    float_, long_ = 4, 8
    parts = {
        "indices": (5 * b + 3 * drawn + 2 * item_rows + 2 * rows) * long_,
        "gather": rows * (long_ + 2 * d * float_)
        + item_rows * (long_ + 2 * float_) * (2 if popularity else 1),
        "scores": score * (16 * float_ + 4),
        "row_grads": 6 * rows * d * float_,
        "row_adam": 38 * rows * d * float_ + 6 * rows * long_,
        "bias_adam": 8 * bias_rows * float_ + 2 * item_rows * float_,
    }
    parts["total"] = sum(parts.values())
    return parts
