"""The BRATS 2015 MetaImage layout: {HGG,LGG}/<case>/VSD.Brain.XX.O.MR_<contrast>.<id>/<...>.mha.

Each contrast and the label sit in a folder of their own inside the case folder, each
holding one .mha (or .mhd) file; the label folder is VSD.Brain_3more.XX.O.OT.<id>, and
the test set's cases sit under HGG_LGG/ (grade unknown). A case is listed with the contrasts
it has folders for (at least one); a contrast folder without its .mha is a problem.
"""
from __future__ import annotations

import re
from pathlib import Path

from segan_lib.constants import CONTRASTS
from segan_lib.data.layouts.common import (
    Layout, Problem, _describe, _listdir, _make_case, _no_image_problem, _problem, _why,
)


class Brats2015Layout(Layout):
    key = "brats2015"
    title = "BRATS 2015 MetaImage"
    pattern = (
        "{HGG,LGG}/<case>/VSD.Brain.XX.O.MR_{T1,T1c,T2,Flair}.<id>/*.mha "
        "with the label in VSD.Brain_3more.XX.O.OT.<id>/*.mha"
    )
    container_names = {"HGG": "HGG", "LGG": "LGG", "HGG_LGG": None}

    _MR = re.compile(r"^VSD\.Brain\.XX\.O\.MR_(T1|T1c|T2|Flair)\.\d+$", re.IGNORECASE)
    _OT = re.compile(r"^VSD\.Brain[^.]*\.XX\.O\.OT\.\d+$", re.IGNORECASE)
    _NAMES = {"t1": "t1", "t1c": "t1c", "t2": "t2", "flair": "flair"}
    _SUFFIXES = (".mha", ".mhd")

    def is_case_dir(self, folder: Path) -> bool:
        return any(self._MR.match(n) or self._OT.match(n) for n in _listdir(folder))

    def case_from_dir(self, folder, grade, require_label):
        case_id = folder.name
        dirs: dict[str, list[Path]] = {}
        for name in _listdir(folder):
            m = self._MR.match(name)
            if m:
                dirs.setdefault(self._NAMES[m.group(1).lower()], []).append(folder / name)
            elif self._OT.match(name):
                dirs.setdefault("label", []).append(folder / name)
        files: dict[str, Path] = {}
        problems: list[Problem] = []
        wanted = list(CONTRASTS) + ["label"]
        for what in wanted:
            pattern = (
                "VSD.Brain_3more.XX.O.OT.<id>/*.mha"
                if what == "label"
                else f"VSD.Brain.XX.O.MR_{_MR_NAME[what]}.<id>/*.mha"
            )
            candidates = dirs.get(what, [])
            if not candidates:
                if what != "label" or not require_label:  # a case has the contrasts it has (Case.contrasts)
                    continue
                problems.append(_problem(case_id, f"missing {_describe(what)} file: no {pattern} in the case folder",
                                         folder / pattern.replace("<id>", "*")))
                continue
            if len(candidates) > 1:
                problems.append(_problem(case_id, f"several {_describe(what)} folders: "
                                         + " and ".join(str(c) for c in candidates) + " (expected one)"))
                continue
            unreadable: list = []
            inner = [n for n in _listdir(candidates[0], unreadable) if n.lower().endswith(self._SUFFIXES)]
            if unreadable:
                problems.append(_problem(case_id, f"cannot list the {_describe(what)} folder "
                                         f"({_why(unreadable[0][1])})", candidates[0]))
                continue
            if not inner:
                problems.append(_problem(case_id, f"missing {_describe(what)} file: no .mha file in the folder",
                                         candidates[0] / "*.mha"))
                continue
            if len(inner) > 1:
                problems.append(_problem(case_id, f"several {_describe(what)} files in one folder: "
                                         f"{', '.join(inner)} (expected one)", candidates[0]))
                continue
            files[what] = candidates[0] / inner[0]
        if not problems and not any(c in files for c in CONTRASTS):
            problems.append(_no_image_problem(case_id, folder, "VSD.Brain.XX.O.MR_{T1,T1c,T2,Flair}.<id>/*.mha"))
        if problems:
            return None, problems
        return _make_case(case_id, self.key, files), []


_MR_NAME = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "Flair"}
