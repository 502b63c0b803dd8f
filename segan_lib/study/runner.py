"""The driver behind run_all.sh: every step of the study, in order, skipping what is done.

A step is done when its outputs exist and were made with the same parameters
(a `step.json` written last into the step's run folder records them). Notebook
steps run through papermill into runs/<step>__<params key>/, so the executed
notebook is kept beside what it wrote.
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
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
    fresh_run_dir: bool = False  # --force removes what an earlier run of the step left (a training run's checkpoints)
    outputs: list[Path] = field(default_factory=list)
    needs: list[str] | None = None  # names of the steps it waits for; None: every step before it
    parallel: bool = False  # may run in its own process beside others (study --jobs)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.params, sort_keys=True, default=str).encode()).hexdigest()[:10]

    @property
    def run_dir(self) -> Path:
        return paths.runs_dir() / f"{self.name}__{self.key}"

    def recorded_outputs(self) -> list[Path]:
        """The outputs step.json lists (written when the step last finished)."""
        return [Path(p) for p in json.loads((self.run_dir / "step.json").read_text())["outputs"]]

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


KERNEL_START_ATTEMPTS = 3
KERNEL_DIED = "Kernel died before replying to kernel_info"  # nbclient's words when a kernel fails to start


def run_notebook(notebook: str, run_dir: Path, parameters: dict) -> Path:
    """Execute notebooks/<notebook> with papermill into run_dir; a failure names the notebook and cell."""
    import papermill as pm

    src = paths.notebooks_dir() / notebook
    out = run_dir / notebook
    run_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        try:
            # no widget state in the executed copy: a static export then shows each viewer's still image
            pm.execute_notebook(str(src), str(out), parameters=parameters, cwd=str(paths.notebooks_dir()),
                                progress_bar=False, kernel_name="python3", store_widget_state=False)
            return out
        except pm.PapermillExecutionError as exc:
            raise StepFailed(f"notebook {src.name} failed in cell {exc.exec_count} ({exc.ename}: {exc.evalue}); "
                             f"the executed notebook is {out}") from None
        except RuntimeError as exc:
            # Jupyter picks a kernel's ports, frees them, then the kernel binds them: a kernel started at
            # the same moment in another process (--jobs) can take one first, and the kernel dies before
            # running any cell. Nothing ran, so starting again is safe.
            if KERNEL_DIED not in str(exc):
                raise
            if attempt == KERNEL_START_ATTEMPTS:
                raise StepFailed(f"notebook {src.name}: its kernel died on start {attempt} times ({exc})") from None
            time.sleep(random.uniform(0.5, 2.0) * attempt)
    raise AssertionError("unreachable")


def study_steps(profile: Profile, profile_name: str, with_models: bool = True) -> list[Step]:
    """The steps of the study for a profile, in order (without the models: data and exploration only)."""
    from segan_lib import cli
    
    data_root = profile.data_root
    # the embedded phantom lives in the project's data/ folder; a user's BraTS copy is never written to
    is_phantom = data_root.resolve().is_relative_to(paths.data_dir().resolve()) or (data_root / "phantom.json").exists()
    steps: list[Step] = []
    if is_phantom:
        phantom_params = {"out": str(data_root), "n": profile.data.phantom_n, "seed": profile.data.phantom_seed,
                          "voxel_size": profile.data.phantom_voxel_size}

        def run_phantom(step: Step, run_dir: Path) -> list[Path]:
            from segan_lib.data.phantom import generate_phantom

            generate_phantom(data_root, n=phantom_params["n"], seed=phantom_params["seed"],
                             voxel_size=phantom_params["voxel_size"], progress=True, workers=2)
            return [data_root / "phantom.json", data_root / "grades.csv"]

        steps.append(Step("phantom", "generate the embedded phantom data set", phantom_params, run_phantom))

    data_params = {"data": str(data_root), "layout": profile.data.layout, "grades": profile.data.grades_file,
                   "on_bad_case": profile.data.on_bad_case}

    def run_preprocess(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.data.cache import build_cache

        cache = build_cache(cli.open_profile_dataset(profile), profile.preprocess, workers=2, on_bad_case=profile.data.on_bad_case)
        return [cache.folder / "index.json"]

    steps.append(Step("preprocess", "crop, clip and scale every case into the cache",
                      {**data_params, "preprocess": profile.to_dict()["preprocess"]}, run_preprocess))

    def run_split(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.data.splits import default_splits_path, ensure_split

        ds = cli.open_profile_dataset(profile)
        path = default_splits_path(data_root)
        split, created = ensure_split(path, {c.case_id: c.grade for c in ds}, seed=profile.split.seed,
                                      fractions=profile.split.fractions, stratify=profile.split.stratify)
        print(f"  split {'written' if created else 'reused'}: {path} {split.counts()}")
        return [path]

    steps.append(Step("split", "the seeded stratified split", {**data_params, "split": profile.to_dict()["split"]},
                      run_split))

    explore_params = {"profile": profile_name, "data": str(data_root), "notebook_version": 2,
                      "preprocess": profile.to_dict()["preprocess"], "split": profile.to_dict()["split"]}
    base_overrides = profile_overrides(profile, profile_name)

    def run_explore(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        before = {p: p.stat().st_mtime_ns for p in figures.glob("data_*")}
        nb = run_notebook("01_data_exploration.ipynb", run_dir,
                          {"profile": profile_name, "overrides": base_overrides, "out_dir": str(figures)})
        written = [p for p in sorted(figures.glob("data_*")) if before.get(p) != p.stat().st_mtime_ns]
        return [nb] + written

    steps.append(Step("01_data_exploration", "data exploration notebook (figures of the data set)",
                      explore_params, run_explore))
    if not with_models:
        return steps

    if profile.study.paper:
        steps += _paper_steps(profile, profile_name, base_overrides, data_steps=list(steps))
    if profile.study.transfer:  # independent of the paper's models: with --jobs it runs beside them
        data_steps = [s.name for s in steps if s.name in ("phantom", "preprocess", "split")]
        steps.append(_transfer_step(profile, profile_name, base_overrides, needs=data_steps))
    return steps


def _paper_steps(profile: Profile, profile_name: str, base_overrides: dict, data_steps: list[Step]) -> list[Step]:
    """Tables I-III, Fig. 2 and 3: 13 models, their evaluation, the transfer matrix and the results."""
    steps: list[Step] = []
    from segan_lib.study.paper_plan import study_models

    study_profile = profile.settings()
    model_steps: dict[str, Step] = {}
    for spec in study_models():
        source = model_steps.get(spec.init_from) if spec.init_from else None
        params = {"profile": study_profile, "overrides": spec.overrides, "freeze": spec.freeze,
                  "init_from": source.key if source else None, "notebook_version": 2}

        def run_model(step: Step, run_dir: Path, spec=spec, source=source) -> list[Path]:
            overrides = {**base_overrides, **spec.overrides}
            if source is None:
                nb = run_notebook("02_training.ipynb", run_dir, {
                    "profile": profile_name, "overrides": overrides, "run_name": run_dir.name,
                    "init_from": None, "freeze": spec.freeze})
            else:
                nb = run_notebook("05_fine_tuning.ipynb", run_dir, {
                    "profile": profile_name, "overrides": overrides, "source_run": source.run_dir.name,
                    "target": spec.overrides["model.contrasts"][0], "freeze": spec.freeze,
                    "run_name": run_dir.name})
            return [nb, run_dir / "metrics.json", run_dir / "eval_test.json", run_dir / "checkpoints" / "best.npz"]

        kind = "fine-tune" if source else "train"
        step = Step(f"{'finetune' if source else 'train'}_{spec.key}", f"{kind} {spec.label}", params, run_model,
                    fresh_run_dir=True, parallel=True,
                    needs=[s.name for s in data_steps] + ([source.name] if source else []))
        model_steps[spec.key] = step
        steps.append(step)

    evaluated = model_steps["segan_io"]

    def run_evaluation(step: Step, run_dir: Path) -> list[Path]:
        nb = run_notebook("03_evaluation.ipynb", run_dir, {"run_name": evaluated.run_dir.name, "subset": "test",
                                                           "out_dir": str(paths.figures_dir())})
        return [nb, paths.figures_dir() / f"eval_{evaluated.run_dir.name}_test.png"]

    steps.append(Step("03_evaluation", "per-subject evaluation of the four-contrast SegAN_IO",
                      {"run": evaluated.key, "notebook_version": 1}, run_evaluation))

    singles = {c: model_steps[f"single_{c}"] for c in ("t1", "t1c", "t2", "flair")}

    def run_transfer(step: Step, run_dir: Path) -> list[Path]:
        nb = run_notebook("04_transfer_matrix.ipynb", run_dir,
                          {"runs": {c: s.run_dir.name for c, s in singles.items()},
                           "out_dir": str(paths.figures_dir())})
        return [nb, paths.figures_dir() / "fig3_transfer_matrix.png"]

    steps.append(Step("04_transfer_matrix", "every single-contrast model on every contrast (Fig. 3)",
                      {"runs": {c: s.key for c, s in singles.items()}, "notebook_version": 1}, run_transfer))

    from segan_lib.study.paper_plan import table1_models, table3_models

    table1 = {spec.label: model_steps[spec.key] for spec in table1_models()}
    table3 = {f"{spec.overrides['model.contrasts'][0]}/{'seg' if spec.freeze == 'critic' else 'full'}":
              model_steps[spec.key] for spec in table3_models()}

    def run_results(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        nb = run_notebook("06_results.ipynb", run_dir, {
            "table1_runs": {k: s.run_dir.name for k, s in table1.items()},
            "table2_runs": {c: s.run_dir.name for c, s in singles.items()},
            "table3_runs": {k: s.run_dir.name for k, s in table3.items()},
            "out_dir": str(figures)})
        names = ["table1_four_contrasts", "table2_single_contrast", "table3_fine_tuning", "claims",
                 "fig3_transfer_matrix"]
        return [nb] + [figures / f"{n}.{ext}" for n in names for ext in ("csv", "md")] + [
            figures / f"{f}.{ext}" for f in ("fig2_validation_dice_loss", "fig3_transfer_matrix") for ext in ("png", "pdf")]

    steps.append(Step("06_results", "Tables I-III, Fig. 2, Fig. 3 and the claims, from the saved runs",
                      {"models": {k: s.key for k, s in model_steps.items()}, "notebook_version": 1}, run_results))
    return steps


def _transfer_step(profile: Profile, profile_name: str, base_overrides: dict, needs: list[str]) -> Step:
    """The transfer study: one notebook that trains what is missing of its plan, then the tables and figure."""
    params = {"profile": profile.settings(), "notebook_version": 1}

    def run(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        nb = run_notebook("07_transfer_study.ipynb", run_dir, {"profile": profile_name, "overrides": base_overrides,
                                                               "out_dir": str(figures)})
        from segan_lib.study.transfer_analysis import OUTPUT_NAMES

        return [nb] + [figures / name for name in OUTPUT_NAMES]

    return Step("07_transfer_study", "the transfer study: strategies, data efficiency, seeds, missing contrasts",
                params, run, parallel=True, needs=needs)


def run_study(profile: Profile, profile_name: str, only: list[str] | None = None, force: bool = False,
              log: Callable[[str], None] = print, with_models: bool = True, jobs: int = 1,
              gpus: list[str] | None = None) -> list[Step]:
    """Run the study's steps in order; with jobs > 1, independent model steps run side by side in processes."""
    steps = study_steps(profile, profile_name, with_models=with_models)
    if only:
        unknown = sorted(set(only) - {s.name for s in steps})
        if unknown:
            raise SeganError(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in only]
    if jobs < 1:
        raise SeganError(f"--jobs must be at least 1, got {jobs}")
    t_start = time.perf_counter()
    if jobs == 1:
        for i, step in enumerate(steps, 1):
            _run_step(step, f"[{i}/{len(steps)}]", force, log, t_start,
                      nxt=steps[i].name if i < len(steps) else "nothing (last step)")
    else:
        _run_parallel(steps, profile, profile_name, jobs, gpus, force, log, t_start)
    log(f"study: {len(steps)} step(s) in {time.perf_counter() - t_start:.0f} s. Outputs:")
    for step in steps:
        for p in step.outputs:
            try:
                shown = Path(p).resolve().relative_to(paths.project_root())
            except ValueError:
                shown = p
            log(f"  {step.name}: {shown}")
    return steps


def _skip_if_done(step: Step, tag: str, force: bool, log, t_start: float) -> bool:
    if force or not step.is_done():
        return False
    log(f"{tag} {step.name}: already done for these parameters, skipped "
        f"({step.run_dir.relative_to(paths.project_root())}); elapsed {time.perf_counter() - t_start:.0f} s")
    step.outputs = step.recorded_outputs()
    return True


def _run_step(step: Step, tag: str, force: bool, log, t_start: float, nxt: str = "") -> None:
    """Run one step in this process (unless done) and record it in step.json, written last."""
    if _skip_if_done(step, tag, force, log, t_start):
        return
    log(f"{tag} {step.name}: {step.description}; elapsed {time.perf_counter() - t_start:.0f} s"
        + (f"; next: {nxt}" if nxt else ""))
    t0 = time.perf_counter()
    if force and step.fresh_run_dir and step.run_dir.exists():
        shutil.rmtree(step.run_dir)  # asked for: recompute from scratch rather than resume
    step.run_dir.mkdir(parents=True, exist_ok=True)
    outputs = step.run(step, step.run_dir)
    absent = [str(p) for p in outputs if not Path(p).exists()]
    if absent:  # not marked done, so the next run tries again
        raise SeganError(f"step {step.name} finished without writing {', '.join(absent)}")
    step.outputs = outputs
    atomic_write_json(step.run_dir / "step.json", {
        "step": step.name, "params": json.loads(json.dumps(step.params, default=str)),
        "outputs": [str(p) for p in outputs], "seconds": round(time.perf_counter() - t0, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    log(f"{tag} {step.name}: done in {time.perf_counter() - t0:.0f} s")


def _child_command(step: Step, profile: Profile, profile_name: str, force: bool) -> list[str]:
    """`segan study --only STEP` for the same profile, in a fresh interpreter."""
    import sys

    cmd = [sys.executable, "-m", "segan_lib.cli", "study", "--profile", profile_name, "--only", step.name]
    for key, value in profile_overrides(profile, profile_name).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd + (["--force"] if force else [])


def _run_parallel(steps: list[Step], profile: Profile, profile_name: str, jobs: int, gpus: list[str] | None,
                  force: bool, log, t_start: float) -> None:
    """Steps in dependency order: parallel ones in up to `jobs` child processes, the others here, alone.

    Child j of the pool sees only GPU gpus[j % len(gpus)] when gpus are given. A failed child stops
    the launch of new steps; those running are waited for, and the failure names its log file.
    """
    import os
    import subprocess

    names = [s.name for s in steps]
    needs = {s.name: [n for n in (s.needs if s.needs is not None else names[:i]) if n in names]
             for i, s in enumerate(steps)}
    logs_dir = paths.runs_dir() / "_logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    pending = list(steps)
    running: dict = {}  # Popen -> (step, slot, log path, file, start time)
    free_slots = list(range(jobs))
    failure = None
    total = len(steps)
    started = 0  # steps begun or skipped, for the [k/N] tags
    while pending or running:
        for proc in [p for p in running if p.poll() is not None]:
            step, slot, log_path, fh, t0, tag = running.pop(proc)
            fh.close()
            free_slots.append(slot)
            if proc.returncode != 0:
                failure = failure or StepFailed(f"step {step.name} failed (exit {proc.returncode}); its log is {log_path}")
                log(f"{tag} {step.name}: FAILED, see {log_path}")
                continue
            step.outputs = step.recorded_outputs()
            done.add(step.name)
            log(f"{tag} {step.name}: done in {time.perf_counter() - t0:.0f} s (job {slot})")
        if failure is None:
            for step in [s for s in pending if all(n in done for n in needs[s.name])]:
                tag = f"[{started + 1}/{total}]"
                if _skip_if_done(step, tag, force, log, t_start):
                    pending.remove(step)
                    done.add(step.name)
                    started += 1
                elif step.parallel and free_slots:
                    slot = free_slots.pop(0)
                    env = dict(os.environ)
                    if gpus:
                        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                    log_path = logs_dir / f"{step.name}.log"
                    fh = open(log_path, "w")
                    proc = subprocess.Popen(_child_command(step, profile, profile_name, force), stdout=fh,
                                            stderr=subprocess.STDOUT, env=env, cwd=str(paths.project_root()))
                    running[proc] = (step, slot, log_path, fh, time.perf_counter(), tag)
                    pending.remove(step)
                    started += 1
                    log(f"{tag} {step.name}: {step.description}; started as job {slot}"
                        f"{' on GPU ' + env['CUDA_VISIBLE_DEVICES'] if gpus else ''}, log {log_path.name}; "
                        f"elapsed {time.perf_counter() - t_start:.0f} s")
                elif not step.parallel and not running:
                    _run_step(step, tag, force, log, t_start)
                    pending.remove(step)
                    done.add(step.name)
                    started += 1
                    break  # what is ready may have changed
        elif not running:
            raise failure
        if pending and not running and failure is None and not any(
                all(n in done for n in needs[s.name]) for s in pending):
            raise SeganError(f"steps {', '.join(s.name for s in pending)} wait for steps that never ran")
        if running:
            time.sleep(0.5)


def planned_runs(profile_name: str = "quick", overrides: dict | None = None) -> dict:
    """The run folders the study uses for a profile (whether or not they exist yet).

    {"models": {key: run}, "table1": {label: run}, "table2": {contrast: run}, "table3": {"t2/seg": run}};
    notebooks use it as their default when no run is named.
    """
    from segan_lib.config import load_profile
    from segan_lib.study.paper_plan import table1_models, table2_models, table3_models

    profile = load_profile(profile_name, overrides or None)
    by_name = {s.name: s for s in study_steps(profile, profile_name)}
    run = lambda key: next(s.run_dir.name for n, s in by_name.items() if n in (f"train_{key}", f"finetune_{key}"))
    return {
        "models": {spec.key: run(spec.key) for spec in table1_models() + table2_models() + table3_models()},
        "table1": {spec.label: run(spec.key) for spec in table1_models()},
        "table2": {spec.overrides["model.contrasts"][0]: run(spec.key) for spec in table2_models()},
        "table3": {f"{spec.overrides['model.contrasts'][0]}/{'seg' if spec.freeze == 'critic' else 'full'}":
                   run(spec.key) for spec in table3_models()},
    }
