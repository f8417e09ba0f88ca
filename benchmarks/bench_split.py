"""The split planner on real architectures: plan quality and planning time, DP vs min-cut.

edgekit's planner is a dynamic program over the cut positions of the model's topological order (a
cut at position k carries every tensor produced before k and read at or after it). The alternative
the literature uses for DAGs is a min-cut (DADS): every valid two-way split of the DAG (any set of
nodes closed under predecessors), each crossing tensor counted once. This benchmark compares both on
the same question: two parts whose costs (weight bytes, or MACs) are within the balance cap the DP
uses, fewest bytes crossing. The min-cut may pick any closed set between the shortest and the longest
prefix of the order that respect the cap (those prefixes are forced to the first and the second part),
so it sees every non-prefix split near the balance point; it is solved exactly with scipy's max-flow.

    python benchmarks/bench_split.py [--only NAME ...] [--json]

Prints, per model: nodes, graph build time, DP time for 2/3/4 parts, the DP's and the min-cut's
crossing bytes for 2 parts (both balances), the min-cut's time, and how often the DP matched it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from edgekit.split import partition_graph as split_graph  # noqa: E402
from edgekit.split import planner  # noqa: E402
from tests import analysis_models, zoo  # noqa: E402

MODELS = {
    "dbnet-mbv3-640": lambda: analysis_models.dbnet(640)[0],
    "crnn-48x320": lambda: analysis_models.crnn()[0],
    "mobilenetv2-224": lambda: analysis_models.mobilenetv2()[0],
    "resnet18-224": lambda: analysis_models.resnetish(224, widths=(64, 128, 256, 512))[0],
    "transformer-6x512": lambda: analysis_models.transformer(256, 512, 6, 8, 2048)[0],
}
ZOO = [name for name in zoo.ZOO if name not in ("vgg19", "zfnet512")] + ["vgg19"]
INF = 1 << 30


def _zoo(name: str, directory: Path) -> Path:
    return zoo.zoo_model(name, directory / f"zoo-{name}.onnx")


def min_cut_two_parts(
    graph: split_graph.PartitionGraph, prefix: np.ndarray, cap: float
) -> tuple[float, float]:
    """Fewest crossing bytes over closed node sets A with P_lo <= A <= P_hi (see module doc); returns
    (bytes, seconds). Capacities are KiB (scipy's max-flow takes int32); the cut found is then
    measured in exact bytes."""
    from collections import deque

    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    started = time.perf_counter()
    n = len(graph)
    total = float(prefix[-1])
    lo = int(np.searchsorted(prefix, total - cap - 1e-9, side="left"))  # A must hold nodes [0, lo)
    hi = int(np.searchsorted(prefix, cap + 1e-9, side="right")) - 1  # A may hold at most [0, hi)
    lo, hi = max(lo, 1), min(hi, n - 1)
    if lo > hi:
        return float("nan"), 0.0
    source, sink = n, n + 1
    rows: list[int] = []
    cols: list[int] = []
    caps: list[int] = []

    def edge(a: int, b: int, c: int) -> None:
        rows.append(a)
        cols.append(b)
        caps.append(c)

    extra = n + 2
    for tensor in graph.tensors.values():
        if tensor.producer < 0 or not tensor.consumers:
            continue
        t_node = extra
        extra += 1
        edge(tensor.producer, t_node, -(-int(tensor.nbytes) // 1024) or 1)
        for c in tensor.consumers:
            edge(t_node, c, INF)
            edge(c, tensor.producer, INF)  # closed under predecessors: c in A forces its producer in A
    for i in range(n):
        if i < lo:
            edge(source, i, INF)
        elif i >= hi:
            edge(i, sink, INF)
    size = extra
    matrix = csr_matrix((np.array(caps, dtype=np.int32), (rows, cols)), shape=(size, size))
    matrix.sum_duplicates()
    flow = maximum_flow(matrix, source, sink, method="dinic").flow.tocsr()
    # the source side of the min cut: reachable in the residual graph
    residual: dict[int, list[int]] = {}
    coo = matrix.tocoo()
    flow_coo = flow.tocoo()
    flows = {
        (int(a), int(b)): int(v) for a, b, v in zip(flow_coo.row, flow_coo.col, flow_coo.data, strict=True)
    }
    for a, b, c in zip(coo.row, coo.col, coo.data, strict=True):
        if c - flows.get((int(a), int(b)), 0) > 0:
            residual.setdefault(int(a), []).append(int(b))
    for (a, b), v in flows.items():
        if v > 0:
            residual.setdefault(b, []).append(a)
    seen = {source}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v in residual.get(u, []):
            if v not in seen:
                seen.add(v)
                queue.append(v)
    side_a = {i for i in range(n) if i in seen}
    crossing = sum(
        t.nbytes
        for t in graph.tensors.values()
        if t.producer in side_a and any(c not in side_a for c in t.consumers)
    )
    return float(crossing), time.perf_counter() - started


def dp_two_parts_in_window(graph: split_graph.PartitionGraph, prefix: np.ndarray, cap: float) -> float:
    n = len(graph)
    best = float("inf")
    for k in range(1, n):
        if prefix[k] <= cap and prefix[-1] - prefix[k] <= cap:
            best = min(best, float(graph.cross_bytes[k]))
    return best


def run(name: str, path: Path) -> dict:
    started = time.perf_counter()
    graph = split_graph.load(path)
    build_s = time.perf_counter() - started
    record: dict = {"model": name, "nodes": len(graph), "build_s": build_s}
    for balance in ("weights", "macs"):
        for parts in (2, 3, 4):
            plan = planner.plan_parts(graph, parts, balance, tolerance=0.1)
            record[f"dp{parts}_{balance}_s"] = plan.planning_s
            record[f"dp{parts}_{balance}_bytes"] = int(sum(graph.cross_bytes[c] for c in plan.cuts[1:-1]))
        prefix = planner.node_costs(graph, balance, "fp32")
        plan = planner.plan_parts(graph, 2, balance, tolerance=0.1)
        cap = plan.details["cap"]
        dp_bytes = dp_two_parts_in_window(graph, prefix, cap)
        cut_bytes, cut_s = min_cut_two_parts(graph, prefix, cap)
        record[f"mincut_{balance}_bytes"] = cut_bytes
        record[f"mincut_{balance}_s"] = cut_s
        record[f"dp_{balance}_window_bytes"] = dp_bytes
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="model names")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = list(MODELS) + [f"zoo-{z}" for z in ZOO]
    if args.only:
        names = [n for n in names if n in args.only]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if name.startswith("zoo-"):
                raw = _zoo(name[4:], Path(tmp))
            else:
                raw = Path(tmp) / f"{name}.onnx"
                onnx.save(MODELS[name](), str(raw))
            records.append(run(name, raw))
            raw.unlink()
            if not args.json:
                r = records[-1]
                print(
                    f"{r['model']:22} nodes {r['nodes']:4d} build {r['build_s']:5.2f}s | "
                    + " | ".join(
                        f"{b}: DP {r[f'dp2_{b}_bytes'] / 1024:8.1f} KiB min-cut {r[f'mincut_{b}_bytes'] / 1024:8.1f} KiB "
                        f"(DP {1000 * r[f'dp2_{b}_s']:.0f}/{1000 * r[f'dp3_{b}_s']:.0f}/{1000 * r[f'dp4_{b}_s']:.0f} ms, "
                        f"min-cut {1000 * r[f'mincut_{b}_s']:.0f} ms)"
                        for b in ("weights", "macs")
                    ),
                    flush=True,
                )
    if args.json:
        print(json.dumps(records, indent=1))
        return
    pairs = [
        (r[f"dp_{b}_window_bytes"], r[f"mincut_{b}_bytes"]) for r in records for b in ("weights", "macs")
    ]
    matched = sum(1 for dp, cut in pairs if dp <= cut * 1.0001 + 1)
    worst = max((dp / cut if cut else 1.0) for dp, cut in pairs)
    print(
        f"\nDP over the order's cut positions matched the min-cut over all closed sets in {matched}/{len(pairs)} "
        f"cases (2 parts, both balances); worst DP/min-cut crossing-bytes ratio {worst:.2f}"
    )


if __name__ == "__main__":
    main()
