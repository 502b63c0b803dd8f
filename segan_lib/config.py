"""Typed profiles: params/<name>.yaml loaded into dataclasses, overridable.

A profile is a YAML file with one mapping per section below. Overrides come as
dotted keys (``train.epochs=3``), from the CLI's ``--set`` or from a notebook's
parameters cell; an unknown key or a value of the wrong type is a ConfigError
that names the key, never a silently ignored typo.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from segan_lib import paths
from segan_lib.constants import (CLIP_SCOPES, CONTRASTS, EVALUATION_FIELDS, FINE_TUNING_STRATEGIES, MISSING_FILLS,
                                 RMSPROP_VARIANTS, UPDATE_ORDERS)
from segan_lib.errors import ConfigError


# the data settings of the pattern layout and of an explicit label scheme (None = not given); a profile's
# settings() and fingerprint leave them out while None, so the keys of runs and studies made before
# they existed stay the same
DATA_LAYOUT_SETTINGS = ("pattern", "contrast_names", "label_pattern", "mask_pattern", "label_scheme")
# the study's settings of its optional parts (the phantom against real scans, the recipe ablation), left out
# of a profile's settings() (below)
STUDY_COMPARISON_SETTINGS = ("real_data", "real_layout", "real_phantom_n", "ablation", "ablation_seeds",
                             "ablation_learning_rates")


@dataclass
class DataConfig:
    root: str = "data/phantom"  # a BraTS folder of any supported layout; relative to the project root
    layout: str | None = None  # None = detect from the folder (a segan_layout.yaml in it: pattern)
    grades_file: str | None = None  # CSV case_id,grade; default <root>/grades.csv when present
    on_bad_case: str = "error"  # "error" or "skip"
    # the pattern layout (segan_lib.data.layouts.pattern), for any other file naming: templates relative to
    # root with {case} (a folder or part of a file name) and, in `pattern` only, {contrast}; `*` matches
    # any text in one name. Given without data.layout they imply layout pattern; they win over the keys of
    # a segan_layout.yaml in the data folder.
    pattern: str | None = None  # image files, e.g. "{case}/{contrast}_subtrMeanDivStd.nii.gz"
    # contrast -> its name in the files, {flair: Flair, t1c: T1c} or "flair=Flair,t1c=T1c"; None = t1, t1c, t2, flair
    contrast_names: str | dict[str, str] | None = None
    label_pattern: str | None = None  # label files, e.g. "{case}/OTMultiClass.nii.gz"
    mask_pattern: str | None = None  # brain masks (optional), e.g. "{case}/brainmask.nii.gz"
    # what the label values mean: brats2015, brats2018, brats2023 or msd; for the pattern layout (needed
    # with label_pattern) and nnunet (default: from its dataset.json's "labels")
    label_scheme: str | None = None
    # the embedded phantom, generated when root is the phantom folder and it is missing
    phantom_n: int = 60
    phantom_seed: int = 0
    phantom_voxel_size: float = 1.0

    def __post_init__(self):
        _choice("data.on_bad_case", self.on_bad_case, ("error", "skip"))
        names = self.contrast_names
        if names is not None and not (isinstance(names, str) or (
                isinstance(names, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()))):
            raise ConfigError(f"data.contrast_names must map contrasts to their names in the files, e.g. "
                              f"{{flair: Flair, t1c: T1c}} or \"flair=Flair,t1c=T1c\", got {names!r}")
        pattern_keys = [f"data.{k}" for k in ("pattern", "contrast_names", "label_pattern", "mask_pattern")
                        if getattr(self, k) is not None]
        if pattern_keys and self.layout not in (None, "pattern"):
            raise ConfigError(f"{', '.join(pattern_keys)} describe files for the pattern layout, but data.layout is "
                              f"{self.layout}; set data.layout to pattern (or leave it unset) or leave them out")
        if self.label_scheme is not None and self.layout not in (None, "pattern", "nnunet"):
            raise ConfigError(f"data.label_scheme is for the pattern and nnunet layouts; data.layout {self.layout} "
                              "has its own label scheme")

    def layout_settings(self) -> dict[str, Any]:
        """The pattern layout's settings given here (None = not given), as the data layer takes them."""
        return {k: getattr(self, k) for k in DATA_LAYOUT_SETTINGS}
        _positive("data.phantom_n", self.phantom_n)
        _positive("data.phantom_voxel_size", self.phantom_voxel_size)


@dataclass
class PreprocessConfig:
    spacing_mm: float = 1.0  # resample to this isotropic spacing first (1.0 = the paper, no resampling on BraTS)
    crop_shape: tuple[int, int, int] = (180, 180, 128)  # centre crop (pad if smaller), in voxels of that spacing
    percentiles: tuple[float, float] = (2.0, 98.0)
    percentile_region: str = "volume"  # "volume" (the paper: background included) or "brain" (non-zero voxels)
    cache_dtype: str = "float16"

    def __post_init__(self):
        _positive("preprocess.spacing_mm", self.spacing_mm)
        for n in self.crop_shape:
            _positive("preprocess.crop_shape", n)
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ConfigError(f"preprocess.percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        _choice("preprocess.percentile_region", self.percentile_region, ("volume", "brain"))
        _choice("preprocess.cache_dtype", self.cache_dtype, ("float16", "float32"))


@dataclass
class SplitConfig:
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    stratify: bool = True  # by grade, when grades are known

    def __post_init__(self):
        if any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split.fractions must be three non-negative numbers summing to 1, got {self.fractions}")


@dataclass
class ModelConfig:
    contrasts: tuple[str, ...] = ("t1", "t1c", "t2", "flair")
    width: int = 64
    critic_input: str = "concat"  # "concat" (SegAN_IO) or "mask" (SegAN)
    regions: str = "wt"  # "wt" (whole tumour) or "brats" (wt, tc, et)
    dice_weight: float = 1.0
    clip_value: float = 0.05
    # which critic weights are clipped to +-clip_value after each critic update: "kernels" (the
    # authors' kernel_constraint: conv kernels only, not the first conv's bias nor batch-norm gamma
    # and beta) or "all" (every trainable weight, as PyTorch SegAN clamps every parameter)
    clip_scope: str = "kernels"

    def __post_init__(self):
        if not self.contrasts or any(c not in CONTRASTS for c in self.contrasts) or len(set(self.contrasts)) != len(self.contrasts):
            raise ConfigError(f"model.contrasts must be distinct names among {', '.join(CONTRASTS)}, got {list(self.contrasts)}")
        _positive("model.width", self.width)
        _choice("model.critic_input", self.critic_input, ("concat", "mask"))
        _choice("model.regions", self.regions, ("wt", "brats"))
        _choice("model.clip_scope", self.clip_scope, CLIP_SCOPES)


PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class TrainConfig:
    batch_size: int = 64
    crop_size: int = 160  # random training crop (in-plane); what validation and test see is evaluate.field
    learning_rate: float = 2e-5
    epochs: int = 10000
    patience: int = 500
    seed: int = 0
    slices: str = "all"  # "all" (the paper) or "tumour" (only slices holding tumour)
    # train on this fraction of the training subjects: a stratified subset drawn with `seed`,
    # nested (the 10% subset lies inside the 25% one, ...); validation and test stay whole
    subject_fraction: float = 1.0
    # a Keras dtype policy; the mixed ones are for GPUs (the sigmoid and the losses stay float32)
    precision: str = "float32"
    # "joint" (the authors' step: one segmentor pass and both critic passes under one tape, both
    # gradients at the same weights, then the segmentor's update and the critic's, clipped) or
    # "critic_first" (PyTorch SegAN's: the critic's update, then the segmentor's through the updated critic)
    update_order: str = "joint"
    # "tf2" (the authors' tf.keras RMSprop of TensorFlow 2.0: lr * g / (sqrt(v) + eps)) or
    # "keras3" (Keras 3's RMSprop: lr * g / sqrt(v + eps)); rho 0.9, epsilon 1e-7, no momentum
    rmsprop: str = "tf2"

    def __post_init__(self):
        for key in ("batch_size", "crop_size", "epochs", "patience"):
            _positive(f"train.{key}", getattr(self, key))
        _positive("train.learning_rate", self.learning_rate)
        _choice("train.slices", self.slices, ("all", "tumour"))
        _choice("train.precision", self.precision, PRECISIONS)
        _choice("train.update_order", self.update_order, UPDATE_ORDERS)
        _choice("train.rmsprop", self.rmsprop, RMSPROP_VARIANTS)
        if not 0.0 < self.subject_fraction <= 1.0:
            raise ConfigError(f"train.subject_fraction must be in (0, 1], got {self.subject_fraction!r}")



@dataclass
class EvaluateConfig:
    """What validation (model selection) and test scores are computed on."""

    # "centre160" (the authors: the centre 160x160 of each 180x180 slice, i.e. a centre window of
    # round(160/180 * n) pixels of each in-plane side n of the preprocessed crop, at any resolution;
    # the network sees only that window, as theirs did) or "crop" (the whole preprocessed crop)
    field: str = "centre160"

    def __post_init__(self):
        _choice("evaluate.field", self.field, EVALUATION_FIELDS)


@dataclass
class StudyConfig:
    """Which parts of the study run_all.sh runs for this profile."""

    paper: bool = True  # Tables I-III, Fig. 2 and 3 (7 models per seed + 6 fine-tuned)
    transfer: bool = False  # the transfer study: strategies, data efficiency, seeds, missing contrasts
    # training seeds (train.seed) of the Table I and II models; every cell and claim is seed-averaged.
    # Table III fine-tunes the first seed's FLAIR model, once.
    seeds: tuple[int, ...] = (0,)
    # a real data set (relative to the project root) to hold the phantom against: step 08_phantom_vs_real
    # (notebooks/08_phantom_vs_real.ipynb); None: no such step. It needs labels (the tumour compartments).
    real_data: str | None = None
    # how its files are named, when a release layout does not say (the pattern layout's settings, the keys of
    # DATA_LAYOUT_SETTINGS: pattern, contrast_names, label_pattern, mask_pattern, label_scheme); None: detected
    # (a segan_layout.yaml in that folder is read)
    real_layout: dict | None = None
    real_phantom_n: int = 4  # phantom subjects compared with it: the first of the profile's phantom
    # the recipe ablation (segan_lib/study/ablation_plan.py, notebooks/09_recipe_ablation.ipynb): our old
    # training settings, each of the authors' put back alone and all four, on the four-contrast and the
    # FLAIR SegAN_IO, with each seed of ablation_seeds (None: study.seeds); the authors' recipe also at
    # each of ablation_learning_rates
    ablation: bool = False
    ablation_seeds: tuple[int, ...] | None = None
    ablation_learning_rates: tuple[float, ...] = ()

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("study.seeds must name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"study.seeds repeats a seed: {list(self.seeds)}")
        _positive("study.real_phantom_n", self.real_phantom_n)
        if self.ablation_seeds is not None and (not self.ablation_seeds or
                                                len(set(self.ablation_seeds)) != len(self.ablation_seeds)):
            raise ConfigError(f"study.ablation_seeds must name distinct seeds, got {list(self.ablation_seeds)}")
        for lr in self.ablation_learning_rates:
            _positive("study.ablation_learning_rates", lr)
        layout = self.real_layout
        if layout is not None:
            if not isinstance(layout, Mapping):
                raise ConfigError(f"study.real_layout must map layout settings to values, e.g. "
                                  f"{{pattern: \"{{case}}/{{contrast}}.nii.gz\"}}, got {layout!r}")
            unknown = sorted(set(layout) - set(DATA_LAYOUT_SETTINGS))
            if unknown:
                raise ConfigError(f"study.real_layout: unknown setting(s) {', '.join(map(str, unknown))}; known: "
                                  f"{', '.join(DATA_LAYOUT_SETTINGS)}")


@dataclass
class TransferConfig:
    """The transfer study (notebooks/07_transfer_study.ipynb)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    contrasts: tuple[str, ...] = ("t1", "t1c", "t2", "flair")  # the sources and targets taking part
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # of the target's training subjects
    strategies: tuple[str, ...] = FINE_TUNING_STRATEGIES
    # the source fine-tuned on each target in the data-efficiency runs (all sources are used at 100%)
    efficiency_sources: dict = field(default_factory=lambda: {"t1": "flair", "t1c": "flair", "t2": "flair",
                                                              "flair": "t2"})
    missing_fill: tuple[str, ...] = MISSING_FILLS  # how absent contrasts are filled at test time
    # > 0: also train the four-contrast model with this contrast dropout (each training slice's
    # contrast zeroed with this probability, one always kept) and compare it with missing contrasts
    contrast_dropout: float = 0.0

    def __post_init__(self):
        if not self.seeds:
            raise ConfigError("transfer.seeds must name at least one seed")
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"transfer.fractions must be in (0, 1], got {f!r}")
        if 1.0 not in self.fractions:
            raise ConfigError("transfer.fractions must include 1.0 (the source x target x strategy table)")
        for strategy in self.strategies:
            _choice("transfer.strategies", strategy, FINE_TUNING_STRATEGIES)
        for fill in self.missing_fill:
            _choice("transfer.missing_fill", fill, MISSING_FILLS)
        if not 0.0 <= self.contrast_dropout < 1.0:
            raise ConfigError(f"transfer.contrast_dropout must be in [0, 1), got {self.contrast_dropout!r}")
        if not isinstance(self.efficiency_sources, dict):
            raise ConfigError(f"transfer.efficiency_sources must map target to source, got {self.efficiency_sources!r}")
        if len(set(self.contrasts)) < 2 or any(c not in CONTRASTS for c in self.contrasts):
            raise ConfigError(f"transfer.contrasts must be at least two distinct names among {', '.join(CONTRASTS)}, "
                              f"got {list(self.contrasts)}")
        for target, source in self.efficiency_sources.items():
            _choice("transfer.efficiency_sources", target, CONTRASTS)
            _choice(f"transfer.efficiency_sources.{target}", source, tuple(c for c in CONTRASTS if c != target))
            if target in self.contrasts and source not in self.contrasts:
                raise ConfigError(f"transfer.efficiency_sources.{target}={source}: {source} is not in "
                                  f"transfer.contrasts {list(self.contrasts)}")


@dataclass
class Profile:
    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def settings(self) -> dict[str, Any]:
        """to_dict without the profile's name and description: what results depend on (the data layout
        settings only where given, see DATA_LAYOUT_SETTINGS)."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("name", "description")}
        d["data"] = {k: v for k, v in d["data"].items() if not (k in DATA_LAYOUT_SETTINGS and v is None)}
        # the real data set the phantom is held against and the ablation's settings decide those parts alone (their
        # steps have them in their parameters), not the paper's models: their keys stay the same with and without
        d["study"] = {k: v for k, v in d["study"].items() if k not in STUDY_COMPARISON_SETTINGS}
        return d

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections (all when none): equal settings, equal key."""
        d = self.settings()
        chosen = {k: d[k] for k in (sections or d.keys())}
        blob = json.dumps(chosen, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def data_root(self) -> Path:
        return paths.resolve(self.data.root)


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _positive(key: str, value: Any) -> None:
    if value <= 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def profile_files() -> dict[str, Path]:
    """Each profile name and its file: the shipped params/*.yaml, then the project root's params/*.yaml.

    A profile of the root overrides a shipped one of the same name (a user's own settings win, and
    a run records every resolved setting in its settings.json); `segan profiles` says which one is used.
    """
    found: dict[str, Path] = {}
    for folder in paths.profile_dirs():
        for p in sorted(folder.glob("*.yaml")):
            if not p.stem.startswith("_"):  # _* = data, not profiles
                found[p.stem] = p
    return found


def available_profiles() -> list[str]:
    return sorted(profile_files())


def load_profile(name_or_path: str | Path = "quick", overrides: Mapping[str, Any] | Iterable[str] | None = None) -> Profile:
    """Read a profile by name (params/<name>.yaml, see profile_files) or path, then apply overrides.

    overrides: a mapping of dotted keys to values, or strings "section.key=value"
    whose value is parsed as YAML (so "3", "1e-4", "[t1, flair]" get their types).
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        found = profile_files().get(str(name_or_path))
        if found is None:
            folders = " or ".join(f"{d}/" for d in paths.profile_dirs())
            raise ConfigError(f"profile {name_or_path!r} not found (looked for {name_or_path}.yaml in {folders}); "
                              f"available: {', '.join(available_profiles())}")
        path = found
    if not path.is_file():
        raise ConfigError(f"profile {name_or_path!r} not found (looked for {path}); available: {', '.join(available_profiles())}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"profile file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"profile file {path} must hold a mapping of sections")
    raw.setdefault("name", path.stem)
    profile = _build(Profile, raw, where=str(path))
    if overrides:
        profile = apply_overrides(profile, overrides)
    return profile


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def apply_overrides(profile: Profile, overrides: Mapping[str, Any] | Iterable[str]) -> Profile:
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    d = profile.to_dict()
    for key, value in items:
        parts = key.split(".")
        target = d
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise ConfigError(f"unknown setting {key!r}: no section {part!r} (sections: {', '.join(k for k in d if isinstance(d[k], dict))})")
            target = target[part]
        if parts[-1] not in target:
            raise ConfigError(f"unknown setting {key!r}; known in this section: {', '.join(sorted(target))}")
        target[parts[-1]] = value
    return _build(Profile, d, where="overrides")


def _build(cls: type, raw: Mapping[str, Any], where: str, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(prefix + u for u in sorted(unknown))}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name in known & set(raw):
        kwargs[name] = _coerce(hints[name], raw[name], f"{prefix}{name}", where)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a mapping of settings, got {value!r}")
        return _build(tp, value, where, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: {key} has an invalid value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value] if args and args[-1] is Ellipsis else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(args[0], v, key, where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: {key} must have {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(a, v, key, where) for a, v in zip(args, value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be text, got {value!r}")
        return value
    return value


# Settings that older run folders do not record, with the value those runs were trained and scored
# with (before the authors' behaviour became the default): a settings.json without them loads as
# what it was, so evaluating or exporting an old run reproduces its own validation and test numbers.
LEGACY_SETTINGS: dict[str, dict[str, Any]] = {
    "model": {"clip_scope": "all"},
    "train": {"update_order": "critic_first", "rmsprop": "keras3"},
    "evaluate": {"field": "crop"},
}


def profile_from_dict(d: Mapping[str, Any], where: str = "settings") -> Profile:
    """A Profile from its to_dict() form (e.g. a run's settings.json).

    A setting of LEGACY_SETTINGS that the dict lacks gets its legacy value, not today's default:
    such a dict was written before the setting existed, by a run that behaved that way.
    """
    d = dict(d)
    for section, values in LEGACY_SETTINGS.items():
        given = d.get(section)
        if given is None:
            d[section] = dict(values)
        elif isinstance(given, Mapping):
            d[section] = {**values, **given}
    return _build(Profile, d, where=where)


def profile_overrides(profile: Profile, base: str | Path | None = None) -> dict[str, Any]:
    """The dotted settings in which `profile` differs from the named base profile (its own name by default).

    Passing them with the base name (to a notebook, another process) rebuilds the same profile.
    """
    base_dict = load_profile(base or profile.name).to_dict()
    out: dict[str, Any] = {}
    for section, values in profile.to_dict().items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if base_dict[section].get(key) != value:
                out[f"{section}.{key}"] = value
    return out
