"""Typed requests and records of every API verb, each with to_json / from_json.

A request takes paths as str or Path and holds them as str (sequences as lists), so it can be
written to a file, sent to a worker and read back equal; a record's `to_json()` is exactly what the CLI prints
with `--json`. Heavy modules (numpy, onnx) are imported only where a record needs them. One module per verb
family (base: what all share; export: export, verify; fleet: bench, targets, inspect, devices, demo;
release: report, release; split: split and pipelines); every name is importable from here.
"""

from __future__ import annotations

# re-exported: edgekit.records.X is every public name of the submodules
from edgekit.records.base import GATE_FLAGS, BenchProgress, Progress, R, Request, noop
from edgekit.records.export import (
    ExportOutcome,
    ExportRecord,
    ExportRequest,
    PerLayerRecord,
    VerifyLayersRecord,
    VerifyRequest,
)
from edgekit.records.fleet import (
    BenchRecord,
    BenchRequest,
    DemoRecord,
    DemoRequest,
    DeviceCheckRecord,
    DevicesRequest,
    InspectRecord,
    InspectRequest,
    Rows,
    TargetRow,
    TargetsRecord,
    TargetsRequest,
    TrustRecord,
)
from edgekit.records.release import ReleaseRecord, ReleaseRequest, ReportRecord, ReportRequest
from edgekit.records.split import (
    SPLIT_PRECISIONS,
    PipelineBenchRecord,
    PipelineExportRecord,
    PipelineExportRequest,
    SplitRecord,
    SplitRequest,
)
