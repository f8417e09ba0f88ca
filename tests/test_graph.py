"""Graph utilities (edgekit.graph): real inputs, topological order, weights in Constant nodes, names."""

from __future__ import annotations

import onnx
from models import Builder
from onnx import TensorProto, helper
from onnx_cases import old_exporter

from edgekit import graph


def test_io_info_leaves_out_initializers_listed_as_inputs() -> None:
    b = Builder()
    y = b.conv("x", 3, 4)
    model = old_exporter(
        b.model(
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
            [helper.make_tensor_value_info(y, TensorProto.FLOAT, ["n", 4, 8, 8])],
            opset=9,
        )
    )
    inputs, outputs = graph.io_info(model)
    assert [(i.name, i.shape) for i in inputs] == [("x", ("n", 3, 8, 8))]
    assert graph.dynamic_dims(inputs) == {"x": ["n", 3, 8, 8]}
    assert [o.name for o in outputs] == [y]
    assert graph.drop_initializer_inputs(model) == 2 and len(model.graph.input) == 1


def test_toposort_orders_nodes_and_refuses_cycles() -> None:
    nodes = [
        helper.make_node("Relu", ["a"], ["y"]),
        helper.make_node("Neg", ["x"], ["a"]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    assert graph.toposort(g) and [n.op_type for n in g.node] == ["Neg", "Relu"]
    g.node[0].input[0] = "y"  # Neg(y) -> a -> Relu(a) -> y: a cycle
    before = [n.op_type for n in g.node]
    assert not graph.toposort(g) and [n.op_type for n in g.node] == before


def test_constants_move_into_initializers_and_names_map_back() -> None:
    b = Builder(constants=True)
    w = b.weight((4, 3, 3, 3), name="conv@0/w:0")
    b.op("Conv", ["in:0", w], name="out/y:0", pads=[1, 1, 1, 1])
    model = b.model(
        [helper.make_tensor_value_info("in:0", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out/y:0", TensorProto.FLOAT, [1, 4, 8, 8])],
    )
    assert graph.constants_to_initializers(model) == 1
    assert [i.name for i in model.graph.initializer] == ["conv@0/w:0"]
    mapping = graph.sanitize_names(model, "[A-Za-z0-9_]")
    assert set(mapping.values()) == {"in:0", "conv@0/w:0", "out/y:0"}
    names = graph.tensor_names(model.graph)
    assert all(n.replace("_", "").isalnum() for n in names)
    onnx.checker.check_model(model)
