"""Reading one volume from disk, with the checks every file gets.

`read_volume` reads NIfTI (.nii, .nii.gz) with nibabel and MetaImage / NRRD
(.mha, .mhd, .nrrd) with SimpleITK and returns a `Volume`:

* arrays in voxel order (i, j, k): SimpleITK's (z, y, x) array is transposed
  to (x, y, z), the order nibabel gives for NIfTI;
* the affine maps voxel indices to RAS+ millimetres (nibabel's convention);
  ITK geometry (origin, spacing, direction, in LPS) is converted by negating
  the first two rows;
* images as float32, labels as integers (int16 unless the values need more).

Every problem is a `DataError` naming the case and the file and saying what is
wrong: missing file, truncated or corrupt file, wrong number of dimensions,
NaN/Inf voxels, an all-zero or constant image, non-integer label values. A NIfTI
whose name and content disagree (an uncompressed file named .nii.gz) is read by
its content (the gzip magic bytes), not taken for a corrupt one.

For the 4-D files of the Medical Segmentation Decathlon, `channel=` picks one
volume. The decoded 4-D array of the most recently read file is kept (a cache
of one entry), so reading the four channels of one case reads the file once.
"""
from __future__ import annotations

import gzip
import re
import threading
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np

from segan_lib.errors import DataError
from segan_lib.data.case import Volume

__all__ = ["read_volume", "load_nifti", "clear_cache", "NIFTI_SUFFIXES", "ITK_SUFFIXES", "volume_suffix"]

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
ITK_SUFFIXES: tuple[str, ...] = (".mha", ".mhd", ".nrrd", ".nhdr")

Kind = Literal["image", "label"]

# Exceptions the readers raise on a damaged file. nibabel's own classes are
# added lazily (see _read_errors) so importing this module stays cheap.
_BASE_READ_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    zlib.error,
    OSError,
    ValueError,
    RuntimeError,  # SimpleITK reports every read failure as RuntimeError
    MemoryError,  # a corrupt header can announce an absurd size
)

_CACHE_SIZE = 1
_cache: "OrderedDict[tuple, tuple[np.ndarray, np.ndarray, dict]]" = OrderedDict()
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Drop the cached 4-D array (frees its memory)."""
    with _cache_lock:
        _cache.clear()


def volume_suffix(path: str | Path) -> str | None:
    """The recognised suffix of `path` ('.nii.gz', '.mha', ...), or None."""
    name = Path(path).name.lower()
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def _read_errors() -> tuple[type[BaseException], ...]:
    errors = list(_BASE_READ_ERRORS)
    try:
        from nibabel.filebasedimages import ImageFileError
        from nibabel.spatialimages import HeaderDataError

        errors += [ImageFileError, HeaderDataError]
    except ImportError:  # pragma: no cover - nibabel is a dependency
        pass
    try:
        import struct

        errors.append(struct.error)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _short(exc: BaseException, path: Path | None = None, limit: int = 160) -> str:
    """A one-line reason from a reader's exception, without the noise."""
    text = str(exc)
    # SimpleITK: "Exception thrown in ... .cxx:490:\nITK ERROR: MetaImageIO(0x..): <what>"
    m = re.search(r"(?:ITK ERROR: \w+\([^)]*\):|sitk::ERROR:)\s*(.*)", text, re.S)
    if m:
        text = m.group(1)
        # ITK appends the last errno, which is unrelated to a damaged file
        text = re.sub(r"\s*Reason: No such file or directory\s*$", "", text)
    if path is not None:  # the full path is already in the message prefix
        text = text.replace(str(path), path.name)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _corrupt(exc: BaseException, case_id: str | None, path: Path) -> DataError:
    if isinstance(exc, PermissionError):
        return DataError("cannot read: permission denied", case_id=case_id, path=path)
    if isinstance(exc, MemoryError):
        return DataError(
            "cannot read: file is truncated or corrupt (its header announces more data than fits in memory)",
            case_id=case_id,
            path=path,
        )
    return DataError(
        f"cannot read: file is truncated or corrupt ({_short(exc, path)})", case_id=case_id, path=path
    )


def _fmt_shape(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


# ----------------------------------------------------------------------------------------
# format readers: return (array as stored, affine, header dict)


def _squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_dims(shape, *, case_id, path, expect_3d, channel) -> None:
    ndim = len(shape)
    if ndim < 3:
        raise DataError(
            f"is {ndim}-D with shape {_fmt_shape(shape)}, expected a 3-D volume", case_id=case_id, path=path
        )
    if channel is not None:
        if ndim != 4:
            raise DataError(
                f"is {ndim}-D with shape {_fmt_shape(shape)}, expected a 4-D file to take channel {channel} from",
                case_id=case_id,
                path=path,
            )
        if not 0 <= channel < shape[3]:
            raise DataError(
                f"has {shape[3]} channels (shape {_fmt_shape(shape)}), channel {channel} does not exist",
                case_id=case_id,
                path=path,
            )
    elif ndim > 3 and expect_3d:
        raise DataError(
            f"is {ndim}-D with shape {_fmt_shape(shape)}, expected a 3-D volume "
            "(a multi-channel file must be read one channel at a time)",
            case_id=case_id,
            path=path,
        )


GZIP_MAGIC = b"\x1f\x8b"


def _mislabelled(path: Path) -> str | None:
    """How the file's first bytes contradict its name (no gzip stream in a .gz, or one in a .nii), or None.

    nibabel decides by the name alone. An empty or unreadable file is not mislabelled (it is
    reported as truncated, or as unreadable, by the normal read).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError:
        return None
    named_gz = path.name.lower().endswith(".gz")
    if len(head) < 2 or (head == GZIP_MAGIC) == named_gz:
        return None
    suffix = volume_suffix(path) or path.suffix
    return f"is named {suffix} but is {'not ' if named_gz else ''}gzip-compressed"


def load_nifti(path: str | Path):
    """The nibabel image of a NIfTI file, read by its content when its name says otherwise.

    An uncompressed NIfTI named .nii.gz (or a gzip-compressed one named .nii) is read as what it
    is; when it is not a NIfTI either, the DataError says it is not gzip-compressed (or is).
    Other read problems are the reader's exceptions, as nib.load raises them.
    """
    import nibabel as nib

    path = Path(path)
    what = _mislabelled(path)
    if what is None:
        return nib.load(str(path), mmap=False)
    raw = path.read_bytes()
    if not path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"cannot read: {what}, and the gzip stream is truncated or corrupt ({_short(exc, path)})",
                            path=path) from None
    sizeof_hdr = {int.from_bytes(raw[:4], order) for order in ("little", "big")} if len(raw) >= 4 else set()
    cls = nib.Nifti1Image if 348 in sizeof_hdr else nib.Nifti2Image if 540 in sizeof_hdr else None
    if cls is None:
        raise DataError(f"cannot read: {what}, and it is not a NIfTI file either (no NIfTI header at its start)",
                        path=path)
    try:
        return cls.from_bytes(raw)
    except _read_errors() as exc:
        raise DataError(f"cannot read: {what}, and read as NIfTI it is truncated or corrupt ({_short(exc, path)})",
                        path=path) from None


def _read_nifti(path: Path, *, case_id, expect_3d, channel):
    errors = _read_errors()
    try:
        img = load_nifti(path)
        shape = _squeeze_trailing(img.shape)
    except DataError as exc:  # a mislabelled file that is not NIfTI either: name the case too
        raise DataError(exc.what, case_id=case_id, path=path) from None
    except errors as exc:
        raise _corrupt(exc, case_id, path) from exc
    if not hasattr(img, "affine") or img.affine is None:
        raise DataError("cannot read: not a NIfTI image with a geometry", case_id=case_id, path=path)
    _check_dims(shape, case_id=case_id, path=path, expect_3d=expect_3d, channel=channel)
    try:
        # dataobj keeps the on-disk type (after scaling), unlike get_fdata's float64
        data = np.asanyarray(img.dataobj)
    except errors as exc:
        mislabelled = _mislabelled(path)
        if mislabelled:
            raise DataError(f"cannot read: {mislabelled}, and read as NIfTI it is truncated or corrupt "
                            f"({_short(exc, path)})", case_id=case_id, path=path) from exc
        raise _corrupt(exc, case_id, path) from exc
    data = data.reshape(shape)
    hdr = img.header
    header = {
        "format": type(img).__name__.lower().replace("image", ""),
        "path": str(path),
        "dtype_on_disk": str(img.get_data_dtype()),
        "shape_on_disk": tuple(int(s) for s in img.shape),
        "zooms": tuple(float(z) for z in hdr.get_zooms()[:3]),
    }
    try:
        header["qform_code"] = int(hdr["qform_code"])
        header["sform_code"] = int(hdr["sform_code"])
    except (KeyError, ValueError, TypeError):  # pragma: no cover - non-NIfTI-1/2 header
        pass
    return data, np.asarray(img.affine, dtype=np.float64), header


def itk_affine(origin, spacing, direction) -> np.ndarray:
    """Voxel (x, y, z) index -> RAS+ mm affine from ITK's LPS origin, spacing and direction."""
    origin = np.asarray(origin, dtype=np.float64)[:3]
    spacing = np.asarray(spacing, dtype=np.float64)[:3]
    ndim = int(round(np.sqrt(len(direction))))
    direction = np.asarray(direction, dtype=np.float64).reshape(ndim, ndim)[:3, :3]
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(spacing)
    affine[:3, 3] = lps_to_ras @ origin
    return affine


def _read_itk(path: Path, *, case_id, expect_3d, channel):
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - SimpleITK is a dependency
        raise DataError(
            "cannot read: SimpleITK is needed for .mha/.mhd/.nrrd files and is not installed",
            case_id=case_id,
            path=path,
        ) from exc

    errors = _read_errors()
    try:
        img = sitk.ReadImage(str(path))
        zyx = sitk.GetArrayFromImage(img)
    except errors as exc:
        raise _corrupt(exc, case_id, path) from exc
    ncomp = img.GetNumberOfComponentsPerPixel()
    if ncomp > 1:  # vector image: (z, y, x, c) -> (x, y, z, c)
        spatial = zyx.ndim - 1
        data = np.transpose(zyx, tuple(range(spatial - 1, -1, -1)) + (spatial,))
    else:  # (z, y, x) -> (x, y, z); (t, z, y, x) -> (x, y, z, t)
        data = np.transpose(zyx)
    shape = _squeeze_trailing(data.shape)
    data = data.reshape(shape)
    _check_dims(shape, case_id=case_id, path=path, expect_3d=expect_3d, channel=channel)
    dim = img.GetDimension()
    origin = list(img.GetOrigin()) + [0.0] * 3
    spacing = list(img.GetSpacing()) + [1.0] * 3
    direction = np.eye(max(dim, 3))
    direction[:dim, :dim] = np.asarray(img.GetDirection()).reshape(dim, dim)
    affine = itk_affine(origin[:3], spacing[:3], direction[:3, :3].ravel())
    header = {
        "format": volume_suffix(path).lstrip("."),
        "path": str(path),
        "dtype_on_disk": str(zyx.dtype),
        "shape_on_disk": tuple(int(s) for s in img.GetSize()) + ((ncomp,) if ncomp > 1 else ()),
        "zooms": tuple(float(s) for s in spacing[:3]),
        "itk_origin_lps": tuple(float(o) for o in origin[:3]),
        "itk_direction": tuple(float(d) for d in direction[:3, :3].ravel()),
    }
    return data, affine, header


def _read_any(path: Path, *, case_id, expect_3d, channel):
    suffix = volume_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(path, case_id=case_id, expect_3d=expect_3d, channel=channel)
    if suffix in ITK_SUFFIXES:
        return _read_itk(path, case_id=case_id, expect_3d=expect_3d, channel=channel)
    raise DataError(
        f"unsupported file type (expected one of {', '.join(NIFTI_SUFFIXES + ITK_SUFFIXES)})",
        case_id=case_id,
        path=path,
    )


def _read_channel(path: Path, *, case_id, channel):
    """One channel of a 4-D file, decoding the file once for all its channels."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is None:
        data4, affine, header = _read_any(path, case_id=case_id, expect_3d=False, channel=channel)
        with _cache_lock:
            _cache[key] = (data4, affine, header)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    else:
        data4, affine, header = hit
        _check_dims(data4.shape, case_id=case_id, path=path, expect_3d=False, channel=channel)
    header = dict(header, channel=int(channel))
    # a view into the cached array: the caller's cast below copies it
    return data4[..., channel], affine.copy(), header


# ----------------------------------------------------------------------------------------
# content checks


def _as_image(data: np.ndarray, *, case_id, path) -> np.ndarray:
    if data.dtype.kind not in "biuf":
        raise DataError(f"cannot use voxel type {data.dtype} as an image", case_id=case_id, path=path)
    image = data.astype(np.float32, copy=True)
    if data.dtype.kind == "f":
        finite = np.isfinite(image)
        n_bad = int(image.size - np.count_nonzero(finite))
        if n_bad:
            n_nan = int(np.count_nonzero(np.isnan(image)))
            n_inf = n_bad - n_nan
            parts = []
            if n_nan:
                parts.append(f"{n_nan} NaN")
            if n_inf:
                parts.append(f"{n_inf} Inf")
            raise DataError(
                f"image has {' and '.join(parts)} voxels (of {image.size}); values must be finite",
                case_id=case_id,
                path=path,
            )
    if image.size == 0:
        raise DataError("image has no voxels", case_id=case_id, path=path)
    lo, hi = float(image.min()), float(image.max())
    if lo == hi:
        if lo == 0.0:
            raise DataError("image is all-zero: every voxel is 0 (an empty scan)", case_id=case_id, path=path)
        raise DataError(f"image is constant: every voxel is {lo:g}", case_id=case_id, path=path)
    return image


def _as_label(data: np.ndarray, *, case_id, path) -> np.ndarray:
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            raise DataError(
                f"label has {n_bad} NaN/Inf voxels; label values must be integers", case_id=case_id, path=path
            )
        rounded = np.round(data)
        off = rounded != data
        if off.any():
            examples = np.unique(data[off])[:5]
            raise DataError(
                "label has non-integer values (e.g. "
                + ", ".join(f"{v:g}" for v in examples)
                + f"; {int(np.count_nonzero(off))} voxels); label values must be integers",
                case_id=case_id,
                path=path,
            )
        data = rounded
    elif data.dtype.kind not in "iu":
        raise DataError(f"cannot use voxel type {data.dtype} as a label", case_id=case_id, path=path)
    if data.size == 0:
        raise DataError("label has no voxels", case_id=case_id, path=path)
    lo, hi = data.min(), data.max()
    info16 = np.iinfo(np.int16)
    dtype = np.int16 if (lo >= info16.min and hi <= info16.max) else np.int64
    return data.astype(dtype, copy=True)


def read_volume(
    path: str | Path,
    *,
    case_id: str | None,
    kind: Kind = "image",
    expect_3d: bool = True,
    channel: int | None = None,
) -> Volume:
    """Read one volume and check it.

    path: .nii/.nii.gz (nibabel) or .mha/.mhd/.nrrd (SimpleITK).
    case_id: the case the file belongs to, named in every error.
    kind: 'image' -> float32 data, checked for NaN/Inf and for being all-zero or
        constant; 'label' -> integer data (a float label with integral values is
        cast; other values are an error).
    expect_3d: a file with more than three (non-singleton) dimensions is an error
        unless `channel` is given; with expect_3d=False such data is returned as is.
    channel: take this index of the 4th axis of a 4-D file (MSD multi-contrast files).
    """
    if kind not in ("image", "label"):
        raise ValueError(f"kind must be 'image' or 'label', not {kind!r}")
    path = Path(path)
    if not path.exists():
        raise DataError("file is missing", case_id=case_id, path=path)
    if path.is_dir():
        raise DataError("is a folder, expected a volume file", case_id=case_id, path=path)
    if volume_suffix(path) is None:
        return _read_any(path, case_id=case_id, expect_3d=expect_3d, channel=channel)  # raises
    if channel is not None:
        data, affine, header = _read_channel(path, case_id=case_id, channel=int(channel))
    else:
        data, affine, header = _read_any(path, case_id=case_id, expect_3d=expect_3d, channel=None)
    if not np.all(np.isfinite(affine)):
        raise DataError("has a geometry (affine) with NaN/Inf entries", case_id=case_id, path=path)
    if kind == "image":
        data = _as_image(data, case_id=case_id, path=path)
    else:
        data = _as_label(data, case_id=case_id, path=path)
    header["kind"] = kind
    return Volume(data=data, affine=affine, header=header)
