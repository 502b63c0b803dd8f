"""The interactive slice viewer: `SliceViewer`, `plot_slices` wrapped in ipywidgets.

Controls: slice slider, axis selector, contrast dropdown, opacity slider, one checkbox
for the truth and one per model. Every redraw is rendered to PNG bytes that an
`ipywidgets.Image` shows (no `Output` widget: the Image renders the same in JupyterLab,
VS Code and Voila and needs no output capture in the kernel). ipywidgets is imported
when a viewer is made, not with the module.

Static fallback
---------------
`SliceViewer._repr_mimebundle_` returns the ipywidgets view bundle
('application/vnd.jupyter.widget-view+json' + 'text/plain') plus 'image/png'
of the current state. A front-end that renders widgets prefers the widget
view (JupyterLab ranks the widget renderer above images for trusted output);
papermill output opened later, nbconvert's HTML export (which drops widget
views whose state is not saved in the notebook) and plain viewers show the PNG.
"""
from __future__ import annotations

import base64

from matplotlib.figure import Figure

from segan_lib.reporting.viewers.slices import (
    AXES, PREDICTION_COLOURS, _as_mask, _as_predictions, _as_volumes, _axis_number, _pick_contrast, _window,
    best_slice, figure_png, plot_slices,
)


class SliceViewer:
    """An ipywidgets slice viewer of volumes with the truth and the predictions of several models.

    Controls: slice slider, axis selector (axial / coronal / sagittal), contrast dropdown, overlay
    opacity slider, one checkbox for the truth and one per prediction (each checked model gets its
    own side-by-side panel, the truth outlined in every panel). The picture is a PNG rendered by
    `plot_slices` into an `ipywidgets.Image`.

    Display the viewer itself (the last expression of a cell) or `viewer.widget` (the top-level
    box; it has no static fallback). Displaying the viewer gives the live widget in JupyterLab and a
    still PNG of the current state everywhere widgets cannot be shown (papermill output, nbval,
    HTML export): see `_repr_mimebundle_`.

    Changing the axis resets the slice to the one with the most truth along the new axis.
    """

    def __init__(self, volumes, truth=None, predictions=None, axis="axial", contrast=None, alpha=0.4,
                 index=None, panel_size=3.4, dpi=100):
        import ipywidgets as w  # on use: the static figures (and importing this module) need no ipywidgets

        self._volumes = _as_volumes(volumes)
        self._shape = next(iter(self._volumes.values())).shape
        self._truth = None if truth is None else _as_mask(truth, self._shape, "truth")
        self._predictions = _as_predictions(predictions, self._shape)
        self._colours = {name: PREDICTION_COLOURS[n % len(PREDICTION_COLOURS)]
                         for n, name in enumerate(self._predictions)}
        self._windows: dict[str, tuple[float, float]] = {}
        self._panel_size = float(panel_size)
        self._dpi = int(dpi)
        self._holding = False
        self._png = b""
        _axis_number(axis)
        contrast = _pick_contrast(self._volumes, contrast)
        n = self._shape[AXES[axis]]
        if index is None:
            index = best_slice(self._truth, axis, self._shape)
        self._build(w, axis, contrast, int(index), float(alpha), n)
        self.redraw()

    def _build(self, w, axis: str, contrast: str, index: int, alpha: float, n: int) -> None:
        """The controls, the Image and the top-level box, with their observers.

        w: the ipywidgets module; n: the number of slices along `axis`.
        """
        style = {"description_width": "initial"}
        # a separate label: a ToggleButtons description wraps above its buttons
        self.axis_selector = w.ToggleButtons(options=list(AXES), value=axis, style={"button_width": "72px"})
        self.contrast_dropdown = w.Dropdown(options=list(self._volumes), value=contrast, description="contrast",
                                            style=style, layout=w.Layout(width="170px"))
        self.slider = w.IntSlider(value=int(index), min=0, max=n - 1, step=1, description="slice",
                                  continuous_update=False, style=style, layout=w.Layout(width="360px"))
        self.opacity_slider = w.FloatSlider(value=float(alpha), min=0.0, max=1.0, step=0.05,
                                            description="opacity", continuous_update=False, style=style,
                                            layout=w.Layout(width="260px"))
        self.checkboxes: dict[str, w.Checkbox] = {}
        if self._truth is not None:
            self.checkboxes["truth"] = w.Checkbox(value=True, description="truth", indent=False,
                                                  layout=w.Layout(width="auto", margin="0 14px 0 0"))
        for name in self._predictions:
            self.checkboxes[name] = w.Checkbox(value=True, description=name, indent=False,
                                               layout=w.Layout(width="auto", margin="0 14px 0 0"))
        # natural size: a VBox would otherwise stretch the picture to the output's width (blurry)
        self.image = w.Image(format="png", layout=w.Layout(align_self="flex-start", max_width="100%",
                                                            height="auto"))
        rows = [w.HBox([w.Label("axis", layout=w.Layout(margin="0 6px 0 4px")), self.axis_selector,
                        self.contrast_dropdown], layout=w.Layout(align_items="center")),
                w.HBox([self.slider, self.opacity_slider])]
        if self.checkboxes:
            rows.append(w.HBox(list(self.checkboxes.values())))
        rows.append(self.image)
        self._box = w.VBox(rows)
        self._box.add_class("segan-slice-viewer")

        self.axis_selector.observe(self._on_axis, names="value")
        for control in (self.slider, self.contrast_dropdown, self.opacity_slider, *self.checkboxes.values()):
            control.observe(self._on_change, names="value")

    # -- state ---------------------------------------------------------------------------
    @property
    def widget(self):
        """The top-level ipywidgets box (the live viewer, without the static fallback)."""
        return self._box

    @property
    def axis(self) -> str:
        return self.axis_selector.value

    @property
    def index(self) -> int:
        return int(self.slider.value)

    @property
    def contrast(self) -> str:
        return self.contrast_dropdown.value

    @property
    def png(self) -> bytes:
        """PNG bytes of what the viewer shows now."""
        return self._png

    def shown(self) -> list[str]:
        """Names of the overlays checked now ('truth' first)."""
        return [name for name, box in self.checkboxes.items() if box.value]

    # -- drawing -------------------------------------------------------------------------
    def figure(self) -> Figure:
        """A Figure of the current state (one panel per checked prediction, the truth in each)."""
        shown = set(self.shown())
        contrast = self.contrast
        if contrast not in self._windows:
            self._windows[contrast] = _window(self._volumes[contrast])
        predictions = {k: v for k, v in self._predictions.items() if k in shown}
        return plot_slices({contrast: self._volumes[contrast]}, index=self.index, axis=self.axis,
                           truth=self._truth if "truth" in shown else None,
                           predictions=predictions, alpha=float(self.opacity_slider.value),
                           window=self._windows[contrast], panel_size=self._panel_size, dpi=self._dpi,
                           colours=self._colours)

    def redraw(self) -> bytes:
        """Render the current state into the Image widget; returns the PNG bytes."""
        self._png = figure_png(self.figure())
        self.image.value = self._png
        return self._png

    def _on_change(self, change) -> None:
        if not self._holding:
            self.redraw()

    def _on_axis(self, change) -> None:
        axis = change["new"]
        self._holding = True
        try:
            n = self._shape[AXES[axis]]
            index = best_slice(self._truth, axis, self._shape)
            if index > self.slider.max:  # keep min <= value <= max valid at every step
                self.slider.max = n - 1
                self.slider.value = index
            else:
                self.slider.value = index
                self.slider.max = n - 1
        finally:
            self._holding = False
        self.redraw()

    # -- display -------------------------------------------------------------------------
    def __repr__(self) -> str:
        x, y, z = self._shape
        shown = ", ".join(self.shown()) or "no overlays"
        return (f"SliceViewer({self.contrast}, {self.axis} slice {self.index}/{self._shape[AXES[self.axis]] - 1}, "
                f"volume {x}x{y}x{z}, showing {shown})")

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        """The widget view bundle plus 'image/png' of the current state.

        A front-end that renders widgets shows the live viewer ('application/vnd.jupyter.widget-view+json');
        one that cannot (papermill output, nbval, nbconvert HTML, GitHub) shows the PNG still.
        """
        data = dict(self._box._repr_mimebundle_(**kwargs) or {})
        data["text/plain"] = repr(self)
        data["image/png"] = base64.b64encode(self._png).decode("ascii")
        if include:
            data = {k: v for k, v in data.items() if k in include}
        if exclude:
            data = {k: v for k, v in data.items() if k not in exclude}
        return data
