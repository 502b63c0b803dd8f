"""Static slice figures of 3-D volumes with the ground truth and model predictions overlaid.

* `plot_slice` draws one slice of one contrast with the truth and any number of
  predictions as translucent fills with coloured outlines and a legend;
* `plot_slices` draws the same slice side by side, one panel per model (the
  truth is outlined in every panel);
* `best_slice`, `display_slice` and `figure_png` are the pieces they (and the
  `SliceViewer` widget of `segan_lib.reporting.viewers.widget`) share.

Everything is drawn on `matplotlib.figure.Figure` objects directly (no pyplot
state), so it works in loops, in tests, in papermill runs and headless (Agg).

Voxel order and orientation
---------------------------
Volumes are indexed (x, y, z) = (i, j, k) as the project stores them (the
BraTS / phantom NIfTI voxel order, affine diag(-1, -1, 1): i runs from the
patient's right to left, j from anterior to posterior, k from inferior to
superior; k is the axial axis). Slices are shown in the radiological
convention, the same way for every axis:

* axial (fixed k): the slice transposed, rows = j (anterior at the top),
  columns = i (the patient's right on the viewer's left);
* coronal (fixed j): `np.rot90` of the (i, k) slice, superior at the top,
  the patient's right on the left;
* sagittal (fixed i): `np.rot90` of the (j, k) slice, superior at the top,
  anterior on the left.

So an (X, Y, Z) volume gives images of shape (Y, X) axial, (Z, X) coronal and
(Z, Y) sagittal (`display_slice`).

In a notebook, a returned Figure is shown as an image once the inline backend
is active (`%matplotlib inline`, or any `import matplotlib.pyplot`); without
it IPython prints only "<Figure size ...>".
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch

#: display axis -> array axis of an (x, y, z) volume
AXES: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
#: outline / fill colour of the truth and of the predictions (cycled)
TRUTH_COLOUR = "#00e676"
PREDICTION_COLOURS: tuple[str, ...] = ("#ff3d00", "#ffd600", "#d500f9", "#2979ff", "#ff9100", "#00e5ff")
CONTRAST_TITLES: dict[str, str] = {"t1": "T1", "t1c": "T1c", "t1ce": "T1c", "t2": "T2", "flair": "FLAIR"}


# ----------------------------------------------------------------------------------------
# inputs


def _as_volumes(volumes) -> dict[str, np.ndarray]:
    """A dict contrast -> 3-D array (a single array becomes {'image': array}); all the same shape."""
    if isinstance(volumes, Mapping):
        out = {str(k): np.asarray(v) for k, v in volumes.items()}
    else:
        out = {"image": np.asarray(volumes)}
    if not out:
        raise ValueError("volumes is empty: give a 3-D array or a dict contrast -> 3-D array")
    shapes = {v.shape for v in out.values()}
    shape = next(iter(shapes))
    if len(shapes) > 1 or len(shape) != 3:
        raise ValueError(f"volumes must be 3-D arrays of one shape, got {[v.shape for v in out.values()]}")
    return out


def _as_predictions(predictions, shape) -> dict[str, np.ndarray]:
    """A dict name -> boolean 3-D mask from None, one array, a sequence of arrays or a dict."""
    if predictions is None:
        items = {}
    elif isinstance(predictions, Mapping):
        items = dict(predictions)
    elif isinstance(predictions, np.ndarray):
        items = {"prediction": predictions}
    elif isinstance(predictions, Sequence) and not isinstance(predictions, str):
        items = {f"prediction {n}": p for n, p in enumerate(predictions, start=1)}
    else:
        items = {"prediction": predictions}
    return {str(name): _as_mask(p, shape, f"prediction {name!r}") for name, p in items.items()}


def _as_mask(array, shape, what: str) -> np.ndarray:
    """Binary mask of a binary or label volume (every label > 0 counts: the whole tumour)."""
    mask = np.asarray(array) > 0
    if mask.shape != tuple(shape):
        raise ValueError(f"{what} has shape {mask.shape}, the volumes {tuple(shape)}")
    return mask


def _axis_number(axis: str) -> int:
    try:
        return AXES[axis]
    except KeyError:
        raise ValueError(f"axis must be one of {list(AXES)}, got {axis!r}") from None


def best_slice(truth, axis: str = "axial", shape=None) -> int:
    """Index along `axis` of the slice holding the most truth voxels; the middle slice without truth.

    `shape` (of the volume) is only needed when `truth` is None.
    """
    n = _axis_number(axis)
    if truth is None:
        if shape is None:
            raise ValueError("best_slice needs truth or the volume shape")
        return int(shape[n]) // 2
    mask = np.asarray(truth) > 0
    counts = mask.sum(axis=tuple(a for a in range(3) if a != n))
    return int(np.argmax(counts)) if counts.any() else mask.shape[n] // 2


def _slice_index(index, truth, axis: str, shape) -> int:
    """The slice to show: `index` (negative counts from the end) or, when None, the one with most truth."""
    if index is None:
        return best_slice(truth, axis, shape)
    size = shape[_axis_number(axis)]
    if not -size <= int(index) < size:
        raise IndexError(f"{axis} slice {index} is out of range: the volume has {size} {axis} slices")
    return int(index) % size


def display_slice(volume, axis: str, index: int) -> np.ndarray:
    """Slice `index` along `axis` of an (x, y, z) volume, oriented for display (see the module doc)."""
    volume = np.asarray(volume)
    n = _axis_number(axis)
    size = volume.shape[n]
    if not -size <= int(index) < size:
        raise IndexError(f"{axis} slice {index} is out of range: the volume has {size} {axis} slices")
    plane = np.take(volume, int(index), axis=n)
    if axis == "axial":
        return plane.T  # rows = y (anterior at the top), columns = x (patient's right on the left)
    return np.rot90(plane)  # rows = z reversed (superior at the top), columns = x or y


def _window(volume: np.ndarray) -> tuple[float, float]:
    """Grey-level window of a whole volume (so scrolling through slices keeps one brightness):
    0.5th to 99.5th percentile of the non-zero voxels."""
    volume = np.asarray(volume, dtype=float)
    values = volume[volume != 0]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    lo = min(float(lo), 0.0) if volume.min() >= 0 else float(lo)
    return (lo, float(hi)) if hi > lo else (lo, lo + 1.0)


# ----------------------------------------------------------------------------------------
# static figures


def _draw_mask(ax, mask2d: np.ndarray, colour: str, alpha: float) -> None:
    """A translucent fill (alpha) and an opaque outline of a 2-D boolean mask."""
    if not mask2d.any():
        return
    if alpha > 0:
        rgba = np.zeros(mask2d.shape + (4,), dtype=float)
        rgba[mask2d] = to_rgba(colour, alpha)
        ax.imshow(rgba, interpolation="nearest")
    if not mask2d.all():
        ax.contour(mask2d.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)


def plot_slice(volumes, index=None, axis="axial", contrast=None, truth=None, predictions=None, alpha=0.4,
               ax=None, title=None, window=None, colours=None):
    """Draw one slice of one contrast with the truth and predictions overlaid; returns the Figure.

    volumes: dict contrast -> 3-D (x, y, z) array, or one 3-D array.
    index: slice along `axis`; None = the slice with the most truth voxels (the middle one without truth).
    axis: 'axial' (last array axis), 'coronal' or 'sagittal'.
    contrast: key of `volumes` to show; None = 'flair' if present, else the first.
    truth: binary or label 3-D array (labels > 0 count as tumour), drawn in green.
    predictions: one 3-D array, a list of them or a dict name -> array; each in its own colour.
    alpha: opacity of the overlay fills (outlines stay opaque); 0 draws outlines only.
    ax: draw into this Axes (its Figure is returned) instead of a new Figure.
    title: panel title; None = '<contrast>, <axis> <index>'.
    window: (vmin, vmax) grey levels; None = from the whole volume's percentiles.
    colours: dict overlay name ('truth' or a prediction's name) -> matplotlib colour, overriding the
        defaults (truth green, predictions from PREDICTION_COLOURS in order).
    """
    vols = _as_volumes(volumes)
    shape = next(iter(vols.values())).shape
    contrast = _pick_contrast(vols, contrast)
    truth_mask = None if truth is None else _as_mask(truth, shape, "truth")
    preds = _as_predictions(predictions, shape)
    index = _slice_index(index, truth_mask, axis, shape)
    image = display_slice(vols[contrast], axis, index)
    vmin, vmax = window if window is not None else _window(vols[contrast])

    if ax is None:
        fig = Figure(figsize=(4.2, 4.2 * min(max(image.shape[0] / image.shape[1], 0.5), 2.0)), dpi=100)
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.9))
    else:
        fig = ax.figure
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    handles = []
    colours = dict(colours or {})
    overlays = ([("truth", truth_mask, colours.get("truth", TRUTH_COLOUR))] if truth_mask is not None else []) + [
        (name, mask, colours.get(name, PREDICTION_COLOURS[n % len(PREDICTION_COLOURS)]))
        for n, (name, mask) in enumerate(preds.items())
    ]
    for name, mask, colour in overlays:
        _draw_mask(ax, display_slice(mask, axis, index), colour, alpha)
        handles.append(Patch(facecolor=to_rgba(colour, max(alpha, 0.15)), edgecolor=colour, label=name))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.7, handlelength=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    n_slices = shape[_axis_number(axis)]
    ax.set_title(title if title is not None else f"{CONTRAST_TITLES.get(contrast, contrast)}, {axis} {index}/{n_slices - 1}",
                 fontsize=9)
    return fig


def _pick_contrast(vols: dict, contrast) -> str:
    if contrast is None:
        return "flair" if "flair" in vols else next(iter(vols))
    if contrast not in vols:
        raise ValueError(f"contrast {contrast!r} is not among the volumes {list(vols)}")
    return contrast


def plot_slices(volumes, index=None, axis="axial", contrast=None, truth=None, predictions=None, alpha=0.4,
                title=None, window=None, panel_size=3.4, dpi=100, colours=None):
    """The same slice side by side, one panel per prediction (the truth in each); returns the Figure.

    Arguments as `plot_slice`; each model keeps its colour (position in `predictions`, or `colours`)
    in its own panel. Without predictions there is one panel with the truth. `index=None`
    picks one slice for all panels (the most truth). `panel_size` is the width of a panel in inches.
    """
    vols = _as_volumes(volumes)
    shape = next(iter(vols.values())).shape
    contrast = _pick_contrast(vols, contrast)
    truth_mask = None if truth is None else _as_mask(truth, shape, "truth")
    preds = _as_predictions(predictions, shape)
    index = _slice_index(index, truth_mask, axis, shape)
    if window is None:
        window = _window(vols[contrast])
    rows, cols = _display_shape(shape, axis)
    panels = list(preds.items()) or [(None, None)]
    aspect = min(max(rows / cols, 0.5), 2.0)
    fig = Figure(figsize=(panel_size * len(panels), panel_size * aspect + 0.45), dpi=dpi)
    top = 1.0 - 0.45 / (panel_size * aspect + 0.45)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top - 0.06 / aspect, wspace=0.03)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    colours = {**{name: PREDICTION_COLOURS[n % len(PREDICTION_COLOURS)] for n, name in enumerate(preds)},
               **dict(colours or {})}
    for ax, (name, mask) in zip(axes, panels):
        plot_slice({contrast: vols[contrast]}, index=index, axis=axis, truth=truth_mask,
                   predictions=None if name is None else {name: mask}, alpha=alpha, ax=ax,
                   title=name if name is not None else ("truth" if truth_mask is not None else ""),
                   window=window, colours=colours)
    n_slices = shape[_axis_number(axis)]
    head = f"{CONTRAST_TITLES.get(contrast, contrast)}, {axis} slice {index}/{n_slices - 1}"
    fig.suptitle(f"{title}: {head}" if title else head, fontsize=10)
    return fig


def _display_shape(shape, axis: str) -> tuple[int, int]:
    x, y, z = shape
    return {"axial": (y, x), "coronal": (z, x), "sagittal": (z, y)}[axis]


def figure_png(fig: Figure, dpi=None) -> bytes:
    """PNG bytes of a Figure (Agg; no display needed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    return buffer.getvalue()
