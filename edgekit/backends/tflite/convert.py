"""onnx2tf run in edgekit's offline sandbox (`edgekit.sandbox`), its failures as one line each.

onnx2tf runs in a subprocess inside a private working directory, so that TensorFlow's import cost, its
global state and its very long console output stay out of edgekit's process. The whole output goes to
the artifact's `convert.log`; a failure is reported as one line (the last meaningful error line of the
log). The sandbox refuses and records every network access (onnx2tf would download sample images:
see `plan`); the record goes into the export's details. The converter dies with edgekit (SIGTERM,
Ctrl-C, even SIGKILL: `edgekit.lifecycle`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from edgekit.errors import BadInput, InternalError
from edgekit.sandbox import Sandbox, SandboxRun, keep_log, last_error_line

log = logging.getLogger(__name__)

CONVERT_TIMEOUT_S = 1800
PURPOSE = "TFLite conversion"
# for TensorFlow in the child: CPU only (a GPU changes nothing in the files), less console noise
CONVERTER_ENV = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "1"}


class TFLiteConversionFailed(BadInput):
    """onnx2tf could not convert this model (exit 2: the model is not convertible as it is; the
    remedy is on the model's side - another opset, another op, a fixed shape, another target -
    not a bug in edgekit. Crashes, kills and timeouts are InternalError (exit 4) instead)."""


def converter_sandbox() -> Sandbox:
    return Sandbox(PURPOSE, env=CONVERTER_ENV)


def run_converter(box: Sandbox, args: dict[str, Any], log_path: Path, model_name: str) -> dict[str, Any]:
    """Run `onnx2tf.convert(**args)` in `box`; return the network record, raise one-line errors."""
    log.info("converting %s with onnx2tf (log: %s)", model_name, log_path)
    run = box.call("onnx2tf:convert", args, log_path, timeout=CONVERT_TIMEOUT_S)
    if not run.ok:
        raise conversion_error(run, log_path, model_name)
    return run.network


def conversion_error(run: SandboxRun, log_path: Path, model_name: str) -> Exception:
    kept = keep_log(log_path, model_name, "tflite")
    if run.timed_out:
        return InternalError(
            f"onnx2tf did not finish converting {model_name} within {CONVERT_TIMEOUT_S} s (log: {kept})"
        )
    if run.signal_name:
        return InternalError(
            f"the onnx2tf process converting {model_name} was killed by {run.signal_name} "
            f"(out of memory?); log: {kept}"
        )
    reason = last_error_line(log_path) or f"exit status {run.returncode}"
    missing_op = re.search(r"No module named 'onnx2tf\.ops\.(\w+)'", reason)
    if missing_op:
        reason = f"onnx2tf has no converter for the ONNX op '{missing_op.group(1)}'"
    if run.network_attempts:
        reason += f" (it tried to reach the network: {run.network_attempts[0]})"
    return TFLiteConversionFailed(f"onnx2tf cannot convert {model_name}: {reason} (full log: {kept})")
