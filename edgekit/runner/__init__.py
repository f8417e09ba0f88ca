"""`edgekit bench`: run every artifact on every matching device, as a fleet, robustly.

Flow per (artifact, device) job: connect (one connection per device, reused), send the agent and the
artifact files (content-addressed under `<workdir>/artifacts/<sha>/`, skipped when already there), write
a job file into a private run folder `<workdir>/runs/<id>/`, run the agent, parse its JSON, fetch the
outputs file when a validation set was given, delete the run folder. Each finished job is appended to
results.jsonl at once (flush + fsync), so a dead run loses nothing and `resume=True` redoes only what
is missing. A failing device is recorded `failed` with its reason; the other devices go on.

On-device fidelity: with `BenchSettings.validation` set, the agent runs every validation sample and
the outputs come home as an .npz next to results.jsonl (`<results>.outputs/<artifact-sha12>-<device>.npz`,
keyed by the model's SOURCE output names, float32, first axis = samples). Its path is the record's
`outputs_file`; the CLI feeds `numpy.load(path)` to `edgekit.fidelity.compare(reference, outputs, labels)`.

Modules: `plan` (artifacts, settings, jobs), `job` (one job on one device), `fleet` (the matrix, and
`bench_local`: this machine through the same path), `results` (results.jsonl).
"""

from __future__ import annotations

from edgekit.runner.fleet import ProgressHook, bench_local, run_bench
from edgekit.runner.job import FATAL_KINDS, SCHEMA, DeviceSession, base_record, job_spec, run_job
from edgekit.runner.results import ResultWriter, any_failed, done_pairs, read_results, table_rows
from edgekit.runner.workload import Artifact, BenchSettings, Job, load_artifacts, plan, target_profiles

__all__ = [
    "FATAL_KINDS",
    "SCHEMA",
    "Artifact",
    "BenchSettings",
    "DeviceSession",
    "Job",
    "ProgressHook",
    "ResultWriter",
    "any_failed",
    "base_record",
    "bench_local",
    "done_pairs",
    "job_spec",
    "load_artifacts",
    "plan",
    "read_results",
    "run_bench",
    "run_job",
    "table_rows",
    "target_profiles",
]
