"""What to ask onnx2tf for: the file to keep, the calibration data in its layout, and its arguments.

Files onnx2tf writes (output folder, stem = ONNX file stem):
  `*_float32.tflite`, `*_float16.tflite`                       always (fp16: float16 weights, float I/O)
  `*_dynamic_range_quant.tflite`                              with -odrqt (or -oiqt): int8 weights only
  `*_integer_quant.tflite`                                     -oiqt: int8 kernels, float32 I/O
  `*_full_integer_quant.tflite`                                -oiqt: int8 kernels, I/O per -iqd/-oqd
  `*_integer_quant_with_int16_act.tflite`, `*_full_integer_quant_with_int16_act.tflite`  -oiqt (unused)
Only the chosen file is copied into the artifact directory, as `model.tflite`.

Offline inputs. onnx2tf (1.28) calls `download_test_image_data()` whenever every model input is a 4-D
tensor with 3 channels after its NCHW->NHWC change - *even when calibration data is given* (it uses the
images for a dummy ONNX inference during shape estimation), and again for INT8 when no
`custom_input_op_name_np_data_path` (-cind) is given. That function reads
`calibration_image_sample_data_20x128x128x3_float32.npy` from the current working directory before it
tries GitHub. So (1) the working directory holds that file, made from the user's calibration set;
(2) the user's set is also passed as -cind, in the TF layout (NHWC), with mean 0 and std 1 because it
is already preprocessed (onnx2tf's defaults are ImageNet mean/std: it would normalise twice).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import ExportJob
from edgekit.backends.tflite.options import TFLiteOptions
from edgekit.errors import BadInput

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
# variants made by ai-edge-quantizer from onnx2tf's float32 file (edgekit.backends.tflite.selective)
AEQ_INT8 = "aeq_int8"
AEQ_WI8 = "aeq_weight_only_int8"
AEQ_INT4 = "aeq_weight_only_int4"
AEQ_BLOCKS = (32, 64, 128, 256)
# source layout -> artifact layout for the ranks onnx2tf turns channel-last
LAYOUTS = {3: ("NCW", "NWC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}


class InputPlan:
    """One prepared ONNX input: its shape, and the permutation onnx2tf will apply (channel-last).

    A channels-last input (`channels_last`: [N, H, W, C] images, see `channels_last_inputs`) is kept
    exactly as it is (onnx2tf's keep_shape_absolutely_input_names): permuting it again would give
    [N, H, C, W], a layout no app feeds."""

    def __init__(self, name: str, shape: list[int], dtype: np.dtype, channels_last: bool = False) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.channels_last = channels_last
        rank = len(shape)
        if channels_last:
            self.perm = list(range(rank))
            self.layouts = ("NHWC", "NHWC")
        else:
            self.perm = [0, *range(2, rank), 1] if rank in LAYOUTS else list(range(rank))
            self.layouts = LAYOUTS.get(rank, ("", ""))

    @classmethod
    def of(cls, info: Any, channels_last: Sequence[str] = ()) -> InputPlan:
        return cls(info.name, [int(d) for d in info.shape], np.dtype(info.dtype), info.name in channels_last)

    @property
    def tf_shape(self) -> list[int]:
        return [self.shape[i] for i in self.perm]


def channels_last_inputs(model_path: Path, inputs: Sequence[Any]) -> list[str]:
    """Inputs fed channels-last: rank 4 and either read by a Transpose to NCHW (perm 0,3,1,2) - the
    graph says so - or shaped [N, H, W, C] with C in 1..4 and H, W > 4."""
    import onnx

    from edgekit.backends.base import looks_channels_last

    model = onnx.load(str(model_path), load_external_data=False)
    transposed = set()
    for node in model.graph.node:
        if node.op_type == "Transpose" and node.input:
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
            if perm == [0, 3, 1, 2]:
                transposed.add(node.input[0])
    names = []
    for info in inputs:
        shape = [int(d) if isinstance(d, int) else d for d in info.shape]
        if len(shape) == 4 and (info.name in transposed or looks_channels_last(shape)):
            names.append(info.name)
    return names


@dataclass(frozen=True)
class Plan:
    """The onnx2tf output file to keep and what it is."""

    variant: str  # onnx2tf's file suffix: model_<variant>.tflite
    label: str  # for messages and the manifest
    io: str  # I/O dtype of that file
    int8: str | None  # None | "dynamic" | "static"


def plan(job: ExportJob) -> Plan:
    precision = job.precision
    if precision not in ("fp32", "fp16", "int8", "int4"):
        raise BadInput(f"the tflite backend exports fp32, fp16, int8 or int4, not '{precision}'")
    if precision == "fp32":
        return Plan("float32", "float32", "float32", None)
    if precision == "fp16":
        return Plan("float16", "float16 weights", "float32", None)
    options = job.options
    if precision == "int4":
        if getattr(options, "int4_symmetric", True):
            label = (
                f"int4 weights, block-wise {block_size(job)}, symmetric, on FULLY_CONNECTED/EMBEDDING_LOOKUP "
                "(LiteRT's dynamic kernels quantize activations on the fly), other weights int8; ai-edge-quantizer"
            )
        else:
            label = (
                "int4 weights, per channel, asymmetric (ai-edge-quantizer 0.10 has block-wise INT4 only "
                "symmetric), dequantized to float compute; other weights int8"
            )
        return Plan(AEQ_INT4, label, "float32", "weights")
    if getattr(options, "weights_only", False):
        return Plan(AEQ_WI8, "weight-only int8 (ai-edge-quantizer), float activations", "float32", "weights")
    mode = str(job.target.quantization.get("mode", "static"))
    if options.dynamic_int8 or mode == "dynamic":
        return Plan(
            "dynamic_range_quant",
            "dynamic-range int8 (int8 weights, float activations)",
            "float32",
            "dynamic",
        )
    if job.calib is None:
        raise BadInput(
            "full-integer TFLite export needs a calibration set: pass --calib calib.npz "
            "(or use --fp16 / dynamic-range int8)"
        )
    io = options.io_dtype
    if io == "auto":
        io = str(job.target.io.get("dtype", "int8"))
    if io not in ("int8", "uint8", "float", "float32"):
        raise BadInput(f"TFLite int8 I/O type must be float, int8 or uint8, not '{io}'")
    bad = [i for i in job.prepared.inputs if np.dtype(i.dtype) != np.float32]
    if bad:
        # onnx2tf's calibration takes float inputs only; ai-edge-quantizer keeps integer inputs as they
        # are and quantizes the activations from the first float tensor on
        names = ", ".join(f"'{i.name}' ({np.dtype(i.dtype).name})" for i in bad)
        io_label = "float" if io in ("float", "float32") else io
        return Plan(
            AEQ_INT8,
            f"int8 activations and weights (ai-edge-quantizer; integer inputs {names} kept, "
            f"{io_label} float-side I/O)",
            "float32" if io in ("float", "float32") else io,
            "aeq",
        )
    if io in ("float", "float32"):
        return Plan("integer_quant", "full int8 (float I/O)", "float32", "static")
    return Plan("full_integer_quant", f"full int8 ({io} I/O)", io, "static")


def block_size(job: ExportJob) -> int:
    """The INT4 group size as ai-edge-quantizer's block-wise granularities allow (32, 64, 128, 256)."""
    size = int(getattr(job.options, "int4_group_size", 128) or 128)
    if size not in AEQ_BLOCKS:
        raise BadInput(
            f"TFLite INT4 (ai-edge-quantizer) takes group sizes {', '.join(map(str, AEQ_BLOCKS))}, not {size}"
        )
    return size


def thread_count(value: Any) -> int:
    """A thread count from a setting; unset or invalid means every core."""
    try:
        count = int(value) if value else 0
    except (TypeError, ValueError):
        count = 0
    return count if count > 0 else (os.cpu_count() or 1)


def tf_arrays(job: ExportJob, inputs: Sequence[InputPlan]) -> dict[str, np.ndarray] | None:
    """The calibration set in onnx2tf's layout: (samples, *TF shape[1:]) float32 per input."""
    if job.calib is None:
        return None
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in job.calib.arrays:
            raise BadInput(f"the calibration set has no array for input '{spec.name}'")
        arr = np.asarray(job.calib.arrays[spec.name])
        if arr.ndim == len(spec.shape) + 1:  # (N, *model shape): fold a fixed batch into samples
            arr = arr.reshape(-1, *spec.shape[1:])
        dtype = spec.dtype if np.dtype(spec.dtype).kind in "iub" else np.float32
        out[spec.name] = np.ascontiguousarray(arr.astype(dtype).transpose(spec.perm))
    return out


def write_inputs_data(work: Path, inputs: Sequence[InputPlan], job: ExportJob) -> str:
    """Write the -cind npy files and the sample-image file onnx2tf would otherwise download."""
    arrays = tf_arrays(job, inputs)
    image = next((i for i in inputs if len(i.shape) == 4 and i.tf_shape[-1] == 3), None)
    if arrays is not None:
        for index, spec in enumerate(inputs):
            np.save(work / f"calib_{index}.npy", arrays[spec.name])
    if image is not None and arrays is not None:
        sample = arrays[image.name][:20]
        note = f"{SAMPLE_FILE} written from {len(sample)} calibration samples of '{image.name}'"
    else:
        # never read unless every input is a 3-channel image; then it is seeded noise in [0, 1)
        shape = image.tf_shape[1:] if image is not None else [8, 8, 3]
        sample = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
        note = f"{SAMPLE_FILE} written from seeded noise (no calibration set)"
    np.save(work / SAMPLE_FILE, sample.astype(np.float32))
    return note


def convert_args(
    work: Path, model: Path, inputs: Sequence[InputPlan], plan: Plan, job: ExportJob
) -> dict[str, Any]:
    """The keyword arguments of `onnx2tf.convert` for this job (`--option onnx2tf=...` last)."""
    args: dict[str, Any] = {
        "input_onnx_file_path": str(model),
        "output_folder_path": str(work / "out"),
        "not_use_onnxsim": True,  # ingest already simplified (onnxslim); onnxsim is not a dependency
        # What onnx2tf's own command line passes (its -osd defaults to True; convert()'s to False).
        # Without it a float-only run first tries tf.saved_model.save() on the Keras model, which
        # JSON-serialises every layer's config - the weights onnx2tf keeps as constants included - and
        # then fails and falls back to the signature export anyway: several times slower on large
        # models (benchmarks/bench_tflite_large.py). -oiqt takes the signature path in any case.
        "output_signaturedefs": True,
        "verbosity": "info",
    }
    kept = [spec.name for spec in inputs if spec.channels_last]
    if kept:
        # channels-last inputs stay [N, H, W, C]: onnx2tf would otherwise permute them once more
        args["keep_shape_absolutely_input_names"] = kept
    if job.calib is not None and all(np.dtype(spec.dtype).kind == "f" for spec in inputs):
        # (integer inputs, e.g. token ids: onnx2tf's -cind takes float data only; ai-edge-quantizer
        # calibrates those models, see `selective`)
        # mean 0 / std 1: the set is already preprocessed as the ONNX model takes it
        args["custom_input_op_name_np_data_path"] = [
            [spec.name, str(work / f"calib_{index}.npy"), 0.0, 1.0] for index, spec in enumerate(inputs)
        ]
    # plan.int8 "aeq" / "weights": onnx2tf's float32 file only, ai-edge-quantizer quantizes it
    if plan.int8 == "dynamic":
        args["output_dynamic_range_quantized_tflite"] = True
    elif plan.int8 == "static":
        per_channel = bool(job.target.quantization.get("per_channel", True))
        args["output_integer_quantized_tflite"] = True
        args["quant_type"] = "per-channel" if per_channel else "per-tensor"
        io = plan.io if plan.io in ("int8", "uint8") else "int8"
        args["input_quant_dtype"] = io
        args["output_quant_dtype"] = io
    from edgekit.backends import get_backend

    options = get_backend("tflite").options_of(job.options)
    assert isinstance(options, TFLiteOptions)
    args.update(options.onnx2tf)
    return args
