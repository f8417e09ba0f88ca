"""edgekit: one ONNX model to many edge devices, exported, verified and measured."""

__version__ = "0.1.0"
