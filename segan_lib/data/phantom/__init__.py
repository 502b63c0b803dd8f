"""The embedded BraTS-like synthetic data set ("phantom").

No BraTS copy can be downloaded in every setting, so the project ships a
generator of a BraTS-like data set built from real anatomy: the MNI152 ICBM
2009a (symmetric) T1 template and its grey- and white-matter probability maps,
which the nilearn package carries inside its wheel (no download at run time).

One synthetic subject is made in five steps, each in a module of this package:

1. anatomy: the skull-stripped template brain (mask = template > 0), CSF =
   brain - GM - WM, resampled once into the BraTS grid (240x240x155 at 1 mm,
   k axial, brain centred) at the requested voxel size (cached);
2. deformation: a random similarity transform (small rotation, scaling) plus a
   smooth low-frequency displacement field of a few mm, applied once to the
   tissue probability maps (partial volumes are kept, not hard labels);
3. tumours: one (sometimes two) lesions of irregular shape, a union of
   displaced anisotropic blobs perturbed by smooth noise; the oedema grows
   preferentially along white matter; compartments use the BraTS 2018-2021
   labels 1 (necrotic / non-enhancing core), 2 (oedema), 4 (enhancing);
   high grade: necrosis inside an enhancing rim, large oedema; low grade: a
   large non-enhancing core, bright on T2/FLAIR, little or no enhancement;
4. contrasts: T1, T1c, T2, FLAIR from tissue-specific intensities (the table
   `INTENSITIES`, jittered per subject), mixed by partial volume, tumour
   compartments with soft edges and smooth texture;
5. artefacts: partial-volume blur, smooth multiplicative bias field, Rician
   noise, per-scan intensity scale; stored as int16 (labels uint8), background 0.

`generate_phantom` writes the BraTS 2018-2021 layout
`<out>/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`, `grades.csv` and
`phantom.json`; the same (seed, index, voxel size) gives the same bytes.

Modules: `geometry` (the grid), `fields` (smooth random fields), `anatomy` (1),
`deformation` (2), `tumours` (3), `render` (4 and 5), `subject` (one subject and the
grades), `writer` (files and the whole folder). This package re-exports the names
code elsewhere uses, so `from segan_lib.data.phantom import generate_phantom` and
`phantom.make_subject(...)` work as before; inside the library import from the modules.
"""
from __future__ import annotations

from segan_lib.constants import CONTRASTS  # noqa: F401  (re-exported: the phantom's contrasts)
from segan_lib.data.phantom.anatomy import _anatomy  # noqa: F401  (benchmarks/bench_phantom.py, tests)
from segan_lib.data.phantom.deformation import _deform_anatomy  # noqa: F401  (used by tests)
from segan_lib.data.phantom.geometry import BRATS_SHAPE, brats_affine, case_id_for, grid_shape
from segan_lib.data.phantom.render import INTENSITIES, TEXTURE
from segan_lib.data.phantom.subject import PhantomSubject, _subject_streams, make_subject, phantom_grades
from segan_lib.data.phantom.tumours import LABEL_ENHANCING, LABEL_NECROTIC, LABEL_OEDEMA
from segan_lib.data.phantom.writer import (
    FILE_SUFFIX, GENERATOR_VERSION, case_files, generate_phantom, phantom_parameters, write_subject,
)

__all__ = [
    "BRATS_SHAPE",
    "CONTRASTS",
    "FILE_SUFFIX",
    "GENERATOR_VERSION",
    "INTENSITIES",
    "LABEL_ENHANCING",
    "LABEL_NECROTIC",
    "LABEL_OEDEMA",
    "PhantomSubject",
    "TEXTURE",
    "brats_affine",
    "case_files",
    "case_id_for",
    "generate_phantom",
    "grid_shape",
    "make_subject",
    "phantom_grades",
    "phantom_parameters",
    "write_subject",
] + ["_anatomy", "_deform_anatomy", "_subject_streams"]  # private steps, for the benchmark and the tests
