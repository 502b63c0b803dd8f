import pytest

from segan_lib import paths
from segan_lib.config import available_profiles, load_profile
from segan_lib.errors import ConfigError


def test_the_three_profiles_load_with_their_key_settings():
    assert {"smoke", "quick", "paper"} <= set(available_profiles())
    paper = load_profile("paper")
    assert paper.preprocess.crop_shape == (180, 180, 128)
    assert paper.preprocess.spacing_mm == 1.0
    assert paper.train.crop_size == 160 and paper.train.batch_size == 64
    assert paper.train.learning_rate == pytest.approx(2e-5) and paper.train.patience == 500
    assert paper.model.width == 64
    quick = load_profile("quick")
    # same field of view in mm as the paper's crop
    assert [n * quick.preprocess.spacing_mm for n in quick.preprocess.crop_shape] == [180, 180, 128]


def test_overrides_as_strings_and_mappings_get_their_types():
    p = load_profile("smoke", ["train.epochs=7", "model.contrasts=[flair]", "preprocess.spacing_mm=2"])
    assert p.train.epochs == 7 and p.model.contrasts == ("flair",) and p.preprocess.spacing_mm == 2.0
    p = load_profile("smoke", {"split.seed": 3, "preprocess.crop_shape": [8, 8, 8]})
    assert p.split.seed == 3 and p.preprocess.crop_shape == (8, 8, 8)


@pytest.mark.parametrize("override, words", [
    ("train.epoch=3", "unknown setting 'train.epoch'"),
    ("nosection.x=1", "no section 'nosection'"),
    ("train.epochs=three", "train.epochs must be an integer"),
    ("model.critic_input=sum", "must be one of concat, mask"),
    ("model.contrasts=[t1, dwi]", "model.contrasts"),
    ("preprocess.percentiles=[98, 2]", "low < high"),
    ("split.fractions=[0.5, 0.1, 0.1]", "summing to 1"),
    ("preprocess.crop_shape=[1, 2]", "3 values"),
])
def test_bad_settings_are_named(override, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(")):
        load_profile("quick", [override])


def test_unknown_profile_lists_available():
    with pytest.raises(ConfigError, match="available: .*paper"):
        load_profile("no-such-profile")


def test_fingerprint_changes_with_settings_only():
    a = load_profile("quick")
    b = load_profile("quick", ["train.epochs=1"])
    assert a.fingerprint("preprocess") == b.fingerprint("preprocess")
    assert a.fingerprint("train") != b.fingerprint("train")


def test_paths_follow_one_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    assert paths.project_root() == tmp_path
    assert paths.runs_dir() == tmp_path / "runs"
    assert paths.cache_dir() == tmp_path / "data" / "cache"
    assert paths.resolve("data/x") == tmp_path / "data" / "x"
    assert paths.resolve("/abs/y").as_posix() == "/abs/y"


def test_checkout_root_is_the_checkout_unless_segan_root(monkeypatch, tmp_path):
    """In a checkout the current folder does not matter; SEGAN_ROOT does."""
    monkeypatch.delenv("SEGAN_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not paths.installed()
    assert paths.project_root() == paths.checkout_root() and (paths.checkout_root() / "pyproject.toml").is_file()
    assert paths.params_dir() == paths.checkout_root() / "params"
    assert paths.profile_dirs() == [paths.params_dir()]  # the root's params/ is the shipped one
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "elsewhere"))
    assert paths.project_root() == tmp_path / "elsewhere"


def test_installed_root_is_the_current_folder_unless_segan_root(monkeypatch, tmp_path):
    """An installed package (one carrying segan_lib/_data) reads its shipped copies and works in the current folder."""
    shipped = tmp_path / "site" / "_data"
    (shipped / "params").mkdir(parents=True)
    monkeypatch.setattr(paths, "SHIPPED_DATA_DIR", shipped)
    monkeypatch.delenv("SEGAN_ROOT", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert paths.installed()
    assert paths.params_dir() == shipped / "params" and paths.notebooks_dir() == shipped / "notebooks"
    assert paths.project_root() == work and paths.runs_dir() == work / "runs"
    assert paths.profile_dirs() == [shipped / "params", work / "params"]
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path / "scratch"))
    assert paths.project_root() == tmp_path / "scratch"


def test_a_root_profile_adds_to_and_overrides_the_shipped_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGAN_ROOT", str(tmp_path))
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "quick.yaml").write_text('description: "my quick"\ntrain:\n  epochs: 7\n')
    (tmp_path / "params" / "mine.yaml").write_text('description: "mine"\n')
    (tmp_path / "params" / "_notes.yaml").write_text("not: a profile\n")
    shipped = {f.stem for f in paths.params_dir().glob("*.yaml") if not f.stem.startswith("_")}
    assert {"quick", "smoke"} <= shipped and available_profiles() == sorted(shipped | {"mine"})
    quick = load_profile("quick")
    assert quick.description == "my quick" and quick.train.epochs == 7 and quick.name == "quick"
    assert load_profile("smoke").description == "every code path, tiny data and widths (tests)"  # still shipped
    with pytest.raises(ConfigError, match=r"looked for nope\.yaml in .*params/ or .*params/\); available: mine, "):
        load_profile("nope")


# ------------------------------------------------------------- departures from the authors' code
DEPARTURES = {"model.clip_scope": ("kernels", "all"), "train.update_order": ("joint", "critic_first"),
              "train.rmsprop": ("tf2", "keras3"), "evaluate.field": ("centre160", "crop")}


def _get(profile, dotted):
    section, key = dotted.split(".")
    return getattr(getattr(profile, section), key)


@pytest.mark.parametrize("name", ["smoke", "quick", "transfer", "paper"])
def test_every_profile_defaults_to_the_authors_recipe(name):
    p = load_profile(name)
    for key, (authors, _ours) in DEPARTURES.items():
        assert _get(p, key) == authors, key
    from segan_lib.config import Profile

    for key, (authors, _ours) in DEPARTURES.items():
        assert _get(Profile(), key) == authors, key  # and the dataclass defaults


@pytest.mark.parametrize("key", sorted(DEPARTURES))
def test_each_departure_is_an_option_and_validated(key):
    ours = DEPARTURES[key][1]
    assert _get(load_profile("smoke", [f"{key}={ours}"]), key) == ours
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + " must be one of"):
        load_profile("smoke", [f"{key}=bogus"])


def test_settings_without_the_new_fields_load_with_the_values_their_runs_used():
    from segan_lib.config import LEGACY_SETTINGS, profile_from_dict

    current = load_profile("smoke").to_dict()
    assert profile_from_dict(current).to_dict() == current  # a settings.json written now round-trips
    old = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    old["model"].pop("clip_scope")
    old["train"].pop("update_order")
    old["train"].pop("rmsprop")
    old.pop("evaluate")
    p = profile_from_dict(old)
    assert (p.model.clip_scope, p.train.update_order, p.train.rmsprop, p.evaluate.field) == \
        ("all", "critic_first", "keras3", "crop")
    assert LEGACY_SETTINGS == {"model": {"clip_scope": "all"}, "train": {"update_order": "critic_first",
                                                                        "rmsprop": "keras3"},
                               "evaluate": {"field": "crop"}}


def test_data_layout_settings_stay_out_of_the_keys_while_unset():
    from segan_lib.config import DATA_LAYOUT_SETTINGS

    p = load_profile("smoke")
    # the data keys a profile's settings() (run and study keys) had before the pattern layout existed
    assert sorted(p.settings()["data"]) == ["grades_file", "layout", "on_bad_case", "phantom_n", "phantom_seed",
                                            "phantom_voxel_size", "root"]
    assert all(k in p.to_dict()["data"] for k in DATA_LAYOUT_SETTINGS)  # settings.json records them all
    q = load_profile("smoke", ['data.pattern="{case}/{contrast}.nii.gz"', "data.contrast_names=flair=Flair"])
    assert q.settings()["data"]["pattern"] == "{case}/{contrast}.nii.gz"
    assert q.data.contrast_names == "flair=Flair" and q.fingerprint("data") != p.fingerprint("data")
    assert load_profile("smoke", ["data.contrast_names={flair: Flair}"]).data.contrast_names == {"flair": "Flair"}
    with pytest.raises(ConfigError, match="data.contrast_names must map contrasts"):
        load_profile("smoke", ["data.contrast_names=[flair]"])
