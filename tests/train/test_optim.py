"""RowAdam: the lazy Adam of torch.optim.SparseAdam, applied through gathered rows."""

import torch

from mfrec.train.optim import RowAdam, row_adam_update


def _sparse_adam_reference(table, steps, lr):
    """The same updates through torch.optim.SparseAdam and F.embedding(sparse=True)."""
    weight = torch.nn.Parameter(table.clone())
    optimizer = torch.optim.SparseAdam([weight], lr=lr)
    for index, grad in steps:
        optimizer.zero_grad()
        rows = torch.nn.functional.embedding(index, weight, sparse=True)
        (rows * grad).sum().backward()
        optimizer.step()
    return weight.detach()


def test_row_adam_matches_sparse_adam_with_repeated_rows():
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(20, 4, generator=generator)
    steps = []
    for size in (7, 30, 3, 12):  # 30 draws from 20 rows: repeats are certain
        index = torch.randint(20, (size,), generator=generator)
        steps.append((index, torch.randn(size, 4, generator=generator)))
    expected = _sparse_adam_reference(table, steps, lr=0.05)
    mine = table.clone()
    optimizer = RowAdam([mine], lr=0.05)
    for index, grad in steps:
        optimizer.step(0, index, grad)
    torch.testing.assert_close(mine, expected, rtol=1e-5, atol=1e-6)
    untouched = torch.ones(20, dtype=torch.bool)
    for index, _ in steps:
        untouched[index] = False
    assert torch.equal(mine[untouched], table[untouched])


def test_row_adam_state_round_trip_continues_identically():
    generator = torch.Generator().manual_seed(1)
    index = torch.randint(10, (8,), generator=generator)
    grads = [torch.randn(8, 3, generator=generator) for _ in range(3)]
    first = torch.randn(10, 3, generator=generator)
    second = first.clone()
    straight = RowAdam([first], lr=0.1)
    for grad in grads:
        straight.step(0, index, grad)
    interrupted = RowAdam([second], lr=0.1)
    interrupted.step(0, index, grads[0])
    resumed = RowAdam([second], lr=0.1)
    resumed.load_state_dict(interrupted.state_dict())
    for grad in grads[1:]:
        resumed.step(0, index, grad)
    assert resumed.steps == straight.steps == [3]
    torch.testing.assert_close(second, first, rtol=0, atol=0)


def test_a_tensor_step_size_gives_the_float_step():
    generator = torch.Generator().manual_seed(2)
    index = torch.randint(6, (9,), generator=generator)  # repeats certain
    grad = torch.randn(9, 3, generator=generator)
    first = torch.randn(6, 3, generator=generator)
    second = first.clone()
    moments = [torch.zeros(2, 6, 3), torch.zeros(2, 6, 3)]
    row_adam_update(first, moments[0], index, grad, 0.05, 0.9, 0.999, 1e-8)
    row_adam_update(second, moments[1], index, grad, torch.tensor(0.05), 0.9, 0.999, 1e-8)
    torch.testing.assert_close(second, first)
    torch.testing.assert_close(moments[1], moments[0], rtol=0, atol=0)


def test_a_step_reads_nothing_back_and_has_no_data_dependent_shape():
    from torch.profiler import ProfilerActivity, profile

    generator = torch.Generator().manual_seed(3)
    table = torch.randn(50, 4, generator=generator)
    optimizer = RowAdam([table], lr=0.1)
    index = torch.randint(50, (40,), generator=generator)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        optimizer.step(0, index, torch.randn(40, 4, generator=generator))
    names = {event.name for event in prof.events()}
    assert not names & {"aten::item", "aten::_local_scalar_dense", "aten::_unique2"}
    assert "aten::sort" in names  # the fixed-shape deduplication ran
