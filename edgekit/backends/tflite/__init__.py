"""TFLite / LiteRT backend: ONNX -> .tflite with onnx2tf, offline, checked, with a LiteRT host runner.

    plan        what to ask onnx2tf for: the file to keep, calibration data in its layout, its arguments
    convert     onnx2tf in edgekit's offline sandbox (edgekit.sandbox), failures as one line
    cache       the content-keyed conversion cache (one onnx2tf run serves every precision)
    flatbuffer  static analysis of the .tflite and the post-export checks (Flex ops, float ops, I/O types)
    iomap       which tflite tensor is which ONNX input/output, in which layout and quantization
    runner      the LiteRT host runner
    backend     the Backend tying them together

Importing this package never imports TensorFlow, onnx2tf or LiteRT (they load in the converter
subprocess, or when a runner opens).
"""

from edgekit.backends.tflite.backend import ENTRY, TFLiteBackend
from edgekit.backends.tflite.convert import TFLiteConversionFailed

__all__ = ["ENTRY", "TFLiteBackend", "TFLiteConversionFailed"]
