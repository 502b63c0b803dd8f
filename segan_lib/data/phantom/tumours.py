"""Step 3 of the phantom, tumours: one (sometimes two) lesions in a subject's white matter.

Each lesion is a union of displaced anisotropic blobs perturbed by smooth noise; the
oedema grows preferentially along white matter. Labels follow BraTS 2018-2021
(1 necrotic / non-enhancing core, 2 oedema, 4 enhancing), with soft weights for the
rendering (`_TumourMaps`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from segan_lib.data.phantom.deformation import _Tissues
from segan_lib.data.phantom.fields import _control_shape, _quantile_threshold, _resize, _sigmoid, _smooth_noise
from segan_lib.data.phantom.geometry import _rotation

LABEL_NECROTIC, LABEL_OEDEMA, LABEL_ENHANCING = 1, 2, 4
#: grade -> range (ml) of the whole tumour, drawn log-uniformly. High grade was (15, 150) until the
#: phantom was held against real BRATS: its tumours were half the real cases' volume (68 against 147 ml).
WHOLE_TUMOUR_ML = {"HGG": (30.0, 250.0), "LGG": (10.0, 100.0)}
#: grade -> (amplitude of the lobes, of the fine roughness) added to the blob field; high grade was
#: (0.25, 0.07), rougher than the real cases (surface to volume 0.35 against 0.22 per mm)
SHAPE_NOISE = {"HGG": (0.15, 0.05), "LGG": (0.4, 0.1)}
#: range of the share of a high-grade core's non-enhancing voxels that are necrotic; the rest is
#: solid non-enhancing tumour (BRATS 2015's label 3, merged into label 1 from BraTS 2017 on)
NECROTIC_SHARE = (0.2, 0.8)


@dataclass
class _TumourSpec:
    centre: np.ndarray  # bbox voxel index
    volume_ml: float  # whole tumour (labels 1, 2, 4)
    core_fraction: float  # (1 + 4) / whole
    enhancing_fraction: float  # 4 / (1 + 4)
    grade: str


@dataclass
class _TumourMaps:
    """Tumour compartments in the bbox: hard label and soft weights (sum <= 1)."""

    label: np.ndarray  # uint8
    oedema: np.ndarray  # float32 weights
    enhancing: np.ndarray
    core: np.ndarray  # the non-enhancing part of the core (label 1)
    necrotic: np.ndarray  # share of `core` that is necrosis; the rest is solid non-enhancing tumour (0 in LGG)
    texture: np.ndarray  # smooth unit-std noise inside the tumour boxes


def _draw_tumour_specs(rng: np.random.Generator, tissues: _Tissues, grade: str, s: float) -> list[_TumourSpec]:
    """One tumour, sometimes two, placed in deep cerebral white matter of this subject."""
    candidates = np.argwhere(tissues.allowed)
    if len(candidates) == 0:  # cannot happen with the MNI anatomy; keep a sane fallback
        candidates = np.argwhere(tissues.brain[:: tissues.allowed_step, :: tissues.allowed_step, :: tissues.allowed_step])
    n_tumours = 2 if rng.random() < 0.15 else 1
    low, high = WHOLE_TUMOUR_ML[grade]
    total_ml = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    volumes = [total_ml] if n_tumours == 1 else [total_ml * 0.7, total_ml * 0.3]
    specs: list[_TumourSpec] = []
    for volume in volumes:
        for _ in range(50):
            c = candidates[rng.integers(len(candidates))] * tissues.allowed_step
            c = c + rng.integers(0, tissues.allowed_step, size=3)
            radius_vox = (3 * volume * 1000.0 / (4 * np.pi)) ** (1 / 3) / s
            if all(np.linalg.norm(c - o.centre) > 1.5 * radius_vox + 20.0 / s for o in specs):
                break
        if grade == "HGG":
            core = rng.uniform(0.25, 0.5)
            enh = rng.uniform(0.4, 0.75)
        else:
            core = rng.uniform(0.45, 0.8)
            enh = rng.uniform(0.02, 0.08) if rng.random() < 0.35 else 0.0
        specs.append(_TumourSpec(c.astype(float), volume, core, enh, grade))
    return specs


def _blob_field(rng: np.random.Generator, offsets_mm: list[np.ndarray], radius_mm: float) -> tuple[np.ndarray, float]:
    """Union of 2-5 displaced, rotated, anisotropic blobs: max_k (1 - |A_k (x - c_k)|), x in mm."""
    n_blobs = int(rng.integers(2, 6))
    field = None
    radii = []
    for k in range(n_blobs):
        if k == 0:
            centre = np.zeros(3)
        else:
            direction = rng.normal(size=3)
            centre = direction / np.linalg.norm(direction) * rng.uniform(0.3, 0.8) * radius_mm
        r = radius_mm * rng.uniform(0.45, 0.85) * rng.uniform(0.7, 1.3, size=3)
        radii.append(float(np.mean(r)))
        rot = _rotation(rng.uniform(-np.pi, np.pi, size=3))
        d2 = None
        for a in range(3):
            u = sum(rot[a, b] * (offsets_mm[b] - centre[b]) for b in range(3)) / r[a]
            d2 = u * u if d2 is None else d2 + u * u
        blob = 1.0 - np.sqrt(d2)
        field = blob if field is None else np.maximum(field, blob)
    return field.astype(np.float32), float(np.mean(radii))


def _tumour_fields(rng: np.random.Generator, spec: _TumourSpec, lo: np.ndarray, hi: np.ndarray,
                   shape: tuple[int, ...], radius_core: float, s: float):
    """The smooth fields of one tumour in its sub-box [lo, hi): shape, oedema and core noise, texture.

    Returns (g, oedema_noise, core_noise, texture, mean blob radius in mm); g is the blob
    field with lobes and roughness, whose top levels make the core and the whole tumour.
    """
    # smooth fields on a working grid of >= 2 mm, then linear interpolation to the voxels
    h = max(2.0, s)
    work = _control_shape(shape, h / s)
    offsets = [((np.linspace(lo[a], hi[a] - 1, work[a]) - spec.centre[a]) * s).reshape(
        [-1 if b == a else 1 for b in range(3)]) for a in range(3)]
    blobs, r_mean = _blob_field(rng, offsets, radius_core)
    lobes, rough = SHAPE_NOISE[spec.grade]  # low grade: less round, diffuse
    g = blobs + lobes * _smooth_noise(rng, work, 0.6 * radius_core / h) + rough * _smooth_noise(rng, work, 5.0 / h)
    oedema_noise = _smooth_noise(rng, work, 7.0 / h)
    core_noise = _smooth_noise(rng, work, max(0.5 * radius_core, 4.0) / h)
    texture = _smooth_noise(rng, work, 3.0 / h)
    g, oedema_noise, core_noise, texture = (_resize(f, shape, order=1) for f in (g, oedema_noise, core_noise, texture))
    return g, oedema_noise, core_noise, texture, r_mean


def _enhancing_weight(spec: _TumourSpec, g: np.ndarray, core_noise: np.ndarray, core: np.ndarray, width: float,
                      radius_core: float) -> np.ndarray:
    """Soft weight of enhancement inside the core: about `spec.enhancing_fraction` of its voxels."""
    if spec.grade == "HGG":  # the outer part of the core enhances, its centre is necrotic
        e = -(g + 0.3 * core_noise)
        e_width = width
    else:  # a patchy spot of enhancement, if any
        e = core_noise
        e_width = 0.8 / max(0.5 * radius_core, 4.0)
    if spec.enhancing_fraction > 0 and core.any():
        t_enh = _quantile_threshold(e[core], int(round(spec.enhancing_fraction * core.sum())))
        return _sigmoid((e - t_enh) / e_width)
    return np.zeros_like(g)


def _make_tumour(rng: np.random.Generator, spec: _TumourSpec, tissues: _Tissues, s: float):
    """Label and soft weights of one tumour inside its own sub-box of the bbox."""
    box_shape = tissues.brain.shape
    whole_vox = spec.volume_ml * 1000.0 / s**3
    core_vox = whole_vox * spec.core_fraction
    radius_whole = (3 * spec.volume_ml * 1000.0 / (4 * np.pi)) ** (1 / 3)
    radius_core = radius_whole * spec.core_fraction ** (1 / 3)
    half = (1.9 * radius_whole + 10.0) / s
    lo = np.maximum(np.floor(spec.centre - half), 0).astype(int)
    hi = np.minimum(np.ceil(spec.centre + half) + 1, box_shape).astype(int)
    sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    shape = tuple(int(b - a) for a, b in zip(lo, hi))

    g, oedema_noise, core_noise, texture, r_mean = _tumour_fields(rng, spec, lo, hi, shape, radius_core, s)

    brain = tissues.brain[sub]
    wm, csf = tissues.wm[sub], tissues.csf[sub]
    width = 0.8 / r_mean  # soft edge of ~1 mm in field units

    # core = top of the blob field; oedema = a lower level of it, extended along white matter
    t_core = _quantile_threshold(g[brain], int(round(core_vox)))
    h_field = g + 0.55 * (wm - 0.5) - 0.6 * csf + 0.12 * oedema_noise
    t_whole = _quantile_threshold(h_field[brain], int(round(whole_vox)))
    s_core = _sigmoid((g - t_core) / width) * brain
    s_whole = np.maximum(_sigmoid((h_field - t_whole) / width) * brain, s_core)
    core = s_core > 0.5
    s_enh = _enhancing_weight(spec, g, core_noise, core, width, radius_core)

    # oedema islands not connected to the core are dropped (with their soft edge)
    components, _ = ndi.label(s_whole > 0.5)
    kept = np.isin(components, np.unique(components[core & (components > 0)]))
    s_oedema = (s_whole - s_core) * ndi.binary_dilation(kept)

    label = np.where(kept, LABEL_OEDEMA, 0).astype(np.uint8)
    label[core & (s_enh > 0.5)] = LABEL_ENHANCING
    label[core & (s_enh <= 0.5)] = LABEL_NECROTIC
    weights = {"enhancing": s_core * s_enh, "core": s_core * (1.0 - s_enh), "oedema": s_oedema,
               "necrotic": _necrotic_share(rng, spec, g, core_noise, core & (s_enh <= 0.5), width)}
    return sub, label, weights, texture


def _necrotic_share(rng: np.random.Generator, spec: _TumourSpec, g: np.ndarray, core_noise: np.ndarray,
                    non_enhancing: np.ndarray, width: float) -> np.ndarray:
    """Soft share of necrosis in the non-enhancing core: in high grade, its centre-most part (patchy, by the
    core noise) holding a drawn share of its voxels, the rest solid tumour; none in low grade."""
    if spec.grade != "HGG" or not non_enhancing.any():
        return np.zeros_like(g)
    n = g - 0.4 * core_noise
    share = rng.uniform(*NECROTIC_SHARE)
    t_nec = _quantile_threshold(n[non_enhancing], int(round(share * non_enhancing.sum())))
    return _sigmoid((n - t_nec) / width)


def _make_tumours(rng: np.random.Generator, tissues: _Tissues, grade: str, s: float) -> _TumourMaps:
    shape = tissues.brain.shape
    maps = _TumourMaps(np.zeros(shape, np.uint8), *(np.zeros(shape, np.float32) for _ in range(5)))
    rank = np.array([0, 2, 1, 0, 3], dtype=np.uint8)  # priority of labels 0, 1, 2, -, 4
    for spec in _draw_tumour_specs(rng, tissues, grade, s):
        sub, label, weights, texture = _make_tumour(rng, spec, tissues, s)
        old = maps.label[sub]
        maps.label[sub] = np.where(rank[label] > rank[old], label, old)
        for name in ("oedema", "enhancing", "core"):
            np.maximum(getattr(maps, name)[sub], weights[name], out=getattr(maps, name)[sub])
        inside = label > 0
        maps.texture[sub][inside] = texture[inside]
        maps.necrotic[sub][inside] = weights["necrotic"][inside]
    total = maps.oedema + maps.enhancing + maps.core
    over = total > 1.0
    for name in ("oedema", "enhancing", "core"):
        getattr(maps, name)[over] /= total[over]
    return maps
