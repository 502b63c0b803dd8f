"""The paper's experiments as data: which models to train, evaluate and fine-tune.

Each entry is a (label, settings overrides, fine-tuning source) triple; the
study driver runs one papermill call per entry, in a loop, and the results
notebook finds the runs again through the same plan. Nothing here is a copy of
another experiment's code: the experiments differ only in their settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from segan_lib.constants import CONTRASTS

ALL = list(CONTRASTS)


@dataclass(frozen=True)
class ModelSpec:
    key: str  # short, stable, used in run names
    label: str  # shown in tables and legends
    overrides: dict = field(default_factory=dict)  # on top of the profile
    init_from: str | None = None  # key of the model whose best weights start this one
    freeze: str = "none"  # "none" (Full) or "critic" (Seg.)
    group: str = ""  # table1, table2, table3


def table1_models() -> list[ModelSpec]:
    """Table I / Fig. 2: the four-contrast models."""
    return [
        ModelSpec("segan_nodice", "SegAN without Dice", {"model.contrasts": ALL, "model.critic_input": "mask",
                                                         "model.dice_weight": 0.0}, group="table1"),
        ModelSpec("segan", "SegAN with Dice", {"model.contrasts": ALL, "model.critic_input": "mask",
                                               "model.dice_weight": 1.0}, group="table1"),
        ModelSpec("segan_io", "SegAN_IO (concat)", {"model.contrasts": ALL, "model.critic_input": "concat",
                                                    "model.dice_weight": 1.0}, group="table1"),
    ]


def table2_models() -> list[ModelSpec]:
    """Table II / Fig. 3: one SegAN_IO model per contrast."""
    return [ModelSpec(f"single_{c}", f"SegAN_IO on {c}", {"model.contrasts": [c], "model.critic_input": "concat",
                                                          "model.dice_weight": 1.0}, group="table2")
            for c in CONTRASTS]


def table3_models(source: str = "flair", targets=("t1", "t1c", "t2")) -> list[ModelSpec]:
    """Table III: the source model fine-tuned on each target, everything trainable (full) or critic frozen (seg)."""
    out = []
    for t in targets:
        for strategy, freeze in (("full", "none"), ("seg", "critic")):
            out.append(ModelSpec(f"ft_{source}_to_{t}_{strategy}", f"{source} -> {t} ({'Full' if freeze == 'none' else 'Seg.'})",
                                 {"model.contrasts": [t], "model.critic_input": "concat", "model.dice_weight": 1.0},
                                 init_from=f"single_{source}", freeze=freeze, group="table3"))
    return out


def study_models() -> list[ModelSpec]:
    return table1_models() + table2_models() + table3_models()
