"""Class, embedding and token fidelity (what users of those outputs judge), per sample for the bootstrap.

- classify: top-1 and top-k agreement with FP32 (percent), accuracy of each and the drop with labels.
- embed: per-sample cosine of the embedding vectors (worst and mean) and nearest-neighbour agreement (the
  share of samples whose nearest other sample, by cosine, is the same for FP32 and the artifact).
- tokens: logits [S, T, V] (or [S, V]): top-1 agreement over every position, next-token agreement at the
  last position, and KL(FP32 || artifact) of the softmax distributions (mean over positions, nats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

NN_SAMPLES = 2048


def _rows(array: np.ndarray) -> np.ndarray:
    """[S, K]: each sample's values flattened."""
    a = np.asarray(array, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def classify(
    reference: np.ndarray, actual: np.ndarray, labels: np.ndarray | None, topk: int = 5
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    ref, act = _rows(reference), np.nan_to_num(_rows(actual), nan=-np.inf)
    ref_top1 = ref.argmax(axis=1)
    agree1 = (ref_top1 == act.argmax(axis=1)).astype(np.float64)
    k = min(topk, ref.shape[1])
    act_topk = np.argsort(-act, axis=1, kind="stable")[:, :k]
    agreek = np.any(act_topk == ref_top1[:, None], axis=1).astype(np.float64)
    per = {"top1_agreement": agree1 * 100.0, f"top{k}_agreement": agreek * 100.0}
    out: dict[str, Any] = {
        "top1_agreement": float(per["top1_agreement"].mean()),
        f"top{k}_agreement": float(per[f"top{k}_agreement"].mean()),
    }
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        ref_right = (ref_top1 == labels).astype(np.float64) * 100.0
        act_right = (act.argmax(axis=1) == labels).astype(np.float64) * 100.0
        per["accuracy_drop"] = ref_right - act_right
        out.update(
            accuracy_reference=float(ref_right.mean()),
            accuracy_artifact=float(act_right.mean()),
            accuracy_drop=float(per["accuracy_drop"].mean()),
        )
    return out, per


def sample_cosines(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    ref, act = _rows(reference), _rows(actual)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(act, axis=1)
    dots = np.sum(ref * act, axis=1)
    both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(act, axis=1) == 0)
    cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return np.where(np.isfinite(cos), cos, -1.0)


def _nearest(rows: np.ndarray) -> np.ndarray:
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(axis=1)


def embed(reference: np.ndarray, actual: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    cos = sample_cosines(reference, actual)
    per = {"worst_cosine": cos, "mean_cosine": cos}
    out: dict[str, Any] = {
        "worst_cosine": float(cos.min()) if len(cos) else 1.0,
        "mean_cosine": float(cos.mean()) if len(cos) else 1.0,
        "nn_agreement": None,
    }
    if len(cos) >= 3:  # on the first NN_SAMPLES samples: the similarity matrix is S x S
        ref, act = _rows(reference)[:NN_SAMPLES], np.nan_to_num(_rows(actual)[:NN_SAMPLES])
        same = (_nearest(ref) == _nearest(act)).astype(np.float64) * 100.0
        out["nn_agreement"] = float(same.mean())
    return out, per


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def tokens(reference: np.ndarray, actual: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """One sample at a time: a language model's logits ([S, T, V] with V in the tens of thousands) in
    float64 with their softmax temporaries would not fit in memory all at once."""
    ref_all = np.asarray(reference)
    act_all = np.asarray(actual).reshape(ref_all.shape)
    samples, vocab = ref_all.shape[0], ref_all.shape[-1]
    top1, last, kl = np.zeros(samples), np.zeros(samples), np.zeros(samples)
    for i in range(samples):
        ref = ref_all[i].astype(np.float64).reshape(-1, vocab)  # [T, V]
        act = np.nan_to_num(act_all[i].astype(np.float64).reshape(-1, vocab), nan=-1e9)
        agree = ref.argmax(axis=-1) == act.argmax(axis=-1)
        lp, lq = _log_softmax(ref), _log_softmax(act)
        top1[i], last[i] = agree.mean() * 100.0, float(agree[-1]) * 100.0
        kl[i] = float(np.sum(np.exp(lp) * (lp - lq), axis=-1).mean())
    per = {"top1_agreement": top1, "next_token_agreement": last, "kl": kl}
    out = {k: float(v.mean()) for k, v in per.items()}
    return out, per
