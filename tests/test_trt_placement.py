"""TensorRT-aware Q/DQ placement, checked by graph inspection and through onnxruntime.

The invariants (TensorRT developer guide's Q/DQ placement recommendations, ModelOpt's INT8 rules):
every Q/DQ pair feeds an op TensorRT runs in INT8 (Conv/ConvTranspose/Gemm/MatMul, pooling, a residual
Add fused into a convolution), never only a float op or a graph output; every weighted node that is
not excluded has its activation inputs quantized per tensor and its weight per output channel; the
activation scales are exactly the calibration cache's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit import ingest
from edgekit.backends.trt import calibration, placement
from edgekit.backends.trt.qdq import insert_qdq, qdq_counts
from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput
from tests import zoo
from tests.models import (
    Builder,
    constant_weights_net,
    plain_conv_net,
    resnet_ish,
    sample_set,
    transformer_block,
)

INT8_CONSUMERS = set(placement.LINEAR_OPS) | set(placement.POOLING_OPS) | {"Add", "Sum"}


def _fake_scales(model: onnx.ModelProto) -> dict[str, float]:
    """A distinct positive scale for every non-constant tensor (placement needs no real calibration)."""
    consts = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in consts]
    names += [o for n in model.graph.node if n.op_type != "Constant" for o in n.output]
    return {name: float(np.float32(0.01 + 0.001 * k)) for k, name in enumerate(names)}


def _index(model: onnx.ModelProto):
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return producer, consumers, inits


def placement_violations(model: onnx.ModelProto) -> list[str]:
    """Q/DQ pairs that do not feed an op TensorRT runs in INT8 (ORT's default has many)."""
    producer, consumers, _ = _index(model)
    outputs = {o.name for o in model.graph.output}
    bad = []
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            users = consumers.get(node.output[0], [])
            if node.output[0] in outputs:
                bad.append(f"{node.name}: a graph output is dequantized")
            bad += [f"{node.name} feeds {u.op_type}" for u in users if u.op_type not in INT8_CONSUMERS]
        if node.op_type == "QuantizeLinear" and node.input[0] in producer:
            if producer[node.input[0]].op_type == "DequantizeLinear":
                bad.append(f"{node.name}: re-quantizes a DQ output")
    return bad


def check_placement(source: onnx.ModelProto, qdq: onnx.ModelProto, plan, scales) -> None:
    producer, consumers, inits = _index(qdq)
    src_inits = {i.name: numpy_helper.to_array(i) for i in source.graph.initializer}
    for node in source.graph.node:  # weights held in Constant nodes
        if node.op_type == "Constant":
            src_inits[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    by_name = {n.name: n for n in qdq.graph.node}
    assert placement_violations(qdq) == []
    assert [o.name for o in qdq.graph.output] == [o.name for o in source.graph.output]

    def dq_of(tensor: str) -> onnx.NodeProto | None:
        node = producer.get(tensor)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    for node in qdq.graph.node:
        if node.op_type not in placement.LINEAR_OPS:
            continue
        if node.name in plan.excluded:
            assert not any(dq_of(t) for t in node.input), f"{node.name} is excluded but quantized"
            continue
        assert node.name in plan.int8_nodes
        activation = dq_of(node.input[0])
        assert activation is not None, f"{node.name}: activation input not quantized"
        weight = dq_of(node.input[1])
        assert weight is not None, f"{node.name}: weight not quantized"
        stored, scale, zero = (inits.get(n) for n in weight.input)
        quantize = producer.get(weight.input[0])
        if stored is None and quantize.input[0] not in src_inits:  # a variable second input: per tensor
            assert np.ndim(scale) == 0
            continue
        axis = next((a.i for a in weight.attribute if a.name == "axis"), None)
        assert np.all(zero == 0) and zero.dtype == np.int8
        if stored is not None:  # INT8 initializer (TensorRT >= 10)
            assert stored.dtype == np.int8 and np.abs(stored).max() <= 127
            original = src_inits[weight.input[0].removesuffix("_quantized")]
        else:  # float weight behind a Q/DQ pair on the same axis (TensorRT 8.x)
            assert quantize.op_type == "QuantizeLinear" and list(quantize.input[1:]) == list(weight.input[1:])
            assert next(a.i for a in quantize.attribute if a.name == "axis") == axis
            original = src_inits[quantize.input[0]]
        assert axis is not None and scale.shape == (original.shape[axis],), f"{node.name}: not per-channel"
        shape = [1] * original.ndim
        shape[axis] = -1
        values = (
            stored if stored is not None else np.clip(np.rint(original / scale.reshape(shape)), -127, 127)
        )
        error = np.abs(values * scale.reshape(shape) - original)
        assert np.all(error <= scale.reshape(shape) / 2 + 1e-7), f"{node.name}: weight scale too small"
    for node in qdq.graph.node:  # activations: per tensor, symmetric, the cache's scale exactly
        if node.op_type == "QuantizeLinear" and node.input[0] not in src_inits:
            scale, zero = inits[node.input[1]], inits[node.input[2]]
            assert zero.dtype == np.int8 and int(zero) == 0
            assert np.float32(scale) == np.float32(scales[node.input[0]])
    for name in plan.residual_adds:
        add = by_name[name]
        quantized = [dq_of(t) is not None for t in add.input]
        assert quantized.count(True) == 1, f"{name}: {quantized}"
        fused = add.input[quantized.index(False)]
        assert producer[fused].op_type != "DequantizeLinear"
    ort.InferenceSession(qdq.SerializeToString(), providers=["CPUExecutionProvider"])


def _place(model: onnx.ModelProto, exclude=(), int8_weights=True):
    plan = placement.plan_placement(model, exclude)
    scales = _fake_scales(model)
    result = insert_qdq(model, plan, scales, int8_weights=int8_weights)
    assert result.missing_scales == []
    onnx.checker.check_model(result.model)
    return plan, result.model, scales


# ---- graph inspection --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build",
    [
        lambda: plain_conv_net()[0],
        lambda: resnet_ish(size=32, width=16),
        lambda: transformer_block()[0],
        lambda: constant_weights_net(opset=13)[0],
    ],
    ids=["plain_conv", "resnet_ish", "transformer", "constant_weights"],
)
@pytest.mark.parametrize("int8_weights", [True, False], ids=["int8-weights", "float-weights"])
def test_placement_invariants(build, int8_weights):
    model = build()
    plan, qdq, scales = _place(model, int8_weights=int8_weights)
    check_placement(model, qdq, plan, scales)
    assert plan.int8_nodes
    stored = [i for i in qdq.graph.initializer if i.data_type == TensorProto.INT8 and len(i.dims) > 1]
    assert bool(stored) == int8_weights


def test_onnxruntime_default_breaks_the_invariant_edgekit_keeps(tmp_path):
    """The check is not vacuous: onnxruntime's default QDQ placement puts pairs on every op output."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgekit import quant

    model = resnet_ish(size=32, width=16)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    calib = tmp_path / "c.npz"
    np.savez(calib, **sample_set(model, 4, seed=1))
    reader = CalibrationSet.load(calib).validate(ingest.io_info(model)[0])
    quantize_static(
        str(path),
        str(tmp_path / "default.onnx"),
        quant.ort_reader(reader),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    default = onnx.load(tmp_path / "default.onnx")
    _, ours, _ = _place(model)
    assert placement_violations(default)
    assert placement_violations(ours) == []
    assert qdq_counts(ours)["QuantizeLinear"] < qdq_counts(default)["QuantizeLinear"]


def test_residual_adds_quantize_the_shortcut_not_the_fused_branch():
    model = resnet_ish(size=32, width=16, blocks=4)
    plan, qdq, _ = _place(model)
    adds = [n.name for n in model.graph.node if n.op_type == "Add"]
    assert plan.residual_adds == adds  # every block's Add fuses into its last convolution
    producer, _, _ = _index(qdq)

    def kernel(conv: onnx.NodeProto) -> list[int]:
        return next(list(a.ints) for a in conv.attribute if a.name == "kernel_shape")

    for name in adds:
        add = next(n for n in qdq.graph.node if n.name == name)
        fused = [t for t in add.input if producer[t].op_type != "DequantizeLinear"]
        # DQ <- Q <- the shortcut tensor's producer
        shortcut = [producer[producer[producer[t].input[0]].input[0]] for t in add.input if t not in fused]
        # fused: the block's last 3x3 conv; quantized: the identity (ReLU or MaxPool output) or the 1x1 projection
        assert (
            len(fused) == 1 and producer[fused[0]].op_type == "Conv" and kernel(producer[fused[0]]) == [3, 3]
        )
        (source,) = shortcut
        assert source.op_type in ("Relu", "MaxPool") or (
            source.op_type == "Conv" and kernel(source) == [1, 1]
        )


def test_pooling_runs_int8_between_int8_convs_and_graph_outputs_stay_float():
    model = resnet_ish(size=32, width=16)
    plan, qdq, _ = _place(model)
    maxpool = next(n.name for n in model.graph.node if n.op_type == "MaxPool")
    assert maxpool in plan.int8_nodes  # conv -> relu -> MaxPool -> conv
    producer, _, _ = _index(qdq)
    for out in qdq.graph.output:
        assert producer[out.name].op_type not in ("QuantizeLinear", "DequantizeLinear")


def test_float_kernel_rules():
    """ModelOpt's INT8 rules: tiny convolutions and GEMV-shaped / small GEMMs stay in float."""
    b = Builder(seed=3)
    y = b.conv("x", 3, 16, name="stem")  # first layer, 16 outputs: INT8
    y = b.conv(y, 16, 6, k=1, name="narrow")  # 6 outputs, 16 inputs: INT8 (inputs >= 16)
    y = b.conv(y, 6, 12, name="tiny")  # 6 in / 12 out, neither a multiple of 8: float
    y = b.op("Flatten", [b.op("GlobalAveragePool", [y])], axis=1)
    b.gemm(y, 12, 10, name="head")  # [1, 10] output: GEMV
    model = b.model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, 10])],
    )
    plan = placement.plan_placement(model)
    assert {"stem_node", "narrow_node"} <= set(plan.int8_nodes)
    assert "no faster INT8 kernel" in plan.excluded["tiny_node"]
    assert "GEMV" in plan.excluded["head_node"]


def test_exclusion_keeps_a_node_and_its_fused_add_in_float():
    model = resnet_ish(size=32, width=16, blocks=2)
    first_plan = placement.plan_placement(model)
    add = first_plan.residual_adds[0]
    producer = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == add)
    conv = next(producer[t].name for t in node.input if producer[t].op_type == "Conv")  # the fused branch
    plan, qdq, scales = _place(model, exclude=[conv])
    assert plan.excluded[conv] == "excluded by request"
    assert conv not in plan.int8_nodes and add not in plan.residual_adds
    check_placement(model, qdq, plan, scales)


def test_shared_weight_in_a_constant_node_is_quantized_once():
    """Weights held in Constant nodes (TF/Paddle exports), one tensor read by two MatMuls."""
    b = Builder(seed=4, constants=True)
    w = b.weight((32, 32))
    y = b.op("MatMul", ["tokens", w], node="mm1")
    y = b.op("MatMul", [b.op("Relu", [y]), w], name="out", node="mm2")
    model = b.model(
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1, 16, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 32])],
    )
    plan, qdq, scales = _place(model)
    assert plan.int8_nodes == ["mm1", "mm2"]
    check_placement(model, qdq, plan, scales)
    weight_dq = [n for n in qdq.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith(w)]
    assert len(weight_dq) == 1 and next(a.i for a in weight_dq[0].attribute if a.name == "axis") == 1
    assert not any(n.op_type == "Constant" and n.output[0] == w for n in qdq.graph.node)  # replaced
    mm = [n for n in qdq.graph.node if n.op_type == "MatMul"]
    assert {n.input[1] for n in mm} == {weight_dq[0].output[0]}


def test_unnamed_nodes_are_planned_by_position():
    model = plain_conv_net()[0]
    for node in model.graph.node:
        node.name = ""
    plan, qdq, scales = _place(model)
    assert "Conv#0" in plan.int8_nodes
    assert qdq_counts(qdq)["QuantizeLinear"] == len({q.tensor for q in plan.inputs if q.kind == "activation"})


# ---- through onnxruntime, with real calibration ------------------------------------------------
def _calibrated(tmp_path: Path, model_path: Path, arrays: dict, exclude=()):
    prepared = ingest.prepare(model_path, ingest.PrepareOptions(min_opset=13, max_opset=17))
    np.savez(tmp_path / "calib.npz", **arrays)
    calib = CalibrationSet.load(tmp_path / "calib.npz").validate(prepared.inputs)
    scales = calibration.calibrate(prepared.path, calib, "entropy")
    out = tmp_path / "model.qdq.onnx"
    result = calibration.quantize_for_tensorrt(prepared.path, out, scales, exclude=exclude)
    return prepared, scales, result, out


def test_scales_are_the_calibration_caches(tmp_path):
    model = resnet_ish(size=32, width=16)
    path = tmp_path / "r.onnx"
    onnx.save(model, path)
    _, scales, result, out = _calibrated(tmp_path, path, sample_set(model, 8, seed=1))
    found = calibration.qdq_activation_scales(out)
    assert found and all(np.float32(found[t]) == np.float32(scales[t]) for t in found)
    assert result.to_json()["residual_adds"] == len(result.plan.residual_adds) > 0


def test_model_with_qdq_already_is_refused(tmp_path):
    model = plain_conv_net()[0]
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    _, scales, _, out = _calibrated(tmp_path, path, sample_set(model, 4, seed=1))
    with pytest.raises(BadInput, match="already holds Q/DQ"):
        calibration.quantize_for_tensorrt(out, tmp_path / "again.onnx", scales)


@pytest.mark.skipif(not zoo.available(), reason="onnx's light zoo models are not installed")
@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "inception_v1"])
def test_zoo_architectures(tmp_path, name):
    """Real topologies (Concat fire modules, channel shuffle with grouped convs, inception branches)."""
    path = zoo.zoo_model(name, tmp_path / f"{name}.onnx")
    model = onnx.load(path)
    model.ir_version = max(model.ir_version, 4)  # until ingest handles IR < 4 itself (issue 9)
    onnx.save(model, path)
    prepared = ingest.prepare(path, ingest.PrepareOptions(min_opset=13, max_opset=17))
    source = prepared.load()
    plan, qdq, scales = _place(source)
    check_placement(source, qdq, plan, scales)
    convs = [n for n in source.graph.node if n.op_type == "Conv"]
    assert len([n for n in plan.int8_nodes if n in {c.name for c in convs}]) >= len(convs) - 2


@pytest.mark.slow
@pytest.mark.skipif(not zoo.available(), reason="onnx's light zoo models are not installed")
def test_zoo_resnet50_residual_placement(tmp_path):
    path = zoo.zoo_model("resnet50", tmp_path / "resnet50.onnx")
    model = onnx.load(path)
    model.ir_version = max(model.ir_version, 4)
    onnx.save(model, path)
    source = ingest.prepare(path, ingest.PrepareOptions(min_opset=13, max_opset=17)).load()
    plan, qdq, scales = _place(source)
    check_placement(source, qdq, plan, scales)
    sums = [n for n in source.graph.node if n.op_type in ("Add", "Sum")]
    assert len(plan.residual_adds) == len(sums) == 16
    assert all(n.name in plan.int8_nodes for n in source.graph.node if n.op_type == "Conv")


def test_non_float32_layers_stay_float():
    """Q/DQ at these opsets takes float32: an fp16 layer (a half-converted model) is left alone."""
    w = numpy_helper.from_array(np.ones((16, 16, 1, 1), np.float16), "w16")
    node = helper.make_node("Conv", ["x", "w16"], ["y"], name="half")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 16, 8, 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    plan = placement.plan_placement(model)
    assert plan.int8_nodes == [] and "not float32" in plan.excluded["half"]
