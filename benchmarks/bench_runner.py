"""Remote-runner overhead figures, printed in one run (`python benchmarks/bench_runner.py`).

(a) the agent's p50 against a bare timing loop around the same onnxruntime call on the same model,
(b) the agent on an OpenVINO IR against OpenVINO's benchmark_app (latency hint) on the same IR,
(c) wall time of a 3-device fleet run (3 loopback sshd) against the slowest single-device run.
(a) and (c) single-threaded (threads=1), (b) the latency hint's default threads on both sides,
so the numbers compare like with like on a shared machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgekit import runner  # noqa: E402
from edgekit.inventory import load_devices  # noqa: E402
from tests.artifacts import make_artifact  # noqa: E402
from tests.sshd import SSHD, keygen, known_hosts_line, make_sshd  # noqa: E402

AGENT = ROOT / "edgekit" / "agent.py"
WIDTH, DEPTH, ITERS = 512, 6, 2000


def run_agent(job: dict, tmp: Path) -> dict:
    path = tmp / "job.json"
    path.write_text(json.dumps(job))
    out = subprocess.run([sys.executable, str(AGENT), str(path)], stdout=subprocess.PIPE, check=True).stdout
    result = json.loads(out)
    if result["status"] != "ok":
        raise SystemExit(f"agent failed: {result['error']}")
    return result


def bare_ort_p50(model: Path) -> float:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(0).standard_normal((1, WIDTH)).astype(np.float32)}
    for _ in range(50):
        sess.run(None, feed)
    samples = []
    for _ in range(ITERS):
        t0 = time.perf_counter()
        sess.run(None, feed)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def part_a(art: Path, tmp: Path) -> None:
    manifest = json.loads((art / "manifest.json").read_text())
    job = {
        "entry": str(art / "model.onnx"),
        "backend": "onnxruntime",
        "inputs": manifest["inputs"],
        "outputs": manifest["outputs"],
        "iterations": ITERS,
        "warmup": 50,
        "threads": 1,
        "seed": 0,
    }
    # Interleave to spread the shared machine's noise over both.
    agent_p50, bare_p50 = [], []
    for _ in range(3):
        agent_p50.append(run_agent(job, tmp)["latency_ms"]["p50"])
        bare_p50.append(bare_ort_p50(art / "model.onnx"))
    a, b = statistics.median(agent_p50), statistics.median(bare_p50)
    print(f"(a) onnxruntime MLP {WIDTH}x{DEPTH}, 1 thread, {ITERS} iterations, median of 3 runs:")
    print(f"    agent p50 {a * 1000:.1f} us | bare loop p50 {b * 1000:.1f} us | overhead ratio {a / b:.3f}")


def part_b(art: Path, tmp: Path) -> None:
    try:
        import openvino as ov
    except ImportError:
        print("(b) skipped: openvino not installed")
        return
    app = shutil.which("benchmark_app")
    if app is None:
        print("(b) skipped: benchmark_app not on PATH")
        return
    xml = tmp / "model.xml"
    ov.save_model(ov.convert_model(str(art / "model.onnx")), str(xml))
    manifest = json.loads((art / "manifest.json").read_text())
    job = {
        "entry": str(xml),
        "backend": "openvino",
        "precision": "fp32",
        "device": "CPU",
        "inputs": manifest["inputs"],
        "outputs": manifest["outputs"],
        "iterations": ITERS,
        "warmup": 50,
        "threads": None,
        "seed": 0,
    }  # benchmark_app refuses -nthreads with -hint latency: both default
    ours, theirs = [], []
    for _ in range(3):
        ours.append(run_agent(job, tmp)["latency_ms"]["p50"])
        text = subprocess.run(
            [
                app,
                "-m",
                str(xml),
                "-d",
                "CPU",
                "-hint",
                "latency",
                "-api",
                "sync",
                "-niter",
                str(ITERS),
                "-infer_precision",
                "f32",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=True,
            text=True,
        ).stdout
        match = re.search(r"Median:\s+([\d.]+)\s*(ms|us|ns)", text)
        if not match:
            print("(b) could not parse benchmark_app output")
            return
        theirs.append(float(match.group(1)) * {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[match.group(2)])
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"(b) OpenVINO IR, CPU, latency hint, sync, default threads, {ITERS} iterations, median of 3 runs:")
    print(f"    agent p50 {a * 1000:.1f} us | benchmark_app median {b * 1000:.1f} us | ratio {a / b:.3f}")


def part_c(art: Path, tmp: Path) -> None:
    if SSHD is None:
        print("(c) skipped: sshd not installed")
        return
    import os

    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    client = keygen(tmp / "client")
    servers = [make_sshd(tmp / f"sshd{i}", Path(f"{client}.pub")).start() for i in range(3)]
    try:
        known = tmp / "known_hosts"
        known.write_text("".join(known_hosts_line(s) for s in servers))
        blocks = [
            f'[devices.dev{i}]\nhost = "127.0.0.1"\nport = {s.port}\nidentity_file = "{client}"\n'
            f'known_hosts = "{known}"\ntarget = "bench-cpu"\nworkdir = "{tmp / f"work{i}"}"\nthreads = 1\n'
            for i, s in enumerate(servers)
        ]
        (tmp / "devices.toml").write_text("\n".join(blocks))
        devices = load_devices(tmp / "devices.toml", ssh_config=tmp / "none")
        artifacts = runner.load_artifacts([art])
        settings = runner.BenchSettings(iterations=200, warmup=20, min_duration_s=1.0, threads=1)
        # Warm each device once (agent + artifact uploaded) so every timed run does the same work.
        jobs, _ = runner.plan(artifacts, devices)
        asyncio.run(runner.run_bench(jobs, settings, tmp / "warm.jsonl"))
        singles = []
        for name in ("dev0", "dev1", "dev2"):
            one, _ = runner.plan(artifacts, devices, explicit=[name])
            t0 = time.perf_counter()
            (rec,) = asyncio.run(runner.run_bench(one, settings, tmp / f"{name}.jsonl"))
            singles.append(time.perf_counter() - t0)
            assert rec["status"] == "ok", rec["error"]
        t0 = time.perf_counter()
        records = asyncio.run(runner.run_bench(jobs, settings, tmp / "fleet.jsonl", concurrency=3))
        fleet = time.perf_counter() - t0
        assert all(r["status"] == "ok" for r in records)
        print("(c) 3 loopback sshd devices, 1 artifact, >= 1 s of iterations each (2 shared host cores):")
        print(
            f"    single-device runs {', '.join(f'{s:.2f}' for s in singles)} s"
            f" | slowest {max(singles):.2f} s"
            f" | 3-device fleet {fleet:.2f} s | fleet/slowest {fleet / max(singles):.2f}"
        )
    finally:
        for s in servers:
            s.kill()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgekit-bench-") as name:
        tmp = Path(name)
        art = make_artifact(tmp / "mlp", target="bench-cpu", width=WIDTH, depth=DEPTH)
        part_a(art, tmp)
        part_b(art, tmp)
        part_c(art, tmp)


if __name__ == "__main__":
    main()
