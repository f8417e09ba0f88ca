"""The report's rows: one per artifact and device, with Ultralytics' three states kept visible
(exported and verified / exported but failed verification / export or run failed) plus skipped."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.report import stats
from edgekit.report.load import Build, Inputs, read_manifest_file, source_name

log = logging.getLogger(__name__)

MB = 1e6
STATE_LABELS = {
    "ok": "exported and verified",
    "unverified": "exported, not verified",
    "verify_failed": "exported, failed verification",
    "failed": "export or run failed",
    "skipped": "skipped",
}
FAILED_STATES = ("verify_failed", "failed")


@dataclass
class Row:
    model: str
    target: str
    precision: str
    backend: str = ""
    device: str | None = None
    shape: str | None = None  # the input shapes timed, when a run stated them (bench --input-shape)
    state: str = "ok"
    stage: str | None = None  # export | verify | bench: where a failure happened
    reason: str | None = None
    artifact: str = ""
    sha256: str | None = None
    effective_precision: str | None = None
    size_mb: float | None = None
    source_mb: float | None = None
    compression_ratio: float | None = None
    params: int | None = None
    weight_mb: float | None = None
    peak_rss_mb: float | None = None
    cosine: float | None = None
    top1: float | None = None
    accuracy: float | None = None
    accuracy_reference: float | None = None
    accuracy_drop: float | None = None
    fidelity_where: str | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    fps: float | None = None
    speedup: float | None = None
    speedup_ref: str | None = None
    runs: int = 0
    samples: int = 0
    run_spread_pct: float | None = None
    block_spread_pct: float | None = None
    other_cpu_pct: float | None = None
    timestamp: str | None = None
    host_proxy: str | None = None  # timed on a machine of another architecture than the target's
    latency_samples: np.ndarray | None = field(default=None, repr=False)
    latency_clusters: list[np.ndarray] = field(default_factory=list, repr=False)  # sessions
    conditions: dict[str, Any] = field(default_factory=dict)  # what a latency depends on besides the artifact

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (
            self.model,
            self.target,
            self.precision,
            (self.device or "-") + (f" [{self.shape}]" if self.shape else ""),
        )

    @property
    def label(self) -> str:
        shape = f" [{self.shape}]" if self.shape else ""
        return f"{self.target} {self.precision}" + (f" @ {self.device}" if self.device else "") + shape

    def noise(self) -> dict[str, float | None]:
        """Spreads a single session leaves out of the bootstrap: with several sessions the two-level
        bootstrap already carries their differences; with one, the drift inside it is the floor."""
        if len(self.latency_clusters) > 1:
            return {}
        return {"within-run spread": self.block_spread_pct}

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("latency_samples", "latency_clusters")}
        out["state_label"] = STATE_LABELS[self.state]
        return out


@dataclass
class ModelTable:
    model: str
    rows: list[Row]


def _latest(records: list[dict[str, Any]]) -> dict[str, Any]:
    return max(records, key=lambda r: str(r.get("timestamp") or ""))


def _fidelity(record: Mapping[str, Any] | None, manifest: Mapping[str, Any] | None) -> tuple[Any, str | None]:
    """On-device fidelity from the record when the run had a validation set, else the host's."""
    if record is not None and isinstance(record.get("fidelity"), dict):
        data = record["fidelity"]
        return data, data.get("where") or (record.get("device") or {}).get("name")
    if manifest is not None and isinstance(manifest.get("fidelity"), dict):
        return manifest["fidelity"], manifest["fidelity"].get("where", "host")
    return None, None


def _apply_fidelity(row: Row, data: Mapping[str, Any] | None, where: str | None) -> None:
    if not data:
        return
    outputs = data.get("outputs") or []
    cosines = [o["cosine"] for o in outputs if o.get("cosine") is not None]
    top1 = [o["top1_agreement"] for o in outputs if o.get("top1_agreement") is not None]
    row.cosine = min(cosines) if cosines else None
    row.top1 = min(top1) if top1 else None
    row.accuracy = data.get("accuracy_artifact")
    row.accuracy_reference = data.get("accuracy_reference")
    row.accuracy_drop = data.get("accuracy_drop")
    row.fidelity_where = where
    if data.get("passed") is False:
        why = "; ".join(data.get("failures") or []) or "fidelity gate failed"
        if row.state in ("ok", "unverified", "skipped"):  # failing verification outranks not being timed
            row.state, row.stage = "verify_failed", "verify"
            _add_reason(row, why, first=True)
        else:
            _add_reason(row, f"verification: {why}")
    elif data.get("passed") is not None and row.state == "unverified":
        row.state = "ok"


def _add_reason(row: Row, text: str | None, first: bool = False) -> None:
    if not text:
        return
    if not row.reason:
        row.reason = text
    else:
        row.reason = f"{text}; {row.reason}" if first else f"{row.reason}; {text}"


def _apply_manifest(row: Row, manifest: Mapping[str, Any] | None, facts: Mapping[str, Any] | None) -> None:
    if not manifest:
        return
    unverified = manifest.get("verification") or {}
    if unverified.get("status") and not manifest.get("fidelity"):
        _add_reason(row, f"{unverified['status']}: {unverified.get('reason', '')}")
    size = manifest.get("size") or {}
    row.backend = row.backend or str(manifest.get("backend", ""))
    row.artifact = row.artifact or str(manifest.get("name", ""))
    if size.get("artifact_bytes"):
        row.size_mb = size["artifact_bytes"] / MB
    if size.get("source_bytes"):
        row.source_mb = size["source_bytes"] / MB
    row.compression_ratio = size.get("compression_ratio")
    effective = manifest.get("effective_precision")
    row.effective_precision = effective if effective and effective != row.precision else None
    if facts:
        row.params = facts.get("params")
        weights = (facts.get("weight_bytes") or {}).get(row.effective_precision or row.precision)
        row.weight_mb = weights / MB if weights else None


def _apply_latency(row: Row, ok: list[dict[str, Any]]) -> None:
    """Statistics over every ok run of this artifact on this device (pooled samples)."""
    latest = _latest(ok)
    clusters = [c for r in ok for c in stats.record_clusters(r)]
    pooled = clusters
    row.runs = len(ok)
    row.init_ms = latest.get("init_ms")
    row.first_ms = latest.get("first_inference_ms")
    row.peak_rss_mb = max((r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb") is not None), default=None)
    row.timestamp = latest.get("timestamp")
    row.host_proxy = next((str(r["host_proxy"]) for r in ok if r.get("host_proxy")), None)
    _add_reason(row, row.host_proxy)
    if pooled:
        samples = np.concatenate(pooled)
        row.latency_samples = samples
        row.latency_clusters = clusters
        row.samples = int(samples.size)
        pct = stats.percentiles(samples, (50, 90, 99))
        row.p50, row.p90, row.p99 = pct["p50"], pct["p90"], pct["p99"]
        row.mean = float(samples.mean())
    else:
        lat = latest.get("latency_ms") or {}
        row.p50, row.p90, row.p99, row.mean = lat.get("p50"), lat.get("p90"), lat.get("p99"), lat.get("mean")
        row.samples = int(lat.get("count") or (latest.get("settings") or {}).get("iterations") or 0)
    fps = [r["throughput_fps"] for r in ok if r.get("throughput_fps")]
    row.fps = float(np.median(fps)) if fps else None
    # run-to-run: medians of separate records, or of the agent's repeated sessions
    medians = [float(p50) for r in ok if (p50 := (r.get("latency_ms") or {}).get("p50"))]
    repeats = [float(m) for r in ok for m in (r.get("repeat_p50_ms") or [])]
    row.run_spread_pct = stats.spread_pct(repeats if len(repeats) > len(medians) else medians)
    blocks = [float(b) for r in ok if (b := r.get("block_spread_pct")) is not None]
    row.block_spread_pct = max(blocks) if blocks else None
    row.conditions = run_conditions(latest)
    others = [float(o) for r in ok if (o := (r.get("conditions") or {}).get("other_cpu_pct")) is not None]
    row.other_cpu_pct = max(others) if others else None


def run_conditions(record: Mapping[str, Any]) -> dict[str, Any]:
    """What besides the artifact decides its latency: the runtime and its version, the run's settings,
    and the device's software and power state. Two runs that agree on all of it (and on the
    artifact) differ only by the device: its noise, or the device itself changing (compare.py)."""
    env = (record.get("device") or {}).get("environment") or {}
    settings = record.get("settings") or {}
    runtime = record.get("runtime") or {}
    return {
        "runtime": f"{runtime.get('name', '')} {runtime.get('version', '')}".strip() or None,
        "threads": settings.get("threads"),
        "input": settings.get("input_source"),
        "device target": (record.get("device") or {}).get("target"),
        "cpu": env.get("cpu"),
        "kernel": env.get("kernel"),
        "power mode": env.get("power_mode"),
        "governor": env.get("cpu_governor"),
        "runtimes": env.get("runtimes"),
    }


class RowBuilder:
    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.by_sha = {b.sha256: b for b in inputs.builds if b.sha256}
        self._facts: dict[str, dict[str, Any] | None] = {}

    def facts(self, manifest: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Parameters and weight bytes per precision of the source model: from the release record,
        else analysed from the source file when it is still where the manifest says (same hash)."""
        if not manifest or not isinstance(manifest.get("source"), dict):
            return None
        sha = manifest["source"].get("sha256")
        if not sha:
            return None
        if sha in self.inputs.model_facts:
            return self.inputs.model_facts[sha]
        if sha not in self._facts:
            self._facts[sha] = model_facts(manifest["source"].get("path"), sha)
        return self._facts[sha]

    def manifest_for(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        art = record["artifact"]
        build = self.by_sha.get(art.get("sha256"))
        if build is not None and build.manifest is not None:
            return build.manifest
        if build is not None:
            return None
        if art.get("dir"):
            return read_manifest_file(Path(art["dir"]))
        return None

    def from_build(self, build: Build) -> Row:
        row = Row(model=build.model, target=build.target, precision=build.precision, backend=build.backend)
        row.sha256 = build.sha256
        if build.status == "skipped":  # not applicable to this model (e.g. --int4 without MatMul/Gemm)
            row.state, row.stage, row.reason = "skipped", build.stage or "export", build.error
        elif build.status != "ok":
            row.state = "failed" if build.stage != "verify" else "verify_failed"
            row.stage = build.stage or "export"
            row.reason = build.error
        else:
            row.state = "unverified"
        _apply_manifest(row, build.manifest, self.facts(build.manifest))
        if row.state == "unverified":
            _apply_fidelity(row, *_fidelity(None, build.manifest))
        if build.note:
            _add_reason(row, build.note)
            row.stage = row.stage or build.note_stage
        return row

    def from_records(self, records: list[dict[str, Any]]) -> Row:
        latest = _latest(records)
        art, device = latest["artifact"], latest["device"]
        manifest = self.manifest_for(latest)
        model = art.get("model") or (source_name(manifest) if manifest else art.get("name", "model"))
        row = Row(
            model=str(model),
            target=str(art.get("target", "")),
            precision=str(art.get("precision", "")),
            backend=str(art.get("backend", "")),
            device=str(device.get("name")),
            artifact=str(art.get("name", "")),
            sha256=art.get("sha256"),
            state="unverified",
            shape=_shape_label(latest.get("shapes")),
        )
        _apply_manifest(row, manifest, self.facts(manifest))
        ok = [r for r in records if r.get("status") == "ok"]
        build = self.by_sha.get(art.get("sha256"))
        if ok:
            _apply_latency(row, ok)
            _apply_fidelity(row, *_fidelity(_latest(ok), manifest))
        else:
            row.state = "skipped" if latest.get("status") == "skipped" else "failed"
            row.stage = "bench"
            reason = latest.get("error") or latest.get("status")
            row.reason = f"not benchmarked: {reason}" if row.state == "skipped" else reason
            row.timestamp = latest.get("timestamp")
            _apply_fidelity(row, *_fidelity(None, manifest))
        if build is not None and build.note:
            _add_reason(row, build.note)
        return row


def _shape_label(shapes: Mapping[str, Any] | None) -> str | None:
    """A stated shape set as a short label: the first input's dims ("1x128"), which for a token model is
    batch x sequence (the other inputs follow it)."""
    if not shapes:
        return None
    name, dims = next(iter(shapes.items()))
    return f"{name} " + "x".join(str(d) for d in dims)


def model_facts(path: str | None, sha256: str) -> dict[str, Any] | None:
    if not path or not Path(path).is_file():
        return None
    try:
        from edgekit import analysis, graph

        if graph.model_sha256(path) != sha256:
            return None
        report = analysis.analyze(path)
    except Exception as exc:  # noqa: BLE001 - facts are optional in a report
        log.info("no parameter count for %s: %s", path, exc)
        return None
    return {"sha256": sha256, "params": report.params, "weight_bytes": dict(report.weight_bytes)}


def build_rows(inputs: Inputs) -> list[Row]:
    builder = RowBuilder(inputs)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in inputs.records:
        art = record["artifact"]
        ident = art.get("sha256") or f"{art.get('name')}|{art.get('target')}|{art.get('precision')}"
        shape = _shape_label(record.get("shapes")) or ""  # each stated shape set is its own row
        groups.setdefault((ident, str(record["device"].get("name")), shape), []).append(record)
    rows = [builder.from_records(group) for group in groups.values()]
    # a shape is part of a row's identity only where one artifact was timed at several shapes
    shapes: dict[tuple[str, str, str, str | None], set[str | None]] = {}
    for row in rows:
        shapes.setdefault((row.model, row.target, row.precision, row.device), set()).add(row.shape)
    for row in rows:
        if len(shapes[(row.model, row.target, row.precision, row.device)]) < 2:
            row.shape = None
    benched = {ident for ident, _, _ in groups}
    for build in inputs.builds:
        if build.sha256 and build.sha256 in benched:
            continue
        rows.append(builder.from_build(build))
    add_speedups(rows)
    return rows


def add_speedups(rows: list[Row]) -> None:
    """p50 of the FP32 artifact of the same model on the same device (same target first, then the
    same backend) divided by this row's p50."""
    for row in rows:
        if row.p50 is None or row.device is None:
            continue
        peers = [
            r
            for r in rows
            if r.model == row.model
            and r.device == row.device
            and r.shape == row.shape  # the same shapes timed: latency grows with sequence length
            and r.p50
            and r.precision == "fp32"
        ]
        ref = next((r for r in peers if r.target == row.target), None) or next(
            (r for r in peers if r.backend == row.backend), None
        )
        if ref is not None and ref.p50:
            row.speedup = ref.p50 / row.p50
            row.speedup_ref = f"{ref.target} fp32"


def tables(rows: list[Row]) -> list[ModelTable]:
    by_model: dict[str, list[Row]] = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    out = []
    for model in sorted(by_model):
        rows_sorted = sorted(
            by_model[model],
            key=lambda r: (
                r.backend,
                r.target,
                _precision_rank(r.precision),
                r.device or "",
            ),
        )
        out.append(ModelTable(model, rows_sorted))
    return out


def _precision_rank(precision: str) -> int:
    return {"fp32": 0, "fp16": 1, "int8": 2}.get(precision, 3)
