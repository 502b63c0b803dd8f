"""The nnU-Net v2 raw data set layout: dataset.json, one 3-D file per channel.

    Dataset001_BrainTumour/
        dataset.json                  channel_names {"0": "FLAIR", ...}, labels, file_ending
        imagesTr/<case>_0000.nii.gz   channel 0 of <case>, _0001 channel 1, ...
        labelsTr/<case>.nii.gz
        imagesTs/<case>_0000.nii.gz   no labels

Which split is read mirrors the MSD layout: the data set folder gives imagesTr with labelsTr;
the imagesTs folder itself (or a data set folder holding only imagesTs) gives the unlabelled test
images, opened with require_label=False. Each channel name is mapped to one of the project's
contrasts (`normalize_contrast`); an unknown name is refused. The label scheme comes from
dataset.json's "labels" (`scheme_from_labels`: plain {"edema": 1, ...} or region-based
{"whole tumor": [1, 2, 3], ...}), unless one is given explicitly; it is set on each Case.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

from segan_lib.constants import CONTRASTS
from segan_lib.data.case import LABEL_SCHEMES, Case
from segan_lib.data.layouts.common import (
    CONTRAST_ALIASES, Layout, Problem, _drop_duplicates, _listdir, _make_case, _problem, _resolve_grade, _why,
    normalize_contrast,
)
from segan_lib.data.volume_io import volume_suffix
from segan_lib.errors import DataError

DATASET_JSON = "dataset.json"

# what each non-zero value of a scheme's label files means; roles of label names are matched to these
SCHEME_ROLES: dict[str, dict[int, str]] = {
    "brats2015": {1: "necrosis", 2: "edema", 3: "non-enhancing", 4: "enhancing"},
    "brats2018": {1: "core", 2: "edema", 4: "enhancing"},
    "brats2023": {1: "core", 2: "edema", 3: "enhancing"},
    # MSD Task01 (and nnU-Net's conversions of it and of BraTS 2018-2021: 2 -> 1, 1 -> 2, 4 -> 3)
    "msd": {1: "edema", 2: "core", 3: "enhancing"},
}

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _words(name: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", str(name).lower()).split()


def label_roles(name: str) -> set[str]:
    """What a label name of dataset.json means: {'background'}, {'edema'}, {'enhancing'},
    {'core', 'necrosis'}, {'core', 'non-enhancing'} or {'core'} (necrotic / non-enhancing core);
    empty when not understood (e.g. 'resection cavity', or a name that says two things)."""
    words = _words(name)
    joined = "".join(words)
    if joined in ("background", "bg"):
        return {"background"}
    non_enhancing = "nonenhancing" in joined or "nonenhanced" in joined or bool({"net", "netc"} & set(words))
    necrosis = "necro" in joined or "ncr" in words
    edema = "edema" in joined or "oedema" in joined or bool({"ed", "snfh"} & set(words))
    enhancing = not non_enhancing and (bool({"enhancing", "enhanced", "enhancement", "et"} & set(words)))
    core = non_enhancing or necrosis or (words == ["core"] or words[-2:] == ["tumor", "core"]
                                         or words[-2:] == ["tumour", "core"])
    if sum((edema, enhancing, core)) != 1:
        return set()
    if edema:
        return {"edema"}
    if enhancing:
        return {"enhancing"}
    roles = {"core"}
    if necrosis and not non_enhancing:
        roles.add("necrosis")
    if non_enhancing and not necrosis:
        roles.add("non-enhancing")
    return roles


def _region_kind(name: str) -> str | None:
    """'wt', 'tc' or 'et' for a region name of region-based labels ('whole tumor', 'TC', ...)."""
    words = _words(name)
    joined = "".join(words)
    if joined in ("wt", "wholetumor", "wholetumour", "whole", "completetumor", "completetumour"):
        return "wt"
    if joined in ("tc", "tumorcore", "tumourcore", "core"):
        return "tc"
    if joined in ("et", "enhancingtumor", "enhancingtumour", "enhancing"):
        return "et"
    return None


def _int_value(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        return None
    return int(value)


def scheme_from_labels(labels: Any) -> str | None:
    """The key of LABEL_SCHEMES that dataset.json's "labels" describe, or None when none (or several) fit.

    Plain labels ({"background": 0, "edema": 1, "non-enhancing tumor": 2, "enhancing tumour": 3}) fit a
    scheme when their non-zero values are the scheme's and each name means what the scheme's value
    means (SCHEME_ROLES). Region-based labels ({"background": 0, "whole tumor": [1, 2, 3], "tumor core":
    [2, 3], "enhancing tumor": [3]}, nnU-Net's BraTS conversions) fit when whole tumour, tumour core and
    enhancing tumour are the scheme's regions.
    """
    if not isinstance(labels, Mapping) or not labels:
        return None
    entries = {str(k): v for k, v in labels.items()}
    if any(isinstance(v, (list, tuple)) for v in entries.values()):
        return _scheme_from_regions(entries)
    roles: dict[int, set[str]] = {}
    for name, raw in entries.items():
        value = _int_value(raw)
        if value is None or value in roles:
            return None
        meaning = label_roles(name)
        if value == 0:
            if meaning != {"background"}:
                return None
            continue
        if not meaning or meaning == {"background"}:
            return None
        roles[value] = meaning
    fits = [key for key, wanted in SCHEME_ROLES.items()
            if set(wanted) == set(roles) and all(wanted[v] in roles[v] for v in wanted)]
    return fits[0] if len(fits) == 1 else None


def _scheme_from_regions(entries: dict[str, Any]) -> str | None:
    regions: dict[str, frozenset[int]] = {}
    for name, raw in entries.items():
        values = raw if isinstance(raw, (list, tuple)) else [raw]
        ints = [_int_value(v) for v in values]
        if any(v is None for v in ints):
            return None
        if _words(name) in (["background"], ["bg"]):
            if ints != [0]:
                return None
            continue
        kind = _region_kind(name)
        if kind is None or kind in regions:
            return None
        regions[kind] = frozenset(ints)
    if set(regions) != {"wt", "tc", "et"}:
        return None
    fits = [key for key, scheme in LABEL_SCHEMES.items()
            if regions["wt"] == scheme.values - {0} and regions["tc"] == scheme.tc and regions["et"] == scheme.et]
    return fits[0] if len(fits) == 1 else None


def _understood_names() -> str:
    by_contrast: dict[str, list[str]] = {}
    for alias, contrast in CONTRAST_ALIASES.items():
        by_contrast.setdefault(contrast, []).append(alias)
    return "; ".join(f"{c}: {', '.join(by_contrast[c])}" for c in CONTRASTS)


def channel_contrasts(channel_names: Any, meta: Path) -> dict[str, int]:
    """Contrast -> channel index from dataset.json's "channel_names" ({"0": "FLAIR", "1": "T1w", ...}).

    A name that is none of the project's contrasts, or two channels of one contrast, is a DataError
    naming dataset.json, the channel and the name."""
    if not isinstance(channel_names, Mapping) or not channel_names:
        raise DataError(f'"channel_names" must map channel numbers to names, e.g. {{"0": "FLAIR", "1": "T1w"}}; '
                        f"got {channel_names!r}", path=meta)
    mapping: dict[str, int] = {}
    named: dict[str, str] = {}
    for key, name in channel_names.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise DataError(f'"channel_names" has the key {key!r}, which is not a channel number', path=meta) from None
        contrast = normalize_contrast(str(name))
        if contrast is None:
            raise DataError(f'channel {index} of "channel_names" is named {name!r}, which is none of the contrasts '
                            f"this project reads ({', '.join(CONTRASTS)}); names understood: {_understood_names()}",
                            path=meta)
        if contrast in mapping:
            raise DataError(f'channels {mapping[contrast]} ({named[contrast]!r}) and {index} ({name!r}) of '
                            f'"channel_names" are both {contrast}; expected one channel per contrast', path=meta)
        mapping[contrast] = index
        named[contrast] = str(name)
    return mapping


class NnUNetLayout(Layout):
    key = "nnunet"
    title = "nnU-Net v2 raw data set"
    pattern = (
        "dataset.json (channel_names, labels, file_ending) with imagesTr/<case>_0000.nii.gz (one file per "
        "channel) and labelsTr/<case>.nii.gz, or imagesTs/ alone"
    )
    # an nnU-Net folder also looks like MSD's (imagesTr/*.nii.gz): when both match, it is this one
    supersedes = ("msd",)

    def __init__(self, label_scheme: str | None = None):
        if label_scheme is not None and label_scheme not in LABEL_SCHEMES:
            raise DataError(f"unknown label scheme {label_scheme!r}: the label schemes are {', '.join(LABEL_SCHEMES)}")
        self.label_scheme = label_scheme

    def _folders(self, root: Path) -> tuple[Path, Path | None, Path] | None:
        """(images folder, labels folder or None, dataset.json path), or None without an images folder."""
        if root.name in ("imagesTr", "imagesTs"):
            images, base = root, root.parent
        else:
            base = root
            images = next((root / n for n in ("imagesTr", "imagesTs") if (root / n).is_dir()), None)
            if images is None:
                return None
        labels = base / ("labelsTr" if images.name == "imagesTr" else "labelsTs")
        return images, (labels if labels.is_dir() else None), base / DATASET_JSON

    def candidate_dirs(self, root, unreadable=None):  # not folder-per-case
        return iter(())

    def _read_json(self, meta: Path) -> dict:
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {DATASET_JSON} ({exc})", path=meta) from exc
        if not isinstance(info, dict):
            raise DataError(f"{DATASET_JSON} must hold a JSON object, not {type(info).__name__}", path=meta)
        return info

    def matches(self, root) -> bool:
        root = Path(root)
        folders = self._folders(root) if root.is_dir() else None
        if folders is None or not folders[2].is_file():
            return False
        try:
            info = self._read_json(folders[2])
        except DataError:  # unreadable: nnU-Net's if its images are named like nnU-Net's (the reader then says why)
            return any(_CHANNEL_FILE.match(_stem(n) or "") for n in _listdir(folders[0]))
        # MSD's own dataset.json has "modality" and no "file_ending"
        return "channel_names" in info or "file_ending" in info

    def _file_ending(self, info: dict, meta: Path) -> str:
        ending = info.get("file_ending", ".nii.gz")
        if not isinstance(ending, str) or not ending.startswith(".") or volume_suffix("x" + ending) is None:
            raise DataError(f'"file_ending" {ending!r} is not a volume format this project reads '
                            "(.nii.gz, .nii, .mha, .mhd, .nrrd)", path=meta)
        return ending

    def _scheme(self, info: dict, meta: Path, labelled: bool) -> str | None:
        if self.label_scheme is not None:
            return self.label_scheme
        labels = info.get("labels")
        found = scheme_from_labels(labels)
        if found is None and labelled:
            raise DataError(
                f'"labels" {json.dumps(labels)} match none of the label schemes this project knows '
                f"({_schemes_described()}); give the scheme explicitly (--label-scheme, data.label_scheme)",
                path=meta)
        return found

    def scan(self, root, grades=None, require_label=True):
        root = Path(root)
        folders = self._folders(root)
        if folders is None:
            return [], []
        images, labels, meta = folders
        if not meta.is_file():
            raise DataError(f"no {DATASET_JSON} beside {images.name}/: an nnU-Net data set has one", path=meta)
        info = self._read_json(meta)
        if "channel_names" not in info and "modality" not in info:  # older nnU-Net v2 wrote "modality"
            raise DataError(f'{DATASET_JSON} has no "channel_names"', path=meta)
        channels = channel_contrasts(info.get("channel_names", info.get("modality")), meta)
        ending = self._file_ending(info, meta)
        if images.name == "imagesTs" and require_label and labels is None:
            raise DataError(f"only test images ({images.name}/) and no labels; open it with require_label=False",
                            path=images)
        scheme = self._scheme(info, meta, labelled=labels is not None)
        unreadable: list = []
        names = _listdir(images, unreadable)
        if unreadable:
            raise DataError(f"cannot list the images folder ({_why(unreadable[0][1])})", path=images)
        by_case: dict[str, dict[int, Path]] = {}
        for name in names:
            if not name.endswith(ending):
                continue
            m = _CHANNEL_FILE.match(name[: -len(ending)])
            if m is not None and (images / name).is_file():
                by_case.setdefault(m.group("case"), {})[int(m.group("channel"))] = images / name
        index_contrast = {index: contrast for contrast, index in channels.items()}
        found: list[tuple[Case, Path]] = []
        problems: list[Problem] = []
        for case_id, files_by_channel in sorted(by_case.items()):
            unknown = sorted(set(files_by_channel) - set(index_contrast))
            if unknown:
                problems.append(_problem(case_id, f"has image files of channels {unknown} that {DATASET_JSON}'s "
                                         f"channel_names does not name (it names {sorted(index_contrast)})",
                                         files_by_channel[unknown[0]]))
                continue
            files = {index_contrast[i]: p for i, p in sorted(files_by_channel.items())}
            label = labels / f"{case_id}{ending}" if labels is not None else None
            if label is not None and label.is_file():
                files["label"] = label
            elif require_label:
                expected = label or images.parent / "labelsTr" / f"{case_id}{ending}"
                problems.append(_problem(case_id, f"missing label file: expected {expected.parent.name}/"
                                         f"{case_id}{ending} next to {images.name}/", expected))
                continue
            case = _make_case(case_id, self.key, files)
            case.scheme = scheme
            case.grade = _resolve_grade(case_id, None, grades)
            found.append((case, images / f"{case_id}_*{ending}"))
        cases, duplicates = _drop_duplicates(found)
        return cases, problems + duplicates


def _stem(name: str) -> str | None:
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else None


def _schemes_described() -> str:
    names = {"edema": "oedema", "core": "necrotic/non-enhancing core", "necrosis": "necrosis",
             "non-enhancing": "non-enhancing", "enhancing": "enhancing"}
    return "; ".join(f"{key}: " + ", ".join(f"{v} {names[r]}" for v, r in roles.items())
                     for key, roles in SCHEME_ROLES.items())
