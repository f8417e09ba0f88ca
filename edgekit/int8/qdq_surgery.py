"""Graph surgery on Q/DQ ONNX models: revert nodes to float (the fallback previews of the INT8 search
revert nodes of the built Q/DQ model, each reading the float tensors and weights it read before
quantization, instead of re-running the quantizer per node), float outputs, and the helpers that
expose a Q/DQ model's tensors for scoring."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import onnx

from edgekit import quant

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}


def seen_as(model: onnx.ModelProto) -> dict[str, str]:
    """For every float tensor of a Q/DQ model: the tensor its quantized readers get (the output of
    DQ(Q(tensor))), or the tensor itself when it is not quantized."""
    out: dict[str, str] = {i.name: i.name for i in model.graph.input}
    quantizers = {
        node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"
    }
    dequantizers = {
        node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"
    }
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        for tensor in node.output:
            out[tensor] = tensor
    for tensor in list(out):
        q = quantizers.get(tensor)
        if q is not None and q in dequantizers:
            out[tensor] = dequantizers[q]
    return out


def serialize(model: onnx.ModelProto, work: Path) -> bytes | Path:
    if model.ByteSize() < quant.EXTERNAL_THRESHOLD:
        return model.SerializeToString()
    path = Path(tempfile.mkdtemp(dir=work)) / "preview.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="preview.onnx.data")
    return path


def with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy


# ops that only move or select values: reverting one alone says nothing about a layer, and a layer
# kept in float reads float copies of them (cloned) so that its inputs are really float
DATA_MOVEMENT = {
    "Relu", "Clip", "MaxPool", "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
    "Identity", "Split", "Slice", "Gather", "Pad", "DepthToSpace", "SpaceToDepth", "Expand", "Tile",
}  # fmt: skip


def revert_nodes(qdq: onnx.ModelProto, original: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of a Q/DQ model in which the named nodes run in float on float inputs.

    Weights come back as the original float initializers. An activation input read through
    DQ(Q(x)) is read as x instead; when x itself was written by a data-movement op (Relu, MaxPool,
    Reshape...) from quantized values, a float copy of that op (and of its own producers, back to a
    float tensor) is added, so the node sees exactly what it saw before quantization. Outputs keep
    their Q/DQ where quantized nodes read them. Q/DQ nodes left without readers are dropped.
    onnxruntime's `nodes_to_exclude` does less: an excluded node still reads quantized activations
    whenever a neighbour is quantized, which recovers nothing when the error is in those activations.
    """
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    writers = {out: node for node in graph.node for out in node.output}
    initializers = {init.name for init in graph.initializer}
    before = {node.name: node for node in original.graph.node}
    float_inits = {init.name: init for init in original.graph.initializer}
    added: dict[str, str] = {}  # original initializer / tensor -> its float name in the copy
    clones: list[onnx.NodeProto] = []

    def float_weight(original_name: str) -> str | None:
        if original_name not in float_inits:
            return None
        if original_name not in added:
            # onnxruntime may name a DQ output after the float weight it replaced (biases)
            name = original_name if original_name not in writers else f"{original_name}__float"
            init = onnx.TensorProto()
            init.CopyFrom(float_inits[original_name])
            init.name = name
            graph.initializer.append(init)
            added[original_name] = name
        return added[original_name]

    def float_tensor(tensor: str, depth: int = 0) -> str:
        """The float value behind `tensor`, as it was before quantization."""
        writer = writers.get(tensor)
        if writer is None or depth > 64:
            return tensor
        if writer.op_type == "DequantizeLinear":
            source = writer.input[0]
            quantizer = writers.get(source)
            if quantizer is not None and quantizer.op_type == "QuantizeLinear":
                return float_tensor(quantizer.input[0], depth + 1)
            return tensor  # a quantized initializer: handled by the caller
        if writer.op_type in DATA_MOVEMENT and any(_dq_fed(writers, i) for i in writer.input):
            key = f"{tensor}__float"
            if key not in added:
                clone = onnx.NodeProto()
                clone.CopyFrom(writer)
                clone.name = f"{writer.name}__float"
                clone.input[:] = [
                    float_tensor(i, depth + 1) if _dq_fed(writers, i) else i for i in writer.input
                ]
                clone.output[:] = [f"{o}__float" if o else o for o in writer.output]
                clones.append(clone)
                added[key] = key
            return key
        return tensor

    for node in graph.node:
        if node.name not in names or node.op_type in QDQ_OPS:
            continue
        old = before.get(node.name)
        for index, tensor in enumerate(node.input):
            writer = writers.get(tensor)
            if writer is None or writer.op_type != "DequantizeLinear":
                continue
            source = writer.input[0]
            if source in initializers and old is not None and index < len(old.input):
                weight = float_weight(old.input[index])
                if weight is not None:
                    node.input[index] = weight
                continue
            node.input[index] = float_tensor(tensor)
    reverted_outputs = {out for node in graph.node if node.name in names for out in node.output}
    float_outputs(model, only=reverted_outputs)
    if clones:
        graph.node.extend(clones)
        from edgekit.ingest import toposort

        toposort(graph)
    _prune(graph)
    return model


def float_outputs(model: onnx.ModelProto, only: set[str] | None = None) -> int:
    """Let graph outputs come straight from the op that computes them: drop the Q/DQ pair between a
    float tensor and a graph output (for tensors in `only`, when given). Returns how many."""
    graph = model.graph
    writers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    done = 0
    for output in graph.output:
        dq = writers.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = writers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or readers.get(q.output[0], 0) != 1:
            continue
        source = q.input[0]
        producer = writers.get(source)
        if producer is None or producer.op_type in QDQ_OPS or (only is not None and source not in only):
            continue
        # the producer writes the graph output's name; readers of either name read that float tensor
        for node in graph.node:
            node.input[:] = [output.name if n == source else n for n in node.input]
        producer.output[:] = [output.name if n == source else n for n in producer.output]
        graph.node.remove(q)
        graph.node.remove(dq)
        writers = {out: node for node in graph.node for out in node.output}
        done += 1
    return done


def _dq_fed(writers: Mapping[str, onnx.NodeProto], tensor: str) -> bool:
    """Whether `tensor` carries quantized values: a DQ output, or a data-movement op's output of one."""
    writer = writers.get(tensor)
    for _ in range(64):
        if writer is None:
            return False
        if writer.op_type == "DequantizeLinear":
            return True
        if writer.op_type not in DATA_MOVEMENT or not writer.input:
            return False
        writer = writers.get(writer.input[0])
    return False


def _prune(graph: onnx.GraphProto) -> None:
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type in QDQ_OPS and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    keep = [init for init in graph.initializer if init.name in read]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
