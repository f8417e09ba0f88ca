"""TFLite / LiteRT backend: ONNX -> .tflite with onnx2tf, offline, checked, with a LiteRT host runner.

Conversion runs onnx2tf in a *subprocess* inside a private working directory, so that TensorFlow's
import cost, its global state and its very long console output stay out of edgekit's process. The
whole output goes to the artifact's `convert.log`; a failure is reported as one line (the last
meaningful error line of the log).

Offline by construction. onnx2tf (1.28) calls `download_test_image_data()` whenever every model input
is a 4-D tensor with 3 channels after its NCHW->NHWC change - *even when calibration data is given*
(it uses the images for a dummy ONNX inference during shape estimation), and again for INT8 when no
`custom_input_op_name_np_data_path` (-cind) is given. That function reads
`calibration_image_sample_data_20x128x128x3_float32.npy` from the current working directory before it
tries GitHub. So: (1) the working directory holds that file, made from the user's calibration set;
(2) the user's set is also passed as -cind, in the TF layout (NHWC), with mean 0 and std 1 because it
is already preprocessed (onnx2tf's defaults are ImageNet mean/std: it would normalise twice);
(3) the subprocess runs with a socket guard (a `sitecustomize` that refuses and records every
internet connection / name lookup), proxies pointing at a closed local port, and - when we are root
and `unshare` works - in its own empty network namespace. The guard's record goes into the details.

Files onnx2tf writes (output folder, stem = ONNX file stem):
  `*_float32.tflite`, `*_float16.tflite`                       always (fp16: float16 weights, float I/O)
  `*_dynamic_range_quant.tflite`                              with -odrqt (or -oiqt): int8 weights only
  `*_integer_quant.tflite`                                     -oiqt: int8 kernels, float32 I/O
  `*_full_integer_quant.tflite`                                -oiqt: int8 kernels, I/O per -iqd/-oqd
  `*_integer_quant_with_int16_act.tflite`, `*_full_integer_quant_with_int16_act.tflite`  -oiqt (unused)
Only the chosen file is copied into the artifact directory, as `model.tflite`.

Conversion cache. One onnx2tf run is 5-10 s and one -oiqt run writes every variant, so the variants
(not the int16-activation ones: never used, and onnx2tf 1.28 has no flag to skip making them) and the
log of a successful run are kept in `<cache root>/onnx2tf/<base>-<quant>` (`edgekit.ingest.cache_root`),
written atomically (temp dir + rename). <base> hashes the prepared model's sha256, the calibration set's
sha256 (or none), every onnx2tf argument but the quantization ones, and the toolchain versions; <quant>
hashes the quantization arguments. A request is served by any entry of its <base> holding its file whose
quantization arguments produce that file identically: float32/float16 come from any entry (onnx2tf makes
them before, and independently of, quantization; the names it changes under -oiqt are only those
starting with '/', which the prepared model never has), dynamic-range int8 needs the same quant_type, the
integer files the same quant_type and I/O types. So fp32, fp16 and int8 of one model with one calibration
set run onnx2tf at most twice (a float request runs without -oiqt), and a second target with the same
quantization settings not at all. Every post-check runs on a cache hit as on a fresh conversion; the
artifact's convert.log is the cached run's log, and the details say whether the cache served it.

Note that onnx2tf's INT8 converter allows SELECT_TF_OPS, so Flex ops can silently appear: the post-check
reads the flatbuffer (ai-edge-litert's schema) and raises for Flex ops in a full-int8 export.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import Backend, ExportJob, ExportResult, HostRunner, TensorSpec
from edgekit.errors import BadInput, InternalError

log = logging.getLogger(__name__)

ENTRY = "model.tflite"
LOG_NAME = "convert.log"
SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
GUARD_LOG_ENV = "EDGEKIT_NET_GUARD_LOG"
CONVERT_TIMEOUT_S = 1800
# source layout -> artifact layout for the ranks onnx2tf turns channel-last
LAYOUTS = {3: ("NCW", "NWC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}
DISTRIBUTIONS = ("onnx2tf", "tensorflow", "tf-keras", "ai-edge-litert", "onnx-graphsurgeon")
CACHE_FORMAT = 1
CACHE_META = "meta.json"
# onnx2tf arguments that change only the quantized files, and onnx2tf's defaults for them
QUANT_DEFAULTS = {"quant_type": "per-channel", "input_quant_dtype": "int8", "output_quant_dtype": "int8"}
QUANT_FLAGS = ("output_dynamic_range_quantized_tflite", "output_integer_quantized_tflite", *QUANT_DEFAULTS)
FLOAT_VARIANTS = ("float32", "float16")


class TFLiteConversionFailed(BadInput):
    """onnx2tf could not convert this model (exit 2: the model is not convertible as it is; the
    remedy is on the model's side - another opset, another op, a fixed shape, another target -
    not a bug in edgekit. Crashes, kills and timeouts are InternalError (exit 4) instead)."""


# ---- the network guard loaded into the converter subprocess ------------------------------------
GUARD_SOURCE = '''\
"""edgekit: refuse and record internet access in this process (TFLite conversion must be offline)."""
import os as _os
import socket as _socket

_LOG = _os.environ.get("EDGEKIT_NET_GUARD_LOG", "")
_NET = (_socket.AF_INET, _socket.AF_INET6)


def _record(what):
    if _LOG:
        with open(_LOG, "a") as handle:
            handle.write(str(what) + "\\n")


def _refuse(what):
    _record(what)
    return OSError(101, "network access is disabled during edgekit's TFLite conversion: " + str(what))


_connect = _socket.socket.connect
_connect_ex = _socket.socket.connect_ex


def _guarded_connect(self, address):
    if self.family in _NET:
        raise _refuse(("connect", address))
    return _connect(self, address)


def _guarded_connect_ex(self, address):
    if self.family in _NET:
        raise _refuse(("connect", address))
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    _record(("getaddrinfo", host))
    raise _socket.gaierror(-3, "name lookup is disabled during edgekit's TFLite conversion: " + str(host))


_socket.socket.connect = _guarded_connect
_socket.socket.connect_ex = _guarded_connect_ex
_socket.getaddrinfo = _guarded_getaddrinfo
'''

# ---- the converter driver (runs in the subprocess; reads args.json) -----------------------------
DRIVER_SOURCE = """\
import json, sys, time
args = json.load(open(sys.argv[1]))
start = time.time()
import onnx2tf
print("EDGEKIT: onnx2tf", onnx2tf.__version__, "imported in %.1fs" % (time.time() - start), flush=True)
onnx2tf.convert(**args)
print("EDGEKIT: conversion finished in %.1fs" % (time.time() - start), flush=True)
"""


class TFLiteBackend(Backend):
    name = "tflite"
    extra = "tflite"
    modules = ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert", "onnx_graphsurgeon", "sng4onnx")
    needs_static_shapes = True
    name_pattern = "[A-Za-z0-9_]"  # TensorFlow rejects '@', ':', '/', ... in op names
    min_opset = 13

    def versions(self) -> dict[str, str]:
        """From package metadata: never imports TensorFlow into this process."""
        out: dict[str, str] = {}
        for dist in DISTRIBUTIONS:
            try:
                out[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out

    # ---- export ---------------------------------------------------------------------------------
    def export(self, job: ExportJob) -> ExportResult:
        self.require()
        plan = _plan(job)
        prepared = job.prepared
        inputs = [_InputPlan.of(info) for info in prepared.inputs]
        job.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = job.out_dir / LOG_NAME
        warnings: list[str] = list(prepared.warnings)
        entry_path = job.out_dir / ENTRY
        work = Path(tempfile.mkdtemp(prefix="edgekit-tflite-"))
        try:
            model_path = work / "model.onnx"
            shutil.copyfile(prepared.path, model_path)
            data_note = _write_inputs_data(work, inputs, job)
            args = _convert_args(work, model_path, inputs, plan, job)
            cache = ConversionCache.for_job(job, args, work, self.versions())
            hit = cache.find(plan["variant"])
            if hit is not None:
                log.info("%s: onnx2tf output from the cache (%s)", prepared.source_path.name, hit.name)
                shutil.copyfile(hit / LOG_NAME, log_path)
                shutil.copyfile(hit / f"model_{plan['variant']}.tflite", entry_path)
                meta = json.loads((hit / CACHE_META).read_text())
                network, convert_s = meta["network"], float(meta["convert_seconds"])
                cache_note = {"hit": True, "entry": hit.name}
            else:
                started = time.perf_counter()
                network = _run_converter(work, args, log_path, prepared.source_path.name)
                convert_s = time.perf_counter() - started
                produced = work / "out" / f"model_{plan['variant']}.tflite"
                if not produced.exists():
                    reason = _failure_reason(log_path) or f"onnx2tf wrote no {produced.name}"
                    kept = _keep_log(log_path, prepared.source_path.name)
                    raise TFLiteConversionFailed(
                        f"onnx2tf did not produce the {plan['label']} model for "
                        f"{prepared.source_path.name}: {reason} (full log: {kept})"
                    )
                shutil.copyfile(produced, entry_path)
                stored = cache.store(work / "out", log_path, network, convert_s)
                cache_note = {"hit": False, "entry": stored.name if stored else None}
        finally:
            shutil.rmtree(work, ignore_errors=True)

        analysis = analyze_flatbuffer(entry_path.read_bytes())
        threads = _threads(job.options.threads or job.target.threads)
        io_map = _map_io(entry_path, inputs, job, min(threads, os.cpu_count() or 1))
        in_specs, out_specs = _specs(io_map, prepared)
        warnings += _post_checks(plan, analysis, in_specs, out_specs, prepared.source_path.name)
        details = {
            "variant": plan["variant"],
            "onnx2tf_file": f"<stem>_{plan['variant']}.tflite",
            "quantization": plan["label"],
            "io_dtype": plan["io"],
            "convert_seconds": round(convert_s, 2),
            "log": LOG_NAME,
            "network": network,
            "calibration_input": data_note,
            "ops": analysis["ops"],
            "float_ops": analysis["float_ops"],
            "flex_ops": analysis["flex_ops"],
            "custom_ops": analysis["custom_ops"],
            "io_map": io_map,
            "threads": threads,
            "delegate": "XNNPACK (LiteRT default delegate, OpResolverType.AUTO)",
            "onnx2tf_cache": cache_note,
        }
        return ExportResult(
            entry=ENTRY,
            inputs=in_specs,
            outputs=out_specs,
            toolchain=self.versions(),
            details=details,
            warnings=warnings,
            effective_precision=None,
        )

    def open_runner(
        self, artifact_dir: Path, manifest: Mapping[str, Any], threads: int | None = None
    ) -> HostRunner:
        self.require()
        entry = Path(artifact_dir) / manifest["entry"]
        if not entry.exists():
            raise BadInput(f"{artifact_dir}: the artifact file {manifest['entry']} is missing")
        details = manifest.get("details", {})
        if not threads:
            # the target's thread count, but never more threads than this host has cores
            threads = min(_threads(details.get("threads")), os.cpu_count() or 1)
        return TFLiteRunner(
            entry,
            [TensorSpec.from_json(s) for s in manifest["inputs"]],
            [TensorSpec.from_json(s) for s in manifest["outputs"]],
            details.get("io_map", {}),
            _threads(threads),
        )


# ---- planning ---------------------------------------------------------------------------------
class _InputPlan:
    """One prepared ONNX input: its shape, and the permutation onnx2tf will apply (channel-last)."""

    def __init__(self, name: str, shape: list[int], dtype: np.dtype) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype
        rank = len(shape)
        self.perm = [0, *range(2, rank), 1] if rank in LAYOUTS else list(range(rank))
        self.layouts = LAYOUTS.get(rank, ("", ""))

    @classmethod
    def of(cls, info: Any) -> _InputPlan:
        return cls(info.name, [int(d) for d in info.shape], np.dtype(info.dtype))

    @property
    def tf_shape(self) -> list[int]:
        return [self.shape[i] for i in self.perm]


def _plan(job: ExportJob) -> dict[str, Any]:
    precision = job.precision
    if precision not in ("fp32", "fp16", "int8"):
        raise BadInput(f"the tflite backend exports fp32, fp16 or int8, not '{precision}'")
    if precision == "fp32":
        return {"variant": "float32", "label": "float32", "io": "float32", "int8": None}
    if precision == "fp16":
        return {"variant": "float16", "label": "float16 weights", "io": "float32", "int8": None}
    mode = str(job.target.quantization.get("mode", "static"))
    if job.options.dynamic_int8 or mode == "dynamic":
        return {
            "variant": "dynamic_range_quant",
            "label": "dynamic-range int8 (int8 weights, float activations)",
            "io": "float32",
            "int8": "dynamic",
        }
    if job.calib is None:
        raise BadInput(
            "full-integer TFLite export needs a calibration set: pass --calib calib.npz "
            "(or use --fp16 / dynamic-range int8)"
        )
    bad = [i.name for i in job.prepared.inputs if np.dtype(i.dtype) != np.float32]
    if bad:
        raise BadInput(
            f"full-integer TFLite needs float32 inputs; '{bad[0]}' is {job.prepared.inputs[0].dtype} "
            "(onnx2tf cannot calibrate it): use --fp16 or dynamic-range int8"
        )
    io = job.options.io_dtype
    if io == "auto":
        io = str(job.target.io.get("dtype", "int8"))
    if io in ("float", "float32"):
        return {
            "variant": "integer_quant",
            "label": "full int8 (float I/O)",
            "io": "float32",
            "int8": "static",
        }
    if io not in ("int8", "uint8"):
        raise BadInput(f"TFLite int8 I/O type must be float, int8 or uint8, not '{io}'")
    return {
        "variant": "full_integer_quant",
        "label": f"full int8 ({io} I/O)",
        "io": io,
        "int8": "static",
    }


def _threads(value: Any) -> int:
    try:
        count = int(value) if value else 0
    except (TypeError, ValueError):
        count = 0
    return count if count > 0 else (os.cpu_count() or 1)


def _tf_arrays(job: ExportJob, inputs: Sequence[_InputPlan]) -> dict[str, np.ndarray] | None:
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
        out[spec.name] = np.ascontiguousarray(arr.astype(np.float32).transpose(spec.perm))
    return out


def _write_inputs_data(work: Path, inputs: Sequence[_InputPlan], job: ExportJob) -> str:
    """Write the -cind npy files and the sample-image file onnx2tf would otherwise download."""
    arrays = _tf_arrays(job, inputs)
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


def _convert_args(
    work: Path, model: Path, inputs: Sequence[_InputPlan], plan: dict[str, Any], job: ExportJob
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "input_onnx_file_path": str(model),
        "output_folder_path": str(work / "out"),
        "not_use_onnxsim": True,  # ingest already simplified (onnxslim); onnxsim is not a dependency
        "verbosity": "info",
    }
    if job.calib is not None:
        # mean 0 / std 1: the set is already preprocessed as the ONNX model takes it
        args["custom_input_op_name_np_data_path"] = [
            [spec.name, str(work / f"calib_{index}.npy"), 0.0, 1.0] for index, spec in enumerate(inputs)
        ]
    if plan["int8"] == "dynamic":
        args["output_dynamic_range_quantized_tflite"] = True
    elif plan["int8"] == "static":
        per_channel = bool(job.target.quantization.get("per_channel", True))
        args["output_integer_quantized_tflite"] = True
        args["quant_type"] = "per-channel" if per_channel else "per-tensor"
        io = plan["io"] if plan["io"] in ("int8", "uint8") else "int8"
        args["input_quant_dtype"] = io
        args["output_quant_dtype"] = io
    args.update(job.options.extra.get("onnx2tf", {}) if isinstance(job.options.extra, dict) else {})
    return args


# ---- the conversion cache -----------------------------------------------------------------------
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _quant_settings(quant: Mapping[str, Any]) -> dict[str, Any]:
    return {key: quant.get(key, default) for key, default in QUANT_DEFAULTS.items()}


def _serves(quant: Mapping[str, Any], wanted: Mapping[str, Any], variant: str) -> bool:
    """Whether a run with quantization arguments `quant` made `variant` as a run with `wanted` would."""
    if variant in FLOAT_VARIANTS:
        return True
    have, want = _quant_settings(quant), _quant_settings(wanted)
    if variant == "dynamic_range_quant":
        return have["quant_type"] == want["quant_type"]
    return have == want


class ConversionCache:
    """onnx2tf outputs of successful runs, shared by the precisions and targets of one model and
    calibration set (see the module docstring)."""

    def __init__(self, root: Path, base: str, quant: dict[str, Any], key: dict[str, Any]) -> None:
        self.root = root
        self.base = base
        self.quant = quant
        self.key = key

    @classmethod
    def for_job(
        cls, job: ExportJob, args: Mapping[str, Any], work: Path, versions: Mapping[str, str]
    ) -> ConversionCache:
        from edgekit import __version__
        from edgekit.ingest import cache_root, file_sha256  # ingest imports onnx: not at module top

        # the working directory differs per run: arguments are compared with it taken out
        plain = json.loads(json.dumps(dict(args), default=str).replace(str(work), "<work>"))
        quant = {k: plain.pop(k) for k in QUANT_FLAGS if k in plain}
        key = {
            "format": CACHE_FORMAT,
            "edgekit": __version__,
            "toolchain": dict(versions),
            "model_sha256": file_sha256(job.prepared.path),
            "calibration_sha256": job.calib.sha256() if job.calib is not None else None,
            "args": plain,
        }
        return cls(cache_root("onnx2tf"), _digest(key), quant, key)

    @property
    def name(self) -> str:
        return f"{self.base}-{_digest(self.quant)}"

    def find(self, variant: str) -> Path | None:
        """An entry holding `variant` as this run would make it: this run's own entry first."""
        if not self.root.is_dir():
            return None
        candidates = sorted(self.root.glob(f"{self.base}-*"), key=lambda p: p.name != self.name)
        for entry in candidates:
            try:
                meta = json.loads((entry / CACHE_META).read_text())
                complete = meta["format"] == CACHE_FORMAT and (entry / LOG_NAME).is_file()
                served = variant in meta["variants"] and _serves(meta["quant"], self.quant, variant)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # half-removed or foreign: ignored, a fresh run replaces nothing
            if complete and served and (entry / f"model_{variant}.tflite").is_file():
                return entry
        return None

    def store(self, out: Path, log_path: Path, network: Mapping[str, Any], convert_s: float) -> Path | None:
        """Keep this run's variants and log (atomically: a temp dir renamed into place). A failure
        here costs only the next conversion, so it is logged, never raised."""
        final = self.root / self.name
        tmp: Path | None = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.name}.", dir=self.root))
            variants = []
            for path in sorted(out.glob("model_*.tflite")):
                variant = path.stem.removeprefix("model_")
                if variant.endswith("_with_int16_act"):
                    continue  # never chosen by _plan
                shutil.copyfile(path, tmp / path.name)
                variants.append(variant)
            shutil.copyfile(log_path, tmp / LOG_NAME)
            meta = {
                **self.key,
                "quant": self.quant,
                "variants": variants,
                "network": network,
                "convert_seconds": round(convert_s, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / CACHE_META).write_text(json.dumps(meta, indent=1, sort_keys=True))
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / CACHE_META).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process stored the same run meanwhile
            return final
        except OSError as exc:
            log.warning("could not keep the onnx2tf output in the cache %s: %s", self.root, exc)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            return None


# ---- the subprocess -----------------------------------------------------------------------------
def _netns_prefix() -> list[str]:
    """`unshare -n` when we are root and it works here (containers may forbid it); else nothing."""
    unshare = shutil.which("unshare")
    if not unshare or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return []
    try:
        probe = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [unshare, "-n"] if probe.returncode == 0 else []


def guarded_env(work: Path) -> tuple[dict[str, str], Path]:
    """Environment for an offline Python subprocess: the socket guard on PYTHONPATH, proxies pointing
    at a closed port. Returns (env, path of the guard's record)."""
    guard_dir = work / "netguard"
    guard_dir.mkdir(exist_ok=True)
    (guard_dir / "sitecustomize.py").write_text(GUARD_SOURCE)
    record = work / "network_attempts.log"
    record.write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(guard_dir), env.get("PYTHONPATH", "")) if p)
    env[GUARD_LOG_ENV] = str(record)
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[key] = "http://127.0.0.1:9"
    for key in ("NO_PROXY", "no_proxy"):
        env.pop(key, None)
    env.update(
        {
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONNOUSERSITE": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env, record


def _run_converter(work: Path, args: dict[str, Any], log_path: Path, model_name: str) -> dict[str, Any]:
    (work / "args.json").write_text(json.dumps(args, indent=1))
    (work / "driver.py").write_text(DRIVER_SOURCE)
    env, record = guarded_env(work)
    prefix = _netns_prefix()
    command = [*prefix, sys.executable, str(work / "driver.py"), str(work / "args.json")]
    log.info("converting %s with onnx2tf (log: %s)", model_name, log_path)
    timeout = CONVERT_TIMEOUT_S
    with open(log_path, "w") as handle:
        handle.write(f"# edgekit: {' '.join(command)}\n# cwd: {work}\n# args: {json.dumps(args)}\n")
        handle.flush()
        try:
            proc = subprocess.run(
                command, cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            kept = _keep_log(log_path, model_name)
            raise InternalError(
                f"onnx2tf did not finish converting {model_name} within {timeout} s (log: {kept})"
            ) from exc
    attempts = [line for line in record.read_text().splitlines() if line.strip()]
    network = {
        "isolation": ("unshare -n + " if prefix else "") + "socket guard + closed proxy",
        "attempts": attempts,
    }
    if proc.returncode != 0:
        kept = _keep_log(log_path, model_name)
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            raise InternalError(
                f"the onnx2tf process converting {model_name} was killed by {name} "
                f"(out of memory?); log: {kept}"
            )
        reason = _failure_reason(log_path) or f"exit status {proc.returncode}"
        missing_op = re.search(r"No module named 'onnx2tf\.ops\.(\w+)'", reason)
        if missing_op:
            reason = f"onnx2tf has no converter for the ONNX op '{missing_op.group(1)}'"
        if attempts:
            reason += f" (it tried to reach the network: {attempts[0]})"
        raise TFLiteConversionFailed(f"onnx2tf cannot convert {model_name}: {reason} (full log: {kept})")
    if attempts:
        log.warning("onnx2tf tried to reach the network (refused): %s", attempts[0])
    return network


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^(ERROR:|[A-Za-z_.]*(Error|Exception)\b:?)")
_NOISE = ("Traceback", "During handling", "The above exception", "^^^")


def _failure_reason(log_path: Path, limit: int = 300) -> str:
    """The last meaningful error line of the converter's log."""
    try:
        lines = [_ANSI.sub("", line).strip() for line in log_path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line and not line.startswith(_NOISE)]
    for line in reversed(lines):
        if _ERROR_LINE.match(line) or "output failed" in line:
            return line[:limit]
    for line in reversed(lines):
        if "WARNING:" in line or "error" in line.lower():
            return line[:limit]
    return lines[-1][:limit] if lines else ""


def _keep_log(log_path: Path, model_name: str) -> Path:
    """Copy a failed conversion's log out of the (to be discarded) artifact temp dir."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(model_name).stem)
    kept = Path(tempfile.gettempdir()) / f"edgekit-tflite-{stem}-{int(time.time())}.log"
    try:
        shutil.copyfile(log_path, kept)
    except OSError:
        return log_path
    return kept


# ---- flatbuffer analysis ------------------------------------------------------------------------
def analyze_flatbuffer(buffer: bytes) -> dict[str, Any]:
    """Ops of a .tflite file read statically (works even when Flex ops keep it from loading):
    op counts, custom/Flex ops, and ops that compute in float (a float non-constant tensor in or out;
    QUANTIZE / DEQUANTIZE excluded - they are the conversions at the float boundary)."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(buffer, 0)
    ops: dict[str, int] = {}
    float_ops: dict[str, int] = {}
    flex: set[str] = set()
    custom: set[str] = set()
    for sg_index in range(model.SubgraphsLength()):
        graph = model.Subgraphs(sg_index)
        for op_index in range(graph.OperatorsLength()):
            op = graph.Operators(op_index)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            name = op_names.get(builtin, str(builtin))
            if name == "CUSTOM":
                name = (code.CustomCode() or b"?").decode(errors="replace")
                (flex if name.startswith("Flex") else custom).add(name)
            ops[name] = ops.get(name, 0) + 1
            if name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            tensors = [i for i in op.InputsAsNumpy() if i >= 0] if op.InputsLength() else []
            outs = [i for i in op.OutputsAsNumpy() if i >= 0] if op.OutputsLength() else []
            for tensor_index in [*tensors, *outs]:
                tensor = graph.Tensors(int(tensor_index))
                if type_names.get(tensor.Type()) not in ("FLOAT32", "FLOAT16"):
                    continue
                buf = model.Buffers(tensor.Buffer()) if tensor.Buffer() < model.BuffersLength() else None
                constant = buf is not None and (buf.DataLength() > 0 or buf.Offset() > 1)
                if not constant or tensor_index in outs:
                    float_ops[name] = float_ops.get(name, 0) + 1
                    break
    return {
        "ops": dict(sorted(ops.items())),
        "float_ops": dict(sorted(float_ops.items())),
        "flex_ops": sorted(flex),
        "custom_ops": sorted(custom),
    }


# ---- I/O mapping ----------------------------------------------------------------------------------
def _open_interpreter(path: Path, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(
            model_path=str(path),
            num_threads=threads,
            # AUTO = builtin kernels with LiteRT's default delegate, XNNPACK, applied
            experimental_op_resolver_type=OpResolverType.AUTO,
        )
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise BadInput(
            f"{path.name}: LiteRT cannot load the model: {str(exc).strip().splitlines()[0]}"
        ) from exc
    return interpreter


def _bare_name(name: str) -> str:
    name = name.removeprefix("serving_default_")
    return re.sub(r":\d+$", "", name)


def _output_order(interpreter: Any, count: int) -> tuple[list[int], str]:
    """Tensor indices of the tflite outputs in ONNX output order, and how that was decided."""
    details = interpreter.get_output_details()
    signatures = interpreter._get_full_signature_list()  # noqa: SLF001 - the only place it is exposed
    if len(signatures) == 1:
        outputs = next(iter(signatures.values())).get("outputs", {})
        keys = [f"output_{i}" for i in range(count)]
        if set(keys) == set(outputs):
            return [int(outputs[k]) for k in keys], "signature output_<i> (onnx2tf names them in ONNX order)"
    names = [d["name"] for d in details]
    identity = [f"Identity_{i}" if i else "Identity" for i in range(count)]
    if set(identity) == set(names):
        by_name = {d["name"]: d["index"] for d in details}
        return [int(by_name[n]) for n in identity], "Identity_<i> tensor names"
    return [int(d["index"]) for d in details], "flatbuffer output order"


def _compatible(tf_shape: Sequence[int], onnx_shape: Sequence[int]) -> list[list[int]]:
    """Permutations p with onnx_shape[p] == tf_shape, among identity and channel-last."""
    rank = len(onnx_shape)
    candidates = [list(range(rank))]
    if rank in LAYOUTS:
        candidates.append([0, *range(2, rank), 1])
    return [p for p in candidates if len(tf_shape) == rank and [onnx_shape[i] for i in p] == list(tf_shape)]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    if denom == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.dot(a, b) / denom)


def _probe_feed(job: ExportJob) -> dict[str, np.ndarray]:
    """One sample in the prepared model's layout: from the calibration set, else seeded noise."""
    feed = {}
    rng = np.random.default_rng(0)
    for info in job.prepared.inputs:
        shape = [int(d) for d in info.shape]
        if job.calib is not None and info.name in job.calib.arrays:
            arr = np.asarray(job.calib.arrays[info.name])
            sample = arr[:1] if arr.ndim == len(shape) else arr[0]
            feed[info.name] = np.ascontiguousarray(sample.reshape(shape).astype(info.dtype))
        else:
            feed[info.name] = rng.random(shape, dtype=np.float32).astype(info.dtype)
    return feed


def _map_io(path: Path, inputs: Sequence[_InputPlan], job: ExportJob, threads: int) -> dict[str, Any]:
    """Match tflite inputs/outputs to the prepared ONNX ones: inputs by name (onnx2tf keeps them,
    int8 files prefix `serving_default_`), outputs by the signature's `output_<i>` keys (else the
    Identity names, else flatbuffer order), checked against the shapes; where a tensor's shape fits
    both its ONNX layout and the channel-last one (e.g. 1x4x4x4), or the shapes do not fit the order,
    one sample run through ONNX Runtime and LiteRT decides (highest cosine)."""
    interpreter = _open_interpreter(path, threads)
    in_details = interpreter.get_input_details()
    by_bare = {_bare_name(d["name"]): d for d in in_details}
    entries_in = []
    for position, spec in enumerate(inputs):
        detail = by_bare.get(spec.name)
        if detail is None and len(in_details) == len(inputs):
            detail = in_details[position]
        if detail is None:
            raise InternalError(f"cannot find ONNX input '{spec.name}' among the tflite inputs")
        perms = _compatible([int(d) for d in detail["shape"]], spec.shape)
        if not perms:
            raise InternalError(
                f"tflite input '{detail['name']}' has shape {list(detail['shape'])}, which does not "
                f"match ONNX input '{spec.name}' {spec.shape} in any layout"
            )
        perm = spec.perm if spec.perm in perms else perms[0]
        entries_in.append(_io_entry(spec.name, detail, perm))

    feed = _probe_feed(job)
    reference = _onnx_outputs(job.prepared.path, feed)
    raw = _run_raw(interpreter, entries_in, feed)
    order, how = _output_order(interpreter, len(job.prepared.outputs))
    details_by_index = {int(d["index"]): d for d in interpreter.get_output_details()}
    entries_out = []
    used: set[int] = set()
    for position, info in enumerate(job.prepared.outputs):
        onnx_shape = [int(d) for d in info.shape]
        want = reference[info.name]
        candidates = []
        preferred = order[position] if position < len(order) else None
        for index, detail in details_by_index.items():
            if index in used:
                continue
            for perm in _compatible([int(d) for d in detail["shape"]], onnx_shape):
                got = raw[index].transpose(np.argsort(perm))
                candidates.append((_cosine(got, want), index == preferred, index, perm))
        if not candidates:
            raise InternalError(f"no tflite output matches ONNX output '{info.name}' {onnx_shape}")
        # the order from the signature wins unless the numbers clearly say otherwise
        candidates.sort(key=lambda c: (round(c[0], 3), c[1]), reverse=True)
        cosine, _, index, perm = candidates[0]
        used.add(index)
        entry = _io_entry(info.name, details_by_index[index], perm)
        entry["probe_cosine"] = round(cosine, 5)
        entries_out.append(entry)
    return {"inputs": entries_in, "outputs": entries_out, "output_order": how}


def _io_entry(prepared_name: str, detail: Mapping[str, Any], perm: list[int]) -> dict[str, Any]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"]).name
    return {
        "prepared_name": prepared_name,
        "tflite_name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "dtype": dtype,
        "perm": perm,  # tflite tensor = onnx tensor.transpose(perm)
        "quant": {"scale": float(scale), "zero_point": int(zero_point)}
        if dtype in ("int8", "uint8", "int16") and scale
        else None,
    }


def _onnx_outputs(path: Path, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, dict(feed)), strict=True))


def _quantize(x: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    quant = entry.get("quant")
    dtype = np.dtype(entry["dtype"])
    if quant is None or dtype.kind == "f":
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / quant["scale"]) + quant["zero_point"]
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(x: np.ndarray, entry: Mapping[str, Any]) -> np.ndarray:
    quant = entry.get("quant")
    if quant is None:
        return x.astype(np.float32)
    return ((x.astype(np.float32) - quant["zero_point"]) * quant["scale"]).astype(np.float32)


def _run_raw(interpreter: Any, entries: Sequence[Mapping[str, Any]], feed: Mapping[str, np.ndarray]) -> dict:
    """Feed (prepared names, ONNX layout) -> {output tensor index: dequantized array, tflite layout}."""
    index_by_name = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    for entry in entries:
        x = np.asarray(feed[entry["prepared_name"]]).transpose(entry["perm"])
        interpreter.set_tensor(index_by_name[entry["tflite_name"]], np.ascontiguousarray(_quantize(x, entry)))
    interpreter.invoke()
    out = {}
    for detail in interpreter.get_output_details():
        entry = _io_entry("", detail, [])
        out[int(detail["index"])] = _dequantize(interpreter.get_tensor(detail["index"]), entry)
    return out


def _specs(io_map: Mapping[str, Any], prepared: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def spec(entry: Mapping[str, Any]) -> TensorSpec:
        rank = len(entry["shape"])
        channel_last = rank in LAYOUTS and entry["perm"] != list(range(rank))
        layout = LAYOUTS[rank][1 if channel_last else 0] if rank in LAYOUTS else ""
        return TensorSpec(
            name=entry["tflite_name"],
            source_name=prepared.source_name(entry["prepared_name"]),
            shape=list(entry["shape"]),
            dtype=entry["dtype"],
            layout=layout,
            quant=entry["quant"],
        )

    return [spec(e) for e in io_map["inputs"]], [spec(e) for e in io_map["outputs"]]


def _post_checks(
    plan: Mapping[str, Any],
    analysis: Mapping[str, Any],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    model_name: str,
) -> list[str]:
    """Flex ops (raise for full-int8: the target runtime has no TF kernels), float ops left in an
    int8 model, and I/O types other than requested: reported, never hidden."""
    warnings: list[str] = []
    flex = analysis["flex_ops"]
    if flex and plan["int8"] == "static":
        raise TFLiteConversionFailed(
            f"the full-int8 model of {model_name} needs TensorFlow (Flex) ops {', '.join(flex)}, which "
            "LiteRT on the device does not have; change those ops in the model or export --fp16"
        )
    if flex:
        warnings.append(
            f"the model needs TensorFlow (Flex) ops {', '.join(flex)}: LiteRT needs the Flex delegate"
        )
    if analysis["custom_ops"]:
        warnings.append(f"the model uses custom ops {', '.join(analysis['custom_ops'])}")
    if plan["int8"] == "static" and analysis["float_ops"]:
        listing = ", ".join(f"{k} x{v}" for k, v in analysis["float_ops"].items())
        warnings.append(f"ops left in float in the int8 model: {listing}")
    want = plan["io"]
    for spec in [*inputs, *outputs]:
        kind = np.dtype(spec.dtype).kind
        if want == "float32" and kind == "f" and spec.dtype != "float32":
            warnings.append(f"tensor '{spec.source_name}' is {spec.dtype} in the tflite, not float32")
        elif want != "float32" and kind == "f":
            warnings.append(
                f"tensor '{spec.source_name}' is {spec.dtype} in the tflite, not {want} as requested"
            )
    return warnings


# ---- host runner ----------------------------------------------------------------------------------
class TFLiteRunner(HostRunner):
    """LiteRT Interpreter with an explicit thread count and XNNPACK (the default delegate of the AUTO
    op resolver). Takes source names / layout, returns float outputs in the source layout."""

    def __init__(
        self,
        path: Path,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        io_map: Mapping[str, Any],
        threads: int,
    ) -> None:
        super().__init__(inputs, outputs)
        self.threads = threads
        self._interpreter = _open_interpreter(path, threads)
        by_name = {d["name"]: d for d in self._interpreter.get_input_details()}
        out_by_name = {d["name"]: d for d in self._interpreter.get_output_details()}
        self._in = []
        for spec, entry in zip(inputs, io_map["inputs"], strict=True):
            self._in.append((spec.source_name, by_name[entry["tflite_name"]]["index"], entry))
        self._out = []
        for spec, entry in zip(outputs, io_map["outputs"], strict=True):
            self._out.append((spec.source_name, out_by_name[entry["tflite_name"]]["index"], entry))

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for source_name, index, entry in self._in:
            x = np.asarray(feed[source_name])
            want = [entry["shape"][i] for i in np.argsort(entry["perm"])]
            if list(x.shape) != want:
                if x.size != int(np.prod(want)):
                    raise BadInput(
                        f"input '{source_name}' has shape {list(x.shape)}, the artifact wants {want}"
                    )
                x = x.reshape(want)
            x = np.ascontiguousarray(_quantize(x.transpose(entry["perm"]), entry))
            self._interpreter.set_tensor(index, x)
        self._interpreter.invoke()
        result = {}
        for source_name, index, entry in self._out:
            y = _dequantize(self._interpreter.get_tensor(index), entry)
            result[source_name] = np.ascontiguousarray(y.transpose(np.argsort(entry["perm"])))
        return result

    def close(self) -> None:
        self._interpreter = None
