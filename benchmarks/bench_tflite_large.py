"""Large-model TFLite conversion: edgekit's export against onnx2tf's own command line, same prepared model.

    python benchmarks/bench_tflite_large.py [--model bvlc_alexnet|zfnet512|vgg19|...] [--repeat N]
                                            [--convert-defaults]

Every run converts the *same* prepared ONNX file (edgekit's ingest output, fp32), cold (no onnx2tf
cache), one after the other in this process:
  edgekit   the TFLite backend's export of an android-arm64 fp32 artifact: sandbox, onnx2tf, flatbuffer
            checks and the ONNX Runtime / LiteRT probe that maps the outputs
  cli       `onnx2tf -i model.onnx -o out -nuo` in a scratch dir (-nuo: like edgekit, no onnxsim; the
            sample-image file onnx2tf would download is put there, as edgekit does)
  defaults  (--convert-defaults) `onnx2tf.convert()` with what edgekit passed before this benchmark
            existed: convert()'s own defaults, output_signaturedefs=False - where the difference came from
and prints, per run, wall and CPU seconds (user + system, edgekit's process and its children: what a
busy shared host does not distort) and the converter's peak memory; then edgekit/cli as the ratio of the
best wall times and of the median CPU times (target <= 1.2). Rounds alternate the order (ABBA). Models
come from tests/zoo.py (real classic-zoo architectures, random weights, nothing downloaded): AlexNet is
244 MB of weights, ZFNet-512 349 MB, VGG-19 575 MB.
onnx2tf needs about 7 GB of memory for AlexNet and more for the larger ones: the script refuses to
start below --min-free-gb of available memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Run:
    name: str
    wall_s: float
    cpu_s: float  # user + system of this process and its children: what the load on a shared host hides
    peak_gb: float  # the converter child's resident memory, sampled


class ChildMemory:
    """Samples the summed RSS of this process's direct children (the converter) every 0.2 s."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.2):
            total = 0
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                    if fields[1] == me:
                        total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
                except (OSError, IndexError, ValueError):
                    continue
            self.peak_kb = max(self.peak_kb, total)

    def __enter__(self) -> ChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(name: str, action: Callable[[], object]) -> Run:
    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu_before, started = cpu(), time.perf_counter()
    with ChildMemory() as memory:
        action()
    return Run(name, time.perf_counter() - started, cpu() - cpu_before, memory.peak_kb / 2**20)


def run_subprocess(argv: list[str], cwd: Path) -> None:
    with open(cwd / "log.txt", "w") as handle:
        proc = subprocess.run(argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed (exit {proc.returncode}); log: {cwd / 'log.txt'}")


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
    parser.add_argument("--repeat", type=int, default=1, help="rounds, alternating the order (ABBA)")
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
        backend = get_backend("tflite")
        target = get_target("android-arm64")

        def edgekit(round_: int) -> Run:
            out = work / f"edgekit-{round_}"
            job = ExportJob(prepared, target, "fp32", out, None, ExportOptions())
            shutil.rmtree(work / "cache" / "onnx2tf", ignore_errors=True)  # cold every time
            run = measure("edgekit", lambda: backend.export(job))
            shutil.rmtree(out, ignore_errors=True)
            return run

        def cli(round_: int) -> Run:
            scratch = scratch_with_sample(work, f"cli-{round_}", prepared.path)
            argv = [onnx2tf_cli, "-i", "model.onnx", "-o", "out", "-nuo"]
            run = measure("cli", lambda: run_subprocess(argv, scratch))
            shutil.rmtree(scratch)
            return run

        def defaults(round_: int) -> Run:
            scratch = scratch_with_sample(work, f"defaults-{round_}", prepared.path)
            argv = [sys.executable, "-c", DEFAULTS_RUN, "model.onnx", "out"]
            run = measure("defaults", lambda: run_subprocess(argv, scratch))
            shutil.rmtree(scratch)
            return run

        order = [edgekit, cli] + ([defaults] if args.convert_defaults else [])
        runs: list[Run] = []
        print(f"{'run':<10}{'wall s':>9}{'cpu s':>9}{'peak GB':>9}  load")
        for round_ in range(args.repeat):
            for step in order if round_ % 2 == 0 else order[::-1]:  # ABBA: drift in the load cancels
                run = step(round_)
                runs.append(run)
                load = os.getloadavg()[0]
                print(
                    f"{run.name:<10}{run.wall_s:>9.1f}{run.cpu_s:>9.1f}{run.peak_gb:>9.1f}  {load:.1f}",
                    flush=True,
                )
        best = {name: min(r.wall_s for r in runs if r.name == name) for name in {r.name for r in runs}}
        cpu = {name: statistics.median(r.cpu_s for r in runs if r.name == name) for name in best}
        print(
            "runs: edgekit = TFLiteBackend.export fp32 for android-arm64 (sandbox, onnx2tf, checks, I/O map);"
        )
        print(
            "      cli = onnx2tf -i model.onnx -o out -nuo; defaults = onnx2tf.convert() as edgekit called it before"
        )
        for name in best:
            if name != "cli":
                note = "  (target <= 1.20)" if name == "edgekit" else ""
                print(
                    f"ratio {name}/cli: wall {best[name] / best['cli']:.2f} (best of {args.repeat}), "
                    f"cpu {cpu[name] / cpu['cli']:.2f} (median){note}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
