"""The TFLite exports ai-edge-quantizer makes from onnx2tf's float32 file (see `selective`):

- token models' INT8 (integer inputs kept, activations quantized: onnx2tf cannot calibrate them);
- `--int8 --weights-only` (INT8 weights) and `--int4` (block-wise INT4 weights, the layers the gate
  needs at INT8), float activations;
- after onnx2tf's full-integer search: float outputs where an output concatenates quantities of
  different scales, `--ignore` honoured, and the per-node fallback when onnx2tf's recipes miss the gate.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from edgekit.backends.base import ExportJob
from edgekit.backends.tflite import selective
from edgekit.backends.tflite.plan import AEQ_INT4, AEQ_INT8, InputPlan, Plan, block_size, tf_arrays

log = logging.getLogger(__name__)

WEIGHT_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "EMBEDDING_LOOKUP", "CONV_2D", "DEPTHWISE_CONV_2D")
NOT_REVERTIBLE = ("QUANTIZE", "DEQUANTIZE")


class SelectiveExport:
    def __init__(
        self,
        backend: Any,
        box: Any,
        job: ExportJob,
        plan: Plan,
        inputs: list[InputPlan],
        float_path: Path,
        log_path: Path,
    ) -> None:
        self.backend = backend
        self.box = box
        self.job = job
        self.plan = plan
        self.inputs = inputs
        self.float_path = float_path
        self.log_path = log_path
        self.model_name = job.prepared.source_path.name
        self.warnings: list[str] = []
        self._mapping: dict[str, Any] | None = None
        self._calibration: dict[str, str] | None = None
        self._runs = 0
        self.heads: list[tuple[str, list[int]]] = []  # head-aware recipes: (label, extra float ops)

    # ---- pieces ----------------------------------------------------------------------------------
    @property
    def mapping(self) -> dict[str, Any]:
        if self._mapping is None:
            from edgekit.backends.tflite.iomap import probe_feed

            self._mapping = selective.map_nodes(
                self.job.prepared.path, self.float_path, self.inputs, probe_feed(self.job)
            )
            import onnx

            from edgekit.int8.names import NodeOrigins

            prepared = self.job.prepared
            origins = NodeOrigins(onnx.load(str(prepared.path)), prepared.source_path, prepared.name_map)
            # the user's own node names (ingest may rename and split nodes): what records and --ignore use
            self._mapping["sources"] = {name: origins.original(name) for name in self._mapping["nodes"]}
            counts = self._mapping["counts"]
            log.info(
                "%s: ONNX -> TFLite op map: %d of %d nodes by their values, %d fused into a mapped op, %d unmapped",
                self.model_name,
                counts["by_values"],
                counts["onnx_nodes"],
                counts["fused"],
                counts["unmapped"],
            )
        return self._mapping

    def calibration(self) -> dict[str, str] | None:
        if self._calibration is None and self.job.calib is not None:
            arrays = tf_arrays(self.job, self.inputs)
            assert arrays is not None
            self._calibration = selective.calibration_files(self.box.dir, arrays, self.float_path)
        return self._calibration

    def build(self, entries: list[tuple[str, list[dict[str, Any]]]]) -> list[Path]:
        self._runs += 1
        outs = [self.box.dir / f"aeq-{self._runs}-{i}.tflite" for i in range(len(entries))]
        needs_data = any(r["kind"] == "static" for _, rules in entries for r in rules)
        run_log = self.box.dir / f"aeq-{self._runs}.log"
        threads = max(1, min(self.job.options.threads or 1, 4))
        selective.quantize(
            self.box,
            self.float_path,
            [(out, rules) for out, (_, rules) in zip(outs, entries, strict=True)],
            self.calibration() if needs_data else None,
            run_log,
            self.model_name,
            threads,
        )
        with open(self.log_path, "a") as handle:  # the artifact's convert.log keeps the quantizer's output
            handle.write(f"\n# ---- ai-edge-quantizer run {self._runs} ----\n{run_log.read_text()}")
        return outs

    def run(self, path: Path, data: Any) -> Any:
        return self.backend.run_candidate(path, self.inputs, self.job, data)

    def scoring_set(self) -> Any:
        from edgekit.int8.tflite_search import tflite_scoring_set

        return tflite_scoring_set(self.job)

    def forced_float(self) -> tuple[list[int], list[dict[str, Any]], list[str]]:
        """Ops kept in float whatever the gate says: those writing an output that mixes scales (float
        outputs) and the nodes --ignore names. Returns (op indices, float-output records, ignored)."""
        import fnmatch

        forced: list[int] = []
        tail: list[int] = []
        outputs: list[dict[str, Any]] = []
        if self.job.calib is not None:
            feeds = list(self.job.calib.feeds(1))[:16]
            for flagged in selective.mixed_scale_outputs(self.job.prepared.path, feeds):
                mapping = self.mapping
                ops = selective.downstream(mapping, selective.ops_for(mapping, flagged["nodes"][:1]))
                flagged["tflite_ops"] = [
                    {"op": op["type"], "tensor": op["names"][0]}
                    for op in mapping["ops"]
                    if op["index"] in ops
                ]
                source = self.job.prepared.source_name(flagged["output"])
                flagged["source_output"] = source
                message = (
                    f"output '{source}' concatenates quantities of different scales (value ranges "
                    f"{flagged['ranges']}, {flagged['ratio']}x apart at Concat '{flagged['concat']}'): one int8 "
                    "scale would erase the smaller ones, so it is written as float32 (that Concat and what follows "
                    "it run in float)"
                )
                if not ops:
                    message += "; but no TFLite op could be matched to it, so it stays int8: check its slices"
                log.warning("%s: %s", self.model_name, message)
                self.warnings.append(message)
                outputs.append(flagged)
                forced += [i for i in ops if i not in forced]
                tail += [i for i in self._tail_ops(flagged) if i not in tail]
        # the head-aware recipes the search tries on top of the float outputs, fewest float ops first:
        # "split" (only the mixed-scale Concat and what follows it in float: each branch quantized
        # apart) and "float-tail" (the head's whole decode after its last weighted layers in float, as
        # on the other backends: boxes decoded and scores squashed in float from the int8 convolutions)
        self.heads = []
        if outputs:
            extra = [i for i in tail if i not in forced]
            self.heads = [("split", [])] + ([("float-tail", extra)] if extra else [])
        ignored: list[str] = []
        for pattern in self.job.options.ignore:
            mapping = self.mapping
            sources = mapping.get("sources", {})
            names = [
                n
                for n in mapping["nodes"]
                if fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(sources.get(n) or "", pattern)
            ]
            ignored += names
            forced += [i for i in selective.ops_for(mapping, names) if i not in forced]
        return forced, outputs, ignored

    def _tail_ops(self, flagged: dict[str, Any]) -> list[int]:
        """The TFLite ops of the head's decode tail (edgekit.int8.head: the Concat and the elementwise/
        data ops feeding it back to the last weighted layers) and every op they feed."""
        import onnx

        from edgekit.int8.head import find_heads, head_nodes

        model = onnx.load(str(self.job.prepared.path))
        ranges = {
            name: (-float(r), float(r))
            for name, r in zip(flagged.get("inputs", []), flagged["ranges"], strict=False)
        }
        heads = [h for h in find_heads(model, ranges) if h.output == flagged["output"]]
        if not heads:
            return []
        mapping = self.mapping
        return selective.downstream(mapping, selective.ops_for(mapping, head_nodes(heads, "float-tail")))

    # ---- exports ---------------------------------------------------------------------------------
    def export_plan(self) -> tuple[Path, dict[str, Any]]:
        """Token-model INT8, weight-only INT8 or INT4: (the .tflite, the manifest's record)."""
        from edgekit.int8.tflite_search import search_selective

        plan, job = self.plan, self.job
        mapping = self.mapping
        has_data = job.calib is not None
        if plan.int8 == "aeq":
            forced, float_outputs, ignored = self.forced_float()
            float_io = plan.io == "float32"
            revertible = [op["index"] for op in mapping["ops"] if op["type"] not in NOT_REVERTIBLE]
            path, record = search_selective(
                job,
                mapping,
                lambda ops: selective.static_rules(
                    selective.tensor_names(mapping, [*forced, *ops]), float_io
                ),
                revertible,
                plan.io in ("int8", "uint8"),
                self.build,
                self.run,
                self.scoring_set(),
                forced=forced,
                heads=self.heads,
            )
            record["float_outputs"] = float_outputs
            record["ignored"] = ignored
            return path, record
        # weight-only
        bits = 4 if plan.variant == AEQ_INT4 else 8
        block = block_size(job) if bits == 4 else 0
        symmetric = bool(getattr(job.options, "int4_symmetric", True)) if bits == 4 else True
        weight_ops = [op["index"] for op in mapping["ops"] if op["type"] in WEIGHT_OPS]
        at_int8: list[int] = []
        notes = []
        ratio = float(getattr(job.options, "int4_ratio", 1.0)) if bits == 4 else 1.0
        if bits == 4 and ratio < 1.0 and weight_ops:
            count = math.ceil((1.0 - ratio) * len(weight_ops))
            at_int8 = weight_ops[-count:]
            notes.append(
                f"int4_ratio {ratio}: the {count} weight layers nearest the outputs keep INT8 weights "
                "(a data-free choice; the search below adds those the gate needs)"
            )

        def rules_of(ops: list[int]) -> list[dict[str, Any]]:
            names = selective.tensor_names(mapping, [*at_int8, *ops])
            return selective.weight_rules(bits, block, symmetric, names)

        if has_data:
            path, record = search_selective(
                job,
                mapping,
                rules_of,
                weight_ops if bits == 4 else [],
                False,
                self.build,
                self.run,
                self.scoring_set(),
                reverted_to="int8",
                forced=at_int8,
                quantizer=f"ai-edge-quantizer weight-only INT{bits} on onnx2tf's float32 file",
            )
        else:
            path = self.build([("weights", rules_of([]))])[0]
            record = {"passed": None, "summary": "not scored: no calibration or validation set given"}
        record["weights"] = {
            "bits": bits,
            "granularity": f"blockwise {block}" if block else "per channel",
            "symmetric": symmetric,
            "tensors_by_dtype": selective.weight_dtypes(path),
            "bytes": path.stat().st_size,
            "float32_bytes": self.float_path.stat().st_size,
        }
        record.setdefault("notes", []).extend(notes)
        return path, record

    def after_onnx2tf(
        self, search: dict[str, Any], chosen: Plan, entry_path: Path
    ) -> tuple[Plan, dict[str, Any]] | None:
        """After onnx2tf's full-integer search: switch to ai-edge-quantizer when an output mixes scales
        (always), when --ignore names nodes, or when onnx2tf missed the gate (its fallback is every
        activation in float; this one is per op). Returns the new plan and record, or None."""
        import shutil

        from edgekit.int8.tflite_search import search_selective

        forced, float_outputs, ignored = self.forced_float()
        if (
            search.get("passed")
            and chosen.int8 == "static"
            and not float_outputs
            and not self.job.options.ignore
        ):
            return None
        mapping = self.mapping
        float_io = self.plan.io == "float32"
        revertible = [op["index"] for op in mapping["ops"] if op["type"] not in NOT_REVERTIBLE]
        path, record = search_selective(
            self.job,
            mapping,
            lambda ops: selective.static_rules(selective.tensor_names(mapping, [*forced, *ops]), float_io),
            revertible,
            self.plan.io in ("int8", "uint8"),
            self.build,
            self.run,
            self.scoring_set(),
            forced=forced,
            heads=self.heads,
        )
        record["float_outputs"] = float_outputs
        record["ignored"] = ignored
        why = (
            "outputs that mix scales are kept float"
            if float_outputs
            else "--ignore names nodes to keep in float"
            if self.job.options.ignore
            else "onnx2tf's recipes miss the gate"
        )
        record["why"] = why
        if not (float_outputs or self.job.options.ignore) and not record["passed"]:
            record["summary"] = "not taken (onnx2tf's result kept): " + record["summary"]
            return chosen, record  # recorded, not taken
        shutil.copyfile(path, entry_path)
        log.info("%s: ai-edge-quantizer selective INT8 replaces onnx2tf's file (%s)", self.model_name, why)
        head = (record.get("head") or {}).get("recipe")
        if head:
            message = (
                f"head-aware recipe '{head}': "
                + (
                    "the detector head's decode (boxes, scores) kept in float after its int8 weighted layers"
                    if head == "float-tail"
                    else "only the mixed-scale Concat kept in float (each branch quantized apart)"
                )
                + f", {len((record.get('head') or {}).get('kept_in_float', []))} TFLite op(s) in float; "
                "inputs stay int8, the output is float32"
            )
            log.warning("%s: %s", self.model_name, message)
            self.warnings.append(message)
        label = (
            "int8 (ai-edge-quantizer selective"
            + (", float outputs" if float_outputs else "")
            + (f", head {head}" if head else "")
            + ")"
        )
        return Plan(AEQ_INT8, label, self.plan.io, "aeq"), record
