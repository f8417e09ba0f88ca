"""edgekit pipeline stage server: runs one shard of a split model on a device, fed over its stdin.

Copied to the device next to edgekit's agent and started as ``python3 stage_server.py AGENT.py JOB.json``.
It loads the artifact with the agent's own runners (so every backend the agent runs works here) and
then serves frames until stdin closes or an empty frame arrives:

  host -> stage  [8-byte big-endian length][.npz of the shard's inputs, keyed by source name]
  stage -> host  [8-byte length][4-byte JSON length][JSON][.npz of the shard's outputs]

The first reply (before any input) says the runner is ready (init time, RSS before loading); each
later one carries the device-side compute time of that frame; the last one (after the empty frame)
the process's peak RSS. Only frames go to stdout: anything a native runtime prints goes to stderr.
Same constraints as the agent: Python 3.6, standard library, numpy and the runtime only.
"""

import importlib.util
import io
import json
import os
import struct
import sys
import time


def load_agent(path):
    spec = importlib.util.spec_from_file_location("edgekit_agent", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_exactly(stream, count):
    chunks = []
    while count:
        chunk = stream.read(count)
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def send(out, meta, payload=b""):
    head = json.dumps(meta).encode("utf-8")
    out.write(struct.pack(">QI", 4 + len(head) + len(payload), len(head)) + head + payload)
    out.flush()


def serve(agent, job, stdin, out):
    np = agent.import_numpy()
    for module in getattr(agent, "RUNTIME_MODULES", {}).get(job["backend"], ()):
        try:  # imported before the baseline: what loading the shard adds is the shard's memory
            __import__(module)
        except ImportError:
            pass  # the runner reports it
    rss_before = agent.current_rss_mb()
    t0 = time.perf_counter()
    runner = agent.RUNNERS[job["backend"]](job, job["entry"])
    init_ms = (time.perf_counter() - t0) * 1000.0
    specs = job["inputs"]
    out_specs = job.get("outputs") or []
    send(
        out,
        {
            "status": "ready",
            "init_ms": init_ms,
            "rss_before_load_mb": rss_before,
            "runtime": {"name": runner.runtime, "version": str(runner.version)},
        },
    )
    names = None
    while True:
        head = read_exactly(stdin, 8)
        if head is None:
            break
        (length,) = struct.unpack(">Q", head)
        if length == 0:
            break
        payload = read_exactly(stdin, length)
        if payload is None:
            break
        started = time.perf_counter()
        data = np.load(io.BytesIO(payload))
        feed = []
        for spec in specs:
            key = spec.get("source_name") or spec["name"]
            if key not in data.files:
                key = spec["name"]
            feed.append(agent.adapt_input(np, spec, data[key]))
        t1 = time.perf_counter()
        outs = runner.infer(feed)
        compute_ms = (time.perf_counter() - t1) * 1000.0
        if names is None:
            names = agent.output_names(runner.output_names, out_specs, len(outs))
        arrays = {}
        for i, value in enumerate(outs):
            spec = out_specs[i] if i < len(out_specs) else None
            arrays[names[i]] = agent.adapt_output(np, spec, np.asarray(value))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        busy_ms = (time.perf_counter() - started) * 1000.0
        send(out, {"status": "ok", "compute_ms": compute_ms, "busy_ms": busy_ms}, buffer.getvalue())
    runner.close()
    send(out, {"status": "done", "peak_rss_mb": agent.peak_rss_mb()})


def main(argv):
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # native libraries that print go to stderr
    sys.stdout = sys.stderr
    stdin = os.fdopen(0, "rb", buffering=0)
    try:
        agent = load_agent(argv[1])
        with open(argv[2]) as handle:
            job = json.load(handle)
        job_dir = os.path.dirname(os.path.abspath(argv[2]))
        job["entry"] = job["entry"] if os.path.isabs(job["entry"]) else os.path.join(job_dir, job["entry"])
        serve(agent, job, stdin, frames)
    except Exception as exc:  # noqa: BLE001 - one JSON error frame, then exit
        send(frames, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
