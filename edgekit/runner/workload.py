"""What a benchmark run is made of: artifacts (loaded and checked), settings, and the (artifact,
device) jobs planned from an inventory."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from edgekit.backends import get_backend
from edgekit.errors import BadInput
from edgekit.manifest import manifest_sha256, read_manifest

if TYPE_CHECKING:
    from edgekit.backends.base import Backend
    from edgekit.inventory import Device
    from edgekit.targets import TargetProfile

log = logging.getLogger(__name__)


@dataclass
class Artifact:
    dir: Path
    manifest: dict[str, Any]
    sha256: str  # of manifest.json: names the artifact (it lists every file's sha256)
    # the target profile it was built for (its `device` string, ...); None when not found here
    profile: TargetProfile | None = None

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def target(self) -> str:
        return str(self.manifest.get("target", ""))

    @property
    def backend(self) -> str:
        return str(self.manifest.get("backend", ""))

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", ""))

    def backend_impl(self) -> Backend:
        """The Backend object that answers for this artifact (device string, files, entry)."""
        return get_backend(self.backend)

    @classmethod
    def load(cls, directory: str | Path, profiles: Mapping[str, TargetProfile] | None = None) -> Artifact:
        """An artifact directory, checked; `profiles` (default: every profile found) by name."""
        directory = Path(directory)
        manifest = read_manifest(directory)
        artifact = cls(directory, manifest, manifest_sha256(directory))
        artifact.backend_impl()  # an unknown backend is a BadInput naming the valid ones
        artifact.profile = (target_profiles() if profiles is None else profiles).get(artifact.target)
        for rel, _ in artifact.files():
            if not (directory / rel).is_file():
                raise BadInput(f"{directory}: file '{rel}' listed in manifest.json is missing")
        return artifact

    def files(self) -> list[tuple[str, str | None]]:
        """(relative posix path, sha256 or None) of every file the device needs (the backend says
        which); the entry included. Paths must stay inside the artifact."""
        listed = self.backend_impl().device_files(self.manifest)
        for rel, _ in listed:
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts or not rel:
                raise BadInput(
                    f"{self.dir}/manifest.json: file path '{rel}' must be relative, inside the artifact"
                )
        return listed


def target_profiles(targets_dirs: Sequence[str | Path] = ()) -> dict[str, TargetProfile]:
    """Every target profile by name (`targets_dirs` as `--targets-dir`, whose errors are the user's to
    fix). A broken profile found elsewhere (EDGEKIT_TARGETS_PATH) does not stop a benchmark: it is
    logged and the manifests' own records are used."""
    from edgekit import targets

    try:
        return targets.load_all(targets_dirs)
    except BadInput as exc:
        if targets_dirs:
            raise
        log.warning("target profiles not readable (%s); using the manifests' own records", exc)
        return {}


@dataclass
class BenchSettings:
    iterations: int = 100
    warmup: int = 10
    min_duration_s: float = 0.0
    threads: int | None = None
    seed: int = 0
    timeout_s: float = 600.0
    validation: Path | None = None  # .npz: on-device fidelity (outputs come home)
    repeats: int = 1  # independent sessions per run: their medians give the run-to-run spread

    def to_json(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "warmup": self.warmup,
            "min_duration_s": self.min_duration_s,
            "threads": self.threads,
            "seed": self.seed,
            "timeout_s": self.timeout_s,
            "validation": str(self.validation) if self.validation else None,
            "repeats": self.repeats,
        }


@dataclass
class Job:
    artifact: Artifact
    device: Device
    warnings: list[str] = field(default_factory=list)
    # the input shapes this run times, by source input name (edgekit.runner.shapes); None: resolved
    # from the artifact's shapes when the job file is written (a dynamic dim then fails by name)
    shapes: dict[str, list[int]] | None = None


def load_artifacts(dirs: Iterable[str | Path], targets_dirs: Sequence[str | Path] = ()) -> list[Artifact]:
    """Artifacts from their directories; `targets_dirs` (as `--targets-dir`) find user profiles."""
    profiles = target_profiles(targets_dirs)
    artifacts = [Artifact.load(d, profiles) for d in dirs]
    if not artifacts:
        raise BadInput("no artifact directories given")
    return artifacts


def plan(
    artifacts: list[Artifact], devices: dict[str, Device], explicit: list[str] | None = None
) -> tuple[list[Job], list[str]]:
    """Pair artifacts with devices: by target, or every artifact on each explicitly named device
    (warning when the device's target differs). Returns (jobs, warnings)."""
    jobs: list[Job] = []
    warnings: list[str] = []
    if explicit:
        from edgekit.inventory import select_devices

        for device in select_devices(devices, explicit):
            for art in artifacts:
                job = Job(art, device)
                if device.target != art.target:
                    msg = (
                        f"{art.name} is built for target '{art.target}' but device '{device.name}' "
                        f"is '{device.target}'"
                    )
                    job.warnings.append(msg)
                    warnings.append(msg)
                jobs.append(job)
        return jobs, warnings
    for art in artifacts:
        matching = [d for d in devices.values() if d.target == art.target]
        if not matching:
            warnings.append(
                f"{art.name}: no device with target '{art.target}' in the inventory; name one with --device"
            )
        jobs.extend(Job(art, d) for d in matching)
    return jobs, warnings
