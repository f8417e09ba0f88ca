"""`report` and `release`: what users take away from the records edgekit writes (results.jsonl,
manifests). The work is in `edgekit.report` and `edgekit.release`; these verbs take a typed request,
check what can be checked before any work, and return a typed record. Gates are the caller's to act on:
`ReportRecord.regressions()`, `ReleaseRecord.failures` (the CLI exits 1 on them).
"""

from __future__ import annotations

from edgekit.records import Progress, ReleaseRecord, ReleaseRequest, ReportRecord, ReportRequest, noop


def report(req: ReportRequest) -> ReportRecord:
    """Tables, plots and (with a baseline) regression verdicts; written to every path of `req.outputs`."""
    from edgekit.report import Thresholds, build_report, write_report
    from edgekit.report.write import check_path

    for out in req.outputs:
        check_path(out)  # a bad suffix fails before any work
    limits = Thresholds(req.max_slowdown_pct, req.confidence, req.max_accuracy_loss, req.max_cosine_loss)
    built = build_report(req.results, req.baseline or None, limits, title=req.title)
    written = [str(write_report(built, out)) for out in req.outputs]
    return ReportRecord(built.to_json(), written, built)


def release(req: ReleaseRequest, progress: Progress = noop) -> ReleaseRecord:
    """Build, verify, benchmark and package a release (see `edgekit.release`); a failed gate leaves
    `path` None unless `allow_failures`, and is listed in `failures` either way."""
    from edgekit.release import run_release

    outcome = run_release(
        req.config,
        allow_failures=req.allow_failures,
        executor=req.executor,
        address=req.address,
        use_cache=req.use_cache,
        rebench=req.rebench,
        check_reproducible=req.check_reproducible,
        progress=progress,
    )
    path = str(outcome.path) if outcome.path is not None else None
    return ReleaseRecord(path, outcome.release, list(outcome.failures), dict(outcome.seconds), outcome.report)
