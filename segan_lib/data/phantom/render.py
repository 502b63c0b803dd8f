"""Steps 4 and 5 of the phantom, contrasts and artefacts: the four int16 scans of a subject.

Tissue-specific intensities (`INTENSITIES`, jittered per subject) mixed by partial
volume, tumour compartments with soft edges and texture (`TEXTURE`), then partial-volume
blur, a smooth multiplicative bias field, Rician noise and a per-scan intensity scale.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from segan_lib.constants import CONTRASTS
from segan_lib.data.phantom.deformation import _Tissues
from segan_lib.data.phantom.tumours import _TumourMaps

#: tissue -> (T1, T1c, T2, FLAIR), relative to white matter on T1, before per-subject jitter.
#: "nonenhancing" is solid non-enhancing tumour: the low-grade core, and part of a high-grade one.
#: "necrosis" is a solid necrotic core; each subject's is mixed with fluid (NECROSIS_FLUID) by a drawn
#: share, from bright on FLAIR (two real BRATS cases: 1.6 x white matter) to a dark cyst (the cores
#: a phantom-trained model missed on real scans).
#: Calibrated against real BRATS FLAIR and T1c (notebooks/08_phantom_vs_real.ipynb): oedema on T1c
#: was 0.85 (as bright as white matter after preprocessing; real: 0.73 x), CSF 0.30 on T1/T1c and
#: 0.10 on FLAIR (real CSF is darker), enhancing 1.30 on T1c, necrosis 0.40 on T1c and 0.50 on FLAIR
#: (real: brighter), grey matter 0.75 on T1/T1c and 0.55 on FLAIR (brighter than real once the tissue
#: maps were sharpened); T1 and T2 follow the published descriptions of BraTS (oedema and necrosis
#: hypointense on T1, hyperintense on T2; contrast changes only what enhances).
INTENSITIES: dict[str, tuple[float, float, float, float]] = {
    "wm": (1.00, 1.00, 0.40, 0.45),
    "gm": (0.72, 0.72, 0.55, 0.51),
    "csf": (0.15, 0.15, 1.10, 0.05),
    "oedema": (0.68, 0.65, 0.85, 1.05),
    "enhancing": (0.65, 1.40, 0.70, 0.85),
    "necrosis": (0.45, 0.55, 0.85, 0.90),
    "nonenhancing": (0.60, 0.65, 0.95, 0.95),
}
#: a fluid-filled (cystic) necrotic core, CSF-like: dark on T1, T1c and FLAIR, bright on T2
NECROSIS_FLUID = (0.25, 0.25, 1.05, 0.15)
#: Beta(a, b) of the share of fluid in a subject's necrosis: mostly solid, sometimes a cyst
NECROSIS_FLUID_SHARE = (0.8, 2.0)
#: relative amplitude of the smooth texture inside each tumour compartment
TEXTURE = {"oedema": 0.06, "enhancing": 0.12, "necrosis": 0.10, "nonenhancing": 0.07}


def _jittered_intensities(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The intensity table with independent per-subject jitter (~6 %) on every entry, the necrosis mixed
    with fluid by a drawn share."""
    table = {tissue: np.array(v) * np.exp(rng.normal(0.0, 0.06, size=4)) for tissue, v in INTENSITIES.items()}
    fluid = rng.beta(*NECROSIS_FLUID_SHARE)
    table["necrosis"] = (1.0 - fluid) * table["necrosis"] + fluid * np.array(NECROSIS_FLUID)
    return table


def _bias_field(rng: np.random.Generator, shape: tuple[int, int, int], degree: int = 3) -> np.ndarray:
    """Smooth multiplicative bias over a box: exp of a random polynomial of the normalised position.

    sum_{p+q+r<=degree} c_pqr x^p y^q z^r, evaluated as one matrix product
    (x^p y^q over the (i, j) plane) @ (sum_r c_pqr z^r along k).
    """
    x, y, z = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape)
    pairs = [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]
    plane = np.stack([np.multiply.outer(x**p, y**q).ravel() for p, q in pairs], axis=1)
    along_k = np.zeros((len(pairs), shape[2]), np.float32)
    for row, (p, q) in enumerate(pairs):
        for r in range(degree + 1 - p - q):
            if p + q + r:
                along_k[row] += np.float32(rng.normal(0.0, 0.10 / (p + q + r))) * z**r
    return np.exp(plane @ along_k).reshape(shape)


def _render_contrasts(rng: np.random.Generator, tissues: _Tissues, tumours: _TumourMaps,
                      s: float) -> dict[str, np.ndarray]:
    """Four contrasts in the bbox (int16), background 0."""
    table = _jittered_intensities(rng)
    idx = np.flatnonzero(tissues.brain)

    def gather(a: np.ndarray) -> np.ndarray:
        return a.ravel()[idx]

    gm, wm, csf = gather(tissues.gm), gather(tissues.wm), gather(tissues.csf)
    oed, enh, core = gather(tumours.oedema), gather(tumours.enhancing), gather(tumours.core)
    necrotic, tex = gather(tumours.necrotic), gather(tumours.texture)
    healthy = 1.0 - (oed + enh + core)
    shape = tissues.brain.shape
    blur_sigma = 0.5 / s

    images = {}
    for c, name in enumerate(CONTRASTS):
        v = {t: np.float32(table[t][c]) for t in table}
        value = healthy * (wm * v["wm"] + gm * v["gm"] + csf * v["csf"])
        value += oed * (v["oedema"] * (1 + TEXTURE["oedema"] * tex))
        value += enh * (v["enhancing"] * (1 + TEXTURE["enhancing"] * tex))
        value += core * necrotic * (v["necrosis"] * (1 - TEXTURE["necrosis"] * tex))
        value += core * (1 - necrotic) * (v["nonenhancing"] * (1 - TEXTURE["nonenhancing"] * tex))
        if blur_sigma > 0.2:  # partial-volume blur of the acquisition
            vol = np.zeros(shape, np.float32)
            vol.ravel()[idx] = value
            value = gather(ndi.gaussian_filter(vol, blur_sigma, truncate=3.0))
        value *= gather(_bias_field(rng, shape))
        scale = np.float32(np.exp(rng.uniform(np.log(300.0), np.log(2500.0))))
        sigma = np.float32(rng.uniform(0.015, 0.035))
        n1 = rng.standard_normal(value.size, dtype=np.float32)
        n2 = rng.standard_normal(value.size, dtype=np.float32)
        value = np.sqrt((value + sigma * n1) ** 2 + (sigma * n2) ** 2) * scale  # Rician magnitude
        out = np.zeros(shape, np.int16)
        out.ravel()[idx] = np.clip(np.rint(value), 1, 32767).astype(np.int16)
        images[name] = out
    return images
