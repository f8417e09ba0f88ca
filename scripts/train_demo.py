"""Train edgekit's embedded demo model: a small CNN on scikit-learn's 8x8 digits.

Writes into ``calibration/digits/``:

- ``digits_cnn.onnx``: FP32 model, input ``input`` float32 (1, 1, 8, 8) NCHW, output ``logits`` (1, 10),
  opset 13, static batch of 1.
- ``calib.npz``: ``input`` (200, 1, 8, 8) float32, preprocessed, drawn from the training split.
- ``val.npz``: ``input`` (N, 1, 8, 8) float32 and ``labels`` (N,) int64, the held-out 30 % split.
- ``README.md``: what the data is, preprocessing, split, seed, accuracy, how to regenerate.

The digits data ships inside scikit-learn, so nothing is downloaded. Training is a dev-only step: torch is
not an edgekit dependency. Run from the repository root:

    pip install torch==2.13.0 scikit-learn && python scripts/train_demo.py

The script is deterministic (fixed seeds, deterministic algorithms, one thread): rerunning it with the same
torch version reproduces the data files byte for byte and the model up to torch/exporter version changes.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

log = logging.getLogger("train_demo")

SEED = 0
VAL_FRACTION = 0.3
CALIB_SAMPLES = 200
EPOCHS = 60
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
OPSET = 13
NUM_CLASSES = 10
PIXEL_MAX = 16.0  # the digits images hold integer intensities 0..16


class DigitsCNN(nn.Module):
    """Small CNN that still exercises the ops edge backends care about.

    Conv+BN+ReLU, a depthwise conv (groups == channels)+BN+ReLU, a pointwise 1x1 conv, max pooling,
    global average pooling, and a fully-connected classifier.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # stem: 1 -> 32 channels, 8x8
            nn.Conv2d(1, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            # depthwise separable block: 32 -> 64 channels
            nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            # 8x8 -> 4x4
            nn.MaxPool2d(2),
            # depthwise separable block: 64 -> 128 channels at 4x4
            nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_deterministic(seed: int) -> None:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def load_splits(seed: int) -> dict[str, np.ndarray | float]:
    """Stratified train/val split, scaling to [0, 1] and standardising with train-split statistics."""
    digits = load_digits()
    images = digits.images.astype(np.float32) / PIXEL_MAX  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    x_train, x_val, y_train, y_val = train_test_split(
        images, labels, test_size=VAL_FRACTION, stratify=labels, random_state=seed
    )
    # One scalar mean/std (not per pixel): simple to state in a calibration recipe and for a user to apply.
    mean = float(x_train.mean())
    std = float(x_train.std())
    # Round so the README values reproduce the arrays exactly.
    mean, std = round(mean, 6), round(std, 6)

    def prep(x: np.ndarray) -> np.ndarray:
        return ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)[:, None, :, :]

    return {
        "x_train": prep(x_train),
        "y_train": y_train,
        "x_val": prep(x_val),
        "y_val": y_val,
        "mean": mean,
        "std": std,
    }


def pick_calibration(x_train: np.ndarray, y_train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n training samples, balanced over the classes (n // 10 per class, remainder spread), seeded."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y_train)
    per_class = [n // len(classes) + (1 if i < n % len(classes) else 0) for i in range(len(classes))]
    chosen: list[np.ndarray] = []
    for cls, k in zip(classes, per_class, strict=True):
        idx = np.flatnonzero(y_train == cls)
        chosen.append(rng.choice(idx, size=k, replace=False))
    order = np.sort(np.concatenate(chosen))
    return x_train[order]


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    steps_per_epoch = (len(xt) + BATCH_SIZE - 1) // BATCH_SIZE
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LEARNING_RATE, total_steps=EPOCHS * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    model.train()
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
            xb = augment(xt[idx], gen)
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 10 == 0:
            log.info("epoch %d/%d  loss %.4f", epoch + 1, EPOCHS, total / len(xt))


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shift by up to one pixel in each direction (padding with the background value)."""
    background = float(xb.amin())
    padded = nn.functional.pad(xb, (1, 1, 1, 1), value=background)
    out = torch.empty_like(xb)
    offsets = torch.randint(0, 3, (len(xb), 2), generator=gen)
    for j, (dy, dx) in enumerate(offsets.tolist()):
        out[j] = padded[j, :, dy : dy + 8, dx : dx + 8]
    return out


@torch.no_grad()
def torch_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    model.eval()
    logits = model(torch.from_numpy(x)).numpy()
    return float((logits.argmax(1) == y).mean()), logits


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 1, 8, 8, dtype=torch.float32)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
        # dynamo=False is deliberate (plain opset-13 graph, BN folded); silence its deprecation notice.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript")
        tmp_path = Path(tmp) / path.name
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp_path),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["logits"],
        )
        proto = onnx.load(str(tmp_path))
        proto.producer_name = "edgekit/scripts/train_demo.py"
        proto.doc_string = "edgekit demo model: small CNN on scikit-learn digits (see README.md)"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp_path))
        os.replace(tmp_path, path)


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Runs every sample one by one, as the static batch-1 model requires."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(["logits"], {"input": x[i : i + 1]})[0] for i in range(len(x))])
    return float((logits.argmax(1) == y).mean()), logits


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as fh:
        np.savez_compressed(fh, **arrays)
    os.chmod(fh.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(fh.name, path)


def write_readme(path: Path, info: dict[str, object]) -> None:
    text = README_TEMPLATE.format(**info)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


README_TEMPLATE = """\
# Demo model and data: scikit-learn digits

The embedded default for `edgekit demo` and for tests: a small CNN and the calibration/validation sets that
go with it. Generated by `scripts/train_demo.py`; do not edit these files by hand.

## Data

scikit-learn's `load_digits()`: {n_total} grayscale 8x8 images of handwritten digits 0-9 (the UCI "Optical
Recognition of Handwritten Digits" test set), pixel values are integers 0..16. It ships inside scikit-learn,
so nothing is downloaded.

## Preprocessing (already applied to the arrays in the npz files)

1. `x = pixel / 16.0` (float32, range 0..1)
2. `x = (x - {mean}) / {std}`: one scalar mean and std, computed on the training split.
3. Layout NCHW: `(N, 1, 8, 8)`, float32.

The images stay at their native 8x8: the model reaches the target accuracy without upsampling, and 8x8
keeps the model, the data files and every backend's work small.

## Split

Stratified `train_test_split(test_size={val_fraction}, stratify=labels, random_state={seed})`:
{n_train} training and {n_val} validation samples. The calibration set is {n_calib} samples of the
training split, balanced over the 10 classes, drawn with `numpy.random.default_rng({seed})`.

## Files

| file | content | bytes |
|---|---|---|
| `digits_cnn.onnx` | FP32, opset {opset}, `input` (1, 1, 8, 8) float32 -> `logits` (1, 10) | {onnx_bytes} |
| `calib.npz` | `input` float32 ({n_calib}, 1, 8, 8); no labels | {calib_bytes} |
| `val.npz` | `input` float32 ({n_val}, 1, 8, 8), `labels` int64 ({n_val},) | {val_bytes} |

## Model

Conv3x3(1->32)+BN+ReLU, depthwise Conv3x3(32, groups=32)+BN+ReLU, pointwise Conv1x1(32->64)+BN+ReLU,
MaxPool 2x2, depthwise Conv3x3(64, groups=64)+BN+ReLU, pointwise Conv1x1(64->128)+BN+ReLU, global average
pool, Flatten, Dropout (training only), Linear(128->10). {params} parameters. Exported with the TorchScript
exporter (`dynamo=False`, `do_constant_folding=True`) in eval mode, so BatchNorm is folded into the
preceding convolutions. Graph ops: {ops}.

Trained {epochs} epochs, AdamW + one-cycle LR (max {lr}), batch {batch}, label smoothing 0.05, random
one-pixel shifts; seed {seed}, deterministic algorithms, one thread.

## Accuracy on `val.npz` (FP32)

- PyTorch: {acc_torch:.4f} ({correct_torch}/{n_val})
- ONNX Runtime {ort_version} (one sample at a time): {acc_ort:.4f} ({correct_ort}/{n_val}); max |logit
  difference| vs PyTorch {max_diff:.2e}

Made with torch {torch_version}, scikit-learn {sklearn_version}, onnx {onnx_version}, numpy
{numpy_version}.

## Regenerate

From the repository root:

    pip install torch==2.13.0 scikit-learn && python scripts/train_demo.py

`tests/test_demo_data.py` checks the committed files (shapes, dtypes, keys, FP32 accuracy >= 0.95).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o", "--out-dir", type=Path, default=Path(__file__).resolve().parents[1] / "calibration" / "digits"
    )
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import sklearn

    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    make_deterministic(args.seed)

    data = load_splits(args.seed)
    x_train, y_train = data["x_train"], data["y_train"]
    x_val, y_val = data["x_val"], data["y_val"]
    calib = pick_calibration(x_train, y_train, CALIB_SAMPLES, args.seed)
    log.info("train %s  val %s  calib %s", x_train.shape, x_val.shape, calib.shape)

    model = DigitsCNN()
    params = sum(p.numel() for p in model.parameters())
    log.info("parameters: %d", params)
    start = time.perf_counter()
    train(model, x_train, y_train, args.seed)
    train_seconds = time.perf_counter() - start
    acc_torch, logits_torch = torch_accuracy(model, x_val, y_val)
    log.info("trained in %.1f s; PyTorch val accuracy %.4f", train_seconds, acc_torch)

    onnx_path = out / "digits_cnn.onnx"
    export_onnx(model, onnx_path)
    acc_ort, logits_ort = ort_accuracy(onnx_path, x_val, y_val)
    max_diff = float(np.abs(logits_ort - logits_torch).max())
    log.info("ONNX Runtime val accuracy %.4f (max |logit diff| %.2e)", acc_ort, max_diff)
    if acc_ort != acc_torch:
        raise SystemExit(f"ONNX Runtime accuracy {acc_ort:.4f} != PyTorch {acc_torch:.4f}: export is wrong")

    save_npz(out / "calib.npz", input=calib)
    save_npz(out / "val.npz", input=x_val, labels=y_val)

    proto = onnx.load(str(onnx_path))
    ops = ", ".join(sorted({n.op_type for n in proto.graph.node}))
    info = {
        "n_total": len(x_train) + len(x_val),
        "n_train": len(x_train),
        "n_val": len(x_val),
        "n_calib": len(calib),
        "mean": data["mean"],
        "std": data["std"],
        "val_fraction": VAL_FRACTION,
        "seed": args.seed,
        "opset": OPSET,
        "onnx_bytes": onnx_path.stat().st_size,
        "calib_bytes": (out / "calib.npz").stat().st_size,
        "val_bytes": (out / "val.npz").stat().st_size,
        "params": f"{params:,}",
        "ops": ops,
        "epochs": EPOCHS,
        "lr": LEARNING_RATE,
        "batch": BATCH_SIZE,
        "acc_torch": acc_torch,
        "correct_torch": int(round(acc_torch * len(y_val))),
        "acc_ort": acc_ort,
        "correct_ort": int(round(acc_ort * len(y_val))),
        "max_diff": max_diff,
        "ort_version": ort.__version__,
        "torch_version": torch.__version__,
        "sklearn_version": sklearn.__version__,
        "onnx_version": onnx.__version__,
        "numpy_version": np.__version__,
    }
    write_readme(out / "README.md", info)
    for name in ("digits_cnn.onnx", "calib.npz", "val.npz"):
        log.info("%-16s %8d bytes", name, (out / name).stat().st_size)
    log.info("training time %.1f s", train_seconds)


if __name__ == "__main__":
    main()
