"""The one build step pyproject.toml cannot state: ship the profiles and notebooks inside the wheel.

params/*.yaml and notebooks/*.ipynb stay where they are in the repository, the one copy anybody edits;
building a wheel copies them into segan_lib/_data/{params,notebooks}/, where segan_lib.paths finds them
in an installed package. An editable install copies nothing: it reads the checkout's folders.
Everything else about the package is in pyproject.toml.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {"params": "*.yaml", "notebooks": "*.ipynb"}  # repository folder -> what of it ships
SHIPPED_INTO = ("segan_lib", "_data")  # keep equal to segan_lib.paths.SHIPPED_DATA_DIR


class BuildPyWithShippedData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder, pattern in SHIPPED.items():
            target = Path(self.build_lib).joinpath(*SHIPPED_INTO, folder)
            shutil.rmtree(target, ignore_errors=True)  # a file deleted from the repository leaves the wheel too
            target.mkdir(parents=True)
            files = sorted((HERE / folder).glob(pattern))
            if not files:
                raise SystemExit(f"setup.py: no {folder}/{pattern} beside setup.py: nothing to ship")
            for src in files:
                self.copy_file(str(src), str(target / src.name))


setup(cmdclass={"build_py": BuildPyWithShippedData})
