"""What every backend's INT8 search starts from: an export job's calibration samples, the samples that
candidates are scored on (the validation set, or a held-out part of the calibration set), their FP32
outputs, and the user's search settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgekit.int8.adapter import Settings
from edgekit.int8.scoring import Feed, ScoringSet, split

if TYPE_CHECKING:
    from edgekit.backends.base import ExportJob
    from edgekit.calib import CalibrationSet


@dataclass
class JobData:
    calib_feeds: list[Feed]  # what calibrates (held-out samples removed)
    data: ScoringSet  # what scores


def batched(data: CalibrationSet) -> bool:
    """Whether feeds carry the model's batch axis (outputs concatenate on axis 0) or are one sample
    each (outputs stack on a new axis): what the bound reader (`CalibrationSet.validate`) knows."""
    from edgekit.calib import CalibrationReader

    if not isinstance(data, CalibrationReader):
        raise TypeError("the INT8 search reads a bound CalibrationReader (CalibrationSet.validate)")
    return data.batch_axis


def settings_for(job: ExportJob) -> Settings:
    options = job.options
    return Settings(
        search=bool(getattr(options, "search", True)),
        max_revert=float(getattr(options, "max_revert", 0.25)),
        time_budget_s=float(getattr(options, "search_budget_s", 600.0)),
        allow_float_ops=bool(getattr(options, "allow_float_ops", False)),
    )


def bound(job: ExportJob) -> ExportJob:
    """The job with its sets bound to the prepared model's inputs (the API passes bound readers
    already; a job built by hand may carry plain CalibrationSets)."""
    import dataclasses

    from edgekit.calib import CalibrationReader

    def bind(data: CalibrationSet | None, what: str) -> CalibrationSet | None:
        if data is None or isinstance(data, CalibrationReader):
            return data
        return data.validate(job.prepared.inputs, what)

    return dataclasses.replace(
        job, calib=bind(job.calib, "calibration set"), val=bind(job.val, "validation set")
    )


def job_data(job: ExportJob, threads: int | None = None) -> JobData:
    """Split the job's sets and compute the FP32 reference (onnxruntime on the prepared model, the
    same outputs `verify` compares with) for the scoring samples."""
    job = bound(job)
    assert job.calib is not None
    feeds = list(job.calib.feeds(1))
    calib_idx, held = split(len(feeds), job.val is not None)
    return JobData([feeds[i] for i in calib_idx], scoring_set(job, held, threads, feeds))


def scoring_set(
    job: ExportJob, held: list[int], threads: int | None = None, feeds: list[Feed] | None = None
) -> ScoringSet:
    """What candidates are scored on: --val, or the `held` calibration samples (per-sample `feeds` of
    the calibration set when already read), with their FP32 outputs."""
    from edgekit.int8.ort_qdq import HOST, run_session, session

    assert job.calib is not None
    if job.val is not None:
        score_feeds = list(job.val.feeds(1))
        labels, is_batched = job.val.labels, batched(job.val)
        source = job.scored_on or f"the validation set ({len(score_feeds)} samples)"
    else:
        every = feeds if feeds is not None else list(job.calib.feeds(1))
        score_feeds = [every[i] for i in held]
        labels = None if job.calib.labels is None else job.calib.labels[list(held)]
        is_batched = batched(job.calib)
        source = (
            f"{len(score_feeds)} held-out calibration samples"
            if len(held) < len(every)
            else f"the {len(every)} calibration samples themselves (too few to hold any out; pass --val)"
        )
    probe = ScoringSet(score_feeds, None, {}, is_batched, source)
    reference = run_session(session(job.prepared.path, HOST, threads), probe)
    return ScoringSet(score_feeds, labels, reference, is_batched, source, task=job.task, metric=job.metric)
