"""The registry of layouts and the detection of a data set folder's layout.

`LAYOUTS` maps each layout's key ('brats2015', 'brats2018', 'brats2023', 'msd', 'nnunet',
'pattern') to its reader; `detect_layout` finds the one layout whose files a folder holds (names
only; a `segan_layout.yaml` in the folder wins: it is the pattern layout), `resolve_layout` gives
the reader for a folder with the layout settings given (pattern templates, an explicit label
scheme), and `layout_title` spells a key out for people.

The release layouts carry their own label scheme (LABEL_SCHEMES has their keys); nnunet and
pattern have none of their own and set `Case.scheme` from dataset.json or the settings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from segan_lib.data.case import LABEL_SCHEMES
from segan_lib.data.layouts.brats2015 import Brats2015Layout
from segan_lib.data.layouts.brats2018 import Brats2018Layout
from segan_lib.data.layouts.brats2023 import Brats2023Layout
from segan_lib.data.layouts.common import Layout
from segan_lib.data.layouts.msd import MSDLayout
from segan_lib.data.layouts.nnunet import NnUNetLayout
from segan_lib.data.layouts.pattern import LAYOUT_FILE, PATTERN_SETTINGS, PatternLayout
from segan_lib.errors import DataError

LAYOUTS: dict[str, Layout] = {
    layout.key: layout
    for layout in (Brats2015Layout(), Brats2018Layout(), Brats2023Layout(), MSDLayout(), NnUNetLayout(),
                   PatternLayout())
}
# layouts whose labels follow a scheme named by their data (dataset.json) or settings, not one of their own
SCHEMELESS_LAYOUTS = ("nnunet", "pattern")
assert set(LAYOUTS) - set(SCHEMELESS_LAYOUTS) <= set(LABEL_SCHEMES)


def layout_title(key: str) -> str:
    """'BraTS 2018-2021 NIfTI (brats2018)' for 'brats2018'."""
    layout = LAYOUTS.get(key)
    return f"{layout.title} ({key})" if layout is not None else key


def _expected_layouts() -> str:
    return "\n".join(f"  - {key} ({layout.title}): {layout.pattern}" for key, layout in LAYOUTS.items())


def detect_layout(root: str | Path) -> str:
    """The key of the one layout whose files `root` holds ('brats2015', 'brats2018', 'brats2023', 'msd',
    'nnunet'), or 'pattern' when the folder holds a segan_layout.yaml.

    Looks at names only. No match (also an empty or missing folder) or more than one match is a
    DataError. An nnU-Net folder also looks like MSD's; it is taken for nnU-Net's (`supersedes`).
    """
    root = Path(root)
    reason = ""
    if not root.exists():
        reason = " (the folder does not exist)"
    elif not root.is_dir():
        reason = " (it is a file, not a folder)"
    else:
        try:
            if not any(root.iterdir()):
                reason = " (the folder is empty)"
        except OSError as exc:  # e.g. no read permission: say so, not that no layout matched
            why = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or exc
            reason = f" (the folder cannot be listed: {why})"
    if reason:
        raise DataError(f"no BraTS layout recognised in {root}{reason}: expected one of\n{_expected_layouts()}")
    if (root / LAYOUT_FILE).is_file():  # the user's own description of the files wins over their names
        return "pattern"
    found = [key for key, layout in LAYOUTS.items() if layout.matches(root)]
    superseded = {k for key in found for k in getattr(LAYOUTS[key], "supersedes", ())}
    found = [key for key in found if key not in superseded]
    if not found:
        raise DataError(f"no BraTS layout recognised in {root}: expected one of\n{_expected_layouts()}")
    if len(found) > 1:
        raise DataError(
            f"several BraTS layouts recognised in {root}: {', '.join(layout_title(k) for k in found)}; "
            "keep one release per folder or pass layout= explicitly"
        )
    return found[0]


def resolve_layout(root: str | Path, layout: "str | Layout | None" = None,
                   settings: Mapping[str, Any] | None = None) -> Layout:
    """The reader for the data set folder `root`.

    layout: a key of LAYOUTS, None to detect it, or a reader already set up (returned as it is).
    settings: the layout settings given (keys of PATTERN_SETTINGS, None values = not given): the
        pattern templates and contrast names, which imply and need the pattern layout, and
        label_scheme, which the nnunet and pattern layouts take (the releases have their own).
    """
    root = Path(root)
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    unknown = sorted(set(given) - set(PATTERN_SETTINGS))
    if unknown:
        raise DataError(f"unknown layout setting(s) {', '.join(unknown)}; known: {', '.join(PATTERN_SETTINGS)}")
    if isinstance(layout, Layout):
        if given:
            raise DataError(f"layout settings {', '.join(sorted(given))} given with a reader already set up")
        return layout
    pattern_only = [PATTERN_SETTINGS[k] for k in PATTERN_SETTINGS if k in given and k != "label_scheme"]
    if layout is None:
        key = "pattern" if pattern_only else detect_layout(root)
    else:
        if layout not in LAYOUTS:
            raise DataError(f"unknown layout {layout!r}: known layouts are {', '.join(LAYOUTS)}")
        if not root.is_dir():
            raise DataError(f"data set folder {root} does not exist or is not a folder")
        key = layout
    if key == "pattern":
        return PatternLayout(given)
    if pattern_only:
        raise DataError(f"{', '.join(pattern_only)} describe files for the pattern layout, but the layout of "
                        f"{root} is {layout_title(key)}; give --layout pattern (data.layout: pattern) or leave them out")
    if key == "nnunet":
        return NnUNetLayout(label_scheme=given.get("label_scheme"))
    if "label_scheme" in given:
        raise DataError(f"--label-scheme {given['label_scheme']} (data.label_scheme): the {layout_title(key)} layout "
                        f"has its own label scheme; an explicit one is for the {' and '.join(SCHEMELESS_LAYOUTS)} "
                        "layouts")
    return LAYOUTS[key]
