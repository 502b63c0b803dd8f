"""The registry of layouts and the detection of a data set folder's layout.

`LAYOUTS` maps each layout's key ('brats2015', 'brats2018', 'brats2023', 'msd') to its
reader; `detect_layout` finds the one layout whose files a folder holds (names only) and
`layout_title` spells a key out for people.
"""
from __future__ import annotations

from pathlib import Path

from segan_lib.data.case import LABEL_SCHEMES
from segan_lib.data.layouts.brats2015 import Brats2015Layout
from segan_lib.data.layouts.brats2018 import Brats2018Layout
from segan_lib.data.layouts.brats2023 import Brats2023Layout
from segan_lib.data.layouts.common import Layout
from segan_lib.data.layouts.msd import MSDLayout
from segan_lib.errors import DataError

LAYOUTS: dict[str, Layout] = {
    layout.key: layout for layout in (Brats2015Layout(), Brats2018Layout(), Brats2023Layout(), MSDLayout())
}
assert set(LAYOUTS) == set(LABEL_SCHEMES)


def layout_title(key: str) -> str:
    """'BraTS 2018-2021 NIfTI (brats2018)' for 'brats2018'."""
    layout = LAYOUTS.get(key)
    return f"{layout.title} ({key})" if layout is not None else key


def _expected_layouts() -> str:
    return "\n".join(f"  - {key} ({layout.title}): {layout.pattern}" for key, layout in LAYOUTS.items())


def detect_layout(root: str | Path) -> str:
    """The key of the one layout whose files `root` holds ('brats2015', 'brats2018', 'brats2023', 'msd').

    Looks at names only. No match (also an empty or missing folder) or more than one
    match is a DataError.
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
    found = [key for key, layout in LAYOUTS.items() if layout.matches(root)]
    if not found:
        raise DataError(f"no BraTS layout recognised in {root}: expected one of\n{_expected_layouts()}")
    if len(found) > 1:
        raise DataError(
            f"several BraTS layouts recognised in {root}: {', '.join(layout_title(k) for k in found)}; "
            "keep one release per folder or pass layout= explicitly"
        )
    return found[0]
