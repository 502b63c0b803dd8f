"""One tiny trained run shared by the prediction tests (training it is most of their time)."""
from __future__ import annotations

import pytest

from tests.tiny_project import tiny_project

TINY = ["data.phantom_n=10", "model.width=4", "train.batch_size=8", "train.epochs=1", "train.patience=5",
        "preprocess.crop_shape=[48, 48, 16]"]
RUN = "predict_run"


@pytest.fixture(scope="package")
def trained(tmp_path_factory):
    """A project root with a 10-subject 4 mm phantom, its cache and split, and one 1-epoch run (and its bundle)."""
    root = tmp_path_factory.mktemp("project")
    with tiny_project(root, TINY) as profile:
        from segan_lib import paths
        from segan_lib.study.models import train_model

        train_model(profile, RUN, log=None)
        yield {"root": root, "run": paths.runs_dir() / RUN, "data": profile.data_root, "profile": profile}


@pytest.fixture
def env(trained, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(trained["root"]))
    return trained


@pytest.fixture(scope="package")
def bundle(trained):
    """The run's bundle, run by TensorFlow (load_bundle's default)."""
    from segan_lib.apply.bundle import load_bundle

    return load_bundle(trained["run"] / "bundle")


@pytest.fixture(scope="package")
def onnx_bundle(trained):
    """The same bundle, run by onnxruntime."""
    from segan_lib.apply.bundle import load_bundle

    return load_bundle(trained["run"] / "bundle", engine="onnx")
