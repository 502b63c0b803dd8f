"""segan_lib.reporting.viewers: slice choice, orientation, overlays, the widget viewer and its static fallback."""
import base64
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

from segan_lib.reporting import viewers
from segan_lib.reporting.viewers import SliceViewer, best_slice, display_slice, figure_png, plot_slice, plot_slices

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture()
def case():
    """A hand-made (x, y, z) = (20, 16, 12) volume; the tumour is biggest at z = 7, y = 5, x = 11."""
    shape = (20, 16, 12)
    rng = np.random.default_rng(0)
    volumes = {"t1": rng.uniform(0.2, 1.0, size=shape).astype(np.float32),
               "flair": rng.uniform(0.2, 1.0, size=shape).astype(np.float32)}
    truth = np.zeros(shape, dtype=np.uint8)
    truth[8:14, 3:8, 7] = 2        # 30 voxels on axial slice 7
    truth[10:12, 4:6, 3] = 1       # 4 voxels on axial slice 3
    truth[11, 5, 4:7] = 4          # a little extra on x = 11, y = 5
    prediction = np.roll(truth > 0, 1, axis=0)
    return volumes, truth, prediction


def _image_of(fig, n=0):
    return fig.axes[n].get_images()[0].get_array()


def test_plot_slice_picks_the_slice_with_most_tumour(case):
    volumes, truth, _ = case
    assert best_slice(truth, "axial") == 7
    assert best_slice(truth, "coronal") == 5
    assert best_slice(truth, "sagittal") == 11
    assert best_slice(np.zeros_like(truth), "axial") == 6  # no tumour: the middle slice
    fig = plot_slice(volumes, truth=truth, contrast="t1")
    assert isinstance(fig, Figure)
    np.testing.assert_array_equal(_image_of(fig), volumes["t1"][:, :, 7].T)
    assert "7/11" in fig.axes[0].get_title()


@pytest.mark.parametrize("axis, shape", [("axial", (16, 20)), ("coronal", (12, 20)), ("sagittal", (12, 16))])
def test_each_axis_gives_the_expected_image_shape(case, axis, shape):
    volumes, truth, prediction = case
    fig = plot_slice(volumes, axis=axis, index=2, truth=truth, predictions=prediction)
    assert _image_of(fig).shape == shape
    assert display_slice(volumes["t1"], axis, 2).shape == shape


def test_orientation_anterior_and_superior_at_the_top():
    volume = np.zeros((5, 6, 7))
    volume[0, 0, 6] = 1  # x = 0 (patient right), y = 0 (anterior), z = 6 (superior)
    assert display_slice(volume, "axial", 6)[0, 0] == 1      # anterior row on top, right on the left
    assert display_slice(volume, "coronal", 0)[0, 0] == 1    # superior on top, right on the left
    assert display_slice(volume, "sagittal", 0)[0, 0] == 1   # superior on top, anterior on the left


def test_overlays_and_legend_present(case):
    volumes, truth, prediction = case
    fig = plot_slice(volumes, truth=truth, predictions={"model A": prediction}, alpha=0.5)
    ax = fig.axes[0]
    assert len(ax.get_images()) == 3                       # the image, the truth fill, the prediction fill
    assert len(ax.collections) >= 2                        # two outlines
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["truth", "model A"]
    outlines_only = plot_slice(volumes, truth=truth, predictions=prediction, alpha=0.0)
    assert len(outlines_only.axes[0].get_images()) == 1    # no fills, outlines remain
    assert len(outlines_only.axes[0].collections) >= 2
    plain = plot_slice(volumes["t1"])                       # a single array, no overlays
    assert plain.axes[0].get_legend() is None
    assert figure_png(plain).startswith(PNG_MAGIC)


def test_plot_slice_into_given_axes_and_bad_input(case):
    volumes, truth, _ = case
    fig = Figure()
    ax = fig.subplots()
    assert plot_slice(volumes, truth=truth, ax=ax) is fig
    with pytest.raises(ValueError, match="axis"):
        plot_slice(volumes, axis="transverse")
    with pytest.raises(ValueError, match="contrast"):
        plot_slice(volumes, contrast="t2")
    with pytest.raises(ValueError, match="shape"):
        plot_slice(volumes, truth=truth[:-1])
    with pytest.raises(IndexError):
        plot_slice(volumes, index=12)


def test_plot_slices_one_panel_per_model(case):
    volumes, truth, prediction = case
    fig = plot_slices(volumes, truth=truth, predictions={"a": prediction, "b": truth, "c": prediction})
    assert len(fig.axes) == 3
    for ax, name in zip(fig.axes, "abc"):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["truth", name]
    assert len(plot_slices(volumes, truth=truth).axes) == 1


def test_viewer_slider_contrast_axis_and_checkboxes_change_the_image(case):
    volumes, truth, prediction = case
    viewer = SliceViewer(volumes, truth=truth, predictions={"a": prediction, "b": truth})
    assert viewer.index == 7 and viewer.contrast == "flair"
    first = bytes(viewer.image.value)
    assert first.startswith(PNG_MAGIC) and first == viewer.png

    viewer.slider.value = 3
    after_slider = bytes(viewer.image.value)
    assert after_slider != first

    viewer.contrast_dropdown.value = "t1"
    after_contrast = bytes(viewer.image.value)
    assert after_contrast != after_slider

    viewer.opacity_slider.value = 0.9
    assert bytes(viewer.image.value) != after_contrast

    before = bytes(viewer.image.value)
    viewer.checkboxes["b"].value = False
    assert bytes(viewer.image.value) != before
    assert viewer.shown() == ["truth", "a"]

    viewer.axis_selector.value = "sagittal"
    assert viewer.slider.max == 19 and viewer.index == 11  # most tumour along x
    viewer.axis_selector.value = "coronal"
    assert viewer.slider.max == 15 and viewer.index == 5
    assert "coronal slice 5/15" in repr(viewer)


def test_viewer_widget_tree(case):
    import ipywidgets

    volumes, truth, prediction = case
    viewer = SliceViewer(volumes["t1"], truth=truth, predictions=prediction, axis="coronal")
    assert isinstance(viewer.widget, ipywidgets.VBox)
    assert viewer.image in viewer.widget.children
    assert list(viewer.checkboxes) == ["truth", "prediction"]
    assert viewer.slider.max == 15


def test_repr_mimebundle_has_widget_view_and_png(case):
    volumes, truth, prediction = case
    viewer = SliceViewer(volumes, truth=truth, predictions=prediction)
    bundle = viewer._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == viewer.widget.model_id
    assert bundle["text/plain"].startswith("SliceViewer(")
    assert base64.b64decode(bundle["image/png"]) == viewer.png
    viewer.slider.value = 2  # the still follows the current state
    assert base64.b64decode(viewer._repr_mimebundle_()["image/png"]) == viewer.png
    assert set(viewer._repr_mimebundle_(include={"image/png"})) == {"image/png"}
    assert WIDGET_VIEW not in viewer._repr_mimebundle_(exclude={WIDGET_VIEW})


def test_ipython_formatter_emits_both(case):
    """What a kernel sends for `viewer` as a cell's last expression."""
    from IPython.core.formatters import DisplayFormatter

    volumes, truth, _ = case
    data, _ = DisplayFormatter().format(SliceViewer(volumes, truth=truth))
    assert WIDGET_VIEW in data and "image/png" in data


def test_demo_volumes_seeded():
    volumes, truth, predictions = viewers.demo_volumes(seed=3, shape=(24, 20, 16))
    assert set(volumes) == {"t1", "t1c", "t2", "flair"}
    assert all(v.shape == (24, 20, 16) for v in volumes.values())
    assert truth.any() and set(predictions) == {"shifted", "dilated"}
    np.testing.assert_array_equal(predictions["shifted"], np.roll(truth, 2, axis=0))
    again = viewers.demo_volumes(seed=3, shape=(24, 20, 16))
    np.testing.assert_array_equal(again[0]["flair"], volumes["flair"])


def test_works_headless_without_pyplot():
    """No display, Agg backend: the viewer renders, and pyplot is never imported."""
    code = (
        "import sys, matplotlib\n"
        "from segan_lib.reporting.viewers import SliceViewer, demo_volumes\n"
        "v = SliceViewer(*demo_volumes(0, (16, 16, 12)))\n"
        "assert v.png.startswith(b'\\x89PNG')\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().lower() == "agg"


def test_negative_index_counts_from_the_end(case):
    volumes, truth, _ = case
    fig = plot_slice(volumes, index=-1, contrast="t1", truth=truth)
    np.testing.assert_array_equal(_image_of(fig), volumes["t1"][:, :, 11].T)
    assert "11/11" in fig.axes[0].get_title()
