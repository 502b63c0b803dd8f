"""Step 08_phantom_vs_real: present only with a real data set (study.real_data, `segan study --real`), waiting
for no other step, and leaving the keys of every other step as they are."""
import json

import pytest

from segan_lib.config import load_profile
from segan_lib.study.steps import study_steps

LAYOUT = {"pattern": "{case}/{contrast}_subtrMeanDivStd.nii.gz", "label_scheme": "brats2015"}


@pytest.fixture(autouse=True)
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    return tmp_path


def _with_real(real, layout=None):
    overrides = [f"study.real_data={json.dumps(str(real))}"]
    if layout:
        overrides.append(f"study.real_layout={json.dumps(layout)}")
    return load_profile("smoke", overrides)


def test_the_step_is_there_only_with_real_data(root):
    names = [s.name for s in study_steps(load_profile("smoke"), "smoke", with_models=False)]
    assert "08_phantom_vs_real" not in names
    steps = {s.name: s for s in study_steps(_with_real(root / "real", LAYOUT), "smoke", with_models=False)}
    step = steps["08_phantom_vs_real"]
    assert step.needs == [] and step.notebook == "08_phantom_vs_real.ipynb"
    assert step.params["real"] == str(root / "real") and step.params["real_layout"] == LAYOUT
    assert step.params["n_phantom"] == 4 and step.params["phantom"] == {"n": 12, "seed": 0, "voxel_size": 4.0}
    # another layout, another key
    other = {s.name: s for s in study_steps(_with_real(root / "real"), "smoke", with_models=False)}
    assert other["08_phantom_vs_real"].key != step.key


def test_real_data_leaves_the_other_steps_keys_alone(root):
    plain = {s.name: s.key for s in study_steps(load_profile("smoke"), "smoke")}
    with_real = {s.name: s.key for s in study_steps(_with_real(root / "real", LAYOUT), "smoke")}
    assert set(with_real) - set(plain) == {"08_phantom_vs_real"}
    assert all(with_real[name] == key for name, key in plain.items())


def test_bad_real_layout_settings_are_refused():
    from segan_lib.errors import ConfigError

    with pytest.raises(ConfigError, match="study.real_layout: unknown setting"):
        load_profile("smoke", ['study.real_layout={"patern": "x"}'])
    with pytest.raises(ConfigError, match="study.real_phantom_n must be positive"):
        load_profile("smoke", ["study.real_phantom_n=0"])


def test_segan_study_real_options(root, capsys):
    from segan_lib import cli
    from segan_lib.config import apply_overrides

    real = root / "real"
    real.mkdir()
    args = cli.build_parser().parse_args(["study", "--profile", "smoke", "--real", str(real), "--real-pattern",
                                          LAYOUT["pattern"], "--real-label-scheme", "brats2015"])
    profile = apply_overrides(load_profile("smoke"), cli._real_overrides(args))
    assert profile.study.real_data == str(real.resolve()) and profile.study.real_layout == LAYOUT
    # layout options without the data set they describe: a clear error, nothing run
    assert cli.main(["study", "--profile", "smoke", "--real-mask", "{case}/brainmask.nii.gz"]) == cli.EXIT_BAD_INPUT
    assert "--real-mask describe the files of the real data set: give it with --real DATA" in capsys.readouterr().err
