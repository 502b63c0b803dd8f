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
