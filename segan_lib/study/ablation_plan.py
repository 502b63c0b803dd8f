"""The recipe ablation as data: what each of the four departures from the authors' code changes.

Our training once differed from the authors' code in four settings (README, "Departures from the
authors' code"). Starting from our old recipe (every setting ours), each of the authors' settings is
put back alone, then all four together (the profiles' defaults), on the four-contrast SegAN_IO and the
FLAIR-only model of the paper's plan, each with every seed of the ablation. With the authors' recipe,
the learning rates of `study.ablation_learning_rates` (the paper's 2e-5, and values between it and the
quick profile's) ask whether something closer to the paper trains in the profile's budget.

Every model is scored on the test set on the same field, the authors' (ABLATION_FIELD), so that the
field's variant differs from the others only in what selected its checkpoint; the authors' models are
also scored on the whole crop (the field's effect on the number itself).
"""
from __future__ import annotations

from dataclasses import dataclass

from segan_lib.study.paper_plan import ModelSpec, table1_models, table2_models

ABLATION_FIELD = "centre160"  # the authors' field: every ablation model's test score is on it
BASELINE = "ours"  # the variant every other is compared with
AUTHORS = "authors"


@dataclass(frozen=True)
class RecipeChange:
    key: str  # short, in variant keys
    setting: str  # section.key of the profile
    authors: str  # the authors' value (the profiles' default)
    ours: str  # our old value, kept as an option
    label: str


RECIPE_CHANGES = (
    RecipeChange("clip", "model.clip_scope", "kernels", "all", "critic clip on kernels only"),
    RecipeChange("order", "train.update_order", "joint", "critic_first", "one joint update step"),
    RecipeChange("rmsprop", "train.rmsprop", "tf2", "keras3", "TensorFlow 2.0 RMSprop"),
    RecipeChange("field", "evaluate.field", "centre160", "crop", "validation on the centre 160"),
)


@dataclass(frozen=True)
class Variant:
    key: str  # in step and run names
    label: str  # in the table
    overrides: dict  # on top of the profile and the model's own


def _recipe(authors: set[str]) -> dict:
    return {c.setting: (c.authors if c.key in authors else c.ours) for c in RECIPE_CHANGES}


def ablation_variants(learning_rates=()) -> list[Variant]:
    """Ours, ours with each of the authors' settings alone, the authors' (all four), then the authors'
    recipe at each learning rate of `learning_rates`."""
    every = {c.key for c in RECIPE_CHANGES}
    out = [Variant(BASELINE, "ours (all four of our old settings)", _recipe(set()))]
    out += [Variant(f"{BASELINE}_{c.key}", f"ours + {c.label}", _recipe({c.key})) for c in RECIPE_CHANGES]
    out.append(Variant(AUTHORS, "authors (all four: the default)", _recipe(every)))
    out += [Variant(f"{AUTHORS}_lr{lr:g}", f"authors, learning rate {lr:g}", {**_recipe(every), "train.learning_rate": lr})
            for lr in learning_rates]
    return out


def ablation_models() -> list[ModelSpec]:
    """The paper plan's models the ablation trains: the four-contrast SegAN_IO and FLAIR-only SegAN_IO."""
    by_key = {m.key: m for m in table1_models() + table2_models()}
    return [by_key["segan_io"], by_key["single_flair"]]


def is_profile_default(variant: Variant, settings: dict) -> bool:
    """Whether a variant's settings are the profile's own (its runs are then the paper plan's, reused)."""
    def value(dotted: str):
        section, key = dotted.split(".")
        return settings[section][key]

    return all(value(k) == v for k, v in variant.overrides.items())
