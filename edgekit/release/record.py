"""release.json: what was released, from what, with which tools, and how it measured up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgekit import __version__
from edgekit.digest import file_sha256
from edgekit.release import dist
from edgekit.release.cache import toolchain
from edgekit.release.config import ReleaseConfig
from edgekit.release.matrix import Item, ModelInfo

SCHEMA = 1
# what edgekit's own tests found about backends' determinism (release --check-reproducible measures it)
KNOWN = {
    "openvino": (
        "model.xml may differ in auto-generated layer names: OpenVINO numbers the nodes its passes create "
        "with a process-wide counter and NNCF's INT8 pass creates them in a varying order; each export runs "
        "in a fresh process, which makes FP32/FP16 IRs reproducible; weights (.bin) are reproducible"
    ),
    "tflite": "the .tflite files are reproducible; convert.log holds temporary paths and timings",
    "onnxruntime": "reproducible",
    "tensorrt": "the bundle (ONNX, calibration cache, build recipe) is reproducible; engines built on devices are not",
}


def _bench_summary(records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    out = {}
    for record in records:
        if record["artifact"]["name"] != name:
            continue
        lat = record.get("latency_ms") or {}
        out[record["device"]["name"]] = {
            "status": record.get("status"),
            "error": record.get("error"),
            "p50_ms": lat.get("p50"),
            "p90_ms": lat.get("p90"),
            "p99_ms": lat.get("p99"),
            "fps": record.get("throughput_fps"),
            "init_ms": record.get("init_ms"),
            "peak_rss_mb": record.get("peak_rss_mb"),
            "timestamp": record.get("timestamp"),
        }
    return out


def _fidelity_summary(fidelity: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fidelity:
        return None
    outputs = fidelity.get("outputs") or []
    cosines = [o["cosine"] for o in outputs if o.get("cosine") is not None]
    return {
        "passed": fidelity.get("passed"),
        "samples": fidelity.get("samples"),
        "min_cosine": min(cosines) if cosines else None,
        "accuracy_reference": fidelity.get("accuracy_reference"),
        "accuracy": fidelity.get("accuracy_artifact"),
        "accuracy_drop": fidelity.get("accuracy_drop"),
        "failures": fidelity.get("failures") or [],
        "gates": fidelity.get("gates"),
    }


def release_json(
    cfg: ReleaseConfig,
    models: list[ModelInfo],
    items: list[Item],
    artifact_dirs: dict[str, Path],
    stage: Path,
    records: list[dict[str, Any]],
    gates: dict[str, list[dict[str, Any]]],
    failed: set[str],
    bench_state: dict[str, str],
    reproducibility: dict[str, Any] | None,
    seconds: dict[str, float],
    executor: str = "local",
    staged: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`staged`: each staged artifact's manifest sha256 and manifest (excluded ones included, so that
    `edgekit report` on the release still matches their benchmark records and shows their sizes)."""
    from edgekit.backends import get_backend

    backends = sorted({item.backend for item in items})
    artifacts = []
    for item in items:
        directory = artifact_dirs.get(item.name)
        status = item.status if item.name not in failed else ("excluded" if item.status == "ok" else "failed")
        manifest = ((staged or {}).get(item.name) or {}).get("manifest") or {}
        artifacts.append(
            {
                "name": item.name,
                "model": item.model.spec.name,
                "target": item.target.name,
                "backend": item.backend,
                "precision": item.precision,
                "status": status,
                "stage": item.stage,
                "error": item.error,
                "dir": directory.relative_to(stage).as_posix() if directory else None,
                "manifest_sha256": ((staged or {}).get(item.name) or {}).get("sha256"),
                "files": dist.file_list(directory) if directory else [],
                "size": manifest.get("size"),
                "effective_precision": manifest.get("effective_precision"),
                "fidelity": _fidelity_summary(item.fidelity),
                "fidelity_report": item.fidelity,
                "bench": _bench_summary(records, item.name),
                "gates": gates.get(item.name, []),
                "cache": {
                    "export": "hit" if item.export_cached else "miss",
                    "verify": None
                    if item.task.verify_key is None
                    else ("hit" if item.verify_cached else "miss"),
                    "bench": {
                        k.split("@", 1)[1]: v
                        for k, v in bench_state.items()
                        if k.split("@", 1)[0] == item.name
                    },
                },
                "cache_key": item.task.key,
                "built_by": item.built_by or "cache",
                "build_seconds": item.seconds,
            }
        )
    failures = [
        f"{n}: {c['gate']}: {c['detail']}" for n, checks in gates.items() for c in checks if not c["passed"]
    ]
    return {
        "schema": SCHEMA,
        "name": cfg.name,
        "version": cfg.version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edgekit_version": __version__,
        "config": {"file": cfg.path.name, "sha256": file_sha256(cfg.path)},
        "executor": executor,
        "toolchain": {b: toolchain(get_backend(b).modules) for b in backends},
        "models": [
            {
                "name": m.spec.name,
                "sha256": m.sha256,
                "calibration": m.calib,
                "validation": m.val,
                "input_shapes": m.spec.input_shapes,
                **m.facts,
            }
            for m in models
        ],
        "artifacts": artifacts,
        "gates": {"passed": not failures, "failures": failures, "excluded": sorted(failed)},
        "files": dist.file_list(stage),
        "reproducibility": reproducibility
        or {
            "checked": False,
            "note": "not checked in this build (edgekit release --check-reproducible rebuilds and compares)",
            "known": {b: KNOWN.get(b, "unknown") for b in backends},
        },
        "not_reproducible_by_nature": {**{f"*/{k}": v for k, v in dist.BY_NATURE.items()}, **dist.RUN_FILES},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
    }
