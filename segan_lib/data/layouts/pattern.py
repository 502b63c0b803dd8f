"""The pattern layout: files named by templates, for any naming the release readers do not know.

    --layout pattern --pattern "{case}/{contrast}_subtrMeanDivStd.nii.gz" \\
        --contrast-names flair=Flair,t1c=T1c --label "{case}/OTMultiClass.nii.gz" \\
        --label-scheme brats2015 --mask "{case}/brainmask.nii.gz"

or the same settings in `segan_layout.yaml` in the data folder (found by `detect_layout`, where it
wins over the name-based detection of the releases):

    pattern: "{case}/{contrast}_subtrMeanDivStd.nii.gz"
    contrast_names: {flair: Flair, t1c: T1c}      # or "flair=Flair,t1c=T1c"; default: t1, t1c, t2, flair
    label_pattern: "{case}/OTMultiClass.nii.gz"
    label_scheme: brats2015                       # a key of LABEL_SCHEMES; needed with label_pattern
    mask_pattern: "{case}/brainmask.nii.gz"       # optional brain mask, Case.files[MASK_KEY]

Templates are paths relative to the data folder, '/'-separated. `{case}` (required, in every
template) is the case id: a folder or part of a file name, and where it appears several times it
is the same text each time ("{case}/{case}_{contrast}.nii.gz"). `{contrast}` (required in the image
template, nowhere else) is each contrast's name in the files; `*` matches any text inside one name.
Names are matched case-sensitively. Options given explicitly win over the YAML file's, key by key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from segan_lib.constants import CONTRASTS
from segan_lib.data.case import LABEL_SCHEMES, MASK_KEY, Case
from segan_lib.data.layouts.common import (
    Layout, Problem, _describe, _drop_duplicates, _listdir, _make_case, _no_image_problem, _problem,
    _resolve_grade, _warn_unreadable, normalize_contrast,
)
from segan_lib.errors import DataError

LAYOUT_FILE = "segan_layout.yaml"
# the settings, as the YAML file, the profile's data section (data.<key>) and the options name them
PATTERN_SETTINGS: dict[str, str] = {
    "pattern": "--pattern",
    "contrast_names": "--contrast-names",
    "label_pattern": "--label",
    "mask_pattern": "--mask",
    "label_scheme": "--label-scheme",
}

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def parse_contrast_names(value: Any, where: str = "--contrast-names") -> dict[str, str]:
    """Project contrast -> its name in the files, from "flair=Flair,t1c=T1c" or {flair: Flair, t1c: T1c}.

    None gives every contrast under its own name; an entry without '=' ("flair") keeps the name.
    """
    if value is None:
        return {c: c for c in CONTRASTS}
    if isinstance(value, str):
        items = []
        for part in (p.strip() for p in value.split(",")):
            if part:
                ours, _, theirs = part.partition("=")
                items.append((ours.strip(), theirs.strip() if _ else ours.strip()))
    elif isinstance(value, Mapping):
        items = [(str(k).strip(), v) for k, v in value.items()]
    else:
        raise DataError(f"{where}: expected contrast=name pairs like flair=Flair,t1c=T1c, got {value!r}")
    if not items:
        raise DataError(f"{where}: names no contrast (expected contrast=name pairs like flair=Flair,t1c=T1c)")
    names: dict[str, str] = {}
    for ours, theirs in items:
        contrast = ours if ours in CONTRASTS else normalize_contrast(ours)
        if contrast is None:
            raise DataError(f"{where}: unknown contrast {ours!r}; the contrasts are {', '.join(CONTRASTS)}")
        if not isinstance(theirs, str) or not theirs or "/" in theirs or "{" in theirs or "}" in theirs:
            raise DataError(f"{where}: the name of {contrast} must be non-empty text without '/', '{{' or '}}', "
                            f"got {theirs!r}")
        if contrast in names:
            raise DataError(f"{where}: {contrast} is named twice")
        if theirs in names.values():
            raise DataError(f"{where}: two contrasts are named {theirs!r}")
        names[contrast] = theirs
    return {c: names[c] for c in CONTRASTS if c in names}


class Template:
    """One '/'-separated file template with {case}, optionally {contrast}, and '*'."""

    def __init__(self, text: Any, what: str, *, contrasts: Mapping[str, str] | None = None):
        """`what` names the setting in errors; `contrasts` (project name -> name in the files) is given for
        the image template, which must hold {contrast}; the others must not."""
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{what}: expected a file template like '{{case}}/{{case}}_{{contrast}}.nii.gz', "
                            f"got {text!r}")
        self.text = text.strip()
        self.what = what
        used = _PLACEHOLDER.findall(self.text)
        unknown = sorted({u for u in used if u not in ("case", "contrast")})
        if unknown:
            raise DataError(f"{what} {self.text!r}: unknown placeholder {{{unknown[0]}}}; "
                            "the placeholders are {case} and {contrast}")
        if "{" in _PLACEHOLDER.sub("", self.text) or "}" in _PLACEHOLDER.sub("", self.text):
            raise DataError(f"{what} {self.text!r}: unbalanced '{{' or '}}'")
        if "case" not in used:
            raise DataError(f"{what} {self.text!r}: has no {{case}}, so cases cannot be told apart "
                            "(e.g. '{case}/...' for a folder per case, or '{case}_...' in a file name)")
        if contrasts is not None and "contrast" not in used:
            raise DataError(f"{what} {self.text!r}: has no {{contrast}}, so the contrasts cannot be told apart")
        if contrasts is None and "contrast" in used:
            raise DataError(f"{what} {self.text!r}: {{contrast}} belongs in the image pattern only")
        self.components = self.text.split("/")
        if self.text.startswith("/") or any(c in ("", ".", "..") for c in self.components):
            raise DataError(f"{what} {self.text!r}: must be a path inside the data folder "
                            "(no leading '/', no empty, '.' or '..' parts)")
        self.contrasts = dict(contrasts or {})
        self._by_name = {name: contrast for contrast, name in self.contrasts.items()}
        alternatives = "|".join(re.escape(n) for n in sorted(self._by_name, key=len, reverse=True))
        self._loose = [self._component_regex(c, alternatives) for c in self.components]
        self._full = re.compile(self._full_regex(alternatives))

    @staticmethod
    def _component_regex(component: str, alternatives: str) -> re.Pattern | None:
        """A regex one name must match at this depth (placeholders loose), or None for a literal name."""
        if "{" not in component and "*" not in component:
            return None
        parts = re.split(r"(\{case\}|\{contrast\}|\*)", component)
        rx = "".join(".+" if p == "{case}" else f"(?:{alternatives})" if p == "{contrast}" else "[^/]*" if p == "*"
                     else re.escape(p) for p in parts)
        return re.compile(rx)

    def _full_regex(self, alternatives: str) -> str:
        out, seen = [], set()
        for part in re.split(r"(\{case\}|\{contrast\}|\*)", self.text):
            if part in ("{case}", "{contrast}"):
                name = part[1:-1]
                if name in seen:
                    out.append(f"(?P={name})")
                else:
                    seen.add(name)
                    out.append("(?P<case>[^/]+)" if name == "case" else f"(?P<contrast>{alternatives})")
            elif part == "*":
                out.append("[^/]*")
            else:
                out.append(re.escape(part))
        return "".join(out)

    def example(self, case_id: str) -> str:
        """The template with {case} filled in (what a missing file was expected as)."""
        return self.text.replace("{case}", case_id)

    def find(self, root: Path, unreadable: list) -> dict[tuple[str, str | None], list[Path]]:
        """(case id, contrast or None) -> the files under `root` that match, each list in name order."""
        current: list[tuple[str, Path]] = [("", root)]
        last = len(self.components) - 1
        for depth, (component, rx) in enumerate(zip(self.components, self._loose)):
            following: list[tuple[str, Path]] = []
            for rel, folder in current:
                if rx is None:  # a literal name: no need to list the folder
                    names = [component] if (folder / component).exists() else []
                else:
                    names = [n for n in _listdir(folder, unreadable) if rx.fullmatch(n)]
                for name in names:
                    path = folder / name
                    if path.is_file() if depth == last else path.is_dir():
                        following.append((f"{rel}/{name}" if rel else name, path))
            current = following
        found: dict[tuple[str, str | None], list[Path]] = {}
        for rel, path in current:
            m = self._full.fullmatch(rel)
            if m is None:  # e.g. {case} spelled differently in two places
                continue
            contrast = self._by_name[m.group("contrast")] if self.contrasts else None
            found.setdefault((m.group("case"), contrast), []).append(path)
        return found


@dataclass(frozen=True)
class PatternSpec:
    """The checked settings of the pattern layout."""

    images: Template
    contrast_names: dict[str, str]
    label: Template | None = None
    mask: Template | None = None
    label_scheme: str | None = None
    sources: dict[str, str] = field(default_factory=dict)  # setting -> where it came from, for messages

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> "PatternSpec":
        """From the settings (keys of PATTERN_SETTINGS; None = not given); `sources` names where each
        came from ('--pattern', 'segan_layout.yaml in DIR') in errors."""
        sources = dict(sources or {})

        def where(key: str) -> str:
            return sources.get(key, f"{PATTERN_SETTINGS[key]} (data.{key})")

        if settings.get("pattern") is None:
            raise DataError(f"the pattern layout needs a file pattern: give --pattern (data.pattern) or write "
                            f"pattern: in {LAYOUT_FILE} in the data folder, e.g. "
                            "'{case}/{case}_{contrast}.nii.gz'")
        names = parse_contrast_names(settings.get("contrast_names"), where("contrast_names"))
        images = Template(settings["pattern"], where("pattern"), contrasts=names)
        label = Template(settings["label_pattern"], where("label_pattern")) \
            if settings.get("label_pattern") is not None else None
        mask = Template(settings["mask_pattern"], where("mask_pattern")) \
            if settings.get("mask_pattern") is not None else None
        scheme = settings.get("label_scheme")
        if scheme is not None and scheme not in LABEL_SCHEMES:
            raise DataError(f"{where('label_scheme')}: unknown label scheme {scheme!r}; the label schemes are "
                            f"{', '.join(LABEL_SCHEMES)}")
        if label is not None and scheme is None:
            raise DataError(f"{where('label_pattern')} names label files but no label scheme says what their values "
                            f"mean: give --label-scheme (data.label_scheme, or label_scheme: in {LAYOUT_FILE}), "
                            f"one of {', '.join(LABEL_SCHEMES)}")
        return cls(images, names, label, mask, scheme, sources)


def read_layout_file(path: Path) -> dict[str, Any]:
    """The settings of a segan_layout.yaml (keys of PATTERN_SETTINGS); DataError naming the file otherwise."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read the layout file ({' '.join(str(exc).split())})", path=path) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataError(f"the layout file must hold a mapping of settings ({', '.join(PATTERN_SETTINGS)})", path=path)
    if raw.get("layout", "pattern") != "pattern":
        raise DataError(f"layout: {raw['layout']!r}: a {LAYOUT_FILE} describes the pattern layout only", path=path)
    unknown = sorted(set(raw) - set(PATTERN_SETTINGS) - {"layout"})
    if unknown:
        raise DataError(f"unknown setting(s) {', '.join(map(str, unknown))}; known: {', '.join(PATTERN_SETTINGS)}",
                        path=path)
    return {k: v for k, v in raw.items() if k in PATTERN_SETTINGS}


class PatternLayout(Layout):
    key = "pattern"
    title = "files named by a pattern"
    pattern = (f"files named by --pattern (and --label, --mask), or by the {LAYOUT_FILE} in the data folder, "
               "e.g. {case}/{case}_{contrast}.nii.gz")

    def __init__(self, settings: Mapping[str, Any] | None = None):
        """`settings`: keys of PATTERN_SETTINGS given explicitly (None values = not given); they win over the
        data folder's segan_layout.yaml, key by key."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(PATTERN_SETTINGS))
        if unknown:
            raise DataError(f"unknown pattern layout setting(s) {', '.join(unknown)}; known: {', '.join(PATTERN_SETTINGS)}")
        self.settings = {k: v for k, v in settings.items() if v is not None}

    def matches(self, root) -> bool:
        return (Path(root) / LAYOUT_FILE).is_file()

    def candidate_dirs(self, root, unreadable=None):  # cases come from the templates
        return iter(())

    def spec(self, root: str | Path) -> PatternSpec:
        """The settings for the data folder `root`: its segan_layout.yaml, overridden by the explicit ones."""
        layout_file = Path(root) / LAYOUT_FILE
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if layout_file.is_file():
            from_file = read_layout_file(layout_file)
            merged.update(from_file)
            sources.update({k: f"{layout_file}: {k}" for k in from_file})
        merged.update(self.settings)
        for k in self.settings:
            sources.pop(k, None)
        return PatternSpec.from_settings(merged, sources)

    def scan(self, root, grades=None, require_label=True):
        root = Path(root)
        spec = self.spec(root)
        if require_label and spec.label is None:
            raise DataError(f"no label pattern: give --label (data.label_pattern, or label_pattern: in {LAYOUT_FILE}), "
                            "e.g. '{case}/{case}_seg.nii.gz', or open the data set with require_label=False", path=root)
        unreadable: list = []
        images = spec.images.find(root, unreadable)
        labels = spec.label.find(root, unreadable) if spec.label is not None else {}
        masks = spec.mask.find(root, unreadable) if spec.mask is not None else {}
        _warn_unreadable(unreadable, root)
        if not images:
            named = ", ".join(f"{c}={n}" for c, n in spec.contrast_names.items())
            raise DataError(f"no file matches the pattern {spec.images.text!r} ({{contrast}} one of {named}; "
                            "names are matched case-sensitively)", path=root)
        with_images = {cid for cid, _ in images}
        problems: list[Problem] = []
        for cid in sorted({cid for cid, _ in labels} | {cid for cid, _ in masks}):
            if cid not in with_images:
                problems.append(_no_image_problem(cid, root, spec.images.example(cid)))
        found: list[tuple[Case, Path]] = []
        for case_id in sorted(with_images):
            files: dict[str, Path] = {}
            case_problems = []
            wanted = [(c, images.get((case_id, c), []), spec.images) for c in spec.contrast_names]
            wanted += [("label", labels.get((case_id, None), []), spec.label),
                       (MASK_KEY, masks.get((case_id, None), []), spec.mask)]
            for what, paths, template in wanted:
                if len(paths) > 1:
                    case_problems.append(_problem(case_id, f"several {_describe(what)} files match "
                                                  f"{template.text!r}: " + " and ".join(map(str, paths))
                                                  + " (expected one)"))
                elif paths:
                    files[what] = paths[0]
            if "label" not in files and require_label and not case_problems:
                case_problems.append(_problem(case_id, f"missing label file: no file matches "
                                              f"{spec.label.text!r} (expected {spec.label.example(case_id)})",
                                              root / spec.label.example(case_id)))
            if case_problems:
                problems.extend(case_problems)
                continue
            case = _make_case(case_id, self.key, files)
            case.scheme = spec.label_scheme
            case.grade = _resolve_grade(case_id, None, grades)
            found.append((case, next(p for k, p in files.items() if k in CONTRASTS)))
        cases, duplicates = _drop_duplicates(found)
        return cases, problems + duplicates
