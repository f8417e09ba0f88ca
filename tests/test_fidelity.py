"""Fidelity: the formulas at unit level (cosine, SNR, max/mean abs, top-1, accuracy and its drop), the
gates, and the refusals (a layout the runner did not undo, a missing output, labels that do not fit)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit import fidelity
from edgekit.errors import BadInput
from edgekit.fidelity import TaskSpec, bootstrap, compare, output_metrics
from edgekit.targets import Gates


# ---- formulas ---------------------------------------------------------------------------------------
def test_cosine() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert fidelity.cosine(a, a) == pytest.approx(1.0)
    assert fidelity.cosine(a, 5 * a) == pytest.approx(1.0)  # scale-free
    assert fidelity.cosine(a, -a) == pytest.approx(-1.0)
    assert fidelity.cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert fidelity.cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert fidelity.cosine(np.zeros(3), np.zeros(3)) == 1.0  # both silent: equal
    assert fidelity.cosine(np.zeros(3), a) == 0.0
    # flattened over every axis: samples and features together
    assert fidelity.cosine(a.reshape(1, 3), a.reshape(1, 3)) == pytest.approx(1.0)


def test_snr_db() -> None:
    ref = np.array([1.0, 1.0])
    # signal 2, noise 0.01 + 0.01 = 0.02: 10 log10(100) = 20 dB
    assert fidelity.snr_db(ref, np.array([1.1, 0.9])) == pytest.approx(20.0)
    assert fidelity.snr_db(ref, ref) == math.inf
    assert fidelity.snr_db(np.zeros(2), np.ones(2)) == -math.inf


def test_max_and_mean_abs() -> None:
    metrics = output_metrics("y", np.array([[1.0, 2.0, 3.0]]), np.array([[1.5, 2.0, 1.0]]))
    assert metrics.max_abs == pytest.approx(2.0)
    assert metrics.mean_abs == pytest.approx((0.5 + 0.0 + 2.0) / 3)


def test_top1_agreement_only_for_classifier_outputs() -> None:
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    act = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.0, 0.1, 0.9]])
    assert fidelity.top1_agreement(ref, act) == pytest.approx(75.0)
    assert fidelity.top1_agreement(ref[:, None, :, None], act[:, None, :, None]) == pytest.approx(75.0)
    assert fidelity.top1_agreement(np.ones((4, 3, 8, 8)), np.ones((4, 3, 8, 8))) is None  # a feature map
    assert fidelity.top1_agreement(np.ones((4, 1)), np.ones((4, 1))) is None  # one class is no choice
    assert output_metrics("p", ref, act).top1_agreement == pytest.approx(75.0)


def test_accuracy_and_its_drop() -> None:
    labels = np.array([1, 0, 2, 2])
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])  # 4 / 4 right
    act = np.array([[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.0, 0.9, 0.1]])  # 2 / 4 right
    assert fidelity.accuracy(ref, labels) == pytest.approx(100.0)
    assert fidelity.accuracy(act, labels) == pytest.approx(50.0)
    report = compare({"p": ref}, {"p": act}, labels)
    assert report.accuracy_reference == pytest.approx(100.0)
    assert report.accuracy_artifact == pytest.approx(50.0)
    assert report.accuracy_drop == pytest.approx(50.0)
    assert compare({"p": ref}, {"p": act}).accuracy_drop is None  # no labels, no accuracy


# ---- gates -------------------------------------------------------------------------------------------
def _report(gates: Gates, actual: np.ndarray, labels: np.ndarray | None = None):
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    return compare({"p": ref}, {"p": actual}, labels, gates)


def test_gates_pass_at_their_bound_and_fail_past_it() -> None:
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    assert _report(Gates(min_cosine=1.0, max_accuracy_drop=0.0), ref, np.array([1, 0, 2, 2])).passed
    noisy = ref + np.array([[0.0, -0.5, 0.6], [0.0] * 3, [0.0] * 3, [0.0] * 3])  # sample 0 flips class
    cos = fidelity.cosine(ref, noisy)
    report = _report(Gates(min_cosine=cos + 1e-6, max_accuracy_drop=None), noisy)
    assert report.failures == [f"p: cosine {cos:.5f} < {cos + 1e-6}"] and not report.passed
    assert _report(Gates(min_cosine=cos, max_accuracy_drop=None), noisy).passed
    snr = fidelity.snr_db(ref, noisy)
    failures = _report(Gates(min_cosine=0.0, min_snr_db=snr + 0.1, max_accuracy_drop=None), noisy).failures
    assert len(failures) == 1 and failures[0].startswith("p: SNR")
    failures = _report(Gates(min_cosine=0.0, min_top1_agreement=80.0, max_accuracy_drop=None), noisy).failures
    assert failures == ["p: top-1 agreement 75.00% < 80.0%"]
    failures = _report(Gates(min_cosine=0.0, max_accuracy_drop=10.0), noisy, np.array([1, 0, 2, 2])).failures
    assert failures == ["accuracy drop 25.00 points > 10.0"]
    report = _report(Gates(min_cosine=0.0, max_accuracy_drop=10.0), noisy, np.array([1, 0, 2, 2]))
    assert report.to_json()["gates"]["max_accuracy_drop"] == 10.0 and not report.to_json()["passed"]


def test_nan_output_fails_the_cosine_gate_and_serializes() -> None:
    ref = np.ones((2, 3))
    act = ref.copy()
    act[0, 0] = np.nan
    report = compare({"y": ref}, {"y": act}, gates=Gates())
    assert not report.passed
    out = report.to_json()["outputs"][0]
    assert out["cosine"] is None and out["max_abs"] is None  # NaN is not JSON: null
    same = compare({"y": ref}, {"y": ref}).to_json()["outputs"][0]
    assert same["snr_db"] == 1e9  # +inf as a large finite number


# ---- refusals: BadInput (exit 2), one line ---------------------------------------------------------------
def test_a_layout_difference_is_refused_not_reshaped() -> None:
    """[1, 3, 8] against [1, 8, 3]: same size, other layout. Reshaping it hid the agent's bug."""
    ref = np.arange(24, dtype=np.float32).reshape(1, 3, 8)
    with pytest.raises(BadInput) as info:
        output_metrics("y", ref, ref.transpose(0, 2, 1))
    message = str(info.value)
    assert "[1, 8, 3]" in message and "[1, 3, 8]" in message and "layout" in message and "\n" not in message
    with pytest.raises(BadInput, match="different size"):
        output_metrics("y", ref, np.zeros((1, 3, 7)))


def test_size_one_axes_are_not_a_layout() -> None:
    ref = np.arange(10, dtype=np.float32).reshape(2, 5)
    metrics = output_metrics("y", ref, ref.reshape(2, 1, 5))
    assert metrics.cosine == pytest.approx(1.0) and metrics.max_abs == 0.0


def test_missing_output_and_mismatched_labels_are_bad_input() -> None:
    ref = {"logits": np.ones((2, 3))}
    with pytest.raises(BadInput, match="no output 'logits'.*Did you mean 'logit'"):
        compare(ref, {"logit": np.ones((2, 3))})
    with pytest.raises(BadInput, match="3 labels for 2 samples"):
        compare(ref, ref, np.array([0, 1, 2]))
    with pytest.raises(BadInput, match="integer class ids"):
        compare(ref, ref, np.array([0.0, 1.0]))


# ---- per-slice raw metrics (what scale cannot fool) -----------------------------------------------------------
HEAD = {"y": {"axis": 1, "ranges": [[0, 4, "boxes"], [4, 7, "classes"]]}}


def _head(samples: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate(
        [rng.uniform(0, 320, (samples, 4, 50)), rng.uniform(0, 1, (samples, 3, 50))], axis=1
    )


def test_every_slice_is_measured_and_the_raw_gate_names_the_worst() -> None:
    ref = _head()
    act = ref.copy()
    act[:, 4:] = 0.0
    assert fidelity.cosine(ref, act) > 0.998 and compare({"y": ref}, {"y": act}, gates=Gates()).passed
    report = compare({"y": ref}, {"y": act}, gates=Gates(), task=TaskSpec("raw", "--task", ("y",), {}, HEAD))
    assert [(s["label"], s["range"]) for s in report.slices] == [("boxes", [0, 4]), ("classes", [4, 7])]
    assert report.slices[0]["cosine"] == pytest.approx(1.0) and report.slices[1]["cosine"] == 0.0
    assert report.failures == ["y channels 4-6 (classes): cosine 0.00000 < 0.99 (6 samples)"]
    # samples stacked before the model's batch axis ([S, 1, 7, 50]) are cut on the same model axis
    stacked = compare(
        {"y": ref[:, None]}, {"y": act[:, None]}, gates=Gates(), task=TaskSpec("raw", "t", ("y",), {}, HEAD)
    )
    assert [s["cosine"] for s in stacked.slices] == [s["cosine"] for s in report.slices]


def test_the_slice_floor_holds_for_every_task_and_outputs_without_slices() -> None:
    ref = _head()
    silent = {"y": ref, "z": np.zeros((6, 3))}
    reference = {"y": ref, "z": np.ones((6, 3))}
    report = compare(reference, silent, gates=Gates(), task=TaskSpec("embed", "--task", ("y",), {}, HEAD))
    assert "z: cosine 0.00000 < 0.5 (the floor every task keeps, 6 samples)" in report.failures
    loose = Gates(min_slice_cosine=None, min_embedding_cosine=None)
    assert compare(reference, silent, gates=loose, task=TaskSpec("embed", "--task", ("y",), {}, HEAD)).passed


def test_bootstrap_intervals_are_seeded_and_need_two_samples() -> None:
    values = np.arange(20, dtype=float)
    first = bootstrap.interval(lambda i: float(values[i].mean()), 20)
    assert first == bootstrap.interval(lambda i: float(values[i].mean()), 20)
    assert first[0] < values.mean() < first[1]
    assert bootstrap.interval(lambda i: 1.0, 1) is None
    assert bootstrap.undecided((0.85, 0.95), 0.9) and not bootstrap.undecided((0.91, 0.95), 0.9)
    assert bootstrap.undecided((0.5, 1.5), 1.0, higher_is_better=False)
    assert bootstrap.summary("F1", 0.97, (0.93, 1.0), 24) == "F1 0.97 [0.93, 1.00] on 24 samples"
