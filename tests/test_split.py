"""edgekit split: planner, extraction, chained equality, CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgekit.api import SplitRequest, split
from edgekit.digest import file_sha256
from edgekit.errors import BadInput
from edgekit.split import partition_graph as split_graph
from edgekit.split import planner
from tests import analysis_models, models


def _fpn() -> onnx.ModelProto:
    return analysis_models.dbnet(res=64, scale=0.35, inner=16)[0]


MODELS = {
    "residual": lambda: models.resnet_ish(size=32, width=8, blocks=4),
    "fpn": _fpn,
    "transformer": lambda: models.transformer_block()[0],
    "constants": lambda: models.constant_weights_net()[0],
    "two_inputs": lambda: models.two_input_net()[0],
}


def _save(tmp_path: Path, model: onnx.ModelProto, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _feed(path: Path, seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
        for i in _session(path).get_inputs()
    }


def _run_pipeline(directory: Path, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the shards the way pipeline.json describes them, independently of edgekit's own chain."""
    data = json.loads((directory / "pipeline.json").read_text())
    values = dict(feed)
    for shard in data["shards"]:
        sess = _session(directory / shard["file"])
        assert [i.name for i in sess.get_inputs()] == [i["name"] for i in shard["inputs"]]
        outs = sess.run(None, {i["name"]: values[i["name"]] for i in shard["inputs"]})
        values.update(zip([o.name for o in sess.get_outputs()], outs, strict=True))
    return {o["name"]: values[o["name"]] for o in data["source"]["outputs"]}


@pytest.mark.parametrize("parts", [2, 3, 4])
@pytest.mark.parametrize("kind", list(MODELS))
def test_chained_equality(tmp_path: Path, kind: str, parts: int) -> None:
    source = MODELS[kind]()
    path = _save(tmp_path, source)
    out = tmp_path / "split"
    record = split(SplitRequest(path, parts=parts, out_dir=out, profile=False))
    data = json.loads((out / "pipeline.json").read_text())
    assert len(data["shards"]) == parts == data["plan"]["parts"]
    assert data["verification"]["passed"] and data["verification"]["max_abs_diff"] <= 1e-5
    assert record.path == out

    feed = _feed(path)
    full = _session(path).run(None, feed)
    chained = _run_pipeline(out, feed)
    for vi, expected in zip(source.graph.output, full, strict=True):
        np.testing.assert_allclose(chained[vi.name], expected, rtol=0, atol=1e-5)

    source_names = {t for n in source.graph.node for t in n.output} | {i.name for i in source.graph.input}
    source_inits = {t.name for t in source.graph.initializer}
    covered = []
    for shard in data["shards"]:
        shard_path = out / shard["file"]
        onnx.checker.check_model(str(shard_path), full_check=True)
        assert file_sha256(shard_path) == shard["files"][0]["sha256"]
        model = onnx.load(str(shard_path))
        # crossing tensors keep their names; every weight a shard holds is read by one of its nodes
        assert {i.name for i in model.graph.input} <= source_names
        read = {name for node in model.graph.node for name in node.input}
        assert {t.name for t in model.graph.initializer} <= read & source_inits
        covered.extend(n.name for n in model.graph.node if n.op_type != "Constant")
    compute = [n.name for n in source.graph.node if n.op_type != "Constant"]
    assert sorted(covered) == sorted(compute)  # every compute node in exactly one shard


def test_shared_weight_only_where_needed(tmp_path: Path) -> None:
    """constant_weights_net reads one Constant-node weight in two MatMuls: at every cut, a shard holds
    it exactly when one of its nodes reads it (both shards when the cut falls between the readers)."""
    from edgekit.split import extract

    source, _ = models.constant_weights_net()
    path = _save(tmp_path, source)
    shared = next(n.input[1] for n in source.graph.node if n.op_type == "MatMul")
    graph = split_graph.load(path)
    readers = [i for i, node in enumerate(graph.nodes) if shared in node.input]
    assert len(readers) == 2
    duplicated = 0
    for cut in range(1, len(graph)):
        held = []
        for index, (start, end) in enumerate([(0, cut), (cut, len(graph))]):
            model = extract.shard_model(graph, start, end, index)
            onnx.checker.check_model(model, full_check=True)
            holds = any(n.op_type == "Constant" and shared in n.output for n in model.graph.node)
            assert holds == any(start <= r < end for r in readers)
            held.append(holds)
        duplicated += all(held)
    assert duplicated == readers[1] - readers[0]


def _brute_parts(graph: split_graph.PartitionGraph, parts: int, balance: str, tolerance: float):
    prefix = planner.node_costs(graph, balance, "fp32")
    n = len(graph)
    plans = [(0, *c, n) for c in itertools.combinations(range(1, n), parts - 1)]
    worst = {p: max(prefix[b] - prefix[a] for a, b in itertools.pairwise(p)) for p in plans}
    best = min(worst.values())
    ok = [p for p in plans if worst[p] <= best * (1 + tolerance) + 1e-6]
    return best, min(sum(graph.cross_bytes[c] for c in p[1:-1]) for p in ok)


@pytest.mark.parametrize("balance", ["weights", "macs"])
@pytest.mark.parametrize("kind", ["residual", "transformer"])
def test_parts_dp_is_exact(tmp_path: Path, kind: str, balance: str) -> None:
    graph = split_graph.load(_save(tmp_path, MODELS[kind]()))
    for parts in (2, 3):
        plan = planner.plan_parts(graph, parts, balance, tolerance=0.2)
        best, cross = _brute_parts(graph, parts, balance, 0.2)
        assert plan.details["best_max_cost"] == pytest.approx(best, abs=1.0)
        assert sum(graph.cross_bytes[c] for c in plan.cuts[1:-1]) == cross


def test_cut_inside_block_carries_every_live_tensor(tmp_path: Path) -> None:
    graph = split_graph.load(_save(tmp_path, models.resnet_ish(size=32, width=8, blocks=4)))
    for k in range(1, len(graph)):
        live = set(graph.crossing(k))
        expected = {
            t.name for t in graph.tensors.values() if 0 <= t.producer < k and any(c >= k for c in t.consumers)
        }
        assert live == expected
        assert graph.cross_bytes[k] == sum(graph.tensors[t].nbytes for t in live)
    # a residual block's inside carries the skip tensor too: some cut carries two tensors
    assert max(len(graph.crossing(k)) for k in range(1, len(graph))) >= 2


def test_max_shard_mb_fits_and_is_fewest(tmp_path: Path) -> None:
    path = _save(tmp_path, _fpn())
    graph = split_graph.load(path)
    margin = 1 + SplitRequest(path).memory_margin  # shards are planned as estimate x (1 + margin)

    def planned(a: int, b: int) -> float:
        return graph.memory(a, b, "fp32") / split_graph.MB * margin

    whole = planned(0, len(graph))
    single = max(planned(i, i + 1) for i in range(len(graph)))
    budget = (single + whole) / 2
    request = SplitRequest(
        path, max_shard_mb=budget, out_dir=tmp_path / "s", profile=False, measure_memory=False
    )
    data = split(request).pipeline
    assert all(
        s["memory_mb"] <= budget and s["memory_estimate_mb"] * margin <= budget + 0.01 for s in data["shards"]
    )
    count = len(data["shards"])
    assert count >= 2
    # no plan with one shard fewer fits: for every cut set of count-1 shards some shard is over
    n = len(graph)
    if count - 1 <= 2:
        for cuts in itertools.combinations(range(1, n), count - 2):
            bounds = list(itertools.pairwise((0, *cuts, n)))
            assert any(planned(a, b) > budget for a, b in bounds)
    # without the margin the same budget needs no more shards
    raw = split(
        SplitRequest(
            path,
            max_shard_mb=budget,
            out_dir=tmp_path / "r",
            profile=False,
            memory_margin=0,
            measure_memory=False,
        )
    )
    assert len(raw.pipeline["shards"]) <= count


def test_max_shard_mb_measures_the_shards(tmp_path: Path) -> None:
    """At fp32 every shard of the final plan is measured here in a fresh onnxruntime process; the plan
    keeps only shards whose measurement fits, and a shard that contains a measured one is planned at
    least at that measurement (memory only grows with nodes)."""
    from edgekit.split import _memory_fn, measure

    if not measure.available():
        pytest.skip("needs /proc and onnxruntime")
    path = _save(tmp_path, models.resnet_ish(size=64, width=32, blocks=4))
    graph = split_graph.load(path)
    planned = [graph.memory(i, i + 1, "fp32") * 1.3 / split_graph.MB for i in range(len(graph))]
    budget = (max(planned) + graph.memory(0, len(graph), "fp32") * 1.3 / split_graph.MB) / 2
    data = split(SplitRequest(path, max_shard_mb=budget, out_dir=tmp_path / "s", profile=False)).pipeline
    assert len(data["shards"]) >= 2
    for shard in data["shards"]:
        assert shard["memory_measured_mb"] is not None and shard["memory_measured_mb"] <= budget
        assert shard["memory_mb"] == shard["memory_measured_mb"]
    assert any("measured here" in note for note in data["notes"])
    (a, b), value = (2, 5), 10_000.0
    memory = _memory_fn(graph, "fp32", {(a, b): value})
    assert memory(a, b) == value and memory(0, len(graph)) >= value and memory(a + 1, b) < value


def test_impossible_budget_names_smallest(tmp_path: Path, run_cli) -> None:
    path = _save(tmp_path, _fpn())
    out = tmp_path / "s"
    code, _, err = run_cli("split", path, "--max-shard-mb", "0.5", "-o", out, "--no-profile")
    assert code == 2
    assert "smallest feasible budget is" in err and "Traceback" not in err
    assert not out.exists()
    smallest = float(err.split("smallest feasible budget is ")[1].split()[0])
    code, stdout, err = run_cli(
        "split", path, "--max-shard-mb", smallest, "-o", out, "--no-profile", "--json"
    )
    assert code == 0, err
    data = json.loads(stdout)
    assert all(s["memory_estimate_mb"] <= smallest for s in data["shards"])


def _device(name: str, node_ms: list[float], mbps: float = 100.0, latency: float = 1.0, memory=None):
    prefix = np.concatenate([[0.0], np.cumsum(node_ms)])
    return planner.DeviceModel(name, prefix, memory_mb=memory, link_mbps=mbps, link_latency_ms=latency)


@pytest.mark.parametrize("objective", ["latency", "throughput"])
def test_device_plan_matches_brute_force(tmp_path: Path, objective: str) -> None:
    graph = split_graph.load(_save(tmp_path, models.resnet_ish(size=32, width=8, blocks=4)))
    n = len(graph)
    rng = np.random.default_rng(3)
    devices = [
        _device("slow", list(rng.uniform(0.5, 2.0, n)), mbps=50),
        _device("fast", list(rng.uniform(0.05, 0.3, n)), mbps=10),
    ]
    plan = planner.plan_devices(graph, devices, objective)
    in_bytes = sum(graph.tensors[t].nbytes for t in graph.model_inputs)
    out_bytes = sum(graph.tensors[t].nbytes for t in graph.model_outputs)

    def cost(assign: list[tuple[planner.DeviceModel, int, int]]) -> float:
        parts = [assign[0][0].link_ms(in_bytes)]
        for i, (dev, a, b) in enumerate(assign):
            if i:
                parts.append(planner.hop_ms(assign[i - 1][0], dev, graph.cross_bytes[a]))
            parts.append(dev.shard_ms(a, b))
        parts.append(assign[-1][0].link_ms(out_bytes))
        return sum(parts) if objective == "latency" else max(parts)

    candidates = [cost([(devices[0], 0, n)]), cost([(devices[1], 0, n)])]
    candidates += [cost([(devices[0], 0, k), (devices[1], k, n)]) for k in range(1, n)]
    assert plan.details["predicted_ms"] == pytest.approx(min(candidates))


def test_device_memory_limit_respected(tmp_path: Path) -> None:
    graph = split_graph.load(_save(tmp_path, _fpn()))
    n = len(graph)
    whole = graph.memory(0, n, "fp32") / split_graph.MB
    fast = _device("fast", [0.01] * n, memory=whole * 0.8)
    slow = _device("slow", [1.0] * n)
    plan = planner.plan_devices(graph, [fast, slow], "latency")
    assert plan.devices[0] == "fast" and len(plan.bounds) == 2  # fast cannot hold it all
    a, b = plan.bounds[0]
    assert graph.memory(a, b, "fp32") / split_graph.MB <= whole * 0.8


def test_external_data_shards(tmp_path: Path) -> None:
    path = _save(tmp_path, models.resnet_ish(size=32, width=8, blocks=4))
    out = tmp_path / "s"
    data = split(SplitRequest(path, parts=2, out_dir=out, profile=False, external_threshold=1000)).pipeline
    for shard in data["shards"]:
        assert shard["external_data"]
        assert [f["path"] for f in shard["files"]] == [shard["file"], shard["file"] + ".data"]
        assert file_sha256(out / shard["files"][1]["path"]) == shard["files"][1]["sha256"]
    assert data["verification"]["passed"]


def test_odd_names_opset11_and_ir3(tmp_path: Path) -> None:
    """TF/Paddle-style names with '@ : /' and old IR 3 models with initializers listed as inputs."""
    source, _ = models.odd_names_net()
    path = _save(tmp_path, source)
    data = split(SplitRequest(path, parts=2, out_dir=tmp_path / "a", profile=False)).pipeline
    assert data["verification"]["passed"]
    assert any(":" in t["name"] or "@" in t["name"] for c in data["cuts"] for t in c["tensors"])

    model, _ = models.opset11_net()
    model.ir_version = 3
    for init in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    path = _save(tmp_path, model, "ir3.onnx")
    data = split(SplitRequest(path, parts=3, out_dir=tmp_path / "b", profile=False)).pipeline
    assert data["verification"]["passed"]
    for shard in data["shards"]:
        shard_model = onnx.load(str(tmp_path / "b" / shard["file"]))
        assert shard_model.ir_version >= 4
        assert not {i.name for i in shard_model.graph.input} & {t.name for t in shard_model.graph.initializer}


def test_dynamic_input_with_input_shape(tmp_path: Path) -> None:
    source, _ = models.dynamic_net()
    path = _save(tmp_path, source)
    data = split(
        SplitRequest(
            path, parts=2, out_dir=tmp_path / "s", profile=False, input_shapes={"images": [1, 3, 24, 24]}
        )
    ).pipeline
    assert data["verification"]["passed"]
    cut = data["cuts"][0]["tensors"][0]
    assert all(isinstance(d, int) for d in cut["shape"])


def test_bad_requests(tmp_path: Path, run_cli) -> None:
    path = _save(tmp_path, models.two_input_net()[0])
    with pytest.raises(BadInput, match="exactly one of"):
        split(SplitRequest(path, parts=2, max_shard_mb=10))
    with pytest.raises(BadInput, match="cannot be cut into"):
        split(SplitRequest(path, parts=500, out_dir=tmp_path / "x", profile=False))
    code, _, err = run_cli("split", path, "--devices", "nosuch", "--no-profile")
    assert code == 2 and "unknown device 'nosuch'" in err
    code, _, err = run_cli("split", tmp_path / "missing.onnx", "--parts", "2")
    assert code == 2 and "not found" in err


def test_cli_plan_output(tmp_path: Path, run_cli) -> None:
    path = _save(tmp_path, models.resnet_ish(size=32, width=8, blocks=4))
    code, out, err = run_cli("split", path, "--parts", "2", "-o", tmp_path / "s")
    assert code == 0, err
    assert "verified" in out and "crossing" in out and "pipeline.json" in out
    data = json.loads((tmp_path / "s" / "pipeline.json").read_text())
    assert data["predicted"]["latency_ms"] > 0  # node times profiled here, whole model timed here
    assert data["plan"]["node_times"].startswith("onnxruntime per-node profile")


def test_random_nodes_are_not_folded(tmp_path: Path) -> None:
    """A RandomNormalLike fed only by constants is not a constant: it stays a compute node."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], [1.0, 2.0, 3.0, 4.0])
    nodes = [
        helper.make_node("RandomNormalLike", ["w"], ["noise"], seed=1.0),
        helper.make_node("Add", ["x", "noise"], ["y"]),
        helper.make_node("Relu", ["y"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    g = split_graph.load(_save(tmp_path, model))
    assert [n.op_type for n in g.nodes] == ["RandomNormalLike", "Add", "Relu"]


def test_measured_link_from_pipeline_records() -> None:
    from edgekit.split.device_models import _measured_link_mbps

    stage = {
        "kind": "pipeline-stage",
        "device": {"name": "pi"},
        "relay_bytes": 1_000_000,
        "relay_ms": {"p50": 80.0},
    }
    other = dict(stage, device={"name": "nano"})
    assert _measured_link_mbps([stage, other], "pi") == pytest.approx(100.0)  # 8 Mbit in 80 ms
    assert _measured_link_mbps([other], "pi") is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["squeezenet", "inception_v1", "resnet50"])
def test_zoo_models_chain_exactly(tmp_path: Path, name: str) -> None:
    """Real zoo architectures as old exporters wrote them (IR 3, opset 9, initializers listed as
    inputs, names like 'gpu_0/conv1_w_0'; Inception's concatenated branches): 2, 3 and 4 shards
    reproduce the model exactly, checked by edgekit and independently here."""
    from tests import zoo

    if not zoo.available():
        pytest.skip("onnx's light zoo models are not installed")
    path = zoo.zoo_model(name, tmp_path / f"{name}.onnx")
    source = onnx.load(str(path))
    feed = _feed(path)
    full = _session(path).run(None, feed)
    for parts in (2, 3, 4):
        out = tmp_path / f"split{parts}"
        data = split(SplitRequest(path, parts=parts, out_dir=out, profile=False)).pipeline
        assert len(data["shards"]) == parts and data["verification"]["passed"]
        chained = _run_pipeline(out, feed)
        for vi, expected in zip(source.graph.output, full, strict=True):
            np.testing.assert_allclose(chained[vi.name], expected, rtol=0, atol=1e-5)


def test_records_round_trip_and_cli_json(tmp_path: Path, run_cli) -> None:
    """The API's typed split request/record read back equal from their JSON; `--json` prints exactly
    the record; `split --targets` exports every shard in the same call."""
    from edgekit import api

    path = _save(tmp_path, models.two_input_net()[0])
    request = SplitRequest(path, parts=2, out_dir=tmp_path / "s", profile=False, devices_file=None)
    assert SplitRequest.from_json(json.loads(json.dumps(request.to_json()))) == request
    record = split(request)
    assert api.SplitRecord.from_json(json.loads(json.dumps(record.to_json()))) == record

    code, out, err = run_cli(
        "split", path, "--parts", "2", "-o", tmp_path / "c", "--no-profile", "--targets", "x86-cpu", "--json"
    )
    assert code == 0, err
    printed = api.SplitRecord.from_json(json.loads(out))
    assert printed.export is not None and printed.path == tmp_path / "c"
    shards = printed.export.pipeline["shards"]
    assert [s["target"] for s in shards] == ["x86-cpu", "x86-cpu"]
    assert all((printed.export.path / s["artifact"] / "manifest.json").is_file() for s in shards)
    exported = api.PipelineExportRequest(printed.path, ["x86-cpu"], out_dir=tmp_path / "o")
    assert api.PipelineExportRequest.from_json(exported.to_json()) == exported

    # a pipeline directory is not an artifact: api.bench says which verb runs it
    with pytest.raises(BadInput, match="bench_pipeline"):
        api.bench(api.BenchRequest([printed.export.path]))
    # the split directory itself holds FP32 shards, not artifacts: bench says to export it first
    code, _, err = run_cli("bench", printed.path, "--device", "local", "--device", "local")
    assert code == 2 and "export them first" in err
