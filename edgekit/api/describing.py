"""The verbs that describe rather than build: targets, inspect, devices (list, check, trust), demo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from edgekit.inventory import load_inventory
from edgekit.records import (
    DemoRecord,
    DemoRequest,
    DeviceCheckRecord,
    DevicesRequest,
    InspectRecord,
    InspectRequest,
    Progress,
    Rows,
    TargetRow,
    TargetsRecord,
    TargetsRequest,
    TrustRecord,
    noop,
)


def targets(req: TargetsRequest) -> TargetsRecord:
    """Every target profile and whether its backend can export here (without importing it)."""
    from edgekit.backends import target_status
    from edgekit.targets import load_all

    rows = []
    for profile in sorted(load_all(req.targets_dirs).values(), key=lambda p: (p.backend, p.name)):
        state = target_status(profile)
        rows.append(
            TargetRow(
                name=profile.name,
                backend=profile.backend,
                precisions=list(profile.precisions),
                build=profile.build,
                status=state["status"],
                installed=state["installed"],
                description=profile.description,
            )
        )
    return TargetsRecord(rows)


def inspect(req: InspectRequest) -> InspectRecord:
    """Parameters, sizes per precision, MACs, peak activations; with devices, which can hold it
    (measured runtime memory from the bench records in `req.results` decides where there is one)."""
    from edgekit import analysis
    from edgekit.errors import BadInput
    from edgekit.ingest import model_sha256
    from edgekit.runner import read_results

    missing = [p for p in req.results if not Path(p).expanduser().is_file()]
    if missing:
        raise BadInput(f"results file not found: {missing[0]}")
    report = analysis.analyze(req.model, req.input_shapes)
    fit = None
    if req.devices_file is not None:
        devices = [
            {"name": d.name, "target": d.target, "memory_mb": d.memory_mb, "transport": d.transport}
            for d in load_inventory(req.devices_file).values()
        ]
        records = [r for path in req.results for r in read_results(Path(path).expanduser())]
        measured = analysis.measured_memory(records, model_sha256(req.model)) if records else None
        fit = analysis.fit_table(report, devices, measured=measured)
    return InspectRecord(report.to_json(), fit)


def devices_list(req: DevicesRequest) -> Rows:
    """Devices with their resolved host, port, user, key and target."""
    from edgekit.inventory import list_devices

    return Rows(list_devices(load_inventory(req.devices_file)))


def devices_check(req: DevicesRequest) -> DeviceCheckRecord:
    """Reachability, auth, Python and runtimes, free disk and memory of the devices, in parallel."""
    from edgekit.inventory import check_devices, select_devices

    inventory = load_inventory(req.devices_file)
    chosen = select_devices(inventory, req.names) if req.names else list(inventory.values())
    return DeviceCheckRecord(asyncio.run(check_devices(chosen)))


def devices_trust(
    name: str, devices_file: str | None = None, confirm: Callable[[str], bool] | None = None
) -> TrustRecord:
    """Fetch device `name`'s host key and add it to its known_hosts when `confirm` agrees (None: yes)."""
    from edgekit.inventory import select_devices, trust_device

    (device,) = select_devices(load_inventory(devices_file), [name])
    return TrustRecord.from_json(asyncio.run(trust_device(device, confirm)))


def demo(req: DemoRequest, progress: Progress = noop) -> DemoRecord:
    """The bundled digits CNN through every installed target (or `req.targets`), verified and timed."""
    from edgekit.demo import run_demo

    return DemoRecord(run_demo(Path(req.out_dir), req.targets, req.iterations, progress))
