"""Small ONNX models built in code, shaped like the ones real exporters produce.

Each builder returns a ModelProto; `param_count` of each is computed here independently of edgekit
(the sum of the sizes of the float weight arrays created, each shared tensor once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG_SEED = 0


class Builder:
    """Collects nodes and weights; `weight()` returns a name and records the parameter count."""

    def __init__(self, seed: int = RNG_SEED, constants: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.params = 0
        self.weights: list[np.ndarray] = []  # every float array created, each once
        self.constants = constants  # weights as Constant nodes instead of initializers
        self._count = 0

    def name(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def weight(self, shape: tuple[int, ...], scale: float | None = None, name: str | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        std = scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1))
        array = (self.rng.standard_normal(shape) * std).astype(np.float32)
        return self.tensor(array, name)

    def tensor(self, array: np.ndarray, name: str | None = None, initializer: bool = False) -> str:
        """Add a constant (a Constant node when `constants`, unless `initializer`); float32 counts as a parameter."""
        name = name or self.name("w")
        if array.dtype == np.float32:
            self.params += int(array.size)
            self.weights.append(array)
        if self.constants and not initializer:
            self.nodes.append(
                helper.make_node(
                    "Constant", [], [name], value=numpy_helper.from_array(array, name), name=name + "_const"
                )
            )
        else:
            self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(
        self, op_type: str, inputs: list[str], name: str | None = None, node: str | None = None, **attrs
    ) -> str:
        """Append a node; `name` names its output, `node` the node (default: output name + '_node')."""
        out = name or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=node or out + "_node", **attrs))
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int = 3,
        stride: int = 1,
        group: int = 1,
        bias: bool = True,
        bn: bool = False,
        scale: float | None = None,
        name: str | None = None,
    ) -> str:
        """Conv (pad k//2), optionally with a bias and a BatchNormalization with random statistics."""
        inputs = [x, self.weight((cout, cin // group, k, k), scale=scale)]
        if bias:  # a zero bias before a BN (no random draw), else a small random one
            values = (
                np.zeros(cout, np.float32)
                if bn
                else (0.1 * self.rng.standard_normal(cout)).astype(np.float32)
            )
            inputs.append(self.tensor(values))
        y = self.op(
            "Conv",
            inputs,
            name=name,
            kernel_shape=[k, k],
            pads=[k // 2] * 4,
            strides=[stride, stride],
            group=group,
        )
        return self.batch_norm(y, cout) if bn else y

    def batch_norm(self, x: str, cout: int) -> str:
        scale = self.tensor((1.0 + 0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        bias = self.tensor((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        mean = self.tensor((0.1 * self.rng.standard_normal(cout)).astype(np.float32))
        var = self.tensor((1.0 + 0.1 * np.abs(self.rng.standard_normal(cout))).astype(np.float32))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=1e-5)

    def conv_bn_relu(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1) -> str:
        return self.op("Relu", [self.conv(x, cin, cout, k, stride, group, bias=True, bn=True)])

    def gemm(
        self,
        x: str,
        cin: int,
        cout: int,
        name: str | None = None,
        node: str | None = None,
        bias_std: float = 0.01,
    ) -> str:
        w = self.weight((cout, cin))
        b = self.tensor((bias_std * self.rng.standard_normal(cout) + 0.0).astype(np.float32))  # no -0.0
        return self.op("Gemm", [x, w, b], name=name, node=node, transB=1)

    def linear(self, x: str, cin: int, cout: int, bias: bool = True, name: str | None = None) -> str:
        """MatMul by a [cin, cout] weight (scale 1/sqrt(cin)), then Add a zero bias."""
        y = self.op("MatMul", [x, self.weight((cin, cout), scale=cin**-0.5)], name=None if bias else name)
        return self.op("Add", [y, self.tensor(np.zeros(cout, np.float32))], name=name) if bias else y

    def layer_norm(self, x: str, dim: int) -> str:
        gamma = self.tensor(np.ones(dim, np.float32))
        beta = self.tensor(np.zeros(dim, np.float32))
        return self.op("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)

    def attention(self, q: str, k: str, v: str, scale: str, merge: str | None = None) -> str:
        """Softmax(q k^T * scale) v. Without `merge`: one head on [B, S, D]; with it: q, k, v are
        [B, S, H, dh] (already reshaped) and the context is reshaped back to `merge`."""
        if merge is None:
            kt = self.op("Transpose", [k], perm=[0, 2, 1])
        else:
            q = self.op("Transpose", [q], perm=[0, 2, 1, 3])
            kt = self.op("Transpose", [k], perm=[0, 2, 3, 1])
            v = self.op("Transpose", [v], perm=[0, 2, 1, 3])
        scores = self.op("Mul", [self.op("MatMul", [q, kt]), scale])
        ctx = self.op("MatMul", [self.op("Softmax", [scores], axis=-1), v])
        if merge is not None:
            ctx = self.op("Reshape", [self.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge])
        return ctx

    def model(
        self, inputs, outputs, opset: int = 13, name: str = "g", ir_version: int | None = None
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="edgekit-tests"
        )
        model.ir_version = ir_version or (8 if opset >= 15 else 7)
        onnx.checker.check_model(model)
        return model


def _cnn_body(b: Builder, x: str, cin: int = 3, classes: int = 10, head_bias_std: float = 0.01) -> str:
    y = b.conv_bn_relu(x, cin, 16)
    y = b.conv_bn_relu(y, 16, 16, group=16)  # depthwise
    y = b.conv_bn_relu(y, 16, 32, k=1)  # pointwise
    y = b.op("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = b.conv_bn_relu(y, 32, 32, stride=2)
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    return b.gemm(y, 32, classes, bias_std=head_bias_std)


def conv_net(
    size: int = 32,
    opset: int = 13,
    batch: int | str = 1,
    spatial: int | str | None = None,
    inp: str = "input",
    out: str = "logits",
    head_node: str | None = None,
    head_bias_std: float = 0.01,
) -> tuple[onnx.ModelProto, int]:
    """Conv-BN-ReLU body (plain, depthwise, pointwise, strided) with GAP and a Gemm head; `batch` and
    `spatial` may be symbolic, `head_node` names the Gemm node."""
    b = Builder()
    y = _cnn_body(b, inp, head_bias_std=head_bias_std)
    b.nodes[-1].output[0] = out
    if head_node:
        b.nodes[-1].name = head_node
    hw = spatial if spatial is not None else size
    model = b.model(
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, 10])],
        opset=opset,
    )
    del y
    return model, b.params


def opset11_net() -> tuple[onnx.ModelProto, int]:
    return conv_net(opset=11)


def constant_weights_net(opset: int = 12) -> tuple[onnx.ModelProto, int]:
    """Weights held in Constant nodes (as TF/Paddle exporters do), one tensor shared by two nodes."""
    b = Builder(constants=True)
    w = b.weight((8, 3, 3, 3))
    y = b.op("Conv", ["input", w], pads=[1, 1, 1, 1])
    y = b.op("Relu", [y])
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    shared = b.weight((8, 8))
    y = b.op("MatMul", [y, shared])
    y = b.op("Relu", [y])
    y = b.op("MatMul", [y, shared])  # the same weight again: counted once
    head = b.weight((8, 4))
    b.op("MatMul", [y, head], name="scores")
    model = b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4])],
        opset=opset,
    )
    return model, b.params


def dynamic_net() -> tuple[onnx.ModelProto, int]:
    """Dynamic batch and spatial dims."""
    b = Builder()
    _cnn_body(b, "images", classes=5)
    b.nodes[-1].output[0] = "probs_in"
    b.op("Softmax", ["probs_in"], name="probs", axis=1)
    model = b.model(
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 5])],
    )
    return model, b.params


def two_input_net() -> tuple[onnx.ModelProto, int]:
    """An image and a feature vector, fused before the classifier."""
    b = Builder()
    y = b.conv_bn_relu("image", 3, 8)
    y = b.op("GlobalAveragePool", [y])
    y = b.op("Flatten", [y], axis=1)
    v = b.gemm("features", 6, 8)
    v = b.op("Relu", [v])
    y = b.op("Concat", [y, v], axis=1)
    b.gemm(y, 16, 3)
    b.nodes[-1].output[0] = "out"
    model = b.model(
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 6]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
    )
    return model, b.params


def odd_names_net() -> tuple[onnx.ModelProto, int]:
    """Tensor and node names with '@', ':' and '/' as TF and Paddle exports have them."""
    b = Builder()
    w = b.weight((8, 3, 3, 3), name="conv@0/weight:0")
    y = b.op("Conv", ["input:0", w], name="block/conv@1:0", pads=[1, 1, 1, 1])
    y = b.op("Relu", [y], name="block/relu@2:0")
    y = b.op("GlobalAveragePool", [y], name="pool:0")
    y = b.op("Flatten", [y], name="flat@x", axis=1)
    g = b.weight((4, 8), name="fc@w:0")
    bias = b.tensor(np.zeros(4, np.float32), name="fc@b:0")
    b.op("Gemm", [y, g, bias], name="logits@out:0", transB=1)
    model = b.model(
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits@out:0", TensorProto.FLOAT, [1, 4])],
    )
    return model, b.params


def transformer_block(
    seq: int = 16,
    dim: int = 32,
    heads: int = 2,
    mlp: int = 4,
    bias: bool = False,
    classes: int | None = None,
    inp: str = "tokens",
    out: str = "hidden",
    seed: int = RNG_SEED,
) -> tuple[onnx.ModelProto, int]:
    """Pre-norm encoder block: LayerNorm, self-attention (one head on [1, seq, dim], or `heads` heads
    via Reshape/Transpose), MLP of width mlp*dim, residuals; with `classes`, a final LayerNorm and a
    first-token ("CLS") linear classifier (a mean over random tokens would shrink the signal to noise)."""
    b = Builder(seed)
    head_dim = dim // heads
    split = b.tensor(np.array([1, seq, heads, head_dim], np.int64)) if heads > 1 else None
    merge = b.tensor(np.array([1, seq, dim], np.int64)) if heads > 1 else None
    h = b.layer_norm(inp, dim)
    qkv = [b.linear(h, dim, dim, bias) for _ in range(3)]
    if split:
        qkv = [b.op("Reshape", [t, split]) for t in qkv]
    ctx = b.attention(*qkv, scale=b.tensor(np.array(head_dim**-0.5, np.float32)), merge=merge)
    x = b.op("Add", [inp, b.linear(ctx, dim, dim, bias)])
    h = b.op("Relu", [b.linear(b.layer_norm(x, dim), dim, mlp * dim, bias)])
    last = b.linear(h, mlp * dim, dim, bias)
    if classes is None:
        b.op("Add", [x, last], name=out)
        out_shape = [1, seq, dim]
    else:
        x = b.layer_norm(b.op("Add", [x, last]), dim)
        pooled = b.op("Gather", [x, b.tensor(np.array(0, np.int64))], axis=1)
        b.linear(pooled, dim, classes, bias, name=out)
        out_shape = [1, classes]
    model = b.model(
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [1, seq, dim])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        opset=17,
    )
    return model, b.params


def plain_conv_net(
    size: int = 16,
    batch: int | str = 1,
    stride: int = 2,
    inp: str = "x",
    out: str = "logits",
    torch_names: bool = False,
    seed: int = 5,
    opset: int = 13,
) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Conv(3->8, 3x3, pad 1) + ReLU + Conv(8->16, 3x3, `stride`) + ReLU + GAP + Flatten + Gemm(16->10),
    biases everywhere, no BN (MACs by hand). `torch_names`: '/conv1/Conv_output_0'-style tensor names."""
    b = Builder(seed)

    def named(tensor: str) -> str | None:
        return f"/{tensor}_output_0" if torch_names else None

    y = b.op("Relu", [b.conv(inp, 3, 8, name=named("conv1/Conv"))], name=named("relu1/Relu"))
    y = b.conv(y, 8, 16, stride=stride, name=named("conv2/Conv"))
    y = b.op("Relu", [y], name=named("relu2/Relu"))
    y = b.op("Flatten", [b.op("GlobalAveragePool", [y], name=named("pool"))], name=named("flatten"), axis=1)
    b.gemm(y, 16, 10, name=out)
    model = b.model(
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, 10])],
        opset=opset,
        ir_version=8,
    )
    return model, b.weights


def dynamic_conv(seed: int = 8) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """Conv(3->4, 3x3, pad 1, bias) + ReLU on x[N, 3, H, W] -> y[N, 4, H, W] (symbolic batch and spatial)."""
    b = Builder(seed)
    b.op("Relu", [b.conv("x", 3, 4)], name="y")
    model = b.model(
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        opset=17,
    )
    return model, b.weights


def two_vector_net(
    features: tuple[int, int] = (8, 6), width: int = 4, classes: int | None = None, seed: int = 9
) -> tuple[onnx.ModelProto, list[np.ndarray]]:
    """a @ Wa + b @ Wb (no biases); with `classes`, then ReLU and a Gemm head. Output `out`."""
    b = Builder(seed)
    names = ("a", "b")
    terms = [b.op("MatMul", [n, b.weight((f, width))]) for n, f in zip(names, features, strict=True)]
    y = b.op("Add", terms, name="out" if classes is None else None)
    if classes is not None:
        b.gemm(b.op("Relu", [y]), width, classes, name="out")
    model = b.model(
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, f])
            for n, f in zip(names, features, strict=True)
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, classes or width])],
        opset=17,
    )
    return model, b.weights


def resnet_ish(
    size: int = 224, width: int = 32, blocks: int = 4, classes: int = 100, seed: int = 0
) -> onnx.ModelProto:
    """A ResNet-like net for the OpenVINO benchmark: stride-2 stem, `blocks` residual blocks (2 convs each)
    with a stride-2 stage change halfway, GAP and FC. blocks=4 gives 10 convs (incl. stem and a shortcut)."""
    b = Builder(seed)
    x = b.conv_bn_relu("input", 3, width, stride=2)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = width
    for index in range(blocks):
        cout, stride = (cin * 2, 2) if index == blocks // 2 else (cin, 1)
        y = b.conv(b.conv_bn_relu(x, cin, cout, stride=stride), cout, cout, bias=False)
        if stride != 1 or cout != cin:
            x = b.conv(x, cin, cout, k=1, stride=stride, bias=False)
        x = b.op("Relu", [b.op("Add", [x, y])])
        cin = cout
    x = b.op("Flatten", [b.op("GlobalAveragePool", [x])], axis=1)
    b.gemm(x, cin, classes, name="logits")
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])],
    )


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# name -> (builder, input shapes to fix for static backends)
VARIED = {
    "conv": (conv_net, {}),
    "transformer": (transformer_block, {}),
    "constants": (constant_weights_net, {}),
    "opset11": (opset11_net, {}),
    "dynamic": (dynamic_net, {"images": [1, 3, 24, 24]}),
    "two_inputs": (two_input_net, {}),
    "odd_names": (odd_names_net, {}),
}


def sample_set(
    model: onnx.ModelProto,
    count: int,
    seed: int = 1,
    fixed: dict | None = None,
    uniform: tuple[float, float] | None = None,
    keep_batch: bool = False,
) -> dict[str, np.ndarray]:
    """Random inputs (samples on axis 0, batch axis of 1 squeezed into it unless `keep_batch`) for every
    model input: standard normal, or uniform in [low, high)."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    data = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = (
            fixed.get(vi.name)
            if fixed and vi.name in fixed
            else [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
        )
        shape = [count, *(dims if keep_batch else dims[1:])]
        if uniform is None:
            data[vi.name] = rng.standard_normal(shape).astype(np.float32)
        elif uniform == (0.0, 1.0):
            data[vi.name] = rng.random(shape, dtype=np.float32)
        else:
            data[vi.name] = rng.uniform(*uniform, size=shape).astype(np.float32)
    return data


def write_model_and_sets(
    tmp: Path, key: str, calib_count: int = 16, val_count: int = 12
) -> tuple[Path, Path, Path, int]:
    """Save a VARIED model plus calibration and validation .npz files into `tmp`."""
    builder, fixed = VARIED[key]
    model, params = builder()
    model_path = tmp / f"{key}.onnx"
    onnx.save(model, model_path)
    calib = tmp / f"{key}_calib.npz"
    val = tmp / f"{key}_val.npz"
    np.savez(calib, **sample_set(model, calib_count, seed=1, fixed=fixed))
    np.savez(val, **sample_set(model, val_count, seed=2, fixed=fixed))
    return model_path, calib, val, params
