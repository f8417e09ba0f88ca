"""ONNX models run on this host with onnxruntime (CPU): the one way edgekit opens such a session and runs
it over feeds, for the FP32 references of verification, the INT8 search's scoring and statistics, the
split chain check and the TFLite I/O mapping. onnxruntime is imported only when a session is opened."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# graph optimizations: onnxruntime's default (all), basic only (no Q/DQ fusion: exact Q/DQ numerics),
# or none (every kernel is one of the model's own nodes)
OPTIMIZATIONS = ("all", "basic", "none")
DISABLE_QDQ_FUSION = "session.disable_quant_qdq"  # onnxruntime's session config key ("1": no Q/DQ fusion)


def cpu_session(model: str | Path | bytes, optimization: str = "all", threads: int | None = None) -> Any:
    """An onnxruntime CPU session of `model` (a path or the serialized model), warnings silenced."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    if optimization == "basic":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.add_session_config_entry(DISABLE_QDQ_FUSION, "1")  # said, not left to the level
    elif optimization == "none":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif optimization != "all":
        raise ValueError(f"optimization must be one of {OPTIMIZATIONS}, not {optimization!r}")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_each(
    session: Any, feeds: Iterable[Mapping[str, np.ndarray]], names: Sequence[str] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Per feed, in order: the outputs `names` (default: all) by name."""
    fetch = list(names) if names else [o.name for o in session.get_outputs()]
    for feed in feeds:
        yield dict(zip(fetch, session.run(fetch, dict(feed)), strict=True))


def run_chunks(
    session: Any, feeds: Iterable[Mapping[str, np.ndarray]], names: Sequence[str] | None = None
) -> dict[str, list[np.ndarray]]:
    """Per output, its value for every feed (in order): what a caller stacks over samples."""
    fetch = list(names) if names else [o.name for o in session.get_outputs()]
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in fetch}
    for outputs in run_each(session, feeds, fetch):
        for name, value in outputs.items():
            chunks[name].append(np.asarray(value))
    return chunks
