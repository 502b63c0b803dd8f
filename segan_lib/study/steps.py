"""The steps of the study and what each one is: a `Step` has a name, the parameters that decide its
outputs, the function that makes them, and the steps it waits for. A step is done when its outputs
exist and were made with the same parameters by the same code (a `step.json` written last into the
step's run folder, runs/<step>__<key>/, records them). The key hashes the parameters and the code
the step runs (`code_hash`: every segan_lib/**/*.py and the step's notebook), so a changed library
file or notebook gives new folders and the step runs again instead of being "already done".
`study_steps` lists a profile's steps in order: the data
(phantom, preprocessing, split), the exploration notebook, (with study.real_data) the phantom against real
scans, the paper's models, evaluation, transfer
matrix and results, and the transfer study; `planned_runs` names the run folders they use.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from segan_lib import paths
from segan_lib.config import Profile, load_profile, profile_overrides
from segan_lib.data.profile_data import open_profile_dataset
from segan_lib.study.notebook import run_notebook


CODE_HASH_LENGTH = 10  # hex digits of the sha256 kept in a step's `code`


def library_files() -> list[Path]:
    """Every segan_lib/**/*.py, sorted by path: the library code every step runs."""
    package = paths.checkout_root() / "segan_lib"
    return sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix())


def _digest(files: list[Path]) -> str:
    """sha256 over each file's name (relative to the checkout when inside it), length and bytes, in order.

    Read every time (a few milliseconds for the whole library), never cached by modification time:
    an edit within the file system's timestamp resolution must count too.
    """
    h = hashlib.sha256()
    root = paths.checkout_root()
    for p in files:
        data = p.read_bytes()
        h.update(f"{p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def code_hash(notebook: str | None = None) -> str:
    """Short sha256 of the code a step runs: every file of `library_files()` and notebooks/<notebook>."""
    h = hashlib.sha256(_digest(library_files()).encode())
    if notebook:
        h.update(b"\0" + (paths.notebooks_dir() / notebook).read_bytes())
    return h.hexdigest()[:CODE_HASH_LENGTH]


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
    notebook: str | None = None  # the notebook it executes (part of its code)
    code: str | None = None  # code_hash(notebook), taken when the step is made (so one run keeps one key)

    def __post_init__(self):
        if self.code is None:
            self.code = code_hash(self.notebook)

    @property
    def key(self) -> str:
        """Short sha256 of the parameters and the code: a change of either gives another run folder."""
        payload = {"params": self.params, "code": self.code}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]

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
        # the code is in the key (so in the folder's name); a record that names another code is not this step's
        return info.get("params") == json.loads(json.dumps(self.params, default=str)) and \
            info.get("code", self.code) == self.code and all(Path(p).exists() for p in info.get("outputs", []))


def study_steps(profile: Profile, profile_name: str, with_models: bool = True) -> list[Step]:
    """The steps of the study for a profile, in order (without the models: data and exploration only)."""
    steps = _data_steps(profile)
    base_overrides = profile_overrides(profile, profile_name)
    steps.append(_exploration_step(profile, profile_name, base_overrides))
    if profile.study.real_data:  # a real data set to hold the phantom against (segan study --real)
        steps.append(_phantom_vs_real_step(profile, profile_name, base_overrides))
    if not with_models:
        return steps

    data_steps = list(steps)
    if profile.study.paper:
        steps += _paper_steps(profile, profile_name, base_overrides, data_steps=data_steps)
    if profile.study.ablation:  # after the paper's models, whose default-recipe runs it reuses
        steps += _ablation_steps(profile, profile_name, base_overrides, data_steps, {s.name: s for s in steps})
    if profile.study.transfer:  # independent of the paper's models: with --jobs it runs beside them
        data_steps = [s.name for s in steps if s.name in ("phantom", "preprocess", "split")]
        steps.append(_transfer_step(profile, profile_name, base_overrides, needs=data_steps))
    return steps


# ---------------------------------------------------------------- data and exploration
def _data_steps(profile: Profile) -> list[Step]:
    """The phantom (when the data is the embedded one), the preprocessing cache and the split."""
    data_root = profile.data_root
    # the embedded phantom lives in the project's data/ folder; a user's BraTS copy is never written to
    is_phantom = data_root.resolve().is_relative_to(paths.data_dir().resolve()) or (data_root / "phantom.json").exists()
    steps: list[Step] = [_phantom_step(profile)] if is_phantom else []
    data_params = {"data": str(data_root), "layout": profile.data.layout, "grades": profile.data.grades_file,
                   "on_bad_case": profile.data.on_bad_case,
                   # the pattern layout's settings, where given (the steps of other data sets keep their keys)
                   **{k: v for k, v in profile.data.layout_settings().items() if v is not None}}

    def run_preprocess(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.data.cache import build_cache

        cache = build_cache(open_profile_dataset(profile), profile.preprocess, workers=2,
                            on_bad_case=profile.data.on_bad_case)
        return [cache.folder / "index.json"]

    steps.append(Step("preprocess", "crop, clip and scale every case into the cache",
                      {**data_params, "preprocess": profile.to_dict()["preprocess"]}, run_preprocess))

    def run_split(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.data.splits import default_splits_path, ensure_split

        ds = open_profile_dataset(profile)
        path = default_splits_path(data_root)
        split, created = ensure_split(path, {c.case_id: c.grade for c in ds}, seed=profile.split.seed,
                                      fractions=profile.split.fractions, stratify=profile.split.stratify)
        print(f"  split {'written' if created else 'reused'}: {path} {split.counts()}")
        return [path]

    steps.append(Step("split", "the seeded stratified split", {**data_params, "split": profile.to_dict()["split"]},
                      run_split))
    return steps


def _phantom_step(profile: Profile) -> Step:
    data_root = profile.data_root
    phantom_params = {"out": str(data_root), "n": profile.data.phantom_n, "seed": profile.data.phantom_seed,
                      "voxel_size": profile.data.phantom_voxel_size}

    def run_phantom(step: Step, run_dir: Path) -> list[Path]:
        from segan_lib.data.phantom import GENERATOR_VERSION, generate_phantom

        # a phantom an older generator made is remade (the study's own data, nothing else is in that folder);
        # one of other parameters stays an error: it may be a folder the user made on purpose
        meta_path = data_root / "phantom.json"
        made_by = json.loads(meta_path.read_text()).get("generator_version") if meta_path.is_file() else None
        remake = made_by is not None and made_by != GENERATOR_VERSION
        if remake:
            print(f"phantom: {data_root} was made by generator version {made_by}; remaking it with version "
                  f"{GENERATOR_VERSION}", flush=True)
        generate_phantom(data_root, n=phantom_params["n"], seed=phantom_params["seed"],
                         voxel_size=phantom_params["voxel_size"], overwrite=remake, progress=True, workers=2)
        return [data_root / "phantom.json", data_root / "grades.csv"]

    return Step("phantom", "generate the embedded phantom data set", phantom_params, run_phantom)


def _exploration_step(profile: Profile, profile_name: str, base_overrides: dict) -> Step:
    explore_params = {"profile": profile_name, "data": str(profile.data_root), "notebook_version": 2,
                      "preprocess": profile.to_dict()["preprocess"], "split": profile.to_dict()["split"]}

    def run_explore(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        before = {p: p.stat().st_mtime_ns for p in figures.glob("data_*")}
        nb = run_notebook("01_data_exploration.ipynb", run_dir,
                          {"profile": profile_name, "overrides": base_overrides, "out_dir": str(figures)})
        written = [p for p in sorted(figures.glob("data_*")) if before.get(p) != p.stat().st_mtime_ns]
        return [nb] + written

    return Step("01_data_exploration", "data exploration notebook (figures of the data set)",
                explore_params, run_explore, notebook="01_data_exploration.ipynb")


def _phantom_vs_real_step(profile: Profile, profile_name: str, base_overrides: dict) -> Step:
    """The phantom against the real scans of study.real_data: intensities per tissue, tumour shapes. It makes
    its phantom subjects in memory (the first study.real_phantom_n of the profile's phantom), so it waits for
    no other step."""
    from segan_lib.reporting.phantom_vs_real import NOTEBOOK_LAYOUT_PARAMETERS, OUTPUT_NAMES

    study = profile.study
    real = paths.resolve(study.real_data)
    layout = {k: v for k, v in (study.real_layout or {}).items() if v is not None}
    params = {"real": str(real), "real_layout": layout, "n_phantom": study.real_phantom_n,
              "phantom": {"n": profile.data.phantom_n, "seed": profile.data.phantom_seed,
                          "voxel_size": profile.data.phantom_voxel_size},
              "preprocess": profile.to_dict()["preprocess"], "notebook_version": 1}

    def run(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        nb = run_notebook("08_phantom_vs_real.ipynb", run_dir, {
            "profile": profile_name, "overrides": base_overrides, "real_data": str(real), "n_phantom": study.real_phantom_n,
            "out_dir": str(figures), **{NOTEBOOK_LAYOUT_PARAMETERS[k]: v for k, v in layout.items()}})
        return [nb] + [figures / name for name in OUTPUT_NAMES]

    return Step("08_phantom_vs_real", "the phantom against real scans: intensities per tissue, tumour shapes",
                params, run, needs=[], notebook="08_phantom_vs_real.ipynb")


# ---------------------------------------------------------------- the paper
def _paper_steps(profile: Profile, profile_name: str, base_overrides: dict, data_steps: list[Step]) -> list[Step]:
    """Tables I-III, Fig. 2 and 3: the models (one per seed of study.seeds for Tables I and II), their
    evaluation, the transfer matrix and the results."""
    model_steps = _model_steps(profile, profile_name, base_overrides, data_steps)
    singles = {c: model_steps[f"single_{c}"] for c in ("t1", "t1c", "t2", "flair")}
    return [s for steps in model_steps.values() for s in steps] + [
        _evaluation_step(model_steps["segan_io"][0]), _transfer_matrix_step(singles), _results_step(model_steps, singles)]


def _model_steps(profile: Profile, profile_name: str, base_overrides: dict,
                 data_steps: list[Step]) -> dict[str, list[Step]]:
    """The training or fine-tuning steps of each model of the paper, by model key, in the plan's order:
    one per seed of study.seeds for the models trained from scratch, one (from the first seed's
    source) for the fine-tuned ones."""
    from segan_lib.study.paper_plan import study_models

    study_profile = profile.settings()
    model_steps: dict[str, list[Step]] = {}
    for spec in study_models():
        source = model_steps[spec.init_from][0] if spec.init_from else None
        seeds = (profile.study.seeds[0],) if source else profile.study.seeds
        model_steps[spec.key] = [_model_step(spec, seed, source, profile_name, study_profile, base_overrides, data_steps)
                                 for seed in seeds]
    return model_steps


def _model_step(spec, seed: int, source: Step | None, profile_name: str, study_profile: dict, base_overrides: dict,
                data_steps: list[Step]) -> Step:
    seeded = {**spec.overrides, "train.seed": seed}
    params = {"profile": study_profile, "overrides": seeded, "freeze": spec.freeze,
              "init_from": source.key if source else None, "notebook_version": 2}

    def run_model(step: Step, run_dir: Path) -> list[Path]:
        overrides = {**base_overrides, **seeded}
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
    return Step(f"{'finetune' if source else 'train'}_{spec.key}_seed{seed}", f"{kind} {spec.label} (seed {seed})",
                params, run_model, fresh_run_dir=True, parallel=True,
                needs=[s.name for s in data_steps] + ([source.name] if source else []),
                notebook="05_fine_tuning.ipynb" if source else "02_training.ipynb")


def _evaluation_step(evaluated: Step) -> Step:
    def run_evaluation(step: Step, run_dir: Path) -> list[Path]:
        nb = run_notebook("03_evaluation.ipynb", run_dir, {"run_name": evaluated.run_dir.name, "subset": "test",
                                                           "out_dir": str(paths.figures_dir())})
        return [nb, paths.figures_dir() / f"eval_{evaluated.run_dir.name}_test.png"]

    return Step("03_evaluation", "per-subject evaluation of the four-contrast SegAN_IO",
                {"run": evaluated.key, "notebook_version": 1}, run_evaluation, notebook="03_evaluation.ipynb")


def _names(steps: list[Step]) -> list[str]:
    return [s.run_dir.name for s in steps]


def _transfer_matrix_step(singles: dict[str, list[Step]]) -> Step:
    def run_transfer(step: Step, run_dir: Path) -> list[Path]:
        nb = run_notebook("04_transfer_matrix.ipynb", run_dir,
                          {"runs": {c: _names(s) for c, s in singles.items()}, "out_dir": str(paths.figures_dir())})
        return [nb, paths.figures_dir() / "fig3_transfer_matrix.png"]

    return Step("04_transfer_matrix", "every single-contrast model on every contrast (Fig. 3)",
                {"runs": {c: [s.key for s in steps] for c, steps in singles.items()}, "notebook_version": 2},
                run_transfer, notebook="04_transfer_matrix.ipynb")


def _results_step(model_steps: dict[str, list[Step]], singles: dict[str, list[Step]]) -> Step:
    from segan_lib.study.paper_plan import table1_models, table3_models

    table1 = {spec.label: model_steps[spec.key] for spec in table1_models()}
    table3 = {f"{spec.overrides['model.contrasts'][0]}/{'seg' if spec.freeze == 'critic' else 'full'}":
              model_steps[spec.key] for spec in table3_models()}

    def run_results(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        nb = run_notebook("06_results.ipynb", run_dir, {
            "table1_runs": {k: _names(s) for k, s in table1.items()},
            "table2_runs": {c: _names(s) for c, s in singles.items()},
            "table3_runs": {k: _names(s) for k, s in table3.items()},
            "out_dir": str(figures)})
        names = ["table1_four_contrasts", "table2_single_contrast", "table3_fine_tuning", "claims",
                 "fig3_transfer_matrix"]
        return [nb] + [figures / f"{n}.{ext}" for n in names for ext in ("csv", "md")] + [
            figures / f"{f}.{ext}" for f in ("fig2_validation_dice_loss", "fig3_transfer_matrix") for ext in ("png", "pdf")]

    return Step("06_results", "Tables I-III, Fig. 2, Fig. 3 and the claims, from the saved runs",
                {"models": {k: [s.key for s in steps] for k, steps in model_steps.items()}, "notebook_version": 2},
                run_results,
                notebook="06_results.ipynb")


# ---------------------------------------------------------------- the recipe ablation
def _ablation_model_steps(profile: Profile, profile_name: str, base_overrides: dict, data_steps: list[Step],
                          existing: dict[str, Step]) -> dict[str, dict[str, list[Step]]]:
    """variant key -> model key -> one training step per seed of the ablation (study.ablation_seeds, else
    study.seeds). A variant whose settings are the profile's own reuses the paper plan's steps of those seeds."""
    from segan_lib.study.ablation_plan import ablation_models, ablation_variants, is_profile_default
    from segan_lib.study.paper_plan import ModelSpec

    seeds = profile.study.ablation_seeds or profile.study.seeds
    settings = profile.settings()
    out: dict[str, dict[str, list[Step]]] = {}
    for variant in ablation_variants(profile.study.ablation_learning_rates):
        default = is_profile_default(variant, settings)
        out[variant.key] = {}
        for spec in ablation_models():
            steps = []
            for seed in seeds:
                paper_step = existing.get(f"train_{spec.key}_seed{seed}") if default else None
                if paper_step is None:
                    own = ModelSpec(f"ablation_{variant.key}_{spec.key}", f"{spec.label}, {variant.label}",
                                    {**spec.overrides, **variant.overrides}, group="ablation")
                    paper_step = _model_step(own, seed, None, profile_name, settings, base_overrides, data_steps)
                steps.append(paper_step)
            out[variant.key][spec.key] = steps
    return out


def _ablation_steps(profile: Profile, profile_name: str, base_overrides: dict, data_steps: list[Step],
                    existing: dict[str, Step]) -> list[Step]:
    """The ablation's own training steps (those not already in the study), then its table and figure."""
    from segan_lib.reporting.ablation import OUTPUT_NAMES

    by_variant = _ablation_model_steps(profile, profile_name, base_overrides, data_steps, existing)
    own = [s for models in by_variant.values() for steps in models.values() for s in steps if s.name not in existing]

    def run(step: Step, run_dir: Path) -> list[Path]:
        figures = paths.figures_dir()
        runs = {v: {m: _names(s) for m, s in models.items()} for v, models in by_variant.items()}
        nb = run_notebook("09_recipe_ablation.ipynb", run_dir, {"runs": runs, "out_dir": str(figures)})
        return [nb] + [figures / name for name in OUTPUT_NAMES]

    result = Step("09_recipe_ablation", "the recipe ablation: each of the authors' settings alone and all four",
                  {"models": {v: {m: [s.key for s in steps] for m, steps in models.items()}
                              for v, models in by_variant.items()}, "notebook_version": 1},
                  run, needs=[s.name for models in by_variant.values() for steps in models.values() for s in steps],
                  notebook="09_recipe_ablation.ipynb")
    return own + [result]


# ---------------------------------------------------------------- the transfer study
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
                params, run, parallel=True, needs=needs, notebook="07_transfer_study.ipynb")


def planned_runs(profile_name: str = "quick", overrides: dict | None = None) -> dict:
    """The run folders the study uses for a profile (whether or not they exist yet), a list per model
    (one run per seed of study.seeds; the fine-tuned models one run).

    {"models": {key: [run, ...]}, "table1": {label: [run, ...]}, "table2": {contrast: [run, ...]},
    "table3": {"t2/seg": [run]}, "ablation": {variant: {model: [run, ...]}} (empty without study.ablation)};
    notebooks use it as their default when no run is named.
    """
    from segan_lib.study.paper_plan import table1_models, table2_models, table3_models

    profile = load_profile(profile_name, overrides or None)
    names = [s.name for s in study_steps(profile, profile_name)]
    by_name = {s.name: s for s in study_steps(profile, profile_name)}

    def runs(key: str) -> list[str]:
        return [by_name[n].run_dir.name for n in names
                if n.rsplit("_seed", 1)[0] in (f"train_{key}", f"finetune_{key}")]

    ablation = {}
    if profile.study.ablation:
        data_steps = [by_name[n] for n in ("phantom", "preprocess", "split") if n in by_name]
        ablation = {v: {m: _names(s) for m, s in models.items()} for v, models in _ablation_model_steps(
            profile, profile_name, profile_overrides(profile, profile_name), data_steps, by_name).items()}
    return {
        "ablation": ablation,
        "models": {spec.key: runs(spec.key) for spec in table1_models() + table2_models() + table3_models()},
        "table1": {spec.label: runs(spec.key) for spec in table1_models()},
        "table2": {spec.overrides["model.contrasts"][0]: runs(spec.key) for spec in table2_models()},
        "table3": {f"{spec.overrides['model.contrasts'][0]}/{'seg' if spec.freeze == 'critic' else 'full'}":
                   runs(spec.key) for spec in table3_models()},
    }
