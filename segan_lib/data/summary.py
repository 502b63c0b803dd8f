"""The text `segan info` prints: `format_summary` renders the dict of `summarize_dataset`.

The summary is computed in `segan_lib.data.dataset` (it loads the cases); this module only
turns it into readable lines, so it depends on nothing but the layout titles.
"""
from __future__ import annotations

from segan_lib.data.layouts.registry import layout_title


def format_summary(summary: dict) -> str:
    """A readable multi-line rendering of `summarize_dataset`'s result."""
    g = summary["grades"]
    lines = [
        f"Data set:  {summary['root']}",
        f"Layout:    {summary.get('layout_title') or layout_title(summary['layout'])}",
        f"Cases:     {summary['n_cases']} ({summary['n_with_label']} with a label)",
        f"Grades:    HGG {g.get('HGG', 0)}, LGG {g.get('LGG', 0)}, unknown {g.get('unknown', 0)}"
        + (f"  (from {summary['grades_source']})" if summary.get("grades_source") else ""),
        f"Labels allowed by the layout: {', '.join(map(str, summary['label_scheme'])) or 'none named (no labels)'}",
    ]
    counts = summary.get("contrasts") or {}
    if counts:
        lines.append("Contrasts: " + "; ".join(
            f"{c} {n['cases']} case{'s' if n['cases'] != 1 else ''} ({n['with_label']} with a label)"
            for c, n in counts.items()))
        absent = [c for c, n in counts.items() if n["cases"] == 0]
        if absent:
            lines.append(f"           no case has {', '.join(absent)}: a run can use only the others "
                         "(segan train --contrasts ...)")
    if summary.get("n_with_mask"):
        lines.append(f"Brain masks: {summary['n_with_mask']} case{'s' if summary['n_with_mask'] != 1 else ''}")
    if summary.get("skipped"):
        lines.append(f"Skipped when listing: {len(summary['skipped'])}")
        lines += [f"  - {reason}" for _, reason in summary["skipped"]]
    if summary.get("deep"):

        def counted(d: dict, unit: str = "") -> str:
            return ", ".join(f"{k}{unit} ({n} case{'s' if n != 1 else ''})" for k, n in d.items()) or "none"

        lines.append(f"Shapes:    {counted(summary['shapes'])}")
        lines.append(f"Spacing:   {counted(summary['spacings'], ' mm')}")
        values = summary.get("label_values") or []
        lines.append(f"Label values seen: {', '.join(map(str, values)) if values else 'none'}")
        tv = summary.get("tumour_voxels")
        if tv:
            lines.append(
                f"Tumour voxels per case: min {tv['min']}, max {tv['max']}, mean {tv['mean']:.0f}"
                + (f"; {tv['n_empty']} case(s) without tumour" if tv["n_empty"] else "")
            )
        bad = summary.get("bad") or []
        if bad:
            lines.append(f"Unusable cases: {len(bad)}")
            lines += [f"  - {reason}" for _, reason in bad]
        elif summary.get("skipped"):
            lines.append("Every listed case read and checked: no problem found (but some were skipped when listing).")
        else:
            lines.append("Every case read and checked: no problem found.")
    return "\n".join(lines)
