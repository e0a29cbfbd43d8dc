"""Approximate inner-product search for large catalogues: faiss-cpu against hnswlib (issue 15,
item 6), measured against mfrec's exact search on the same synthetic embeddings.

Items and users are drawn around 1,024 shared cluster centres plus noise of 0.8 times their
scale (a planted structure, as trained embeddings have some; pure noise has none for an index
to exploit, and recall there is far lower: 0.61 for faiss IVF at nprobe 64 and 0.91 for
hnswlib at ef 256 with 4,096 centres and noise equal to their scale, 20,000 items), 128
dimensions (mfrec's default), with an item bias. The bias is folded into the inner product:
an item ``[v, b]`` against a user ``[u, 1]``. For each index: build seconds, recall@25
against the exact top 25 (the share of the exact 25 that the index returns), and query cost
alone and in batches of 1,000, beside the exact search (one matrix product + top-k, as the
server does).

    PYTHONPATH=/path/to/faiss+hnswlib python -m benchmarks.ann --items 200000
    python -m benchmarks.ann --items 1000000 --indexes faiss-ivf   # faiss IVF only
    python -m benchmarks.ann --data trained-like        # or isotropic (see DATA)
    python -m benchmarks.ann --model-dir model/ --indexes mfrec   # your model, mfrec's path

``mfrec`` is the serving path (mfrec.serve.ann: IVF candidates re-scored exactly; nprobe 250,
500, 800 are 1/16, 1/8, 1/5 of the lists at 1M items). faiss-cpu is mfrec's ``ann`` extra;
hnswlib is not a dependency of mfrec: install it to compare.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from benchmarks.common import Table, run_header, set_threads, write_results

K = 25
DIM = 128
CLUSTERS = 1024


def synthetic(
    num_items: int, num_queries: int, seed: int = 0, clusters: int = CLUSTERS, noise: float = 0.8
):
    """Item vectors with their bias as a last column, and query vectors with a last 1."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM), dtype=np.float32)
    items = centres[rng.integers(0, clusters, num_items)]
    items += noise * rng.standard_normal((num_items, DIM), dtype=np.float32)
    items *= 0.1
    bias = 0.05 * rng.standard_normal((num_items, 1), dtype=np.float32)
    users = centres[rng.integers(0, clusters, num_queries)]
    users += noise * rng.standard_normal((num_queries, DIM), dtype=np.float32)
    users *= 0.1
    ones = np.ones((num_queries, 1), np.float32)
    return np.hstack([items, bias]), np.hstack([users, ones])


def trained_like(num_items: int, num_queries: int, seed: int = 0):
    """Embeddings shaped like a trained factorisation's, with no planted clusters: a decaying
    spectrum (dimension j scaled by (j + 1) ** -0.5), one shared "popularity" direction that
    users and items lean along, and item biases correlated with it. Clusters are what IVF
    exploits; these have none, the hard case for it."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(DIM, dtype=np.float32) + 1) ** -0.5
    items = rng.standard_normal((num_items, DIM), dtype=np.float32) * scale
    popularity = rng.standard_normal(num_items).astype(np.float32)
    items[:, 0] += 0.7 * popularity
    bias = (0.3 * popularity + 0.1 * rng.standard_normal(num_items)).astype(np.float32)
    users = rng.standard_normal((num_queries, DIM), dtype=np.float32) * scale
    users[:, 0] += 1.0
    ones = np.ones((num_queries, 1), np.float32)
    return np.hstack([0.1 * items, 0.1 * bias[:, None]]), np.hstack([users, ones])


DATA = {
    "clustered": synthetic,
    # 4,096 centres and noise equal to their scale: nearly isotropic, no structure at all
    "isotropic": lambda n, q: synthetic(n, q, clusters=4096, noise=1.0),
    "trained-like": trained_like,
}


def from_model(model_dir: str, num_queries: int):
    """A model's item vectors with their bias, and its first users' vectors with a last 1."""
    from mfrec.train.artifact import load

    model = load(model_dir)
    items = np.hstack([model.item_embeddings, model.item_biases[:, None]]).astype(np.float32)
    users = np.asarray(model.user_embeddings[:num_queries], dtype=np.float32)
    return np.ascontiguousarray(items), np.hstack([users, np.ones((len(users), 1), np.float32)])


def exact(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    keys = torch.from_numpy(items)
    return torch.topk(torch.from_numpy(queries) @ keys.T, K, dim=1).indices.numpy()


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found ∩ truth| / K."""
    return float(
        np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, truth, strict=True)])
    )


def build_faiss_ivf(items: np.ndarray, nlist: int):
    import faiss

    quantizer = faiss.IndexFlatIP(items.shape[1])
    index = faiss.IndexIVFFlat(quantizer, items.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    sample = items[np.random.default_rng(1).permutation(len(items))[: 64 * nlist]]
    index.train(sample)
    index.add(items)
    return index


def build_faiss_hnsw(items: np.ndarray, m: int = 32):
    import faiss

    index = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(items)
    return index


def build_hnswlib(items: np.ndarray, m: int = 16):
    import hnswlib

    index = hnswlib.Index(space="ip", dim=items.shape[1])
    index.init_index(max_elements=len(items), ef_construction=100, M=m)
    index.add_items(items, num_threads=os.cpu_count() or 1)
    return index


def build_mfrec(items: np.ndarray):
    """mfrec's own serving path (mfrec.serve.ann.ApproximateTopK): faiss IVF candidates,
    masked and re-scored exactly."""
    from mfrec.serve.ann import ApproximateTopK
    from mfrec.serve.scoring import TopK

    keys = torch.from_numpy(np.ascontiguousarray(items[:, :-1]))
    return ApproximateTopK.build(TopK(keys, torch.from_numpy(items[:, -1].copy())))


def searcher(name: str, index, setting: int, items: np.ndarray):
    """A function queries -> (n, K) item indices, with the index's speed/recall knob set."""
    if name == "mfrec":
        from mfrec.serve.scoring import Masks

        index.index.nprobe = setting
        index.exact_from_rows = len(items) + 1  # the index path even for a batch of queries
        return lambda q: index.search(torch.from_numpy(q[:, :-1].copy()), K, Masks())[0]
    if name == "hnswlib":
        index.set_ef(setting)
        return lambda q: index.knn_query(q, k=K)[0]
    if name == "faiss-ivf":
        index.nprobe = setting
    else:
        index.hnsw.efSearch = setting
    return lambda q: index.search(q, K)[1]


def timed(function, queries: np.ndarray, single: int = 200) -> tuple[float, float, np.ndarray]:
    """(ms per query one at a time, ms per query in one batch, the batch's answers)."""
    started = time.perf_counter()
    for row in range(min(single, len(queries))):
        function(queries[row : row + 1])
    one = (time.perf_counter() - started) / min(single, len(queries)) * 1000
    started = time.perf_counter()
    found = function(queries)
    return one, (time.perf_counter() - started) / len(queries) * 1000, found


INDEXES = {
    "faiss-ivf": (
        lambda items: build_faiss_ivf(items, int(4 * np.sqrt(len(items)))),
        (16, 64, 128, 256),
    ),
    "faiss-hnsw": (build_faiss_hnsw, (64, 256, 512)),
    "hnswlib": (build_hnswlib, (64, 256, 512)),
    "mfrec": (build_mfrec, (250, 500, 800)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--indexes", default=",".join(INDEXES), help=",".join(INDEXES))
    parser.add_argument("--data", choices=list(DATA), default="clustered")
    parser.add_argument("--model-dir", help="a trained model folder instead of --data/--items")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header = run_header("ann", "benchmarks.ann", argv)
    if args.model_dir:  # a trained model's own embeddings, its first users as queries
        items, queries = from_model(args.model_dir, args.queries)
        args.items, args.data = len(items), f"{args.model_dir}'s"
    else:
        items, queries = DATA[args.data](args.items, args.queries)
    one, batch, truth = timed(lambda q: exact(items, q), queries)
    table = Table(
        f"Top {K} of {args.items:,} {args.data} items x {DIM} dims (+ bias), "
        f"{args.queries:,} queries",
        ["search", "build s", "setting", f"recall@{K}", "ms/query alone", "ms/query in 1,000"],
    )
    table.rows.append(
        ["exact (matrix product + top-k)", "", "", "1.000", f"{one:.2f}", f"{batch:.3f}"]
    )
    results = {"exact": {"one_ms": one, "batch_ms": batch}, "load": [os.getloadavg()[0]]}
    for name in args.indexes.split(","):
        build, settings = INDEXES[name]
        started = time.perf_counter()
        index = build(items)
        built = time.perf_counter() - started
        results[name] = {"build_s": built, "settings": {}}
        for setting in settings:
            one, batch, found = timed(searcher(name, index, setting, items), queries)
            score = recall(found, truth)
            results[name]["settings"][setting] = {"recall": score, "one_ms": one, "batch_ms": batch}
            table.rows.append(
                [name, f"{built:.0f}", setting, f"{score:.3f}", f"{one:.2f}", f"{batch:.3f}"]
            )
            print(table.rows[-1], flush=True)
        del index
    results["load"].append(os.getloadavg()[0])
    table.notes.append(
        "setting: nprobe for faiss IVF and mfrec (nlist = 4 sqrt(items); mfrec: the serving "
        "path, IVF candidates re-scored exactly), efSearch / ef for the HNSW "
        f"graphs; {args.threads} threads on the shared 2-core machine, load average "
        f"{results['load'][0]:.1f} at the start and {results['load'][1]:.1f} at the end"
    )
    json_path, md_path = write_results(header, [table], results, [], args.out_dir)
    print(table.to_markdown())
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
