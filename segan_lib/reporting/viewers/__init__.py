"""Slice viewers for 3-D volumes, ground truth and model predictions.

Three levels, from plain to interactive:

* `plot_slice` draws one slice of one contrast with the truth and any number of
  predictions as translucent fills with coloured outlines and a legend;
* `plot_slices` draws the same slice side by side, one panel per model (the
  truth is outlined in every panel);
* `SliceViewer` wraps `plot_slices` in ipywidgets: slice slider, axis selector,
  contrast dropdown, opacity slider, one checkbox for the truth and one per
  model. Every redraw is rendered to PNG bytes that an `ipywidgets.Image`
  shows (no `Output` widget: the Image renders the same in JupyterLab, VS Code
  and Voila and needs no output capture in the kernel).

Everything is drawn on `matplotlib.figure.Figure` objects directly (no pyplot
state), so it works in loops, in tests, in papermill runs and headless (Agg).

Modules: `slices` (inputs, orientation and the static figures), `widget` (`SliceViewer`),
`demo` (`demo_volumes`); their names are re-exported here, so callers import them from
``segan_lib.reporting.viewers`` as before. The voxel order and display orientation are
described in `segan_lib.reporting.viewers.slices`, the static fallback of the widget in
`segan_lib.reporting.viewers.widget`.
"""
from segan_lib.reporting.viewers.demo import demo_volumes
from segan_lib.reporting.viewers.slices import (
    AXES, CONTRAST_TITLES, PREDICTION_COLOURS, TRUTH_COLOUR, best_slice, display_slice, figure_png, plot_slice,
    plot_slices,
)
from segan_lib.reporting.viewers.widget import SliceViewer

__all__ = [
    "AXES",
    "CONTRAST_TITLES",
    "PREDICTION_COLOURS",
    "SliceViewer",
    "TRUTH_COLOUR",
    "best_slice",
    "demo_volumes",
    "display_slice",
    "figure_png",
    "plot_slice",
    "plot_slices",
]
