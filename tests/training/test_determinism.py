"""Op determinism is switched on, or the run stops saying why: never a silent fallback."""
from __future__ import annotations

import pytest


def test_a_failure_to_enable_op_determinism_is_an_error(monkeypatch):
    import keras

    from segan_lib.training import trainer
    from segan_lib.training.trainer import TrainingError

    if keras.backend.backend() != "tensorflow":
        pytest.skip("op determinism is TensorFlow's")
    import tensorflow as tf

    def refuse():
        raise RuntimeError("determinism unsupported here")

    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", refuse)
    with pytest.raises(TrainingError, match=r"cannot switch on TensorFlow's op determinism \(RuntimeError: "
                                            r"determinism unsupported here\)"):
        trainer._deterministic_ops()


def test_other_backends_have_nothing_to_switch_on(monkeypatch):
    import keras

    from segan_lib.training import trainer

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    trainer._deterministic_ops()  # no TensorFlow call, no error
