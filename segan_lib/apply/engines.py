"""What runs a bundle's segmentor: ONNX Runtime on the bundle's `segmentor.onnx`, or Keras (TensorFlow).

    onnx         onnxruntime on the ONNX graph that `segan export` writes beside the weights; imports
                 no TensorFlow and no Keras (nor any segan_lib module that does), so a prediction
                 starts in about a second instead of the ~7 s of `import tensorflow`
    tensorflow   the Keras segmentor rebuilt from `segmentor.weights.npz` (segan_lib.nets)

Default (`engine=None` or "auto"): onnx when the bundle has its ONNX file and onnxruntime is
importable, else tensorflow. Both give the same probabilities to rounding (tests/apply/test_engines.py
measures the spread); each segmentor object has `predict_on_batch(x)` -> (N, H, W, R) float32, which
is all that slice-wise inference (segan_lib.nets.inference.predict_array, numpy only) calls.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from segan_lib.errors import SeganError

ENGINES = ("onnx", "tensorflow")
ONNX_FILE = "segmentor.onnx"
ONNX_INSTALL_HINT = "pip install 'segan_lib[onnx]' (onnxruntime)"


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported here (looked up, not imported)."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_entry(card: dict) -> dict:
    """The card's "onnx" record: {"file", "sha256", ...} or {"file": None, "absent": why}."""
    entry = card.get("onnx")
    if not isinstance(entry, dict):
        return {"file": None, "absent": "the bundle was exported before bundles carried an ONNX segmentor"}
    return entry


def choose_engine(card: dict, path: Path, requested: str | None = None) -> str:
    """The engine to run a bundle with; SeganError when `requested` cannot be had, naming what is missing."""
    if requested not in (None, "auto", *ENGINES):
        raise SeganError(f"unknown engine {requested!r}: the engines are {', '.join(ENGINES)}")
    entry = onnx_entry(card)
    has_file = bool(entry.get("file")) and (Path(path) / entry["file"]).is_file()
    if requested in (None, "auto"):
        return "onnx" if has_file and onnxruntime_available() else "tensorflow"
    if requested == "onnx":
        missing = []
        if not has_file:
            why = entry.get("absent") or f"{Path(path) / (entry.get('file') or ONNX_FILE)} is missing"
            missing.append(f"the model bundle {path} has no ONNX segmentor ({why}; `segan export` the run again "
                           "with tf2onnx installed)")
        if not onnxruntime_available():
            missing.append(f"onnxruntime is not installed ({ONNX_INSTALL_HINT})")
        if missing:
            raise SeganError("--engine onnx cannot run: " + "; and ".join(missing) + " (or use --engine tensorflow)")
    return requested


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OnnxSegmentor:
    """A bundle's ONNX segmentor in an onnxruntime session, with the Keras model's `predict_on_batch`.

    A batch runs in pieces of at most MAX_BATCH slices: each slice is computed on its own, so the
    result is the same, and onnxruntime's memory arena grows to a quarter (measured at width 64 on
    192x192 slices: peak 491 MiB in pieces of 8 against 1602 MiB for 32 at once, the same speed).
    """

    MAX_BATCH = 8

    def __init__(self, path: Path, n_outputs: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its notices say nothing a user can act on
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.n_outputs = n_outputs
        self.path = Path(path)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        parts = [self.session.run(None, {self.input_name: x[s:s + self.MAX_BATCH]})[0]
                 for s in range(0, len(x), self.MAX_BATCH)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __repr__(self) -> str:
        return f"OnnxSegmentor({self.path})"
