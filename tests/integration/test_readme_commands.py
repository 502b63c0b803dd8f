"""Every shell command of README.md works: a documentation test.

README.md is read when the test runs (no line numbers here): each ```bash / ```sh / ```console
block is cut into commands (a trailing `\\` joins lines, `# ...` comments dropped, `$ ` prompts
of console blocks stripped). Each command must be classified in one of the two tables below:
RUN (run it, on the smoke profile, and what it must leave behind) or SKIP (why not). A README
command in neither fails the test, and so does a table entry the README no longer has, so a new
example must be classified.

What is run happens in a temporary copy of the project (SEGAN_ROOT and the current folder; its
`.venv` is a link to this environment, so `./run_all.sh` and `.venv/bin/segan` work there), on the
smoke phantom that tests/tiny_project.py generates, preprocesses and splits once for the module.
A command is rewritten to the smoke profile (`--profile quick|paper|transfer` -> `--profile
smoke`; `--profile smoke` added where the command takes it and gives none, except to `--resume`,
which takes the run's own settings), README placeholders become the test's data (PLACEHOLDERS)
and an optional `[--option]` is given. The commands of a block run in order in one shell (a
block is often "train, then resume"); each must exit with the status RUN states (0 unless
said). Blocks share the project folder, as a reader who runs the README top to bottom does: the
predict block uses the bundle the training block made.

Only the test that runs the commands is slow; the classification, parsing and rewriting tests
are instant and in the default tier, so an unclassified README command fails there too.

Wall time (`pytest tests/integration/test_readme_commands.py --slow`) on this project's 2-core
machine shared with other jobs: 177 s and 190 s (load average 4-7), of which the module fixture
(copy, phantom, cache, split) is 13 s and the commands the rest: two smoke trainings and a resume,
two evaluations, three predictions, the study driver twice up to its first notebook, two
`segan info`, `segan profiles`, `evaluate-folder`.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from segan_lib import paths


README = paths.checkout_root() / "README.md"
SHELL_FENCES = ("bash", "sh", "shell", "console")
SMOKE = "smoke"
BLOCK_TIMEOUT_S = 1800
# subcommands that have --profile only to refuse it (`segan profiles` lists them all; --show NAME prints one)
REFUSE_PROFILE = ("profiles",)


# ---------------------------------------------------------------- the classification
@dataclass(frozen=True)
class Run:
    """How a README command is run: extra arguments (with why), its exit status, files it must leave."""
    exit_code: int = 0
    extra: str = ""  # appended to the command, e.g. to limit the study to some steps
    why_extra: str = ""
    creates: tuple[str, ...] = ()  # paths relative to the project folder
    says: tuple[str, ...] = ()  # text its output must hold


# Commands as the README writes them (without their comment, spaces collapsed).
RUN: dict[str, Run] = {
    "./run_all.sh": Run(
        extra="--only phantom,preprocess,split,01_data_exploration",
        why_extra="the driver, its set-up check and a notebook through papermill; the whole smoke study (its models, "
                  "the recipe ablation, the transfer study) is tests/integration/test_notebooks.py's, which runs the same steps",
        creates=("data/phantom-smoke/splits.json", "figures/data_tumour_volumes.png")),
    ".venv/bin/segan info /path/to/BRATS2015 --deep": Run(),
    "./run_all.sh --profile paper --data /path/to/BRATS2015": Run(
        extra="--only preprocess,split,01_data_exploration",
        why_extra="the driver on a data folder of one's own up to its first notebook: models on 12x10x8-voxel "
                  "synthetic scans would say nothing the phantom's do not (the study's models: test_notebooks.py)",
        creates=("figures/data_subject_LGG.png",)),
    "segan train --profile quick --contrasts flair --critic-input concat --name flair_io": Run(
        creates=("runs/flair_io/checkpoints/last.npz", "runs/flair_io/bundle/card.json")),
    # after a kill: here after a finished run; it must take the run's own settings (profile, contrasts)
    "segan train --name flair_io --resume": Run(says=("resuming flair_io after epoch",)),
    "segan train --profile quick --contrasts t2 --init-from runs/flair_io --freeze-critic --name t2_from_flair_seg":
        Run(creates=("runs/t2_from_flair_seg/checkpoints/best.npz",),
            says=("initial segmentor and critic from runs/flair_io",)),
    "segan evaluate flair_io --split test": Run(creates=("runs/flair_io/eval_test.csv",)),
    "segan evaluate flair_io --split test --contrasts t2": Run(),
    "segan predict --model runs/NAME/bundle --t1 a_t1.nii.gz --t1c a_t1ce.nii.gz --t2 a_t2.nii.gz "
    "--flair a_flair.nii.gz --output a_mask.nii.gz": Run(creates=("a_mask.nii.gz",)),
    "segan predict --model runs/NAME/bundle --input /path/to/case_folder --output case_mask.nii.gz":
        Run(creates=("case_mask.nii.gz",)),
    "segan predict --model runs/NAME/bundle --input /path/to/BraTS --output masks/ [--evaluate]":
        Run(creates=("masks/summary.csv",)),
    "segan predict --model runs/NAME/bundle --input /path/to/BraTS --output masks_options/ --engine onnx --tta "
    "--min-component-ml 0.5 --probabilities":
        Run(creates=("masks_options/summary.csv",), says=("engine onnx",)),
    # the predict block's masks, scored against the phantom's labels (optional parts given)
    "segan evaluate-folder masks/ /path/to/BraTS [--out DIR] [--nsd-tolerance 1] [--on-missing skip]":
        Run(creates=("mask_scores/cases.csv", "mask_scores/summary.csv", "mask_scores/definitions.txt")),
    # the pattern layout on the real BRATS 2015 derivative beside the checkout (or a synthetic twin)
    'segan info --data ../shared/real_brats2015 --layout pattern --pattern "{case}/{contrast}_subtrMeanDivStd.nii.gz" '
    '--contrast-names flair=Flair,t1c=T1c --label "{case}/OTMultiClass.nii.gz" --label-scheme brats2015 '
    '--mask "{case}/brainmask.nii.gz"': Run(),
    # the installed package from a folder of one's own (here the project's environment, editable)
    "cd /path/to/my_project && ENV/bin/segan profiles": Run(),
}

SKIP: dict[str, str] = {
    "python3.11 -m venv ENV && ENV/bin/pip install '/path/to/checkout[cpu]'":
        "installs packages into a new environment; tests/test_install.py builds the wheel offline and runs it",
    "ENV/bin/segan --root /path/to/my_project train ...":
        "'...' stands for a training's options (the training commands below run; tests/test_cli.py has --root)",
    "./run_tests.sh": "the test suite itself: it would run this test again",
    "./run_all.sh --set study.ablation=true":
        "the quick study and 42 ablation models (an hour on a CPU); the smoke study runs the ablation's every step "
        "(study.ablation is on in the smoke profile) in tests/integration/test_notebooks.py",
    "SEGAN_TENSORFLOW=gpu scripts/setup_env.sh": "installs packages (TensorFlow's CUDA build) into the environment",
    "segan train --profile paper --data /data/BRATS2015 --contrasts flair --strategy mirrored":
        "GPU-only (every GPU of the machine); tests/integration/test_distribute.py trains mirrored on two logical CPUs",
    "TF_CONFIG='{\"cluster\": {\"worker\": [\"node1:2222\", \"node2:2222\"]}, \"task\": {\"type\": \"worker\", "
    "\"index\": 0}}' segan train --profile paper --data /data/BRATS2015 --contrasts flair --strategy multiworker":
        "needs a cluster (node1, node2 waiting for each other); test_distribute.py runs two local workers",
    "./run_all.sh --profile paper --data /data/BRATS2015 --jobs 4 --gpus 0,1,2,3":
        "GPU-only: four GPUs and the whole study on the user's BraTS copy; tests/integration/test_study.py "
        "checks --jobs/--gpus scheduling",
    "segan train --profile paper --set train.precision=mixed_bfloat16 ...":
        "'...' stands for the options of the commands above; mixed precision is meant for GPUs",
    "benchmarks/run_all.sh": "measurements that print timings, minutes to hours at the paper's shape, not checks",
    ".venv/bin/python benchmarks/bench_train_step.py": "a measurement at the paper's shape (timings, not a check)",
    ".venv/bin/python benchmarks/bench_pipeline.py": "a measurement (timings, not a check)",
    ".venv/bin/python benchmarks/bench_options.py": "a measurement of many configurations (timings, not a check)",
    ".venv/bin/python benchmarks/bench_predict.py": "a measurement on a 240x240x155 scan (timings, memory)",
    ".venv/bin/python benchmarks/bench_inference_options.py": "a measurement: trains two small models (minutes)",
    "segan predict --model runs/A/bundle --model runs/B/bundle --input /path/to/BraTS --output masks_ensemble/":
        "needs two bundles of the same inputs (the README's trainings make one per contrast); "
        "tests/apply/test_inference_options.py runs ensembles",
    ".venv/bin/python benchmarks/bench_gradient_rms.py": "a measurement at the paper's width (minutes on a CPU)",
    ".venv/bin/python benchmarks/bench_xla_determinism.py": "a measurement: a dozen trainings in fresh processes "
                                                             "(test_training's XLA test checks the same property)",
}

# README placeholder (a whole word of a command) -> what stands for it here: (what, value from the project)
PLACEHOLDERS: dict[str, tuple[str, object]] = {
    "/path/to/BRATS2015": ("a synthetic BRATS 2015 tree, 10 cases (tests/layout_trees.py)", lambda p: p.brats2015),
    "/path/to/BraTS": ("the smoke phantom (12 cases with labels)", lambda p: p.phantom),
    "/path/to/case_folder": ("one phantom case's folder", lambda p: p.case_folder),
    "runs/NAME/bundle": ("the bundle the training block wrote", lambda p: "runs/flair_io/bundle"),
    "../shared/real_brats2015": ("the real cases (tests/conftest.py's real_brats_path), else a synthetic tree "
                                 "with their file names", lambda p: p.real_brats),
    "ENV": ("this test's environment (its bin/ holds segan)", lambda p: Path(sys.prefix)),
    "/path/to/my_project": ("an empty folder of one's own", lambda p: p.own_folder),
    "DIR": ("an output folder in the project", lambda p: "mask_scores"),
}


# ---------------------------------------------------------------- reading the README
@dataclass(frozen=True)
class Command:
    text: str  # as written, lines joined, comment dropped
    line: int  # README line where it starts

    @property
    def key(self) -> str:
        return " ".join(self.text.split())


@dataclass(frozen=True)
class Block:
    line: int  # README line of the opening fence
    heading: str
    commands: tuple[Command, ...]


def _drop_comment(line: str) -> str:
    """The line without a shell comment: a `#` outside quotes at the start or after a space."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_blocks(text: str) -> list[Block]:
    """The shell blocks of a Markdown text, each with its commands."""
    blocks, heading = [], ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w-]*)", line)
        if not fence:
            i += 1
            continue
        marker, lang, start = fence.group(1), fence.group(2).lower(), i + 1
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang in SHELL_FENCES:
            blocks.append(Block(start, heading, tuple(_commands(body, console=lang == "console"))))
    return blocks


def _commands(body: list[tuple[int, str]], console: bool) -> list[Command]:
    out, pending, first = [], "", 0
    for number, raw in body:
        line = raw.strip()
        if not pending:
            if console:
                if not line.startswith("$ "):
                    continue  # printed output
                line = line[2:]
            first = number
        line = _drop_comment(line) if not line.endswith("\\") else line
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            out.append(Command(text, first))
    if pending.strip():
        out.append(Command(pending.strip(), first))
    return out


def readme_commands() -> list[Command]:
    return [c for b in readme_blocks(README.read_text()) for c in b.commands]


# ---------------------------------------------------------------- rewriting for the smoke profile
def _words(text: str) -> list[str]:
    words = shlex.split(text)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
        words.pop(0)
    return words


def _cli_parser() -> argparse.ArgumentParser:
    from segan_lib.cli import build_parser

    return build_parser()


def _subcommand(parser: argparse.ArgumentParser, words: list[str]) -> str | None:
    """The subcommand of `segan WORDS...`: the first word that is no global option nor its value."""
    words = iter(words)
    for word in words:
        action = parser._option_string_actions.get(word)
        if action is not None:
            if action.nargs != 0:  # e.g. --root DIR
                next(words, None)
            continue
        if not word.startswith("-"):
            return word
    return None


def takes_profile(text: str) -> bool:
    """Whether the command accepts --profile: `segan SUB` where SUB has it, or the study driver."""
    words = _words(text)
    if not words:
        return False
    program = Path(words[0]).name
    if words[0] in ("./run_all.sh", "run_all.sh"):
        return True
    if program == "segan":
        rest = words[1:]
    elif program.startswith("python") and words[1:3] in (["-m", "segan_lib"], ["-m", "segan_lib.cli"]):
        rest = words[3:]
    else:
        return False
    parser = _cli_parser()
    sub = _subcommand(parser, rest)
    if sub is None or sub in REFUSE_PROFILE:
        return False
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub in action.choices and "--profile" in action.choices[sub]._option_string_actions


def smoke_command(text: str, project) -> str:
    """The README command as run here: smoke profile, placeholders replaced, optional options given."""
    for placeholder, (_, value) in PLACEHOLDERS.items():
        # a whole word only, so /path/to/BraTS does not eat /path/to/BraTS2021
        text = re.sub(rf"(?<![\w./-]){re.escape(placeholder)}(?![\w.-])", lambda m: str(value(project)), text)
    text = re.sub(r"\[(--[\w-]+(?: [^\]\s]+)?)\]", r"\1", text)  # `[--evaluate]`, `[--out DIR]`: run with them
    if re.search(r"--profile[ =]", text):
        text = re.sub(r"--profile[ =]\S+", f"--profile {SMOKE}", text)
    elif takes_profile(text) and "--resume" not in _words(text):
        text += f" --profile {SMOKE}"
    return text


# ---------------------------------------------------------------- the project the commands run in
@dataclass
class Project:
    root: Path
    phantom: Path
    brats2015: Path
    case_folder: Path
    own_folder: Path
    real_brats: Path


def _copy_project(dest: Path) -> None:
    """The checkout's files as git sees them (tracked, and new ones not ignored): no environment, data or runs."""
    src = paths.checkout_root()
    listed = subprocess.run(["git", "-C", str(src), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True)
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.split("\0")):
            if (src / name).is_file():  # a tracked file deleted in the work tree is not copied
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / name, dest / name)
    else:  # not a git checkout (a source archive): everything but what the project generates
        generated = {".git", ".venv", "runs", "data", "figures", "build", "dist", "__pycache__", ".pytest_cache"}
        shutil.copytree(src, dest, ignore=lambda folder, names: {n for n in names if n in generated})
    (dest / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)


def make_real_brats_twin(root: Path) -> Path:
    """Two small cases named as the real BRATS 2015 derivative (../shared/real_brats2015/README.md): FLAIR and
    T1c only, z-scored names, a float label 0..4 in OTMultiClass, a brain mask."""
    import numpy as np

    from tests.layout_trees import nifti_affine, synthetic_image, tumour_label, write_nifti

    rng = np.random.default_rng(0)
    for case in ("brats_2013_pat0003_1", "brats_2013_pat0004_1"):
        label = tumour_label(layout="brats2015")
        affine = nifti_affine(label.shape)
        for name, offset in (("Flair", 400.0), ("T1c", 200.0)):
            write_nifti(root / case / f"{name}_subtrMeanDivStd.nii.gz", synthetic_image(label, rng, offset), affine)
        write_nifti(root / case / "OTMultiClass.nii.gz", label.astype(np.float32), affine)
        write_nifti(root / case / "brainmask.nii.gz", np.ones(label.shape, np.uint8), affine)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    from tests.conftest import real_brats_path
    from tests.layout_trees import make_brats2015_tree
    from tests.tiny_project import tiny_project

    base = tmp_path_factory.mktemp("readme")
    root = base / "project"
    _copy_project(root)
    with tiny_project(root, []) as profile:  # the smoke phantom, its cache and split
        phantom = profile.data_root
        case = sorted(p for p in phantom.iterdir() if p.is_dir())[0]
        # the README's one-case files a_t1.nii.gz ... in the project folder (BraTS 2018 names inside)
        for ours, theirs in (("t1", "t1"), ("t1ce", "t1ce"), ("t2", "t2"), ("flair", "flair")):
            shutil.copy(case / f"{case.name}_{theirs}.nii.gz", root / f"a_{ours}.nii.gz")
        make_brats2015_tree(base / "BRATS2015", n_hgg=6, n_lgg=4)  # enough cases to split 80/10/10
        (base / "my_project").mkdir()
        real = real_brats_path()
        real = Path(real).resolve() if real else make_real_brats_twin(base / "real_brats2015")
        yield Project(root, phantom, base / "BRATS2015", case, base / "my_project", real)


def _block_env(project: Project) -> dict:
    env = dict(os.environ)
    # SEGAN_SKIP_SETUP: the copy's .venv is a link to this environment, which its set-up must never
    # reinstall (an editable install from the copy would point this environment at a temporary folder)
    env.update(SEGAN_ROOT=str(project.root), TF_CPP_MIN_LOG_LEVEL="2", SEGAN_SKIP_SETUP="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    env.pop("SEGAN_STRATEGY", None)
    return env


def run_block(block: Block, project: Project, logs: Path) -> str | None:
    """Run a block's RUN commands in one shell, in order, stopping at the first that fails; what failed, or None."""
    planned = [(c, RUN[c.key], smoke_command(c.text, project) + (f" {RUN[c.key].extra}" if RUN[c.key].extra else ""))
               for c in block.commands if c.key in RUN]
    if not planned:
        return None
    logs.mkdir(parents=True, exist_ok=True)
    rc_file = logs / f"block{block.line}.rc"
    log_of = [logs / f"block{block.line}_{i}.log" for i in range(len(planned))]
    script = [f"cd {shlex.quote(str(project.root))}"]
    for i, (_, how, text) in enumerate(planned):
        # a brace group, not a subshell: a `cd` or `export` carries on to the block's next commands
        script += [f"{{ {text} ; }} > {shlex.quote(str(log_of[i]))} 2>&1",
                   f"rc=$?; echo \"{i} $rc\" >> {shlex.quote(str(rc_file))}",
                   f"[ \"$rc\" -eq {how.exit_code} ] || exit 0"]
    subprocess.run(["bash", "-c", "\n".join(script)], env=_block_env(project), timeout=BLOCK_TIMEOUT_S, check=True)
    exits = dict(line.split() for line in rc_file.read_text().splitlines()) if rc_file.exists() else {}
    for i, (cmd, how, text) in enumerate(planned):
        where = f"README line {cmd.line} ({block.heading}): {cmd.text}\n  ran as: {text}\n  "
        if str(i) not in exits:
            return where + "not reached"
        output = log_of[i].read_text()
        if int(exits[str(i)]) != how.exit_code:
            return where + f"exit {exits[str(i)]}, expected {how.exit_code}; its output ends:\n{output[-3000:]}"
        missing = [p for p in how.creates if not (project.root / p).exists()]
        if missing:
            return where + f"did not write {', '.join(missing)}; its output ends:\n{output[-3000:]}"
        unsaid = [words for words in how.says if words not in output]
        if unsaid:
            return where + f"its output does not say {unsaid}; it ends:\n{output[-3000:]}"
    return None


# ---------------------------------------------------------------- the tests
def test_every_readme_command_is_run_or_skipped_with_a_reason():
    commands = readme_commands()
    assert len(commands) >= len(RUN), "README.md holds fewer shell commands than this test runs: was it read?"
    keys = {c.key for c in commands}
    unclassified = [f"README line {c.line}: {c.key}" for c in commands if c.key not in RUN and c.key not in SKIP]
    assert not unclassified, ("README commands neither run nor skipped (add each to RUN or to SKIP with its reason "
                              "in tests/integration/test_readme_commands.py):\n" + "\n".join(unclassified))
    stale = sorted(k for k in list(RUN) + list(SKIP) if k not in keys)
    assert not stale, "entries for commands the README no longer has:\n" + "\n".join(stale)
    assert not set(RUN) & set(SKIP)
    assert all(reason.strip() for reason in SKIP.values())


def test_readme_parsing_joins_lines_drops_comments_and_prompts():
    text = "\n".join([
        "# Head", "```bash", "a --x 1   # says what", "TF='{\"k\": 1}' \\", "  b --y  # end", "", "# only a comment",
        "```", "```console", "$ c --z", "printed output", "```", "```python", "not_shell()", "```",
    ])
    blocks = readme_blocks(text)
    assert [[c.text for c in b.commands] for b in blocks] == [["a --x 1", "TF='{\"k\": 1}' b --y"], ["c --z"]]
    assert [c.line for c in blocks[0].commands] == [3, 4] and blocks[0].heading == "Head"


def test_commands_are_rewritten_to_the_smoke_profile(tmp_path):
    p = Project(tmp_path, tmp_path / "ph", tmp_path / "b15", tmp_path / "ph" / "case", tmp_path / "own",
                tmp_path / "real")
    assert smoke_command("segan train --profile quick --contrasts t2", p) == "segan train --profile smoke --contrasts t2"
    assert smoke_command("segan train --name x --resume", p) == "segan train --name x --resume"  # its own settings
    assert smoke_command("./run_all.sh", p) == "./run_all.sh --profile smoke"
    assert smoke_command("segan profiles --show quick", p) == "segan profiles --show quick"  # refuses --profile
    assert smoke_command("segan evaluate r --split test", p) == "segan evaluate r --split test"  # takes no profile
    assert smoke_command(".venv/bin/segan info /path/to/BRATS2015 --deep", p) == \
        f".venv/bin/segan info {tmp_path / 'b15'} --deep --profile smoke"
    assert smoke_command("segan predict --input /path/to/BraTS --output m/ [--evaluate]", p) == \
        f"segan predict --input {tmp_path / 'ph'} --output m/ --evaluate"
    assert smoke_command("segan evaluate-folder m/ /path/to/BraTS [--out DIR] [--on-missing skip]", p) == \
        f"segan evaluate-folder m/ {tmp_path / 'ph'} --out mask_scores --on-missing skip"
    assert smoke_command("segan info /path/to/BraTS2021", p) == "segan info /path/to/BraTS2021 --profile smoke"
    assert smoke_command("cd /path/to/my_project && ENV/bin/segan profiles", p) == \
        f"cd {tmp_path / 'own'} && {sys.prefix}/bin/segan profiles"  # `cd` takes no profile: nothing added
    assert smoke_command("segan --root /path/to/my_project phantom", p) == \
        f"segan --root {tmp_path / 'own'} phantom --profile smoke"  # a global option before the subcommand


def test_a_block_runs_in_one_shell_and_stops_at_a_failing_command(tmp_path, monkeypatch):
    p = Project(tmp_path, tmp_path, tmp_path, tmp_path, tmp_path, tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "RUN", {
        "export WORD=carried": Run(), "echo $WORD > said.txt": Run(creates=("said.txt",)),
        "bash -c 'exit 3'": Run(exit_code=3), "false": Run(), "touch never": Run()})
    text = "\n".join(["# H", "```bash", "touch unclassified", "export WORD=carried", "echo $WORD > said.txt",
                      "bash -c 'exit 3'   # a documented status", "false", "touch never", "```"])
    failure = run_block(readme_blocks(text)[0], p, tmp_path / "logs")
    assert (tmp_path / "said.txt").read_text() == "carried\n"  # one shell: the export carried on
    assert failure is not None and "README line 7 (H): false" in failure and "exit 1, expected 0" in failure
    assert not (tmp_path / "never").exists()  # the block stopped there
    assert not (tmp_path / "unclassified").exists()  # only RUN's commands run
    monkeypatch.setitem(RUN, "false", Run(exit_code=1, creates=("nowhere.txt",)))
    failure = run_block(readme_blocks(text)[0], p, tmp_path / "logs2")
    assert "README line 7 (H): false" in failure and "did not write nowhere.txt" in failure


@pytest.mark.slow  # trains two smoke models (and resumes one), runs the study driver's data steps
def test_every_runnable_readme_command_works(project, tmp_path):
    failures = [run_block(block, project, tmp_path / "logs") for block in readme_blocks(README.read_text())]
    failures = [f for f in failures if f]
    assert not failures, "\n\n".join(failures)
