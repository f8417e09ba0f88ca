# -*- coding: utf-8 -*-
"""edgekit device agent: one self-contained file, run with the device's own Python (3.6+).

It is copied to the device and started as ``python3 agent.py JOB.json`` (benchmark), or
``python3 agent.py --probe`` (what `edgekit devices check` needs). Only the standard library is
imported at top level; the one runtime the artifact needs (onnxruntime, openvino, a TFLite
interpreter, tensorrt or trtexec) and numpy are imported lazily. Exactly ONE JSON document is
written to the original stdout; anything a native runtime prints goes to stderr (fd 1 is pointed at
fd 2 while the agent works), so the host can always parse stdout.

Job file keys (written by edgekit.runner):
  entry         artifact entry file (absolute, or relative to the job file)
  backend       onnxruntime | openvino | tflite | tensorrt
  precision     fp32 | fp16 | int8 (openvino: fp32 pins the f32 inference precision hint)
  inputs        [{name, source_name, shape, dtype, layout, quant}]  (manifest input specs; shapes as
                timed: a dynamic dim other than a leading batch is an error naming it)
  input_ranges  {input name: {"kind": "ids", "high": vocab} | {"kind": "ones"} | {"kind": "zeros"} |
                {"kind": "positions"}}: what integer inputs are fed (ids in [0, vocab), masks 1, token
                types 0, positions 0..T-1); an integer input without one is fed 0, never random negatives
  outputs       [{name, source_name, shape, dtype, layout, quant}]  (optional)
  iterations, warmup, min_duration_s, threads, device (e.g. "CPU", "GPU"), seed
  validation    optional .npz path (arrays keyed by source input name, first axis = samples,
                source layout); every sample is run and the outputs are written to
  outputs_file  an .npz (default: outputs.npz next to the job file), keyed by SOURCE output name,
                float32, first axis = samples, channel-last outputs (NWC/NHWC/NDHWC) transposed back. The host
                downloads that file and feeds it to edgekit.fidelity.compare.
  timeout_s     soft limit for trtexec subprocesses
  repeats       independent sessions to time (default 1): each loads the artifact afresh and runs
                `iterations`; their medians give the run-to-run spread (`repeat_p50_ms`, `run_spread_pct`)
  keep_samples  most per-iteration latencies kept in the result (default 20000); above it a log-bucket
                histogram (0.1% wide buckets) replaces them, exact enough for the report's percentiles

Must stay Python 3.6 syntax: no f-string "=", no walrus, no dataclasses, no positional-only params,
no subprocess capture_output=.
"""

import json
import math
import os
import platform
import subprocess
import sys
import time

AGENT_VERSION = "1"

INSTALL_HINTS = {
    "onnxruntime": "pip3 install onnxruntime",
    "openvino": "pip3 install openvino",
    "tflite": "pip3 install ai-edge-litert (or tflite-runtime, or tensorflow)",
    "tensorrt": "install TensorRT (JetPack ships it; or pip3 install tensorrt) or put trtexec on PATH",
    "numpy": "pip3 install numpy",
}


class AgentError(Exception):
    """A failure the agent reports in its JSON, with a machine-readable kind."""

    def __init__(self, message, kind="error"):
        Exception.__init__(self, message)
        self.kind = kind


def missing_runtime(name, detail=""):
    msg = "runtime %s not found on this device: install it with: %s" % (name, INSTALL_HINTS.get(name, name))
    if detail:
        msg += " (%s)" % detail
    return AgentError(msg, "missing_runtime")


# ----------------------------------------------------------------------------- statistics (pure Python)


def percentile(sorted_values, q):
    """Linear interpolation between closest ranks (numpy's default method)."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    pos = (len(sorted_values) - 1) * (q / 100.0)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def latency_stats(samples_ms):
    values = sorted(samples_ms)
    n = len(values)
    if n == 0:
        return {}
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    return {
        "min": values[0],
        "mean": mean,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": values[-1],
        "std": math.sqrt(var),
        "count": n,
    }


HISTOGRAM_STEP = 1.001  # bucket i holds latencies in [STEP**i, STEP**(i+1)) ms: 0.1% wide
SAMPLE_DECIMALS = 4  # ms: 0.1 microsecond


def compact_samples(samples_ms, keep=20000):
    """The per-iteration latencies in run order (rounded to 0.1 us), or a histogram when there are
    more than `keep`: {"step": 1.001, "buckets": [[index, count], ...]} with index = floor(log_step(ms))."""
    if len(samples_ms) <= keep:
        return {"latency_samples_ms": [round(v, SAMPLE_DECIMALS) for v in samples_ms]}
    counts = {}
    log_step = math.log(HISTOGRAM_STEP)
    for value in samples_ms:
        index = int(math.floor(math.log(max(value, 1e-6)) / log_step))
        counts[index] = counts.get(index, 0) + 1
    return {
        "latency_histogram": {"step": HISTOGRAM_STEP, "buckets": [[k, counts[k]] for k in sorted(counts)]}
    }


def block_medians(samples_ms, blocks=5):
    """Medians of `blocks` consecutive slices of a run: drift within the run (warm-up, throttling)."""
    n = len(samples_ms)
    if n < blocks * 5:
        return []
    size = n // blocks
    return [percentile(sorted(samples_ms[i * size : (i + 1) * size]), 50) for i in range(blocks)]


def spread_pct(values):
    """(max - min) / median of a few medians, in percent; None for fewer than two."""
    if len(values) < 2:
        return None
    mid = percentile(sorted(values), 50)
    return (max(values) - min(values)) / mid * 100.0 if mid > 0 else None


def cpu_ticks():
    """(busy, total) jiffies of the whole machine from /proc/stat, or None."""
    text = read_text("/proc/stat", 4096)
    if not text or not text.startswith("cpu "):
        return None
    try:
        fields = [int(v) for v in text.splitlines()[0].split()[1:9]]
    except ValueError:
        return None
    total = sum(fields)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return total - idle, total


def self_ticks():
    """This process's CPU time (all threads: the runtime's workers too) in jiffies."""
    times = os.times()
    try:
        hz = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        hz = 100
    return (times[0] + times[1]) * hz


def temperatures_c():
    """Thermal zones (name -> degrees C) where sysfs exposes them."""
    out = {}
    root = "/sys/class/thermal"
    try:
        zones = sorted(d for d in os.listdir(root) if d.startswith("thermal_zone"))
    except OSError:
        return out
    for zone in zones:
        temp = read_text(os.path.join(root, zone, "temp"))
        if temp and temp.lstrip("-").isdigit():
            kind = read_text(os.path.join(root, zone, "type")) or zone
            key = kind if kind not in out else "%s/%s" % (kind, zone)
            out[key] = int(temp) / 1000.0
    return out


def throttle_count():
    """Thermal throttling events so far: x86 `thermal_throttle/*_count` summed over CPUs; None when
    the kernel does not expose them."""
    root = "/sys/devices/system/cpu"
    total = None
    try:
        cpus = [d for d in os.listdir(root) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        return None
    for cpu in cpus:
        folder = os.path.join(root, cpu, "thermal_throttle")
        for name in ("core_throttle_count", "package_throttle_count"):
            value = read_text(os.path.join(folder, name))
            if value and value.isdigit():
                total = (total or 0) + int(value)
    return total


def rpi_throttled():
    """Raspberry Pi firmware throttling flags (`vcgencmd get_throttled`), e.g. "0x50005"; or None."""
    if not which("vcgencmd"):
        return None
    out = run_quiet(["vcgencmd", "get_throttled"])
    return out.split("=", 1)[-1] if out else None


def governors():
    """The cpufreq governors in use (usually one for all CPUs)."""
    root = "/sys/devices/system/cpu"
    found = set()
    try:
        cpus = [d for d in os.listdir(root) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        return []
    for cpu in cpus:
        value = read_text(os.path.join(root, cpu, "cpufreq", "scaling_governor"))
        if value:
            found.add(value)
    return sorted(found)


def conditions_snapshot():
    load = None
    try:
        load = list(os.getloadavg())
    except (OSError, AttributeError):
        pass
    return {
        "time": time.perf_counter(),
        "ticks": cpu_ticks(),
        "self_ticks": self_ticks(),
        "load": load,
        "temps": temperatures_c(),
        "throttle": throttle_count(),
    }


def conditions(before, after):
    """What may have disturbed the timed loop: other processes' share of the CPUs while it ran (from
    /proc/stat minus this process's own CPU time), load averages, temperatures and throttling."""
    out = {
        "cpu_count": os.cpu_count(),
        "governors": governors(),
        "load_avg_before": before["load"],
        "load_avg_after": after["load"],
        "temperature_c_before": before["temps"] or None,
        "temperature_c_after": after["temps"] or None,
        "throttle_events": None,
        "rpi_throttled": rpi_throttled(),
        "other_cpu_pct": None,
        "self_cpu_pct": None,
    }
    if before["throttle"] is not None and after["throttle"] is not None:
        out["throttle_events"] = after["throttle"] - before["throttle"]
    if before["ticks"] and after["ticks"]:
        busy = after["ticks"][0] - before["ticks"][0]
        total = after["ticks"][1] - before["ticks"][1]
        mine = after["self_ticks"] - before["self_ticks"]
        if total > 0:
            # percent of the machine's whole CPU capacity (all cores) over the loop
            out["self_cpu_pct"] = round(min(100.0, mine * 100.0 / total), 2)
            out["other_cpu_pct"] = round(max(0.0, (busy - mine) * 100.0 / total), 2)
    return out


# ----------------------------------------------------------------------------- memory and environment


def read_text(path, limit=65536):
    try:
        with open(path, "r") as fh:
            return fh.read(limit).strip()
    except (IOError, OSError):
        return None


def proc_status_kb(key):
    text = read_text("/proc/self/status")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith(key + ":"):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def peak_rss_mb():
    hwm = proc_status_kb("VmHWM")
    if hwm is not None:
        return hwm / 1024.0
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes.
        return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
    except Exception:  # noqa: BLE001 - environment probing must never fail the run
        return None


def current_rss_mb():
    rss = proc_status_kb("VmRSS")
    return None if rss is None else rss / 1024.0


def run_quiet(argv, timeout=5.0):
    """stdout of a small probing command, or None."""
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            return None
        return out.decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001
        return None


def which(name):
    for folder in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/src/tensorrt/bin"]:
        candidate = os.path.join(folder, name)
        if folder and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def cpu_model():
    text = read_text("/proc/cpuinfo", 1 << 20) or ""
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            if key not in fields and value.strip():
                fields[key] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in fields:
            return fields[key]
    return platform.processor() or platform.machine()


def mem_info_mb():
    text = read_text("/proc/meminfo") or ""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("MemTotal:", "MemAvailable:"):
            out[parts[0][:-1]] = int(parts[1]) / 1024.0
    return {"total_mb": out.get("MemTotal"), "available_mb": out.get("MemAvailable")}


def clocks():
    """CPU (and Jetson GPU/EMC) clocks where sysfs lets us read them."""
    out = {}
    cpu_root = "/sys/devices/system/cpu"
    try:
        cpus = sorted(d for d in os.listdir(cpu_root) if d.startswith("cpu") and d[3:].isdigit())
    except OSError:
        cpus = []
    freqs = {}
    for cpu in cpus:
        cur = read_text(os.path.join(cpu_root, cpu, "cpufreq", "scaling_cur_freq"))
        top = read_text(os.path.join(cpu_root, cpu, "cpufreq", "scaling_max_freq"))
        if cur and cur.isdigit():
            freqs[cpu] = {"cur_mhz": int(cur) / 1000.0}
            if top and top.isdigit():
                freqs[cpu]["max_mhz"] = int(top) / 1000.0
    if freqs:
        out["cpu"] = freqs
    devfreq = "/sys/class/devfreq"
    try:
        for dev in sorted(os.listdir(devfreq)):
            cur = read_text(os.path.join(devfreq, dev, "cur_freq"))
            if cur and cur.isdigit():
                out.setdefault("devfreq", {})[dev] = int(cur) / 1e6
    except OSError:
        pass
    emc = read_text("/sys/kernel/debug/clk/emc/clk_rate")
    if emc and emc.isdigit():
        out["emc_mhz"] = int(emc) / 1e6
    return out


def environment(runtime_versions):
    uname = platform.uname()
    env = {
        "os": platform.platform(),
        "system": uname[0],
        "kernel": uname[2],
        "machine": uname[4],
        "hostname": uname[1],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runtimes": runtime_versions,
        "cpu_governor": read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "memory": mem_info_mb(),
        "clocks": clocks(),
    }
    release = read_text("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            env["distro"] = line.split("=", 1)[1].strip().strip('"')
    tegra = read_text("/etc/nv_tegra_release")
    if tegra:
        env["l4t"] = tegra.splitlines()[0]
    model = read_text("/proc/device-tree/model")
    if model:
        env["board"] = model.replace("\x00", "")
    if which("nvpmodel"):
        mode = run_quiet(["nvpmodel", "-q"])
        if mode:
            env["power_mode"] = " ".join(mode.split())
    return env


# ----------------------------------------------------------------------------- runtimes


def import_numpy():
    try:
        import numpy

        return numpy
    except ImportError:
        raise missing_runtime("numpy")


def np_dtype(np, name):
    aliases = {"float": "float32", "half": "float16", "bool": "bool_"}
    name = aliases.get(name, name)
    return np.bool_ if name == "bool_" else np.dtype(name)


class Runner(object):
    """One loaded artifact: `infer(list of arrays in job input order) -> list of arrays`."""

    runtime = ""
    version = ""
    output_names = ()

    def infer(self, arrays):
        raise NotImplementedError

    def close(self):
        pass


class OrtRunner(Runner):
    runtime = "onnxruntime"

    def __init__(self, job, path):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise missing_runtime("onnxruntime", str(exc))
        self.version = ort.__version__
        opts = ort.SessionOptions()
        if job.get("threads"):
            opts.intra_op_num_threads = int(job["threads"])
        opts.log_severity_level = 3
        device = (job.get("device") or "CPU").upper()
        providers = ["CPUExecutionProvider"]
        if device in ("CUDA", "GPU"):
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.order = match_names([spec["name"] for spec in job["inputs"]], self.input_names)

    def infer(self, arrays):
        feed = {}
        for idx, name in enumerate(self.order):
            feed[name] = arrays[idx]
        return self.session.run(None, feed)


class OpenVinoRunner(Runner):
    runtime = "openvino"

    def __init__(self, job, path):
        Core = None
        try:
            import openvino

            Core = getattr(openvino, "Core", None)
            self.version = getattr(openvino, "__version__", "")
        except ImportError:
            pass
        if Core is None:
            try:
                from openvino.runtime import Core, get_version

                self.version = get_version()
            except ImportError as exc:
                raise missing_runtime("openvino", str(exc))
        if not self.version:
            try:
                from openvino.runtime import get_version

                self.version = get_version()
            except ImportError:
                self.version = "unknown"
        try:
            from openvino import Tensor
        except ImportError:
            from openvino.runtime import Tensor
        self.ov_tensor = Tensor
        core = Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if job.get("precision", "fp32") == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        if job.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(job["threads"])
        device = job.get("device") or "CPU"
        self.compiled = core.compile_model(path, device, config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [port_name(p, i) for i, p in enumerate(self.compiled.inputs)]
        self.output_names = [port_name(p, i) for i, p in enumerate(self.compiled.outputs)]
        self.order = match_names([spec["name"] for spec in job["inputs"]], self.input_names)
        self.n_outputs = len(self.compiled.outputs)

    def infer(self, arrays):
        # The same input list again (the timing loop) is already bound to the request: infer() alone,
        # as benchmark_app measures. Outputs are views into the request's buffers (callers copy).
        if arrays is not getattr(self, "_bound", None):
            for idx, name in enumerate(self.order):
                self.request.set_input_tensor(self.input_names.index(name), self.ov_tensor(arrays[idx]))
            self._bound = arrays
        self.request.infer()
        return [self.request.get_output_tensor(i).data for i in range(self.n_outputs)]


def port_name(port, index):
    try:
        return port.get_any_name()
    except Exception:  # noqa: BLE001 - unnamed ports exist
        return "output_%d" % index


class TfliteRunner(Runner):
    runtime = "tflite"

    def __init__(self, job, path):
        Interpreter = None
        errors = []
        for module, label in (
            ("ai_edge_litert.interpreter", "ai-edge-litert"),
            ("tflite_runtime.interpreter", "tflite-runtime"),
            ("tensorflow.lite", "tensorflow"),
        ):
            try:
                mod = __import__(module, fromlist=["Interpreter"])
                Interpreter = mod.Interpreter
                self.runtime = "tflite (%s)" % label
                top = __import__(module.split(".")[0])
                self.version = getattr(top, "__version__", "") or getattr(mod, "__version__", "")
                break
            except ImportError as exc:
                errors.append(str(exc))
        if Interpreter is None:
            raise missing_runtime("tflite", "; ".join(errors))
        threads = int(job.get("threads") or 0) or None
        self.interp = Interpreter(model_path=path, num_threads=threads)
        self.interp.allocate_tensors()
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()
        names = [d["name"] for d in self.inputs]
        order = match_names([spec["name"] for spec in job["inputs"]], names)
        self.index = [self.inputs[names.index(n)]["index"] for n in order]
        self.output_names = [d["name"] for d in self.outputs]

    def infer(self, arrays):
        for idx, array in zip(self.index, arrays):
            self.interp.set_tensor(idx, array)
        self.interp.invoke()
        return [self.interp.get_tensor(d["index"]) for d in self.outputs]


class TensorRtRunner(Runner):
    """A serialized engine through the TensorRT Python runtime; buffers via cuda-python or pycuda."""

    runtime = "tensorrt"

    def __init__(self, job, path):
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise missing_runtime("tensorrt", str(exc))
        self.version = trt.__version__
        np = import_numpy()
        self.np = np
        self.cuda = CudaMemory()
        logger = trt.Logger(trt.Logger.WARNING)
        with open(path, "rb") as fh:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(fh.read())
        if self.engine is None:
            raise AgentError("TensorRT could not deserialize %s (built for another GPU/TensorRT?)" % path)
        self.context = self.engine.create_execution_context()
        self.v3 = hasattr(self.engine, "num_io_tensors")
        self.bindings = []  # (name, is_input, shape, dtype, device_ptr)
        if self.v3:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            for name in names:
                is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
                shape = tuple(self.engine.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                self.bindings.append([name, is_input, shape, dtype, None])
        else:
            for i in range(self.engine.num_bindings):
                name = self.engine.get_binding_name(i)
                is_input = self.engine.binding_is_input(i)
                shape = tuple(self.engine.get_binding_shape(i))
                dtype = np.dtype(trt.nptype(self.engine.get_binding_dtype(i)))
                self.bindings.append([name, is_input, shape, dtype, None])
        for b in self.bindings:
            if any(d < 0 for d in b[2]):
                raise AgentError(
                    "engine tensor %s has a dynamic shape %s; build it with static shapes"
                    % (b[0], list(b[2]))
                )
            b[4] = self.cuda.alloc(int(np.prod(b[2])) * b[3].itemsize)
        in_names = [b[0] for b in self.bindings if b[1]]
        self.order = match_names([spec["name"] for spec in job["inputs"]], in_names)
        self.output_names = [b[0] for b in self.bindings if not b[1]]
        self.stream = self.cuda.stream()

    def infer(self, arrays):
        np = self.np
        by_name = dict(zip(self.order, arrays))
        for name, is_input, shape, dtype, ptr in self.bindings:
            if is_input:
                self.cuda.h2d(ptr, np.ascontiguousarray(by_name[name], dtype=dtype), self.stream)
        if self.v3:
            for name, _, _, _, ptr in self.bindings:
                self.context.set_tensor_address(name, int(ptr))
            self.context.execute_async_v3(self.cuda.stream_handle(self.stream))
        else:
            self.context.execute_async_v2(
                [int(b[4]) for b in self.bindings], self.cuda.stream_handle(self.stream)
            )
        outs = []
        for name, is_input, shape, dtype, ptr in self.bindings:
            if not is_input:
                host = np.empty(shape, dtype=dtype)
                self.cuda.d2h(host, ptr, self.stream)
                outs.append(host)
        self.cuda.sync(self.stream)
        return outs

    def close(self):
        for b in self.bindings:
            if b[4] is not None:
                self.cuda.free(b[4])
                b[4] = None


class CudaMemory(object):
    """The few CUDA calls the TensorRT runner needs, from pycuda (JetPack 4) or cuda-python."""

    def __init__(self):
        try:
            import pycuda.autoinit  # noqa: F401
            import pycuda.driver as drv

            self.drv = drv
            self.kind = "pycuda"
            return
        except ImportError:
            pass
        try:
            try:
                from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (only one in 13.x)
            except ImportError:
                from cuda import cudart  # older cuda-python

            self.cudart = cudart
            self.kind = "cuda-python"
        except ImportError:
            raise AgentError(
                "TensorRT needs pycuda or cuda-python on the device to run an engine "
                "(pip3 install pycuda / cuda-python), or trtexec on PATH",
                "missing_runtime",
            )

    def _check(self, result):
        err = result[0]
        if int(err) != 0:
            raise AgentError("CUDA error %s" % err)
        return result[1] if len(result) > 1 else None

    def alloc(self, nbytes):
        if self.kind == "pycuda":
            return self.drv.mem_alloc(max(nbytes, 1))
        return self._check(self.cudart.cudaMalloc(max(nbytes, 1)))

    def free(self, ptr):
        if self.kind == "pycuda":
            ptr.free()
        else:
            self._check(self.cudart.cudaFree(ptr))

    def stream(self):
        if self.kind == "pycuda":
            return self.drv.Stream()
        return self._check(self.cudart.cudaStreamCreate())

    def stream_handle(self, stream):
        return stream.handle if self.kind == "pycuda" else int(stream)

    def h2d(self, ptr, host, stream):
        if self.kind == "pycuda":
            self.drv.memcpy_htod_async(ptr, host, stream)
        else:
            self._check(
                self.cudart.cudaMemcpyAsync(
                    ptr,
                    host.ctypes.data,
                    host.nbytes,
                    self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    stream,
                )
            )

    def d2h(self, host, ptr, stream):
        if self.kind == "pycuda":
            self.drv.memcpy_dtoh_async(host, ptr, stream)
        else:
            self._check(
                self.cudart.cudaMemcpyAsync(
                    host.ctypes.data,
                    ptr,
                    host.nbytes,
                    self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                    stream,
                )
            )

    def sync(self, stream):
        if self.kind == "pycuda":
            stream.synchronize()
        else:
            self._check(self.cudart.cudaStreamSynchronize(stream))


RUNTIME_MODULES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",), "tensorrt": ("tensorrt",)}

RUNNERS = {
    "onnxruntime": OrtRunner,
    "openvino": OpenVinoRunner,
    "tflite": TfliteRunner,
    "tensorrt": TensorRtRunner,
}


def match_names(wanted, available):
    """Map job input names onto the runtime's names: exact, then a suffix/prefix match, then order."""
    result = []
    for pos, name in enumerate(wanted):
        if name in available:
            result.append(name)
            continue
        loose = [a for a in available if a.split(":")[0].endswith(name) or name.endswith(a.split(":")[0])]
        if len(loose) == 1:
            result.append(loose[0])
        elif len(wanted) == len(available):
            result.append(available[pos])
        else:
            raise AgentError("input %r not found in the artifact (it has %s)" % (name, available))
    return result


# ----------------------------------------------------------------------------- inputs


def static_shape(spec, batch_default=1):
    shape = []
    for i, dim in enumerate(spec["shape"]):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        else:
            shape.append(batch_default if i == 0 else 1)
    return shape


def timed_shape(spec):
    """The shape a benchmark times: every dim stated, a leading dynamic batch taken as 1."""
    for axis, dim in enumerate(spec["shape"]):
        if axis > 0 and not (isinstance(dim, int) and dim > 0):
            raise AgentError(
                "input %r dimension %d (%r) is dynamic and no shape was given: state it with "
                "--input-shape" % (spec.get("source_name", spec["name"]), axis, dim)
            )
    return static_shape(spec)


def random_input(np, rng, spec, ranges=None):
    shape = timed_shape(spec)
    dtype = np_dtype(np, spec.get("dtype", "float32"))
    if np.issubdtype(dtype, np.integer):
        kind = (ranges or {}).get(spec["name"]) or {}
        if kind.get("kind") == "ids" and int(kind.get("high") or 0) > 0:
            return rng.randint(0, int(kind["high"]), size=shape).astype(dtype)
        if kind.get("kind") == "ones":
            return np.ones(shape, dtype=dtype)
        if kind.get("kind") == "positions" and shape:
            return np.broadcast_to(np.arange(shape[-1]), shape).astype(dtype)
        return np.zeros(shape, dtype=dtype)
    if dtype == np.bool_:
        return rng.randint(0, 2, size=shape).astype(np.bool_)
    return rng.standard_normal(shape).astype(dtype)


def input_source(seed, specs, ranges):
    """What the timed feed holds: random floats, and per integer input what it was fed."""
    parts = []
    for spec in specs:
        kind = (ranges or {}).get(spec["name"]) or {}
        if spec.get("dtype", "float32").startswith(("int", "uint")):
            if kind.get("kind") == "ids":
                parts.append("%s ids [0, %s)" % (spec["name"], kind.get("high")))
            elif kind.get("kind") == "ones":
                parts.append("%s all 1" % spec["name"])
            elif kind.get("kind") == "positions":
                parts.append("%s positions" % spec["name"])
            else:
                parts.append("%s 0" % spec["name"])
    text = "random(seed=%d)" % seed
    return text + ("; " + ", ".join(parts) if parts else "")


def channel_last(spec, ndim):
    """True when the artifact holds this tensor channel-last (NWC, NHWC, NDHWC) while the source model
    is channel-first (NCW, NCHW, NCDHW): its layout names N first, C last and has the tensor's rank."""
    layout = (spec.get("layout") or "").upper() if spec else ""
    if ndim < 3 or len(layout) != ndim:
        return False
    return layout[0] == "N" and layout[-1] == "C" and "C" not in layout[1:-1]


def fit_shape(np, spec, array, what):
    """`array` as the spec's shape: unchanged when it fits (non-fixed dims take any size), reshaped when
    it differs only by size-1 axes (same values, same order). Anything else is a layout or size this
    code does not know how to undo: an error, never a silent reshape."""
    shape = list(spec.get("shape") or [])
    if len(shape) == array.ndim and all(
        not (isinstance(want, int) and want > 0) or want == have for want, have in zip(shape, array.shape)
    ):
        return array
    target = static_shape(spec, array.shape[0] if array.ndim else 1)
    if [d for d in array.shape if d != 1] == [d for d in target if d != 1]:
        return array.reshape(target)
    name = spec.get("source_name") or spec.get("name")
    raise AgentError(
        "%s %r: shape %s does not fit the artifact's %s (layout %r)"
        % (what, name, list(array.shape), shape, spec.get("layout", ""))
    )


def adapt_input(np, spec, array):
    """A source-layout float batch -> the artifact's layout and dtype (quantizing if needed)."""
    if channel_last(spec, array.ndim):  # N C d1..dk -> N d1..dk C
        array = array.transpose([0] + list(range(2, array.ndim)) + [1])
    array = fit_shape(np, spec, array, "input")
    dtype = np_dtype(np, spec.get("dtype", "float32"))
    quant = spec.get("quant")
    if quant and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        q = np.round(array.astype(np.float32) / float(quant["scale"])) + int(quant.get("zero_point", 0))
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.ascontiguousarray(array.astype(dtype))


def adapt_output(np, spec, array):
    """An artifact output -> float32, dequantized, channel-last back to the source's channel-first."""
    quant = spec.get("quant") if spec else None
    if quant and np.issubdtype(array.dtype, np.integer):
        array = (array.astype(np.float32) - int(quant.get("zero_point", 0))) * float(quant["scale"])
    if channel_last(spec, array.ndim):  # N d1..dk C -> N C d1..dk
        array = array.transpose([0, array.ndim - 1] + list(range(1, array.ndim - 1)))
    return np.asarray(array, dtype=np.float32)


# ----------------------------------------------------------------------------- the benchmark


def resolve(job_dir, path):
    return path if os.path.isabs(path) else os.path.join(job_dir, path)


def timed_loop(fn, iterations, min_duration_s):
    samples = []
    clock = time.perf_counter
    start = clock()
    while True:
        t0 = clock()
        fn()
        samples.append((clock() - t0) * 1000.0)
        if len(samples) >= iterations and clock() - start >= min_duration_s:
            break
    return samples, clock() - start


def bench(job, job_dir):
    backend = job["backend"]
    entry = resolve(job_dir, job["entry"])
    if not os.path.exists(entry):
        raise AgentError("artifact file not found on the device: %s" % entry)
    if backend == "tensorrt" and not has_module("tensorrt") and which("trtexec"):
        return bench_trtexec(job, entry, job_dir)
    if backend not in RUNNERS:
        raise AgentError("unknown backend %r (valid: %s)" % (backend, ", ".join(sorted(RUNNERS))))
    for module in RUNTIME_MODULES.get(backend, ()):  # imported first: rss_before_load_mb is then the
        try:  # baseline of what loading the model itself costs (edgekit.analysis compares with that)
            __import__(module)
        except ImportError:
            pass  # the runner reports it
    rss_before = current_rss_mb()
    t0 = time.perf_counter()
    runner = RUNNERS[backend](job, entry)
    init_ms = (time.perf_counter() - t0) * 1000.0
    np = import_numpy()
    seed = int(job.get("seed", 0))
    rng = np.random.RandomState(seed)
    ranges = job.get("input_ranges") or {}
    try:
        feed = [random_input(np, rng, spec, ranges) for spec in job["inputs"]]
    except AgentError:
        if not job.get("validation"):
            raise
        feed = first_validation_sample(np, job, job_dir)  # its shapes are the set's own

    t0 = time.perf_counter()
    runner.infer(feed)
    first_ms = (time.perf_counter() - t0) * 1000.0
    for _ in range(int(job.get("warmup", 10))):
        runner.infer(feed)
    iterations = max(1, int(job.get("iterations", 100)))
    before = conditions_snapshot()
    samples, wall = timed_loop(lambda: runner.infer(feed), iterations, float(job.get("min_duration_s", 0)))
    runner, samples, wall, repeat_p50 = repeat_runs(job, entry, runner, feed, samples, wall)
    after = conditions_snapshot()
    stats = latency_stats(samples)
    batch = static_shape(job["inputs"][0])[0] if job["inputs"] else 1
    result = {
        "status": "ok",
        "runtime": {"name": runner.runtime, "version": str(runner.version)},
        "init_ms": init_ms,
        "first_inference_ms": first_ms,
        "warmup": int(job.get("warmup", 10)),
        "iterations": len(samples),
        "threads": job.get("threads"),
        "input_source": input_source(seed, job["inputs"], ranges),
        "shapes": dict((s.get("source_name", s["name"]), list(a.shape)) for s, a in zip(job["inputs"], feed)),
        "latency_ms": stats,
        "throughput_fps": (len(samples) * batch / wall) if wall > 0 else None,
        "rss_before_load_mb": rss_before,
    }
    result.update(sample_fields(job, samples, repeat_p50, before, after))
    if job.get("validation"):
        result["validation"] = run_validation(np, runner, job, job_dir)
        result["input_source"] = "validation"
    result["peak_rss_mb"] = peak_rss_mb()
    result["environment"] = environment({runner.runtime: str(runner.version), "numpy": np.__version__})
    runner.close()
    return result


def repeat_runs(job, entry, runner, feed, samples, wall):
    """`repeats` - 1 more independent sessions (fresh load, warm-up, timed loop): a new session can
    land on other cores and memory, which a single run cannot show. Returns the last runner."""
    repeats = max(1, int(job.get("repeats", 1) or 1))
    repeat_p50 = [percentile(sorted(samples), 50)]
    counts = [len(samples)]
    iterations = max(1, int(job.get("iterations", 100)))
    for _ in range(repeats - 1):
        runner.close()
        runner = RUNNERS[job["backend"]](job, entry)
        for _ in range(int(job.get("warmup", 10))):
            runner.infer(feed)
        more, more_wall = timed_loop(
            lambda: runner.infer(feed), iterations, float(job.get("min_duration_s", 0))
        )
        repeat_p50.append(percentile(sorted(more), 50))
        counts.append(len(more))
        samples = samples + more
        wall += more_wall
    return runner, samples, wall, (repeat_p50, counts)


def sample_fields(job, samples, repeats, before, after):
    """What the report's statistics need beyond the summary: the samples (or a histogram), the
    drift within the run, the spread between repeated runs and the conditions the loop ran under.
    `repeats` is (median of each session, number of samples of each session, in order)."""
    repeat_p50, counts = repeats
    out = compact_samples(samples, int(job.get("keep_samples", 20000)))
    blocks = block_medians(samples)
    out["latency_block_p50_ms"] = blocks
    out["block_spread_pct"] = spread_pct(blocks)
    out["repeats"] = len(repeat_p50)
    out["repeat_p50_ms"] = repeat_p50
    out["repeat_counts"] = counts
    out["run_spread_pct"] = spread_pct(repeat_p50)
    out["conditions"] = conditions(before, after)
    return out


def first_validation_sample(np, job, job_dir):
    """The validation set's first sample per input (the timing feed of a run whose shapes the set
    states: dynamic dims take the set's sizes)."""
    data = np.load(resolve(job_dir, job["validation"]))
    feed = []
    for spec in job["inputs"]:
        key = spec.get("source_name") or spec["name"]
        key = key if key in data.files else spec["name"]
        if key not in data.files:
            raise AgentError("validation set has no array %r (it has %s)" % (key, data.files))
        sample = data[key][0]
        if sample.ndim + 1 == len(spec["shape"]):  # samples stored without the batch axis
            sample = sample[None]
        feed.append(adapt_input(np, spec, sample))
    return feed


def run_validation(np, runner, job, job_dir):
    path = resolve(job_dir, job["validation"])
    data = np.load(path)
    specs = job["inputs"]
    arrays = []
    for spec in specs:
        key = spec.get("source_name") or spec["name"]
        if key not in data.files:
            key = spec["name"]
        if key not in data.files:
            raise AgentError(
                "validation set has no array %r (it has %s)" % (spec.get("source_name"), data.files)
            )
        arrays.append(data[key])
    count = arrays[0].shape[0]
    batch = static_shape(specs[0])[0]
    out_specs = job.get("outputs") or []
    collected = None
    names = None
    for start in range(0, count, batch):
        chunk = []
        for array in arrays:
            part = array[start : start + batch]
            if part.shape[0] < batch:  # pad the last batch with its last sample, trimmed below
                pad = np.repeat(part[-1:], batch - part.shape[0], axis=0)
                part = np.concatenate([part, pad], axis=0)
            chunk.append(part)
        real = min(batch, count - start)
        feed = [adapt_input(np, spec, part) for spec, part in zip(specs, chunk)]
        outs = runner.infer(feed)
        if collected is None:
            collected = [[] for _ in outs]
            names = output_names(runner.output_names, out_specs, len(outs))
        for i, out in enumerate(outs):
            spec = out_specs[i] if i < len(out_specs) else None
            collected[i].append(np.array(adapt_output(np, spec, np.asarray(out))[:real]))  # copy
    outputs = dict((names[i], np.concatenate(parts, axis=0)) for i, parts in enumerate(collected or []))
    out_file = resolve(job_dir, job.get("outputs_file") or "outputs.npz")
    np.savez(out_file, **outputs)
    return {"samples": count, "outputs_file": out_file, "output_names": list(outputs)}


def output_names(runtime_names, specs, n):
    """Outputs keyed by SOURCE name: from the manifest specs by artifact name, else by position."""
    names = []
    by_name = dict((s["name"], s) for s in specs)
    for i in range(n):
        rt = runtime_names[i] if i < len(runtime_names) else "output_%d" % i
        if rt in by_name:
            names.append(by_name[rt].get("source_name") or rt)
        elif i < len(specs):
            names.append(specs[i].get("source_name") or specs[i]["name"])
        else:
            names.append(rt)
    return names


def has_module(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def bench_trtexec(job, engine, job_dir):
    """TensorRT through `trtexec --loadEngine` when the Python bindings are absent."""
    if job.get("validation"):
        raise AgentError(
            "on-device fidelity of a TensorRT engine needs the tensorrt Python module "
            "(trtexec cannot return outputs)",
            "missing_runtime",
        )
    times_file = os.path.join(job_dir, "trtexec_times.json")
    argv = [
        which("trtexec"),
        "--loadEngine=" + engine,
        "--exportTimes=" + times_file,
        "--warmUp=%d" % int(1000 * float(job.get("min_duration_s", 0) or 0.2)),
        "--iterations=%d" % int(job.get("iterations", 100)),
        "--duration=0",
        "--avgRuns=1",
    ]
    t0 = time.perf_counter()
    before = conditions_snapshot()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=float(job.get("timeout_s", 600)))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AgentError("trtexec timed out", "timeout")
    text = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise AgentError("trtexec failed (exit %d): %s" % (proc.returncode, text.strip().splitlines()[-1:]))
    with open(times_file) as fh:
        times = json.load(fh)
    samples = [float(t.get("latencyMs", t.get("computeMs", 0.0))) for t in times]
    version = ""
    for line in text.splitlines():
        if "TensorRT version" in line or "[TensorRT v" in line:
            version = line.strip()
            break
    stats = latency_stats(samples)
    batch = static_shape(job["inputs"][0])[0] if job.get("inputs") else 1
    result = {
        "status": "ok",
        "runtime": {"name": "trtexec", "version": version},
        "init_ms": None,
        "first_inference_ms": None,
        "warmup": None,
        "iterations": len(samples),
        "threads": None,
        "input_source": "trtexec random",
        "latency_ms": stats,
        # one trtexec query runs a whole batch: inferences per second count its samples
        "throughput_fps": (batch * 1000.0 / stats["mean"]) if samples and stats["mean"] > 0 else None,
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": None,
        "environment": environment({"trtexec": version}),
    }
    if samples:
        result.update(
            sample_fields(job, samples, ([stats["p50"]], [len(samples)]), before, conditions_snapshot())
        )
    return result


# ----------------------------------------------------------------------------- probe (devices check)


def dist_version(dist_names):
    """A package's version from its dist-info/egg-info folder name, without importing it (fast)."""
    wanted = set(n.lower().replace("-", "_") for n in dist_names)
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            for suffix in (".dist-info", ".egg-info"):
                if entry.endswith(suffix):
                    name, _, version = entry[: -len(suffix)].partition("-")
                    if name.lower().replace("-", "_") in wanted and version:
                        return version.split("-")[0]
    return None


def module_version(module, dist_names):
    """The version of an installed module, or None when it cannot be found (not imported: probing
    tensorflow or openvino by import takes seconds)."""
    try:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    return dist_version(dist_names) or "present"


def probe(workdir):
    runtimes = {}
    for key, dists in (
        ("numpy", ["numpy"]),
        ("onnxruntime", ["onnxruntime", "onnxruntime_gpu", "onnxruntime_openvino"]),
        ("openvino", ["openvino"]),
        ("ai_edge_litert", ["ai_edge_litert"]),
        ("tflite_runtime", ["tflite_runtime"]),
        ("tensorflow", ["tensorflow", "tensorflow_cpu", "tensorflow_aarch64"]),
        ("tensorrt", ["tensorrt"]),
    ):
        version = module_version(key, dists)
        if version:
            runtimes[key] = version
    trtexec = which("trtexec")
    if trtexec:
        runtimes["trtexec"] = trtexec
    disk = None
    try:
        st = os.statvfs(workdir if os.path.isdir(workdir) else os.path.expanduser("~"))
        disk = st.f_bavail * st.f_frsize / (1024.0 * 1024.0)
    except (OSError, AttributeError):
        pass
    env = environment(runtimes)
    return {
        "status": "ok",
        "agent_version": AGENT_VERSION,
        "runtimes": runtimes,
        "free_disk_mb": disk,
        "environment": env,
    }


# ----------------------------------------------------------------------------- main


def start_stdin_watchdog():
    """Exit when stdin closes: over SSH that is the host going away (timeout, Ctrl-C, lost link),
    so an abandoned benchmark does not keep the device busy."""
    import threading

    def watch():
        try:
            while True:
                if not os.read(0, 4096):
                    break
        except OSError:
            pass
        os._exit(3)

    thread = threading.Thread(target=watch, name="stdin-watchdog")
    thread.daemon = True
    thread.start()


def main(argv):
    saved_stdout = os.dup(1)
    os.dup2(2, 1)  # native libraries that print go to stderr; stdout carries only our JSON
    sys.stdout = sys.stderr
    started = time.time()
    argv = list(argv)
    if "--stdin-watchdog" in argv:
        argv.remove("--stdin-watchdog")
        start_stdin_watchdog()
    try:
        if len(argv) >= 2 and argv[1] == "--probe":
            result = probe(argv[2] if len(argv) > 2 else os.getcwd())
        elif len(argv) == 2:
            job_path = os.path.abspath(argv[1])
            with open(job_path) as fh:
                job = json.load(fh)
            result = bench(job, os.path.dirname(job_path))
        else:
            raise AgentError(
                "usage: agent.py [--stdin-watchdog] JOB.json | agent.py --probe [WORKDIR]", "usage"
            )
    except AgentError as exc:
        result = {"status": "failed", "error": str(exc), "error_kind": exc.kind}
    except MemoryError:
        result = {"status": "failed", "error": "out of memory on the device", "error_kind": "oom"}
    except Exception as exc:  # noqa: BLE001 - everything becomes one JSON error line
        result = {"status": "failed", "error": "%s: %s" % (type(exc).__name__, exc), "error_kind": "error"}
    result["agent_version"] = AGENT_VERSION
    result["agent_wall_s"] = time.time() - started
    data = (json.dumps(result, default=str) + "\n").encode("utf-8")
    os.write(saved_stdout, data)
    return 0 if result.get("status") == "ok" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
