"""The embedded phantom held against real scans: intensities per tissue and tumour shapes, side by side.

Both sides go through the project's own preprocessing (`preprocess_arrays` with one profile's
settings: resampling, crop, percentile clip, [0, 1] scaling), so intensities are compared as the
networks see them, on grids of one spacing. Then, per contrast:

* tissue classes. Tumour compartments come from the labels (`segan_lib.data.tissue_classes`);
  normal tissue of a real scan from a 3-class Gaussian mixture of the non-tumour brain
  (`segan_lib.metrics.tissue_mixture`) on `mixture_contrasts` (T1c by default: the one T1-weighted
  contrast real BRATS sets always have, the one where grey and white matter differ most; the
  mixture table measures that choice). The phantom's normal tissue is known (its truth); the same
  mixture is also fitted to it, for a like-for-like comparison. Voxels at the clip values (0 or 1
  after scaling) are left out of the fit, not of the classes: the paper's whole-volume percentile
  puts several percent of the brain at exactly 1, a spike a Gaussian would chase.
* intensity distributions per tissue (histograms), contrast ratios to white matter (median over
  the tissue / median over white matter, per subject) and Wasserstein distances between the pooled
  phantom and real intensities, beside the distance between the real cases themselves (the
  spread a phantom that looked real would still show).
* tumour statistics per subject (`segan_lib.metrics.tumour_shape`): whole-tumour volume, compartment
  shares, connected components, surface-to-volume ratio and the distance to the ventricles (the
  largest deep CSF component near the brain's centre: of the mixture's CSF on a real scan, of the
  phantom's true CSF on the phantom).

`compare_phantom_to_real` does the work; `write_comparison` writes every table and figure
(`phantom_vs_real_*` under figures/); notebooks/08_phantom_vs_real.ipynb calls them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from segan_lib import paths
from segan_lib.config import PreprocessConfig
from segan_lib.constants import CONTRASTS
from segan_lib.data.tissue_classes import (NORMAL_TISSUES, TISSUE_TITLES, TISSUES, compartments_of,
                                           phantom_tissue_truth, tissue_code, tissue_map, ventricle_mask)
from segan_lib.errors import DataError
from segan_lib.metrics.tissue_mixture import GaussianMixture, class_separations, fit_gaussian_mixture
from segan_lib.metrics.tumour_shape import tumour_shape
from segan_lib.reporting.figures import CONTRAST_TITLES, save_figure
from segan_lib.reporting.tables import write_table
from segan_lib.reporting.viewers.slices import display_slice, plot_slice

#: where the tests and the notebook look for the real BRATS 2015 cases: this variable, else the default
REAL_DATA_ENV = "SEGAN_REAL_BRATS"
#: the project's copy of two real BRATS 2015 cases, beside the checkout (never inside it)
SHARED_REAL_DATA = Path("..") / "shared" / "real_brats2015"
#: how the files of that copy are named (BRATS 2015 as the DeepMedic examples redistribute it)
SHARED_REAL_LAYOUT: dict[str, str] = {
    "pattern": "{case}/{contrast}_subtrMeanDivStd.nii.gz", "contrast_names": "flair=Flair,t1c=T1c",
    "label_pattern": "{case}/OTMultiClass.nii.gz", "label_scheme": "brats2015", "mask_pattern": "{case}/brainmask.nii.gz",
}
#: the contrasts the mixture of normal tissue uses by default (see the module doc)
MIXTURE_CONTRASTS: tuple[str, ...] = ("t1c",)
#: the feature sets the mixture table compares
MIXTURE_CANDIDATES: tuple[tuple[str, ...], ...] = (("t1c",), ("flair",), ("t1c", "flair"))
#: normal tissue from dark to bright on each contrast, which names the mixture's classes (ordered by
#: their mean on the first mixture contrast)
DARK_TO_BRIGHT: dict[str, tuple[str, str, str]] = {"t1": ("csf", "gm", "wm"), "t1c": ("csf", "gm", "wm"),
                                                   "t2": ("wm", "gm", "csf"), "flair": ("csf", "wm", "gm")}
#: the regions compared: the tissues and the rim of normal tissue around the ventricles (bright on real FLAIR)
REGIONS: tuple[str, ...] = TISSUES + ("periventricular",)
REGION_TITLES: dict[str, str] = {**TISSUE_TITLES, "periventricular": "periventricular rim"}
PERIVENTRICULAR_MM = 4.0  # the rim: normal tissue within this distance (between voxel centres) of the ventricles
#: (numerator, denominator) regions of the conspicuity table
CONSPICUITY_PAIRS: tuple[tuple[str, str], ...] = (
    ("enhancing", "oedema"), ("necrosis", "oedema"), ("necrosis", "enhancing"), ("nonenhancing", "oedema"),
    ("oedema", "wm"), ("periventricular", "wm"), ("gm", "wm"), ("csf", "wm"))
#: the columns of the ratio tables: (column, source, tissue classes)
SIDES = (("phantom_truth", "phantom", "truth"), ("phantom_mixture", "phantom", "mixture"), ("real", "real", "mixture"))
SAMPLES_PER_TISSUE = 20_000  # intensities kept per subject, tissue and contrast for histograms and distances
#: what write_comparison writes under the output folder
OUTPUT_NAMES: tuple[str, ...] = tuple(
    [f"phantom_vs_real_{n}.{ext}" for n in ("contrast_ratios", "conspicuity", "wasserstein", "tumours", "tumour_summary",
                                            "mixture") for ext in ("csv", "md")] + [f"phantom_vs_real_{n}.{ext}" for n in ("histograms", "slices") for ext in ("png", "pdf")])
#: the layout settings (keys of the pattern layout) -> the parameters of notebooks/08_phantom_vs_real.ipynb
NOTEBOOK_LAYOUT_PARAMETERS: dict[str, str] = {"pattern": "real_pattern", "contrast_names": "real_contrast_names",
                                              "label_pattern": "real_label", "mask_pattern": "real_mask",
                                              "label_scheme": "real_label_scheme"}
SOURCE_COLOURS = {"phantom": "#1f77b4", "real": "#d62728"}
TISSUE_COLOURS = {"csf": "#3949ab", "gm": "#9e9e9e", "wm": "#f5f5f5", "oedema": "#4daf4a", "enhancing": "#ffd92f",
                  "necrosis": "#e41a1c", "nonenhancing": "#ff7f00"}


# ---------------------------------------------------------------- the real data
def default_real_data() -> Path | None:
    """The real cases of this machine: $SEGAN_REAL_BRATS, else ../shared/real_brats2015 beside the checkout;
    None when neither is a folder."""
    given = os.environ.get(REAL_DATA_ENV)
    folder = Path(given) if given else paths.checkout_root() / SHARED_REAL_DATA
    return folder.resolve() if folder.is_dir() else None


def resolve_real_data(real_data: str | os.PathLike | None,
                      layout: Mapping[str, object] | None = None) -> tuple[Path | None, dict]:
    """(folder, layout settings) of the real data: a folder given is read with the settings given (none:
    detected, its segan_layout.yaml read); none given is `default_real_data()`, read with SHARED_REAL_LAYOUT
    unless settings are given. (None, {}) when there is no real data here."""
    settings = {k: v for k, v in (layout or {}).items() if v is not None}
    if real_data is None:
        folder = default_real_data()
        if folder is None:
            return None, {}
        return folder, settings or (dict(SHARED_REAL_LAYOUT) if not (folder / "segan_layout.yaml").is_file() else {})
    folder = paths.resolve(str(real_data))
    if not folder.is_dir():
        raise DataError("the real data set folder does not exist", path=folder)
    return folder, settings


# ---------------------------------------------------------------- one subject, prepared
@dataclass
class ComparedSubject:
    """One scan after preprocessing, with its tissue maps (preprocessed grid, isotropic `spacing_mm`)."""

    source: str  # "phantom" or "real"
    case_id: str
    grade: str | None
    images: dict[str, np.ndarray]  # contrast -> float32 in [0, 1]
    label: np.ndarray  # the scheme's label values
    scheme: str
    brain: np.ndarray  # bool
    tissues: dict[str, np.ndarray]  # "mixture" (and, on the phantom, "truth") -> tissue map (TISSUES codes)
    ventricles: np.ndarray  # bool
    mixture: GaussianMixture
    spacing_mm: float
    compartments: dict[int, str] = field(default_factory=dict)  # label value -> compartment


def _on_grid(array: np.ndarray, record) -> np.ndarray:
    """A class or mask volume of the source grid in the preprocessed grid (nearest neighbour, as the label)."""
    from segan_lib.data.preprocess import crop_or_pad, resample

    return crop_or_pad(resample(np.asarray(array).astype(np.uint8), record.resampled_shape, order=0),
                       record.crop_start, record.crop_shape)


def fit_normal_tissue(images: Mapping[str, np.ndarray], normal: np.ndarray, contrasts: Sequence[str] = MIXTURE_CONTRASTS,
                      seed: int = 0) -> tuple[GaussianMixture, Callable[[np.ndarray], np.ndarray]]:
    """The mixture of the `normal` voxels' intensities on `contrasts` and a function mask -> 0 CSF / 1 GM /
    2 WM of those voxels. Values at the clip limits (0 or 1) are left out of the fit."""
    missing = [c for c in contrasts if c not in images]
    if missing:
        raise DataError(f"the tissue mixture uses {', '.join(contrasts)}; the scan lacks {', '.join(missing)}")
    x = np.stack([np.asarray(images[c], np.float32)[normal] for c in contrasts], axis=1)
    inside = np.all((x > 0.0) & (x < 1.0), axis=1)
    mixture = fit_gaussian_mixture(x[inside], 3, seed=seed, order_by=0)
    rank_to_class = np.array([NORMAL_TISSUES.index(t) for t in DARK_TO_BRIGHT[contrasts[0]]])

    def classify(mask: np.ndarray) -> np.ndarray:
        values = np.stack([np.asarray(images[c], np.float32)[mask] for c in contrasts], axis=1)
        return rank_to_class[mixture.predict(values)]

    return mixture, classify


def _classes_in(brain: np.ndarray, classify) -> np.ndarray:
    normal = np.zeros(brain.shape, np.uint8)
    normal[brain] = classify(brain)
    return normal


def prepare_real_case(case, preprocess: PreprocessConfig, mixture_contrasts: Sequence[str] = MIXTURE_CONTRASTS,
                      seed: int = 0) -> ComparedSubject:
    """A real case (a `Case` with a label): preprocessed, normal tissue from the mixture, ventricles from its CSF."""
    from segan_lib.data.dataset import load_case
    from segan_lib.data.preprocess import brain_region, preprocess_arrays

    if not case.has_label:
        raise DataError("has no label: the comparison needs the tumour compartments", case_id=case.case_id)
    arrays = load_case(case)
    contrasts = list(arrays.images)
    pre = preprocess_arrays(arrays.images, arrays.label, arrays.spacing, preprocess, contrasts, case.case_id,
                            brain_mask=arrays.brain)
    images = {c: pre.images[i] for i, c in enumerate(contrasts)}
    brain = _on_grid(brain_region(arrays.images, arrays.brain), pre.record).astype(bool) | (pre.label > 0)
    mixture, classify = fit_normal_tissue(images, brain & (pre.label == 0), mixture_contrasts, seed)
    normal = _classes_in(brain, classify)
    compartments = compartments_of(arrays.scheme)
    tissues = {"mixture": tissue_map(brain, normal, pre.label, compartments)}
    csf = tissues["mixture"] == tissue_code("csf")
    ventricles = ventricle_mask(csf, brain, preprocess.spacing_mm)
    return ComparedSubject("real", case.case_id, case.grade, images, pre.label, arrays.scheme, brain, tissues,
                           ventricles, mixture, preprocess.spacing_mm, compartments)


def prepare_phantom_subject(subject, seed: int, index: int, voxel_size: float, preprocess: PreprocessConfig,
                            mixture_contrasts: Sequence[str] = MIXTURE_CONTRASTS, mixture_seed: int = 0) -> ComparedSubject:
    """A phantom subject (a `PhantomSubject` made with `seed`, `index`, `voxel_size`): preprocessed, its true
    tissue map and the mixture's, ventricles from its true CSF."""
    from segan_lib.data.preprocess import preprocess_arrays

    brain_src, normal_src = phantom_tissue_truth(seed, index, voxel_size)
    images_src = {c: np.asarray(v, np.float32) for c, v in subject.images.items()}  # as load_case reads them
    if not np.array_equal(brain_src, images_src["t1"] > 0):
        raise DataError(f"phantom subject {subject.case_id}: its scans do not match the anatomy of seed {seed}, "
                        f"index {index}, {voxel_size:g} mm (made by another generator version or other parameters?)")
    contrasts = [c for c in CONTRASTS if c in images_src]
    pre = preprocess_arrays(images_src, subject.label, (voxel_size,) * 3, preprocess, contrasts, subject.case_id)
    images = {c: pre.images[i] for i, c in enumerate(contrasts)}
    brain = _on_grid(brain_src, pre.record).astype(bool) | (pre.label > 0)
    compartments = compartments_of("brats2018", phantom_grade=subject.grade)
    truth = tissue_map(brain, _on_grid(normal_src, pre.record), pre.label, compartments)
    mixture, classify = fit_normal_tissue(images, brain & (pre.label == 0), mixture_contrasts, mixture_seed)
    tissues = {"truth": truth, "mixture": tissue_map(brain, _classes_in(brain, classify), pre.label, compartments)}
    ventricles = ventricle_mask((truth == tissue_code("csf")), brain, preprocess.spacing_mm)
    return ComparedSubject("phantom", subject.case_id, subject.grade, images, pre.label, "brats2018", brain, tissues,
                           ventricles, mixture, preprocess.spacing_mm, compartments)


def phantom_subjects(n: int, seed: int, voxel_size: float, phantom_n: int | None = None,
                     folder: str | os.PathLike | None = None) -> Iterable[tuple[object, int, int, float]]:
    """(PhantomSubject, seed, index, voxel size) of the first `n` subjects: of the phantom folder given (its
    phantom.json says seed and voxel size), else made in memory as the profile's phantom of `phantom_n`
    subjects would make them (the grades depend on the phantom's size)."""
    from segan_lib.data.phantom import PhantomSubject, case_id_for, make_subject, phantom_grades

    if folder is None:
        grades = phantom_grades(max(int(phantom_n or n), int(n)), seed)
        for index in range(int(n)):
            yield make_subject(seed, index, grades[index], voxel_size), seed, index, float(voxel_size)
        return
    from segan_lib.data.dataset import load_case, open_dataset
    from segan_lib.data.phantom import GENERATOR_VERSION

    folder = Path(folder)
    meta_path = folder / "phantom.json"
    if not meta_path.is_file():
        raise DataError("is not a phantom folder (no phantom.json)", path=folder)
    meta = json.loads(meta_path.read_text())
    if meta.get("generator_version") != GENERATOR_VERSION:
        raise DataError(f"was made by phantom generator version {meta.get('generator_version')}, this one is "
                        f"{GENERATOR_VERSION}: its true tissue maps cannot be recomputed; make it again", path=meta_path)
    ds = open_dataset(folder, layout="brats2018")
    for index in range(min(int(n), int(meta["n"]))):
        arrays = load_case(ds.get(case_id_for(index)), with_mask=False)
        grade = arrays.grade or phantom_grades(int(meta["n"]), int(meta["seed"]))[index]
        subject = PhantomSubject(arrays.images, arrays.label.astype(np.uint8), arrays.affine, grade, arrays.case_id)
        yield subject, int(meta["seed"]), index, float(meta["voxel_size"])


# ---------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    """Every prepared subject, the intensity samples, and the settings they were made with."""

    subjects: list[ComparedSubject]
    samples: pd.DataFrame  # source, method, case_id, contrast, tissue, intensity
    medians: pd.DataFrame  # source, method, case_id, contrast, tissue, median, n_voxels (every voxel)
    preprocess: PreprocessConfig
    mixture_contrasts: tuple[str, ...]
    real_root: Path
    mixture_checks: pd.DataFrame = field(default_factory=pd.DataFrame)

    def of(self, source: str) -> list[ComparedSubject]:
        return [s for s in self.subjects if s.source == source]

    def _ratios(self, numerator: str, denominator: str) -> pd.DataFrame:
        """Per subject, method and contrast: median of region `numerator` / median of region `denominator`."""
        m = self.medians.set_index(["source", "method", "case_id", "contrast", "tissue"])["median"]
        present = set(self.medians.tissue)
        if numerator not in present or denominator not in present:  # e.g. no necrosis in any subject
            return pd.DataFrame(columns=["source", "method", "case_id", "contrast", "ratio"])
        top, bottom = m.xs(numerator, level="tissue"), m.xs(denominator, level="tissue")
        both = pd.concat({"top": top, "bottom": bottom}, axis=1).dropna()
        return (both["top"] / both["bottom"]).rename("ratio").reset_index()

    def _summary_row(self, ratio: pd.DataFrame, contrast: str) -> dict:
        row = {}
        for key, source, method in SIDES:
            v = ratio[(ratio.source == source) & (ratio.method == method) & (ratio.contrast == contrast)]["ratio"]
            row[key] = float(v.mean()) if len(v) else np.nan
            if key != "phantom_mixture":
                row[f"{key}_min"] = float(v.min()) if len(v) else np.nan
                row[f"{key}_max"] = float(v.max()) if len(v) else np.nan
        return row

    def _contrasts(self) -> list[str]:
        present = set(self.medians.contrast)
        return [c for c in ("flair", "t1c", "t1", "t2") if c in present]

    def contrast_ratios(self) -> pd.DataFrame:
        """Per contrast and region: median intensity / median white matter, per subject, then the mean and the
        range over subjects (phantom with its true classes and with the mixture's; real with the mixture's),
        beside the mean median itself on the [0, 1] scale and the share of the region's voxels at the top clip."""
        m = self.medians
        rows = []
        for contrast in self._contrasts():
            for region in REGIONS:
                ratio = self._ratios(region, "wm")
                row = {"contrast": CONTRAST_TITLES[contrast], "tissue": REGION_TITLES[region],
                       **self._summary_row(ratio, contrast)}
                for source, method in (("phantom", "truth"), ("real", "mixture")):
                    v = m[(m.source == source) & (m.method == method) & (m.contrast == contrast) & (m.tissue == region)]
                    row[f"{source}_median"] = float(v["median"].mean()) if len(v) else np.nan
                    row[f"{source}_at_top"] = float(v["at_top"].mean()) if len(v) else np.nan
                if not all(np.isnan(row[k]) for k in ("phantom_truth", "real")):
                    rows.append(row)
        return pd.DataFrame(rows)

    def conspicuity(self) -> pd.DataFrame:
        """Per contrast, how the compartments stand out from each other and from normal tissue (CONSPICUITY_PAIRS:
        ratios of medians, per subject; mean and range), and the top of the scale over white matter
        (1 / median WM: the room the clip leaves above white matter)."""
        rows = []
        for contrast in self._contrasts():
            for a, b in CONSPICUITY_PAIRS:
                row = {"contrast": CONTRAST_TITLES[contrast], "ratio": f"{REGION_TITLES[a]} / {REGION_TITLES[b]}",
                       **self._summary_row(self._ratios(a, b), contrast)}
                if not all(np.isnan(row[k]) for k in ("phantom_truth", "real")):
                    rows.append(row)
            wm = self.medians[self.medians.tissue == "wm"].assign(ratio=lambda d: 1.0 / d["median"])
            rows.append({"contrast": CONTRAST_TITLES[contrast], "ratio": "top of scale / white matter",
                         **self._summary_row(wm, contrast)})
        return pd.DataFrame(rows)

    def wasserstein(self) -> pd.DataFrame:
        """Per contrast and region: the Wasserstein distance between the pooled phantom intensities (true classes;
        the mixture's) and the pooled real ones, and between the real cases (mean over pairs)."""
        from scipy.stats import wasserstein_distance

        s = self.samples
        rows = []
        for contrast in [c for c in self._contrasts() if c in set(s[s.source == "real"].contrast)]:
            for region in REGIONS:
                pick = (s.contrast == contrast) & (s.tissue == region)
                real = s[pick & (s.source == "real")]
                if real.empty:
                    continue
                row = {"contrast": CONTRAST_TITLES[contrast], "tissue": REGION_TITLES[region], "n_real": len(real)}
                for key, method in (("phantom_truth", "truth"), ("phantom_mixture", "mixture")):
                    ph = s[pick & (s.source == "phantom") & (s.method == method)]["intensity"]
                    row[key] = float(wasserstein_distance(ph, real["intensity"])) if len(ph) else np.nan
                    if method == "truth":
                        row["n_phantom"] = len(ph)
                cases = [g["intensity"].to_numpy() for _, g in real.groupby("case_id")]
                pairs = [wasserstein_distance(a, b) for a, b in combinations(cases, 2)]
                row["real_vs_real"] = float(np.mean(pairs)) if pairs else np.nan
                rows.append(row)
        cols = ["contrast", "tissue", "phantom_truth", "phantom_mixture", "real_vs_real", "n_phantom", "n_real"]
        return pd.DataFrame(rows, columns=cols)

    def tumours(self) -> pd.DataFrame:
        """One row per subject: whole-tumour volume (ml), the share of each compartment, connected components,
        surface-to-volume ratio (per mm) and the distance to the ventricles (mm)."""
        rows = []
        for s in self.subjects:
            whole = s.label > 0
            shape = tumour_shape(whole, s.spacing_mm, structure=s.ventricles)
            row = {"source": s.source, "case_id": s.case_id, "grade": s.grade or "",
                   "whole_tumour_ml": shape["volume_ml"]}
            n_whole = max(int(whole.sum()), 1)
            for name in ("necrosis", "nonenhancing", "enhancing", "oedema"):
                values = [v for v, c in s.compartments.items() if c == name]
                row[f"share_{name}"] = float(np.isin(s.label, values).sum()) / n_whole if values else 0.0
            row.update({"n_components": shape["n_components"], "largest_component_share": shape["largest_component_share"],
                        "surface_to_volume_per_mm": shape["surface_to_volume_per_mm"], "sphericity": shape["sphericity"],
                        "distance_to_ventricles_mm": shape["distance_mm"],
                        "ventricles_ml": float(s.ventricles.sum()) * s.spacing_mm ** 3 / 1000.0})
            rows.append(row)
        return pd.DataFrame(rows)

    def tumour_summary(self) -> pd.DataFrame:
        """Per statistic: the mean and range over the phantom subjects and over the real cases."""
        t = self.tumours()
        rows = []
        for col in [c for c in t.columns if c not in ("source", "case_id", "grade")]:
            row = {"statistic": col}
            for source in ("phantom", "real"):
                v = t[t.source == source][col].astype(float)
                row[f"{source}_mean"] = float(v.mean()) if len(v) else np.nan
                row[f"{source}_min"] = float(v.min()) if len(v) else np.nan
                row[f"{source}_max"] = float(v.max()) if len(v) else np.nan
            rows.append(row)
        return pd.DataFrame(rows)


def _sample(rng: np.random.Generator, mask: np.ndarray, k: int) -> np.ndarray:
    idx = np.flatnonzero(mask)
    return idx if idx.size <= k else np.sort(rng.choice(idx, size=k, replace=False))


def region_masks(subject: ComparedSubject, method: str) -> dict[str, np.ndarray]:
    """Each region of REGIONS in a subject's tissue map of `method`: the tissues, and the periventricular rim
    (normal grey or white matter within PERIVENTRICULAR_MM of the ventricles)."""
    tmap = subject.tissues[method]
    masks = {t: tmap == tissue_code(t) for t in TISSUES}
    rim = np.zeros(tmap.shape, bool)
    if subject.ventricles.any():
        from scipy import ndimage as ndi

        near = ndi.distance_transform_edt(~subject.ventricles, sampling=subject.spacing_mm) <= PERIVENTRICULAR_MM
        rim = near & (masks["gm"] | masks["wm"])
    masks["periventricular"] = rim
    return masks


def _intensity_tables(subjects: Sequence[ComparedSubject], seed: int, per_tissue: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    samples, medians = [], []
    for s in subjects:
        for method in s.tissues:
            for region, mask in region_masks(s, method).items():
                if not mask.any():
                    continue
                pick = _sample(rng, mask, per_tissue)
                for contrast, image in s.images.items():
                    key = {"source": s.source, "method": method, "case_id": s.case_id, "contrast": contrast,
                           "tissue": region}
                    values = image[mask]
                    medians.append({**key, "median": float(np.median(values)), "at_top": float(np.mean(values >= 1.0)),
                                    "n_voxels": int(mask.sum())})
                    samples.append(pd.DataFrame({**key, "intensity": image.reshape(-1)[pick].astype(np.float32)}))
    return pd.concat(samples, ignore_index=True), pd.DataFrame(medians)


def mixture_checks(subjects: Sequence[ComparedSubject], candidates: Sequence[Sequence[str]] = MIXTURE_CANDIDATES,
                   seed: int = 0) -> pd.DataFrame:
    """Which contrasts separate CSF, GM and WM best: for each candidate feature set, the Bhattacharyya distance
    between the mixture's GM and WM (and CSF and GM) classes per subject and, on the phantom, the share of its
    normal voxels the mixture puts in their true class."""
    rows = []
    for s in subjects:
        normal = s.brain & (s.label == 0)
        for contrasts in candidates:
            if any(c not in s.images for c in contrasts):
                continue
            mixture, classify = fit_normal_tissue(s.images, normal, contrasts, seed)
            sep = class_separations(mixture)
            # the classes in mixture order (dark to bright on the first contrast) -> CSF, GM, WM positions
            rank = {t: r for r, t in enumerate(DARK_TO_BRIGHT[contrasts[0]])}
            pair = lambda a, b: sep[tuple(sorted((rank[a], rank[b])))]  # noqa: E731
            row = {"source": s.source, "case_id": s.case_id, "contrasts": "+".join(CONTRAST_TITLES[c] for c in contrasts),
                   "separation_gm_wm": pair("gm", "wm"), "separation_csf_gm": pair("csf", "gm"),
                   "agreement_with_truth": np.nan}
            if "truth" in s.tissues:
                truth = s.tissues["truth"][normal].astype(int) - 1
                row["agreement_with_truth"] = float(np.mean(classify(normal) == truth))
            rows.append(row)
    return pd.DataFrame(rows)


def compare_phantom_to_real(real_root: str | os.PathLike, *, preprocess: PreprocessConfig,
                            real_layout: Mapping[str, object] | None = None, n_phantom: int = 4, phantom_seed: int = 0,
                            phantom_voxel_size: float = 1.0, phantom_n: int | None = None,
                            phantom_folder: str | os.PathLike | None = None,
                            mixture_contrasts: Sequence[str] = MIXTURE_CONTRASTS, seed: int = 0,
                            samples_per_tissue: int = SAMPLES_PER_TISSUE,
                            log: Callable[[str], None] | None = print) -> Comparison:
    """Prepare every labelled real case of `real_root` and the first `n_phantom` phantom subjects (of
    `phantom_folder`, else made in memory with the seed, voxel size and size of the profile's phantom), with
    one preprocessing; sample their intensities per tissue; check the mixture's choice of contrasts."""
    from segan_lib.data.dataset import open_dataset
    from segan_lib.data.layouts.registry import resolve_layout

    say = log or (lambda _: None)
    real_root = Path(real_root)
    ds = open_dataset(real_root, layout=resolve_layout(real_root, None, real_layout or None), require_label=False)
    cases = [c for c in ds if c.has_label]
    if not cases:
        raise DataError("no case with a label: the comparison needs the tumour compartments", path=real_root)
    subjects = []
    for case in cases:
        say(f"phantom vs real: real case {case.case_id}")
        subjects.append(prepare_real_case(case, preprocess, mixture_contrasts, seed))
    if int(n_phantom) < 1:
        raise DataError(f"n_phantom must be at least 1, got {n_phantom}")
    for subject, p_seed, index, voxel in phantom_subjects(n_phantom, phantom_seed, phantom_voxel_size, phantom_n,
                                                          phantom_folder):
        say(f"phantom vs real: phantom subject {subject.case_id} ({subject.grade}, {voxel:g} mm)")
        subjects.append(prepare_phantom_subject(subject, p_seed, index, voxel, preprocess, mixture_contrasts, seed))
    samples, medians = _intensity_tables(subjects, seed, samples_per_tissue)
    comparison = Comparison(subjects, samples, medians, preprocess, tuple(mixture_contrasts), real_root)
    comparison.mixture_checks = mixture_checks(subjects, seed=seed)
    return comparison


# ---------------------------------------------------------------- figures
def histograms_figure(comparison: Comparison, bins: int = 50) -> Figure:
    """One panel per contrast (rows) and tissue (columns): the phantom's intensities (true classes, filled; the
    mixture's, dashed) over the real ones (red), densities on [0, 1]."""
    s = comparison.samples
    contrasts = [c for c in CONTRASTS if c in set(s.contrast)]
    contrasts = [c for c in ("flair", "t1c") if c in contrasts] + [c for c in contrasts if c not in ("flair", "t1c")]
    tissues = [t for t in REGIONS if t in set(s.tissue)]
    fig = Figure(figsize=(2.3 * len(tissues), 1.9 * len(contrasts)), layout="constrained")
    axes = fig.subplots(len(contrasts), len(tissues), squeeze=False, sharex=True)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for r, contrast in enumerate(contrasts):
        for c, tissue in enumerate(tissues):
            ax = axes[r, c]
            pick = s[(s.contrast == contrast) & (s.tissue == tissue)]
            for source, method, style in (("phantom", "truth", dict(histtype="stepfilled", alpha=0.35)),
                                          ("phantom", "mixture", dict(histtype="step", linestyle="--")),
                                          ("real", "mixture", dict(histtype="step", linewidth=1.5))):
                v = pick[(pick.source == source) & (pick.method == method)]["intensity"]
                if len(v):
                    label = source if source == "real" else f"phantom ({method})"
                    ax.hist(v, bins=edges, density=True, color=SOURCE_COLOURS[source], label=label, **style)
            ax.set_yticks([])
            if r == 0:
                ax.set_title(REGION_TITLES[tissue], fontsize=9)
            if c == 0:
                ax.set_ylabel(CONTRAST_TITLES[contrast])
            if r == len(contrasts) - 1:
                ax.set_xlabel("intensity", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=3, fontsize=8)
    return fig


def slices_figure(comparison: Comparison, real_case: str | None = None, phantom_case: str | None = None) -> Figure:
    """A real case and a phantom subject side by side: FLAIR and T1c at the axial slice with the most tumour,
    the whole tumour outlined, and the tissue map (the mixture's on the real case, the truth on the phantom)
    with the ventricles outlined."""
    pick = {"real": real_case, "phantom": phantom_case}
    rows = []
    for source in ("real", "phantom"):
        found = [s for s in comparison.of(source) if pick[source] in (None, s.case_id)]
        if not found:
            raise DataError(f"no {source} subject {pick[source] or ''} in the comparison".replace("  ", " "))
        rows.append(found[0])
    fig = Figure(figsize=(9.6, 3.4 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), 3, squeeze=False)
    cmap = ListedColormap(["black"] + [TISSUE_COLOURS[t] for t in TISSUES])
    for r, s in enumerate(rows):
        tumour = s.label > 0
        for c, contrast in enumerate(("flair", "t1c")):
            plot_slice({contrast: s.images[contrast]}, truth=tumour, alpha=0.0, ax=axes[r, c],
                       colours={"truth": "#00e676"}, window=(0.0, 1.0),
                       title=f"{s.source} {s.case_id}: {CONTRAST_TITLES[contrast]}")
        k = int(np.argmax(tumour.sum(axis=(0, 1)))) if tumour.any() else tumour.shape[2] // 2
        method = "truth" if "truth" in s.tissues else "mixture"
        ax = axes[r, 2]
        ax.imshow(display_slice(s.tissues[method], "axial", k), cmap=cmap, vmin=-0.5, vmax=len(TISSUES) + 0.5,
                  interpolation="nearest")
        vent = display_slice(s.ventricles, "axial", k)
        if vent.any():
            ax.contour(vent.astype(float), levels=[0.5], colors=["#00e5ff"], linewidths=1.0)
        ax.set_title(f"tissues ({method}), ventricles outlined", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=TISSUE_COLOURS[t], label=TISSUE_TITLES[t]) for t in TISSUES]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(TISSUES), fontsize=7)
    return fig


# ---------------------------------------------------------------- notes and writing
def notes(comparison: Comparison) -> dict[str, str]:
    """The note written under each table and figure."""
    p = comparison.preprocess
    n_real, n_ph = len(comparison.of("real")), len(comparison.of("phantom"))
    prep = (f"Both sides preprocessed alike: {p.spacing_mm:g} mm, crop {'x'.join(map(str, p.crop_shape))}, clip at "
            f"percentiles {p.percentiles[0]:g}/{p.percentiles[1]:g} of the {p.percentile_region}, scaled to [0, 1]. "
            f"{n_real} real case(s) of {comparison.real_root.name}, {n_ph} phantom subject(s).")
    mix = ("Real normal tissue: a 3-class Gaussian mixture (seeded EM) of the non-tumour brain on "
           f"{'+'.join(CONTRAST_TITLES[c] for c in comparison.mixture_contrasts)}, voxels at the clip limits left out "
           "of the fit; phantom: its true classes (truth) and the same mixture (mixture). Tumour compartments from "
           "the labels (phantom label 1: necrosis in HGG, non-enhancing core in LGG).")
    return {
        "contrast_ratios": f"Median intensity of the tissue / median of white matter, per subject; mean and range over "
                           f"subjects; *_median: the median itself on the [0, 1] scale, *_at_top: the share of the "
                           f"tissue's voxels at the upper clip (1), where differences are lost (mean over subjects). "
                           f"Periventricular rim: grey or white matter within {PERIVENTRICULAR_MM:g} mm of the "
                           f"ventricles. The real cases have no T1 or T2 (phantom columns only there). {prep} {mix}",
        "conspicuity": f"Ratios of median intensities between regions, per subject; mean and range over subjects. "
                       f"'top of scale / white matter' = 1 / median WM: how far above white matter the upper clip "
                       f"leaves room (an enhancing rim cannot be brighter than that). {prep} {mix}",
        "wasserstein": f"Wasserstein (earth mover's) distance between the pooled phantom and real intensities of each "
                       f"tissue (up to {SAMPLES_PER_TISSUE} seeded samples per subject and tissue), on the [0, 1] scale "
                       f"after preprocessing; real_vs_real: between the real cases themselves (mean over pairs), the "
                       f"spread of real scans. {prep} {mix}",
        "tumours": "Per subject, on the preprocessed grid: whole-tumour volume (ml), share of each compartment in the "
                   "whole tumour, 26-connected components, surface (voxel faces) / volume per mm, sphericity (pi^(1/3) (6V)^(2/3) / "
                   "surface: shape apart from size; a voxelised sphere gives about 0.66), the smallest "
                   "distance between voxel centres of tumour and ventricles (0: touching or overlapping) and the "
                   "ventricles' volume. Ventricles: the largest 6-connected CSF component at least 12 mm inside the "
                   f"brain that comes within 30 mm of its centre (real: the mixture's CSF; phantom: its true CSF). {prep}",
        "tumour_summary": f"Mean and range over the phantom subjects and the real cases of each per-subject statistic "
                          f"(phantom_vs_real_tumours). {prep}",
        "mixture": "Which contrasts separate normal tissue: per subject and feature set, the Bhattacharyya distance "
                   "between the mixture's grey- and white-matter classes (and CSF and grey matter; larger = better "
                   "separated) and, on the phantom, the share of normal voxels put in their true class. The comparison "
                   f"uses {'+'.join(CONTRAST_TITLES[c] for c in comparison.mixture_contrasts)}. {prep}",
        "histograms": f"Intensity densities per contrast (rows) and tissue (columns): phantom with true classes "
                      f"(filled), with the mixture's (dashed), real (red). {prep}",
        "slices": "A real case and a phantom subject at the axial slice with the most tumour (whole tumour outlined), "
                  "with their tissue maps and ventricles.",
    }


TABLE_TITLES = {"contrast_ratios": "Contrast ratios to white matter, phantom against real",
                "conspicuity": "How the tumour compartments stand out, phantom against real",
                "wasserstein": "Wasserstein distance per tissue, phantom against real",
                "tumours": "Tumour statistics per subject", "tumour_summary": "Tumour statistics, phantom against real",
                "mixture": "Normal-tissue mixture: separation per contrast"}


def comparison_tables(comparison: Comparison) -> dict[str, pd.DataFrame]:
    return {"contrast_ratios": comparison.contrast_ratios(), "conspicuity": comparison.conspicuity(),
            "wasserstein": comparison.wasserstein(),
            "tumours": comparison.tumours(), "tumour_summary": comparison.tumour_summary(),
            "mixture": comparison.mixture_checks}


def write_comparison(comparison: Comparison, out_dir: str | os.PathLike, digits: int = 3) -> list[Path]:
    """Every table (CSV and Markdown, a note under each) and both figures (PNG and PDF) as OUTPUT_NAMES."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    note = notes(comparison)
    written = []
    for name, table in comparison_tables(comparison).items():
        written += write_table(table.round(digits), out / f"phantom_vs_real_{name}", TABLE_TITLES[name], note[name])
    written += save_figure(histograms_figure(comparison), out / "phantom_vs_real_histograms")
    written += save_figure(slices_figure(comparison), out / "phantom_vs_real_slices")
    return written
