"""The trainer's epoch-end callback: after every batch a check that the losses are finite, and after
every epoch, in this order, validation per volume (on the model's validation_field, a profile's
evaluate.field: segan_lib.training.validation.field_slices), the early-stopping count, the checkpoints (best
when it improved, and last), history.csv and the epoch's log line. It shares a `state` dict with the
trainer (history, epoch reached, early-stopping counters, why training stopped), so the run's result is
read from there. Keras is imported only when the callback is made: a multi-worker strategy must exist
before TensorFlow runs anything.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from segan_lib import run_files
from segan_lib.errors import SeganError
from segan_lib.run_files import CHECKPOINTS, write_history


class TrainingError(SeganError):
    pass


def _save_model_checkpoint(run_dir: Path, tag: str, model, meta: dict) -> None:
    from segan_lib.training.segan import state_arrays

    run_files.save_checkpoint(run_dir, tag, state_arrays(model), meta)


def make_callbacks(run_dir, model_ref, val_data, state, patience, batch_size, log, writes: bool = True):
    import keras

    from segan_lib.nets.inference import predict_slices
    from segan_lib.training.validation import field_slices, volume_metrics_table

    val_data = field_slices(val_data, getattr(model_ref, "validation_field", "crop"))  # evaluate.field

    class EpochEnd(keras.callbacks.Callback):
        """Validation per volume, non-finite check, checkpoints, early stopping, history: in that order."""

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            bad = {k: v for k, v in (logs or {}).items() if not np.isfinite(np.asarray(v, np.float64)).all()}
            if bad:
                state["stopped"] = "non-finite loss"
                self.model.stop_training = True
                raise TrainingError(
                    f"non-finite loss at epoch {state['epoch_now'] + 1}, batch {batch + 1}: "
                    + ", ".join(f"{k}={np.asarray(v).ravel()[0]}" for k, v in bad.items())
                    + f"; the last good checkpoint ({run_dir / CHECKPOINTS / 'last.npz'}) is left as it was")

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            val = volume_metrics_table(predict_slices(model_ref.segmentor, val_data, batch_size), val_data)
            row = _history_row(epoch, logs, val, self._t0)
            logs.update({k: row[k] for k in ("val_dice", "val_precision", "val_sensitivity", "val_dice_loss")})
            state["history"].append(row)
            improved = _count_early_stopping(state["early_stopping"], row["val_dice"], epoch)
            if writes:  # under multi-worker training only the chief writes the run folder
                _write_epoch(run_dir, model_ref, state, epoch, improved)
            state["epoch_now"] = epoch + 1
            if log:
                log(f"epoch {epoch + 1}: seg_loss {row.get('seg_loss', float('nan')):.4f}  "
                    f"train dice {row.get('dice', float('nan')):.3f}  val dice (per volume) {row['val_dice']:.3f}"
                    f"{'  *best*' if improved else ''}  ({row['seconds']:.0f} s)")
            if state["early_stopping"]["wait"] >= patience:
                state["stopped"] = f"early stopping: no better validation Dice for {patience} epochs"
                self.model.stop_training = True

    return [EpochEnd()]


def _history_row(epoch: int, logs: dict, val, t0: float) -> dict:
    """One row of history.csv: the epoch's training logs and its validation per volume."""
    return {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()},
            "val_dice": float(val["dice"].mean()), "val_precision": float(val["precision"].mean()),
            "val_sensitivity": float(val["sensitivity"].mean()),
            "val_dice_loss": float(val.attrs["slice_dice_loss"]),
            "seconds": round(time.perf_counter() - t0, 2)}


def _count_early_stopping(es: dict, val_dice: float, epoch: int) -> bool:
    """Update the early-stopping counters with the epoch's validation Dice; whether it improved."""
    improved = val_dice > es["best"]
    if improved:
        es.update(best=val_dice, best_epoch=epoch + 1, wait=0)
    else:
        es["wait"] += 1
    return improved


def _write_epoch(run_dir: Path, model_ref, state: dict, epoch: int, improved: bool) -> None:
    """The best checkpoint (when it improved), the last one and history.csv."""
    meta = {"epoch": epoch + 1, "seed": state["seed"], "rng": {"data_order": [state["seed"], epoch + 1]},
            "early_stopping": dict(state["early_stopping"]), "history": state["history"]}
    if improved:
        _save_model_checkpoint(run_dir, "best", model_ref, meta)
    _save_model_checkpoint(run_dir, "last", model_ref, meta)
    write_history(run_dir, state["history"])
