"""The driver behind run_all.sh: every step of the study, in order, skipping what is done.

A step is done when its outputs exist and were made with the same parameters
(a `step.json` written last into the step's run folder records them). Notebook
steps run through papermill into runs/<step>__<params key>/, so the executed
notebook is kept beside what it wrote.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from segan_lib import paths
from segan_lib.atomic import atomic_write_json
from segan_lib.config import Profile, profile_overrides
from segan_lib.errors import SeganError


class StepFailed(SeganError):
    pass


@dataclass
class Step:
    name: str
    description: str
    params: dict
    run: Callable[["Step", Path], list[Path]]  # returns the outputs it produced
    outputs: list[Path] = field(default_factory=list)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def run_dir(self) -> Path:
        return paths.runs_dir() / f"{self.name}__{self.key}"

    def is_done(self) -> bool:
        marker = self.run_dir / "step.json"
        if not marker.is_file():
            return False
        try:
            info = json.loads(marker.read_text())
        except json.JSONDecodeError:
            return False
        return info.get("params") == json.loads(json.dumps(self.params, default=str)) and all(
            Path(p).exists() for p in info.get("outputs", []))


def run_notebook(notebook: str, run_dir: Path, parameters: dict) -> Path:
    """Execute notebooks/<notebook> with papermill into run_dir; a failure names the notebook and cell."""
    import papermill as pm

    src = paths.notebooks_dir() / notebook
    out = run_dir / notebook
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(src), str(out), parameters=parameters, cwd=str(paths.notebooks_dir()),
                            progress_bar=False, kernel_name="python3")
    except pm.PapermillExecutionError as exc:
        raise StepFailed(f"notebook {src.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                         f"the executed notebook is {out}") from None
    return out


def study_steps(profile: Profile, profile_name: str) -> list[Step]:
    """The steps of the study for a profile; later issues add training, transfer and results here."""
    from segan_lib import cli

    data_root = profile.data_root
    # the embedded phantom lives in the project's data/ folder; a user's BraTS copy is never written to
    is_phantom = data_root.resolve().is_relative_to(paths.data_dir().resolve()) or (data_root / "phantom.json").exists()
    steps: list[Step] = []
    if is_phantom:
        phantom_params = {"out": str(data_root), "n": profile.data.phantom_n, "seed": profile.data.phantom_seed,
                          "voxel_size": profile.data.phantom_voxel_size}

        def run_phantom(step: Step, run_dir: Path) -> list[Path]:
            from segan_lib.phantom import generate_phantom

            generate_phantom(data_root, n=phantom_params["n"], seed=phantom_params["seed"],
                             voxel_size=phantom_params["voxel_size"], progress=True, workers=2)
            return [data_root / "phantom.json", data_root / "grades.csv"]

        steps.append(Step("phantom", "generate the embedded phantom data set", phantom_params, run_phantom))

    data_params = {"data": str(data_root), "layout": profile.data.layout, "grades": profile.data.grades_file,
                   "on_bad_case": profile.data.on_bad_case}

    def run_preprocess(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.cache import build_cache

        cache = build_cache(cli._open(profile), profile.preprocess, workers=2, on_bad_case=profile.data.on_bad_case)
        return [cache.folder / "index.json"]

    steps.append(Step("preprocess", "crop, clip and scale every case into the cache",
                      {**data_params, "preprocess": profile.to_dict()["preprocess"]}, run_preprocess))

    def run_split(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.splits import default_splits_path, ensure_split

        ds = cli._open(profile)
        path = default_splits_path(data_root)
        split, created = ensure_split(path, {c.case_id: c.grade for c in ds}, seed=profile.split.seed,
                                      fractions=profile.split.fractions, stratify=profile.split.stratify)
        print(f"  split {'written' if created else 'reused'}: {path} {split.counts()}")
        return [path]

    steps.append(Step("split", "the seeded stratified split", {**data_params, "split": profile.to_dict()["split"]},
                      run_split))

    explore_params = {"profile": profile_name, "data": str(data_root), "notebook_version": 1,
                      "preprocess": profile.to_dict()["preprocess"], "split": profile.to_dict()["split"]}

    def run_explore(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        before = {p: p.stat().st_mtime_ns for p in figures.glob("data_*")}
        nb = run_notebook("01_data_exploration.ipynb", run_dir,
                          {"profile": profile_name, "overrides": profile_overrides(profile, profile_name),
                           "out_dir": str(figures)})
        written = [p for p in sorted(figures.glob("data_*")) if before.get(p) != p.stat().st_mtime_ns]
        return [nb] + written

    steps.append(Step("01_data_exploration", "data exploration notebook (figures of the data set)",
                      explore_params, run_explore))
    return steps


def run_study(profile: Profile, profile_name: str, only: list[str] | None = None, force: bool = False,
              log: Callable[[str], None] = print) -> list[Step]:
    steps = study_steps(profile, profile_name)
    if only:
        unknown = sorted(set(only) - {s.name for s in steps})
        if unknown:
            raise SeganError(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in only]
    t_start = time.perf_counter()
    for i, step in enumerate(steps, 1):
        nxt = steps[i].name if i < len(steps) else "nothing (last step)"
        elapsed = time.perf_counter() - t_start
        if not force and step.is_done():
            log(f"[{i}/{len(steps)}] {step.name}: already done for these parameters, skipped "
                f"({step.run_dir.relative_to(paths.project_root())}); elapsed {elapsed:.0f} s")
            step.outputs = [Path(p) for p in json.loads((step.run_dir / "step.json").read_text())["outputs"]]
            continue
        log(f"[{i}/{len(steps)}] {step.name}: {step.description}; elapsed {elapsed:.0f} s; next: {nxt}")
        t0 = time.perf_counter()
        step.run_dir.mkdir(parents=True, exist_ok=True)
        outputs = step.run(step, step.run_dir)
        step.outputs = outputs
        atomic_write_json(step.run_dir / "step.json", {
            "step": step.name, "params": json.loads(json.dumps(step.params, default=str)),
            "outputs": [str(p) for p in outputs], "seconds": round(time.perf_counter() - t0, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        log(f"[{i}/{len(steps)}] {step.name}: done in {time.perf_counter() - t0:.0f} s")
    log(f"study: {len(steps)} step(s) in {time.perf_counter() - t_start:.0f} s. Outputs:")
    for step in steps:
        for p in step.outputs:
            try:
                shown = Path(p).resolve().relative_to(paths.project_root())
            except ValueError:
                shown = p
            log(f"  {step.name}: {shown}")
    return steps
