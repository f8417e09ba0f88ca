"""Run shards in sequence on this host (onnxruntime CPU), the way the pipeline passes tensors along:
used to verify a split against the full model and to make each later shard's calibration data from
the earlier shards' FP32 outputs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import BadInput
from edgekit.onnx_run import cpu_session, run_each

if TYPE_CHECKING:
    from edgekit.split.partition_graph import PartitionGraph

#: verification compares exact kernels: graph optimizations (fusions, layout changes) are off on both
#: sides, so a correct split reproduces the full model bit for bit up to threading order
TOLERANCE = 1e-5


@dataclass
class StageSpec:
    path: Path
    inputs: list[str]
    outputs: list[str]


def session(path: str | Path, optimize: bool = False) -> Any:
    return cpu_session(path, "all" if optimize else "none")


class Chain:
    """Shards run one after another; every tensor a shard makes stays available to the later ones
    (the host relays them), and the model's outputs are collected from whichever shard makes them."""

    def __init__(
        self, stages: Sequence[StageSpec], model_outputs: Sequence[str], optimize: bool = False
    ) -> None:
        self.stages = list(stages)
        self.model_outputs = list(model_outputs)
        self.optimize = optimize
        self._sessions: dict[int, Any] = {}

    def _session(self, index: int) -> Any:
        if index not in self._sessions:
            self._sessions[index] = session(self.stages[index].path, self.optimize)
        return self._sessions[index]

    def run(self, feed: Mapping[str, np.ndarray], upto: int | None = None) -> dict[str, np.ndarray]:
        """All tensors after running stages [0, upto) (default: every stage) on one feed."""
        values: dict[str, np.ndarray] = dict(feed)
        last = len(self.stages) if upto is None else upto
        for index in range(last):
            stage = self.stages[index]
            missing = [n for n in stage.inputs if n not in values]
            if missing:
                raise BadInput(
                    f"shard {index} needs {', '.join(missing)}, which no earlier shard or input gives"
                )
            outs = self._session(index).run(stage.outputs, {n: values[n] for n in stage.inputs})
            values.update(zip(stage.outputs, outs, strict=True))
        return values

    def outputs(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.run(feed)
        return {name: values[name] for name in self.model_outputs}

    def close(self) -> None:
        self._sessions.clear()


def full_outputs(
    model_path: Path, feeds: Iterable[Mapping[str, np.ndarray]], optimize: bool = False
) -> list[dict[str, np.ndarray]]:
    return list(run_each(session(model_path, optimize), feeds))


def compare(
    reference: Sequence[Mapping[str, np.ndarray]], actual: Sequence[Mapping[str, np.ndarray]]
) -> dict[str, Any]:
    """Largest absolute difference per output over all samples (NaN where both are NaN is equal)."""
    per_output: dict[str, float] = {}
    for ref, act in zip(reference, actual, strict=True):
        for name, value in ref.items():
            a = np.asarray(value)
            b = np.asarray(act[name])
            if a.shape != b.shape:
                per_output[name] = float("inf")
                continue
            if a.dtype.kind in "fc":
                both_nan = np.isnan(a) & np.isnan(b)
                diff = np.where(both_nan, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
                worst = float(diff.max()) if diff.size else 0.0
                if np.isnan(worst):
                    worst = float("inf")
            else:
                worst = 0.0 if np.array_equal(a, b) else float("inf")
            per_output[name] = max(per_output.get(name, 0.0), worst)
    worst_all = max(per_output.values(), default=0.0)
    return {"max_abs_diff": worst_all, "per_output": per_output, "passed": worst_all <= TOLERANCE}


def random_feeds(
    specs: Sequence[tuple[str, Sequence[int], str]], samples: int, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Seeded inputs, made as the device agent makes them (`edgekit.agent.random_input`: standard normal
    floats, integers in [-128, 127] within their type's range, random booleans)."""
    from edgekit.agent import random_input

    rng = np.random.RandomState(seed)
    return [
        {
            name: random_input(np, rng, {"shape": list(shape), "dtype": np.dtype(dtype_name).name})
            for name, shape, dtype_name in specs
        }
        for _ in range(samples)
    ]


def verify(
    graph: PartitionGraph,
    directory: Path,
    description: Mapping[str, Any],
    feeds: list[dict[str, np.ndarray]],
    from_val: bool,
) -> dict[str, Any]:
    """Run the shards in sequence and the full model on the same inputs (onnxruntime CPU, graph
    optimizations off on both sides) and compare every model output."""
    stages = [
        StageSpec(directory / s["file"], [i["name"] for i in s["inputs"]], [o["name"] for o in s["outputs"]])
        for s in description["shards"]
    ]
    runner = Chain(stages, graph.model_outputs)
    started = time.perf_counter()
    reference = full_outputs(graph.path, feeds)
    actual = [runner.outputs(feed) for feed in feeds]
    result = compare(reference, actual)
    result.update(
        samples=len(feeds),
        input_source="validation set" if from_val else "random (seed 0)",
        tolerance=TOLERANCE,
        graph_optimizations="off",
        seconds=round(time.perf_counter() - started, 3),
    )
    return result
