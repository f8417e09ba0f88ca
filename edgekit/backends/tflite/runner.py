"""The LiteRT host runner of a TFLite artifact."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.backends.base import HostRunner, TensorSpec
from edgekit.backends.tflite.iomap import dequantize, open_interpreter, quantize
from edgekit.errors import BadInput


class TFLiteRunner(HostRunner):
    """LiteRT Interpreter with an explicit thread count and XNNPACK (the default delegate of the AUTO
    op resolver). Takes source names / layout, returns float outputs in the source layout."""

    def __init__(
        self,
        path: Path,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        io_map: Mapping[str, Any],
        threads: int,
    ) -> None:
        super().__init__(inputs, outputs)
        self.threads = threads
        self._interpreter = open_interpreter(path, threads)
        by_name = {d["name"]: d for d in self._interpreter.get_input_details()}
        out_by_name = {d["name"]: d for d in self._interpreter.get_output_details()}
        self._in = []
        for spec, entry in zip(inputs, io_map["inputs"], strict=True):
            self._in.append((spec.source_name, by_name[entry["tflite_name"]]["index"], entry))
        self._out = []
        for spec, entry in zip(outputs, io_map["outputs"], strict=True):
            self._out.append((spec.source_name, out_by_name[entry["tflite_name"]]["index"], entry))

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for source_name, index, entry in self._in:
            x = np.asarray(feed[source_name])
            want = [entry["shape"][i] for i in np.argsort(entry["perm"])]
            if list(x.shape) != want:
                if x.size != int(np.prod(want)):
                    raise BadInput(
                        f"input '{source_name}' has shape {list(x.shape)}, the artifact wants {want}"
                    )
                x = x.reshape(want)
            x = np.ascontiguousarray(quantize(x.transpose(entry["perm"]), entry))
            self._interpreter.set_tensor(index, x)
        self._interpreter.invoke()
        result = {}
        for source_name, index, entry in self._out:
            y = dequantize(self._interpreter.get_tensor(index), entry)
            result[source_name] = np.ascontiguousarray(y.transpose(np.argsort(entry["perm"])))
        return result

    def close(self) -> None:
        self._interpreter = None
