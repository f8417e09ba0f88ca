"""edgekit.quant and edgekit.int8's building blocks: quiet(), one-pass statistics and ranges, Q/DQ
from given ranges, graph surgery that keeps layers in float."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from int8_models import HOSTILE_NODE, outlier_channel_net
from models import conv_net, sample_set

from edgekit import quant
from edgekit.int8 import activation_stats
from edgekit.int8.ort_qdq import OrtQdqAdapter
from edgekit.int8.qdq_surgery import float_outputs, revert_nodes
from edgekit.int8.recipes import Recipe
from edgekit.int8.scoring import ScoringSet, score
from edgekit.targets import Gates

X86 = {"activation_type": "uint8", "weight_type": "int8", "per_channel": True}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _feeds(model: onnx.ModelProto, count: int, seed: int = 1) -> list[dict[str, np.ndarray]]:
    data = sample_set(model, count, seed=seed, keep_batch=True)
    return [{k: v[i] for k, v in data.items()} for i in range(count)]


def test_quiet_keeps_root_logger_level_and_holds_back_only_onnxruntime(tmp_path: Path, capsys) -> None:
    """Regression (issue 9): quiet() used to set the root logger's level for everyone."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    model, _ = conv_net(size=8)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    feeds = _feeds(model, 2)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):  # type: ignore[override]
            return next(self.items, None)

    root = logging.getLogger()
    records = _Records()
    root.addHandler(records)
    level, filters = root.level, list(root.filters)
    root.setLevel(logging.INFO)
    try:
        with quant.quiet():
            assert root.level == logging.INFO
            logging.getLogger("somebody.else").warning("kept: not from onnxruntime")
            # not pre-processed: onnxruntime warns through the root logger, and prints nothing we want
            quantize_static(str(path), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ)
            print("printed inside quiet()")
        assert root.level == logging.INFO and root.filters == filters
        logging.getLogger("somebody.else").warning("after")
    finally:
        root.removeHandler(records)
        root.setLevel(level)
    assert "kept: not from onnxruntime" in records.messages and "after" in records.messages
    assert not any("pre-process" in m for m in records.messages), records.messages
    assert "printed inside quiet()" not in capsys.readouterr().out


def test_one_pass_minmax_ranges_equal_onnxruntime_calibration(tmp_path: Path) -> None:
    from edgekit.calib import CalibrationSet

    model, _ = conv_net(size=8)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    np.savez(tmp_path / "c.npz", **sample_set(model, 6))
    calib = CalibrationSet.load(tmp_path / "c.npz").validate([quant_input(model)])
    theirs = quant.compute_ranges(path, calib, "minmax")
    ours = activation_stats.collect(path, calib.feeds(1)).ranges("minmax", symmetric=False)
    shared = set(theirs) & set(ours)
    assert len(shared) >= len(theirs) - 1  # every tensor onnxruntime calibrates, we do too
    for name in shared:
        assert ours[name] == pytest.approx(theirs[name], rel=1e-6, abs=1e-6), name


def quant_input(model: onnx.ModelProto):
    from edgekit.calib import InputInfo

    vi = model.graph.input[0]
    return InputInfo(vi.name, tuple(d.dim_value for d in vi.type.tensor_type.shape.dim), np.dtype("float32"))


def test_histogram_range_doubling_keeps_counts_exact() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.normal(0, 0.5, 5000), rng.normal(0, 3.0, 5000), rng.uniform(-40, 25, 2000)]
    tensor = activation_stats.TensorStats()
    for part in parts:
        tensor.add(part.astype(np.float32))
    values = np.concatenate(parts).astype(np.float32)
    edges = np.linspace(-tensor.radius, tensor.radius, 2 * activation_stats.BINS_PER_SIDE + 1)
    expected, _ = np.histogram(values, bins=edges)
    assert tensor.hist.sum() == values.size
    # identical up to values that sit on a bin edge in float32 rounding
    assert np.abs(tensor.hist - expected).sum() <= 4
    assert (tensor.low, tensor.high) == (float(values.min()), float(values.max()))
    assert tensor.percentile(100.0, symmetric=False) == pytest.approx((tensor.low, tensor.high))


def test_histogram_grows_from_an_all_zero_first_batch() -> None:
    """A tensor that is all zeros in the first batch (an attention-mask bias on unpadded sentences)
    then -10000 where padded: the radius grows from 1e-12 by 2**54 without overflowing the index."""
    tensor = activation_stats.TensorStats()
    tensor.add(np.zeros(64, np.float32))
    values = np.zeros(64, np.float32)
    values[-8:] = -10000.0
    tensor.add(values)
    assert tensor.hist.sum() == 128
    assert tensor.radius >= 10000.0
    assert (tensor.low, tensor.high) == (-10000.0, 0.0)
    assert tensor.percentile(100.0, symmetric=False) == pytest.approx((-10000.0, 0.0))


def test_entropy_clips_a_heavy_tail_and_keeps_relu_outputs_nonnegative() -> None:
    rng = np.random.default_rng(1)
    relu = np.maximum(rng.standard_t(2, 200_000), 0).astype(np.float32)  # ReLU of a heavy tail
    tensor = activation_stats.TensorStats()
    tensor.add(relu)
    low, high = tensor.entropy(symmetric=False)
    assert low == 0.0  # not the mirrored -threshold that wastes half of a uint8 range
    assert np.quantile(relu, 0.99) < high < tensor.high / 4  # the tail is clipped, the bulk kept
    sym_low, sym_high = tensor.entropy(symmetric=True)
    assert sym_low == -sym_high


def test_quantize_with_ranges_uses_the_given_ranges(tmp_path: Path) -> None:
    model, _ = conv_net(size=8)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    ranges = activation_stats.collect(path, _feeds(model, 4)).ranges("minmax", symmetric=False)
    ranges["input"] = (-2.0, 3.1)
    out = quant.quantize_with_ranges(path, tmp_path / "q.onnx", ranges, per_channel=False)
    q = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    node = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    assert float(inits[node.input[1]]) == pytest.approx(5.1 / 255, rel=1e-6)


def _adapter(tmp_path: Path, model: onnx.ModelProto, count: int = 24) -> tuple[OrtQdqAdapter, ScoringSet]:
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    feeds = _feeds(model, count + 16)
    adapter = OrtQdqAdapter(path, feeds[:count], X86, source_path=path, work_dir=tmp_path)
    scoring = feeds[count:]
    data = ScoringSet(scoring, None, adapter.reference(scoring, True), True, "test")
    return adapter, data


def test_reverting_every_node_gives_fp32_and_weights_come_back_float(tmp_path: Path) -> None:
    adapter, data = _adapter(tmp_path, conv_net(size=8)[0])
    base = adapter.build(adapter.space().default())
    nodes = adapter.quantized_nodes(base)
    assert nodes and all(adapter.describe(n)["source_node"] == n for n in nodes)
    everything = adapter.preview(base, nodes)
    outputs = adapter.run(everything, data)
    for name, ref in data.reference.items():
        np.testing.assert_allclose(outputs[name], ref, rtol=1e-4, atol=1e-4)
    model = everything.handle["proto"]
    conv = next(n for n in model.graph.node if n.name == nodes[0])
    float_inits = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert conv.input[1] in float_inits
    assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] in conv.input]


def test_outlier_layer_is_the_one_whose_revert_recovers(tmp_path: Path) -> None:
    adapter, data = _adapter(tmp_path, outlier_channel_net())
    base = adapter.build(adapter.space().default())
    before = score(adapter.run(base, data), data, Gates()).cosine
    gains = {
        node: score(adapter.run(adapter.preview(base, [node]), data), data, Gates()).cosine - before
        for node in adapter.quantized_nodes(base)
    }
    assert max(gains, key=gains.__getitem__) == HOSTILE_NODE
    assert gains[HOSTILE_NODE] > 0


def test_float_outputs_removes_only_the_output_qdq(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, conv_net(size=8)[0], count=4)
    model = onnx.load(str(adapter.path(adapter.build(Recipe.of({**adapter.space().default().to_json()})))))
    quantized = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert float_outputs(model) == 1
    onnx.checker.check_model(model)
    writer = {o: n for n in model.graph.node for o in n.output}[model.graph.output[0].name]
    assert writer.op_type == "Gemm"
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == quantized - 1
    assert revert_nodes(model, adapter.pre_model, set()).graph.node  # no-op revert stays valid


def test_node_origins_give_back_original_names_after_renaming(tmp_path: Path) -> None:
    """Ingest rewrites names a backend rejects ('@', ':', '/'): nodes are reported by their original
    names, found through the tensors they write."""
    from models import odd_names_net

    from edgekit import ingest
    from edgekit.int8.names import NodeOrigins

    model, _ = odd_names_net()
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    prepared = ingest.prepare(path, ingest.PrepareOptions(name_pattern="[A-Za-z0-9_]", simplify=False))
    assert prepared.name_map
    origins = NodeOrigins(prepared.load(), path, prepared.name_map)
    originals = {n.name for n in model.graph.node if n.name and n.op_type != "Constant"}
    renamed = [n for n in prepared.load().graph.node if n.name and n.name not in originals]
    assert renamed  # the test model has names the pattern rewrites
    for node in renamed:
        assert origins.original(node.name) in originals
