"""What every `edgekit` command shares: the per-invocation context (click's context object, no
module-level state), --json/--debug, and the options several commands take."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from edgekit.errors import BadInput
from edgekit.task_options import GATE_KEYS, TASKS, check_metric_spec


@dataclass
class CliContext:
    """Per-invocation settings, carried in click's context object (no module-level state)."""

    json: bool = False
    debug: bool = field(default_factory=lambda: bool(os.environ.get("EDGEKIT_DEBUG")))

    def emit(self, record: Any) -> bool:
        """Print `record.to_json()` with --json and return True; else return False (render it)."""
        if self.json:
            click.echo(json.dumps(record.to_json(), indent=2, default=str))
        return self.json


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """--json and --debug on every command; the command receives the CliContext first."""

    @click.option(
        "--json", "as_json", is_flag=True, help="Machine-readable result on stdout; logs on stderr."
    )
    @click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, *args: Any, as_json: bool, debug: bool, **kwargs: Any) -> Any:
        app = ctx.ensure_object(CliContext)
        app.json = as_json
        app.debug = app.debug or debug
        logging.basicConfig(
            level=logging.DEBUG if app.debug else logging.WARNING,
            format="%(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        return func(app, *args, **kwargs)

    return wrapper


def _options(*decorators: Callable[..., Any]) -> Callable[..., Any]:
    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


devices_option = click.option(
    "--devices", "devices_file", type=click.Path(), help="Inventory (default: ./devices.toml if present)."
)
targets_dir_option = click.option(
    "--targets-dir",
    multiple=True,
    type=click.Path(),
    help="Extra directory of target TOMLs (also: EDGEKIT_TARGETS_PATH).",
)
input_shape_option = click.option(
    "--input-shape", "input_shapes", multiple=True, metavar="NAME:D0,D1,..", help="Fix a dynamic input shape."
)


def results_option(help_text: str) -> Callable[..., Any]:
    """--results FILE (repeatable): bench records (results.jsonl) the command reads measurements from."""
    return click.option("--results", multiple=True, type=click.Path(), help=help_text)


gate_options = _options(
    click.option("--min-cosine", type=float, help="Gate: minimum cosine similarity per output."),
    click.option("--max-accuracy-drop", type=float, help="Gate: maximum accuracy drop (points)."),
    click.option("--min-snr-db", type=float, help="Gate: minimum SNR per output (dB)."),
    click.option("--min-f1", type=float, help="Gate (detect): minimum detection F1 against FP32."),
    click.option("--min-mask-iou", type=float, help="Gate (map/segment): minimum thresholded-mask IoU."),
    click.option("--min-embedding-cosine", type=float, help="Gate (embed): minimum worst per-sample cosine."),
    click.option("--min-metric", type=float, help="Gate: minimum value of --metric (higher is better)."),
    click.option(
        "--min-slice-cosine",
        type=float,
        help="Gate (every task): minimum cosine of every output's feature slice.",
    ),
    click.option("--max-kl", type=float, help="Gate (tokens): maximum KL divergence of next-token logits."),
)

# what the model is for (edgekit.fidelity judges it by its task) and a user's own metric
task_options = _options(
    click.option(
        "--task",
        type=click.Choice(list(TASKS)),
        help="What the model is for (default: from its metadata and output shapes; the manifest's).",
    ),
    click.option(
        "--metric",
        metavar="MODULE:FUNCTION",
        help="Your metric fn(reference, actual, labels) -> number (higher is better); gate --min-metric.",
    ),
)

# INT8 search (edgekit.int8): by default --int8 searches recipes and keeps sensitive nodes in float until
# the target's gate (with --min-cosine / --max-accuracy-drop overrides) holds
int8_search_options = _options(
    click.option(
        "--no-search", is_flag=True, help="INT8: the single default recipe, no search nor fallback."
    ),
    click.option(
        "--max-revert",
        type=click.FloatRange(0.0, 1.0),
        default=0.25,
        show_default=True,
        help="Share of quantized nodes INT8 fallback may keep in float (at least one, unless 0).",
    ),
    click.option(
        "--search-budget",
        type=click.FloatRange(min=0),
        default=600.0,
        show_default=True,
        help="Seconds the INT8 search may take.",
    ),
    click.option(
        "--allow-float-ops",
        is_flag=True,
        help="Full-integer targets (int8 I/O): let INT8 fallback leave float ops in the artifact.",
    ),
)

# weight-only quantization (edgekit.int4): --int4, --int8 --weights-only
weight_only_options = _options(
    click.option(
        "--weights-only",
        is_flag=True,
        help="Weight-only: MatMul/Gemm weights quantized, activations float (with --int8; --int4 always is).",
    ),
    click.option(
        "--int4-group-size",
        type=click.IntRange(min=16),
        default=128,
        show_default=True,
        help="INT4: weights per scale along K (clipped per layer to K, a power of two >= 16).",
    ),
    click.option(
        "--int4-symmetric/--int4-asymmetric",
        default=False,
        show_default=True,
        help="INT4: signed codes without zero points, or unsigned with one per block (TensorRT: symmetric).",
    ),
    click.option(
        "--int4-ratio",
        type=click.FloatRange(0.0, 1.0),
        default=1.0,
        show_default=True,
        help="INT4: share of MatMul/Gemm weights at INT4, the most sensitive rest at INT8 (as NNCF's ratio).",
    ),
    click.option(
        "--int4-method",
        type=click.Choice(["rtn", "hqq", "gptq"]),
        default="rtn",
        show_default=True,
        help="INT4 on onnxruntime targets: round-to-nearest, HQQ, or GPTQ (uses --calib).",
    ),
)


def weight_only_fields(kw: dict[str, Any]) -> dict[str, Any]:
    """The ExportOptions fields of `weight_only_options`."""
    return {
        "weights_only": kw["weights_only"],
        "int4_group_size": kw["int4_group_size"],
        "int4_symmetric": kw["int4_symmetric"],
        "int4_ratio": kw["int4_ratio"],
        "int4_method": kw["int4_method"],
    }


def gates(kw: dict[str, Any]) -> dict[str, float | None]:
    """The gate flags of a command's keyword arguments (None: the target's default)."""
    return {key: kw.get(key) for key in GATE_KEYS if key != "min_top1_agreement"}


def task_and_metric(kw: dict[str, Any]) -> dict[str, Any]:
    """--task and --metric as request fields (the metric's spelling checked here: exit 2)."""
    check_metric_spec(kw.get("metric"))
    return {"task": kw.get("task"), "metric": kw.get("metric")}


def parse_kv(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--option '{item}' must be KEY=VALUE")
        out[key] = value
    return out
