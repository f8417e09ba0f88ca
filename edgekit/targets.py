"""Target profiles: one TOML per device class (data, not code).

Profiles are found, in order of precedence, in the directories of `--targets-dir`, in those of the
`EDGEKIT_TARGETS_PATH` environment variable (os.pathsep-separated), and in the profiles shipped with
edgekit (inside the wheel, or `targets/` of a source checkout). A user's file overrides a shipped one
of the same name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, suggest
from edgekit.resources import data_dir
from edgekit.tomlio import load_toml

ENV_VAR = "EDGEKIT_TARGETS_PATH"
PRECISIONS = ("fp32", "fp16", "int8", "int4")
BUILD_MODES = ("host", "on-device")
MIN_OPSET = 7  # onnxruntime, the FP32 reference of every verify, runs nothing older
KNOWN_KEYS = {
    "name",
    "arch",
    "backend",
    "description",
    "precisions",
    "default_precision",
    "int8_native",
    "opset_max",
    "build",
    "memory_mb",
    "runtime",
    "fidelity",
    "quantization",
    "device",
    "compute_capability",
    "threads",
    "options",
    "io",
}


@dataclass
class Gates:
    """Default fidelity gates of a target; flags override them per command."""

    min_cosine: float = 0.99  # raw: every output and every feature slice
    max_accuracy_drop: float = 1.0  # percentage points (classify / raw, with labels)
    min_snr_db: float | None = None  # raw
    min_top1_agreement: float | None = None  # percent; classify without labels: 97 when unset; tokens
    min_f1: float | None = 0.90  # detect: detection F1 against FP32's detections
    min_mask_iou: float | None = 0.90  # map / segment: IoU of the thresholded masks
    min_embedding_cosine: float | None = 0.98  # embed: worst per-sample cosine
    max_kl: float | None = None  # tokens: mean KL(FP32 || artifact) of the next-token distributions, nats
    min_metric: float | None = None  # a user metric (higher is better)
    min_slice_cosine: float | None = 0.5  # every task: no output or slice below it (zeroed fails)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Gates:
        known = set(cls.__dataclass_fields__)
        for key, value in data.items():
            if key not in known:
                raise BadInput(f"{where}: unknown [fidelity] key '{key}'.{suggest(key, known)}")
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise BadInput(f"{where}: [fidelity] {key} must be a number, got {value!r}")
        return cls(**{k: float(v) for k, v in data.items()})

    def to_json(self) -> dict[str, float | None]:
        return dict(self.__dict__)


@dataclass
class TargetProfile:
    name: str
    backend: str
    description: str = ""
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16", "int8"])
    default_precision: str = "fp32"
    int8_native: bool = True
    opset_max: int | None = None
    build: str = "host"
    memory_mb: int | None = None
    runtime: dict[str, Any] = field(default_factory=dict)
    fidelity: Gates = field(default_factory=Gates)
    # backend-specific tables (quantization types, device strings, ...): read by the backend
    quantization: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    compute_capability: str | None = None
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    io: dict[str, Any] = field(default_factory=dict)
    # the device's CPU architecture ("x86_64", "arm64"); None: not stated (guessed from the name)
    arch: str | None = None
    path: str = ""

    @property
    def architecture(self) -> str | None:
        """`arch`, else arm64 / x86_64 when the profile's name says so, else None (unknown)."""
        if self.arch:
            return normalize_arch(self.arch)
        lowered = self.name.lower()
        if "arm64" in lowered or "aarch64" in lowered:
            return "arm64"
        if "x86" in lowered:
            return "x86_64"
        return None

    def is_host_arch(self) -> bool:
        """Whether this host's CPU runs the target's kernels (an unknown architecture counts as one)."""
        import platform

        arch = self.architecture
        return arch is None or arch == normalize_arch(platform.machine())

    @classmethod
    def from_file(cls, path: Path) -> TargetProfile:
        data = load_toml(path)
        where = str(path)
        for key in data:
            if key not in KNOWN_KEYS:
                raise BadInput(f"{where}: unknown key '{key}'.{suggest(key, KNOWN_KEYS)}")
        for key in ("name", "backend"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise BadInput(f"{where}: missing required string key '{key}'")
        precisions = data.get("precisions", list(PRECISIONS))
        bad = [p for p in precisions if p not in PRECISIONS]
        if bad:
            raise BadInput(f"{where}: precision '{bad[0]}' is not one of {', '.join(PRECISIONS)}")
        default = data.get("default_precision", precisions[0])
        if default not in precisions:
            raise BadInput(f"{where}: default_precision '{default}' is not in precisions {precisions}")
        build = data.get("build", "host")
        if build not in BUILD_MODES:
            raise BadInput(f"{where}: build = '{build}' is not one of {', '.join(BUILD_MODES)}")
        for key in ("opset_max", "memory_mb", "threads"):
            if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool)):
                raise BadInput(f"{where}: {key} must be an integer, got {data[key]!r}")
        if data.get("opset_max", MIN_OPSET) < MIN_OPSET:
            raise BadInput(
                f"{where}: opset_max = {data['opset_max']} is below {MIN_OPSET}, the lowest opset edgekit can "
                "verify an artifact at (onnxruntime runs opset >= 7)"
            )
        return cls(
            name=data["name"],
            backend=data["backend"],
            description=str(data.get("description", "")),
            precisions=list(precisions),
            default_precision=default,
            int8_native=bool(data.get("int8_native", True)),
            opset_max=data.get("opset_max"),
            build=build,
            memory_mb=data.get("memory_mb"),
            runtime=dict(data.get("runtime", {})),
            fidelity=Gates.from_dict(dict(data.get("fidelity", {})), where),
            quantization=dict(data.get("quantization", {})),
            device=data.get("device"),
            compute_capability=data.get("compute_capability"),
            threads=data.get("threads"),
            options=dict(data.get("options", {})),
            io=dict(data.get("io", {})),
            arch=_arch(data, where),
            path=where,
        )

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("fidelity", "path")}
        out["fidelity"] = self.fidelity.to_json()
        return out


ARCHS = {"x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "arm64": "arm64", "aarch64": "arm64"}


def normalize_arch(name: str) -> str:
    return ARCHS.get(name.lower(), name.lower())


def _arch(data: dict[str, Any], where: str) -> str | None:
    value = data.get("arch")
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in ARCHS:
        raise BadInput(f"{where}: arch = {value!r} is not one of {', '.join(sorted(set(ARCHS.values())))}")
    return normalize_arch(value)


def search_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    dirs = [Path(p).expanduser() for p in extra]
    env = os.environ.get(ENV_VAR, "")
    dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    dirs.append(data_dir("targets"))
    return dirs


def load_all(extra_dirs: Sequence[str | Path] = ()) -> dict[str, TargetProfile]:
    """All profiles by name; earlier directories win."""
    found: dict[str, TargetProfile] = {}
    for directory in search_dirs(extra_dirs):
        if not directory.is_dir():
            if directory in [Path(p).expanduser() for p in extra_dirs]:
                raise BadInput(f"targets directory not found: {directory}")
            continue
        for file in sorted(directory.glob("*.toml")):
            profile = TargetProfile.from_file(file)
            found.setdefault(profile.name, profile)
    return found


def get(name: str, extra_dirs: Sequence[str | Path] = ()) -> TargetProfile:
    profiles = load_all(extra_dirs)
    if name not in profiles:
        raise BadInput(
            f"unknown target '{name}'.{suggest(name, profiles)} Valid targets: {', '.join(sorted(profiles))}"
        )
    return profiles[name]


def gates_for(target: TargetProfile, overrides: Mapping[str, float | None]) -> Gates:
    """The target's gates with the command's overrides (None = keep the target's)."""
    return dataclasses.replace(target.fidelity, **{k: v for k, v in overrides.items() if v is not None})


def gates_for_artifact(
    manifest: Mapping[str, Any], overrides: Mapping[str, float | None], targets_dirs: Sequence[str | Path]
) -> Gates:
    """The gates of the profile an artifact was built for: looked up in `targets_dirs`, then
    EDGEKIT_TARGETS_PATH, then the shipped profiles. A profile found nowhere is an error, not a quiet
    fall back to default gates: a user's own gates must apply wherever the artifact is checked."""
    try:
        target = get(manifest["target"], targets_dirs)
    except BadInput as exc:
        raise BadInput(
            f"{exc} (the artifact was built for target '{manifest['target']}': pass the directory of its "
            f"profile with --targets-dir DIR or {ENV_VAR})"
        ) from None
    return gates_for(target, overrides)


def host_arch() -> str:
    """This machine's CPU architecture in normalize_arch's spelling."""
    import platform

    return normalize_arch(platform.machine())


def host_proxy(profile: TargetProfile | None) -> str | None:
    """Why timing this target's artifact on this machine is not the target's latency (its profile's
    architecture differs from this host's), or None when the host is of the target's kind."""
    if profile is None or profile.is_host_arch():
        return None
    return (
        f"host proxy: timed on this {host_arch()} host, not on the target's {profile.architecture} CPU "
        f"({profile.name}); bench it on the device for the target's latency (edgekit bench --device NAME)"
    )
