"""Detection fidelity: decode the head, NMS, and match the artifact's detections against FP32's.

Layouts (per sample, after its size-1 leading axes): "end2end" [K, 6] x1 y1 x2 y2 score class (NMS
inside the model, YOLOv10); "v8" [4+C(+extra), A] rows cx cy w h then class
scores (YOLOv8/11; extra rows after the classes: mask coefficients, keypoints, angle); "v5" [A, 5+C]
cx cy w h objectness class scores (score = objectness x class score); "boxes_scores" two outputs, boxes
[A, 4] x1 y1 x2 y2 and scores [A, C] or [C, A].

Matching (same class, IoU >= match_iou, greedy by score): recall is the share of FP32's confident
detections (score >= conf) that the artifact finds at score >= low_conf; precision the share of the
artifact's confident detections that FP32 has at score >= low_conf. So a detection whose score merely
crosses the threshold (0.26 in FP32, 0.24 in the artifact) is not lost, and one that vanishes is.
mAP@0.5 ranks the artifact's detections (score >= low_conf) against FP32's confident ones as ground truth,
the way mAP ranks a model against labels; with ground-truth boxes (npz key `boxes`: [S, M, 5] rows class,
x1, y1, x2, y2 in model-input pixels, class < 0 = padding) both models also get their real mAP@0.5 (of
their detections down to low_conf: a floor above the 0.001 of benchmark mAP, so it reads a little low).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.errors import BadInput

MAX_CANDIDATES = 3000
MAX_DETECTIONS = 300


@dataclass
class Detections:
    """One sample's detections: boxes [K, 4] x1 y1 x2 y2, scores [K], classes [K] (int)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    anchors: np.ndarray | None = None  # the head's anchor index of each (its mask coefficients' column)

    def above(self, threshold: float) -> Detections:
        keep = self.scores >= threshold
        anchors = None if self.anchors is None else self.anchors[keep]
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep], anchors)

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


def candidates(
    outputs: Mapping[str, np.ndarray], names: tuple[str, ...], params: Mapping[str, Any], index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    elif layout == "end2end":  # NMS inside the model: x1 y1 x2 y2 score class
        pred = _sample(np.asarray(outputs[names[0]][index], dtype=np.float64), 2)
        return pred[:, :4], pred[:, 4], np.nan_to_num(pred[:, 5]).astype(np.int64)
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
    """Indices kept by class-aware greedy NMS, best score first (IoU computed only against kept boxes,
    so a flood of candidates from a broken artifact costs K x kept, not K x K)."""
    order = np.argsort(-scores, kind="stable")[:MAX_CANDIDATES]
    if len(order) == 0:
        return order
    # class-aware through an offset per class, as Ultralytics does
    span = float(np.max(np.abs(boxes[order]))) + 1.0
    shifted = boxes[order] + (classes[order].astype(np.float64) * span * 2.0)[:, None]
    x1, y1, x2, y2 = (np.ascontiguousarray(shifted[:, k]) for k in range(4))
    area = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    remaining = np.arange(len(order))
    kept: list[int] = []
    while len(remaining) and len(kept) < MAX_DETECTIONS:
        best = remaining[0]
        kept.append(int(best))
        rest = remaining[1:]
        w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = w * h
        union = area[best] + area[rest] - inter
        overlaps = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        remaining = rest[overlaps <= iou]
    return order[np.asarray(kept, dtype=np.int64)]


def detect(
    outputs: Mapping[str, np.ndarray], names: tuple[str, ...], params: Mapping[str, Any]
) -> list[Detections]:
    """Every sample's detections after NMS, down to score low_conf (the lowest score anything uses)."""
    first = np.asarray(outputs[names[0]])
    floor = min(float(params.get("low_conf", 0.1)), float(params.get("conf", 0.25)))
    found = []
    for index in range(first.shape[0]):
        boxes, scores, classes = candidates(outputs, names, params, index)
        ok = np.isfinite(scores) & (scores >= floor) & np.all(np.isfinite(boxes), axis=1)
        anchors = np.flatnonzero(ok)
        boxes, scores, classes = boxes[ok], scores[ok], classes[ok]
        if params.get("layout") == "end2end":  # already suppressed by the model
            keep = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
        else:
            keep = nms(boxes, scores, classes, float(params.get("iou", 0.45)))
        found.append(Detections(boxes[keep], scores[keep], classes[keep], anchors[keep]))
    return found


def pairs(truth: Detections, found: Detections, iou: float) -> list[tuple[int, int]]:
    """Greedy matching by `found`'s score (same class, IoU >= iou): (truth index, found index) pairs."""
    if len(truth) == 0 or len(found) == 0:
        return []
    overlaps = iou_matrix(found.boxes, truth.boxes)
    overlaps[found.classes[:, None] != truth.classes[None, :]] = 0.0
    taken = np.zeros(len(truth), dtype=bool)
    matched = []
    for i in np.argsort(-found.scores, kind="stable"):
        candidates_ = np.where(~taken & (overlaps[i] >= iou))[0]
        if len(candidates_):
            j = int(candidates_[np.argmax(overlaps[i, candidates_])])
            taken[j] = True
            matched.append((j, int(i)))
    return matched


def match(truth: Detections, found: Detections, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """(which `truth` boxes are matched, which `found` are)."""
    hit_truth = np.zeros(len(truth), dtype=bool)
    hit_found = np.zeros(len(found), dtype=bool)
    for j, i in pairs(truth, found, iou):
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
        return self.rates(
            *(float(np.sum(a[pick])) for a in (self.reference, self.kept, self.artifact, self.confirmed))
        )[2]


def counts(
    reference: list[Detections], actual: list[Detections], params: Mapping[str, Any]
) -> DetectionCounts:
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


def _instance_mask(
    pred: np.ndarray, protos: np.ndarray, det: Detections, k: int, first_row: int, scale: tuple[float, float]
) -> np.ndarray:
    """Detection k's mask at the prototypes' resolution: sigmoid(coefficients @ prototypes) > 0.5 inside
    its box (Ultralytics' process_mask)."""
    count, height, width = protos.shape
    coef = pred[first_row : first_row + count, int(det.anchors[k])]
    mask = (coef @ protos.reshape(count, -1)).reshape(height, width) > 0.0  # sigmoid(x) > 0.5
    x1, y1, x2, y2 = det.boxes[k] * np.array([scale[1], scale[0], scale[1], scale[0]])
    cols, rows = np.arange(width)[None, :], np.arange(height)[:, None]
    return mask & (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)


def instance_mask_sums(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    names: tuple[str, ...],
    params: Mapping[str, Any],
    ref_dets: list[Detections],
    act_dets: list[Detections],
) -> tuple[np.ndarray, np.ndarray]:
    """Ultralytics segment heads (output0 [N, 4+C+M, A] with M mask coefficients, output1 prototypes
    [N, M, H, W]): per sample, mask intersection and union summed over FP32's confident detections, each
    against the artifact detection it matched (an unmatched one counts its whole mask as lost)."""
    conf, low = float(params.get("conf", 0.25)), float(params.get("low_conf", 0.1))
    first_row = 4 + int(params.get("num_classes") or 0)
    imgsz = params.get("imgsz") or None
    inter, union = np.zeros((len(ref_dets), 1)), np.zeros((len(ref_dets), 1))
    for s, (ref, act) in enumerate(zip(ref_dets, act_dets, strict=True)):
        ref_pred = _sample(np.asarray(reference[names[0]][s], dtype=np.float64), 2)
        act_pred = _sample(np.asarray(actual[names[0]][s], dtype=np.float64), 2)
        ref_protos = _sample(np.asarray(reference[names[1]][s], dtype=np.float64), 3)
        act_protos = _sample(np.asarray(actual[names[1]][s], dtype=np.float64), 3)
        height, width = ref_protos.shape[1:]
        scale = (height / imgsz[0], width / imgsz[-1]) if imgsz else (0.25, 0.25)  # prototypes: stride 4
        truth, found = ref.above(conf), act.above(low)
        matched = dict(pairs(truth, found, float(params.get("match_iou", 0.5))))
        for k in range(len(truth)):
            ref_mask = _instance_mask(ref_pred, ref_protos, truth, k, first_row, scale)
            if k in matched:
                act_mask = _instance_mask(act_pred, act_protos, found, matched[k], first_row, scale)
            else:
                act_mask = np.zeros_like(ref_mask)
            inter[s, 0] += np.sum(ref_mask & act_mask)
            union[s, 0] += np.sum(ref_mask | act_mask)
    return inter, union


def metrics(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    names: tuple[str, ...],
    params: Mapping[str, Any],
    boxes: np.ndarray | None = None,
) -> tuple[dict[str, Any], DetectionCounts]:
    """recall, precision, f1, map50 (vs FP32), matched, reference_detections, artifact_detections; with
    ground truth also map50_reference / map50_artifact (real mAP@0.5 of each)."""
    ref_dets, act_dets = detect(reference, names, params), detect(actual, names, params)
    table = counts(ref_dets, act_dets, params)
    recall, precision, f1 = DetectionCounts.rates(
        *(float(a.sum()) for a in (table.reference, table.kept, table.artifact, table.confirmed))
    )
    conf, low = float(params.get("conf", 0.25)), float(params.get("low_conf", 0.1))
    iou = float(params.get("match_iou", 0.5))
    map50 = average_precision([d.above(conf) for d in ref_dets], [d.above(low) for d in act_dets], iou)
    if map50 is None:  # FP32 finds nothing: perfect when the artifact agrees, zero when it invents
        map50 = 1.0 if not any(len(d.above(conf)) for d in act_dets) else 0.0
    out: dict[str, Any] = {
        "f1": f1,
        "recall": recall,
        "precision": precision,
        "map50": map50,
        "matched": int(table.kept.sum()),
        "reference_detections": int(table.reference.sum()),
        "artifact_detections": int(table.artifact.sum()),
    }
    if boxes is not None:
        truth = ground_truth(boxes)
        if len(truth) != len(ref_dets):
            raise BadInput(
                f"the set has ground-truth boxes for {len(truth)} samples but {len(ref_dets)} samples; "
                "give `boxes` one row block per sample"
            )
        out["map50_reference"] = average_precision(truth, [d.above(low) for d in ref_dets], iou)
        out["map50_artifact"] = average_precision(truth, [d.above(low) for d in act_dets], iou)
    return out, table
