"""edgekit: one ONNX model to many edge devices, exported, verified and measured.

The package in layers; imports point down only (tests/test_layers.py checks it):

- cli/ (parse, render): the `edgekit` command, a thin shell over the API.
- api/: the verbs users import, typed request in, typed record out. Nothing in edgekit imports it.
- services: services/ (exporting: prepare -> backend export -> manifest -> verify; verification;
  precision: --precision auto), release/, split/, report/, demo.py.
- engines: backends/ (one folder or file per backend), runner/ (jobs on devices), fidelity, int8/ (the
  INT8 search), analysis/, quant.
- model & data: ingest, opset (+ opset_repairs), graph, calib, targets (profiles + gates), inventory
  (devices), onnx_run (onnxruntime on this host), manifest, memory_model.
- plumbing: transport/, records/ (request/record types), sandbox, lifecycle, fsio, cache, tomlio,
  digest, resources, errors.
- agent.py: shipped to devices alone; imports nothing from edgekit.
"""

__version__ = "0.1.0"
