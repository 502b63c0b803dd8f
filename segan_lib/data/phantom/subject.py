"""One synthetic subject of the phantom: the random streams, the five steps put together, the grades.

`make_subject` runs anatomy, deformation, tumours and rendering with independent random
streams per step, so the same (seed, index, voxel size) always gives the same subject;
`phantom_grades` draws which indices are low grade, in the paper's HGG/LGG proportion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segan_lib.data.phantom.anatomy import _anatomy
from segan_lib.data.phantom.deformation import _deform_anatomy
from segan_lib.data.phantom.geometry import _check_voxel_size, case_id_for
from segan_lib.data.phantom.render import _render_contrasts
from segan_lib.data.phantom.tumours import _make_tumours
from segan_lib.errors import ConfigError

#: the paper's BRATS 2015 training set: 220 high-grade and 54 low-grade subjects
N_HGG_PAPER, N_LGG_PAPER = 220, 54


@dataclass
class PhantomSubject:
    """One synthetic subject in the BraTS grid: four int16 contrasts, a uint8 label (0, 1, 2, 4)."""

    images: dict[str, np.ndarray]  # 't1', 't1c', 't2', 'flair' -> int16 3-D
    label: np.ndarray  # uint8 3-D, values in {0, 1, 2, 4}
    affine: np.ndarray  # 4x4 voxel -> RAS+ mm, shared by every file of the case
    grade: str  # 'HGG' or 'LGG'
    case_id: str


def _subject_streams(seed: int, index: int) -> list[np.random.Generator]:
    """Independent generators for deformation, tumours and contrasts of subject `index`."""
    if int(seed) < 0 or int(index) < 0:
        raise ConfigError(f"phantom seed and index must be >= 0, got seed={seed}, index={index}")
    root = np.random.SeedSequence(int(seed), spawn_key=(int(index),))
    return [np.random.default_rng(child) for child in root.spawn(3)]


def make_subject(seed: int, index: int, grade: str, voxel_size: float = 1.0) -> PhantomSubject:
    """Synthetic subject `index` of the phantom with `seed`, generated directly at `voxel_size` mm."""
    if grade not in ("HGG", "LGG"):
        raise ConfigError(f"phantom grade must be 'HGG' or 'LGG', got {grade!r}")
    anat = _anatomy(_check_voxel_size(voxel_size))
    rng_deform, rng_tumour, rng_contrast = _subject_streams(seed, index)
    tissues = _deform_anatomy(rng_deform, anat)
    tumours = _make_tumours(rng_tumour, tissues, grade, anat.voxel_size)
    box_images = _render_contrasts(rng_contrast, tissues, tumours, anat.voxel_size)

    images = {}
    for name, box in box_images.items():
        full = np.zeros(anat.shape, np.int16)
        full[tissues.bbox] = box
        images[name] = full
    label = np.zeros(anat.shape, np.uint8)
    label[tissues.bbox] = tumours.label * tissues.brain
    return PhantomSubject(images, label, anat.affine.copy(), grade, case_id_for(index))


def phantom_grades(n: int, seed: int) -> list[str]:
    """Grade of each index: round(n * 54/274) LGG, the rest HGG, the LGG indices drawn with `seed`."""
    n = int(n)
    if n < 0:
        raise ConfigError(f"phantom n must be >= 0, got {n}")
    n_lgg = int(round(n * N_LGG_PAPER / (N_HGG_PAPER + N_LGG_PAPER)))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(2**31 - 1,)))
    lgg = set(rng.permutation(n)[:n_lgg].tolist())
    return ["LGG" if i in lgg else "HGG" for i in range(n)]
