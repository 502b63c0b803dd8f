"""The `segan` command: one subcommand per step of the study.

Every subcommand reads a profile (params/<name>.yaml, --profile) and takes
overrides (--set section.key=value). Errors about data or settings print one
line naming the file and what is wrong, and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from segan_lib import __version__, paths
from segan_lib.constants import FREEZE_MODES
from segan_lib.config import Profile, available_profiles, load_profile
from segan_lib.data.profile_data import open_profile_dataset
from segan_lib.training.distribute import DEVICE_STRATEGIES, ENV_STRATEGY
from segan_lib.errors import SeganError

EXIT_BAD_INPUT = 2
DEFAULT_PROFILE = "quick"
# TensorFlow's start-up chatter (CUDA probing, oneDNN notices) says nothing a user can act on
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None,  # None: not given (quick), which a resumed run must know
                   help=f"settings profile: a name in params/ ({DEFAULT_PROFILE} by default; smoke, quick, paper) "
                        "or a YAML path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting, e.g. --set preprocess.spacing_mm=2 (repeatable)")


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None,
                   help="data folder in any supported BraTS layout (default: the profile's data.root)")
    p.add_argument("--grades", default=None, help="CSV with columns case_id,grade (default: <data>/grades.csv if present)")
    p.add_argument("--layout", default=None, choices=["brats2015", "brats2018", "brats2023", "msd"],
                   help="skip detection and read the folder as this layout")
    p.add_argument("--on-bad-case", choices=["error", "skip"], default=None,
                   help="stop at the first bad case (error, default) or warn and leave it out (skip)")


def _profile_name(args) -> str:
    return args.profile if args.profile is not None else DEFAULT_PROFILE


def _data_overrides(args) -> list[tuple[str, str]]:
    """(the option as typed, its override) for each data option given: DATA, --grades, --layout, --on-bad-case."""
    given = []
    if getattr(args, "data", None):
        given.append((f"the data folder {args.data}",
                      f"data.root={json.dumps(str(Path(args.data).expanduser().resolve()))}"))
    if getattr(args, "grades", None):
        given.append((f"--grades {args.grades}",
                      f"data.grades_file={json.dumps(str(Path(args.grades).expanduser().resolve()))}"))
    if getattr(args, "layout", None):
        given.append((f"--layout {args.layout}", f"data.layout={args.layout}"))
    if getattr(args, "on_bad_case", None):
        given.append((f"--on-bad-case {args.on_bad_case}", f"data.on_bad_case={args.on_bad_case}"))
    return given


def _resolve_profile(args) -> Profile:
    overrides = list(args.overrides) + [o for _, o in _data_overrides(args)]
    return load_profile(_profile_name(args), overrides)


# ------------------------------------------------------------------ subcommands
def cmd_phantom(args) -> int:
    from segan_lib.data.phantom import generate_phantom

    profile = load_profile(_profile_name(args), args.overrides)
    out = paths.resolve(args.out) if args.out else profile.data_root
    n = args.n if args.n is not None else profile.data.phantom_n
    seed = args.seed if args.seed is not None else profile.data.phantom_seed
    voxel = args.voxel_size if args.voxel_size is not None else profile.data.phantom_voxel_size
    t0 = time.perf_counter()
    print(f"phantom: {n} subjects, seed {seed}, {voxel:g} mm -> {out}")
    ids = generate_phantom(out, n=n, seed=seed, voxel_size=voxel, overwrite=args.overwrite,
                           progress=not args.quiet, workers=args.workers)
    dt = time.perf_counter() - t0
    print(f"phantom: {len(ids)} subjects in {out} ({dt:.1f} s)")
    return 0


def cmd_info(args) -> int:
    from segan_lib.data.dataset import format_summary, summarize_dataset

    profile = _resolve_profile(args)
    ds = open_profile_dataset(profile)
    summary = summarize_dataset(ds, deep=args.deep)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0


def cmd_preprocess(args) -> int:
    from segan_lib.data.cache import build_cache

    profile = _resolve_profile(args)
    ds = open_profile_dataset(profile)
    cache = build_cache(ds, profile.preprocess, workers=args.workers, on_bad_case=profile.data.on_bad_case)
    print(f"preprocess: cache at {cache.folder}")
    if cache.skipped:
        print(f"preprocess: {len(cache.skipped)} case(s) skipped:", file=sys.stderr)
        for cid, why in cache.skipped:
            print(f"  {cid}: {why}", file=sys.stderr)
    return 0


def cmd_split(args) -> int:
    from segan_lib.data.splits import default_splits_path, ensure_split

    profile = _resolve_profile(args)
    ds = open_profile_dataset(profile)
    grades = {c.case_id: c.grade for c in ds}
    path = paths.resolve(args.out) if args.out else default_splits_path(profile.data_root)
    seed = args.seed if args.seed is not None else profile.split.seed
    split, created = ensure_split(path, grades, seed=seed, fractions=profile.split.fractions,
                                  stratify=profile.split.stratify, force=args.force)
    what = "wrote" if created else "reusing existing"
    counts = split.counts()
    by = f", stratified by {split.stratified_by}" if split.stratified_by else ", not stratified (grades unknown)"
    print(f"split: {what} {path}: train {counts['train']}, val {counts['val']}, test {counts['test']} "
          f"(seed {split.seed}{by})")
    return 0


def _train_overrides(args) -> list[tuple[str, str]]:
    """(the option as typed, its override) for each setting of the profile given to `segan train`."""
    given = [(f"--set {o}", o) for o in args.overrides]
    if args.contrasts is not None:
        given.append((f"--contrasts {args.contrasts}", f"model.contrasts=[{args.contrasts}]"))
    if args.critic_input is not None:
        given.append((f"--critic-input {args.critic_input}", f"model.critic_input={args.critic_input}"))
    if args.dice_weight is not None:
        given.append((f"--dice-weight {args.dice_weight:g}", f"model.dice_weight={args.dice_weight}"))
    if args.regions is not None:
        given.append((f"--regions {args.regions}", f"model.regions={args.regions}"))
    if args.epochs is not None:
        given.append((f"--epochs {args.epochs}", f"train.epochs={args.epochs}"))
    if args.seed is not None:
        given.append((f"--seed {args.seed}", f"train.seed={args.seed}"))
    return given + _data_overrides(args)


def _train_freeze(args) -> str | None:
    """The freeze given (--freeze or --freeze-critic), None when neither; their contradiction is an error."""
    if args.freeze_critic:
        if args.freeze not in (None, "critic"):
            raise SeganError(f"--freeze-critic (the same as --freeze critic) contradicts --freeze {args.freeze}; "
                             "give one of them")
        return "critic"
    return args.freeze


# what a resumed run may change: more epochs, more patience (its history stays valid)
_RESUME_MAY_CHANGE = ("train.epochs", "train.patience")
_PATH_SETTINGS = ("data.root", "data.grades_file")


def _resume_settings(args, freeze: str | None):
    """(profile, run name, init_from, freeze, contrast dropout) of the run to resume, from its settings.json.

    Options given on the command line must agree with the run's settings, except those in
    _RESUME_MAY_CHANGE; a conflicting one is an error naming it.
    """
    from segan_lib.config import apply_overrides, parse_override, profile_from_dict
    from segan_lib.run_files import SETTINGS, read_settings, run_folder
    from segan_lib.training.trainer import default_run_name

    name = args.name
    if name is None:  # the name the same options give without --resume
        given = load_profile(_profile_name(args), [o for _, o in _train_overrides(args)])
        name = default_run_name(given, freeze or "none", args.init_from, args.contrast_dropout or 0.0)
    run_dir = paths.runs_dir() / name
    if not (run_dir / SETTINGS).is_file():
        raise SeganError(f"cannot resume {name}: no run at {run_dir} (expected {SETTINGS} there)"
                         + ("" if args.name else "; give the run's --name"))
    saved = read_settings(run_dir)
    where = run_dir / SETTINGS
    if not isinstance(saved.get("profile"), dict):
        raise SeganError(f"{where}: holds no profile settings, so the run cannot be resumed")
    profile = profile_from_dict(saved["profile"], where=str(where))
    saved_freeze = saved.get("freeze") or "none"
    saved_init = saved.get("init_from")
    saved_dropout = float(saved.get("contrast_dropout") or 0.0)
    conflicts = []
    if args.profile is not None and load_profile(args.profile).name != profile.name:
        conflicts.append(f"--profile {args.profile} (the run was trained with profile {profile.name})")
    for option, override in _train_overrides(args):
        key, _ = parse_override(override)
        changed = apply_overrides(profile, [override])
        if key in _RESUME_MAY_CHANGE:
            profile = changed
            continue
        section, setting = key.split(".", 1)
        before, after = profile.to_dict()[section][setting], changed.to_dict()[section][setting]
        if key in _PATH_SETTINGS and before is not None and after is not None:
            before, after = str(paths.resolve(before)), str(paths.resolve(after))
        if before != after:
            conflicts.append(f"{option} ({key} is {json.dumps(before)} in the run)")
    if args.init_from is not None and (saved_init is None or run_folder(args.init_from).resolve()
                                       != run_folder(saved_init).resolve()):
        started = f"initialised from {saved_init}" if saved_init else "trained from scratch"
        conflicts.append(f"--init-from {args.init_from} (the run was {started})")
    if freeze is not None and freeze != saved_freeze:
        conflicts.append(f"{'--freeze-critic' if args.freeze_critic else '--freeze ' + freeze} (the run was trained "
                         f"with freeze {saved_freeze})")
    if args.contrast_dropout is not None and float(args.contrast_dropout) != saved_dropout:
        conflicts.append(f"--contrast-dropout {args.contrast_dropout:g} (the run has {saved_dropout:g})")
    if conflicts:
        raise SeganError(f"cannot resume {name}: {'; '.join(conflicts)} conflict{'s' if len(conflicts) > 1 else ''} "
                         f"with the run's settings in {where}. A resumed run continues with its own settings: give "
                         "only --name (and --epochs, train.epochs or train.patience to extend it), or train another "
                         "run under a new --name")
    return profile, name, saved_init, saved_freeze, saved_dropout


def cmd_train(args) -> int:
    from segan_lib.study.models import train_model

    freeze = _train_freeze(args)
    if args.resume:
        profile, name, init_from, freeze, contrast_dropout = _resume_settings(args, freeze)
    else:
        freeze = freeze or "none"
        if freeze != "none" and not args.init_from:
            raise SeganError(f"--freeze{'-critic' if args.freeze_critic else ' ' + freeze} needs --init-from RUN: it "
                             "keeps part of another run's weights fixed, and without --init-from there are none")
        profile = load_profile(_profile_name(args), [o for _, o in _train_overrides(args)])
        name, init_from, contrast_dropout = args.name, args.init_from, args.contrast_dropout or 0.0
    result = train_model(profile, name, resume=args.resume, init_from=init_from, freeze=freeze,
                         tensorboard=args.tensorboard, verbose=1 if args.progress else 0, strategy=args.strategy,
                         xla=args.xla or None, contrast_dropout=contrast_dropout)
    print(f"train: {result.run_dir.name}: best validation Dice {result.best_val_dice:.3f} at epoch "
          f"{result.best_epoch} of {result.epochs_run} ({result.stopped}); outputs in {result.run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from segan_lib.study.models import evaluate_model

    contrasts = [c for c in args.contrasts.split(",") if c] if args.contrasts else None
    evaluate_model(args.run, subset=args.split, contrasts=contrasts, tag=args.checkpoint,
                 compute_hd95=not args.no_hd95)
    return 0


def cmd_export(args) -> int:
    from segan_lib.apply.bundle import export_bundle

    out = export_bundle(args.run, args.out, tag=args.checkpoint)
    print(f"export: model bundle in {out}")
    return 0


def cmd_predict(args) -> int:
    from segan_lib.apply.bundle import load_bundle
    from segan_lib.apply.predict import open_input, predict_case_to_file, predict_file_set, predict_folder

    files = {c: getattr(args, c) for c in ("t1", "t1c", "t2", "flair") if getattr(args, c)}
    if bool(args.input) == bool(files):
        raise SeganError("give either --input (a case or data set folder) or the files (--t1/--t1c/--t2/--flair)")
    one_file = "the files --t1/--t1c/--t2/--flair" if files else f"--output {args.output} (one mask file)"
    if files or str(args.output).endswith((".nii", ".nii.gz")):  # one case into one file: no table, no bar
        if args.evaluate:
            raise SeganError(f"--evaluate has no effect with {one_file}: it adds Dice etc. to the summary.csv of "
                             "a folder prediction (--input and an output folder), where a case has a label")
        if args.quiet:
            raise SeganError(f"--quiet has no effect with {one_file}: only a folder prediction (--input and an "
                             "output folder) shows a progress bar")
    bundle = load_bundle(args.model)
    if files:
        result = predict_file_set(bundle, files, args.output, overwrite=args.overwrite,
                                  probability_path=args.probability, allow_missing=args.allow_missing)
        print(f"predict: {args.output}: tumour {result.tumour_ml:.2f} ml ({result.seconds:.1f} s)")
        return 0
    if str(args.output).endswith((".nii", ".nii.gz")):  # one case folder into one mask file
        ds = open_input(args.input)
        if len(ds) != 1:
            raise SeganError(f"--output names one file, but {args.input} holds {len(ds)} cases; "
                             "give an output folder instead")
        result = predict_case_to_file(bundle, ds[0], args.output, overwrite=args.overwrite,
                                      probability_path=args.probability, allow_missing=args.allow_missing)
        print(f"predict: {args.output}: tumour {result.tumour_ml:.2f} ml ({result.seconds:.1f} s)")
        return 0
    if args.probability:
        raise SeganError("--probability names one file: with --input it needs --output FILE.nii.gz for one case")
    failures = predict_folder(bundle, args.input, args.output, overwrite=args.overwrite, evaluate=args.evaluate,
                              allow_missing=args.allow_missing, progress=not args.quiet)
    print(f"predict: masks and summary.csv in {args.output}")
    if failures:
        print(f"predict: {len(failures)} case(s) failed:", file=sys.stderr)
        for cid, why in failures:
            print(f"  {cid}: {why}", file=sys.stderr)
        return 1
    return 0


def cmd_study(args) -> int:
    from segan_lib.study.runner import run_study

    profile = _resolve_profile(args)
    only = [s for part in args.only for s in part.split(",") if s] if args.only else None
    if args.strategy:  # the notebooks' kernels inherit it
        os.environ[ENV_STRATEGY] = args.strategy
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else None
    run_study(profile, _profile_name(args), only=only, force=args.force, jobs=args.jobs, gpus=gpus)
    return 0


def cmd_profiles(args) -> int:
    if args.overrides and not args.show:
        raise SeganError("--set has no effect without --show NAME: it changes the settings --show prints")
    if args.profile is not None:
        raise SeganError(f"--profile {args.profile} has no effect here: `segan profiles` lists every profile, "
                         f"`segan profiles --show {args.profile}` prints one")
    for name in available_profiles():
        p = load_profile(name)
        print(f"{name:8s} {p.description}")
    if args.show:
        print(json.dumps(load_profile(args.show, args.overrides).to_dict(), indent=2))
    return 0


# ------------------------------------------------------------------ parser
def _strategy_arg(p) -> None:
    p.add_argument("--strategy", choices=DEVICE_STRATEGIES, default=None,
                   help="default: one device; mirrored: every GPU here; multiworker: the machines in TF_CONFIG "
                        f"(default: ${ENV_STRATEGY}, else default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segan",
        description="SegAN / SegAN_IO brain-tumour segmentation: data, preprocessing, splits (and, as they come, "
                    "training, evaluation, transfer and prediction). Run `segan COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"segan_lib {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_parser in _SUBCOMMANDS:
        add_parser(sub)
    return parser


def _add_phantom_parser(sub) -> None:
    p = sub.add_parser("phantom", help="generate the embedded BraTS-like phantom data set",
                       description="Generate a BraTS-like data set (BraTS 2018-2021 layout, labels 0,1,2,4, "
                                   "grades.csv) from the MNI152 anatomy shipped with nilearn. Same seed, same bytes.")
    _profile_args(p)
    p.add_argument("--n", type=int, default=None, help="number of subjects (default: the profile's data.phantom_n)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the profile's data.phantom_seed)")
    p.add_argument("--out", default=None, help="output folder (default: the profile's data.root)")
    p.add_argument("--voxel-size", type=float, default=None, help="voxel size in mm (1 = 240x240x155)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a phantom made with other parameters")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom)


def _add_info_parser(sub) -> None:
    p = sub.add_parser("info", help="what layout a data folder has, its cases, grades, shapes and labels",
                       description="Detect the layout of a data folder and describe it. --deep reads every case "
                                   "(one at a time) for shapes, spacings and label values.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--deep", action="store_true", help="read every case: shapes, spacings, label values")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)


def _add_preprocess_parser(sub) -> None:
    p = sub.add_parser("preprocess", help="crop, clip and scale every case into the cache",
                       description="Preprocess every case as the paper does (centre crop, percentile clip, min-max "
                                   "scale; optional resampling) into data/cache/, keyed by the settings. Cases "
                                   "already cached with the same settings are skipped.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.set_defaults(func=cmd_preprocess)


def _add_split_parser(sub) -> None:
    p = sub.add_parser("split", help="the seeded stratified train/val/test split (splits.json)",
                       description="Write the seeded 80/10/10 split stratified by grade to splits.json beside the "
                                   "data, or reuse the one there. An existing split is never silently overwritten.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the profile's split.seed)")
    p.add_argument("--out", default=None, help="where to write splits.json (default: beside the data)")
    p.add_argument("--force", action="store_true", help="rewrite an existing split (the old one kept as .bak)")
    p.set_defaults(func=cmd_split)


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train SegAN or SegAN_IO (resumable)",
                       description="Train one model into runs/<name>/: checkpoints of best and last (both networks, "
                                   "both optimizers), history.csv, metrics.json. Early stopping on validation Dice "
                                   "per volume. --resume continues a stopped run exactly, with its own settings.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--name", default=None, help="run name (default: from profile, model and seed)")
    p.add_argument("--contrasts", default=None, help="comma-separated input contrasts, e.g. flair or t1,t1c,t2,flair")
    p.add_argument("--critic-input", choices=["concat", "mask"], default=None,
                   help="concat = SegAN_IO (image and segmentation concatenated); mask = SegAN (image x segmentation)")
    p.add_argument("--dice-weight", type=float, default=None, help="weight of the Dice loss (0 = SegAN without Dice)")
    p.add_argument("--regions", choices=["wt", "brats"], default=None,
                   help="wt = whole tumour (the paper); brats = whole tumour, tumour core, enhancing tumour")
    p.add_argument("--epochs", type=int, default=None, help="maximum number of epochs")
    p.add_argument("--seed", type=int, default=None, help="initialisation, data order and crops")
    p.add_argument("--resume", action="store_true",
                   help="continue run --name from its last checkpoint, with the settings it was started with "
                        "(an option given that conflicts with them is an error; --epochs may be raised)")
    p.add_argument("--init-from", default=None, metavar="RUN", help="start from another run's best weights (fine-tuning)")
    p.add_argument("--freeze", choices=FREEZE_MODES, default=None,  # None: not given (none)
                   help="fine-tuning (with --init-from): keep the critic (the paper's Seg.) or the segmentor's "
                        "encoder fixed (default none)")
    p.add_argument("--freeze-critic", action="store_true", help="the same as --freeze critic")
    p.add_argument("--contrast-dropout", type=float, default=None, metavar="P",
                   help="zero each contrast of a training slice with probability P, keeping at least one, so the "
                        "model copes with missing contrasts (default 0: off)")
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard logs")
    p.add_argument("--progress", action="store_true", help="Keras progress bar per epoch")
    p.add_argument("--xla", action="store_true",
                   help="compile the train step with XLA: faster, but op determinism off (default: $SEGAN_XLA)")
    _strategy_arg(p)
    p.set_defaults(func=cmd_train)


def _add_evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="per-subject metrics of a trained run on a split",
                       description="Predict whole volumes of a subset of the split (centre crop, threshold 0.5) and "
                                   "write per-subject Dice, precision, sensitivity, specificity and HD95 (CSV) and "
                                   "their summary with bootstrap 95%% intervals (JSON) into the run's folder.")
    p.add_argument("run", help="run name (in runs/) or folder")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="subset (default test)")
    p.add_argument("--contrasts", default=None,
                   help="evaluate on these contrasts instead of the trained ones (e.g. t2 for a FLAIR model)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--no-hd95", action="store_true", help="skip the Hausdorff distance")
    p.set_defaults(func=cmd_evaluate)


def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a run's model bundle (weights and card) for prediction",
                       description="Write the best segmentor of a run and its card (contrasts, preprocessing, "
                                   "threshold, training data, test metrics, versions) into a self-contained folder "
                                   "(default <run>/bundle/), atomically.")
    p.add_argument("run", help="run name (in runs/) or folder")
    p.add_argument("--out", default=None, metavar="DIR", help="bundle folder (default <run>/bundle)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.set_defaults(func=cmd_export)


def _add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="segment new scans with a model bundle",
                       description="Segment one case given as files (--t1/--t1c/--t2/--flair, OUTPUT a .nii.gz) or "
                                   "every case of a folder in any layout the data layer reads (--input, OUTPUT a "
                                   "folder with <case>.nii.gz and summary.csv). Masks are in each scan's own grid. "
                                   "Exit status 1 when a case of a folder failed.")
    p.add_argument("--model", required=True, metavar="BUNDLE", help="model bundle folder (segan export)")
    p.add_argument("--input", default=None, metavar="DIR", help="a case folder or a data set folder")
    for c in ("t1", "t1c", "t2", "flair"):
        p.add_argument(f"--{c}", default=None, metavar="FILE", help=f"the {c} volume of one case")
    p.add_argument("--output", required=True, metavar="OUT", help="mask file (.nii.gz) or, with --input, a folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--allow-missing", action="store_true", help="fill a missing contrast with zeros (with a warning)")
    p.add_argument("--probability", default=None, metavar="FILE", help="also write the probability map here")
    p.add_argument("--evaluate", action="store_true", help="with --input: Dice etc. in summary.csv where labels exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)


def _add_study_parser(sub) -> None:
    p = sub.add_parser("study", help="run every step of the study in order (what run_all.sh calls)",
                       description="Run the study's steps in order, skipping each step whose outputs are complete "
                                   "for the same parameters; stops at the first failure naming the notebook and cell.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--only", action="append", default=[], metavar="STEP", help="run only these steps (repeatable or comma-separated)")
    p.add_argument("--force", action="store_true", help="recompute steps even when done")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run up to N independent model trainings at once, each in its own process (default 1)")
    p.add_argument("--gpus", default=None, metavar="LIST",
                   help="with --jobs: comma-separated GPU ids, one per concurrent job in turn (CUDA_VISIBLE_DEVICES)")
    _strategy_arg(p)
    p.set_defaults(func=cmd_study)


def _add_profiles_parser(sub) -> None:
    p = sub.add_parser("profiles", help="list the settings profiles", description="List params/*.yaml profiles.")
    _profile_args(p)
    p.add_argument("--show", metavar="NAME", help="print one profile's resolved settings as JSON")
    p.set_defaults(func=cmd_profiles)


# one parser function per subcommand, in the order `segan --help` lists them
_SUBCOMMANDS = (
    _add_phantom_parser, _add_info_parser, _add_preprocess_parser, _add_split_parser, _add_train_parser,
    _add_evaluate_parser, _add_export_parser, _add_predict_parser, _add_study_parser, _add_profiles_parser,
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SeganError as exc:
        print(f"segan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"segan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
