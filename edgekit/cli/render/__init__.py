"""Human-readable output of the CLI (rich tables, progress), from the API's records.

Every function takes a record (or its JSON form) and prints; none computes anything the record does
not hold, so `--json` and the tables always say the same. Results go to stdout, progress and
warnings to stderr.

One module per verb family (base: consoles, tables, progress; exporting: export and verify; fleet:
targets, inspect, devices, bench, demo; releasing: report, release; splitting: split, pipelines); every
function is importable from here as `edgekit.cli.render.<name>`.
"""

from __future__ import annotations

from edgekit.cli.render.base import BenchView, Steps, mb, num, stderr, stdout, table, warnings
from edgekit.cli.render.exporting import export, fidelity, int8_search, per_layer, precision_choice
from edgekit.cli.render.fleet import bench, demo, devices_check, devices_list, inspect, targets, trust
from edgekit.cli.render.releasing import release, report
from edgekit.cli.render.splitting import MIB, pipeline_bench, pipeline_export, split_plan

__all__ = [
    "BenchView",
    "MIB",
    "Steps",
    "bench",
    "demo",
    "devices_check",
    "devices_list",
    "export",
    "fidelity",
    "inspect",
    "int8_search",
    "mb",
    "num",
    "per_layer",
    "pipeline_bench",
    "pipeline_export",
    "precision_choice",
    "release",
    "report",
    "split_plan",
    "stderr",
    "stdout",
    "table",
    "targets",
    "trust",
    "warnings",
]
