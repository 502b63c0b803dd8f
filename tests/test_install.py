"""`pip install .` as a user does it: the wheel in a fresh virtual environment, used outside the checkout.

The slow tests build the wheel from a copy of what the build reads, so the checkout gets no build/ and
no new egg-info and the editable install of .venv is left as it is. The wheel goes with --no-index
--no-deps into a new venv (offline); its dependencies come from this interpreter's site-packages
through a plain path line in a .pth file. (A venv made with --system-site-packages from .venv's python
would see the base Python's packages, not .venv's; a path line, unlike `site.addsitedir`, does not run
the .pth files of .venv, so the editable install's import hook stays out.) From a folder outside the
checkout they run `segan profiles`, the root's precedence (--root > SEGAN_ROOT > current folder) and
`segan predict` with a bundle trained here by the checkout's library.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# what the build reads (pyproject.toml, setup.py and the files they name); nothing else is copied
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "segan_lib", "params", "notebooks")
SHIPPED = {"params": "*.yaml", "notebooks": "*.ipynb"}  # as setup.py
TINY = ["data.phantom_n=10", "model.width=4", "train.batch_size=8", "train.epochs=1", "train.patience=5",
        "preprocess.crop_shape=[48, 48, 16]"]  # as tests/apply/conftest.py


# ---------------------------------------------------------------- the lock and the ranges
def _locked() -> dict[str, str]:
    pins = {}
    for lock in ("requirements.lock", "requirements-gpu.lock", "requirements-bench.lock"):
        for line in (REPO / lock).read_text().splitlines():
            line = line.split("#")[0].strip()
            if "==" in line:
                name, version = line.split("==")
                pins[canonicalize_name(Requirement(name).name)] = version.strip()
    return pins


def test_every_locked_pin_lies_in_the_pyproject_ranges():
    """pyproject.toml states ranges, the locks the exact versions: each requirement is locked, inside its range."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    assert {"cpu", "gpu", "notebooks", "test", "jax"} <= set(project["optional-dependencies"])
    pins = _locked()
    for req in requirements:
        assert req.specifier and "==" not in str(req.specifier), f"{req}: give a range, the lock has the pin"
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but in no lock"
        assert req.specifier.contains(pins[name], prereleases=True), f"the lock's {name}=={pins[name]} is outside {req}"


def test_build_outputs_are_git_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    outputs = ["build/lib/x.py", "dist/segan_lib-0.1.0.tar.gz", "segan_lib-0.1.0-py3-none-any.whl",
               "segan_lib/_data/params/quick.yaml", "new.egg-info/PKG-INFO"]
    res = subprocess.run(["git", "check-ignore", *outputs], cwd=REPO, capture_output=True, text=True)
    assert res.stdout.split() == outputs


# ---------------------------------------------------------------- the installed package
def _clean_env(**extra) -> dict:
    """This process's environment without what would point the installed package at the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("SEGAN_ROOT", "PYTHONPATH", "PYTHONHOME")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    return env


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert res.returncode == 0, f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built offline from a copy of the build's inputs, installed into a new venv."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    quiet = ["--disable-pip-version-check", "-q"]
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index", "-w",
          tmp / "wheels", *quiet], env=_clean_env())
    (wheel,) = (tmp / "wheels").glob("segan_lib-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps", wheel, *quiet],
         env=_clean_env())
    # only now the dependencies: pip must not see (nor try to replace) this interpreter's segan_lib
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(site, "segan_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    outside = tmp / "outside"
    outside.mkdir()
    assert not outside.is_relative_to(REPO)
    return {"wheel": wheel, "venv": venv, "python": python, "segan": venv / "bin" / "segan", "outside": outside}


@pytest.mark.slow
def test_the_wheel_carries_the_code_profiles_and_notebooks_of_the_repository(installed):
    with zipfile.ZipFile(installed["wheel"]) as z:
        names = set(z.namelist())
        package = REPO / "segan_lib"
        code = {f"segan_lib/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")
                if "__pycache__" not in p.parts}
        assert code == {n for n in names if n.endswith(".py")}
        shipped = {n for n in names if n.startswith("segan_lib/_data/")}
        expected = {f"segan_lib/_data/{folder}/{p.name}": p
                    for folder, pattern in SHIPPED.items() for p in (REPO / folder).glob(pattern)}
        assert shipped == set(expected) and any(n.endswith("/smoke.yaml") for n in shipped)
        for name, path in expected.items():
            assert z.read(name) == path.read_bytes(), name  # one source: the wheel's copy is the repository's
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "segan = segan_lib.cli:main" in z.read(entry_points).decode()
    assert not (REPO / "segan_lib" / "_data").exists()  # the build wrote nothing into the checkout


@pytest.mark.slow
def test_the_installed_package_is_the_wheels_not_the_checkouts(installed):
    probe = ("import json, os, sys, segan_lib; from segan_lib import paths; paths.pin_root(None); "
             "print(json.dumps({'file': segan_lib.__file__, 'installed': paths.installed(), 'params': "
             "str(paths.params_dir()), 'notebooks': str(paths.notebooks_dir()), 'root': str(paths.project_root()), "
             "'pinned': os.environ.get('SEGAN_ROOT'), 'path': sys.path, "
             "'hooks': [type(f).__module__ for f in sys.meta_path]}))")
    got = json.loads(_run([installed["python"], "-c", probe], cwd=installed["outside"], env=_clean_env()).stdout)
    venv = installed["venv"].resolve()
    assert Path(got["file"]).resolve().is_relative_to(venv) and got["installed"] is True
    assert Path(got["params"]).is_relative_to(venv) and Path(got["notebooks"]).is_relative_to(venv)
    assert Path(got["root"]) == Path(got["pinned"]) == installed["outside"].resolve()  # the current folder, pinned
    assert str(REPO) not in got["path"] and not any("__editable__" in m for m in got["hooks"])


def _own_profile(root: Path, name: str) -> None:
    (root / "params").mkdir(parents=True, exist_ok=True)
    (root / "params" / f"{name}.yaml").write_text(f'description: "{name} of {root.name}"\n')


@pytest.mark.slow
def test_installed_profiles_and_the_roots_precedence(installed, tmp_path):
    shipped = {p.stem for p in (REPO / "params").glob("*.yaml") if not p.stem.startswith("_")}
    cwd, env_root, option_root = (tmp_path / n for n in ("cwd", "env", "option"))
    for root in (cwd, env_root, option_root):
        _own_profile(root, f"own_{root.name}")

    def listed(*options, segan_root=None):
        env = _clean_env(**({"SEGAN_ROOT": str(segan_root)} if segan_root else {}))
        out = _run([installed["segan"], *options, "profiles"], cwd=cwd, env=env).stdout
        names = {line.split()[0] for line in out.splitlines() if line.strip()}
        assert shipped <= names, out
        return names - shipped

    assert listed() == {"own_cwd"}  # installed: the current folder
    assert listed(segan_root=env_root) == {"own_env"}  # SEGAN_ROOT before the current folder
    assert listed("--root", option_root, segan_root=env_root) == {"own_option"}  # --root before both
    res = subprocess.run([str(installed["segan"]), "--root", str(tmp_path / "missing"), "profiles"],
                         capture_output=True, text=True, cwd=cwd, env=_clean_env())
    assert res.returncode == 2 and re.search(r"--root .*missing: no such folder", res.stderr)


@pytest.mark.slow
def test_installed_predict_gives_the_checkouts_mask(installed, tmp_path):
    """A bundle trained here (1 epoch, width 4, 4 mm phantom); the installed `segan predict` and the
    checkout's give the same mask: same code, same weights, same machine (compared exactly)."""
    import nibabel as nib
    import numpy as np

    from segan_lib.cli import main
    from tests.tiny_project import tiny_project

    with tiny_project(tmp_path / "project", TINY) as profile:
        from segan_lib.data import open_dataset
        from segan_lib.study.models import train_model

        train_model(profile, "install_run", log=None)
        bundle = tmp_path / "project" / "runs" / "install_run" / "bundle"
        case = open_dataset(profile.data_root)[0]
        case_dir = profile.data_root / case.case_id
    assert (bundle / "card.json").is_file() and case_dir.is_dir()
    mine, theirs = tmp_path / "checkout.nii.gz", tmp_path / "installed.nii.gz"
    assert main(["predict", "--model", str(bundle), "--input", str(case_dir), "--output", str(mine)]) == 0
    res = _run([installed["segan"], "predict", "--model", bundle, "--input", case_dir, "--output", theirs],
               cwd=installed["outside"], env=_clean_env())
    assert "tumour" in res.stdout
    a, b = nib.load(str(mine)), nib.load(str(theirs))
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.shape == nib.load(str(case.files["flair"])).shape  # in the scan's own grid
    assert not any(installed["outside"].iterdir())  # nothing written into the folder it ran in
