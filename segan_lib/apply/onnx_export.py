"""The bundle's segmentor as ONNX: Keras' own `model.export(format="onnx")` (tf2onnx), checked against Keras.

The graph converted is the segmentor with each BilinearUpSampling2D (a repeat and a [1/4, 1/2, 1/4]
filter, written so that Keras traces it with unknown H and W) replaced by TensorFlow's bilinear
resize, which tf2onnx turns into one ONNX Resize (linear, half-pixel centres, edges clamped): the
same function (they differ by float rounding, 1e-6), and onnxruntime runs it 3-4 times faster than
the Tile/Slice/Mul chain the repeat-and-filter form becomes (measured at width 64 on 8 slices of
192x192: 1.3 s against 5.1 s, the Keras model 1.2 s). The weights are the bundle's, unchanged.

Before the file is kept, onnxruntime runs it on a random batch against the original Keras segmentor;
a graph further off than ONNX_EXPORT_ATOL is not written. Any failure is returned as the reason the
file is absent, never raised: the bundle is complete without it (the TensorFlow engine needs only the
weights). Only on Keras' TensorFlow backend: Keras exports other backends through TensorFlow too,
which a JAX process must not import.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from segan_lib.apply.engines import ONNX_FILE, OnnxSegmentor, file_sha256

# what the exported graph must reproduce on a random batch (measured: 9.5e-7 at width 4 after training,
# 2.2e-6 at width 64 with random weights); a graph further off than this is not written
ONNX_EXPORT_ATOL = 1e-4


def _resize_segmentor(seg):
    """A clone of the segmentor whose x2 upsampling layers are TensorFlow's bilinear resize; same weights."""
    import keras
    import tensorflow as tf

    from segan_lib.nets.layers import BilinearUpSampling2D

    class ResizeBilinear2x(keras.layers.Layer):  # for the export only: the TensorFlow backend, never saved
        def call(self, x):
            size = tf.shape(x)[1:3] * 2
            return tf.image.resize(x, size, method="bilinear")  # TF 2: half-pixel centres, no antialiasing

        def compute_output_shape(self, input_shape):
            b, h, w, c = input_shape
            return (b, None if h is None else 2 * h, None if w is None else 2 * w, c)

    def clone(layer):
        if isinstance(layer, BilinearUpSampling2D):
            return ResizeBilinear2x(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    out = keras.models.clone_model(seg, clone_function=clone)
    out.set_weights(seg.get_weights())
    return out


def export_onnx(folder: Path, card: dict, weights: dict) -> dict:
    """Write folder/segmentor.onnx from the weights (arrays in the segmentor's variable order); the card's
    "onnx" record: {"file", "sha256", "opset", "tf2onnx", "max_abs_diff", "seconds"} or {"file": None,
    "absent": why}."""
    t0 = time.perf_counter()
    try:
        import keras

        backend = keras.backend.backend()
        if backend != "tensorflow":
            return {"file": None, "absent": f"the ONNX export runs on Keras' TensorFlow backend and this export ran "
                                            f"on {backend} (export again with KERAS_BACKEND=tensorflow)"}
        if importlib.util.find_spec("tf2onnx") is None:
            return {"file": None, "absent": "tf2onnx is not installed (pip install 'segan_lib[onnx]')"}
        from segan_lib.nets.segmentor import build_segmentor

        policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")  # Keras exports float32 models only; the weights are float32
        try:
            n_in = len(card["contrasts"])
            seg = build_segmentor(n_in, width=int(card["width"]), n_outputs=int(card["n_outputs"]), seed=0)
            for v, a in zip(seg.variables, weights.values()):
                v.assign(a)
            graph = _resize_segmentor(seg)
        finally:
            keras.config.set_dtype_policy(policy)
        path = folder / ONNX_FILE
        with warnings.catch_warnings():  # tf2onnx's and Keras' notices about numpy 2 and TensorFlow internals
            warnings.simplefilter("ignore")
            graph.export(str(path), format="onnx", verbose=False,
                         input_signature=[keras.InputSpec(shape=(None, None, None, n_in), dtype="float32",
                                                          name="image")])
        entry = {"file": ONNX_FILE, "sha256": file_sha256(path), "opset": _onnx_opset(path),
                 "tf2onnx": importlib.metadata.version("tf2onnx")}
        if importlib.util.find_spec("onnxruntime") is not None:  # the graph must reproduce the bundle's model
            x = np.random.default_rng(0).random((2, 32, 48, n_in), dtype=np.float32)
            diff = float(np.max(np.abs(OnnxSegmentor(path, int(card["n_outputs"])).predict_on_batch(x)
                                       - np.asarray(seg(x, training=False)))))
            if not diff <= ONNX_EXPORT_ATOL:
                path.unlink()
                return {"file": None, "absent": f"the exported graph's probabilities differ from the Keras model's by "
                                                f"{diff:.3g} (more than {ONNX_EXPORT_ATOL:g}) on a random batch"}
            entry["max_abs_diff"] = diff
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        return entry
    except Exception as exc:  # noqa: BLE001 - any failure of the converter: recorded, the bundle still written
        (folder / ONNX_FILE).unlink(missing_ok=True)
        message = " ".join(str(exc).split())[:300]
        return {"file": None, "absent": f"the ONNX export failed ({exc.__class__.__name__}: {message})"}


def reuse_onnx(old_card: Path, card: dict, folder: Path) -> dict | None:
    """The ONNX record of the bundle whose card is old_card, its file copied into folder, when it holds the
    same weights (a re-export that refreshes the card's metrics); None otherwise."""
    try:
        old = json.loads(Path(old_card).read_text())
        entry = old.get("onnx") or {}
        if old["weights"]["sha256"] != card["weights"]["sha256"] or not entry.get("file"):
            return None
        source = Path(old_card).parent / entry["file"]
        if file_sha256(source) != entry.get("sha256"):
            return None
        shutil.copyfile(source, folder / ONNX_FILE)
        return dict(entry, file=ONNX_FILE)
    except (OSError, ValueError, KeyError, TypeError):  # no old bundle, or one that cannot serve
        return None


def _onnx_opset(path: Path) -> int | None:
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:  # noqa: BLE001 - the opset is information, not a requirement
        return None
