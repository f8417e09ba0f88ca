"""onnxruntime's symbolic shape inference without its side effect: when the inference stops short,
`SymbolicShapeInference.infer_shapes` saves the partial model as `sym_shape_infer_temp.onnx` (and a
`<uuid>.data` for its weights) into the process's working directory - the user's. `infer` runs the
same steps and only raises. No chdir (process-wide, unsafe beside other threads)."""

from __future__ import annotations

from typing import Any


class IncompleteShapes(Exception):
    """The symbolic inference stopped before every shape was known (as onnxruntime's own raises)."""


def infer(
    model: Any, int_max: int = 2**31 - 1, auto_merge: bool = False, guess_output_rank: bool = False
) -> Any:
    """The model with symbolic shapes (onnxruntime's `infer_shapes`, step for step, minus the save);
    None for opset < 7 (as onnxruntime); IncompleteShapes when the inference stops short."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, get_opset

    opset = get_opset(model)
    if not opset or opset < 7:
        return None
    inference = SymbolicShapeInference(int_max, auto_merge, guess_output_rank, 0)
    complete = False
    inference._preprocess(model)
    while inference.run_:
        complete = inference._infer_impl()
    inference._update_output_from_vi()
    if not complete:
        raise IncompleteShapes("Incomplete symbolic shape inference")
    return inference.out_mp_
