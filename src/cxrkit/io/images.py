"""Reading chest radiographs: PNG (8/16-bit, gray/RGB/RGBA), JPEG and DICOM, into 2-D arrays.

Two entry points:

:func:`read_image`
    Full fidelity: returns an :class:`XRay` with the pixel array in its stored depth (uint8 or uint16
    for PNG/JPEG; float32 for DICOM after the modality and VOI LUTs), always 2-D ``(rows, cols)``,
    with MONOCHROME1 inverted so that bright = dense, and the pixel spacing in mm when the file has it.
:func:`load_gray8`
    Fast path for training and inference: a ``uint8`` 2-D array, optionally resized to ``size``
    with area interpolation; JPEGs are decoded at reduced size by the codec (libjpeg's DCT scaling, as
    OpenCV's ``IMREAD_REDUCED_*``) whenever that still leaves at least ``size`` pixels.

Color images are collapsed to gray (ITU-R 601 luma), the alpha channel is ignored.

Bad files raise :class:`~cxrkit.errors.CxrkitError` naming the file, and nothing else reaches stderr.
JPEGs are decoded with Pillow, whose libjpeg-turbo output is bit-identical to OpenCV's (same scaled
decodes, same luma) but which does not print libjpeg's "Corrupt JPEG data" warnings; before a PNG
reaches OpenCV its chunks are walked (every CRC checked, ``IHDR`` fields, ``PLTE``
before ``IDAT`` for palette images, ``IEND`` present), so truncated or corrupted files are refused
without libpng/OpenCV printing warnings. Images larger than :data:`MAX_IMAGE_PIXELS` (read from the
PNG/JPEG header or the DICOM ``Rows``/``Columns``/``NumberOfFrames`` before decoding) are refused, so
a small file claiming 100000 x 100000 pixels allocates nothing. Known limit: a PNG crafted with valid
CRCs around a corrupt or short zlib stream still reaches libpng, which may print one line of its own
before the error.
"""

from __future__ import annotations

import io
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from cxrkit.errors import CxrkitError, InputError, one_line, require
from cxrkit.io.geometry import resize_area

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128  # "DICM" after a 128-byte preamble
#: Largest image decoded, in pixels (rows x columns x frames): 8192 x 8192. Checked from the header before
#: decoding; chest radiographs are at most about 4300 x 4300.
MAX_IMAGE_PIXELS = 2**26

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
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected an image file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    kind = sniff_kind(head)
    if kind is None and path.suffix.lower() == ".dcm":
        kind = "dicom"  # DICOM without the preamble: let pydicom try (force=True)
    if kind is None:
        raise InputError(f"{path}: not a PNG, JPEG or DICOM file (content sniffed, extension ignored)")
    return kind


def to_gray(array: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """Collapse ``(H, W, 3|4)`` BGR(A) to ``(H, W)`` gray; pass 2-D arrays through."""
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] in (3, 4):
        return cv2.cvtColor(array[:, :, :3], cv2.COLOR_BGR2GRAY)
    raise InputError(f"{path}: unsupported pixel array shape {array.shape}; expected gray, RGB or RGBA")


def _check_pixels(path: Path, what: str, height: int, width: int, frames: int = 1) -> None:
    if height < 1 or width < 1 or frames < 1:
        raise InputError(f"{path}: {what} says {width} x {height} pixels ({frames} frame(s)); expected at least 1 x 1")
    if height * width * frames > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{path}: {what} says {width} x {height} pixels{f' x {frames} frames' if frames > 1 else ''}, more "
            f"than the {MAX_IMAGE_PIXELS} (8192 x 8192) cxrkit decodes; refusing to decode it"
        )


# PNG bit depths allowed per colour type (PNG spec, IHDR).
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _png_problem(data: bytes) -> str | None:
    """What is wrong with a PNG's chunk structure (None if nothing): walks every chunk, checks its CRC,
    the IHDR fields, PLTE before IDAT for palette images, and that IDAT and IEND are there. Reads no
    pixel data (about 0.4 ms for a 400 kB file)."""
    pos, n, ihdr, plte, idat = 8, len(data), None, False, False
    view = memoryview(data)
    while True:
        if pos + 12 > n:
            return f"file ends at byte {n} inside the chunk list, before IEND (truncated file?)"
        length = int.from_bytes(view[pos : pos + 4], "big")
        ctype = bytes(view[pos + 4 : pos + 8])
        if not ctype.isalpha():
            return f"bytes {pos + 4}-{pos + 7} are not a chunk type ({ctype!r})"
        end = pos + 12 + length
        if end > n:
            return f"{ctype.decode()} chunk at byte {pos} ({length} bytes) runs past the end of the file at byte {n} (truncated file?)"
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != int.from_bytes(view[end - 4 : end], "big"):
            return f"CRC error in the {ctype.decode()} chunk at byte {pos} (corrupt file)"
        if ihdr is None:
            if ctype != b"IHDR" or length != 13:
                return f"first chunk is {ctype.decode()} ({length} bytes); expected a 13-byte IHDR"
            ihdr = bytes(view[pos + 8 : pos + 21])
            width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
            depth, color, compression, filtering, interlace = ihdr[8:13]
            if not (0 < width < 2**31 and 0 < height < 2**31):
                return f"IHDR says {width} x {height} pixels"
            if depth not in _PNG_DEPTHS.get(color, ()):
                return f"IHDR has bit depth {depth} with colour type {color}, which PNG does not allow"
            if compression or filtering or interlace > 1:
                return f"IHDR has compression {compression}, filter {filtering}, interlace {interlace}; expected 0, 0, 0 or 1"
        elif ctype == b"PLTE":
            plte = True
        elif ctype == b"IDAT":
            if ihdr[9] == 3 and not plte:
                return "palette image without a PLTE chunk before its image data"
            idat = True
        elif ctype == b"IEND":
            return None if idat else "no IDAT chunk (no image data)"
        pos = end


def _imdecode(buf: np.ndarray, flags: int, path: Path, kind: str) -> np.ndarray:
    """``cv2.imdecode`` behind the checks that keep bad files away from the codec (module docstring)."""
    data = buf.tobytes()
    if kind == "png":
        problem = _png_problem(data)
        if problem is not None:
            raise InputError(f"{path}: corrupt PNG: {problem}")
    size = header_size(data)
    if size is not None:
        _check_pixels(path, f"the {kind.upper()} header", *size)
    try:
        arr = cv2.imdecode(buf, flags)
    except cv2.error as exc:  # e.g. OpenCV's own size limits
        raise InputError(f"{path}: could not decode the {kind.upper()} data ({one_line(exc)})") from None
    if arr is None:
        raise InputError(f"{path}: could not decode the {kind.upper()} data (truncated or corrupt file?)")
    return arr


def _jpeg_image(path: Path, data: bytes):
    """Open a JPEG with Pillow (header only) and check its size; raises :class:`CxrkitError`."""
    from PIL import Image

    size = header_size(data)
    if size is not None:  # before Pillow, which warns on stderr about "decompression bombs" from 89 Mpixels
        _check_pixels(path, "the JPEG header", *size)
    try:
        im = Image.open(io.BytesIO(data), formats=["JPEG"])
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad headers
        raise InputError(f"{path}: could not decode the JPEG data ({one_line(exc)})") from None
    _check_pixels(path, "the JPEG header", im.height, im.width)
    return im


def _decode_jpeg(path: Path, data: bytes, reduce: int = 1, gray: bool = False) -> np.ndarray:
    """Decode a JPEG with Pillow, as OpenCV would: ``gray`` gives the luma plane scaled by 1/``reduce``
    (libjpeg's DCT scaling) with the EXIF orientation applied, like ``IMREAD_REDUCED_GRAYSCALE_<reduce>``;
    otherwise the stored samples, gray ``(H, W)`` or BGR ``(H, W, 3)``, like ``IMREAD_UNCHANGED``."""
    from PIL import ImageOps

    im = _jpeg_image(path, data)
    try:
        if gray:
            # Pillow picks the largest scale 1/s (s in 8, 4, 2, 1) with s <= min(width // w, height // h): a
            # request of exactly width / reduce (a float, exact for powers of 2) gives s = reduce at any size
            im.draft("L", (im.width / reduce, im.height / reduce))
        im.load()
        if gray:
            if im.mode != "L":
                im = im.convert("L")
            if im.getexif().get(0x0112, 1) != 1:
                im = ImageOps.exif_transpose(im)
        elif im.mode not in ("L", "RGB"):
            im = im.convert("RGB")  # CMYK / YCCK
        arr = np.asarray(im)
    except Exception as exc:  # truncated ("image file is truncated"), corrupt tables, ...
        raise InputError(f"{path}: could not decode the JPEG data ({one_line(exc)})") from None
    if arr.ndim == 3:
        return np.ascontiguousarray(arr[:, :, ::-1])  # RGB -> BGR, as OpenCV
    return arr if arr.flags.writeable else arr.copy()


def _read_bytes(path: Path) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


def _decode_raster(path: Path, kind: str) -> XRay:
    buf = _read_bytes(path)
    arr = _decode_jpeg(path, buf.tobytes()) if kind == "jpeg" else _imdecode(buf, cv2.IMREAD_UNCHANGED, path, kind)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    gray = to_gray(arr, path)
    return XRay(gray, None, str(path), kind, {"dtype": str(arr.dtype), "channels": channels})


def _decode_dicom(path: Path) -> XRay:
    pydicom = require("pydicom", "dicom")
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types on bad files
        raise InputError(f"{path}: not a readable DICOM file ({one_line(exc)})") from None
    try:
        if "PixelData" not in ds:
            raise InputError(f"{path}: DICOM file has no pixel data")
        # The size is checked before decoding: a small file may claim any Rows x Columns.
        dims = [int(ds.get(tag) or default) for tag, default in (("Rows", 0), ("Columns", 0), ("NumberOfFrames", 1))]
        _check_pixels(path, "the DICOM header (Rows, Columns, NumberOfFrames)", *dims)
    except CxrkitError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:  # Rows/Columns/NumberOfFrames that are not numbers
        raise InputError(f"{path}: bad DICOM image size ({one_line(exc)})") from None
    except Exception as exc:  # a malformed element that pydicom parses lazily
        raise InputError(f"{path}: not a readable DICOM file ({one_line(exc)})") from None
    try:
        raw = ds.pixel_array
    except Exception as exc:
        raise InputError(f"{path}: cannot decode DICOM pixel data ({one_line(exc)})") from None
    try:
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
    except CxrkitError:
        raise
    except Exception as exc:  # malformed LUT, window, spacing or shape tags: pydicom/numpy raise many types
        raise InputError(f"{path}: cannot apply the DICOM tags to the pixels ({one_line(exc)})") from None
    if arr.ndim != 2:
        raise InputError(f"{path}: DICOM pixel array has shape {arr.shape}; expected one 2-D image")
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
            if marker == 0xFF:  # fill byte before a marker
                i += 1
                continue
            if marker in _JPEG_SOF:  # start of frame: precision, height, width
                return int.from_bytes(head[i + 5:i + 7], "big"), int.from_bytes(head[i + 7:i + 9], "big")
            i += 2 + length
    return None


# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic); not DHT C4,
# JPG C8, DAC CC.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def png_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(height, width)`` from a PNG header without decoding, or None if not a PNG."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    return header_size(head) if head.startswith(PNG_MAGIC) else None


def load_gray8(path: str | os.PathLike, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Fast uint8 gray decode, optionally resized to ``size`` (int = square; or ``(height, width)``).

    8-bit PNGs go straight through OpenCV, JPEGs through Pillow (decoded at reduced scale when the target
    allows, then area-resized); 16-bit PNGs and DICOMs go through :func:`read_image` and are min-max
    scaled to 0..255. The aspect ratio is *not* preserved when ``size`` is given: use
    :class:`~cxrkit.io.geometry.SquareResize` for padding.
    """
    p = Path(path)
    kind = _kind_of(p)
    arr = None
    if kind == "jpeg" and size is not None:
        target = min((size, size) if isinstance(size, int) else size)
        data = _read_bytes(p).tobytes()
        im = _jpeg_image(p, data)  # the size from the header
        small_side = min(-(-im.height // 8), -(-im.width // 8)) * 8  # the 1/8 decode's smaller side, x 8
        for factor, _ in _REDUCED:
            if small_side // factor >= target:
                arr = _decode_jpeg(p, data, factor, gray=True)
                break
    if arr is None and kind == "png":
        buf = _read_bytes(p)
        # 8-bit PNG (gray, palette, RGB or RGBA): OpenCV converts to gray while decoding.
        deep = len(buf) > 24 and buf[24] > 8  # IHDR bit depth
        arr = _imdecode(buf, cv2.IMREAD_UNCHANGED if deep else cv2.IMREAD_GRAYSCALE, p, kind)
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
            raise InputError(f"{p}: no such file or folder")
    return out


def encode_png(image: np.ndarray, max_side: int | None = None) -> bytes:
    """PNG bytes of a gray or BGR uint8 image; with ``max_side``, area-downscaled first so that its longer side
    is at most that many pixels (never enlarged)."""
    image = np.ascontiguousarray(image)
    if max_side is not None and max(image.shape[:2]) > max_side:
        s = max_side / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"could not encode a {image.shape[1]}x{image.shape[0]} {image.dtype} image as PNG")
    return buf.tobytes()
