"""What a mask file written by segan says about itself: its NIfTI `descrip` (80 bytes at most).

`segan predict` writes, for each mask and probability map, the bundle that made it (`Bundle.id`, the
first 12 hex digits of its weights' SHA-256) and what the file holds:

    segan bundle <id> labels <scheme>    a three-region mask in the label values of <scheme>
    segan bundle <id> wt 0/1             a whole-tumour mask
    segan bundle <id> wt probability     the whole-tumour probability map

`segan evaluate-folder` reads it back (`parse_mask_descrip`) to name the bundle and to know what a
mask holds without guessing from its values. Here, in the data layer, so that the writer (apply) and
the reader (evaluation) share one definition.
"""
from __future__ import annotations

import re

import numpy as np

_DESCRIP = re.compile(r"^segan bundle (?P<bundle>\S+) (?:labels (?P<scheme>\S+)|wt (?P<wt>0/1|probability))")


def mask_descrip(bundle_id: str, label_scheme: str | None, what: str = "mask") -> str:
    """The NIfTI `descrip` (80 bytes at most) of a file written by a bundle: its id and what the file holds."""
    holds = "wt probability" if what == "probability" else f"labels {label_scheme}" if label_scheme else "wt 0/1"
    return f"segan bundle {bundle_id or 'unknown'} {holds}"[:80]


def parse_mask_descrip(text: str | bytes | None) -> dict | None:
    """{bundle, label_scheme (None for a 0/1 mask), probability} from a `mask_descrip`; None for any other text."""
    if isinstance(text, (bytes, np.bytes_)):
        text = bytes(text).split(b"\0", 1)[0].decode("ascii", "replace")
    m = _DESCRIP.match(text or "")
    if m is None:
        return None
    return {"bundle": m["bundle"], "label_scheme": m["scheme"], "probability": m["wt"] == "probability"}
