"""Several bundles as one model: their probabilities averaged (`segan predict --model A --model B ...`).

The members must see the same input the same way: the same contrasts in the same order, the same
regions and threshold, and the same preprocessing (spacing, crop, percentiles and their region, the
training orientation), or one preprocessed volume could not serve them all; their widths, seeds,
training data and critics may differ. A mismatch is refused naming the card field and both values.
A three-region ensemble writes its masks in the members' common label scheme, or in --label-scheme.

An ensemble has the Bundle attributes prediction uses (card, contrasts, threshold, preprocess_config,
segmentor, id), so everything that takes a bundle takes an ensemble. Its id names the members:
their ids joined by '+' (three fit in a mask's 80-byte NIfTI descrip), or for more members
`ensemble-` and 12 hex digits of the SHA-256 over their weights' SHA-256s, in order.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from segan_lib.apply.labels import bundle_label_scheme
from segan_lib.errors import SeganError

# (card field, where it is read) that every member must share
SHARED_FIELDS = ("contrasts", "regions", "n_outputs", "threshold", "preprocessing.spacing_mm",
                 "preprocessing.crop_shape", "preprocessing.percentiles", "preprocessing.percentile_region",
                 "preprocessing.orientation")
MAX_JOINED_IDS = 3


def _field(card: dict, name: str):
    value = card
    for part in name.split("."):
        value = (value or {}).get(part) if isinstance(value, dict) else None
    return value


class AveragedSegmentor:
    """predict_on_batch: the mean of the members' probabilities."""

    def __init__(self, segmentors):
        self.segmentors = list(segmentors)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        total = None
        for seg in self.segmentors:
            p = np.asarray(seg.predict_on_batch(x), np.float32)
            total = p if total is None else total + p
        return total / np.float32(len(self.segmentors))


class Ensemble:
    """Bundles whose probabilities are averaged; built by `make_ensemble`."""

    def __init__(self, members, card: dict):
        self.members = list(members)
        self.card = card
        self.segmentor = AveragedSegmentor(m.segmentor for m in self.members)
        self.path = Path(" + ".join(str(m.path) for m in self.members))  # what messages name
        self.engine = self.members[0].engine

    @property
    def id(self) -> str:
        ids = [m.id for m in self.members]
        if len(ids) <= MAX_JOINED_IDS:
            return "+".join(ids)
        return "ensemble-" + hashlib.sha256("".join(m.sha256 for m in self.members).encode()).hexdigest()[:12]

    @property
    def contrasts(self) -> tuple[str, ...]:
        return self.members[0].contrasts

    @property
    def threshold(self) -> float:
        return self.members[0].threshold

    def preprocess_config(self):
        return self.members[0].preprocess_config()


def check_compatible(cards, label_scheme: str | None = None) -> None:
    """SeganError naming the first card field in which two bundles differ (see SHARED_FIELDS).

    cards: (bundle path, card) pairs."""
    (first_path, first), rest = cards[0], cards[1:]
    for other_path, other in rest:
        for name in SHARED_FIELDS:
            a, b = _field(first, name), _field(other, name)
            if a != b:
                raise SeganError(f"the ensemble's bundles differ in {name}: {first_path} has {a!r}, {other_path} has "
                                 f"{b!r}; averaging needs the same input for all, so they cannot be combined")
    if int(first.get("n_outputs", 1)) == 3 and label_scheme is None:
        schemes = {str(path): bundle_label_scheme(card) for path, card in cards}
        if len(set(schemes.values())) > 1:
            listed = ", ".join(f"{p} has {s!r}" for p, s in schemes.items())
            raise SeganError(f"the ensemble's bundles differ in training_data.label_scheme ({listed}): give "
                             "--label-scheme to say in whose label values the masks are written")


def make_ensemble(bundles, label_scheme: str | None = None):
    """One bundle as it is, or an Ensemble of several (checked with `check_compatible`)."""
    bundles = list(bundles)
    if not bundles:
        raise SeganError("an ensemble needs at least one model bundle")
    if len(bundles) == 1:
        return bundles[0]
    check_compatible([(b.path, b.card) for b in bundles], label_scheme)
    card = dict(bundles[0].card)
    card["ensemble"] = [{"path": str(b.path), "id": b.id} for b in bundles]
    return Ensemble(bundles, card)


def load_models(paths, engine: str | None = None, label_scheme: str | None = None):
    """The bundle at one path, or the Ensemble of several, all run by one engine.

    The cards are checked before any segmentor is loaded. engine None / "auto": onnx when every
    bundle has its ONNX file and onnxruntime is importable, else tensorflow (segan_lib.apply.engines).
    """
    from segan_lib.apply.bundle import load_bundle, read_card
    from segan_lib.apply.engines import choose_engine

    paths = [Path(p) for p in paths]
    cards = [(p, read_card(p)) for p in paths]
    if len(cards) > 1:
        check_compatible(cards, label_scheme)
    if engine in (None, "auto"):
        engine = "onnx" if all(choose_engine(card, p, None) == "onnx" for p, card in cards) else "tensorflow"
    return make_ensemble([load_bundle(p, engine) for p in paths], label_scheme)
