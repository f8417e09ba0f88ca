"""Export every shard of a split directory for its device's target, like any model.

    api.export_pipeline(api.PipelineExportRequest("model.split", targets=["jetson-nano", "x86-cpu"]))

Each shard is exported by `edgekit.services.exporting.export` (the one export path) into
OUT/<model>.pipeline/shard_<i>.<target>.<precision>/; heterogeneous pipelines are fine (shard 0 to
TensorRT, shard 1 to OpenVINO). A later shard's calibration and validation data are the earlier
shards' FP32 outputs on the user's sets, made here by running the shards in sequence. The exported
pipeline directory gets its own pipeline.json: the split's, plus each shard's artifact and target,
which `edgekit bench PIPELINE_DIR` runs.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInput
from edgekit.fsio import staged_dir, write_json_atomic
from edgekit.records import PipelineExportRecord, PipelineExportRequest, Progress, noop
from edgekit.split import pipeline as pipeline_file
from edgekit.split import run_shards

log = logging.getLogger(__name__)


def shard_targets(data: Mapping[str, Any], targets: Sequence[str]) -> list[str]:
    count = len(data["shards"])
    if len(targets) == 1:
        return list(targets) * count
    if len(targets) != count:
        raise BadInput(
            f"give one target for every shard or one per shard: the split has {count} shards, "
            f"--target names {len(targets)}"
        )
    return list(targets)


def shard_sets(
    split_dir: Path,
    data: Mapping[str, Any],
    path: str | Path,
    samples: int | None,
    directory: Path,
    what: str,
) -> list[Path]:
    """One .npz per shard: its inputs (model inputs from the set, the rest from the earlier shards' FP32
    outputs), one sample per row; labels and ground-truth boxes stay with the last shard."""
    from edgekit.calib import CalibrationSet, InputInfo

    data_set = CalibrationSet.load(path, samples)
    infos = [
        InputInfo(i["name"], tuple(i["shape"] or ()), np.dtype(i["dtype"] or "float32"))
        for i in data["source"]["inputs"]
    ]
    reader = data_set.validate(infos, what)
    stages = [
        run_shards.StageSpec(
            split_dir / s["file"], [i["name"] for i in s["inputs"]], [o["name"] for o in s["outputs"]]
        )
        for s in data["shards"]
    ]
    runner = run_shards.Chain(stages, [o["name"] for o in data["source"]["outputs"]])
    collected: list[dict[str, list[np.ndarray]]] = [{} for _ in stages]
    for feed in reader.feeds(1):
        values = runner.run(feed)
        for index, stage in enumerate(stages):
            for name in stage.inputs:
                collected[index].setdefault(name, []).append(np.asarray(values[name]))
    paths = []
    for index, arrays in enumerate(collected):
        out = directory / f"{what.split()[0]}_shard{index}.npz"
        stacked = {name: np.stack(parts, axis=0) for name, parts in arrays.items()}
        if index == len(stages) - 1 and data_set.labels is not None:
            stacked["labels"] = data_set.labels
        if index == len(stages) - 1 and data_set.boxes is not None:
            stacked["boxes"] = data_set.boxes
        np.savez(out, **stacked)  # type: ignore[arg-type]
        paths.append(out)
    return paths


def _unsplit_task(data: Mapping[str, Any]) -> str | None:
    """The unsplit model's task kind (its metadata is not in the shards), or None (the last shard's own
    outputs decide) when the unsplit model is not where the split recorded it."""
    from edgekit import task_options

    source = Path(data["source"].get("path", ""))
    if not source.is_file():
        return None
    try:
        task = task_options.infer(source)
    except BadInput:
        return None
    last = {o["name"] for o in data["shards"][-1].get("outputs", [])}
    return task.kind if set(task.outputs) <= last else None


def export_pipeline(req: PipelineExportRequest, progress: Progress = noop) -> PipelineExportRecord:
    """Export every shard; all or nothing (a failed shard leaves no pipeline directory)."""
    from edgekit.records import ExportRequest
    from edgekit.services import exporting

    split_dir = Path(req.split_dir).expanduser()
    data = pipeline_file.read(split_dir)
    targets = shard_targets(data, req.targets)
    from edgekit import targets as target_profiles

    for name in targets:  # unknown names fail before any work
        target_profiles.get(name, req.targets_dirs)
    out_root = Path(req.out_dir).expanduser()
    final = out_root / f"{Path(data['source']['name']).stem}.pipeline"
    with tempfile.TemporaryDirectory(prefix="edgekit-shard-sets-") as sets_dir, staged_dir(final) as tmp:
        calib_sets: list[Path | None] = [None] * len(targets)
        val_sets: list[Path | None] = [None] * len(targets)
        if req.calib is not None:
            progress("calibration data per shard (earlier shards' FP32 outputs)")
            calib_sets = list(
                shard_sets(split_dir, data, req.calib, req.calib_samples, Path(sets_dir), "calibration set")
            )
        if req.val is not None:
            progress("validation data per shard")
            val_sets = list(
                shard_sets(split_dir, data, req.val, req.val_samples, Path(sets_dir), "validation set")
            )
        described = dict(data)
        described["shards"] = [dict(s) for s in data["shards"]]
        last_task = _unsplit_task(data)
        for index, (shard, target) in enumerate(zip(described["shards"], targets, strict=True)):
            progress(f"shard {index} -> {target}")
            request = ExportRequest(
                model=split_dir / shard["file"],
                target=target,
                precision=req.precision,
                calib=calib_sets[index],
                val=val_sets[index],
                out_dir=tmp,
                simplify=req.simplify,
                options=req.options,
                gate_overrides=dict(req.gate_overrides),
                targets_dirs=req.targets_dirs,
                # intermediate tensors are judged as raw outputs; the last shard's are the model's own
                task=last_task if index == len(targets) - 1 else "raw",
            )

            def shard_progress(message: str, i: int = index) -> None:
                progress(f"shard {i}: {message}")

            outcome = exporting.export(request, shard_progress)
            shard["artifact"] = outcome.path.name
            shard["target"] = target
            shard["precision"] = outcome.manifest["precision"]
            shard["fidelity"] = outcome.fidelity.to_json() if outcome.fidelity is not None else None
        for shard in described["shards"]:  # the FP32 shards stay in the split directory
            shutil.copy2(split_dir / shard["file"], tmp / shard["file"])
            for item in shard.get("files", [])[1:]:
                shutil.copy2(split_dir / item["path"], tmp / item["path"])
        described["split_dir"] = str(split_dir.resolve())
        write_json_atomic(tmp / pipeline_file.PIPELINE, described)
    return PipelineExportRecord(final, described)
