"""inspect's runtime-memory estimate vs measured process-memory growth, per runtime.

For each realistic architecture (tests/analysis_models.py: ResNet/VGG/MobileNet classifiers, a DBNet
text detector at 640x640 and 960x960, a CRNN recognizer, PaddleOCR's direction classifier,
transformer encoders, big-Gemm MLPs, a segmentation decoder; tests/zoo.py: the nine classic-zoo
CNNs, IR upgraded the way ingest prepares them) every runtime is measured in fresh processes: peak
RSS (VmHWM) growth over the RSS after importing the runtime and allocating the inputs, through
session creation + 3 runs (onnxruntime CPU EP / OpenVINO CPU, default options, in the order edgekit's
agent runs them: runtime imported, baseline, session, inputs, runs). Prints the estimate, the measurement (median of --repeat processes), their ratio, the
worst ratio per runtime, and with --fit the constants a relative least-squares fit of this very run
gives (with each model's leave-one-out ratio, the honest held-out error).

    python benchmarks/bench_memory.py [--runtime onnxruntime|openvino ...] [--only NAME ...]
                                      [--repeat N] [--fit] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402

from edgekit import analysis  # noqa: E402
from edgekit.split.measure import STATUS_HELPER  # noqa: E402
from tests import zoo  # noqa: E402
from tests.analysis_models import REALISTIC  # noqa: E402

MB = 1024 * 1024

CHILD = (
    STATUS_HELPER
    + r"""
# the order of edgekit's agent (what `edgekit bench` records): runtime imported, baseline, load,
# inputs made, runs; glibc's dynamic mmap threshold makes RSS depend on what the process did before
runtime, path, shapes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if runtime == "onnxruntime":
    import onnxruntime as ort
    base = status("VmRSS")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    run = lambda feeds: session.run(None, feeds)
else:
    import openvino as ov
    core = ov.Core()
    base = status("VmRSS")
    compiled = core.compile_model(path, "CPU")
    request = compiled.create_infer_request()
    run = lambda feeds: request.infer(feeds)
loaded = status("VmRSS")
feeds = {name: np.random.default_rng(0).random(shape, dtype=np.float32) for name, shape in shapes.items()}
for _ in range(3):
    run(feeds)
print(json.dumps({"base": base, "loaded": loaded, "ran": status("VmRSS"), "hwm": status("VmHWM")}))
"""
)


def models() -> dict[str, object]:
    out: dict[str, object] = dict(REALISTIC)
    for name in zoo.ZOO:
        out[f"zoo-{name}"] = name
    return out


def write_model(name: str, spec: object, directory: Path) -> Path:
    path = directory / f"{name}.onnx"
    if isinstance(spec, str):  # a zoo model: IR 3 with initializers as inputs, prepared as ingest does
        raw = zoo.zoo_model(spec, directory / f"raw-{spec}.onnx")
        model = onnx.load(str(raw))
        raw.unlink()
        inits = {t.name for t in model.graph.initializer}
        kept = [i for i in model.graph.input if i.name not in inits]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        model.ir_version = max(model.ir_version, 4)
    else:
        model, _ = spec()  # type: ignore[operator]
    onnx.save(model, str(path))
    return path


def measure(runtime: str, path: Path, shapes: dict[str, list[int]], repeat: int) -> dict[str, float]:
    """Peak-RSS growth (bytes) and RSS after load, medians over `repeat` fresh processes."""
    hwm, loaded = [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, runtime, str(path), json.dumps(shapes)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        hwm.append(r["hwm"] - r["base"])
        loaded.append(r["loaded"] - r["base"])
    return {
        "growth": statistics.median(hwm),
        "after_load": statistics.median(loaded),
        "spread": max(hwm) - min(hwm),
    }


def features(report: analysis.ModelReport) -> list[float]:
    """The memory model's inputs, in MB (and nodes / 100): see analysis.MemoryModel."""
    classes = report.weight_bytes_by_class["fp32"]
    return [
        1.0,
        report.node_count / 100.0,
        classes.get("conv", 0) / MB,
        classes.get("other", 0) / MB,
        classes.get("large", 0) / MB,
        report.peak_activation_bytes_by_precision["fp32"] / MB,
    ]


def fit(records: list[dict]) -> tuple[np.ndarray, list[float]]:
    """Relative least squares: minimise sum(((X c) - y) / y)^2; plus each model's leave-one-out ratio."""
    x = np.array([r["features"] for r in records])
    y = np.array([r["measured_mb"] for r in records])

    def solve(mask: np.ndarray) -> np.ndarray:
        coef, *_ = np.linalg.lstsq(x[mask] / y[mask, None], np.ones(int(mask.sum())), rcond=None)
        return coef

    coef = solve(np.ones(len(y), dtype=bool))
    loo = []
    for i in range(len(y)):
        mask = np.ones(len(y), dtype=bool)
        mask[i] = False
        loo.append(float(x[i] @ solve(mask) / y[i]))
    return coef, loo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [r for r in ("onnxruntime", "openvino") if importlib.util.find_spec(r)]
    parser.add_argument("--runtime", nargs="*", default=installed, choices=["onnxruntime", "openvino"])
    parser.add_argument("--only", nargs="*", help="model names to run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="fresh processes per model and runtime (median)"
    )
    parser.add_argument("--fit", action="store_true", help="refit the constants on this run's measurements")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of tables")
    args = parser.parse_args()
    specs = models()
    names = [n for n in specs if not args.only or n in args.only]
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = write_model(name, specs[name], Path(tmp))
            report = analysis.analyze(path)
            for runtime in args.runtime:
                measured = measure(runtime, path, report.analysis_shapes, args.repeat)
                estimate = report.runtime_memory_bytes.get(runtime, {}).get("fp32")
                record = {
                    "model": name,
                    "runtime": runtime,
                    "nodes": report.node_count,
                    "params_m": report.params / 1e6,
                    "weights_mb": report.weight_bytes["fp32"] / MB,
                    "peak_act_mb": report.peak_activation_bytes_by_precision["fp32"] / MB,
                    "estimate_mb": None if estimate is None else estimate / MB,
                    "measured_mb": measured["growth"] / MB,
                    "after_load_mb": measured["after_load"] / MB,
                    "spread_mb": measured["spread"] / MB,
                    "features": features(report),
                }
                record["ratio"] = None if estimate is None else record["estimate_mb"] / record["measured_mb"]
                records.append(record)
                if not args.json:
                    ratio = "-" if record["ratio"] is None else f"{record['ratio']:.2f}"
                    print(
                        f"{name:24} {runtime:12} nodes {record['nodes']:4d} weights {record['weights_mb']:7.1f} MB "
                        f"peak act {record['peak_act_mb']:6.1f} MB  estimate "
                        f"{record['estimate_mb'] or float('nan'):7.1f}  measured {record['measured_mb']:7.1f} "
                        f"(+-{record['spread_mb'] / 2:.1f})  ratio {ratio}",
                        flush=True,
                    )
            path.unlink()
    if args.json:
        print(json.dumps(records, indent=1))
        return
    print()
    for runtime in args.runtime:
        rows = [r for r in records if r["runtime"] == runtime and r["ratio"] is not None]
        if not rows:
            print(f"{runtime}: no memory model in edgekit.analysis.MEMORY_MODELS yet (see --fit)")
        else:
            worst = max(rows, key=lambda r: abs(np.log(r["ratio"])))
            print(
                f"{runtime}: worst estimate/measured ratio {worst['ratio']:.2f} ({worst['model']}) over "
                f"{len(rows)} models (aim: 0.75..1.25)"
            )
        if args.fit:
            rows = [r for r in records if r["runtime"] == runtime]
            coef, loo = fit(rows)
            print(f"  {runtime}:")
            labels = (
                "overhead MB",
                "per 100 nodes MB",
                "x conv weights",
                "x other weights",
                "x large weights",
                "x peak act",
            )
            print(
                "  fit on this run: "
                + ", ".join(f"{label} {value:.3f}" for label, value in zip(labels, coef, strict=True))
            )
            worst_loo = max(zip(rows, loo, strict=True), key=lambda t: abs(np.log(t[1])))
            print(f"  leave-one-out worst ratio {worst_loo[1]:.2f} ({worst_loo[0]['model']})")
    print(
        "measured = peak RSS (VmHWM) growth through session creation + 3 runs over the RSS after import and "
        "input allocation, fresh process, median of --repeat"
    )


if __name__ == "__main__":
    main()
