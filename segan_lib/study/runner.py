"""The driver behind run_all.sh: every step of the study (segan_lib.study.steps), in order, skipping
what is done for the same parameters; each finished step records its parameters and outputs in a
`step.json` written last into its run folder. With `jobs` > 1 the steps that may run side by side
(model trainings) run in child processes, `segan study --only STEP`, each with its own log, as soon
as the steps they wait for are done; the others run here, alone.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from segan_lib import paths
from segan_lib.atomic import atomic_write_json
from segan_lib.config import Profile, profile_overrides
from segan_lib.errors import SeganError
from segan_lib.study.notebook import StepFailed
from segan_lib.study.steps import Step, study_steps


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
    log(f"{tag} {step.name}: already done for these parameters and code, skipped "
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
        "step": step.name, "params": json.loads(json.dumps(step.params, default=str)), "code": step.code,
        "outputs": [str(p) for p in outputs], "seconds": round(time.perf_counter() - t0, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    log(f"{tag} {step.name}: done in {time.perf_counter() - t0:.0f} s")


def _child_command(step: Step, profile: Profile, profile_name: str, force: bool) -> list[str]:
    """`segan study --only STEP` for the same profile, in a fresh interpreter."""
    cmd = [sys.executable, "-m", "segan_lib.cli", "study", "--profile", profile_name, "--only", step.name]
    for key, value in profile_overrides(profile, profile_name).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd + (["--force"] if force else [])


# ---------------------------------------------------------------- the --jobs scheduler
def _run_parallel(steps: list[Step], profile: Profile, profile_name: str, jobs: int, gpus: list[str] | None,
                  force: bool, log, t_start: float) -> None:
    """Steps in dependency order: parallel ones in up to `jobs` child processes, the others here, alone.

    Child j of the pool sees only GPU gpus[j % len(gpus)] when gpus are given. A failed child stops
    the launch of new steps; those running are waited for, and the failure names its log file.
    """
    pool = _Pool(steps, jobs, gpus, lambda step: _child_command(step, profile, profile_name, force), log)
    while pool.pending or pool.running:
        pool.collect_finished()
        if pool.failure is None:
            pool.start_ready(force, t_start)
        elif not pool.running:
            raise pool.failure
        if pool.pending and not pool.running and pool.failure is None and not pool.ready():
            raise SeganError(f"steps {', '.join(s.name for s in pool.pending)} wait for steps that never ran")
        if pool.running:
            time.sleep(0.5)


class _Pool:
    """What a --jobs run has: steps waiting, child processes running, free job slots, steps done, a failure."""

    def __init__(self, steps: list[Step], jobs: int, gpus: list[str] | None, command: Callable[[Step], list[str]],
                 log: Callable[[str], None]):
        names = [s.name for s in steps]
        self.needs = {s.name: [n for n in (s.needs if s.needs is not None else names[:i]) if n in names]
                      for i, s in enumerate(steps)}
        self.logs_dir = paths.runs_dir() / "_logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        self.pending = list(steps)
        self.running: dict = {}  # Popen -> (step, slot, log path, file, start time, tag)
        self.free_slots = list(range(jobs))
        self.failure: StepFailed | None = None
        self.total = len(steps)
        self.started = 0  # steps begun or skipped, for the [k/N] tags
        self.gpus, self.command, self.log = gpus, command, log

    def ready(self) -> list[Step]:
        """The waiting steps whose needs are all done."""
        return [s for s in self.pending if all(n in self.done for n in self.needs[s.name])]

    def collect_finished(self) -> None:
        """Record each child process that ended: its step done, or (the first) failure."""
        for proc in [p for p in self.running if p.poll() is not None]:
            step, slot, log_path, fh, t0, tag = self.running.pop(proc)
            fh.close()
            self.free_slots.append(slot)
            if proc.returncode != 0:
                self.failure = self.failure or StepFailed(
                    f"step {step.name} failed (exit {proc.returncode}); its log is {log_path}")
                self.log(f"{tag} {step.name}: FAILED, see {log_path}")
                continue
            step.outputs = step.recorded_outputs()
            self.done.add(step.name)
            self.log(f"{tag} {step.name}: done in {time.perf_counter() - t0:.0f} s (job {slot})")

    def start_ready(self, force: bool, t_start: float) -> None:
        """Skip the ready steps that are done, launch parallel ones in free slots, run another here alone."""
        for step in self.ready():
            tag = f"[{self.started + 1}/{self.total}]"
            if _skip_if_done(step, tag, force, self.log, t_start):
                self._finished_here(step)
            elif step.parallel and self.free_slots:
                self._launch(step, tag, t_start)
            elif not step.parallel and not self.running:
                _run_step(step, tag, force, self.log, t_start)
                self._finished_here(step)
                break  # what is ready may have changed

    def _finished_here(self, step: Step) -> None:
        self.pending.remove(step)
        self.done.add(step.name)
        self.started += 1

    def _launch(self, step: Step, tag: str, t_start: float) -> None:
        """The step's child process in the first free slot, its output into runs/_logs/<step>.log."""
        slot = self.free_slots.pop(0)
        env = dict(os.environ)
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        log_path = self.logs_dir / f"{step.name}.log"
        fh = open(log_path, "w")
        proc = subprocess.Popen(self.command(step), stdout=fh, stderr=subprocess.STDOUT, env=env,
                                cwd=str(paths.project_root()))
        self.running[proc] = (step, slot, log_path, fh, time.perf_counter(), tag)
        self.pending.remove(step)
        self.started += 1
        self.log(f"{tag} {step.name}: {step.description}; started as job {slot}"
                 f"{' on GPU ' + env['CUDA_VISIBLE_DEVICES'] if self.gpus else ''}, log {log_path.name}; "
                 f"elapsed {time.perf_counter() - t_start:.0f} s")
