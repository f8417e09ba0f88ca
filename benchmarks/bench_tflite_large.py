"""Large-model TFLite conversion: edgekit's export against onnx2tf's own command line, same prepared model.

    python benchmarks/bench_tflite_large.py [--model bvlc_alexnet|zfnet512|vgg19|...] [--convert-defaults]

Both runs convert the *same* prepared ONNX file (edgekit's ingest output, fp32), cold (a private onnx2tf
cache), one after the other in this run:
  edgekit  the TFLite backend's export of an android-arm64 fp32 artifact: sandbox, onnx2tf, flatbuffer
           checks and the ONNX Runtime / LiteRT probe that maps the outputs
  cli      `onnx2tf -i model.onnx -o out -nuo` in a scratch dir (-nuo: like edgekit, no onnxsim; the
           sample-image file onnx2tf would download is put there, as edgekit does)
and prints edgekit/cli (target: <= 1.2) and each run's peak memory. `--convert-defaults` adds a third run: `onnx2tf.convert()` with
what edgekit passed before this benchmark existed (convert()'s own defaults: output_signaturedefs=False),
to show where the difference came from. Models come from tests/zoo.py (real classic-zoo architectures,
random weights, nothing downloaded): AlexNet is 244 MB of weights, ZFNet-512 349 MB, VGG-19 575 MB.
onnx2tf needs about 7 GB of memory for AlexNet and more for the larger ones: the script refuses to
start below --min-free-gb of available memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgekit.backends import get_backend  # noqa: E402
from edgekit.backends.base import ExportJob, ExportOptions  # noqa: E402
from edgekit.backends.tflite.plan import SAMPLE_FILE  # noqa: E402
from edgekit.errors import BadInput  # noqa: E402
from edgekit.ingest import PrepareOptions, prepare  # noqa: E402
from edgekit.targets import get as get_target  # noqa: E402
from tests.zoo import ZOO, zoo_model  # noqa: E402

DEFAULTS_RUN = """\
import sys, onnx2tf
onnx2tf.convert(input_onnx_file_path=sys.argv[1], output_folder_path=sys.argv[2], not_use_onnxsim=True,
                verbosity="info")
"""


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def prepared_model(name: str, work: Path) -> Path:
    """The zoo model through edgekit's ingest, as an fp32 tflite export prepares it."""
    backend = get_backend("tflite")
    options = PrepareOptions(static_shapes=True, name_pattern=backend.name_pattern)
    source = zoo_model(name, work / f"{name}.onnx")
    try:
        prepared = prepare(source, options)
    except BadInput as exc:
        # IR < 4 (initializers listed as inputs) until ingest accepts it (issue 9): normalise it here
        print(
            f"note: ingest refused the IR-3 original ({exc}); using an IR-7 copy without initializer inputs"
        )
        model = onnx.load(str(source))
        initializers = {t.name for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
        model.ir_version = 7
        onnx.save(model, str(source))
        prepared = prepare(source, options)
    return prepared


def timed_subprocess(argv: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """(seconds, peak RSS GB) of one child, output to `log`."""
    started = time.perf_counter()
    with open(log, "w") as handle:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed (exit {proc.returncode}); log: {log}")
    return seconds, usage.ru_maxrss / 2**20


def scratch_with_sample(work: Path, name: str, model: Path) -> Path:
    scratch = work / name
    scratch.mkdir()
    shutil.copyfile(model, scratch / "model.onnx")
    rng = np.random.default_rng(0)
    np.save(scratch / SAMPLE_FILE, rng.random((20, 128, 128, 3), dtype=np.float32))
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bvlc_alexnet", choices=ZOO)
    parser.add_argument("--convert-defaults", action="store_true", help="also time convert()'s defaults")
    parser.add_argument("--min-free-gb", type=float, default=8.0, help="refuse to start below this")
    args = parser.parse_args()
    free = mem_available_gb()
    print(f"host: {os.cpu_count()} cores, {free:.1f} GB available, load {os.getloadavg()[0]:.1f}")
    if free < args.min_free_gb:
        raise SystemExit(f"only {free:.1f} GB available (< --min-free-gb {args.min_free_gb}): not starting")
    onnx2tf_cli = shutil.which("onnx2tf")
    if onnx2tf_cli is None:
        raise SystemExit("the onnx2tf command is not installed (pip install 'edgekit[tflite]')")
    work = Path(tempfile.mkdtemp(prefix="edgekit-bench-large-"))
    os.environ["EDGEKIT_CACHE_DIR"] = str(work / "cache")  # cold: no onnx2tf output to reuse
    try:
        started = time.perf_counter()
        prepared = prepared_model(args.model, work)
        mb = prepared.path.stat().st_size / 2**20
        print(
            f"model: {args.model}, prepared ONNX {mb:.0f} MB (prepare {time.perf_counter() - started:.0f} s)"
        )
        rows = []

        backend = get_backend("tflite")
        job = ExportJob(
            prepared, get_target("android-arm64"), "fp32", work / "edgekit", None, ExportOptions()
        )
        started = time.perf_counter()
        result = backend.export(job)
        seconds = time.perf_counter() - started
        # the first child that did real work: the converter (so the edgekit run goes first)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        convert_s = result.details["convert_seconds"]
        rows.append(("edgekit", f"TFLiteBackend.export fp32 (onnx2tf {convert_s:.0f} s of it)", seconds, rss))

        scratch = scratch_with_sample(work, "cli", prepared.path)
        argv = [onnx2tf_cli, "-i", "model.onnx", "-o", "out", "-nuo"]
        seconds, rss = timed_subprocess(argv, scratch, scratch / "log.txt")
        rows.append(("cli", "onnx2tf -i model.onnx -o out -nuo", seconds, rss))
        shutil.rmtree(scratch)

        if args.convert_defaults:
            scratch = scratch_with_sample(work, "defaults", prepared.path)
            argv = [sys.executable, "-c", DEFAULTS_RUN, "model.onnx", "out"]
            seconds, rss = timed_subprocess(argv, scratch, scratch / "log.txt")
            rows.append(
                ("defaults", "onnx2tf.convert(...) with convert()'s defaults (edgekit before)", seconds, rss)
            )
            shutil.rmtree(scratch)

        print(f"{'run':<10}{'seconds':>9}{'peak GB':>9}  what")
        for name, what, secs, peak in rows:
            print(f"{name:<10}{secs:>9.1f}{peak:>9.1f}  {what}")
        cli_s = rows[1][2]
        for name, _, secs, _ in rows:
            if name != "cli":
                note = "  (target <= 1.20)" if name == "edgekit" else ""
                print(f"ratio {name}/cli: {secs / cli_s:.2f}{note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
