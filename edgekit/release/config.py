"""edgekit.toml: the release recipe. Every mistake is one line naming file:line, found before any
work starts (exit 2): unknown keys and tables (with the closest valid name), wrong types, missing
files, unknown targets, precisions and devices."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, suggest
from edgekit.release.schema import ARRAY_TABLES, EXPORT_OPTION_TYPES, SCHEMA, TYPE_NAMES, Reader
from edgekit.tomlio import tomllib

DEFAULT_CONFIG = "edgekit.toml"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class ModelSpec:
    path: Path
    calib: Path | None = None
    val: Path | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    calib_samples: int | None = None
    val_samples: int | None = None
    simplify: bool = True
    index: int = 0
    task: str | None = None  # None: inferred from the model at export
    metric: str | None = None  # "module:function"

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class TargetSpec:
    name: str
    precisions: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    index: int = 0


@dataclass
class BenchSpec:
    devices: list[str] = field(default_factory=list)
    devices_file: Path | None = None
    iterations: int = 200
    warmup: int = 20
    repeats: int = 1
    threads: int | None = None
    min_duration_s: float = 0.0
    timeout_s: float = 600.0
    limits: dict[str, dict[str, float]] = field(default_factory=dict)  # "max_p90_ms" -> device -> ms


@dataclass
class BaselineSpec:
    path: Path
    max_slowdown: float = 10.0
    confidence: float = 0.95
    max_accuracy_loss: float = 0.5
    max_cosine_loss: float = 0.002


@dataclass
class ReleaseConfig:
    path: Path
    name: str
    version: str
    out: Path
    models: list[ModelSpec]
    targets: list[TargetSpec]
    gates: dict[str, float] = field(default_factory=dict)
    bench: BenchSpec | None = None
    baseline: BaselineSpec | None = None
    targets_dirs: list[Path] = field(default_factory=list)
    jobs: int = 2
    check_reproducible: bool = False
    profiles: dict[str, Any] = field(default_factory=dict)  # target name -> TargetProfile
    devices: dict[str, Any] = field(default_factory=dict)  # device name -> inventory Device

    @property
    def release_name(self) -> str:
        return f"{self.name}-{self.version}"


def load_config(path: str | Path | None = None) -> ReleaseConfig:
    """Parse and check edgekit.toml, resolving paths against its folder; BadInput with file:line."""
    cfg_path = Path(path or DEFAULT_CONFIG).expanduser().absolute()
    if not cfg_path.is_file():
        raise BadInput(f"release config not found: {cfg_path} (write one, see `edgekit release --help`)")
    text = cfg_path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = match.group(1) if match else "1"
        raise BadInput(f"{cfg_path}:{line}: malformed TOML: {str(exc).split(' (at line')[0]}") from exc
    reader = Reader(cfg_path, text)
    for key, value in data.items():
        if key not in SCHEMA:
            raise reader.fail(f"unknown table [{key}].{suggest(key, SCHEMA)} Valid: {', '.join(SCHEMA)}", key)
        expected = list if key in ARRAY_TABLES else dict
        if not isinstance(value, expected):
            form = f"[[{key}]] (an array of tables)" if key in ARRAY_TABLES else f"[{key}] (a table)"
            raise reader.fail(f"'{key}' must be written as {form}", key)
    release = data.get("release")
    if not release:
        raise reader.fail('missing [release] table with name = "..." and version = "..."')
    reader.check_table(release, "release", ("release",), "[release]")
    for key in ("name", "version"):
        if key not in release:
            raise reader.fail(f'[release] needs {key} = "..."', "release")
        if not SAFE_NAME.match(release[key]):
            raise reader.fail(
                f"[release] {key} '{release[key]}' must be letters, digits and . _ + - (it names the dist folder)",
                "release",
                key,
            )
    cfg = ReleaseConfig(
        path=cfg_path,
        name=release["name"],
        version=release["version"],
        out=reader.root / Path(release.get("out", "dist")).expanduser(),
        models=[],
        targets=[],
        jobs=release.get("jobs", min(4, os.cpu_count() or 1)),
        check_reproducible=release.get("check_reproducible", False),
    )
    if cfg.jobs < 1:
        raise reader.fail(f"[release] jobs must be at least 1, got {cfg.jobs}", "release", "jobs")
    dirs = release.get("targets_dir", [])
    for value in [dirs] if isinstance(dirs, str) else dirs:
        cfg.targets_dirs.append(reader.file(str(value), "targets_dir", "release", "targets_dir"))
    _models(reader, data, cfg)
    _targets(reader, data, cfg)
    _gates(reader, data, cfg)
    _bench(reader, data, cfg)
    _baseline(reader, data, cfg)
    return cfg


def _models(reader: Reader, data: Mapping[str, Any], cfg: ReleaseConfig) -> None:
    from edgekit.ingest import parse_input_shapes

    models = data.get("model") or []
    if not models:
        raise reader.fail('no [[model]] table: add one with path = "model.onnx"')
    for i, spec in enumerate(models):
        where = ("model", i)
        reader.check_table(spec, "model", where, "[[model]]")
        if "path" not in spec:
            raise reader.fail('[[model]] needs path = "model.onnx"', *where)
        model = ModelSpec(
            path=reader.file(spec["path"], "[[model]] path", *where, "path"),
            calib=reader.file(spec["calib"], "[[model]] calib", *where, "calib") if "calib" in spec else None,
            val=reader.file(spec["val"], "[[model]] val", *where, "val") if "val" in spec else None,
            calib_samples=spec.get("calib_samples"),
            val_samples=spec.get("val_samples"),
            simplify=spec.get("simplify", True),
            index=i,
            task=spec.get("task"),
            metric=spec.get("metric"),
        )
        _check_task(reader, model, where)
        shapes = spec.get("input_shape", [])
        if not all(isinstance(s, str) for s in shapes):
            raise reader.fail(
                '[[model]] input_shape must be strings like "x:1,3,224,224"', *where, "input_shape"
            )
        try:
            model.input_shapes = parse_input_shapes(shapes)
        except BadInput as exc:
            raise reader.fail(f"[[model]] input_shape: {exc}", *where, "input_shape") from exc
        _check_model_inputs(reader, model, where)
        if any(m.path == model.path for m in cfg.models):
            raise reader.fail(f"[[model]] {model.path.name} is listed twice", *where, "path")
        if any(m.name == model.name for m in cfg.models):
            raise reader.fail(
                f"two [[model]] files are named {model.name}: artifact names would clash", *where
            )
        cfg.models.append(model)


def _check_task(reader: Reader, model: ModelSpec, where: tuple[Any, ...]) -> None:
    """task names a task kind; metric is 'module:function' and imports (from the config's folder too)."""
    from edgekit import task_options

    try:
        task_options.check_task(model.task, "[[model]] task")
    except BadInput as exc:
        raise reader.fail(str(exc), *where, "task") from exc
    if model.metric is None:
        return
    import sys

    root = str(reader.root)
    added = root not in sys.path
    if added:
        sys.path.insert(0, root)
    try:
        task_options.load_metric(model.metric, "[[model]] metric")
    except BadInput as exc:
        raise reader.fail(str(exc), *where, "metric") from exc
    finally:
        if added:
            sys.path.remove(root)


def _check_model_inputs(reader: Reader, model: ModelSpec, where: tuple[Any, ...]) -> None:
    """The model loads, input_shape names its inputs with their rank, and the calibration and
    validation sets fit those inputs: all before any work."""
    import onnx

    from edgekit import graph
    from edgekit.calib import CalibrationSet

    try:
        proto = onnx.load(str(model.path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - whatever onnx says, the file is not a model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise reader.fail(
            f"[[model]] {model.path.name} is not a readable ONNX model: {first}", *where, "path"
        ) from exc
    try:
        graph.fix_input_shapes(proto, model.input_shapes)
    except BadInput as exc:
        raise reader.fail(
            f"[[model]] input_shape: {str(exc).replace('--input-shape ', '')}", *where, "input_shape"
        ) from exc
    inputs, _ = graph.io_info(proto)
    for key, path, samples in (
        ("calib", model.calib, model.calib_samples),
        ("val", model.val, model.val_samples),
    ):
        if path is None:
            continue
        try:
            CalibrationSet.load(path, samples).validate(
                inputs, "calibration set" if key == "calib" else "validation set"
            )
        except BadInput as exc:
            raise reader.fail(f"[[model]] {key}: {exc}", *where, key) from exc


def _targets(reader: Reader, data: Mapping[str, Any], cfg: ReleaseConfig) -> None:
    from edgekit import targets as target_profiles

    try:
        profiles = target_profiles.load_all(cfg.targets_dirs)
    except BadInput as exc:
        raise reader.fail(str(exc), "release", "targets_dir") from exc
    entries = data.get("target") or []
    if not entries:
        raise reader.fail('no [[target]] table: add one with name = "x86-cpu" (see `edgekit targets`)')
    for i, spec in enumerate(entries):
        where = ("target", i)
        reader.check_table(spec, "target", where, "[[target]]")
        name = spec.get("name")
        if not name:
            raise reader.fail('[[target]] needs name = "..." (see `edgekit targets`)', *where)
        if name not in profiles:
            raise reader.fail(
                f"unknown target '{name}'.{suggest(name, profiles)} Valid: {', '.join(sorted(profiles))}",
                *where,
                "name",
            )
        profile = profiles[name]
        precisions = spec.get("precisions", list(profile.precisions))
        if isinstance(precisions, str):
            if precisions == "all":
                precisions = list(profile.precisions)
            else:
                raise reader.fail(
                    f'[[target]] {name}: precisions = \'{precisions}\': give a list like ["fp32", "int8"] or "all"',
                    *where,
                    "precisions",
                )
        for precision in precisions:
            if precision not in profile.precisions:
                raise reader.fail(
                    f"[[target]] {name} does not offer '{precision}'.{suggest(str(precision), profile.precisions)} "
                    f"It offers {', '.join(profile.precisions)}",
                    *where,
                    "precisions",
                )
        if len(set(precisions)) != len(precisions):
            raise reader.fail(f"[[target]] {name}: a precision is listed twice", *where, "precisions")
        options = dict(spec.get("options", {}))
        backend_options = {k: v for k, v in options.items() if k not in EXPORT_OPTION_TYPES}
        for key in backend_options:
            close = suggest(key, EXPORT_OPTION_TYPES)
            if close:
                raise reader.fail(f"[[target]] {name}: unknown option '{key}'.{close}", *where, "options")
        if backend_options:
            from edgekit.backends import parse_options

            try:
                parse_options(profile.backend, backend_options)
            except BadInput as exc:
                raise reader.fail(f"[[target]] {name} options: {exc}", *where, "options") from exc
        for key, value in options.items():
            types = EXPORT_OPTION_TYPES.get(key)
            if types is not None and (
                not isinstance(value, types) or isinstance(value, bool) != (bool in types)
            ):
                want = " or ".join(TYPE_NAMES.get(t, t.__name__) for t in types)
                raise reader.fail(
                    f"[[target]] {name} options.{key} must be {want}, got {value!r}", *where, "options", key
                )
            if types is None and not isinstance(value, str | int | float | bool):
                raise reader.fail(
                    f"[[target]] {name} options.{key}: backend options are plain values",
                    *where,
                    "options",
                    key,
                )
        if any(t.name == name for t in cfg.targets):
            raise reader.fail(f"[[target]] {name} is listed twice", *where, "name")
        if "int8" in precisions and not options.get("dynamic_int8"):
            for model in cfg.models:
                if model.calib is None:
                    raise reader.fail(
                        f'[[target]] {name} builds int8, which needs a calibration set: add calib = "..." to '
                        f"the [[model]] {model.name} (or options.dynamic_int8 = true)",
                        "model",
                        model.index,
                    )
        cfg.targets.append(TargetSpec(name, list(precisions), options, i))
        cfg.profiles[name] = profile


def _gates(reader: Reader, data: Mapping[str, Any], cfg: ReleaseConfig) -> None:
    gates = data.get("gates", {})
    reader.check_table(gates, "gates", ("gates",), "[gates]")
    cfg.gates = {k: float(v) for k, v in gates.items()}


def _bench(reader: Reader, data: Mapping[str, Any], cfg: ReleaseConfig) -> None:
    bench = data.get("bench")
    if bench is None:
        return
    where = ("bench",)
    reader.check_table(bench, "bench", where, "[bench]")
    spec = BenchSpec(
        devices=list(bench.get("devices", [])),
        iterations=bench.get("iterations", 200),
        warmup=bench.get("warmup", 20),
        repeats=bench.get("repeats", 1),
        threads=bench.get("threads"),
        min_duration_s=float(bench.get("min_duration_s", 0.0)),
        timeout_s=float(bench.get("timeout_s", 600.0)),
    )
    for key in ("iterations", "repeats"):
        if getattr(spec, key) < 1:
            raise reader.fail(f"[bench] {key} must be at least 1", *where, key)
    if not spec.devices:
        raise reader.fail(
            '[bench] devices is empty: list devices (e.g. ["local"]) or drop [bench]', *where, "devices"
        )
    if not all(isinstance(d, str) for d in spec.devices):
        raise reader.fail("[bench] devices must be device names (strings)", *where, "devices")
    from edgekit.inventory import load_devices

    if "devices_file" in bench:
        spec.devices_file = reader.file(bench["devices_file"], "[bench] devices_file", *where, "devices_file")
    elif (reader.root / "devices.toml").is_file():
        spec.devices_file = reader.root / "devices.toml"
    try:
        inventory = load_devices(spec.devices_file)
    except BadInput as exc:
        raise reader.fail(str(exc), *where, "devices_file") from exc
    for name in spec.devices:
        if name not in inventory:
            origin = spec.devices_file or "the built-in inventory (only 'local'; set devices_file)"
            raise reader.fail(
                f"[bench] unknown device '{name}'.{suggest(name, inventory)} Devices in {origin}: "
                f"{', '.join(sorted(inventory))}",
                *where,
                "devices",
            )
        cfg.devices[name] = inventory[name]
    for key in ("max_p50_ms", "max_p90_ms", "max_p99_ms"):
        table = bench.get(key, {})
        for device, value in table.items():
            if device not in spec.devices:
                raise reader.fail(
                    f"[bench] {key}: device '{device}' is not in [bench] devices.{suggest(device, spec.devices)}",
                    *where,
                    key,
                )
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise reader.fail(
                    f"[bench] {key}.{device} must be a positive number of ms, got {value!r}", *where, key
                )
        if table:
            spec.limits[key] = {d: float(v) for d, v in table.items()}
    cfg.bench = spec


def _baseline(reader: Reader, data: Mapping[str, Any], cfg: ReleaseConfig) -> None:
    table = data.get("baseline")
    if table is None:
        return
    reader.check_table(table, "baseline", ("baseline",), "[baseline]")
    if "path" not in table:
        raise reader.fail('[baseline] needs path = "..." (an older release dir or results.jsonl)', "baseline")
    if cfg.bench is None:
        raise reader.fail("[baseline] compares benchmarks: add a [bench] table", "baseline")
    cfg.baseline = BaselineSpec(
        path=reader.file(table["path"], "[baseline] path", "baseline", "path"),
        **{k: float(v) for k, v in table.items() if k != "path"},
    )
