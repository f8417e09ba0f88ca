"""`split` and what runs a split: export every shard (`export_pipeline`), bench the pipeline across
devices (`bench_pipeline`). The work is in edgekit.split; these are the API's verbs over it."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import BadInput
from edgekit.records import (
    BenchRequest,
    PipelineBenchRecord,
    PipelineExportRecord,
    PipelineExportRequest,
    Progress,
    SplitRecord,
    SplitRequest,
    noop,
)


def split(req: SplitRequest, progress: Progress = noop) -> SplitRecord:
    """Plan the cut, write the shards and pipeline.json, verify the chain against the model; with
    `req.targets`, export every shard (a later shard calibrated on the earlier shards' outputs)."""
    from edgekit import split as splitting

    record = splitting.split(req, progress)
    if req.targets:
        record.export = export_pipeline(
            PipelineExportRequest(
                record.path,
                req.targets,
                precision=req.export_precision,
                calib=req.calib,
                val=req.val,
                calib_samples=req.calib_samples,
                val_samples=req.val_samples,
                out_dir=record.path.parent,
                targets_dirs=req.targets_dirs,
            ),
            progress,
        )
    return record


def export_pipeline(req: PipelineExportRequest, progress: Progress = noop) -> PipelineExportRecord:
    """Every shard of a split directory exported for its target into OUT/<model>.pipeline/ (all or
    nothing); a failed fidelity gate leaves the pipeline written and shows in `failed_shards()`."""
    from edgekit.split.export import export_pipeline as run

    return run(req, progress)


def is_pipeline_dir(path: str | Path) -> bool:
    """A split directory (pipeline.json), exported or not: what `bench` and `export` take as a pipeline."""
    from edgekit.split.pipeline import is_pipeline_dir as check

    return check(path)


def bench_pipeline(req: BenchRequest, progress: Progress = noop) -> PipelineBenchRecord:
    """Run each exported pipeline of `req.artifacts` on its devices (the planned ones, or
    `req.devices`, one per shard, in order): `req.iterations` samples one at a time for latency, then
    all stages busy for throughput; stage records and the pipeline record go to `req.results`."""
    from edgekit.inventory import load_inventory
    from edgekit.split.bench import PipelineBenchSettings
    from edgekit.split.bench import bench_pipeline as run

    if not all(is_pipeline_dir(d) for d in req.artifacts):
        raise BadInput("bench pipelines (split directories) on their own, not with other artifacts")
    if req.resume:
        raise BadInput("--resume is for artifacts; a pipeline bench runs every stage together")
    settings = PipelineBenchSettings(
        samples=req.iterations,
        warmup=req.warmup,
        val=Path(req.val).expanduser() if req.val else None,
        threads=req.threads,
        timeout_s=req.timeout_s,
        gate_overrides=req.gate_overrides,
        targets_dirs=[str(d) for d in req.targets_dirs],
        task=req.task,
        metric=req.metric,
    )
    inventory = load_inventory(req.devices_file)
    records = []
    for directory in req.artifacts:

        def say(message: str, name: str = Path(directory).name) -> None:
            progress(f"{name}: {message}")

        records.append(run(directory, inventory, req.devices, settings, req.results, say))
    return PipelineBenchRecord(records)
