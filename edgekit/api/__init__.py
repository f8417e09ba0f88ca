"""The Python API behind the CLI: the same verbs, typed requests in, typed records out, no printing.

    from edgekit import api
    record = api.export(api.ExportRequest(model="model.onnx", target="x86-cpu", precision="int8",
                                          calib="calib.npz", val="val.npz"))
    record.path, record.manifest, record.fidelity

Every record has `to_json()` (what `edgekit VERB --json` prints) and `from_json()`. Errors are
`edgekit.errors` classes; their `exit_code` is the CLI's.
"""

from __future__ import annotations

from edgekit import targets as target_profiles  # noqa: F401 - used by callers as api.target_profiles
from edgekit.api.describing import demo, devices_check, devices_list, devices_trust, inspect, targets
from edgekit.api.fleet import bench, bench_local, verify, verify_on_device
from edgekit.api.releasing import release, report
from edgekit.api.splitting import bench_pipeline, export_pipeline, is_pipeline_dir, split
from edgekit.fidelity import FidelityReport as VerifyRecord
from edgekit.inventory import load_inventory
from edgekit.records import (
    BenchRecord,
    BenchRequest,
    DemoRecord,
    DemoRequest,
    DeviceCheckRecord,
    DevicesRequest,
    ExportOutcome,
    ExportRecord,
    ExportRequest,
    InspectRecord,
    InspectRequest,
    PerLayerRecord,
    PipelineBenchRecord,
    PipelineExportRecord,
    PipelineExportRequest,
    ReleaseRecord,
    ReleaseRequest,
    ReportRecord,
    ReportRequest,
    Rows,
    SplitRecord,
    SplitRequest,
    TargetRow,
    TargetsRecord,
    TargetsRequest,
    TrustRecord,
    VerifyLayersRecord,
    VerifyRequest,
)
from edgekit.services.exporting import artifact_name, export, source_io
from edgekit.services.verification import artifact_outputs, reference_outputs, verify_dir, verify_layers
from edgekit.targets import gates_for, gates_for_artifact

__all__ = [
    "BenchRecord",
    "BenchRequest",
    "DemoRecord",
    "DemoRequest",
    "DeviceCheckRecord",
    "DevicesRequest",
    "ExportOutcome",
    "ExportRecord",
    "ExportRequest",
    "InspectRecord",
    "InspectRequest",
    "ReleaseRecord",
    "ReleaseRequest",
    "ReportRecord",
    "ReportRequest",
    "PipelineBenchRecord",
    "PipelineExportRecord",
    "PipelineExportRequest",
    "PerLayerRecord",
    "Rows",
    "SplitRecord",
    "SplitRequest",
    "TargetRow",
    "TargetsRecord",
    "TargetsRequest",
    "TrustRecord",
    "VerifyLayersRecord",
    "VerifyRecord",
    "VerifyRequest",
    "artifact_name",
    "artifact_outputs",
    "bench",
    "bench_local",
    "bench_pipeline",
    "demo",
    "devices_check",
    "devices_list",
    "devices_trust",
    "export",
    "export_pipeline",
    "gates_for",
    "gates_for_artifact",
    "inspect",
    "is_pipeline_dir",
    "load_inventory",
    "reference_outputs",
    "release",
    "report",
    "source_io",
    "split",
    "targets",
    "verify",
    "verify_dir",
    "verify_layers",
    "verify_on_device",
]
