"""The reader shared by the releases with one folder per case and one NIfTI per contrast.

`_FolderNiftiLayout` finds a case's files by their suffix (`<case><sep><suffix>.nii.gz`,
or .nii), and lists a case with the contrasts it has files for (at least one); BraTS
2018-2021 (`brats2018`) and BraTS 2023 GLI (`brats2023`) differ only in
the separator and the suffixes.
"""
from __future__ import annotations

from pathlib import Path

from segan_lib.constants import CONTRASTS
from segan_lib.data.layouts.common import (
    Layout, Problem, _describe, _listdir, _make_case, _no_image_problem, _problem,
)


class _FolderNiftiLayout(Layout):
    sep: str = "_"
    suffixes: dict[str, str] = {}  # project name or "label" -> the release's file suffix
    probe: str = ""  # suffix whose presence marks a case folder (used by matches)
    exts: tuple[str, ...] = (".nii.gz", ".nii")

    def _expected(self, case_id: str, what: str) -> str:
        return f"{case_id}{self.sep}{self.suffixes[what]}.nii.gz"

    def _file_kind(self, name: str) -> str | None:
        low = name.lower()
        for what, suf in self.suffixes.items():
            for ext in self.exts:
                if low.endswith(f"{self.sep}{suf}{ext}"):
                    return what
        return None

    def is_case_dir(self, folder: Path) -> bool:
        return any(self._file_kind(n) is not None for n in _listdir(folder))

    def case_from_dir(self, folder, grade, require_label):
        case_id = folder.name
        by_kind: dict[str, list[str]] = {}
        for name in _listdir(folder):
            what = self._file_kind(name)
            if what is not None:
                by_kind.setdefault(what, []).append(name)
        files: dict[str, Path] = {}
        problems: list[Problem] = []
        for what in list(CONTRASTS) + ["label"]:
            names = by_kind.get(what, [])
            if len(names) > 1:
                # prefer the file named after the folder, as the releases do
                own = [n for n in names if n.lower().startswith(case_id.lower() + self.sep)]
                if len(own) == 1:
                    names = own
            if not names:
                if what != "label" or not require_label:  # a case has the contrasts it has (Case.contrasts)
                    continue
                expected = self._expected(case_id, what)
                problems.append(_problem(case_id, f"missing {_describe(what)} file: expected {expected} "
                                         f"(pattern <case>{self.sep}{self.suffixes[what]}.nii.gz) in the case folder",
                                         folder / expected))
            elif len(names) > 1:
                problems.append(_problem(case_id, f"several {_describe(what)} files map to one case: "
                                         + " and ".join(str(folder / n) for n in names) + " (expected one)"))
            else:
                files[what] = folder / names[0]
        if not problems and not any(c in files for c in CONTRASTS):
            any_image = f"{case_id}{self.sep}{{{','.join(self.suffixes[c] for c in CONTRASTS)}}}.nii.gz"
            problems.append(_no_image_problem(case_id, folder, any_image))
        if problems:
            return None, problems
        return _make_case(case_id, self.key, files), []
