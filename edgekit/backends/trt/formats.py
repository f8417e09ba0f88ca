"""TensorRT's text formats, standard library only: the INT8 calibration cache, the trtexec command line
of an on-device build, and trtexec's outputs (the `--exportTimes` JSON trace and the printed performance
summary / device header).

Importing this module (`edgekit.backends.trt.formats`) loads neither the backend (onnx, onnxruntime)
nor TensorRT, so the runner and the report code can read caches and parse trtexec output anywhere.
Statistics over a trace are computed with the agent's `latency_stats`, the one implementation edgekit
uses for every latency record, so a trtexec trace and an agent-timed run are summarised alike; the
summary trtexec prints itself is parsed as printed (`parse_trtexec_log`).

Facts this module relies on (checked against TensorRT's own sources and real logs):
- cache header `TRT-<code>-<Algorithm>`: TensorRT 8.x headers encode the version as
  major*1000 + minor*100 + patch (NvInferRuntimeCommon.h, kNV_TENSORRT_VERSION_IMPL; 8.2.1 -> 8201,
  8.6.1 -> 8601); TensorRT 10.x as major*10000 + minor*100 + patch (NvInferRuntimeBase.h,
  NV_TENSORRT_VERSION_INT; 10.3.0 -> 100300). 9.x is assumed to use the 10.x form (not verified).
- each line `name: <8 hex digits>` holds the big-endian IEEE float32 bits of the scale = amax / 127.
- trtexec's own calibrator (used with `--int8 --calib=FILE`) is an IInt8EntropyCalibrator2 that falls
  back to random input data when the cache is missing or rejected; a cache is rejected when its
  algorithm or version does not match. So the cache for trtexec is always `EntropyCalibration2`.
- `--exportTimes` writes a JSON list of per-query records (startEnqMs, endEnqMs, startH2dMs, endH2dMs,
  startComputeMs, endComputeMs, startD2hMs, endD2hMs, h2dMs, computeMs, d2hMs, latencyMs, endToEndMs)
  including the warm-up queries (samples/common/sampleReporting.cpp).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgekit.agent import latency_stats
from edgekit.errors import BadInput

# ---- versions ----------------------------------------------------------------------------------
ALGORITHMS = {
    "entropy2": "EntropyCalibration2",
    "entropy": "EntropyCalibration",
    "minmax": "MinMaxCalibration",
    "legacy": "LegacyCalibration",
}
TRTEXEC_ALGORITHM = "EntropyCalibration2"  # the only algorithm trtexec's calibrator accepts


def parse_version(text: str) -> tuple[int, int, int]:
    """'8.2.1' / '10.3' / '8.6.1.6' -> (major, minor, patch)."""
    parts = re.findall(r"\d+", str(text))
    if not parts:
        raise BadInput(f"not a TensorRT version: {text!r} (expected e.g. 8.2.1)")
    nums = [int(p) for p in parts[:3]] + [0, 0]
    return nums[0], nums[1], nums[2]


def version_code(version: str | tuple[int, int, int]) -> int:
    """The integer TensorRT writes into cache headers and the trtexec banner ([TensorRT v8201])."""
    major, minor, patch = parse_version(version) if isinstance(version, str) else version
    if major < 9:
        return major * 1000 + minor * 100 + patch
    return major * 10000 + minor * 100 + patch


def version_from_code(code: int) -> str:
    """8201 -> '8.2.1', 100300 -> '10.3.0'."""
    if code >= 10000:
        return f"{code // 10000}.{code // 100 % 100}.{code % 100}"
    return f"{code // 1000}.{code // 100 % 10}.{code % 100}"


# ---- calibration cache -------------------------------------------------------------------------
@dataclass
class CalibCache:
    """A parsed calibration cache: scales (float32 values as Python floats) keyed by tensor name."""

    version_code: int
    algorithm: str
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return version_from_code(self.version_code)

    def amax(self) -> dict[str, float]:
        return {name: scale_to_amax(scale) for name, scale in self.scales.items()}


def _f32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def amax_to_scale(amax: float) -> float:
    """Symmetric INT8 scale as TensorRT stores it: amax / 127, rounded to float32."""
    if not math.isfinite(amax) or amax < 0:
        raise BadInput(f"activation range must be finite and >= 0, got {amax}")
    return _f32(_f32(amax) / 127.0)


def scale_to_amax(scale: float) -> float:
    return _f32(scale * 127.0)


def encode_scale(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def decode_scale(hex_text: str) -> float:
    text = hex_text.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{8}", text):
        raise BadInput(f"calibration cache: '{hex_text}' is not 8 hex digits")
    return struct.unpack(">f", bytes.fromhex(text))[0]


def write_calib_cache(
    scales: Mapping[str, float], trt_version: str, algorithm: str = TRTEXEC_ALGORITHM
) -> str:
    """The cache text for `trt_version`. Tensor names must be single-line."""
    if algorithm not in ALGORITHMS.values():
        raise BadInput(
            f"unknown calibration algorithm '{algorithm}'; one of {', '.join(ALGORITHMS.values())}"
        )
    lines = [f"TRT-{version_code(trt_version)}-{algorithm}"]
    for name, scale in scales.items():
        if not name or "\n" in name or "\r" in name:
            raise BadInput(f"tensor name {name!r} cannot be written into a TensorRT calibration cache")
        lines.append(f"{name}: {encode_scale(scale)}")
    return "\n".join(lines) + "\n"


def parse_calib_cache(text: str | bytes) -> CalibCache:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BadInput("calibration cache is empty")
    match = re.fullmatch(r"TRT-(\d+)-(\w+)", lines[0].strip())
    if not match:
        raise BadInput(f"calibration cache header {lines[0]!r} is not 'TRT-<version>-<Algorithm>'")
    cache = CalibCache(int(match.group(1)), match.group(2))
    for number, line in enumerate(lines[1:], start=2):
        name, sep, value = line.rpartition(":")
        if not sep or not name:
            raise BadInput(f"calibration cache line {number}: {line!r} is not 'tensor: hexscale'")
        cache.scales[name] = decode_scale(value)
    return cache


# ---- trtexec command line ----------------------------------------------------------------------
def _shape_name(name: str) -> str:
    """trtexec splits shape specs on ',' and ':'; names holding those are wrapped in single quotes."""
    if "'" in name:
        raise BadInput(f"input name {name!r} contains a single quote, which trtexec shape specs cannot carry")
    return f"'{name}'" if any(ch in name for ch in ",:") else name


def shape_spec(shapes: Mapping[str, Sequence[int]]) -> str:
    return ",".join(
        f"{_shape_name(name)}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items()
    )


@dataclass
class TrtexecCommand:
    """One trtexec invocation; `argv()` is the list, `shell()` the shlex-quoted line."""

    onnx: str | None = None
    load_engine: str | None = None
    save_engine: str | None = None
    fp16: bool = False
    int8: bool = False
    calib: str | None = None
    explicit_quantization: bool = False  # the ONNX carries Q/DQ nodes
    strongly_typed: bool = False
    min_shapes: dict[str, list[int]] = field(default_factory=dict)
    opt_shapes: dict[str, list[int]] = field(default_factory=dict)
    max_shapes: dict[str, list[int]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    timing_cache: str | None = None
    export_times: str | None = None
    extra: list[str] = field(default_factory=list)
    program: str = "trtexec"

    def check(self) -> None:
        if self.int8 and not (self.calib or self.explicit_quantization):
            # trtexec would calibrate on random data and still call the engine INT8
            raise BadInput("refusing a trtexec --int8 build without --calib or a Q/DQ model")
        if bool(self.onnx) == bool(self.load_engine):
            raise BadInput("a trtexec command needs exactly one of --onnx / --loadEngine")
        if any((self.min_shapes, self.opt_shapes, self.max_shapes)) and not (
            self.min_shapes.keys() == self.opt_shapes.keys() == self.max_shapes.keys()
        ):
            raise BadInput("--minShapes/--optShapes/--maxShapes must name the same inputs")

    def argv(self) -> list[str]:
        self.check()
        args = [self.program]
        if self.onnx:
            args.append(f"--onnx={self.onnx}")
        if self.load_engine:
            args.append(f"--loadEngine={self.load_engine}")
        if self.save_engine:
            args.append(f"--saveEngine={self.save_engine}")
        if self.strongly_typed:
            args.append("--stronglyTyped")
        if self.int8:
            args.append("--int8")
        if self.calib:
            args.append(f"--calib={self.calib}")
        if self.fp16:
            args.append("--fp16")
        for flag, shapes in (
            ("--minShapes", self.min_shapes),
            ("--optShapes", self.opt_shapes),
            ("--maxShapes", self.max_shapes),
            ("--shapes", self.shapes),
        ):
            if shapes:
                args.append(f"{flag}={shape_spec(shapes)}")
        if self.timing_cache:
            args.append(f"--timingCacheFile={self.timing_cache}")
        if self.export_times:
            args.append(f"--exportTimes={self.export_times}")
        args.extend(self.extra)
        return args

    def shell(self) -> str:
        return shlex.join(self.argv())


def build_script(build: TrtexecCommand, bench: TrtexecCommand | None = None) -> str:
    """A POSIX sh script that runs the build from the bundle directory (trtexec from PATH, $TRTEXEC or
    JetPack's /usr/src/tensorrt/bin)."""
    argv = build.argv()
    lines = [
        "#!/bin/sh",
        "# Generated by edgekit: builds the TensorRT engine on the device from this bundle.",
        "set -eu",
        'cd "$(dirname "$0")"',
        'TRTEXEC="${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}"',
        '"$TRTEXEC" ' + shlex.join(argv[1:]),
    ]
    if bench is not None:
        lines.append(
            'if [ "${EDGEKIT_BENCH:-0}" = "1" ]; then "$TRTEXEC" ' + shlex.join(bench.argv()[1:]) + "; fi"
        )
    return "\n".join(lines) + "\n"


# ---- trtexec output ----------------------------------------------------------------------------
_TRACE_METRICS = {
    "latency_ms": ("latencyMs",),
    "gpu_compute_ms": ("computeMs",),
    "h2d_ms": ("h2dMs", "inMs"),
    "d2h_ms": ("d2hMs", "outMs"),
    "end_to_end_ms": ("endToEndMs",),
}


def parse_export_times(
    data: str | bytes | list[dict[str, Any]], warmup_ms: float | None = None
) -> dict[str, Any]:
    """Stats from a trtexec `--exportTimes` trace. Queries whose compute starts before `warmup_ms`
    (trtexec's own warm-up split) are dropped when it is given."""
    if isinstance(data, str | bytes):
        try:
            records = json.loads(data)
        except ValueError as exc:
            raise BadInput(f"trtexec --exportTimes output is not JSON: {exc}") from exc
    else:
        records = data
    if not isinstance(records, list):
        raise BadInput("trtexec --exportTimes output must be a JSON list")
    rows = [r for r in records if isinstance(r, dict) and ("startComputeMs" in r or "latencyMs" in r)]
    if warmup_ms is not None:
        rows = [r for r in rows if float(r.get("startComputeMs", math.inf)) >= warmup_ms]
    if not rows:
        raise BadInput("trtexec --exportTimes output holds no timed queries")
    out: dict[str, Any] = {"queries": len(rows)}
    for key, names in _TRACE_METRICS.items():
        values = []
        for row in rows:
            name = next((n for n in names if n in row), None)
            if name is not None:
                values.append(float(row[name]))
            elif key == "gpu_compute_ms" and "endComputeMs" in row:
                values.append(float(row["endComputeMs"]) - float(row["startComputeMs"]))
        if values:
            out[key] = latency_stats(values)
    start_key = "startH2dMs" if "startH2dMs" in rows[0] else "startComputeMs"
    end_key = "endD2hMs" if "endD2hMs" in rows[-1] else "endComputeMs"
    if start_key in rows[0] and end_key in rows[-1]:
        span = float(rows[-1][end_key]) - float(rows[0][start_key])
        if span > 0:
            out["throughput_qps"] = len(rows) / span * 1000.0
    return out


_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)"
_LINE_PREFIX = r"^(?:\[[^\]]*\]\s*)*"  # [07/14/2023-11:55:18] [I]
_SUMMARY_METRICS = {
    "Latency": "latency_ms",
    "End-to-End Host Latency": "end_to_end_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}


def _metric(body: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in re.findall(r"(min|max|mean|median)\s*=\s*" + _NUM + r"\s*ms", body):
        out["p50" if key == "median" else key] = float(value)
    for pct, value in re.findall(r"percentile\((\d+(?:\.\d+)?)%\)\s*=\s*" + _NUM + r"\s*ms", body):
        number = float(pct)
        out[f"p{int(number) if number.is_integer() else number}"] = float(value)
    return out


def parse_trtexec_log(text: str) -> dict[str, Any]:
    """Device header, version and performance summary from trtexec's console output.

    Handles the TensorRT 8.2-8.4 summary (one `percentile(99%)` per metric) and the >= 8.5 one
    (`percentile(90%)`, `(95%)`, `(99%)`). Fields that are absent are left out.
    """
    out: dict[str, Any] = {}
    device: dict[str, Any] = {}
    metrics: dict[str, dict[str, float]] = {}
    for raw in text.splitlines():
        line = re.sub(_LINE_PREFIX, "", raw.strip())
        if match := re.search(r"(RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\]", raw):
            out["version_code"] = int(match.group(2))
            out.setdefault("tensorrt", version_from_code(int(match.group(2))))
            if match.group(1) != "RUNNING":
                out["status"] = match.group(1).lower()
            continue
        if match := re.match(r"TensorRT version:\s*([\d.]+)", line):
            out["tensorrt"] = match.group(1)
        elif match := re.match(r"Selected Device:\s*(.+)$", line):
            device["name"] = match.group(1).strip()
        elif match := re.match(r"Compute Capability:\s*(\d+\.\d+)", line):
            device["compute_capability"] = match.group(1)
        elif match := re.match(r"Device Global Memory:\s*(\d+)\s*MiB", line):
            device["memory_mib"] = int(match.group(1))
        elif match := re.match(r"SMs:\s*(\d+)", line):
            device["sms"] = int(match.group(1))
        elif match := re.match(r"Throughput:\s*" + _NUM + r"\s*qps", line):
            out["throughput_qps"] = float(match.group(1))
        elif match := re.match(r"Total Host Walltime:\s*" + _NUM + r"\s*s", line):
            out["total_host_walltime_s"] = float(match.group(1))
        elif match := re.match(r"Total GPU Compute Time:\s*" + _NUM + r"\s*s", line):
            out["total_gpu_compute_s"] = float(match.group(1))
        elif match := re.match(r"Timing trace has (\d+) queries", line):
            out["queries"] = int(match.group(1))
        else:
            name, sep, body = line.partition(":")
            if sep and name in _SUMMARY_METRICS and "min =" in body:
                metrics[_SUMMARY_METRICS[name]] = _metric(body)
    if device:
        out["device"] = device
    if metrics:
        out.update(metrics)
        percentiles = {k for m in metrics.values() for k in m if k.startswith("p") and k != "p50"}
        out["summary_format"] = ">=8.5" if {"p90", "p95"} <= percentiles else "8.2"
    return out
