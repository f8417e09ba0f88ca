"""Train edgekit's demo detector: a small anchor-free detector with an Ultralytics YOLOv8-style head,
on synthetic scenes of coloured shapes.

Writes into ``calibration/shapes/``:

- ``shapes_det.onnx``: FP32, opset 17, input ``images`` float32 (batch, 3, height, width) NCHW RGB in
  0..1 with dynamic batch/height/width as Ultralytics' ``dynamic=True`` export writes them, output
  ``output0`` (batch, 4 + C, anchors): box centre x, centre y, width, height in pixels concatenated on
  axis 1 with the sigmoid class scores -- the YOLOv8 layout. Ultralytics' metadata (task, names, imgsz,
  stride, batch) is in the ONNX metadata_props, as Ultralytics writes it.
- ``calib.npz``: ``images`` (64, 3, S, S) float32, scenes drawn like the training scenes.
- ``val.npz``: ``images`` (N, 3, S, S) float32, other scenes (never used for training or calibration),
  and their ground truth ``boxes`` (N, M, 5) float32 rows ``[class, x1, y1, x2, y2]`` in pixels, padded
  with class -1: the set's optional ``boxes`` array, from which verify reports real mAP@0.5.
- ``README.md``: the data, the model, the training, FP32 mAP@0.5 against the ground truth.

Nothing is downloaded. Training is a dev-only step (torch is not an edgekit dependency); from the
repository root:

    pip install torch==2.13.0 && python scripts/train_detector.py

Deterministic (fixed seeds, deterministic algorithms, one thread): rerunning it with the same torch
version reproduces the data files byte for byte and the model up to torch/exporter version changes.
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
from torch import nn

log = logging.getLogger("train_detector")

SEED = 0
IMGSZ = 96  # training scenes
EXPORT_SIZE = 640  # export, calibration and validation scenes: Ultralytics' default imgsz
NAMES = ("circle", "square", "triangle", "cross")
STRIDES = (8, 16, 32)
TRAIN_IMAGES = 2400
CALIB_IMAGES = 32
VAL_IMAGES = 24
BIG_SCENE_OBJECTS = (16, 33)  # shapes per 640x640 scene
EPOCHS = 5
BATCH_SIZE = 32
LEARNING_RATE = 4e-3
OPSET = 17
CONF = 0.25  # the score threshold and NMS IoU Ultralytics' predict uses
NMS_IOU = 0.45
MIN_SIZE, MAX_SIZE = 14, 40  # object extent in pixels


# ---------------------------------------------------------------------------------------------- data


def _shape_mask(kind: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask (size x size) of one shape, filling its box (so the box is tight)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    half = size / 2.0
    if kind == 0:  # circle
        return (xx - half) ** 2 + (yy - half) ** 2 <= half**2
    if kind == 1:  # square
        return np.ones((size, size), dtype=bool)
    if kind == 2:  # triangle, apex up, base along the bottom
        return np.abs(xx - half) <= half * yy / size
    bar = max(3, int(round(size * rng.uniform(0.25, 0.4))))  # cross (plus sign)
    lo = (size - bar) // 2
    mask = np.zeros((size, size), dtype=bool)
    mask[lo : lo + bar, :] = True
    mask[:, lo : lo + bar] = True
    return mask


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (4,) against boxes b (K, 4), x1y1x2y2."""
    if len(b) == 0:
        return np.zeros(0)
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(area, 1e-9)


def make_scene(
    rng: np.random.Generator, size: int = IMGSZ, objects: tuple[int, int] = (1, 5)
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB scene (3, size, size) in 0..1 and its boxes (M, 5): class, x1, y1, x2, y2."""
    base = rng.uniform(0.0, 0.45, size=3).astype(np.float32)
    ramp = np.linspace(0, rng.uniform(-0.15, 0.15), size, dtype=np.float32)
    image = np.broadcast_to(base[:, None, None] + ramp[None, :, None], (3, size, size)).copy()
    boxes: list[list[float]] = []
    for _ in range(int(rng.integers(*objects))):
        for _attempt in range(10):
            kind = int(rng.integers(0, len(NAMES)))
            extent = int(rng.integers(MIN_SIZE, MAX_SIZE + 1))
            x0 = int(rng.integers(0, size - extent + 1))
            y0 = int(rng.integers(0, size - extent + 1))
            box = np.array([x0, y0, x0 + extent, y0 + extent], dtype=np.float32)
            if len(boxes) and _iou(box, np.array(boxes)[:, 1:]).max() > 0.1:
                continue
            mask = _shape_mask(kind, extent, rng)
            colour = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
            colour[int(rng.integers(0, 3))] *= rng.uniform(0.1, 0.6)  # saturated, never grey
            region = image[:, y0 : y0 + extent, x0 : x0 + extent]
            region[:, mask] = colour[:, None]
            ys, xs = np.nonzero(mask)
            boxes.append([kind, x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
            break
    # 8-bit levels, as a decoded photo has (and the npz files compress)
    pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0
    return pixels.astype(np.float32), np.array(boxes, dtype=np.float32).reshape(-1, 5)


def make_set(
    n: int, seed: int, size: int = IMGSZ, objects: tuple[int, int] = (1, 5)
) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    scenes = [make_scene(rng, size, objects) for _ in range(n)]
    return np.stack([s[0] for s in scenes]), [s[1] for s in scenes]


# --------------------------------------------------------------------------------------------- model


class ConvBnAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


def make_anchors(feats: list[torch.Tensor], strides: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres (A, 2) in grid units and their strides (A, 1), from the feature maps' shapes, as
    Ultralytics' make_anchors does (traced into Shape/Range ops, so height and width stay dynamic)."""
    points, stride_column = [], []
    for feat, stride in zip(feats, strides, strict=True):
        h, w = feat.shape[2], feat.shape[3]
        sx = torch.arange(w, dtype=feat.dtype) + 0.5
        sy = torch.arange(h, dtype=feat.dtype) + 0.5
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        stride_column.append(torch.full((h * w, 1), float(stride), dtype=feat.dtype))
    return torch.cat(points), torch.cat(stride_column)


class Detect(nn.Module):
    """YOLOv8's Detect head without DFL (reg_max = 1): per level a box branch (4 distances, left/top/
    right/bottom in stride units) and a class branch (C logits); decoded to centre/size in pixels and
    concatenated with the sigmoid scores on axis 1."""

    def __init__(self, channels: tuple[int, ...], num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        self.nc = num_classes
        self.box = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, hidden), nn.Conv2d(hidden, 4, 1)) for c in channels
        )
        self.cls = nn.ModuleList(
            nn.Sequential(ConvBnAct(c, hidden), nn.Conv2d(hidden, num_classes, 1)) for c in channels
        )
        for branch in self.cls:
            nn.init.constant_(branch[-1].bias, -4.0)
        for branch in self.box:
            nn.init.constant_(branch[-1].bias, 1.0)

    def raw(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances (B, 4, A) and class logits (B, C, A) over all levels."""
        n = feats[0].shape[0]
        dist = torch.cat([b(f).view(n, 4, -1) for b, f in zip(self.box, feats, strict=True)], 2)
        logits = torch.cat([c(f).view(n, self.nc, -1) for c, f in zip(self.cls, feats, strict=True)], 2)
        return dist, logits

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        dist, logits = self.raw(feats)
        anchors, strides = make_anchors(feats, STRIDES)
        anchors, strides = anchors.transpose(0, 1).unsqueeze(0), strides.transpose(0, 1)
        lt, rb = dist.chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((dbox, logits.sigmoid()), 1)


class ShapesDetector(nn.Module):
    def __init__(self, num_classes: int = len(NAMES)) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBnAct(3, 8, 3, 2), ConvBnAct(8, 16, 3, 2), ConvBnAct(16, 16))  # /4
        self.p3 = nn.Sequential(ConvBnAct(16, 32, 3, 2), ConvBnAct(32, 32))  # /8
        self.p4 = ConvBnAct(32, 48, 3, 2)  # /16
        self.p5 = ConvBnAct(48, 64, 3, 2)  # /32
        self.head = Detect((32, 48, 64), num_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        return [p3, p4, self.p5(p4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------------------ training


def assign(gt: np.ndarray, anchors: np.ndarray, strides: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre sampling (FCOS-style): an anchor is positive for a box when its centre lies inside the
    box and within 1.5 strides of the box centre; ties go to the smaller box. Returns the matched box
    index per anchor (-1 for none)."""
    match = np.full(len(anchors), -1, dtype=np.int64)
    best_area = np.full(len(anchors), np.inf)
    for j, (_cls, x1, y1, x2, y2) in enumerate(gt):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        r = 1.5 * strides
        inside = (anchors[:, 0] > x1) & (anchors[:, 0] < x2) & (anchors[:, 1] > y1) & (anchors[:, 1] < y2)
        near = (np.abs(anchors[:, 0] - cx) < r) & (np.abs(anchors[:, 1] - cy) < r)
        area = (x2 - x1) * (y2 - y1)
        take = inside & near & (area < best_area)
        match[take] = j
        best_area[take] = area
    return match, best_area


def targets_for(boxes: list[np.ndarray], anchors_px: np.ndarray, strides: np.ndarray, nc: int):
    n, a = len(boxes), len(anchors_px)
    cls_t = np.zeros((n, nc, a), dtype=np.float32)
    box_t = np.zeros((n, 4, a), dtype=np.float32)  # x1y1x2y2 pixels
    pos = np.zeros((n, a), dtype=bool)
    for i, gt in enumerate(boxes):
        match, _ = assign(gt, anchors_px, strides)
        idx = np.flatnonzero(match >= 0)
        pos[i, idx] = True
        cls_t[i, gt[match[idx], 0].astype(np.int64), idx] = 1.0
        box_t[i, :, idx] = gt[match[idx], 1:5]
    return torch.from_numpy(cls_t), torch.from_numpy(box_t), torch.from_numpy(pos)


def giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of matching rows (K, 4) x1y1x2y2."""
    ix = (torch.min(a[:, 2], b[:, 2]) - torch.max(a[:, 0], b[:, 0])).clamp(min=0)
    iy = (torch.min(a[:, 3], b[:, 3]) - torch.max(a[:, 1], b[:, 1])).clamp(min=0)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter + 1e-7
    cw = torch.max(a[:, 2], b[:, 2]) - torch.min(a[:, 0], b[:, 0])
    ch = torch.max(a[:, 3], b[:, 3]) - torch.min(a[:, 1], b[:, 1])
    hull = cw * ch + 1e-7
    return inter / union - (hull - union) / hull


def train(model: ShapesDetector, images: np.ndarray, boxes: list[np.ndarray], seed: int) -> None:
    with torch.no_grad():
        feats = model.features(torch.zeros(1, 3, IMGSZ, IMGSZ))
    anchors, strides = make_anchors(feats, STRIDES)
    anchors_px = (anchors * strides).numpy()
    stride_np = strides[:, 0].numpy()
    cls_t, box_t, pos = targets_for(boxes, anchors_px, stride_np, model.head.nc)
    xt = torch.from_numpy(images)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=5e-4)
    steps = (len(xt) + BATCH_SIZE - 1) // BATCH_SIZE
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=EPOCHS * steps)
    bce = nn.BCEWithLogitsLoss(reduction="sum")
    a_pts, s_col = anchors.transpose(0, 1).unsqueeze(0), strides.transpose(0, 1)
    model.train()
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(steps):
            idx = perm[i * BATCH_SIZE : (i + 1) * BATCH_SIZE]
            xb = xt[idx]
            cb, bb, pb = cls_t[idx], box_t[idx], pos[idx]
            dist, logits = model.head.raw(model.features(xb))
            n_pos = max(int(pb.sum()), 1)
            loss_cls = bce(logits, cb) / n_pos
            lt, rb = dist.chunk(2, 1)
            pred = torch.cat((a_pts - lt, a_pts + rb), 1) * s_col  # x1y1x2y2 pixels
            p = pred.permute(0, 2, 1)[pb]
            t = bb.permute(0, 2, 1)[pb]
            loss_box = (1 - giou(p, t)).sum() / n_pos
            loss_l1 = ((p - t).abs() / s_col.permute(1, 0).expand(len(idx), -1, -1)[pb]).sum() / n_pos / 4
            loss = loss_cls + 2.0 * loss_box + 0.5 * loss_l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        log.info("epoch %d/%d  loss %.4f", epoch + 1, EPOCHS, total / len(xt))


# ---------------------------------------------------------------------------------- evaluation (dev)


def decode(output: np.ndarray, conf: float = CONF, iou: float = NMS_IOU) -> np.ndarray:
    """One image's output (4 + C, A) -> detections (K, 6): class, score, x1, y1, x2, y2 (class-aware NMS)."""
    scores = output[4:]
    cls = scores.argmax(0)
    best = scores.max(0)
    keep = best >= conf
    xywh = output[:4, keep].T
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    cls, best = cls[keep], best[keep]
    out = []
    for c in np.unique(cls):
        sel = np.flatnonzero(cls == c)
        order = sel[np.argsort(-best[sel], kind="stable")]
        while len(order):
            i = order[0]
            out.append([c, best[i], *boxes[i]])
            order = order[1:][_iou(boxes[i], boxes[order[1:]]) <= iou]
    return np.array(out, dtype=np.float32).reshape(-1, 6)


def map50(outputs: np.ndarray, truth: list[np.ndarray], nc: int) -> float:
    """mAP@0.5 (all-point interpolated AP, mean over classes with ground truth) at score >= 0.001."""
    dets = [decode(o, conf=0.001) for o in outputs]
    aps = []
    for c in range(nc):
        n_gt = sum(int((t[:, 0] == c).sum()) for t in truth)
        if n_gt == 0:
            continue
        scored = []
        for d, t in zip(dets, truth, strict=True):
            gt = t[t[:, 0] == c, 1:5]
            used = np.zeros(len(gt), dtype=bool)
            for row in d[d[:, 0] == c][np.argsort(-d[d[:, 0] == c][:, 1], kind="stable")]:
                ious = _iou(row[2:6], gt)
                j = int(ious.argmax()) if len(ious) else -1
                hit = j >= 0 and ious[j] >= 0.5 and not used[j]
                if hit:
                    used[j] = True
                scored.append((row[1], hit))
        scored.sort(key=lambda s: -s[0])
        tp = np.cumsum([s[1] for s in scored]) if scored else np.zeros(0)
        recall = tp / n_gt if len(tp) else np.zeros(1)
        precision = tp / np.arange(1, len(tp) + 1) if len(tp) else np.zeros(1)
        r = np.concatenate([[0.0], recall, [1.0]])
        p = np.concatenate([[1.0], precision, [0.0]])
        p = np.maximum.accumulate(p[::-1])[::-1]
        aps.append(float(np.sum((r[1:] - r[:-1]) * p[1:])))
    return float(np.mean(aps))


# ---------------------------------------------------------------------------------------------- export


def export_onnx(model: ShapesDetector, path: Path) -> None:
    model.eval()
    dummy = torch.zeros(1, 3, EXPORT_SIZE, EXPORT_SIZE, dtype=torch.float32)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*legacy TorchScript")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        tmp_path = Path(tmp) / path.name
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp_path),
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            input_names=["images"],
            output_names=["output0"],
            # Ultralytics' export(dynamic=True) axes
            dynamic_axes={
                "images": {0: "batch", 2: "height", 3: "width"},
                "output0": {0: "batch", 2: "anchors"},
            },
        )
        proto = onnx.load(str(tmp_path))
        proto.producer_name = "edgekit/scripts/train_detector.py"
        proto.doc_string = "edgekit demo detector: synthetic coloured shapes (see README.md)"
        metadata = {  # the keys and value formats Ultralytics' exporter writes
            "description": "edgekit demo detector (Ultralytics YOLOv8-style head) on synthetic shapes",
            "author": "edgekit scripts/train_detector.py",
            "license": "same as edgekit",
            "stride": str(max(STRIDES)),
            "task": "detect",
            "batch": "1",
            "imgsz": str([EXPORT_SIZE, EXPORT_SIZE]),
            "names": str(dict(enumerate(NAMES))),
        }
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp_path))
        os.replace(tmp_path, path)


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["output0"], {"images": x[i : i + 1]})[0] for i in range(len(x))])


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as fh:
        np.savez_compressed(fh, **arrays)
    os.chmod(fh.name, 0o644)
    os.replace(fh.name, path)


README_TEMPLATE = """\
# Demo detector and data: synthetic coloured shapes

The detector of `edgekit demo` and of the detection tests: a small anchor-free detector whose head and
ONNX metadata follow Ultralytics YOLOv8's export, with its calibration and validation sets. Generated by
`scripts/train_detector.py`; do not edit these files by hand.

## Data

Synthetic RGB scenes in 8-bit levels: a random background colour with a vertical ramp, and shapes
({names}) of {min_size}-{max_size} px, each a saturated random colour, at random places (box IoU between
shapes at most 0.1); boxes are the shapes' tight pixel boxes. Training: {n_train} scenes of
{train_size}x{train_size} with 1-4 shapes (seed {seed}). Calibration ({n_calib} scenes, seed {seed} + 1)
and validation ({n_val} scenes, seed {seed} + 2, {n_val_boxes} objects) are {imgsz}x{imgsz} scenes with
{objects} shapes: the size the model is exported and judged at (Ultralytics' default imgsz). The
network is fully convolutional and its anchors come from the feature shapes, so it runs at any size
that is a multiple of 32; the three sets are disjoint.

Preprocessing (already applied): RGB, `pixel / 255` (0..1), NCHW float32 -- Ultralytics' own.

## Files

| file | content | bytes |
|---|---|---|
| `shapes_det.onnx` | FP32, opset {opset}, `images` (batch, 3, height, width) -> `output0` (batch, {channels}, anchors); {anchors} anchors at {imgsz}x{imgsz} | {onnx_bytes} |
| `calib.npz` | `images` float32 ({n_calib}, 3, {imgsz}, {imgsz}) | {calib_bytes} |
| `val.npz` | `images` float32 ({n_val}, 3, {imgsz}, {imgsz}); `boxes` float32 ({n_val}, {max_boxes}, 5), its ground truth: per sample rows `(class, x1, y1, x2, y2)` in pixels, class -1 = padding (`edgekit verify` reports real mAP@0.5 from it) | {val_bytes} |

Export with a fixed size, as for any Ultralytics `dynamic=True` export:
`--input-shape images:1,3,{imgsz},{imgsz}`.

## Model

Backbone: Conv-BN-SiLU 3x3 stride 2 (3->8), stride 2 (8->16), 16->16; stride 2 (16->32), 32->32 (P3,
stride 8); stride 2 (32->48) (P4, 16); stride 2 (48->64) (P5, 32). Head: YOLOv8's Detect without DFL
(reg_max 1): per level a box branch (Conv 3x3 -> 16, Conv 1x1 -> 4 distances) and a class branch (Conv
3x3 -> 16, Conv 1x1 -> {nc} logits); distances decoded against the anchor centres (computed in the graph
from the feature shapes, as Ultralytics does), times the strides, to centre x/y and width/height in
pixels, concatenated on axis 1 with the sigmoid class scores: `output0[:, 0:4]` is pixels (0..{imgsz}),
`output0[:, 4:{channels}]` probabilities (0..1). One per-tensor INT8 scale for that output is
{imgsz}/255 = {step:.2f} per step: every score rounds to 0 -- the INT8 failure edgekit's head-aware
recipes exist for. {params} parameters. ONNX metadata: {metadata}.

Training: {epochs} epochs, AdamW + one-cycle LR (max {lr}), batch {batch}; centre sampling (anchor inside
the box and within 1.5 strides of its centre), BCE on the scores, GIoU + L1 on the boxes; seed {seed},
deterministic algorithms, one thread, {train_seconds:.0f} s on this machine's CPU.

## Accuracy on `val.npz` (FP32, ONNX Runtime {ort_version}, {imgsz}x{imgsz})

mAP@0.5 against the ground truth: {map50:.3f}. At score >= {conf} and NMS IoU {nms_iou}: {n_dets}
detections, {tp} of {n_val_boxes} objects found (same class, IoU >= 0.5). Max |output difference| ONNX
Runtime vs PyTorch: {max_diff:.2e}.

Made with torch {torch_version}, onnx {onnx_version}, numpy {numpy_version}.

## Regenerate

    pip install torch==2.13.0 && python scripts/train_detector.py
"""


def count_found(outputs: np.ndarray, truth: list[np.ndarray]) -> tuple[int, int]:
    n_dets = tp = 0
    for o, t in zip(outputs, truth, strict=True):
        d = decode(o)
        n_dets += len(d)
        used = np.zeros(len(t), dtype=bool)
        for row in d:
            ious = _iou(row[2:6], t[:, 1:5]) * (t[:, 0] == row[0]) * ~used
            if len(ious) and ious.max() >= 0.5:
                used[int(ious.argmax())] = True
        tp += int(used.sum())
    return n_dets, tp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parents[1] / "calibration" / "shapes"
    parser.add_argument("-o", "--out-dir", type=Path, default=default_out)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    x_train, b_train = make_set(TRAIN_IMAGES, args.seed)
    x_calib, _ = make_set(CALIB_IMAGES, args.seed + 1, EXPORT_SIZE, BIG_SCENE_OBJECTS)
    x_val, b_val = make_set(VAL_IMAGES, args.seed + 2, EXPORT_SIZE, BIG_SCENE_OBJECTS)
    model = ShapesDetector()
    params = sum(p.numel() for p in model.parameters())
    log.info("train %s  calib %s  val %s  parameters %d", x_train.shape, x_calib.shape, x_val.shape, params)
    start = time.perf_counter()
    train(model, x_train, b_train, args.seed)
    train_seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        torch_out = model(torch.from_numpy(x_val)).numpy()
    onnx_path = out / "shapes_det.onnx"
    export_onnx(model, onnx_path)
    ort_out = ort_outputs(onnx_path, x_val)
    max_diff = float(np.abs(ort_out - torch_out).max())
    score = map50(ort_out, b_val, len(NAMES))
    n_dets, tp = count_found(ort_out, b_val)
    n_boxes = sum(len(b) for b in b_val)
    log.info(
        "trained in %.0f s; FP32 mAP@0.5 %.3f; found %d of %d (%d detections); max diff %.1e",
        train_seconds,
        score,
        tp,
        n_boxes,
        n_dets,
        max_diff,
    )

    # [S, M, 5] rows (class, x1, y1, x2, y2), padded with class -1: edgekit.fidelity's `boxes`
    truth = np.full((len(b_val), max(len(b) for b in b_val), 5), -1.0, dtype=np.float32)
    for i, b in enumerate(b_val):
        truth[i, : len(b)] = b
    save_npz(out / "calib.npz", images=x_calib)
    save_npz(out / "val.npz", images=x_val, boxes=truth)  # the set carries its ground truth
    proto = onnx.load(str(onnx_path))
    info = {
        "imgsz": EXPORT_SIZE,
        "train_size": IMGSZ,
        "names": ", ".join(NAMES),
        "nc": len(NAMES),
        "min_size": MIN_SIZE,
        "max_size": MAX_SIZE,
        "n_train": TRAIN_IMAGES,
        "n_calib": CALIB_IMAGES,
        "n_val": VAL_IMAGES,
        "n_val_boxes": n_boxes,
        "max_boxes": truth.shape[1],
        "objects": f"{BIG_SCENE_OBJECTS[0]}-{BIG_SCENE_OBJECTS[1] - 1}",
        "seed": args.seed,
        "opset": OPSET,
        "channels": 4 + len(NAMES),
        "anchors": ort_out.shape[2],
        "onnx_bytes": onnx_path.stat().st_size,
        "calib_bytes": (out / "calib.npz").stat().st_size,
        "val_bytes": (out / "val.npz").stat().st_size,
        "params": f"{params:,}",
        "metadata": ", ".join(
            f"{p.key}={p.value}"
            for p in proto.metadata_props
            if p.key in ("task", "names", "imgsz", "stride", "batch")
        ),
        "epochs": EPOCHS,
        "lr": LEARNING_RATE,
        "batch": BATCH_SIZE,
        "train_seconds": train_seconds,
        "ort_version": ort.__version__,
        "map50": score,
        "conf": CONF,
        "nms_iou": NMS_IOU,
        "n_dets": n_dets,
        "tp": tp,
        "step": EXPORT_SIZE / 255,
        "max_diff": max_diff,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "numpy_version": np.__version__,
    }
    tmp = out / "README.md.tmp"
    tmp.write_text(README_TEMPLATE.format(**info), encoding="utf-8")
    os.replace(tmp, out / "README.md")
    for name in ("shapes_det.onnx", "calib.npz", "val.npz"):
        log.info("%-16s %8d bytes", name, (out / name).stat().st_size)


if __name__ == "__main__":
    main()
