"""Tiny synthetic data sets in every BraTS layout, for tests.

Each `make_*_tree(root, ...)` writes a tree under `root` and returns
`dict[case_id, WrittenCase]` (sorted by case id) with exactly what was written:
the arrays in the project's (i, j, k) order, the expected voxel -> RAS affine,
the grade and the file of each volume. Volumes are small (12x10x8 by default)
with a seeded random background and a brighter spherical tumour whose label
follows the layout's scheme (necrotic/enhancing core inside oedema).

The low-level writers (`write_nifti`, `write_mha`) and `tumour_label` are
exported for tests that build broken inputs.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHAPE = (12, 10, 8)

# release's label values: (oedema, core, enhancing)
_LABELS = {
    "brats2015": (2, 1, 4),
    "brats2018": (2, 1, 4),
    "brats2023": (2, 1, 3),
    "msd": (1, 2, 3),
}
# MSD channel order and constant offset per channel (to tell them apart)
MSD_CHANNELS = ("flair", "t1", "t1c", "t2")
MSD_OFFSETS = {"flair": 1000.0, "t1": 2000.0, "t1c": 3000.0, "t2": 4000.0}
CONTRAST_OFFSETS = {"t1": 100.0, "t1c": 200.0, "t2": 300.0, "flair": 400.0}


@dataclass
class WrittenCase:
    case_id: str
    grade: str | None
    images: dict[str, np.ndarray]  # contrast -> float32 (i, j, k)
    label: np.ndarray | None  # int16 (i, j, k)
    affine: np.ndarray  # expected voxel -> RAS+ affine
    files: dict[str, Path] = field(default_factory=dict)  # contrast / "label" -> file


def tumour_label(shape=SHAPE, layout: str = "brats2018", center=None, radius: float = 3.0) -> np.ndarray:
    """A sphere: oedema shell, enhancing ring, core at the centre (int16, (i, j, k))."""
    oedema, core, enh = _LABELS[layout]
    center = np.asarray(center if center is not None else [s / 2 - 0.5 for s in shape], dtype=float)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    r = np.sqrt(((grid - center) ** 2).sum(-1))
    label = np.zeros(shape, np.int16)
    label[r <= radius] = oedema
    label[r <= radius * 0.66] = enh
    label[r <= radius * 0.34] = core
    return label


def synthetic_image(label: np.ndarray, rng: np.random.Generator, offset: float = 100.0) -> np.ndarray:
    """Seeded random background plus a brighter tumour, float32, never constant."""
    img = offset + rng.normal(0.0, 10.0, label.shape) + 50.0 * (label > 0)
    return img.astype(np.float32)


def nifti_affine(shape=SHAPE, spacing=(1.0, 1.0, 1.0), offset=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A BraTS-like affine (LPS-stored axes -> RAS: first two axes flipped)."""
    aff = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    aff[:3, 3] = [offset[0], offset[1] + (shape[1] - 1) * spacing[1], offset[2]]
    return aff


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, dtype=None) -> Path:
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data if dtype is None else data.astype(dtype))
    img = nib.Nifti1Image(arr, affine)
    img.set_data_dtype(arr.dtype)
    nib.save(img, str(path))
    return path


def write_mha(path: Path, data_xyz: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
              direction=None, dtype=None) -> Path:
    """Write an (x, y, z) array as MetaImage; returns the path."""
    import SimpleITK as sitk

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data_xyz if dtype is None else data_xyz.astype(dtype))
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        img.SetDirection(tuple(float(d) for d in np.asarray(direction).ravel()))
    sitk.WriteImage(img, str(path), True)
    return path


def itk_expected_affine(spacing, origin, direction=None) -> np.ndarray:
    """RAS affine of an ITK image (LPS origin/direction), computed independently."""
    d = np.eye(3) if direction is None else np.asarray(direction, float).reshape(3, 3)
    aff = np.eye(4)
    aff[:3, :3] = d * np.asarray(spacing, float)[None, :]
    aff[:3, 3] = origin
    aff[:2, :] *= -1
    return aff


def _grade_of(i: int) -> str:
    return "HGG" if i % 2 == 0 else "LGG"


def write_grades_csv(path: Path, grades: dict[str, str | None]) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "grade"])
        for cid, g in sorted(grades.items()):
            w.writerow([cid, g or ""])
    return path


# ----------------------------------------------------------------------------------------


def make_brats2015_tree(root, n_hgg: int = 2, n_lgg: int = 1, *, shape=SHAPE, seed: int = 0,
                        spacing=(1.0, 1.0, 1.0), origin=(0.0, -239.0, 0.0), with_label: bool = True,
                        label_dtype=np.uint8) -> dict[str, WrittenCase]:
    """{HGG,LGG}/<case>/VSD.Brain.XX.O.MR_<contrast>.<id>/VSD.Brain.XX.O.MR_<contrast>.<id>.mha"""
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, WrittenCase] = {}
    vsd_id = 50000
    names = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "Flair"}
    cases = [("HGG", f"brats_2013_pat{i + 1:04d}_1") for i in range(n_hgg)]
    cases += [("LGG", f"brats_tcia_pat{100 + i:03d}_0001") for i in range(n_lgg)]
    for grade, cid in cases:
        folder = root / grade / cid
        label = tumour_label(shape, "brats2015")
        wc = WrittenCase(cid, grade, {}, label if with_label else None,
                         itk_expected_affine(spacing, origin))
        for contrast in ("flair", "t1", "t1c", "t2"):
            vsd_id += 1
            name = f"VSD.Brain.XX.O.MR_{names[contrast]}.{vsd_id}"
            img = synthetic_image(label, rng, CONTRAST_OFFSETS[contrast]).round().astype(np.int16)
            wc.images[contrast] = img.astype(np.float32)
            wc.files[contrast] = write_mha(folder / name / f"{name}.mha", img, spacing, origin)
        if with_label:
            vsd_id += 1
            name = f"VSD.Brain_3more.XX.O.OT.{vsd_id}"
            wc.files["label"] = write_mha(folder / name / f"{name}.mha", label, spacing, origin, dtype=label_dtype)
        out[cid] = wc
    return dict(sorted(out.items()))


def _make_folder_nifti(root, ids, sep, suffixes, layout, *, shape, seed, grades, grade_folders,
                       with_label, affine, label_dtype) -> dict[str, WrittenCase]:
    root = Path(root)
    rng = np.random.default_rng(seed)
    out: dict[str, WrittenCase] = {}
    for cid, grade in zip(ids, grades):
        folder = root / grade / cid if grade_folders and grade else root / cid
        label = tumour_label(shape, layout)
        wc = WrittenCase(cid, grade, {}, label if with_label else None, affine.copy())
        for contrast in ("t1", "t1c", "t2", "flair"):
            img = synthetic_image(label, rng, CONTRAST_OFFSETS[contrast])
            wc.images[contrast] = img
            wc.files[contrast] = write_nifti(folder / f"{cid}{sep}{suffixes[contrast]}.nii.gz", img, affine)
        if with_label:
            wc.files["label"] = write_nifti(folder / f"{cid}{sep}seg.nii.gz", label, affine, dtype=label_dtype)
        out[cid] = wc
    return dict(sorted(out.items()))


def make_brats2018_tree(root, n: int = 3, grades_csv: bool = True, grade_folders: bool = False, *,
                        shape=SHAPE, seed: int = 0, with_label: bool = True, label_dtype=np.uint8,
                        spacing=(1.0, 1.0, 1.0)) -> dict[str, WrittenCase]:
    """<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz (under HGG/ and LGG/ with grade_folders);
    grades alternate HGG, LGG, ...; with grades_csv they are also written to grades.csv.
    The expected grade is None when neither folders nor the CSV give it."""
    ids = [f"Brats18_TCIA{i // 10 + 1:02d}_{i:03d}_1" for i in range(n)]
    true_grades = [_grade_of(i) for i in range(n)]
    out = _make_folder_nifti(
        root, ids, "_", {"t1": "t1", "t1c": "t1ce", "t2": "t2", "flair": "flair"}, "brats2018",
        shape=shape, seed=seed, grades=true_grades, grade_folders=grade_folders, with_label=with_label,
        affine=nifti_affine(shape, spacing), label_dtype=label_dtype,
    )
    if grades_csv:
        write_grades_csv(Path(root) / "grades.csv", dict(zip(ids, true_grades)))
    elif not grade_folders:
        for wc in out.values():
            wc.grade = None
    return out


def make_brats2023_tree(root, n: int = 3, *, shape=SHAPE, seed: int = 0, with_label: bool = True,
                        label_dtype=np.uint8, grades_csv: bool = False) -> dict[str, WrittenCase]:
    """<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz; grade None unless grades_csv."""
    ids = [f"BraTS-GLI-{i:05d}-000" for i in range(n)]
    true_grades = [_grade_of(i) for i in range(n)]
    out = _make_folder_nifti(
        root, ids, "-", {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}, "brats2023",
        shape=shape, seed=seed, grades=[None] * n, grade_folders=False, with_label=with_label,
        affine=nifti_affine(shape), label_dtype=label_dtype,
    )
    if grades_csv:
        write_grades_csv(Path(root) / "grades.csv", dict(zip(ids, true_grades)))
        for wc, g in zip(out.values(), true_grades):
            wc.grade = g
    return out


def make_msd_tree(root, n: int = 3, *, shape=SHAPE, seed: int = 0, dataset_json: bool = True,
                  n_test: int = 0, image_dtype=np.float32) -> dict[str, WrittenCase]:
    """imagesTr/BRATS_NNN.nii.gz (4-D: FLAIR, T1w, T1gd, T2w; channel c has offset MSD_OFFSETS),
    labelsTr/BRATS_NNN.nii.gz, dataset.json; n_test more images in imagesTs/ (not returned)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    out: dict[str, WrittenCase] = {}
    for i in range(n + n_test):
        cid = f"BRATS_{i + 1:03d}"
        test = i >= n
        label = tumour_label(shape, "msd")
        chans = [synthetic_image(label, rng, MSD_OFFSETS[c]) for c in MSD_CHANNELS]
        data4 = np.stack(chans, axis=-1).astype(image_dtype)
        img_path = write_nifti(root / ("imagesTs" if test else "imagesTr") / f"{cid}.nii.gz", data4, affine)
        if test:
            continue
        lab_path = write_nifti(root / "labelsTr" / f"{cid}.nii.gz", label, affine, dtype=np.uint8)
        wc = WrittenCase(cid, None, {c: data4[..., k].astype(np.float32) for k, c in enumerate(MSD_CHANNELS)},
                         label, affine.copy())
        wc.files = {c: img_path for c in MSD_CHANNELS}
        wc.files["label"] = lab_path
        out[cid] = wc
    if dataset_json:
        meta = {
            "name": "BRATS",
            "tensorImageSize": "4D",
            "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"},
            "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"},
            "numTraining": n,
            "numTest": n_test,
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in out],
            "test": [f"./imagesTs/BRATS_{i + 1:03d}.nii.gz" for i in range(n, n + n_test)],
        }
        (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return dict(sorted(out.items()))
