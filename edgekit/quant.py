"""Calibration ranges and Q/DQ quantization with ONNX Runtime, shared by every backend that needs them
(the ONNX Runtime target's INT8, the TensorRT target's calibration cache and explicit-quantization ONNX).

ONNX Runtime's own helpers crash on real models in a few known ways (symbolic shape inference on
odd graphs, per-channel at opset < 13, exotic ops). Every step here has a fallback, and a result is
only handed back after `onnx.checker` and an onnxruntime session accept it.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from edgekit.calib import CalibrationSet
from edgekit.errors import BadInput, InternalError

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
QTYPES = {"int8": "QInt8", "uint8": "QUInt8", "int16": "QInt16", "uint16": "QUInt16"}
# ops that dynamic quantization handles with int8 weights on the CPU EP (ConvInteger only takes u8)
DYNAMIC_OPS = ["MatMul", "Gemm", "Attention", "LSTM", "GRU", "EmbedLayerNormalization"]


def ort_reader(calib: CalibrationSet, batch_size: int = 1, limit: int | None = None):
    """An onnxruntime CalibrationDataReader over a CalibrationSet (at most `limit` feeds); rewinds so
    it can be reused."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._iter: Iterator[dict] | None = None
            self._count = 0

        def get_next(self):  # type: ignore[override]
            if self._iter is None:
                self._iter = calib.feeds(batch_size)
                self._count = 0
            if limit is not None and self._count >= limit:
                return None
            self._count += 1
            return next(self._iter, None)

        def rewind(self) -> None:
            self._iter = None

        def __len__(self) -> int:
            return len(calib)

    return _Reader()


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if name not in table:
        raise BadInput(f"unknown calibration method '{name}'; choose one of {', '.join(METHODS)}")
    return table[name]


def _calib_options(method: str, symmetric: bool) -> dict:
    options: dict = {"symmetric": symmetric}
    if method == "percentile":
        options["percentile"] = 99.999
    return options


def preprocess(model_path: Path, out_path: Path) -> str:
    """onnxruntime's quant_pre_process with fallbacks; returns a note of what worked."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # the symbolic shape inference runs here (edgekit.symbolic_shapes): onnxruntime's own saves its
    # partial model into the working directory when it stops short
    attempts = [
        ("full pre-processing", {"symbolic": True}),
        ("without symbolic shape inference", {"skip_symbolic_shape": True}),
        (
            "without optimization or symbolic shape inference",
            {"skip_symbolic_shape": True, "skip_optimization": True},
        ),
    ]
    # onnxruntime logs each failed attempt at ERROR with a traceback; edgekit tries the next one and
    # says what worked, so its helper's own log is kept to the debug log
    ort_log = logging.getLogger("onnxruntime.quantization")
    for label, kwargs in attempts:
        level = ort_log.level
        ort_log.setLevel(logging.CRITICAL)
        try:
            with tempfile.TemporaryDirectory(prefix="edgekit-prep-") as tmp:
                model = str(model_path)
                if kwargs.pop("symbolic", False):
                    from edgekit import symbolic_shapes

                    # a path, not the ModelProto: handed a proto, the helper re-saves it with external
                    # data, and its graph optimization then cannot read constant shapes (Reshape fails)
                    model = str(Path(tmp) / "symbolic.onnx")
                    onnx.save(symbolic_shapes.infer(onnx.load(str(model_path))), model)
                    kwargs["skip_symbolic_shape"] = True
                quant_pre_process(model, str(out_path), **kwargs)
            onnx.checker.check_model(str(out_path))
            return f"quant pre-processing: {label}"
        except Exception as exc:  # noqa: BLE001 - known crashes in ORT's helpers; try the next
            log.debug("quant_pre_process %s failed: %s", label, exc)
        finally:
            ort_log.setLevel(level)
    shutil.copyfile(model_path, out_path)
    return "quant pre-processing skipped (onnxruntime's helper failed on this model)"


def compute_ranges(
    model_path: str | Path, calib: CalibrationSet, method: str = "entropy", symmetric: bool = False
) -> dict[str, tuple[float, float]]:
    """Activation ranges (min, max) of every calibrated tensor, computed with onnxruntime on the CPU."""
    from onnxruntime.quantization import create_calibrator

    with tempfile.TemporaryDirectory(prefix="edgekit-calib-") as tmp:
        # onnxruntime < 1.21 has no `providers` argument (and uses the CPU anyway)
        takes_providers = "providers" in inspect.signature(create_calibrator).parameters
        calibrator = create_calibrator(
            Path(model_path),
            None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=_method(method),
            extra_options=_calib_options(method, symmetric),
            **({"providers": ["CPUExecutionProvider"]} if takes_providers else {}),
        )
        with quiet():  # onnxruntime prints progress with print()
            calibrator.collect_data(ort_reader(calib))
            data = calibrator.compute_data()
    return _ranges(data)


def _ranges(data) -> dict[str, tuple[float, float]]:
    """TensorsData -> {name: (min, max)}; values may come as 0-d or 1-element arrays."""
    import numpy as np

    out = {}
    for name, td in data.items():
        low, high = td.range_value
        out[name] = (float(np.asarray(low).reshape(-1)[0]), float(np.asarray(high).reshape(-1)[0]))
    return out


@dataclass
class QuantResult:
    path: Path
    notes: list[str] = field(default_factory=list)
    per_channel: bool = True
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)


def validate_model(path: Path) -> None:
    """Raise unless onnx.checker and an onnxruntime CPU session both accept the model."""
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def quantize_qdq(
    model_path: str | Path,
    out_path: str | Path,
    calib: CalibrationSet,
    *,
    method: str = "entropy",
    activation_type: str = "uint8",
    weight_type: str = "int8",
    per_channel: bool = True,
    symmetric_activations: bool = False,
    nodes_to_exclude: Sequence[str] = (),
    want_ranges: bool = False,
) -> QuantResult:
    """Static Q/DQ quantization with fallbacks. With `want_ranges`, the activation ranges that the
    quantizer used are returned too (computed once and handed to it where onnxruntime allows)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model_path, out_path = Path(model_path), Path(out_path)
    for name in (activation_type, weight_type):
        if name not in QTYPES:
            raise BadInput(f"unknown quantization type '{name}'; choose one of {', '.join(QTYPES)}")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-quant-") as tmp_dir:
        tmp = Path(tmp_dir)
        pre = tmp / "pre.onnx"
        notes.append(preprocess(model_path, pre))
        cache = tmp / "ranges.json"
        takes_cache = "calibration_cache_path" in inspect.signature(quantize_static).parameters
        ranges: dict[str, tuple[float, float]] = {}
        if want_ranges and not takes_cache:
            ranges = compute_ranges(pre, calib, method, symmetric_activations)
        attempts = (
            [(pre, per_channel), (pre, False), (model_path, False)]
            if per_channel
            else [(pre, False), (model_path, False)]
        )
        errors: list[str] = []
        for source, channelwise in attempts:
            candidate = tmp / "quant.onnx"
            extra = {
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": True,
                "CalibTensorRangeSymmetric": symmetric_activations,
                **({"CalibPercentile": 99.999} if method == "percentile" else {}),
            }
            kwargs = {"calibration_cache_path": str(cache)} if takes_cache else {}
            try:
                with quiet():  # keep --json stdout clean
                    quantize_static(
                        str(source),
                        str(candidate),
                        ort_reader(calib),
                        quant_format=QuantFormat.QDQ,
                        activation_type=getattr(QuantType, QTYPES[activation_type]),
                        weight_type=getattr(QuantType, QTYPES[weight_type]),
                        per_channel=channelwise,
                        calibrate_method=_method(method),
                        nodes_to_exclude=list(nodes_to_exclude),
                        extra_options=extra,
                        **kwargs,
                    )
                validate_model(candidate)
            except Exception as exc:  # noqa: BLE001 - fall back to a safer configuration
                errors.append(f"{'per-channel' if channelwise else 'per-tensor'}: {_short(exc)}")
                log.debug("quantize_static failed (%s)", exc, exc_info=True)
                continue
            if channelwise != per_channel:
                notes.append("per-channel quantization failed; fell back to per-tensor weights")
            if source == model_path:
                notes.append("quantized the model without onnxruntime's pre-processing")
            if want_ranges and takes_cache and cache.exists():
                from onnxruntime.quantization.calibrate import load_tensors_data

                data = load_tensors_data(cache)
                ranges = _ranges(data)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(candidate), out_path)
            return QuantResult(out_path, notes, channelwise, ranges)
    raise InternalError("INT8 quantization failed in every configuration: " + "; ".join(errors))


# ONNX Runtime's QDQ quantizer's defaults when op_types_to_quantize is empty (its registries)
def default_op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


# ops whose INT8 kernels carry the speed-up: "compute" scope quantizes only these
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Attention")


def quantize_with_ranges(
    model_path: str | Path,
    out_path: str | Path,
    ranges: Mapping[str, tuple[float, float]],
    *,
    activation_type: str = "uint8",
    weight_type: str = "int8",
    per_channel: bool = True,
    reduce_range: bool = False,
    symmetric_activations: bool = False,
    op_types: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] = (),
    keep_activations: bool = True,
) -> Path:
    """Q/DQ quantization with activation ranges computed elsewhere (one calibration pass shared by
    many recipes): onnxruntime's own QDQ quantizer, minus its calibration step. `model_path` should
    be pre-processed already (`preprocess`); its directory must be writable (onnxruntime writes a
    shape-inferred copy next to it). `keep_activations` keeps Relu/Clip nodes that onnxruntime would
    fold into the Q/DQ ranges (same accuracy and speed once the session optimizes the model), so every
    tensor keeps the name and meaning it had before quantization."""
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    for name in (activation_type, weight_type):
        if name not in QTYPES:
            raise BadInput(f"unknown quantization type '{name}'; choose one of {', '.join(QTYPES)}")
    model_path, out_path = Path(model_path), Path(out_path)
    weight_q = getattr(QuantType, QTYPES[weight_type])
    activation_q = getattr(QuantType, QTYPES[activation_type])
    with quiet():
        model = load_model_with_shape_infer(model_path)
        try:
            from onnxruntime.quantization.quant_utils import update_opset_version

            model = update_opset_version(model, weight_q)
        except ImportError:  # older releases did this inside quantize_static only
            pass
        tensors = TensorsData(
            CalibrationMethod.MinMax,
            {
                name: TensorData(
                    lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32)
                )
                for name, (low, high) in ranges.items()
            },
        )
        quantizer = QDQQuantizer(
            model,
            per_channel,
            reduce_range,
            weight_q,
            activation_q,
            tensors,
            [],
            list(nodes_to_exclude),
            list(op_types) if op_types else default_op_types(),
            {
                "ActivationSymmetric": symmetric_activations,
                "WeightSymmetric": weight_type.startswith("int"),
                "QDQKeepRemovableActivations": keep_activations,
            },
        )
        quantizer.quantize_model()
        large = quantizer.model.model.ByteSize() > EXTERNAL_THRESHOLD
        out_path.parent.mkdir(parents=True, exist_ok=True)
        quantizer.model.save_model_to_file(str(out_path), large)
    return out_path


EXTERNAL_THRESHOLD = 1_500_000_000  # bytes of protobuf; 2 GiB is the hard limit


def quantize_dynamic_int8(
    model_path: str | Path, out_path: str | Path, per_channel: bool = True
) -> QuantResult:
    """Dynamic (weights int8, activations quantized at run time) for MatMul/Gemm-like ops."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_path, out_path = Path(model_path), Path(out_path)
    errors: list[str] = []
    for channelwise in [per_channel, False] if per_channel else [False]:
        with tempfile.TemporaryDirectory(prefix="edgekit-dyn-") as tmp:
            candidate = Path(tmp) / "dyn.onnx"
            try:
                quantize_dynamic(
                    str(model_path),
                    str(candidate),
                    weight_type=QuantType.QInt8,
                    per_channel=channelwise,
                    op_types_to_quantize=DYNAMIC_OPS,
                )
                validate_model(candidate)
            except Exception as exc:  # noqa: BLE001
                errors.append(_short(exc))
                continue
            shutil.move(str(candidate), out_path)
            notes = ["dynamic int8: MatMul/Gemm weights int8, convolutions kept in float"]
            return QuantResult(out_path, notes, channelwise)
    raise InternalError("dynamic INT8 quantization failed: " + "; ".join(errors))


class _OnnxRuntimeRecords(logging.Filter):
    """Holds back log records that onnxruntime's Python tools emit (by logger name, or by source file
    for their root-logger calls such as 'Please consider pre-processing'); other records pass."""

    def __init__(self, package_dir: str) -> None:
        super().__init__()
        self.package_dir = package_dir
        self.held: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        from_ort = record.name.startswith("onnxruntime") or (
            bool(self.package_dir) and record.pathname.startswith(self.package_dir)
        )
        if from_ort:
            self.held.append(f"{record.levelname}: {record.getMessage()}")
        return not from_ort


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Capture what onnxruntime's quantization tools print or log (progress, and advice such as
    'consider pre-processing', which edgekit already did or deliberately skipped) and hand it to
    edgekit's debug log. No logger's level changes: a filter on the root logger (onnxruntime calls
    `logging.warning` directly) and on onnxruntime's own loggers holds back only their records."""
    import os

    try:
        import onnxruntime

        package_dir = os.path.dirname(os.path.abspath(onnxruntime.__file__))
        import onnxruntime.quantization  # noqa: F401 - creates its module loggers before we filter them
    except ImportError:  # pragma: no cover - core dependency
        package_dir = ""
    capture = _OnnxRuntimeRecords(package_dir)
    loggers = [logging.getLogger()] + [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name == "onnxruntime" or name.startswith("onnxruntime.")
    ]
    buffer = io.StringIO()
    for logger in loggers:
        logger.addFilter(capture)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(capture)
    said = buffer.getvalue().strip().splitlines() + capture.held
    if said:
        log.debug("onnxruntime quantization said:\n%s", "\n".join(said))


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
