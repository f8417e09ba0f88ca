"""Honest verdicts: the samples an export's verdict is reported on are never those its INT8 search
selected recipes and fallback nodes on.

With a validation set, the search selects on the calibration hold-out when the calibration set is
large enough to spare one (`scoring.split`: the same samples it holds out without --val), else on a
seeded part of the validation set; the verdict is reported on the rest of the validation set. A
validation set with labels the calibration set lacks is split too (when each part keeps 8 samples or
more), so that accuracy enters the search's metric as it enters the verdict's. A
validation sample identical to a selection sample (the same file passed as --calib and --val, or
overlapping sets) is left out of the verdict too. The manifest records both sets (`SamplePlan.record`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.calib import CalibrationReader
from edgekit.int8.scoring import MAX_HOLDOUT, MIN_CALIBRATION, split

SEED = 0
MIN_VERDICT = 1  # a validation set of one sample cannot be split: selection stays on calibration
MIN_VERDICT_LABELLED = 8  # a labelled validation set is split for selection when each part gets this many
MAX_LISTED = 2048  # index lists longer than this are recorded by their hash only


@dataclass
class SamplePlan:
    """Which samples select (the INT8 search's scoring set) and which judge (the verdict)."""

    selection_set: str  # "calibration" | "validation"
    selection: list[int]  # indices into that set (after --calib-samples / --val-samples)
    calibrate: list[int]  # calibration samples that calibrate (the selection's removed when it is theirs)
    verdict: list[int]  # indices into the validation set
    excluded_duplicates: list[int] = field(default_factory=list)  # val samples equal to a selection sample

    def describe_selection(self) -> str:
        if self.selection_set == "calibration" and self.selection == self.calibrate:
            return f"the {len(self.selection)} calibration samples themselves (too few to hold any out)"
        if self.selection_set == "calibration":
            return f"{len(self.selection)} held-out calibration samples"
        rest = len(self.verdict)
        return f"{len(self.selection)} validation samples (seeded; the verdict uses the other {rest})"

    def record(
        self, calib: CalibrationReader, val: CalibrationReader, selection_score: Any, verdict_score: Any
    ) -> dict[str, Any]:
        """The manifest's `samples` section: both sets, their sizes, indices (or hash) and scores."""
        chosen = calib if self.selection_set == "calibration" else val
        same_set = self.selection_set == "validation"
        overlap = sorted(set(self.selection) & set(self.verdict)) if same_set else []
        shared = set(_hashes(chosen, self.selection)) & set(_hashes(val, self.verdict))
        return {
            "rule": "the INT8 search selects on `selection`; the verdict is reported on `verdict`; the two "
            "share no sample",
            "selection": {
                "set": self.selection_set,
                **_indices(chosen, self.selection),
                "described": self.describe_selection(),
                "score": selection_score,
            },
            "verdict": {
                "set": "validation",
                **_indices(val, self.verdict),
                "excluded_duplicates": self.excluded_duplicates,
                "score": verdict_score,
            },
            "disjoint": not overlap and not shared,
        }


def plan(
    calib: CalibrationReader, val: CalibrationReader, need_labels: bool = False, seed: int = SEED
) -> SamplePlan:
    """Selection on the calibration hold-out when there is one (and labels are not needed for the
    selection, as accuracy-controlled quantization needs them), else on a seeded part of `val`."""
    count = len(calib)
    # labels the calibration set lacks enter the selection's metric (accuracy drop) only from `val`: a
    # labelled validation set large enough to keep MIN_VERDICT_LABELLED samples for the verdict is split
    labelled_val = val.labels is not None and len(val) >= 2 * MIN_VERDICT_LABELLED
    wants_val = (need_labels or labelled_val) and calib.labels is None
    if count >= MIN_CALIBRATION and not wants_val:
        calibrate, held = split(count, has_validation=False, seed=seed)
        selection_set, selection = "calibration", held
        verdict = list(range(len(val)))
    elif len(val) > MIN_VERDICT:
        take = min(MAX_HOLDOUT, len(val) // 2)
        rng = np.random.default_rng(seed)
        selection = sorted(int(i) for i in rng.choice(len(val), size=take, replace=False))
        chosen = set(selection)
        selection_set, calibrate = "validation", list(range(count))
        verdict = [i for i in range(len(val)) if i not in chosen]
    else:  # one validation sample: the search scores on the calibration samples themselves
        selection_set, selection, calibrate = "calibration", list(range(count)), list(range(count))
        verdict = list(range(len(val)))
    result = SamplePlan(selection_set, selection, calibrate, verdict)
    # the same sample in both (the same file as --calib and --val): not part of the verdict
    chosen_reader = calib if selection_set == "calibration" else val
    taken = set(_hashes(chosen_reader, selection))
    kept = [i for i, h in zip(verdict, _hashes(val, verdict), strict=True) if h not in taken]
    result.excluded_duplicates = [i for i in verdict if i not in set(kept)]
    result.verdict = kept
    return result


def subset(reader: CalibrationReader, index: Sequence[int]) -> CalibrationReader:
    """The reader restricted to `index` (same inputs, binding and source)."""
    index = list(index)
    return CalibrationReader(
        {k: v[index] for k, v in reader.arrays.items()},
        None if reader.labels is None else reader.labels[index],
        reader.source,
        reader.kind,
        reader.seed,
        reader.total_samples,
        None if reader.boxes is None else reader.boxes[index],
        inputs=reader.inputs,
        batched=dict(reader.batched),
    )


def _hashes(reader: CalibrationReader, index: Sequence[int]) -> list[str]:
    """One digest per sample (every input's bytes): equal samples of two sets are found by it."""
    out = []
    for i in index:
        digest = hashlib.sha256()
        for name in sorted(reader.arrays):
            digest.update(np.ascontiguousarray(reader.arrays[name][i]).tobytes())
        out.append(digest.hexdigest())
    return out


def _indices(reader: CalibrationReader, index: Sequence[int]) -> dict[str, Any]:
    joined = ",".join(str(i) for i in index)
    out: dict[str, Any] = {
        "source": Path(reader.source).name,
        "set_sha256": reader.sha256(),
        "set_samples": len(reader),
        "seed": SEED,
        "count": len(index),
        "indices_sha256": hashlib.sha256(joined.encode()).hexdigest(),
    }
    if len(index) <= MAX_LISTED:
        out["indices"] = list(index)
    return out
