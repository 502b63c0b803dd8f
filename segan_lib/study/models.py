"""Training and evaluating one model as the commands and notebooks do: the run, then its bundle.

Training (segan_lib.training) writes the run folder and evaluation (segan_lib.evaluation) its
test metrics; neither writes the bundle. These two calls add that step explicitly: a finished
run gets `runs/<name>/bundle/`, and a test evaluation refreshes the bundle's card with its metrics.
"""
from __future__ import annotations

from pathlib import Path

from segan_lib.config import Profile


def export_after_training(result, log=print, onnx: bool = True) -> Path | None:
    """The bundle of a finished run (with its ONNX segmentor unless onnx=False); a failed export is reported,
    never lost silently, and keeps the run."""
    from segan_lib.apply.bundle import export_bundle

    if result.best_epoch <= 0 or not result.wrote_run_folder:
        return None  # nothing trained, or not the chief of a multi-worker run (the chief writes the bundle)
    try:
        return export_bundle(result.run_dir, onnx=onnx)
    except Exception as exc:  # noqa: BLE001 - a failed export must not lose the run
        message = (f"train: {result.run_dir.name}: could not write the model bundle ({exc.__class__.__name__}: "
                   f"{exc}); run `segan export {result.run_dir}` to retry")
        if log is None:
            raise
        log(message)
        return None


def train_model(profile: Profile, run_name: str | None = None, *, resume: bool | None = None, log=print,
                onnx: bool = True, **kwargs):
    """Train a run (resume=None: continue it when it has a checkpoint), then write its bundle (onnx: with
    its ONNX segmentor)."""
    from segan_lib.run_files import has_checkpoint
    from segan_lib.training.trainer import train

    if resume is None:
        resume = bool(run_name) and has_checkpoint(run_name)
    result = train(profile, run_name, resume=resume, log=log, **kwargs)
    export_after_training(result, log, onnx=onnx)
    return result


def evaluate_model(run: str | Path, subset: str = "test", contrasts=None, tag: str = "best", **kwargs):
    """Per-subject metrics of a run (segan_lib.evaluation.evaluate_run); a test evaluation of the best
    checkpoint on the run's own contrasts also refreshes its bundle's card with these metrics."""
    from segan_lib.apply.bundle import export_bundle
    from segan_lib.evaluation.evaluate import evaluate_run
    from segan_lib.run_files import run_folder

    table, summary = evaluate_run(run, subset, contrasts, tag, **kwargs)
    run_dir = run_folder(run)
    if subset == "test" and tag == "best" and summary["evaluated_on"] == summary["trained_on"] \
            and (run_dir / "bundle").is_dir():
        export_bundle(run_dir, onnx=_has_onnx(run_dir / "bundle"))  # the bundle keeps what it had
    return table, summary


def _has_onnx(bundle_dir: Path) -> bool:
    import json

    try:
        return bool((json.loads((bundle_dir / "card.json").read_text()).get("onnx") or {}).get("file"))
    except (OSError, ValueError):
        return True
