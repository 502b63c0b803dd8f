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
from segan_lib.config import Profile, load_profile, profile_files
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


# the keys of segan_lib.data.layouts.registry.LAYOUTS and of segan_lib.data.case.LABEL_SCHEMES (tests check
# they agree), spelled out so that `segan --help` does not import the data layer
LAYOUT_CHOICES = ("brats2015", "brats2018", "brats2023", "msd", "nnunet", "pattern")
LABEL_SCHEME_CHOICES = ("brats2015", "brats2018", "brats2023", "msd")
# option -> the data setting it overrides, for the layout options of _data_arg
_LAYOUT_OPTIONS = {"pattern": "--pattern", "contrast_names": "--contrast-names", "label_pattern": "--label",
                   "mask_pattern": "--mask", "label_scheme": "--label-scheme"}


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None,
                   help="data folder in any supported BraTS layout (default: the profile's data.root)")
    p.add_argument("--data", dest="data_option", default=None, metavar="DATA",
                   help="the data folder, as an option (the same as the positional DATA)")
    p.add_argument("--grades", default=None, help="CSV with columns case_id,grade (default: <data>/grades.csv if present)")
    p.add_argument("--layout", default=None, choices=LAYOUT_CHOICES,
                   help="skip detection and read the folder as this layout (a segan_layout.yaml in the folder "
                        "is detected as pattern)")
    p.add_argument("--on-bad-case", choices=["error", "skip"], default=None,
                   help="stop at the first bad case (error, default) or warn and leave it out (skip)")
    _pattern_args(p)


def _pattern_args(p: argparse.ArgumentParser, labels: bool = True) -> None:
    """The pattern layout's options (and --label-scheme), for every command that opens a data set
    (labels=False: without --label and --label-scheme, for prediction, which reads no labels through them)."""
    layout = p.add_argument_group("pattern layout (any other file naming; or segan_layout.yaml in the data folder)")
    layout.add_argument("--pattern", dest="pattern", default=None, metavar="TEMPLATE",
                        help="image files relative to the data folder, with {case} (a folder or part of a name) and "
                             "{contrast}, e.g. '{case}/{case}_{contrast}.nii.gz'; '*' matches any text in one name "
                             "(implies --layout pattern)")
    layout.add_argument("--contrast-names", dest="contrast_names", default=None, metavar="C=NAME,...",
                        help="each contrast's name in the files, e.g. flair=Flair,t1c=T1c (default: t1, t1c, t2, flair)")
    layout.add_argument("--mask", dest="mask_pattern", default=None, metavar="TEMPLATE",
                        help="brain masks (optional), e.g. '{case}/brainmask.nii.gz'")
    if not labels:
        return
    layout.add_argument("--label", dest="label_pattern", default=None, metavar="TEMPLATE",
                        help="label files, e.g. '{case}/{case}_seg.nii.gz' (needs --label-scheme)")
    layout.add_argument("--label-scheme", dest="label_scheme", default=None, choices=LABEL_SCHEME_CHOICES,
                        help="what the label values mean, for --layout pattern and nnunet (nnunet: else from its "
                             "dataset.json)")


def _profile_name(args) -> str:
    return args.profile if args.profile is not None else DEFAULT_PROFILE


def _data_overrides(args) -> list[tuple[str, str]]:
    """(the option as typed, its override) for each data option given: DATA (or --data), --grades, --layout,
    --on-bad-case and the pattern layout's options."""
    given = []
    data, option = getattr(args, "data", None), getattr(args, "data_option", None)
    if data and option and Path(data).expanduser().resolve() != Path(option).expanduser().resolve():
        raise SeganError(f"two data folders given: {data} and --data {option}; give one")
    data = data or option
    if data:
        given.append((f"the data folder {data}",
                      f"data.root={json.dumps(str(Path(data).expanduser().resolve()))}"))
    if getattr(args, "grades", None):
        given.append((f"--grades {args.grades}",
                      f"data.grades_file={json.dumps(str(Path(args.grades).expanduser().resolve()))}"))
    if getattr(args, "layout", None):
        given.append((f"--layout {args.layout}", f"data.layout={args.layout}"))
    if getattr(args, "on_bad_case", None):
        given.append((f"--on-bad-case {args.on_bad_case}", f"data.on_bad_case={args.on_bad_case}"))
    for key, flag in _LAYOUT_OPTIONS.items():
        value = getattr(args, key, None)
        if value is not None:  # a JSON string, so that YAML reads '{case}/...' as text
            given.append((f"{flag} {value}", f"data.{key}={json.dumps(value)}"))
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
    # --deep is a validator: a case dropped or failing its checks is exit status 1, after the full report
    return 1 if args.deep and summary["n_problems"] else 0


def cmd_preprocess(args) -> int:
    from segan_lib.data.cache import build_cache

    overrides = [f"model.contrasts=[{args.contrasts}]"] if args.contrasts else []
    profile = load_profile(_profile_name(args), args.overrides + overrides + [o for _, o in _data_overrides(args)])
    ds = open_profile_dataset(profile)
    cache = build_cache(ds, profile.preprocess, contrasts=profile.model.contrasts, workers=args.workers,
                        on_bad_case=profile.data.on_bad_case, progress=not args.quiet)
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
                         xla=args.xla, contrast_dropout=contrast_dropout)
    print(f"train: {result.run_dir.name}: best validation Dice {result.best_val_dice:.3f} at epoch "
          f"{result.best_epoch} of {result.epochs_run} ({result.stopped}); outputs in {result.run_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from segan_lib.study.models import evaluate_model

    contrasts = [c for c in args.contrasts.split(",") if c] if args.contrasts else None
    evaluate_model(args.run, subset=args.split, contrasts=contrasts, tag=args.checkpoint,
                 compute_hd95=not args.no_hd95, progress=not args.quiet)
    return 0


def cmd_export(args) -> int:
    from segan_lib.apply.bundle import export_bundle, read_card
    from segan_lib.apply.engines import onnx_entry

    out = export_bundle(args.run, args.out, tag=args.checkpoint)
    print(f"export: model bundle in {out}")
    onnx = onnx_entry(read_card(out))
    if onnx.get("file"):
        print(f"export: ONNX segmentor {out / onnx['file']} (for segan predict --engine onnx)")
    else:  # the bundle is complete without it: the TensorFlow engine needs only the weights
        print(f"export: warning: no ONNX segmentor in the bundle: {onnx.get('absent')}; segan predict will use "
              "--engine tensorflow", file=sys.stderr)
    return 0


def _input_layout(args):
    """How `predict --input` reads its folder: detected (None), --layout, or the pattern options' reader."""
    given = {key: getattr(args, key, None) for key in _LAYOUT_OPTIONS if getattr(args, key, None) is not None}
    if not given:
        return args.layout
    from segan_lib.data.layouts.registry import resolve_layout

    return resolve_layout(args.input, args.layout, given)


def cmd_predict(args) -> int:
    # nothing on this path imports TensorFlow or Keras unless the engine is tensorflow (tests/apply/test_engines.py)
    from segan_lib.apply.ensemble import load_models
    from segan_lib.apply.labels import mask_label_scheme
    from segan_lib.apply.predict import (check_options, open_input, predict_case_to_file, predict_file_set,
                                         predict_folder)

    files = {c: getattr(args, c) for c in ("t1", "t1c", "t2", "flair") if getattr(args, c)}
    if bool(args.input) == bool(files):
        raise SeganError("give either --input (a case or data set folder) or the files (--t1/--t1c/--t2/--flair)")
    layout_flags = [flag for key, flag in _LAYOUT_OPTIONS.items() if getattr(args, key, None) is not None]
    if files and (args.layout or layout_flags):
        raise SeganError(f"{', '.join((['--layout'] if args.layout else []) + layout_flags)} describe how a folder is "
                         "read: they have no effect with the files --t1/--t1c/--t2/--flair")
    one_file = "the files --t1/--t1c/--t2/--flair" if files else f"--output {args.output} (one mask file)"
    if files or str(args.output).endswith((".nii", ".nii.gz")):  # one case into one file: no table, no bar
        if args.evaluate:
            raise SeganError(f"--evaluate has no effect with {one_file}: it adds Dice etc. to the summary.csv of "
                             "a folder prediction (--input and an output folder), where a case has a label")
        if args.quiet:
            raise SeganError(f"--quiet has no effect with {one_file}: only a folder prediction (--input and an "
                             "output folder) shows a progress bar")
        if args.probabilities:
            raise SeganError(f"--probabilities is for a folder prediction; with {one_file} give --probability FILE")
    elif args.probability:
        raise SeganError("--probability names one file: with --input it needs --output FILE.nii.gz for one case "
                         "(--probabilities writes one map per case beside the masks of a folder prediction)")
    options = {"tta": args.tta, "min_component_ml": args.min_component_ml}
    check_options(None, min_component_ml=args.min_component_ml)  # before any model is loaded
    bundle = load_models(args.model, engine=args.engine, label_scheme=args.mask_label_scheme)
    mask_label_scheme(bundle, args.mask_label_scheme)  # before any case is read: the scheme of the masks is known
    check_options(bundle, **options)
    done = f"engine {bundle.engine}" + (f", {len(args.model)} models averaged" if len(args.model) > 1 else "")
    if files:
        result = predict_file_set(bundle, files, args.output, overwrite=args.overwrite,
                                  probability_path=args.probability, allow_missing=args.allow_missing,
                                  label_scheme=args.mask_label_scheme, **options)
        print(f"predict: {args.output}: tumour {result.tumour_ml:.2f} ml ({result.seconds:.1f} s, {done})")
        return 0
    layout = _input_layout(args)
    if str(args.output).endswith((".nii", ".nii.gz")):  # one case folder into one mask file
        ds = open_input(args.input, layout)
        if len(ds) != 1:
            raise SeganError(f"--output names one file, but {args.input} holds {len(ds)} cases; "
                             "give an output folder instead")
        result = predict_case_to_file(bundle, ds[0], args.output, overwrite=args.overwrite,
                                      probability_path=args.probability, allow_missing=args.allow_missing,
                                      label_scheme=args.mask_label_scheme, **options)
        print(f"predict: {args.output}: tumour {result.tumour_ml:.2f} ml ({result.seconds:.1f} s, {done})")
        return 0
    failures = predict_folder(bundle, args.input, args.output, overwrite=args.overwrite, evaluate=args.evaluate,
                              allow_missing=args.allow_missing, progress=not args.quiet,
                              probabilities=args.probabilities, label_scheme=args.mask_label_scheme, layout=layout,
                              **options)
    print(f"predict: masks and summary.csv in {args.output} ({done})")
    if failures:
        print(f"predict: {len(failures)} case(s) failed:", file=sys.stderr)
        for cid, why in failures:
            print(f"  {cid}: {why}", file=sys.stderr)
        return 1
    return 0


def cmd_evaluate_folder(args) -> int:
    from segan_lib.evaluation.folder import evaluate_folder

    from segan_lib.data.layouts.registry import resolve_layout

    layout = resolve_layout(args.data, args.layout, {key: getattr(args, key) for key in _LAYOUT_OPTIONS})
    result = evaluate_folder(args.predictions, args.data, args.out, layout=layout, on_bad_case=args.on_bad_case,
                             on_missing=args.on_missing, nsd_tolerance_mm=args.nsd_tolerance,
                             progress=not args.quiet)
    print(result.report())
    print(f"evaluate-folder: cases.csv, summary.csv and definitions.txt in {result.out_dir}")
    return 0


def _real_overrides(args) -> list[str]:
    """The overrides of `segan study --real DATA` and its layout options (study.real_data, study.real_layout)."""
    out = []
    if getattr(args, "real_data", None):
        out.append(f"study.real_data={json.dumps(str(Path(args.real_data).expanduser().resolve()))}")
    layout = {key: getattr(args, f"real_{key}") for key in _LAYOUT_OPTIONS if getattr(args, f"real_{key}", None) is not None}
    if layout:
        if not getattr(args, "real_data", None):
            flags = ", ".join(f"--real-{_LAYOUT_OPTIONS[k][2:]}" for k in layout)
            raise SeganError(f"{flags} describe the files of the real data set: give it with --real DATA")
        out.append(f"study.real_layout={json.dumps(layout)}")
    return out


def cmd_study(args) -> int:
    from segan_lib.config import apply_overrides
    from segan_lib.study.runner import run_study

    profile = _resolve_profile(args)
    real = _real_overrides(args)
    if real:  # the real data set the phantom is held against (step 08_phantom_vs_real)
        profile = apply_overrides(profile, real)
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
    shipped = paths.params_dir()
    for name, path in sorted(profile_files().items()):
        p = load_profile(name)
        # a profile of the project root's params/ overrides a shipped one of the same name: say so
        own = "" if path.parent == shipped else \
            f"  [{path}{', overrides the shipped one' if (shipped / path.name).is_file() else ''}]"
        print(f"{name:8s} {p.description}{own}")
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
    parser.add_argument("--root", default=None, metavar="DIR",
                        help=f"project root, where data/, runs/, figures/ and your own params/*.yaml are (an existing "
                             f"folder; default: ${paths.ROOT_ENV}, else the checkout, or the current folder when installed)")
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
                       description="Detect the layout of a data folder and describe it: cases, grades, how many "
                                   "cases have each contrast and a label. --deep reads every case (one at a time) "
                                   "for shapes, spacings and label values, and exits with status 1 when a case "
                                   "was dropped or failed its checks.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--deep", action="store_true",
                   help="read every case: shapes, spacings, label values (exit status 1 on a problem)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_info)


def _add_preprocess_parser(sub) -> None:
    p = sub.add_parser("preprocess", help="crop, clip and scale every case into the cache",
                       description="Preprocess every case as the paper does (centre crop, percentile clip, min-max "
                                   "scale; optional resampling) into data/cache/, keyed by the settings. Cases "
                                   "already cached with the same settings are skipped.")
    _profile_args(p)
    _data_arg(p)
    p.add_argument("--contrasts", default=None,
                   help="comma-separated contrasts every case must have, e.g. flair,t1c (default: the profile's "
                        "model.contrasts); each case is cached with all it has")
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    p.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the train step with XLA (op determinism off; XLA's CPU code is reproducible). "
                        "Default: $SEGAN_XLA when set, else off (the faster step on the CPU); a resumed run keeps "
                        "what it was trained with")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    from segan_lib.apply.engines import ENGINES  # numpy only, as the TTA modes
    from segan_lib.apply.tta import TTA_MODES

    p = sub.add_parser("predict", help="segment new scans with a model bundle",
                       description="Segment one case given as files (--t1/--t1c/--t2/--flair, OUTPUT a .nii.gz) or "
                                   "every case of a folder in any layout the data layer reads (--input, OUTPUT a "
                                   "folder with <case>.nii.gz and summary.csv). Masks are in each scan's own grid. "
                                   "Exit status 1 when a case of a folder failed.")
    p.add_argument("--model", required=True, action="append", metavar="BUNDLE",
                   help="model bundle folder (segan export); repeated: an ensemble averaging their probabilities "
                        "(same contrasts, regions and preprocessing)")
    p.add_argument("--engine", default=None, choices=ENGINES,
                   help="what runs the segmentor: onnx (onnxruntime, no TensorFlow) or tensorflow (default: onnx "
                        "when the bundle has its ONNX file and onnxruntime is installed)")
    p.add_argument("--input", default=None, metavar="DIR", help="a case folder or a data set folder")
    p.add_argument("--layout", default=None, choices=LAYOUT_CHOICES,
                   help="with --input: skip detection and read the folder as this layout")
    _pattern_args(p, labels=False)
    for c in ("t1", "t1c", "t2", "flair"):
        p.add_argument(f"--{c}", default=None, metavar="FILE", help=f"the {c} volume of one case")
    p.add_argument("--output", required=True, metavar="OUT", help="mask file (.nii.gz) or, with --input, a folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--allow-missing", action="store_true", help="fill a missing contrast with zeros (with a warning)")
    p.add_argument("--probability", default=None, metavar="FILE", help="also write the probability map here")
    p.add_argument("--probabilities", action="store_true",
                   help="with --input and an output folder: also write <case>_probability.nii.gz beside each mask")
    p.add_argument("--tta", nargs="?", const="lr", default=None, choices=TTA_MODES,
                   help="test-time augmentation: average over the identity and the left-right flip (lr, the "
                        "default), or all in-plane flips (inplane, 4 passes)")
    p.add_argument("--min-component-ml", type=float, default=0.0, metavar="ML",
                   help="remove connected components (26-connected) smaller than ML ml from the mask, region by "
                        "region for three-region masks (default 0: keep all)")
    p.add_argument("--evaluate", action="store_true", help="with --input: Dice etc. in summary.csv where labels exist")
    p.add_argument("--label-scheme", dest="mask_label_scheme", default=None, choices=LABEL_SCHEME_CHOICES,
                   help="a three-region bundle (trained with --regions brats) writes its masks in this scheme's "
                        "label values (default: its training data's, from the bundle's card; needed for a bundle "
                        "whose card does not record it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)


def _add_evaluate_folder_parser(sub) -> None:
    p = sub.add_parser("evaluate-folder", help="score a folder of predicted masks against a data set's labels (BraTS)",
                       description="Score each prediction (<case>.nii.gz as segan predict writes them, or <case>_seg / "
                                   "<case>-seg, one level down allowed) on its scan's own grid against the label of "
                                   "that case in DATA: Dice, precision, sensitivity, specificity, HD95 (MedPy's and "
                                   "BraTS'), normalised surface Dice and volume difference, for WT and, with a "
                                   "multi-class prediction in the data set's label values, TC and ET. Writes "
                                   "cases.csv, summary.csv (mean, SD, median, bootstrap 95% CI per region) and "
                                   "definitions.txt.")
    p.add_argument("predictions", metavar="PREDICTIONS", help="folder of predicted masks")
    p.add_argument("data", metavar="DATA", help="data set folder with the labels, in any layout the data layer reads")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the tables (default PREDICTIONS/evaluation)")
    p.add_argument("--layout", default=None, choices=LAYOUT_CHOICES, help="skip detection and read DATA as this layout")
    p.add_argument("--on-bad-case", choices=["error", "skip"], default="error",
                   help="stop at the first bad case of DATA (error, default) or warn and leave it out (skip)")
    _pattern_args(p)
    p.add_argument("--on-missing", choices=["error", "skip"], default="error",
                   help="a case without a prediction or a prediction without a case: an error naming them (default) "
                        "or skip: score what matches and list the others")
    p.add_argument("--nsd-tolerance", type=float, default=1.0, metavar="MM",
                   help="tolerance of the normalised surface Dice in mm (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate_folder)


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
    real = p.add_argument_group("the phantom against real scans (step 08_phantom_vs_real; study.real_data)")
    real.add_argument("--real", dest="real_data", default=None, metavar="DATA",
                      help="a labelled real data set to compare the phantom with: intensities per tissue and tumour "
                           "shapes, figures/phantom_vs_real_* (without it the step is absent)")
    for key, flag in _LAYOUT_OPTIONS.items():
        real.add_argument(f"--real-{flag[2:]}", dest=f"real_{key}", default=None,
                          choices=LABEL_SCHEME_CHOICES if key == "label_scheme" else None,
                          metavar=None if key == "label_scheme" else ("C=NAME,..." if key == "contrast_names" else "TEMPLATE"),
                          help=f"{flag} for the --real data set (pattern layout; or a segan_layout.yaml in it)")
    p.set_defaults(func=cmd_study)


def _add_profiles_parser(sub) -> None:
    p = sub.add_parser("profiles", help="list the settings profiles",
                       description="List the shipped params/*.yaml profiles and those of the project root's params/ "
                                   "(one there overrides a shipped profile of the same name).")
    _profile_args(p)
    p.add_argument("--show", metavar="NAME", help="print one profile's resolved settings as JSON")
    p.set_defaults(func=cmd_profiles)


# one parser function per subcommand, in the order `segan --help` lists them
_SUBCOMMANDS = (
    _add_phantom_parser, _add_info_parser, _add_preprocess_parser, _add_split_parser, _add_train_parser,
    _add_evaluate_parser, _add_export_parser, _add_predict_parser, _add_evaluate_folder_parser, _add_study_parser,
    _add_profiles_parser,
)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        paths.pin_root(args.root)
        return int(args.func(args) or 0)
    except SeganError as exc:
        print(f"segan {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"segan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
