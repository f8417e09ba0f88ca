"""Small ONNX models for task-level fidelity, built in code, shaped like real exports: a YOLOv8-style head
(Concat of boxes in pixels 0-320 and sigmoid class scores on axis 1, Ultralytics metadata), a YOLOv5-style
head, a boxes + scores pair, a probability map, an embedding model, a classifier and a token model; and
`run` to get their FP32 outputs for a set of samples (stacked on axis 0)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

NAMES = "{0: 'person', 1: 'car', 2: 'dog'}"


def _model(
    nodes, inputs, outputs, inits, opset: int = 17, meta: dict[str, str] | None = None
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model


def _anchors(side: int, size: float = 320.0) -> np.ndarray:
    ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    step = size / side
    count = side * side
    return np.stack(
        [(xs.ravel() + 0.5) * step, (ys.ravel() + 0.5) * step, np.full(count, 40.0), np.full(count, 30.0)]
    )


def yolov8(
    classes: int = 3,
    side: int = 16,
    meta: bool = True,
    opset: int = 17,
    batch: int | str = 1,
    name: str = "output0",
) -> onnx.ModelProto:
    """images [N, 3, side, side] -> output0 [N, 4 + C, side*side]: Concat(boxes cx cy w h in pixels
    0-320, Sigmoid(class scores)) on axis 1, as Ultralytics exports; metadata task/names/imgsz/stride."""
    count = side * side
    rng = np.random.default_rng(1)
    inits = {
        "w": rng.normal(0, 1.0, (4 + classes, 3, 1, 1)).astype(np.float32),
        "b": np.concatenate([np.zeros(4), np.full(classes, -2.5)]).astype(np.float32),
        "shape": np.array([0, 4 + classes, count], np.int64),
        "anchors": _anchors(side)[None].astype(np.float32),
        "k": np.array([8.0], np.float32),
    }
    if opset >= 13:
        inits["split"] = np.array([4, classes], np.int64)
        split = helper.make_node("Split", ["r", "split"], ["bx", "sc"], axis=1)
    else:
        split = helper.make_node("Split", ["r"], ["bx", "sc"], axis=1, split=[4, classes])
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["f"]),
        helper.make_node("Reshape", ["f", "shape"], ["r"]),
        split,
        helper.make_node("Tanh", ["bx"], ["t"]),
        helper.make_node("Mul", ["t", "k"], ["tk"]),
        helper.make_node("Add", ["anchors", "tk"], ["box"]),
        helper.make_node("Sigmoid", ["sc"], ["prob"]),
        helper.make_node("Concat", ["box", "prob"], [name], axis=1),
    ]
    hw = side if batch == 1 else "height"
    metadata = {"task": "detect", "names": NAMES, "imgsz": "[320, 320]", "stride": "32", "author": "test"}
    return _model(
        nodes,
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, [batch, 3, hw, hw if batch == 1 else "width"]
            )
        ],
        [
            helper.make_tensor_value_info(
                name, TensorProto.FLOAT, [batch, 4 + classes, count if batch == 1 else None]
            )
        ],
        inits,
        opset,
        metadata if meta else None,
    )


def yolov8_seg(classes: int = 2, masks: int = 4, side: int = 16) -> onnx.ModelProto:
    """An Ultralytics segment head on a 64-pixel image: output0 [N, 4 + C + M, A] = Concat(boxes, sigmoid
    scores, mask coefficients) and output1 prototypes [N, M, side, side] (stride 4); metadata task segment."""
    count = side * side
    rng = np.random.default_rng(7)
    rows = 4 + classes + masks
    anchors = _anchors(side, 64.0)
    anchors[2:] = [[20.0], [16.0]]
    inits = {
        "w": rng.normal(0, 1.0, (rows, 3, 1, 1)).astype(np.float32),
        "b": np.concatenate([np.zeros(4), np.full(classes, -2.0), np.zeros(masks)]).astype(np.float32),
        "wp": rng.normal(0, 1.0, (masks, 3, 3, 3)).astype(np.float32),
        "shape": np.array([0, rows, count], np.int64),
        "anchors": anchors[None].astype(np.float32),
        "k": np.array([2.0], np.float32),
        "split": np.array([4, classes, masks], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["f"]),
        helper.make_node("Reshape", ["f", "shape"], ["r"]),
        helper.make_node("Split", ["r", "split"], ["bx", "sc", "coef"], axis=1),
        helper.make_node("Tanh", ["bx"], ["t"]),
        helper.make_node("Mul", ["t", "k"], ["tk"]),
        helper.make_node("Add", ["anchors", "tk"], ["box"]),
        helper.make_node("Sigmoid", ["sc"], ["prob"]),
        helper.make_node("Concat", ["box", "prob", "coef"], ["output0"], axis=1),
        helper.make_node("Conv", ["images", "wp"], ["output1"], pads=[1, 1, 1, 1]),
    ]
    meta = {"task": "segment", "names": "{0: 'cell', 1: 'nucleus'}", "imgsz": "[64, 64]", "stride": "4"}
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side])],
        [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, rows, count]),
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, [1, masks, side, side]),
        ],
        inits,
        17,
        meta,
    )


def yolov5(classes: int = 3, side: int = 16) -> onnx.ModelProto:
    """images -> output [N, A, 5 + C]: cx cy w h (pixels), objectness, class scores (no metadata)."""
    count = side * side
    rng = np.random.default_rng(2)
    inits = {
        "w": rng.normal(0, 1.0, (5 + classes, 3, 1, 1)).astype(np.float32),
        "b": np.concatenate([np.zeros(4), [-1.0], np.zeros(classes)]).astype(np.float32),
        "shape": np.array([0, 5 + classes, count], np.int64),
        "anchors": _anchors(side).T[None].astype(np.float32),
        "k": np.array([8.0], np.float32),
        "split": np.array([4, 1 + classes], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["f"]),
        helper.make_node("Reshape", ["f", "shape"], ["r"]),
        helper.make_node("Transpose", ["r"], ["rt"], perm=[0, 2, 1]),
        helper.make_node("Split", ["rt", "split"], ["bx", "sc"], axis=2),
        helper.make_node("Tanh", ["bx"], ["t"]),
        helper.make_node("Mul", ["t", "k"], ["tk"]),
        helper.make_node("Add", ["anchors", "tk"], ["box"]),
        helper.make_node("Sigmoid", ["sc"], ["prob"]),
        helper.make_node("Concat", ["box", "prob"], ["output"], axis=2),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, count, 5 + classes])],
        inits,
        13,
    )


def prob_map(size: int = 32) -> onnx.ModelProto:
    """image [N, 1, size, size] -> Sigmoid(8 * conv) [N, 1, size, size]: a sharp text-probability map."""
    rng = np.random.default_rng(3)
    inits = {"w": (rng.normal(0, 1.0, (1, 1, 3, 3)) * 3).astype(np.float32), "b": np.zeros(1, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c"], ["maps"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, size, size])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 1, size, size])],
        inits,
        11,
    )


def embedder(dim: int = 64) -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> Conv -> GlobalAveragePool -> Flatten: embedding [N, dim]."""
    rng = np.random.default_rng(4)
    inits = {
        "w": rng.normal(0, 1.0, (dim, 3, 3, 3)).astype(np.float32),
        "b": rng.normal(0, 1, dim).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["embedding"], axis=1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, dim])],
        inits,
        13,
    )


def classifier(classes: int = 10) -> onnx.ModelProto:
    """x [N, 3, 8, 8] -> GlobalAveragePool -> Flatten -> Gemm: logits [N, classes] (pooling, then a
    linear head: a classifier, not an embedding)."""
    rng = np.random.default_rng(5)
    inits = {"w": rng.normal(0, 1.0, (3, classes)).astype(np.float32), "b": np.zeros(classes, np.float32)}
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["logits"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
        9,
    )


def token_model(vocab: int = 128, dim: int = 16, steps: int = 8) -> onnx.ModelProto:
    """input_ids [N, T] int64 -> Gather(table) -> MatMul: logits [N, T, vocab]."""
    rng = np.random.default_rng(6)
    inits = {
        "table": rng.normal(0, 1, (vocab, dim)).astype(np.float32),
        "proj": rng.normal(0, 1, (dim, vocab)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["e"]),
        helper.make_node("MatMul", ["e", "proj"], ["logits"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, steps])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, steps, vocab])],
        inits,
        14,
    )


def encoder(vocab: int = 256, dim: int = 128, steps: int = 8, past: bool = False) -> onnx.ModelProto:
    """input_ids [N, T] -> hidden states [N, T, dim] (a residual Add: not logits) and a Tanh pooler
    [N, dim]; with `past`, a decoder instead: a float KV-cache input beside the ids and logits from a
    MatMul (+ bias) [N, T, vocab]."""
    rng = np.random.default_rng(8)
    inits = {
        "table": rng.normal(0, 1, (vocab, dim)).astype(np.float32),
        "w": rng.normal(0, 0.1, (dim, dim)).astype(np.float32),
        "head": rng.normal(0, 0.1, (dim, vocab)).astype(np.float32),
        "bias": np.zeros(vocab, np.float32),
        "first": np.array(0, np.int64),
    }
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["e"]),
        helper.make_node("MatMul", ["e", "w"], ["m"]),
        helper.make_node("Add", ["e", "m"], ["hidden"]),
    ]
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, steps])]
    if past:
        inputs.append(helper.make_tensor_value_info("past", TensorProto.FLOAT, [1, 2, steps, dim]))
        nodes += [
            helper.make_node("MatMul", ["hidden", "head"], ["lm"]),
            helper.make_node("Add", ["lm", "bias"], ["logits"]),
            helper.make_node("Identity", ["past"], ["present"]),
        ]
        outputs = [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, steps, vocab]),
            helper.make_tensor_value_info("present", TensorProto.FLOAT, [1, 2, steps, dim]),
        ]
    else:
        nodes += [
            helper.make_node("Gather", ["hidden", "first"], ["cls"], axis=1),
            helper.make_node("Gemm", ["cls", "w"], ["g"]),
            helper.make_node("Tanh", ["g"], ["pooler"]),
        ]
        outputs = [
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, steps, dim]),
            helper.make_tensor_value_info("pooler", TensorProto.FLOAT, [1, dim]),
        ]
    return _model(nodes, inputs, outputs, inits, 14)


def boxes_scores(classes: int = 3, count: int = 100) -> onnx.ModelProto:
    """x [N, count, 4 + classes] -> boxes [N, count, 4] (x1 y1 x2 y2) and scores [N, count, classes]."""
    inits = {"split": np.array([4, classes], np.int64)}
    nodes = [
        helper.make_node("Split", ["x", "split"], ["boxes", "s"], axis=2),
        helper.make_node("Sigmoid", ["s"], ["scores"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, count, 4 + classes])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, count, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, count, classes]),
        ],
        inits,
        13,
    )


def end2end(count: int = 100) -> onnx.ModelProto:
    """A head with NMS inside (YOLOv10 / Ultralytics end2end): detections [N, K, 6] x1 y1 x2 y2 score
    class, from a Concat; metadata task detect with two names."""
    inits = {"split": np.array([4, 2], np.int64)}
    nodes = [
        helper.make_node("Split", ["x", "split"], ["b", "sc"], axis=2),
        helper.make_node("Identity", ["sc"], ["s"]),
        helper.make_node("Concat", ["b", "s"], ["detections"], axis=2),
    ]
    meta = {"task": "detect", "names": "{0: 'a', 1: 'b'}", "imgsz": "[320, 320]", "end2end": "True"}
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, count, 6])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, count, 6])],
        inits,
        13,
        meta,
    )


def torch_yolov8(opset: int, dynamic: bool = True, classes: int = 3) -> onnx.ModelProto:
    """A YOLOv8-style head (two strides, ltrb distances decoded against anchor points, Concat of pixel
    boxes and sigmoid scores) exported by torch.onnx, the exporter Ultralytics uses: with dynamic axes
    its output's channel dim is symbolic, as in real exports. Needs torch (callers importorskip it)."""
    import io

    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.stem1, self.stem2 = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)
            self.box = nn.ModuleList(nn.Conv2d(c, 4, 1) for c in (8, 16))
            self.cls = nn.ModuleList(nn.Conv2d(c, classes, 1) for c in (8, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f1 = self.stem1(x)
            f2 = self.stem2(f1)
            boxes, scores, anchors, strides = [], [], [], []
            for i, (f, stride) in enumerate(((f1, 2.0), (f2, 4.0))):
                b, _, h, w = f.shape
                boxes.append(self.box[i](f).view(b, 4, -1))
                scores.append(self.cls[i](f).view(b, classes, -1))
                ys = torch.arange(h, dtype=torch.float32) + 0.5
                xs = torch.arange(w, dtype=torch.float32) + 0.5
                sy, sx = torch.meshgrid(ys, xs, indexing="ij")
                anchors.append(torch.stack((sx, sy), 0).view(2, -1))
                strides.append(torch.full((1, h * w), stride))
            lt, rb = torch.cat(boxes, 2).chunk(2, 1)
            anchor, stride = torch.cat(anchors, 1), torch.cat(strides, 1)
            x1y1, x2y2 = anchor - lt.exp(), anchor + rb.exp()
            dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * stride
            return torch.cat((dbox, torch.cat(scores, 2).sigmoid()), 1)

    buffer = io.BytesIO()
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}}
    torch.onnx.export(
        Head().eval(),
        torch.randn(1, 3, 32, 32),
        buffer,
        opset_version=opset,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes=axes if dynamic else None,
        dynamo=False,
    )
    return onnx.load_from_string(buffer.getvalue())


def run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The FP32 outputs of every sample (each [1, ...]), concatenated on axis 0."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    results = [session.run(None, feed) for feed in feeds]
    return {n: np.concatenate([r[i] for r in results], axis=0) for i, n in enumerate(names)}


def images(count: int, shape: tuple[int, ...], name: str, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{name: rng.normal(0, 1, (1, *shape)).astype(np.float32)} for _ in range(count)]
