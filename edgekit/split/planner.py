"""Choose the cut points: dynamic programs over the cut positions of one topological order.

A plan is a list of positions 0 = c0 < c1 < ... < cK = n over the compute nodes of a PartitionGraph;
shard k runs nodes [c_k, c_{k+1}). Every objective is a DP over those positions, exact over all cuts
of the order (benchmarks/bench_split.py compares it with a min-cut over every valid two-way split of
the DAG, the DADS formulation, on real architectures):

- parts: N shards whose largest cost (weight bytes or MACs) is within `tolerance` of the smallest
  achievable largest cost, and, among those, the fewest bytes crossing the cuts.
- max_memory: the fewest shards whose estimated runtime memory fits a budget, and among those the
  fewest crossing bytes; an impossible budget raises with the smallest feasible one.
- devices: one shard per device in the given order (a device may get none), minimising predicted
  end-to-end latency (sum of shard times and hops) or the pipeline's bottleneck (throughput).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekit.errors import BadInput
from edgekit.split.partition_graph import MB, PartitionGraph

BALANCE = ("weights", "macs")
OBJECTIVES = ("latency", "throughput")
INF = float("inf")


class Infeasible(BadInput):
    """No plan satisfies the constraint; the message names the smallest value that would."""

    def __init__(self, message: str, smallest: float | None = None) -> None:
        super().__init__(message)
        self.smallest = smallest


@dataclass
class DeviceModel:
    """What the planner knows of one device: the predicted time of any run of nodes, its memory and
    its link (host-relayed hops: a tensor leaves one device over its link and enters the next over
    that one's)."""

    name: str
    node_ms_prefix: np.ndarray  # prefix sums of per-node time on this device (ms), length n+1
    call_ms: float = 0.0  # fixed cost per shard call (feeding, output copies)
    memory_mb: float | None = None
    link_mbps: float = math.inf  # megabits per second
    link_latency_ms: float = 0.0
    speed_source: str = ""
    runtime: str = "onnxruntime"  # whose memory model applies (the device target's backend)
    exact: dict[tuple[int, int], float] = field(default_factory=dict)  # measured shard times

    def shard_ms(self, start: int, end: int) -> float:
        if end <= start:
            return 0.0
        if (start, end) in self.exact:
            return self.exact[(start, end)]
        return float(self.node_ms_prefix[end] - self.node_ms_prefix[start]) + self.call_ms

    def link_ms(self, nbytes: float) -> float:
        """One direction of a hop over this device's link."""
        if nbytes <= 0:
            return 0.0
        rate = nbytes * 8 / (self.link_mbps * 1e6) * 1000.0 if math.isfinite(self.link_mbps) else 0.0
        return self.link_latency_ms + rate


def hop_ms(src: DeviceModel, dst: DeviceModel, nbytes: float) -> float:
    """Host-relayed hop: download from the producing device, upload to the consuming one."""
    return src.link_ms(nbytes) + dst.link_ms(nbytes)


@dataclass
class Plan:
    cuts: list[int]  # c0=0 < ... < cK=n
    objective: str
    details: dict[str, Any] = field(default_factory=dict)
    devices: list[str | None] = field(default_factory=list)
    planning_s: float = 0.0

    @property
    def bounds(self) -> list[tuple[int, int]]:
        return list(zip(self.cuts[:-1], self.cuts[1:], strict=True))


# ---- balanced parts -------------------------------------------------------------------------------
def node_costs(graph: PartitionGraph, balance: str, precision: str) -> np.ndarray:
    """Prefix sums of the balance cost (weight bytes by first use, or MACs)."""
    if balance == "macs":
        return graph.macs_prefix.astype(np.float64)
    if balance == "weights":
        return graph.weight_prefix(precision).astype(np.float64)
    raise BadInput(f"unknown balance '{balance}'; choose one of {', '.join(BALANCE)}")


def plan_parts(
    graph: PartitionGraph,
    parts: int,
    balance: str = "weights",
    precision: str = "fp32",
    tolerance: float = 0.1,
) -> Plan:
    """N shards: the smallest achievable largest shard cost B* (binary search on a greedy check), then
    the fewest crossing bytes among plans whose largest shard cost is at most B* x (1 + tolerance)."""
    started = time.perf_counter()
    n = len(graph)
    if parts < 1:
        raise BadInput("--parts must be at least 1")
    if parts > n:
        raise Infeasible(f"the model has {n} compute nodes; it cannot be cut into {parts} parts", n)
    prefix = node_costs(graph, balance, precision)
    best = _min_max_cost(prefix, parts)
    cap = best * (1.0 + tolerance) if best > 0 else INF
    cuts = _min_cross_with_cap(graph.cross_bytes.astype(np.float64), prefix, parts, cap)
    if cuts is None:  # cannot happen: the min-max plan satisfies the cap
        raise Infeasible(f"no {parts}-part plan found")
    plan = Plan(
        cuts, "parts", {"balance": balance, "tolerance": tolerance, "best_max_cost": best, "cap": cap}
    )
    plan.planning_s = time.perf_counter() - started
    return plan


def _min_max_cost(prefix: np.ndarray, parts: int) -> float:
    """Smallest possible largest segment cost over partitions of the positions into `parts` non-empty
    segments (costs from prefix sums)."""
    n = len(prefix) - 1
    node = np.diff(prefix)
    lo, hi = float(node.max(initial=0.0)), float(prefix[-1])
    if parts >= n:
        return lo

    def fits(cap: float) -> bool:
        count, start = 1, 0
        for k in range(1, n + 1):
            if prefix[k] - prefix[start] > cap:
                count += 1
                start = k - 1
                if count > parts:
                    return False
        return n - start >= 1

    # the optimum is one of the segment sums; bisect on values (exact to a byte / a MAC)
    for _ in range(100):
        if hi - lo <= max(1.0, 1e-9 * hi):
            break
        mid = (lo + hi) / 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _min_cross_with_cap(cross: np.ndarray, prefix: np.ndarray, parts: int, cap: float) -> list[int] | None:
    """Exactly `parts` non-empty segments, each costing at most `cap`, minimising the sum of the
    crossing bytes at the cut positions. f[k][b] = min over a of f[k-1][a] + cross[a]."""
    n = len(prefix) - 1
    f = np.full(n + 1, INF)
    f[0] = 0.0
    choice = np.zeros((parts + 1, n + 1), dtype=np.int64)
    positions = np.arange(n + 1)
    for k in range(1, parts + 1):
        g = np.full(n + 1, INF)
        base = f + np.where(positions == 0, 0.0, cross)  # cost of cutting at a (none at 0)
        for b in range(k, n + 1):
            lo = int(np.searchsorted(prefix, prefix[b] - cap - 1e-9, side="left"))
            lo = max(lo, k - 1)
            hi = b - 1
            if lo > hi:
                continue
            window = base[lo : hi + 1]
            a = lo + int(np.argmin(window))
            if window[a - lo] < INF:
                g[b] = window[a - lo]
                choice[k][b] = a
        f = g
    if not math.isfinite(f[n]):
        return None
    return _backtrack(choice, parts, n)


def _backtrack(choice: np.ndarray, parts: int, n: int) -> list[int]:
    cuts = [n]
    b = n
    for k in range(parts, 0, -1):
        b = int(choice[k][b])
        cuts.append(b)
    return cuts[::-1]


# ---- memory budget --------------------------------------------------------------------------------
def plan_max_memory(
    graph: PartitionGraph,
    budget_mb: float,
    precision: str = "fp32",
    memory_fn: Callable[[int, int], float] | None = None,
) -> Plan:
    """The fewest shards whose estimated memory is at most `budget_mb`, then the fewest crossing bytes.

    Shard memory only grows when a shard gains a node at either end (its weights and live tensors
    only add up), so for each end b the feasible starts form a window [lo(b), b) found with two
    pointers, and the DP over positions uses it directly."""
    started = time.perf_counter()
    n = len(graph)
    budget = budget_mb
    estimate = memory_fn or (lambda a, b: graph.memory(a, b, precision) / MB)
    memory_cache: dict[tuple[int, int], float] = {}

    def memory(a: int, b: int) -> float:
        if (a, b) not in memory_cache:
            memory_cache[(a, b)] = estimate(a, b)
        return memory_cache[(a, b)]

    lo = np.zeros(n + 1, dtype=np.int64)
    a = 0
    for b in range(1, n + 1):
        while a < b and memory(a, b) > budget:
            a += 1
        lo[b] = a  # a == b: even node b-1 alone does not fit
    singles = [memory(i, i + 1) for i in range(n)]
    worst = int(np.argmax(singles))
    if singles[worst] > budget:
        need = singles[worst]
        raise Infeasible(
            f"--max-shard-mb {budget_mb:g} is below what one node needs at {precision}: node "
            f"'{graph.node_label(worst)}' ({graph.nodes[worst].op_type}) alone needs {need:.1f} MB "
            f"(as planned: estimate + margin, or measured); the smallest feasible budget is {math.ceil(need * 10) / 10:.1f} MB",
            math.ceil(need * 10) / 10,
        )
    # fewest shards, then fewest crossing bytes: minimise (count, bytes) lexicographically
    cross = graph.cross_bytes.astype(np.float64)
    count = np.full(n + 1, n + 1, dtype=np.int64)
    cost = np.full(n + 1, INF)
    back = np.zeros(n + 1, dtype=np.int64)
    count[0], cost[0] = 0, 0.0
    for b in range(1, n + 1):
        starts = np.arange(int(lo[b]), b)
        counts = count[starts] + 1
        costs = cost[starts] + np.where(starts == 0, 0.0, cross[starts])
        best_count = counts.min()
        pick = np.flatnonzero(counts == best_count)
        a = int(starts[pick[np.argmin(costs[pick])]])
        count[b], cost[b], back[b] = best_count, costs[pick].min(), a
    cuts = [n]
    b = n
    while b > 0:
        b = int(back[b])
        cuts.append(b)
    plan = Plan(cuts[::-1], "max_memory", {"budget_mb": budget_mb, "precision": precision})
    plan.planning_s = time.perf_counter() - started
    return plan


# ---- devices --------------------------------------------------------------------------------------
def plan_devices(
    graph: PartitionGraph,
    devices: Sequence[DeviceModel],
    objective: str = "latency",
    precision: str = "fp32",
    memory_fn: Callable[[int, int, str], float] | None = None,
) -> Plan:
    """One contiguous shard per device, in the given order; a device may get no nodes (the tensors
    then go straight to the next one). Minimises the predicted end-to-end latency (model inputs to
    the first device, shard times, hops, model outputs back to the host) or the pipeline's
    bottleneck (the largest of those stages; throughput = 1 / bottleneck). Shards must fit their
    device's memory where it is known (devices.toml `memory_mb`, or the target profile's)."""
    started = time.perf_counter()
    if objective not in OBJECTIVES:
        raise BadInput(f"unknown objective '{objective}'; choose one of {', '.join(OBJECTIVES)}")
    n = len(graph)
    count = len(devices)
    cross = graph.cross_bytes.astype(np.float64)
    in_bytes = float(sum(graph.tensors[t].nbytes for t in graph.model_inputs))
    out_bytes = float(sum(graph.tensors[t].nbytes for t in graph.model_outputs if t in graph.tensors))
    memory_fn = memory_fn or (lambda a, b, runtime: graph.memory(a, b, precision, runtime) / MB)
    add = objective == "latency"

    def combine(x: np.ndarray | float, y: np.ndarray | float) -> Any:
        return np.add(x, y) if add else np.maximum(x, y)

    # reach[k][a]: the largest end b such that nodes [a, b) fit device k (memory grows with b and
    # shrinks with a, so two pointers find it with O(n) estimates per device)
    reach = []
    for device in devices:
        limit = device.memory_mb
        if limit is None:
            reach.append(np.full(n, n, dtype=np.int64))
            continue
        row = np.zeros(n, dtype=np.int64)
        b = 0
        for a in range(n):
            b = max(b, a)
            while b < n and memory_fn(a, b + 1, device.runtime) <= limit:
                b += 1
            row[a] = b  # b == a: node a alone does not fit
        reach.append(row)

    # value[b, j + 1]: best cost with nodes [0, b) placed and device j the last that got nodes
    value = np.full((n + 1, count + 1), INF)
    value[0, 0] = 0.0
    backs = []
    for k, device in enumerate(devices):
        nxt = value.copy()  # device k gets nothing
        back_a = np.full((n + 1, count + 1), -1, dtype=np.int64)
        back_j = np.full((n + 1, count + 1), -2, dtype=np.int64)
        prefix = device.node_ms_prefix
        for a in range(n):
            end = int(reach[k][a])
            if end <= a:
                continue
            bs = np.arange(a + 1, end + 1)
            stage = prefix[bs] - prefix[a] + device.call_ms
            for (sa, sb), ms in device.exact.items():
                if sa == a and a < sb <= end:
                    stage[sb - a - 1] = ms
            for j in range(-1, k):
                start_value = value[a, j + 1]
                if not math.isfinite(start_value) or (j == -1 and a > 0):
                    continue
                hop = device.link_ms(in_bytes) if j == -1 else hop_ms(devices[j], device, cross[a])
                total = combine(combine(start_value, hop), stage)
                column = nxt[bs, k + 1]
                better = total < column
                if better.any():
                    rows = bs[better]
                    nxt[rows, k + 1] = total[better]
                    back_a[rows, k + 1] = a
                    back_j[rows, k + 1] = j
        backs.append((back_a, back_j))
        value = nxt
    finals = [
        (float(combine(value[n, j + 1], devices[j].link_ms(out_bytes))), j)
        for j in range(count)
        if math.isfinite(value[n, j + 1])
    ]
    if not finals:
        smallest = max(memory_fn(i, i + 1, devices[0].runtime) for i in range(n))
        raise Infeasible(
            "no assignment of the model to these devices fits their memory; add a device or one with more "
            f"memory (the largest single node needs {smallest:.1f} MB, estimated)",
            smallest,
        )
    total, last = min(finals)
    # walk back: at layer k, state (b, j); a recorded back pointer means device k got [a, b)
    cuts: list[int] = [n]
    owners: list[str | None] = []
    b, j = n, last
    for k in range(count - 1, -1, -1):
        back_a, back_j = backs[k]
        if j == k and back_a[b, j + 1] >= 0:
            a = int(back_a[b, j + 1])
            owners.append(devices[k].name)
            cuts.append(a)
            b, j = a, int(back_j[b, j + 1])
    plan = Plan(sorted(cuts), objective, {"predicted_ms": total})
    plan.devices = list(owners[::-1])
    plan.planning_s = time.perf_counter() - started
    return plan
