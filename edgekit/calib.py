"""The one calibration / validation set reader every backend adapts (DESIGN.md, "Calibration set").

A set is an `.npz` (one array per model input keyed by input name, first axis = samples, optional
integer `labels`, and for a detection set optional ground-truth `boxes`, float (N, M, 5) rows
class, x1, y1, x2, y2 in model-input pixels, class < 0 = padding) or a directory of images plus a `calibration.toml` recipe that turns them into the
same arrays. The reader is deterministic and re-iterable; `samples=N` takes a seeded subset. The
content hash covers exactly the arrays used, so two manifests with the same hash saw the same data.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import BadInput, InternalError, MissingDependency, suggest
from edgekit.tomlio import load_toml

LABELS_KEY = "labels"
BOXES_KEY = "boxes"  # a detection set's ground truth: float (N, M, 5) rows class, x1, y1, x2, y2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
RECIPE_NAME = "calibration.toml"


@dataclass(frozen=True)
class InputInfo:
    """A model input as the reader needs it: name, shape (ints, or str/None for dynamic dims), dtype."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype


@dataclass
class CalibrationSet:
    """Arrays keyed by model input name, samples on axis 0, plus optional labels and (detection)
    ground-truth boxes."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = ""
    kind: str = "npz"  # npz | images
    seed: int = 0
    total_samples: int = 0  # before subsetting
    boxes: np.ndarray | None = None  # float (N, M, 5): class, x1, y1, x2, y2; class < 0 = padding

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, samples: int | None = None, seed: int = 0) -> CalibrationSet:
        path = Path(path).expanduser()
        if not path.exists():
            raise BadInput(f"calibration/validation set not found: {path}")
        if path.is_dir():
            arrays, labels = _load_image_dir(path)
            boxes = None
            kind = "images"
        else:
            arrays, labels, boxes = _load_npz(path)
            kind = "npz"
        counts = {name: arr.shape[0] for name, arr in arrays.items()}
        if labels is not None:
            counts[LABELS_KEY] = labels.shape[0]
        if boxes is not None:
            counts[BOXES_KEY] = boxes.shape[0]
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{k}={v}" for k, v in counts.items())
            raise BadInput(f"{path}: arrays disagree on the number of samples (axis 0): {detail}")
        total = next(iter(counts.values()))
        if total == 0:
            raise BadInput(f"{path}: the set holds no samples")
        if samples is not None:
            if samples <= 0:
                raise BadInput(f"--calib-samples must be positive, got {samples}")
            if samples < total:
                rng = np.random.default_rng(seed)
                index = np.sort(rng.choice(total, size=samples, replace=False))
                arrays = {k: v[index] for k, v in arrays.items()}
                labels = labels[index] if labels is not None else None
                boxes = boxes[index] if boxes is not None else None
        return cls(arrays, labels, str(path), kind, seed, total, boxes)

    # ---- properties ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def sha256(self) -> str:
        """Hash of exactly the arrays (and labels, boxes) in use: names, dtypes, shapes and bytes."""
        digest = hashlib.sha256()
        items = sorted(self.arrays.items())
        if self.labels is not None:
            items.append((LABELS_KEY, self.labels))
        if self.boxes is not None:
            items.append((BOXES_KEY, self.boxes))
        for name, arr in items:
            arr = np.ascontiguousarray(arr)
            digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
            digest.update(arr.tobytes())
        return digest.hexdigest()

    def record(self, method: str | None = None) -> dict[str, Any]:
        """The manifest's calibration/validation entry."""
        out: dict[str, Any] = {
            "source": Path(self.source).name,
            "kind": self.kind,
            "sha256": self.sha256(),
            "samples": len(self),
            "total_samples": self.total_samples,
            "seed": self.seed,
            "labels": self.labels is not None,
            "boxes": self.boxes is not None,
        }
        if method:
            out["method"] = method
        return out

    # ---- validation against a model ------------------------------------------------------------
    def validate(self, inputs: Sequence[InputInfo], what: str = "calibration set") -> CalibrationReader:
        """Check names, per-sample shapes and dtypes against the model inputs (BadInput, one line) and
        return the reader bound to them: the set itself is not changed."""
        batched_by_name: dict[str, bool] = {}
        where = f"{what} {Path(self.source).name}"
        wanted = [spec.name for spec in inputs]
        missing = [name for name in wanted if name not in self.arrays]
        if missing:
            have = ", ".join(self.arrays) or "nothing"
            hint = suggest(missing[0], self.arrays)
            raise BadInput(
                f"{where} has no array for model input '{missing[0]}' (model inputs: "
                f"{', '.join(wanted)}; set has: {have}).{hint}"
            )
        extra = [name for name in self.arrays if name not in wanted]
        if extra:
            raise BadInput(
                f"{where} has array '{extra[0]}' that is not a model input (model inputs: "
                f"{', '.join(wanted)}); only input arrays, '{LABELS_KEY}' and '{BOXES_KEY}' are allowed"
            )
        for spec in inputs:
            arr = self.arrays[spec.name]
            if arr.dtype != spec.dtype:
                raise BadInput(
                    f"{where}: input '{spec.name}' is {arr.dtype}, the model wants {spec.dtype} "
                    f"(convert it with arr.astype(np.{spec.dtype.name}))"
                )
            sample_shape = arr.shape[1:]
            rank = len(spec.shape)
            if len(sample_shape) == rank:
                batched = False
                model_dims = spec.shape
            elif len(sample_shape) + 1 == rank:
                batched = True
                model_dims = spec.shape[1:]
                if isinstance(spec.shape[0], int) and spec.shape[0] != 1:
                    # the model has a fixed batch > 1: samples must already carry it
                    raise BadInput(
                        f"{where}: input '{spec.name}' has a fixed batch of {spec.shape[0]}; store "
                        f"samples as shape (N, {', '.join(str(d) for d in spec.shape)})"
                    )
            else:
                raise BadInput(
                    f"{where}: input '{spec.name}' samples have shape {tuple(sample_shape)} but the "
                    f"model input is {_fmt_shape(spec.shape)} (axis 0 of the array counts samples)"
                )
            for axis, (have, want) in enumerate(zip(sample_shape, model_dims, strict=True)):
                if isinstance(want, int) and want > 0 and have != want:
                    raise BadInput(
                        f"{where}: input '{spec.name}' samples have shape {tuple(sample_shape)} but the "
                        f"model input is {_fmt_shape(spec.shape)} (dimension {axis} differs)"
                    )
            batched_by_name[spec.name] = batched
        if self.labels is not None and not np.issubdtype(self.labels.dtype, np.integer):
            raise BadInput(f"{where}: '{LABELS_KEY}' must hold integer class ids, got {self.labels.dtype}")
        return CalibrationReader(
            self.arrays,
            self.labels,
            self.source,
            self.kind,
            self.seed,
            self.total_samples,
            self.boxes,
            inputs=tuple(inputs),
            batched=batched_by_name,
        )

    # ---- iteration: only through the reader `validate` returns ----------------------------------
    def feeds(self, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
        raise _unbound()

    def label_batches(self, batch_size: int = 1) -> Iterator[np.ndarray | None]:
        raise _unbound()

    def renamed(self, mapping: Mapping[str, str]) -> CalibrationSet:
        """The same set keyed by other input names (old -> new); used when a backend renamed inputs."""
        arrays = {mapping.get(k, k): v for k, v in self.arrays.items()}
        return CalibrationSet(
            arrays, self.labels, self.source, self.kind, self.seed, self.total_samples, self.boxes
        )


@dataclass
class CalibrationReader(CalibrationSet):
    """A CalibrationSet validated against a model's inputs (`CalibrationSet.validate` returns it): the
    one reader every backend adapts. Re-iterable and deterministic; it adds a leading batch axis to
    samples stored without one. A reader is a set (same arrays, hash, record), so code typed for sets
    takes it."""

    inputs: tuple[InputInfo, ...] = ()
    # input name -> True when a sample needs a leading batch axis added to match the model's rank
    batched: dict[str, bool] = field(default_factory=dict)

    @property
    def batch_axis(self) -> bool:
        """Every input takes samples with a batch axis: feeds (and outputs) concatenate on axis 0;
        otherwise a feed is one sample and outputs stack on a new axis 0."""
        return all(self.batched.get(n, False) for n in self.arrays)

    def feeds(self, batch_size: int = 1) -> Iterator[dict[str, np.ndarray]]:
        """Model-ready feeds, `batch_size` samples each (where the model has a batch axis); every call
        starts from the first sample."""
        count = len(self)
        step = batch_size if self.batch_axis else 1
        for start in range(0, count, step):
            stop = min(start + step, count)
            feed: dict[str, np.ndarray] = {}
            for name, arr in self.arrays.items():
                if self.batched.get(name, False):
                    feed[name] = np.ascontiguousarray(arr[start:stop])
                else:
                    feed[name] = np.ascontiguousarray(arr[start])
            yield feed

    def label_batches(self, batch_size: int = 1) -> Iterator[np.ndarray | None]:
        """Labels aligned with `feeds(batch_size)`."""
        count = len(self)
        step = batch_size if self.batch_axis else 1
        for start in range(0, count, step):
            yield None if self.labels is None else self.labels[start : min(start + step, count)]

    def stack(self, chunks: Sequence[np.ndarray]) -> np.ndarray:
        """Per-feed outputs (in `feeds` order) as one array with samples on axis 0."""
        return np.concatenate(chunks, axis=0) if self.batch_axis else np.stack(chunks, axis=0)

    def renamed(self, mapping: Mapping[str, str]) -> CalibrationReader:
        """The same reader keyed by other input names (old -> new): a backend renamed the inputs."""
        arrays = {mapping.get(k, k): v for k, v in self.arrays.items()}
        inputs = tuple(InputInfo(mapping.get(i.name, i.name), i.shape, i.dtype) for i in self.inputs)
        batched = {mapping.get(k, k): v for k, v in self.batched.items()}
        return CalibrationReader(
            arrays,
            self.labels,
            self.source,
            self.kind,
            self.seed,
            self.total_samples,
            self.boxes,
            inputs=inputs,
            batched=batched,
        )


def _unbound() -> InternalError:
    return InternalError(
        "a calibration set is iterated through the reader that CalibrationSet.validate(model inputs) "
        "returns (it knows whether samples need a batch axis)"
    )


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _load_npz(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise BadInput(f"{path}: not a readable .npz calibration set ({exc})") from exc
    if not isinstance(arrays, dict) or not arrays:
        raise BadInput(f"{path}: the .npz holds no arrays")
    labels = arrays.pop(LABELS_KEY, None)
    boxes = arrays.pop(BOXES_KEY, None)
    if not arrays:
        raise BadInput(f"{path}: the .npz holds only '{LABELS_KEY}'/'{BOXES_KEY}', no input arrays")
    for name, arr in arrays.items():
        if arr.ndim < 1:
            raise BadInput(f"{path}: array '{name}' is a scalar; axis 0 must count samples")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[1] == 1:  # [N, T]: a token set's next token per position
            labels = labels.reshape(-1)
    if boxes is not None:
        boxes = np.asarray(boxes)
        if boxes.ndim != 3 or boxes.shape[2] != 5 or not np.issubdtype(boxes.dtype, np.floating):
            raise BadInput(
                f"{path}: '{BOXES_KEY}' must be float (samples, boxes, 5) rows class, x1, y1, x2, y2 "
                f"(class < 0 = padding), got {boxes.dtype} {boxes.shape}"
            )
    return arrays, labels, boxes


# ---- image directory + recipe ------------------------------------------------------------------
@dataclass
class ImageRecipe:
    """How to turn images into one model input (`calibration.toml`)."""

    input: str
    size: tuple[int, int]  # height, width
    resize: str = "crop"  # crop (shorter side, centre crop) | stretch | pad (letterbox)
    color: str = "RGB"  # RGB | BGR | GRAY
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"  # NCHW | NHWC
    dtype: str = "float32"
    labels: str | None = None  # optional: "subdir" = class id from the sorted sub-directory names

    @classmethod
    def from_toml(cls, path: Path) -> ImageRecipe:
        data = load_toml(path)
        known = set(cls.__dataclass_fields__)
        unknown = [k for k in data if k not in known]
        if unknown:
            raise BadInput(f"{path}: unknown key '{unknown[0]}'.{suggest(unknown[0], known)}")
        for key in ("input", "size"):
            if key not in data:
                raise BadInput(f"{path}: missing required key '{key}'")
        size = data["size"]
        if isinstance(size, int):
            size = [size, size]
        if not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
        ):
            raise BadInput(f"{path}: 'size' must be [height, width] in pixels, got {data['size']!r}")
        recipe = cls(
            input=str(data["input"]),
            size=(size[0], size[1]),
            resize=str(data.get("resize", "crop")),
            color=str(data.get("color", "RGB")).upper(),
            scale=float(data.get("scale", 1.0 / 255.0)),
            mean=tuple(float(x) for x in _as_list(data.get("mean", [0.0]))),
            std=tuple(float(x) for x in _as_list(data.get("std", [1.0]))),
            layout=str(data.get("layout", "NCHW")).upper(),
            dtype=str(data.get("dtype", "float32")),
            labels=data.get("labels"),
        )
        choices = {
            "resize": ("crop", "stretch", "pad"),
            "color": ("RGB", "BGR", "GRAY"),
            "layout": ("NCHW", "NHWC"),
            "dtype": ("float32", "float16", "uint8", "int8"),
        }
        for key, valid in choices.items():
            value = getattr(recipe, key)
            if value not in valid:
                raise BadInput(f"{path}: '{key}' = {value!r} is not one of {', '.join(valid)}")
        if recipe.labels not in (None, "subdir"):
            raise BadInput(f"{path}: 'labels' may only be \"subdir\"")
        if any(s == 0 for s in recipe.std):
            raise BadInput(f"{path}: 'std' must not contain 0")
        return recipe


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _load_image_dir(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    recipe_path = path / RECIPE_NAME
    if not recipe_path.exists():
        raise BadInput(f"{path}: an image directory needs a {RECIPE_NAME} recipe (see README, 'Formats')")
    recipe = ImageRecipe.from_toml(recipe_path)
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependency("PIL", "images", "image-directory calibration sets") from exc
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise BadInput(f"{path}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    classes = sorted({p.parent.name for p in files}) if recipe.labels == "subdir" else []
    tensors = []
    labels = []
    for file in files:
        try:
            with Image.open(file) as img:
                tensors.append(_preprocess(img, recipe))
        except (OSError, ValueError) as exc:
            raise BadInput(f"{file}: cannot read image ({exc})") from exc
        if classes:
            labels.append(classes.index(file.parent.name))
    arr = np.stack(tensors).astype(recipe.dtype)
    return {recipe.input: arr}, (np.asarray(labels, dtype=np.int64) if classes else None)


def _preprocess(img: Any, recipe: ImageRecipe) -> np.ndarray:
    from PIL import Image

    height, width = recipe.size
    img = img.convert("L" if recipe.color == "GRAY" else "RGB")
    if recipe.resize == "stretch":
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    elif recipe.resize == "crop":
        ratio = max(width / img.width, height / img.height)
        img = img.resize((max(width, round(img.width * ratio)), max(height, round(img.height * ratio))))
        left, top = (img.width - width) // 2, (img.height - height) // 2
        img = img.crop((left, top, left + width, top + height))
    else:  # pad: letterbox, keep aspect ratio
        ratio = min(width / img.width, height / img.height)
        resized = img.resize((max(1, round(img.width * ratio)), max(1, round(img.height * ratio))))
        canvas = Image.new(img.mode, (width, height), 114 if img.mode == "L" else (114, 114, 114))
        canvas.paste(resized, ((width - resized.width) // 2, (height - resized.height) // 2))
        img = canvas
    arr: np.ndarray = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if recipe.color == "BGR":
        arr = arr[:, :, ::-1]
    arr = arr * recipe.scale
    arr = (arr - np.asarray(recipe.mean, dtype=np.float32)) / np.asarray(recipe.std, dtype=np.float32)
    if recipe.layout == "NCHW":
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)
