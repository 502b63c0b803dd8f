"""Figures, drawn from arrays and saved results only (no computation of results here).

Figures are made with `matplotlib.figure.Figure` directly (no pyplot state), so
they can be created in loops, in tests and in papermill runs without leaking;
Jupyter still displays a returned Figure.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

#: display order and titles of the four contrasts
CONTRAST_TITLES: dict[str, str] = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
#: BraTS 2018-2021 label -> (name, colour)
LABEL_STYLE: dict[int, tuple[str, str]] = {
    1: ("necrotic / non-enhancing (1)", "#e41a1c"),
    2: ("oedema (2)", "#4daf4a"),
    4: ("enhancing (4)", "#ffd92f"),
}


def tumour_slice(label: np.ndarray) -> int:
    """Axial index (last axis) holding the most tumour voxels; the middle slice when there is none."""
    counts = (np.asarray(label) > 0).sum(axis=(0, 1))
    return int(np.argmax(counts)) if counts.any() else label.shape[2] // 2


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    """Slice k of an (i, j, k) BraTS volume as an image: rows = j (anterior on top), columns = i."""
    return np.asarray(volume)[:, :, k].T


def _window(image: np.ndarray) -> tuple[float, float]:
    values = image[image > 0]
    if values.size == 0:
        return 0.0, 1.0
    return 0.0, float(np.percentile(values, 99.5)) or 1.0


def subject_overview_figure(images: dict[str, np.ndarray], label: np.ndarray, title: str = "") -> Figure:
    """One row: T1, T1c, T2, FLAIR at the axial slice with the most tumour, then FLAIR with the label.

    `images` maps 't1', 't1c', 't2', 'flair' (any subset, in that order) to 3-D (i, j, k) arrays;
    `label` uses the BraTS 2018-2021 values (1 necrotic / non-enhancing, 2 oedema, 4 enhancing).
    """
    names = [n for n in CONTRAST_TITLES if n in images]
    if not names:
        raise ValueError("subject_overview_figure needs at least one of 't1', 't1c', 't2', 'flair'")
    k = tumour_slice(label)
    background = "flair" if "flair" in images else names[-1]
    n_panels = len(names) + 1
    fig = Figure(figsize=(3.0 * n_panels, 3.6), layout="constrained")
    axes = fig.subplots(1, n_panels)
    for ax, name in zip(axes, names):
        image = _axial(images[name], k)
        vmin, vmax = _window(image)
        ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(CONTRAST_TITLES[name])

    ax = axes[-1]
    image = _axial(images[background], k)
    vmin, vmax = _window(image)
    ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    lab = _axial(label, k).astype(int)
    values = sorted(LABEL_STYLE)
    index = np.zeros_like(lab)
    for n, v in enumerate(values, start=1):
        index[lab == v] = n
    cmap = ListedColormap([LABEL_STYLE[v][1] for v in values])
    ax.imshow(np.ma.masked_equal(index, 0), cmap=cmap, vmin=0.5, vmax=len(values) + 0.5, alpha=0.5,
              interpolation="nearest")
    ax.set_title(f"{CONTRAST_TITLES.get(background, background)} + label")
    handles = [Patch(color=LABEL_STYLE[v][1], label=LABEL_STYLE[v][0]) for v in values]
    ax.legend(handles=handles, loc="lower right", fontsize=6, framealpha=0.7)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title}  (axial slice {k})".strip() if title else f"axial slice {k}")
    return fig


def save_figure(fig, path_without_suffix, formats=("png", "pdf"), dpi: int = 120) -> list:
    """Save a figure as PNG and PDF (atomically: a reader never sees half a file); returns the paths."""
    from pathlib import Path

    from segan_lib.atomic import atomic_path

    base = Path(path_without_suffix)
    written = []
    for fmt in formats:
        target = base.with_name(f"{base.name}.{fmt}")
        with atomic_path(target, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        written.append(target)
    return written


def validation_curves_figure(histories: dict, column: str = "val_dice_loss", title: str = "") -> Figure:
    """Fig. 2: a validation curve per model (label -> history DataFrame with 'epoch' and `column`)."""
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for label, history in histories.items():
        ax.plot(history["epoch"], history[column], marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(column.replace("_", " "))
    ax.set_title(title or f"{column.replace('_', ' ')} per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def transfer_heatmap_figure(matrix: dict, title: str = "Dice of each single-contrast model on each contrast") -> Figure:
    """Fig. 3: heatmap of mean Dice (rows: trained on, columns: tested on) with 95% intervals,
    beside the same matrix from the paper's released results (matrix: tables.transfer_matrix output)."""
    panels = [("this study", matrix["mean"], matrix.get("ci_low"), matrix.get("ci_high"))]
    if "paper" in matrix:
        panels.append(("paper (per volume)", matrix["paper"], None, None))
    fig = Figure(figsize=(5.2 * len(panels), 4.6))
    for p, (name, mean, lo, hi) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        values = mean.to_numpy(dtype=float)
        im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(values.shape[1]), list(mean.columns))
        ax.set_yticks(range(values.shape[0]), list(mean.index))
        ax.set_xlabel("tested on")
        ax.set_ylabel("trained on")
        ax.set_title(name)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                text = f"{values[i, j]:.2f}"
                if lo is not None and hi is not None:
                    text += f"\n[{lo.iloc[i, j]:.2f}, {hi.iloc[i, j]:.2f}]"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="black" if values[i, j] > 0.6 else "white")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Dice")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves_figure(history, title: str = "") -> Figure:
    """Losses and validation metrics of one run per epoch (history.csv as a DataFrame)."""
    fig = Figure(figsize=(11, 3.4))
    axes = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    for col in ("seg_loss", "dice_loss", "val_dice_loss"):
        if col in history:
            axes[0].plot(history["epoch"], history[col], label=col.replace("_", " "))
    for col in ("l1",):
        if col in history:
            axes[1].plot(history["epoch"], history[col], label="multi-scale L1 (critic gap)")
    for col in ("dice", "val_dice", "val_precision", "val_sensitivity"):
        if col in history:
            axes[2].plot(history["epoch"], history[col], label=("train " if col == "dice" else "") + col.replace("_", " "))
    for ax, name in zip(axes, ("losses", "adversarial term", "Dice (validation per volume)")):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def metric_distributions_figure(table, metrics=("dice", "precision", "sensitivity", "hd95"), title: str = "") -> Figure:
    """Per-subject metric distributions (box plot with the subjects as points)."""
    present = [m for m in metrics if m in table]
    fig = Figure(figsize=(2.6 * len(present), 3.4))
    rng = np.random.default_rng(0)
    for i, m in enumerate(present):
        ax = fig.add_subplot(1, len(present), i + 1)
        values = table[m].dropna().to_numpy()
        ax.boxplot(values, widths=0.5)
        ax.scatter(1 + rng.uniform(-0.12, 0.12, len(values)), values, s=12, alpha=0.7)
        ax.set_title(m if m != "hd95" else "HD95 (mm)")
        ax.set_xticks([])
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
