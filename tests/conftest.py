"""Shared pytest set-up: the slow tier (--slow or SEGAN_SLOW=1) and quiet TensorFlow."""
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests train tiny models, where XLA's compile time (about 10 s a run here) is most of the work:
# they train without it (the default too) unless a test asks (test_training's xla tests and the
# kill/resume test run with it)
os.environ.setdefault("SEGAN_XLA", "0")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow") or os.environ.get("SEGAN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow tier: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# The real BRATS 2015 cases kept beside the repository (never committed; see the README's "Real data"):
# SEGAN_REAL_BRATS names the folder, else ../shared/real_brats2015 beside the checkout.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def real_brats_path():
    """The folder of the real BRATS 2015 cases, or None when this machine has none."""
    given = os.environ.get("SEGAN_REAL_BRATS")
    folder = given or os.path.join(_REPO, "..", "shared", "real_brats2015")
    return folder if os.path.isdir(folder) else None


@pytest.fixture
def real_brats_root():
    """Path of the real BRATS 2015 cases; the test is skipped where there are none."""
    from pathlib import Path

    folder = real_brats_path()
    if folder is None:
        pytest.skip("no real BRATS cases here (set SEGAN_REAL_BRATS to their folder)")
    return Path(folder).resolve()
