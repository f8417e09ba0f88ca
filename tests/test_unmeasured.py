"""Issue 19, "nothing unmeasured passes": a result that was never measured is never a pass."""

from __future__ import annotations

from types import SimpleNamespace

from edgekit.int8 import auto


def _outcome(manifest_details: dict) -> SimpleNamespace:
    manifest = {"details": manifest_details, "size": {"artifact_bytes": 100}, "effective_precision": "int8"}
    return SimpleNamespace(fidelity=None, manifest=manifest, path=None)


def test_auto_row_without_fidelity_or_search_is_not_measured_not_passed() -> None:
    row = auto._fidelity_row(_outcome({}))  # e.g. --dynamic: no search record, no verification
    assert row["passed"] is not True
    assert row["status"] == "not measured"


def test_auto_row_with_a_search_record_keeps_its_verdict() -> None:
    assert auto._fidelity_row(_outcome({"int8_search": {"passed": True}}))["passed"] is True
    assert auto._fidelity_row(_outcome({"int8_search": {"passed": False}}))["status"] == "gate failed"
