"""Detection fidelity: decode the head, NMS, and match the artifact's detections against FP32's.

Layouts (per sample, after its size-1 leading axes): "v8" [4+C(+extra), A] rows cx cy w h then class
scores (YOLOv8/11; extra rows after the classes: mask coefficients, keypoints, angle); "v5" [A, 5+C]
cx cy w h objectness class scores (score = objectness x class score); "boxes_scores" two outputs, boxes
[A, 4] x1 y1 x2 y2 and scores [A, C] or [C, A].

Matching (same class, IoU >= match_iou, greedy by score): recall is the share of FP32's confident
detections (score >= conf) that the artifact finds at score >= low_conf; precision the share of the
artifact's confident detections that FP32 has at score >= low_conf. So a detection whose score merely
crosses the threshold (0.26 in FP32, 0.24 in the artifact) is not lost, and one that vanishes is.
mAP@0.5 ranks the artifact's detections (score >= low_conf) against FP32's confident ones as ground truth,
the way mAP ranks a model against labels; with ground-truth boxes (npz key `boxes`: [S, M, 5] rows class,
x1, y1, x2, y2 in model-input pixels, class < 0 = padding) both models also get their real mAP@0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_CANDIDATES = 3000
MAX_DETECTIONS = 300


@dataclass
class Detections:
    """One sample's detections: boxes [K, 4] x1 y1 x2 y2, scores [K], classes [K] (int)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def above(self, threshold: float) -> Detections:
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    def __len__(self) -> int:
        return len(self.scores)


def _sample(array: np.ndarray, rank: int) -> np.ndarray:
    """Drop leading size-1 axes until the sample has `rank` axes."""
    while array.ndim > rank and array.shape[0] == 1:
        array = array[0]
    return array


def _xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / 2.0
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def candidates(outputs: Mapping[str, np.ndarray], names: tuple[str, ...], params: Mapping[str, Any],
               index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes [A, 4] xyxy, best score [A] and its class [A] of sample `index`, before NMS."""
    layout = params.get("layout", "v8")
    classes = int(params.get("num_classes") or 0)
    if layout == "boxes_scores":
        boxes = _sample(np.asarray(outputs[names[0]][index], dtype=np.float64), 2).reshape(-1, 4)
        scores = _sample(np.asarray(outputs[names[1]][index], dtype=np.float64), 2)
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.shape[0] != boxes.shape[0] and scores.shape[1] == boxes.shape[0]:
            scores = scores.T
        if params.get("box_format") == "xywh":
            boxes = _xywh_to_xyxy(boxes)
    elif layout == "v5":
        pred = _sample(np.asarray(outputs[names[0]][index], dtype=np.float64), 2)
        classes = classes or pred.shape[1] - 5
        boxes = _xywh_to_xyxy(pred[:, :4])
        scores = pred[:, 4:5] * pred[:, 5 : 5 + classes]
    else:  # v8
        pred = _sample(np.asarray(outputs[names[0]][index], dtype=np.float64), 2)
        classes = classes or pred.shape[0] - 4
        boxes = _xywh_to_xyxy(pred[:4].T)
        scores = pred[4 : 4 + classes].T
    if scores.shape[1] == 0:
        return boxes, np.zeros(len(boxes)), np.zeros(len(boxes), dtype=np.int64)
    best = scores.argmax(axis=1)
    return boxes, scores[np.arange(len(best)), best], best.astype(np.int64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of `a` [K, 4] with every box of `b` [L, 4] (x1 y1 x2 y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by class-aware greedy NMS, best score first."""
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    if len(order) == 0:
        return order
    # class-aware through an offset per class, as Ultralytics does
    span = float(np.max(np.abs(boxes[order]))) + 1.0 if len(order) else 1.0
    shifted = boxes[order] + (classes[order].astype(np.float64) * span * 2.0)[:, None]
    overlaps = iou_matrix(shifted, shifted)
    kept: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        kept.append(i)
        if len(kept) >= MAX_DETECTIONS:
            break
        suppressed |= overlaps[i] > iou
    return order[np.asarray(kept, dtype=np.int64)]


def detect(outputs: Mapping[str, np.ndarray], names: tuple[str, ...], params: Mapping[str, Any]
           ) -> list[Detections]:
    """Every sample's detections after NMS, down to score low_conf (the lowest score anything uses)."""
    first = np.asarray(outputs[names[0]])
    floor = min(float(params.get("low_conf", 0.1)), float(params.get("conf", 0.25)))
    found = []
    for index in range(first.shape[0]):
        boxes, scores, classes = candidates(outputs, names, params, index)
        ok = np.isfinite(scores) & (scores >= floor) & np.all(np.isfinite(boxes), axis=1)
        boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
        keep = nms(boxes, scores, classes, float(params.get("iou", 0.45)))
        found.append(Detections(boxes[keep], scores[keep], classes[keep]))
    return found


def match(truth: Detections, found: Detections, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching by `found`'s score: (which `truth` boxes are matched, which `found` are)."""
    hit_truth = np.zeros(len(truth), dtype=bool)
    hit_found = np.zeros(len(found), dtype=bool)
    if len(truth) == 0 or len(found) == 0:
        return hit_truth, hit_found
    overlaps = iou_matrix(found.boxes, truth.boxes)
    overlaps[found.classes[:, None] != truth.classes[None, :]] = 0.0
    for i in np.argsort(-found.scores, kind="stable"):
        candidates_ = np.where(~hit_truth & (overlaps[i] >= iou))[0]
        if len(candidates_):
            j = candidates_[np.argmax(overlaps[i, candidates_])]
            hit_truth[j] = hit_found[i] = True
    return hit_truth, hit_found


@dataclass
class DetectionCounts:
    """Per sample: FP32's confident detections and how many the artifact kept; the artifact's confident
    detections and how many FP32 has (the bootstrap resamples these)."""

    reference: np.ndarray
    kept: np.ndarray
    artifact: np.ndarray
    confirmed: np.ndarray

    @staticmethod
    def rates(reference: float, kept: float, artifact: float, confirmed: float) -> tuple[float, float, float]:
        recall = kept / reference if reference else 1.0
        precision = confirmed / artifact if artifact else (1.0 if not reference else 0.0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return recall, precision, f1

    def f1(self, index: np.ndarray | None = None) -> float:
        pick = slice(None) if index is None else index
        return self.rates(*(float(np.sum(a[pick])) for a in
                            (self.reference, self.kept, self.artifact, self.confirmed)))[2]


def counts(reference: list[Detections], actual: list[Detections], params: Mapping[str, Any]) -> DetectionCounts:
    conf, low = float(params.get("conf", 0.25)), float(params.get("low_conf", 0.1))
    match_iou = float(params.get("match_iou", 0.5))
    rows = []
    for ref, act in zip(reference, actual, strict=True):
        ref_conf, act_conf = ref.above(conf), act.above(conf)
        kept, _ = match(ref_conf, act.above(low), match_iou)
        confirmed, _ = match(act_conf, ref.above(low), match_iou)
        rows.append((len(ref_conf), int(kept.sum()), len(act_conf), int(confirmed.sum())))
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return DetectionCounts(*(table[:, i] for i in range(4)))


def average_precision(truth: list[Detections], found: list[Detections], iou: float) -> float | None:
    """mAP@iou over the classes present in `truth` (all-point interpolated precision-recall area)."""
    classes = sorted({int(c) for t in truth for c in t.classes})
    if not classes:
        return None
    aps = []
    for cls in classes:
        scores, hits, total = [], [], 0
        for t, f in zip(truth, found, strict=True):
            tk, fk = t.classes == cls, f.classes == cls
            tc = Detections(t.boxes[tk], t.scores[tk], t.classes[tk])
            fc = Detections(f.boxes[fk], f.scores[fk], f.classes[fk])
            total += len(tc)
            _, hit = match(tc, fc, iou)
            scores.extend(fc.scores.tolist())
            hits.extend(hit.tolist())
        if total == 0:
            continue
        order = np.argsort(-np.asarray(scores), kind="stable")
        tp = np.cumsum(np.asarray(hits, dtype=np.float64)[order]) if hits else np.zeros(0)
        fp = np.cumsum(1.0 - np.asarray(hits, dtype=np.float64)[order]) if hits else np.zeros(0)
        recall = np.concatenate([[0.0], tp / total, [1.0]])
        precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(np.sum((recall[1:] - recall[:-1]) * precision[1:])))
    return float(np.mean(aps)) if aps else None


def ground_truth(boxes: np.ndarray) -> list[Detections]:
    """The npz key `boxes` ([S, M, 5]: class, x1, y1, x2, y2; class < 0 = padding) as detections."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.ndim == 2:
        array = array[None]
    out = []
    for rows in array:
        rows = rows[rows[:, 0] >= 0]
        out.append(Detections(rows[:, 1:5], np.ones(len(rows)), rows[:, 0].astype(np.int64)))
    return out


def metrics(reference: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], names: tuple[str, ...],
            params: Mapping[str, Any], boxes: np.ndarray | None = None) -> tuple[dict[str, Any], DetectionCounts]:
    """recall, precision, f1, map50 (vs FP32), matched, reference_detections, artifact_detections; with
    ground truth also map50_reference / map50_artifact (real mAP@0.5 of each)."""
    ref_dets, act_dets = detect(reference, names, params), detect(actual, names, params)
    table = counts(ref_dets, act_dets, params)
    recall, precision, f1 = DetectionCounts.rates(*(float(a.sum()) for a in
                                                    (table.reference, table.kept, table.artifact, table.confirmed)))
    conf, low = float(params.get("conf", 0.25)), float(params.get("low_conf", 0.1))
    iou = float(params.get("match_iou", 0.5))
    map50 = average_precision([d.above(conf) for d in ref_dets], [d.above(low) for d in act_dets], iou)
    out: dict[str, Any] = {
        "f1": f1,
        "recall": recall,
        "precision": precision,
        "map50": map50 if map50 is not None else (1.0 if not any(len(d.above(conf)) for d in act_dets) else 0.0),
        "matched": int(table.kept.sum()),
        "reference_detections": int(table.reference.sum()),
        "artifact_detections": int(table.artifact.sum()),
    }
    if boxes is not None:
        truth = ground_truth(boxes)
        if len(truth) != len(ref_dets):
            from edgekit.errors import BadInput

            raise BadInput(f"the set has ground-truth boxes for {len(truth)} samples but {len(ref_dets)} samples; "
                           "give `boxes` one row block per sample")
        out["map50_reference"] = average_precision(truth, [d.above(low) for d in ref_dets], iou)
        out["map50_artifact"] = average_precision(truth, [d.above(low) for d in act_dets], iou)
    return out, table
