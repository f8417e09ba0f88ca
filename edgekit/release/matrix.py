"""The build matrix of a release: one task per model, target and precision, keyed for the cache."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.release.build import Task
from edgekit.release.cache import digest, toolchain
from edgekit.release.config import ModelSpec, ReleaseConfig, TargetSpec


@dataclass
class ModelInfo:
    spec: ModelSpec
    sha256: str
    calib: dict[str, Any] | None = None  # {"sha256", "samples"}
    val: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # params, weight bytes per precision


@dataclass
class Item:
    """One artifact of the matrix and what became of it."""

    model: ModelInfo
    target: TargetSpec
    precision: str
    backend: str
    task: Task
    export_cached: bool = False
    verify_cached: bool = False
    status: str = "ok"  # ok | failed
    stage: str | None = None
    error: str | None = None
    fidelity: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    built_by: str | None = None  # "local" or "ray:<node>" for what this run built

    @property
    def name(self) -> str:
        return self.task.name


def artifact_name(model: ModelSpec, target: str, precision: str) -> str:
    from edgekit.services import exporting

    return exporting.artifact_name(model.path, target, precision)


def model_info(spec: ModelSpec) -> ModelInfo:
    from edgekit import analysis, graph
    from edgekit.calib import CalibrationSet

    info = ModelInfo(spec, graph.model_sha256(spec.path))
    if spec.calib is not None:
        calib = CalibrationSet.load(spec.calib, spec.calib_samples)
        info.calib = {"sha256": calib.sha256(), "samples": len(calib), "source": spec.calib.name}
    if spec.val is not None:
        val = CalibrationSet.load(spec.val, spec.val_samples)
        info.val = {"sha256": val.sha256(), "samples": len(val), "source": spec.val.name}
    try:
        report = analysis.analyze(spec.path, spec.input_shapes or None)
        info.facts = {"params": report.params, "weight_bytes": dict(report.weight_bytes)}
    except Exception:  # noqa: BLE001 - facts are for the report; the export reports real errors
        info.facts = {}
    return info


def needs_calibration(backend: Any, precision: str, options: dict[str, Any]) -> bool:
    from edgekit.release.build import export_options

    return bool(backend.needs_calibration(precision, export_options(options)))


def profile_dir(cfg: ReleaseConfig, folder: Path) -> Path:
    """The target profiles this release uses, copied into one folder that travels with every task
    (a Ray worker has no access to this machine's profile folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    for profile in cfg.profiles.values():
        shutil.copyfile(profile.path, folder / f"{profile.name}.toml")
    return folder


def _task_key(spec: ModelSpec) -> dict[str, Any]:
    """What a model's task and metric add to its cache keys (nothing when neither is stated, so keys
    of configs that state neither do not change)."""
    out: dict[str, Any] = {}
    if spec.task is not None:
        out["task"] = spec.task
    if spec.metric is not None:
        out["metric"] = spec.metric
    return out


def plan(cfg: ReleaseConfig, models: list[ModelInfo], profiles: Path) -> list[Item]:
    from edgekit.backends import get_backend

    items = []
    for info in models:
        for target in cfg.targets:
            profile = cfg.profiles[target.name]
            backend = get_backend(profile.backend)
            tools = toolchain(backend.modules)
            profile_json = {k: v for k, v in profile.to_json().items() if k != "path"}
            for precision in target.precisions:
                calibrates = needs_calibration(backend, precision, target.options)
                key = digest(
                    {
                        "kind": "export",
                        "model": info.sha256,
                        "input_shapes": info.spec.input_shapes,
                        "simplify": info.spec.simplify,
                        "calib": info.calib if calibrates else None,
                        "target": profile_json,
                        "precision": precision,
                        "options": target.options,
                        "toolchain": tools,
                        **_task_key(info.spec),
                        **({"gates": cfg.gates} if cfg.gates and calibrates else {}),
                    }
                )
                task = Task(
                    key=key,
                    name=artifact_name(info.spec, target.name, precision),
                    model=str(info.spec.path),
                    target=target.name,
                    precision=precision,
                    targets_dirs=[str(profiles)],
                    calib=str(info.spec.calib) if (calibrates and info.spec.calib) else None,
                    calib_samples=info.spec.calib_samples,
                    input_shapes=info.spec.input_shapes,
                    simplify=info.spec.simplify,
                    options=dict(target.options),
                    task=info.spec.task,
                    metric=info.spec.metric,
                    metric_root=str(cfg.path.parent) if info.spec.metric else None,
                    gates=dict(cfg.gates),  # what verify judges by, and the INT8 search's goal
                )
                if info.spec.val is not None:
                    task.val = str(info.spec.val)
                    task.val_samples = info.spec.val_samples
                    task.verify_key = digest(
                        {
                            "kind": "verify",
                            "export": key,
                            "val": info.val,
                            "gates": cfg.gates,
                            "target": profile_json,
                            **_task_key(info.spec),
                        }
                    )
                items.append(Item(info, target, precision, profile.backend, task))
    return items
