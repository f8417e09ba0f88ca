"""`edgekit release`: edgekit.toml -> dist/<name>-<version>/ (artifacts, release.json, SHA256SUMS,
report, tarball), built in parallel from a content-addressed cache, on this machine or a Ray cluster.

    outcome = run_release("edgekit.toml", executor="local")
    outcome.path, outcome.passed, outcome.failures
"""

from __future__ import annotations

from edgekit.release.config import ReleaseConfig, load_config
from edgekit.release.pipeline import ReleaseOutcome, run_release

__all__ = ["ReleaseConfig", "ReleaseOutcome", "load_config", "run_release"]
