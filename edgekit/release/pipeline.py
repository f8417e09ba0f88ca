"""`edgekit release`: the whole recipe, from edgekit.toml to dist/<name>-<version>/.

check config (exit 2) and dependencies (exit 3) -> plan the matrix and its cache keys -> build what the
cache lacks (exports in parallel, each in a fresh process; local pool or Ray) -> stage the release in a
temp folder -> verify, benchmark, gate -> report, release.json, SHA256SUMS, tarball -> rename.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.fsio import replace_dir, write_json_atomic
from edgekit.release import dist
from edgekit.release.build import ARTIFACT, Task
from edgekit.release.cache import Store
from edgekit.release.config import ReleaseConfig, load_config
from edgekit.release.executors import make_executor
from edgekit.release.matrix import Item, ModelInfo, model_info, plan, profile_dir
from edgekit.report.load import excluded_note

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class ReleaseOutcome:
    config: ReleaseConfig
    path: Path | None  # the release folder (None when a gate failed and nothing was released)
    release: dict[str, Any]
    failures: list[str]
    report: Any = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures


def _noop(_: str) -> None:
    pass


def check_dependencies(cfg: ReleaseConfig) -> None:
    """Every backend the matrix needs is installed (MissingDependency, exit 3), before any work."""
    from edgekit.backends import get_backend

    for profile in cfg.profiles.values():
        get_backend(profile.backend).require()


def build(cfg: ReleaseConfig, items: list[Item], store: Store, executor: Any, progress: Progress) -> None:
    """Run what the cache lacks; record each item's outcome (export in the store, fidelity beside)."""
    chains: dict[tuple[str, str], list[tuple[Task, Path]]] = {}
    by_key = {}
    for item in items:
        item.export_cached = store.has(item.task.key)
        cached_fidelity = store.get_json(item.task.verify_key) if item.task.verify_key else None
        item.verify_cached = cached_fidelity is not None
        if item.verify_cached:
            item.fidelity = cached_fidelity
        if item.export_cached and (item.task.verify_key is None or item.verify_cached):
            continue
        item.task.export = not item.export_cached
        item.task.artifact_dir = str(store.path(item.task.key) / ARTIFACT) if item.export_cached else None
        work = store.staging(item.task.key)
        chains.setdefault((item.model.sha256, item.backend), []).append((item.task, work))
        by_key[item.task.key] = item
    total = sum(len(c) for c in chains.values())
    if not total:
        progress(f"all {len(items)} artifact(s) cached: nothing to build")
        return
    progress(f"building {total} of {len(items)} artifact(s) on {executor.describe()}")
    done = 0
    for task, work, result in executor.run(list(chains.values())):
        item = by_key[task.key]
        done += 1
        item.seconds = {k: v for k in ("export_s", "verify_s") if (v := result.get(k)) is not None}
        item.built_by = f"{executor.name}:{result['worker']}" if result.get("worker") else executor.name
        if result["status"] != "ok":
            item.status, item.stage, item.error = (
                "failed",
                result.get("stage") or "export",
                result.get("error"),
            )
            if result.get("stage") == "verify" and task.export:  # the export itself is good: keep it
                store.commit(task.key, work, {"name": task.name, "task": task.to_json()})
                item.status, item.stage = "ok", None
                item.fidelity = {"passed": False, "failures": [f"verification failed: {result.get('error')}"]}
            else:
                shutil.rmtree(work, ignore_errors=True)
            if item.status == "failed":
                progress(f"[{done}/{total}] FAILED {task.name}: {item.error}")
                continue
        elif task.export:
            store.commit(task.key, work, {"name": task.name, "task": task.to_json(), "result": result})
        else:
            shutil.rmtree(work, ignore_errors=True)
        if result.get("fidelity") is not None and task.verify_key:
            item.fidelity = result["fidelity"]
            store.put_json(task.verify_key, result["fidelity"])
        verdict = ""
        if item.fidelity is not None:
            verdict = ", verified" if item.fidelity.get("passed") else ", FAILED verification"
        progress(f"[{done}/{total}] built {task.name}{verdict}")


def stage_artifacts(items: list[Item], store: Store, stage: Path) -> dict[str, Path]:
    """Copy the built artifacts into the staged release, with their fidelity in the manifest."""
    out: dict[str, Path] = {}
    for item in items:
        if item.status != "ok":
            continue
        dest = stage / dist.ARTIFACTS / item.name
        dist.copy_tree(store.path(item.task.key) / ARTIFACT, dest)
        if item.fidelity is not None:
            manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
            manifest["fidelity"] = item.fidelity
            manifest["validation"] = item.model.val
            write_json_atomic(dest / "manifest.json", manifest)
            (dest / "manifest.json").chmod(0o644)
        out[item.name] = dest
    return out


def gate_items(
    cfg: ReleaseConfig, items: list[Item], records: list[dict[str, Any]], report: Any
) -> dict[str, list[dict[str, Any]]]:
    """Gate results per artifact: export, fidelity, latency limits per device, baseline regressions."""
    from edgekit.release.bench import latency_gates

    gates: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        checks = gates.setdefault(item.name, [])
        checks.append({"gate": "export", "passed": item.status == "ok", "detail": item.error or "built"})
        if item.fidelity is not None:
            failures = item.fidelity.get("failures") or []
            checks.append(
                {
                    "gate": "fidelity",
                    "passed": bool(item.fidelity.get("passed")),
                    "detail": "; ".join(failures) or "passed",
                }
            )
    for record in records:
        if cfg.bench is not None:
            gates.setdefault(record["artifact"]["name"], []).extend(latency_gates(cfg.bench, record))
    if report is not None and report.comparisons is not None:
        names = {(i.model.spec.name, i.target.name, i.precision): i.name for i in items}
        for comp in report.regressions:
            model, target, precision, device = comp.key
            name = names.get((model, target, precision))
            if name:
                gates.setdefault(name, []).append(
                    {"gate": f"regression@{device}", "passed": False, "detail": "; ".join(comp.regressions)}
                )
    return gates


def run_release(
    config: str | Path | None = None,
    *,
    allow_failures: bool = False,
    executor: str = "local",
    address: str | None = None,
    use_cache: bool = True,
    rebench: bool = False,
    check_reproducible: bool | None = None,
    progress: Progress = _noop,
) -> ReleaseOutcome:
    """Build, verify, benchmark and package a release; see the module docstring."""
    started = time.perf_counter()
    cfg = load_config(config)
    check_dependencies(cfg)
    runner = make_executor(executor, cfg.jobs, address)
    if hasattr(runner, "connect"):
        runner.connect()
    scratch = Path(tempfile.mkdtemp(prefix="edgekit-release-"))
    try:
        store = Store() if use_cache else Store(scratch / "cache")
        store.clean_stale()
        return _release(
            cfg, store, runner, scratch, allow_failures, rebench, check_reproducible, progress, started
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if hasattr(runner, "close"):
            runner.close()


def _release(
    cfg: ReleaseConfig,
    store: Store,
    executor: Any,
    scratch: Path,
    allow_failures: bool,
    rebench: bool,
    check_reproducible: bool | None,
    progress: Progress,
    started: float,
) -> ReleaseOutcome:
    from edgekit.report import build_report, write_report
    from edgekit.report.compare import Thresholds
    from edgekit.report.load import Build, Inputs

    seconds: dict[str, float] = {}
    progress(f"release {cfg.release_name}: {len(cfg.models)} model(s) x {len(cfg.targets)} target(s)")
    models: list[ModelInfo] = [model_info(m) for m in cfg.models]
    items = plan(cfg, models, profile_dir(cfg, scratch / "profiles"))
    t0 = time.perf_counter()
    build(cfg, items, store, executor, progress)
    seconds["build_s"] = time.perf_counter() - t0
    stage_root = dist.staging_dir(cfg.out, cfg.release_name)
    try:
        stage = stage_root / cfg.release_name
        stage.mkdir()
        artifact_dirs = stage_artifacts(items, store, stage)
        records: list[dict[str, Any]] = []
        bench_state: dict[str, str] = {}
        if cfg.bench is not None and artifact_dirs:
            from edgekit.release.bench import bench_all

            t0 = time.perf_counter()
            records, bench_state = bench_all(
                artifact_dirs,
                cfg.profiles,
                cfg.bench,
                cfg.devices,
                store,
                stage / "results.jsonl",
                progress,
                rebench,
            )
            seconds["bench_s"] = time.perf_counter() - t0
        builds = []
        for item in items:
            directory = artifact_dirs.get(item.name)
            builds.append(
                Build(
                    model=item.model.spec.name,
                    target=item.target.name,
                    precision=item.precision,
                    backend=item.backend,
                    status=item.status,
                    stage=item.stage or "",
                    error=item.error,
                    dir=directory,
                    sha256=_manifest_sha(directory),
                    manifest=json.loads((directory / "manifest.json").read_text()) if directory else None,
                )
            )
        facts = {m.sha256: {"sha256": m.sha256, **m.facts} for m in models if m.facts}
        inputs = Inputs(
            records=[_absolute(r, stage) for r in records],
            builds=builds,
            model_facts=facts,
            sources=[cfg.release_name],
        )
        baseline = None
        thresholds = Thresholds()
        if cfg.baseline is not None:
            b = cfg.baseline
            thresholds = Thresholds(b.max_slowdown, b.confidence, b.max_accuracy_loss, b.max_cosine_loss)
            baseline = [b.path]
        report = build_report(inputs, baseline, thresholds, title=f"{cfg.name} {cfg.version}")
        gates = gate_items(cfg, items, records, report)
        failed = {name for name, checks in gates.items() if not all(c["passed"] for c in checks)}
        staged = {
            b.dir.name: {"sha256": b.sha256, "manifest": b.manifest} for b in builds if b.dir is not None
        }
        mark_excluded(report, items, gates, failed)
        failures = [
            f"{name}: {c['gate']}: {c['detail']}"
            for name, checks in gates.items()
            for c in checks
            if not c["passed"]
        ]
        passed_any = any(name not in failed for name in artifact_dirs)
        if failures and (not allow_failures or not passed_any):
            progress(f"release {cfg.release_name} NOT built: {len(failed)} artifact(s) failed a gate")
            seconds["total_s"] = time.perf_counter() - started
            return ReleaseOutcome(cfg, None, {"gates": gates}, failures, report, seconds)
        for name in failed:
            if name in artifact_dirs:
                shutil.rmtree(artifact_dirs.pop(name))
        for fmt in ("html", "md", "json"):
            write_report(report, stage / f"report.{fmt}")
            (stage / f"report.{fmt}").chmod(0o644)
        if records:
            (stage / "results.jsonl").write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
            (stage / "results.jsonl").chmod(0o644)
        reproducibility = None
        if check_reproducible if check_reproducible is not None else cfg.check_reproducible:
            from edgekit.release.repro import check

            t0 = time.perf_counter()
            reproducibility = check(items, artifact_dirs, store, executor, scratch, progress)
            seconds["reproducibility_s"] = time.perf_counter() - t0
        from edgekit.release.record import release_json

        seconds["total_s"] = time.perf_counter() - started
        data = release_json(
            cfg,
            models,
            items,
            artifact_dirs,
            stage,
            records,
            gates,
            failed,
            bench_state,
            reproducibility,
            seconds,
            executor.describe(),
            staged,
        )
        dist.finish(stage, cfg.release_name, data)
        final = cfg.out / cfg.release_name
        replace_dir(stage, final)
        progress(
            f"released {final} ({len(artifact_dirs)} artifact(s)"
            + (f", {len(failed)} excluded)" if failed else ")")
        )
        return ReleaseOutcome(cfg, final, data, failures, report, seconds)
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)


def mark_excluded(
    report: Any, items: list[Item], gates: dict[str, list[dict[str, Any]]], failed: set[str]
) -> None:
    """Say on the report's rows which artifacts a release gate leaves out, and why."""
    names = {(i.model.spec.name, i.target.name, i.precision): i.name for i in items}
    for row in report.rows:
        name = names.get(row.key[:3])
        if name in failed and row.state not in ("failed", "verify_failed"):
            row.reason = excluded_note(gates[name])
            row.stage = "gate"
        elif name in failed:
            row.reason = (
                f"{row.reason}; {excluded_note(gates[name])}" if row.reason else excluded_note(gates[name])
            )


def _manifest_sha(directory: Path | None) -> str | None:
    from edgekit.digest import file_sha256

    return file_sha256(directory / "manifest.json") if directory else None


def _absolute(record: dict[str, Any], stage: Path) -> dict[str, Any]:
    out = dict(record)
    out["artifact"] = dict(record["artifact"], dir=str(stage / record["artifact"]["dir"]))
    return out
