"""A trained segmentor as a self-contained folder that predicts without the run, the data or the cache.

<bundle>/
    segmentor.weights.npz   the segmentor's variables of the run's best checkpoint, in the order of
                            `model.segmentor.variables` (keys v0000, v0001, ...)
    card.json               what the weights need: contrasts and their order, regions, width, the
                            preprocessing, the threshold, the training data (its name, split hash and
                            label scheme, in whose values a three-region mask is written), the test
                            metrics, versions, seed, and the weights file's SHA-256
    segmentor.onnx          the same segmentor as an ONNX graph (Keras' own `model.export(format="onnx")`,
                            through tf2onnx), for `segan predict --engine onnx` without TensorFlow; the
                            card's "onnx" records its SHA-256, opset and the largest difference from the
                            Keras model measured at export, or, when the export failed, that the file is
                            absent and why (the bundle is written all the same: the TensorFlow engine
                            needs only the weights)

A bundle's id is the first 12 hex digits of the SHA-256 of its weights file (`Bundle.id`), computed
when it is loaded (so a bundle from before the card recorded it has one too); every mask `segan
predict` writes names it.

The folder is written into a temporary folder beside the target and renamed, so a
reader sees either no bundle or a complete one.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segan_lib import __version__
from segan_lib.apply.engines import OnnxSegmentor, choose_engine, file_sha256, onnx_entry
from segan_lib.atomic import make_temp_dir
from segan_lib.errors import SeganError

BUNDLE_FORMAT = 1
CARD = "card.json"
WEIGHTS = "segmentor.weights.npz"
from segan_lib.constants import THRESHOLD
REQUIRED_CARD_FIELDS = ("format", "contrasts", "regions", "n_outputs", "width", "preprocessing", "threshold",
                        "versions")


class BundleError(SeganError):
    """A model bundle that is missing, damaged or does not fit its own card."""


class BundleVersionWarning(UserWarning):
    """The bundle was written by another segan_lib version."""


@dataclass
class Bundle:
    path: Path
    card: dict
    segmentor: object = field(repr=False)  # a built keras.Model with the bundle's weights, or an OnnxSegmentor
    sha256: str = ""  # of the weights file, computed by load_bundle
    engine: str = "tensorflow"  # what runs `segmentor` (segan_lib.apply.engines)

    @property
    def id(self) -> str:
        """The first 12 hex digits of the weights file's SHA-256: what masks and tables name the bundle by."""
        return self.sha256[:12]

    @property
    def contrasts(self) -> tuple[str, ...]:
        return tuple(self.card["contrasts"])

    @property
    def threshold(self) -> float:
        return float(self.card.get("threshold", THRESHOLD))

    def preprocess_config(self):
        from segan_lib.config import PreprocessConfig

        p = self.card["preprocessing"]
        return PreprocessConfig(spacing_mm=float(p["spacing_mm"]), crop_shape=tuple(int(n) for n in p["crop_shape"]),
                                percentiles=tuple(float(q) for q in p["percentiles"]),
                                percentile_region=p["percentile_region"], cache_dtype="float32")


def _versions() -> dict:
    import importlib

    import keras

    backend = keras.backend.backend()  # the framework that ran the model ("tensorflow", "jax"), already imported
    return {"segan_lib": __version__, "keras": keras.__version__,
            backend: importlib.import_module(backend).__version__, "numpy": np.__version__}


def _training_orientation(run_dir: Path, profile) -> list[str]:
    """Axis codes (nibabel, e.g. ['L', 'P', 'S']) of the training scans' voxel order.

    Recorded by training in train_subjects.json; a run from before that record falls back to the
    cache. Without either the export is refused: a bundle that did not know the orientation would
    silently leave new scans in their own voxel order.
    """
    try:
        recorded = json.loads((run_dir / "train_subjects.json").read_text()).get("source_orientation")
    except (OSError, ValueError):
        recorded = None
    if recorded:
        return [str(c) for c in recorded]
    from segan_lib.data.cache import open_cache

    try:
        return open_cache(profile.data_root, profile.preprocess).source_orientation()
    except Exception as exc:  # noqa: BLE001 - any reason the cache cannot be read: said below
        raise BundleError(
            f"cannot export {run_dir}: it does not record the training scans' orientation (a run from before "
            f"train_subjects.json held it) and the preprocessed cache it was trained on cannot be read "
            f"({exc.__class__.__name__}: {exc}); run `segan preprocess` with the run's profile and data, "
            f"then export again") from None


def _training_label_scheme(run_dir: Path, profile) -> str | None:
    """The label scheme (a key of LABEL_SCHEMES) of the run's training cases, or None when nothing records it.

    Read from train_subjects.json where training records it, else from the training cases' cache
    records (as the slice pipeline reads them). None is written to the card as null: a three-region
    bundle without it asks for --label-scheme at prediction.
    """
    try:
        subjects = json.loads((run_dir / "train_subjects.json").read_text())
    except (OSError, ValueError):
        subjects = {}
    if subjects.get("label_scheme"):
        return str(subjects["label_scheme"])
    from segan_lib.data.cache import open_cache

    try:
        cache = open_cache(profile.data_root, profile.preprocess)
        first = next((c for c in subjects.get("case_ids") or [] if c in cache.meta), cache.case_ids[0])
        meta = cache.meta[first]
    except Exception:  # noqa: BLE001 - no readable cache: the card says null and prediction asks for it
        return None
    return meta.get("scheme") or meta.get("layout")


_file_sha256 = file_sha256  # the name the tests and benchmarks use


def _split_hash(profile) -> str | None:
    from segan_lib.data.splits import default_splits_path

    try:
        d = json.loads(Path(default_splits_path(profile.data_root)).read_text())
        return d.get("cases_hash")
    except (OSError, ValueError):
        return None


def _test_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "eval_test.json"
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {"metrics": d.get("metrics"), "n_subjects": d.get("n_subjects"), "protocol": d.get("protocol"),
            "space": d.get("space"), "checkpoint": d.get("checkpoint")}


def export_bundle(run_dir: str | Path, out_dir: str | Path | None = None, tag: str = "best",
                  onnx: bool = True) -> Path:
    """Write the bundle of a run (default `<run>/bundle/`), replacing an older one atomically.

    Its ONNX segmentor is converted (segan_lib.apply.onnx_export), or copied from the bundle it
    replaces when that holds the same weights; when the conversion fails, the card says why.
    onnx=False writes no ONNX file (the card says so): for the study's many small models that
    only their evaluation reads, where the conversion would be seconds each for nothing."""
    from segan_lib.apply.onnx_export import export_onnx, reuse_onnx
    from segan_lib.config import profile_from_dict
    from segan_lib.run_files import group_arrays, read_checkpoint, read_settings, run_folder

    run_dir = run_folder(run_dir)
    settings = read_settings(run_dir)
    profile = profile_from_dict(settings["profile"], where=str(run_dir / "settings.json"))
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "bundle"
    checkpoint, arrays = read_checkpoint(run_dir, tag)
    # the checkpoint's segmentor group is the segmentor's variables in order: the bundle's weights as they are
    weights = {f"v{i:04d}": a for i, a in enumerate(group_arrays(arrays, "segmentor"))}
    if not weights:
        raise BundleError(f"checkpoint '{tag}' of {run_dir} holds no segmentor weights")
    m, pp = profile.model, profile.preprocess
    card = {
        "format": BUNDLE_FORMAT,
        "run_name": run_dir.name,
        "contrasts": list(m.contrasts),
        "regions": ["wt"] if m.regions == "wt" else ["wt", "tc", "et"],
        "n_outputs": 1 if m.regions == "wt" else 3,
        "width": int(m.width),
        "critic_input": m.critic_input,
        "preprocessing": {"spacing_mm": float(pp.spacing_mm), "crop_shape": [int(n) for n in pp.crop_shape],
                          "percentiles": [float(q) for q in pp.percentiles],
                          "percentile_region": pp.percentile_region,
                          "orientation": _training_orientation(run_dir, profile)},
        "threshold": THRESHOLD,
        "training_data": {"name": Path(profile.data_root).name, "cases_hash": _split_hash(profile),
                          "label_scheme": _training_label_scheme(run_dir, profile)},
        "checkpoint": {"tag": tag, "epoch": checkpoint.get("epoch")},
        "test_metrics": _test_metrics(run_dir),
        "versions": _versions(),
        "seed": int(profile.train.seed),
        "weights": {"file": WEIGHTS, "n_variables": len(weights),
                    "shapes": [list(w.shape) for w in weights.values()]},
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_dir)  # mkdir's permissions, not mkdtemp's 0700: a bundle is shared
    old = None
    try:
        with open(tmp / WEIGHTS, "wb") as fh:
            np.savez(fh, **weights)
        card["weights"]["sha256"] = _file_sha256(tmp / WEIGHTS)
        card["onnx"] = ((reuse_onnx(out_dir / CARD, card, tmp) or export_onnx(tmp, card, weights)) if onnx else
                        {"file": None, "absent": "exported without ONNX (export_bundle(onnx=False)); "
                                                 "`segan export RUN` converts it"})
        (tmp / CARD).write_text(json.dumps(card, indent=2) + "\n")
        if out_dir.exists():  # move the old bundle aside, then the new one in, then drop the old
            old = out_dir.parent / f".{out_dir.name}.old.{os.getpid()}"
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        if old is not None and not out_dir.exists():
            os.replace(old, out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def read_card(path: str | Path) -> dict:
    path = Path(path)
    card_path = path / CARD
    if not path.is_dir():
        raise BundleError(f"no model bundle at {path} (expected a folder holding {CARD} and {WEIGHTS})")
    if not card_path.is_file():
        raise BundleError(f"model bundle {path}: {card_path} is missing")
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"model bundle {path}: {card_path} cannot be read ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(card, dict):
        raise BundleError(f"model bundle {path}: {card_path} does not hold a JSON object")
    missing = [k for k in REQUIRED_CARD_FIELDS if k not in card]
    if missing:
        raise BundleError(f"model bundle {path}: {card_path} lacks {', '.join(missing)}")
    if card["format"] != BUNDLE_FORMAT:
        raise BundleError(f"model bundle {path}: {card_path} has format {card['format']}, this segan_lib reads "
                          f"format {BUNDLE_FORMAT}")
    return card


def load_bundle(path: str | Path, engine: str | None = "tensorflow") -> Bundle:
    """The card and the bundle's segmentor, run by `engine`; BundleError naming the file when damaged.

    engine: "tensorflow" (the default here: `segmentor` is a keras.Model), "onnx" (an OnnxSegmentor;
    imports no TensorFlow or Keras), or None / "auto": onnx when the bundle has its ONNX file and
    onnxruntime is importable (what `segan predict` does); SeganError when the one asked for cannot run.
    """
    path = Path(path)
    card = read_card(path)
    made_by = card["versions"].get("segan_lib")
    if made_by != __version__:
        warnings.warn(f"model bundle {path} was written by segan_lib {made_by}; this is segan_lib {__version__} "
                      "(predictions may differ)", BundleVersionWarning, stacklevel=2)
    weights_path = path / WEIGHTS
    if not weights_path.is_file():
        raise BundleError(f"model bundle {path}: {weights_path} is missing")
    engine = choose_engine(card, path, engine)
    if engine == "onnx":  # the weights file stays the bundle's identity (its id), the graph must match its card
        return Bundle(path, card, _load_onnx(path, card), sha256=_file_sha256(weights_path), engine="onnx")
    from segan_lib.nets.segmentor import build_segmentor

    try:
        with np.load(weights_path) as z:
            arrays = [z[k] for k in sorted(z.files)]
    except Exception as exc:  # zipfile, pickle and OS errors alike: a damaged file
        raise BundleError(f"model bundle {path}: {weights_path} cannot be read ({exc.__class__.__name__}: {exc})") from None
    try:
        seg = build_segmentor(len(card["contrasts"]), width=int(card["width"]), n_outputs=int(card["n_outputs"]),
                              seed=0)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"model bundle {path}: {path / CARD} describes no valid segmentor ({exc})") from None
    variables = list(seg.variables)
    if len(arrays) != len(variables):
        raise BundleError(f"model bundle {path}: {weights_path} holds {len(arrays)} arrays, the segmentor of "
                          f"{CARD} has {len(variables)} variables")
    for i, (arr, v) in enumerate(zip(arrays, variables)):
        if tuple(arr.shape) != tuple(v.shape):
            raise BundleError(f"model bundle {path}: {weights_path} array v{i:04d} has shape {tuple(arr.shape)}, "
                              f"the segmentor of {CARD} expects {tuple(v.shape)} ({v.path})")
        v.assign(arr)
    return Bundle(path, card, seg, sha256=_file_sha256(weights_path), engine="tensorflow")


def _load_onnx(path: Path, card: dict) -> OnnxSegmentor:
    """The bundle's ONNX segmentor, checked against the card's SHA-256; BundleError naming the file otherwise."""
    onnx_path = path / onnx_entry(card)["file"]
    expected = onnx_entry(card).get("sha256")
    if expected and _file_sha256(onnx_path) != expected:
        raise BundleError(f"model bundle {path}: {onnx_path} does not match the SHA-256 that {path / CARD} records "
                          "(damaged or replaced)")
    try:
        return OnnxSegmentor(onnx_path, int(card["n_outputs"]))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base class
        raise BundleError(f"model bundle {path}: {onnx_path} cannot be loaded ({exc.__class__.__name__}: "
                          f"{' '.join(str(exc).split())[:300]})") from None
