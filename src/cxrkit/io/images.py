"""Reading chest radiographs: PNG (8/16-bit, gray/RGB/RGBA), JPEG and DICOM, into 2-D arrays.

Two entry points:

:func:`read_image`
    Full fidelity: returns an :class:`XRay` with the pixel array in its stored depth (uint8 or uint16
    for PNG/JPEG; float32 for DICOM after the modality and VOI LUTs), always 2-D ``(rows, cols)``,
    with MONOCHROME1 inverted so that bright = dense, and the pixel spacing in mm when the file has it.
:func:`load_gray8`
    Fast path for training and inference: a ``uint8`` 2-D array, optionally resized to ``size``
    with area interpolation; JPEGs are decoded at reduced size by the codec (``IMREAD_REDUCED_*``)
    whenever that still leaves at least ``size`` pixels.

Color images are collapsed to gray (ITU-R 601 luma), the alpha channel is ignored.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cxrkit.errors import CxrkitError, require
from cxrkit.io.geometry import resize_area

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128  # "DICM" after a 128-byte preamble

_REDUCED = ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4), (2, cv2.IMREAD_REDUCED_GRAYSCALE_2))


@dataclass
class XRay:
    """A decoded radiograph.

    Attributes:
        pixels: 2-D array ``(rows, cols)``; bright = dense (MONOCHROME2 convention).
        spacing: ``(row_mm, col_mm)`` pixel spacing in millimetres, or None when unknown.
        path: the file it came from.
        kind: ``'png'``, ``'jpeg'`` or ``'dicom'``.
        meta: format-specific extras (bit depth, photometric interpretation, ...).
    """

    pixels: np.ndarray
    spacing: tuple[float, float] | None
    path: str
    kind: str
    meta: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def sniff_kind(head: bytes) -> str | None:
    """Identify PNG / JPEG / DICOM from the first 132 bytes of a file (None if none of them)."""
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    return None


def _kind_of(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(DICOM_MAGIC_OFFSET + 4)
    except FileNotFoundError:
        raise CxrkitError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CxrkitError(f"{path}: is a directory, expected an image file") from None
    kind = sniff_kind(head)
    if kind is None and path.suffix.lower() == ".dcm":
        kind = "dicom"  # DICOM without the preamble: let pydicom try (force=True)
    if kind is None:
        raise CxrkitError(f"{path}: not a PNG, JPEG or DICOM file (content sniffed, extension ignored)")
    return kind


def to_gray(array: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """Collapse ``(H, W, 3|4)`` BGR(A) to ``(H, W)`` gray; pass 2-D arrays through."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return cv2.cvtColor(array[:, :, :3], cv2.COLOR_BGR2GRAY)
    raise CxrkitError(f"{path}: unsupported pixel array shape {array.shape}; expected gray, RGB or RGBA")


def _decode_raster(path: Path, kind: str) -> XRay:
    buf = np.fromfile(path, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise CxrkitError(f"{path}: could not decode the {kind.upper()} data (truncated or corrupt file?)")
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    gray = to_gray(arr, path)
    return XRay(gray, None, str(path), kind, {"dtype": str(arr.dtype), "channels": channels})


def _decode_dicom(path: Path) -> XRay:
    pydicom = require("pydicom", "dicom")
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types on bad files
        raise CxrkitError(f"{path}: not a readable DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise CxrkitError(f"{path}: DICOM file has no pixel data")
    try:
        raw = ds.pixel_array
    except Exception as exc:
        raise CxrkitError(f"{path}: cannot decode DICOM pixel data ({exc})") from None
    if raw.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        raw = raw[0]  # multi-frame: first frame
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("MONOCHROME"):
        arr = apply_modality_lut(raw, ds)
        arr = apply_voi_lut(arr, ds, index=0) if ("WindowCenter" in ds or "VOILUTSequence" in ds) else arr
        arr = np.asarray(arr, dtype=np.float32)
        if photometric == "MONOCHROME1":
            arr = arr.max() + arr.min() - arr
    else:
        arr = to_gray(np.asarray(raw)[:, :, ::-1].copy(), path).astype(np.float32)  # RGB -> BGR -> gray
    spacing = None
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        if tag in ds and ds.get(tag):
            spacing = (float(ds.get(tag)[0]), float(ds.get(tag)[1]))
            break
    meta = {"photometric": photometric, "bits_stored": int(ds.get("BitsStored", 0) or 0)}
    return XRay(arr, spacing, str(path), "dicom", meta)


def read_image(path: str | os.PathLike) -> XRay:
    """Read a PNG, JPEG or DICOM radiograph (type sniffed from content) at full resolution."""
    p = Path(path)
    kind = _kind_of(p)
    return _decode_dicom(p) if kind == "dicom" else _decode_raster(p, kind)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map any 2-D pixel array to uint8: uint8 passes through, others are min-max scaled to 0..255."""
    if pixels.dtype == np.uint8:
        return pixels
    a = pixels.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def header_size(head: bytes) -> tuple[int, int] | None:
    """``(height, width)`` from the first bytes of a PNG (24 bytes) or JPEG (up to its SOF marker) without
    decoding; None for other formats or when the header does not say."""
    if head.startswith(PNG_MAGIC):
        if len(head) < 24 or head[12:16] != b"IHDR":
            return None
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head.startswith(JPEG_MAGIC):
        i = 2
        while i + 9 < len(head) and head[i] == 0xFF:
            marker, length = head[i + 1], int.from_bytes(head[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xC2:  # start of frame: precision, height, width
                return int.from_bytes(head[i + 5:i + 7], "big"), int.from_bytes(head[i + 7:i + 9], "big")
            i += 2 + length
    return None


def png_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(height, width)`` from a PNG header without decoding, or None if not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    return header_size(head) if head.startswith(PNG_MAGIC) else None


def load_gray8(path: str | os.PathLike, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Fast uint8 gray decode, optionally resized to ``size`` (int = square; or ``(height, width)``).

    8-bit PNGs and JPEGs go straight through OpenCV (JPEGs decoded at reduced scale when the target
    allows, then area-resized); 16-bit PNGs and DICOMs go through :func:`read_image` and are min-max
    scaled to 0..255. The aspect ratio is *not* preserved when ``size`` is given: use
    :class:`~cxrkit.io.geometry.SquareResize` for padding.
    """
    p = Path(path)
    kind = _kind_of(p)
    arr = None
    if kind == "jpeg" and size is not None:
        target = min((size, size) if isinstance(size, int) else size)
        buf = np.fromfile(p, dtype=np.uint8)
        full = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)  # cheap probe of the size
        if full is None:
            raise CxrkitError(f"{p}: could not decode the JPEG data (truncated or corrupt file?)")
        small_side = min(full.shape) * 8
        for factor, flag in _REDUCED:
            if small_side // factor >= target:
                arr = full if factor == 8 else cv2.imdecode(buf, flag)
                break
    if arr is None and kind == "png":
        buf = np.fromfile(p, dtype=np.uint8)
        # 8-bit PNG (gray, palette, RGB or RGBA): OpenCV converts to gray while decoding.
        deep = len(buf) > 24 and buf[24] > 8  # IHDR bit depth
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED if deep else cv2.IMREAD_GRAYSCALE)
        if arr is None:
            raise CxrkitError(f"{p}: could not decode the PNG data (truncated or corrupt file?)")
        if deep:
            arr = to_uint8(to_gray(arr, p))
    if arr is None:
        arr = to_uint8(read_image(p).pixels)
    return arr if size is None else resize_area(arr, size)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def expand_image_paths(items: "list[str | os.PathLike]") -> list[Path]:
    """Files as given, folders searched recursively for :data:`IMAGE_SUFFIXES` (sorted); a missing path raises."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise CxrkitError(f"{p}: no such file or folder")
    return out
