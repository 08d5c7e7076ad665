"""Property-based tests (Hypothesis) of the image reader, :mod:`cxrkit.io.images`.

Every call of :func:`read_image` / :func:`load_gray8` on a truncated, corrupted or absurd PNG, JPEG or
DICOM either returns a valid 2-D image or raises ``CxrkitError`` naming the file, in one line, and
prints nothing to stderr (checked with ``capfd``: libpng and OpenCV print their own warnings when a
corrupt file reaches them). An image larger than ``MAX_IMAGE_PIXELS`` is refused from its header,
before the codec is called.

Known limit (documented in the module): a PNG crafted with *valid* CRCs around a wrong image size or a
corrupt zlib stream still reaches libpng, which may print a line; the size-rewrite cases below therefore
check stderr only when the size is refused.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cxrkit.errors import CxrkitError
from cxrkit.io import images
from cxrkit.io.images import MAX_IMAGE_PIXELS, header_size, load_gray8, read_image

N = settings().max_examples  # from the profile loaded in conftest.py (default / long)


def fuzz(examples: int) -> settings:
    # capfd and the module's folder are reset / shared on purpose across the examples of one test.
    return settings(max_examples=examples, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --- building valid files ---------------------------------------------------------------------------------
def png_bytes(arr: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def palette_png_bytes(arr: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).convert("P").save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(arr: np.ndarray, progressive: bool = False) -> bytes:
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf.tobytes()


DICOM_OPTIONAL = ("PixelSpacing", "RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "BitsStored",
                  "HighBit", "PixelRepresentation", "PhotometricInterpretation", "SamplesPerPixel", "Rows")


def dicom_bytes(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 16, drop: tuple[str, ...] = (),
                window: tuple[float, float] | None = None, rescale: tuple[float, float] | None = None,
                preamble: bool = True) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"  # fixed: Hypothesis needs the same bytes each time
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    rgb = photometric == "RGB"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [0.2, 0.25]
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    for tag in drop:
        if tag in ds:
            delattr(ds, tag)
    ds.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=preamble)
    return out.getvalue()


@st.composite
def gray(draw, dtype=np.uint8, max_side=40):
    shape = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    return draw(hnp.arrays(dtype, shape, elements=st.integers(0, np.iinfo(dtype).max)))


@st.composite
def png_files(draw):
    kind = draw(st.sampled_from(["gray8", "gray16", "rgb", "rgba", "rgba16", "palette"]))
    if kind == "gray16":
        return "png", png_bytes(draw(gray(np.uint16)))
    g = draw(gray())
    if kind == "gray8":
        return "png", png_bytes(g)
    if kind == "palette":
        return "png", palette_png_bytes(g)
    if kind == "rgba16":
        g16 = g.astype(np.uint16) * 257
        return "png", png_bytes(np.dstack([g16, g16, g16, np.full_like(g16, 65535)]))
    planes = [g, np.roll(g, 1, axis=0), g[::-1]]
    return "png", png_bytes(np.dstack(planes + ([np.full_like(g, 200)] if kind == "rgba" else [])))


@st.composite
def jpeg_files(draw):
    g = draw(gray(max_side=64))
    if draw(st.booleans()):
        g = np.dstack([g, g[::-1], np.roll(g, 3, axis=1)])
    return "jpeg", jpeg_bytes(g, progressive=draw(st.booleans()))


@st.composite
def dicom_files(draw):
    photometric = draw(st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB"]))
    bits = 8 if photometric == "RGB" else draw(st.sampled_from([8, 16]))
    shape = (draw(st.integers(1, 24)), draw(st.integers(1, 24))) + ((3,) if photometric == "RGB" else ())
    px = draw(hnp.arrays(np.uint16, shape, elements=st.integers(0, 255 if bits == 8 else 4095)))
    drop = tuple(draw(st.lists(st.sampled_from(DICOM_OPTIONAL), max_size=3, unique=True)))
    window = draw(st.none() | st.tuples(st.floats(-100, 5000), st.floats(-10, 5000)))
    rescale = draw(st.none() | st.tuples(st.floats(-3, 3), st.floats(-1000, 1000)))
    data = dicom_bytes(px, photometric, bits, drop, window, rescale, preamble=draw(st.booleans()))
    return "dicom", data


@st.composite
def mutated(draw, files):
    """A valid file, then one of: truncated, bytes overwritten, bytes inserted, bytes deleted, junk appended."""
    kind, data = draw(files)
    how = draw(st.sampled_from(["none", "truncate", "overwrite", "insert", "delete", "append"]))
    n = len(data)
    if how == "truncate":
        data = data[: draw(st.integers(0, n - 1))]
    elif how == "overwrite":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            b[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
        data = bytes(b)
    elif how == "insert":
        i = draw(st.integers(0, n))
        data = data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    elif how == "delete":
        i = draw(st.integers(0, n - 1))
        data = data[:i] + data[i + draw(st.integers(1, 16)) :]
    elif how == "append":
        data = data + draw(st.binary(min_size=1, max_size=64))
    return kind, how, data


# --- checks -----------------------------------------------------------------------------------------------
def _write(folder: Path, kind: str, data: bytes) -> Path:
    suffix = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}[kind]
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    return path


def read_checked(path: Path, reader: str = "read_image") -> np.ndarray | None:
    """Call the reader; check a result is a valid 2-D image and an error names the file in one line."""
    try:
        if reader == "read_image":
            x = read_image(path)
            pixels = x.pixels
            assert x.path == str(path) and x.kind in ("png", "jpeg", "dicom")
        else:
            pixels = load_gray8(path, reader[1] if isinstance(reader, tuple) else None)
            assert pixels.dtype == np.uint8
    except CxrkitError as exc:
        msg = str(exc)
        assert str(path) in msg and "\n" not in msg, msg
        return None
    assert pixels.ndim == 2 and pixels.size > 0 and pixels.size <= MAX_IMAGE_PIXELS
    assert pixels.dtype in (np.uint8, np.uint16, np.float32)
    return pixels


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_images")


# --- properties -------------------------------------------------------------------------------------------
@fuzz(2 * N)
@given(mutated(png_files() | jpeg_files()))
def test_corrupt_png_jpeg_read_or_raise_and_print_nothing(folder, capfd, case):
    kind, how, data = case
    capfd.readouterr()
    path = _write(folder, kind, data)
    a = read_checked(path)
    b = read_checked(path, "load_gray8")
    c = read_checked(path, ("load_gray8", 16))
    out, err = capfd.readouterr()
    assert err == "" and out == "", (how, err)
    if how == "none":  # the unmodified file reads, and both readers agree on its size
        assert a is not None and b is not None and a.shape == b.shape and c.shape == (16, 16)


@fuzz(N)
@given(mutated(dicom_files()))
def test_corrupt_dicom_read_or_raise_and_print_nothing(folder, capfd, case):
    kind, how, data = case
    capfd.readouterr()
    path = _write(folder, kind, data)
    a = read_checked(path)
    b = read_checked(path, ("load_gray8", 8))
    assert (a is None) == (b is None)
    out, err = capfd.readouterr()
    assert err == "" and out == "", (how, err)


@fuzz(N)
@given(
    st.sampled_from(["MONOCHROME1", "MONOCHROME2"]),
    hnp.arrays(np.uint16, st.tuples(st.integers(1, 16), st.integers(1, 16)), elements=st.integers(0, 4095)),
    st.lists(st.sampled_from(DICOM_OPTIONAL), max_size=4, unique=True),
)
def test_monochrome_with_missing_tags(folder, photometric, px, drop):
    """Missing tags: a clear error, or the image; MONOCHROME1 comes out inverted (bright = dense)."""
    path = _write(folder, "dicom", dicom_bytes(px, photometric, 16, tuple(drop)))
    pixels = read_checked(path)
    must_fail = "Rows" in drop  # without Rows the size is unknown
    if must_fail:
        assert pixels is None
    if pixels is None:
        return
    assert pixels.shape == px.shape and pixels.dtype == np.float32
    if "PhotometricInterpretation" not in drop and photometric == "MONOCHROME1":
        np.testing.assert_allclose(pixels, px.max() + px.min() - px.astype(np.float32))
    else:
        np.testing.assert_allclose(pixels, px.astype(np.float32))


def _set_png_size(data: bytes, height: int, width: int) -> bytes:
    b = bytearray(data)
    b[16:20], b[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    b[29:33] = zlib.crc32(bytes(b[12:29])).to_bytes(4, "big")  # a valid CRC: only the size check can refuse it
    return bytes(b)


def _set_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    b = bytearray(data)
    i = 2
    while b[i + 1] not in images._JPEG_SOF:
        i += 2 + int.from_bytes(b[i + 2 : i + 4], "big")
    b[i + 5 : i + 7], b[i + 7 : i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(b)


sides = st.integers(1, 2**16 - 1) | st.sampled_from([1, 8192, 8193, 65535])


@fuzz(N)
@given(png_files() | jpeg_files(), sides, sides)
def test_header_sizes_are_checked_before_decoding(folder, capfd, monkeypatch, case, height, width):
    kind, data = case
    capfd.readouterr()
    data = _set_png_size(data, height, width) if kind == "png" else _set_jpeg_size(data, height, width)
    assert header_size(data) == (height, width)
    path = _write(folder, kind, data)
    if height * width <= 2**22:
        read_checked(path)  # a wrong but modest size: the image or an error (libpng may print: known limit)
        return
    if height * width <= MAX_IMAGE_PIXELS:  # allowed; not decoded here (seconds and ~1 GB for 8192 x 8192)
        images._check_pixels(path, "the header", height, width)
        return
    calls = []
    with monkeypatch.context() as m:
        m.setattr(images.cv2, "imdecode", lambda *a: calls.append(a))  # must not be reached
        for reader in (read_image, load_gray8, lambda p: load_gray8(p, 64)):
            with pytest.raises(CxrkitError, match=rf"{path.name}: the {kind.upper()} header says {width} x {height} pixels, more than"):
                reader(path)
    assert calls == []
    assert capfd.readouterr().err == ""


@fuzz(N)
@given(st.binary(max_size=300), st.sampled_from([b"", images.PNG_MAGIC, images.JPEG_MAGIC, b"\0" * 128 + b"DICM"]),
       st.sampled_from([".png", ".jpg", ".dcm", ".bin"]))
def test_random_bytes_read_or_raise(folder, capfd, data, magic, suffix):
    capfd.readouterr()
    path = folder / f"random{suffix}"
    path.write_bytes(magic + data)
    read_checked(path)
    read_checked(path, ("load_gray8", 8))
    assert header_size(magic + data) is None or all(v >= 0 for v in header_size(magic + data))
    assert capfd.readouterr().err == ""


# --- specific cases ---------------------------------------------------------------------------------------
def test_dicom_absurd_rows_columns_frames_refused_before_decoding(tmp_path, monkeypatch):
    import pydicom

    px = np.zeros((4, 4), np.uint16)
    path = tmp_path / "huge.dcm"
    path.write_bytes(dicom_bytes(px))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1000
    ds.save_as(path)
    monkeypatch.setattr(type(ds), "pixel_array", property(lambda self: pytest.fail("decoded")))
    with pytest.raises(CxrkitError, match=r"huge.dcm: the DICOM header .* says 65535 x 65535 pixels x 1000 frames, more than"):
        read_image(path)


def _bomb_png(side: int) -> bytes:
    """A gray PNG of side x side zero pixels: ~ side**2 / 1000 bytes on disk, side**2 bytes decoded."""
    def chunk(ctype: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + ctype + body + zlib.crc32(ctype + body).to_bytes(4, "big")

    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return images.PNG_MAGIC + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_png_is_refused_with_flat_memory(tmp_path):
    """A 150 kB PNG that decodes to 144 MB (12000 x 12000, within OpenCV's own 2**30 limit) is refused
    from its header: the peak RSS of a fresh interpreter reading it stays within 40 MB of one reading a
    tiny PNG."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png(12000))
    assert bomb.stat().st_size < 200_000
    small = tmp_path / "small.png"
    small.write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))
    code = (
        "import resource, sys\n"
        "from cxrkit.io.images import read_image\n"
        "from cxrkit.errors import CxrkitError\n"
        "try:\n    read_image(sys.argv[1]); print('decoded')\n"
        "except CxrkitError as e:\n    print('error:', e)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    def run(path):
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert r.returncode == 0 and r.stderr == "", r.stderr
        first, rss_kb = r.stdout.strip().splitlines()
        return first, int(rss_kb)

    bomb_out, bomb_rss = run(bomb)
    small_out, small_rss = run(small)
    assert bomb_out.startswith(f"error: {bomb}: the PNG header says 12000 x 12000 pixels, more than the 67108864")
    assert small_out == "decoded"
    assert bomb_rss - small_rss < 40_000, (bomb_rss, small_rss)  # KiB


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[: len(d) // 2], "runs past the end of the file"),
        (lambda d: d[:40], "file ends at byte 40 inside the chunk list, before IEND"),
        (lambda d: d[:-12], "before IEND"),
        (lambda d: d[:45] + bytes([d[45] ^ 0xFF]) + d[46:], "CRC error in the IDAT chunk"),
        (lambda d: d[:12] + b"IHDX" + d[16:], "CRC error in the IHDX chunk at byte 8"),
        (lambda d: _fix_ihdr(d[:12] + b"IHDX" + d[16:]), "first chunk is IHDX"),
        (lambda d: _fix_ihdr(d[:12] + b"IH\0R" + d[16:]), "not a chunk type"),
        (lambda d: d[:24] + b"\x03" + d[25:], "CRC error"),
        (lambda d: _fix_ihdr(d, depth=3), "bit depth 3 with colour type 0"),
        (lambda d: _fix_ihdr(d, interlace=2), "interlace 2"),
    ],
)
def test_corrupt_png_messages(tmp_path, capfd, mutate, message):
    data = png_bytes(np.arange(64 * 48, dtype=np.uint8).reshape(64, 48))
    path = tmp_path / "bad.png"
    path.write_bytes(mutate(data))
    for reader in (read_image, load_gray8):
        with pytest.raises(CxrkitError, match=rf"bad.png: corrupt PNG: .*({message})"):
            reader(path)
    assert capfd.readouterr().err == ""  # before: libpng / OpenCV printed "libpng error: ..." / "[ WARN:0 ...]"


def _fix_ihdr(data: bytes, depth: int | None = None, interlace: int | None = None) -> bytes:
    b = bytearray(data)
    if depth is not None:
        b[24] = depth
    if interlace is not None:
        b[28] = interlace
    b[29:33] = zlib.crc32(bytes(b[12:29])).to_bytes(4, "big")
    return bytes(b)


def test_png_checks_accept_every_real_variant(tmp_path):
    """The chunk walk accepts what encoders write: interlaced, palette, 1-bit, 16-bit, extra chunks."""
    from PIL import Image

    g = (np.arange(37 * 53) % 256).astype(np.uint8).reshape(37, 53)
    variants = {
        "interlaced.png": dict(img=Image.fromarray(g), interlace=1),
        "palette.png": dict(img=Image.fromarray(g).convert("P")),
        "bilevel.png": dict(img=Image.fromarray(g).convert("1")),
        "i16.png": dict(img=Image.fromarray(g.astype(np.uint16) * 200)),
        "rgba.png": dict(img=Image.fromarray(np.dstack([g, g, g, g]))),
        "text.png": dict(img=Image.fromarray(g), pnginfo=_pnginfo()),
    }
    for name, kw in variants.items():
        img = kw.pop("img")
        img.save(tmp_path / name, **kw)
        x = read_image(tmp_path / name)
        assert x.pixels.shape == (37, 53), name
        assert load_gray8(tmp_path / name, 16).shape == (16, 16), name


def _pnginfo():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "x" * 1000)
    return info



# --- JPEG through Pillow: the same pixels OpenCV gave --------------------------------------------------------
def _opencv_load_gray8_jpeg(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """load_gray8's JPEG path before the switch to Pillow: OpenCV's reduced decodes."""
    from cxrkit.io.geometry import resize_area
    from cxrkit.io.images import to_gray, to_uint8

    buf = np.frombuffer(data, np.uint8)
    full = cv2.imdecode(buf, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    small_side = min(full.shape) * 8
    for factor, flag in images._REDUCED:
        if small_side // factor >= min(size):
            arr = full if factor == 8 else cv2.imdecode(buf, flag)
            break
    else:
        arr = to_uint8(to_gray(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)))
    return resize_area(arr, size)


@st.composite
def jpeg_with_exif(draw):
    from PIL import Image

    g = draw(gray(max_side=96)).astype(np.uint8)
    arr = np.dstack([g, np.roll(g, 2, axis=0), g[::-1]]) if draw(st.booleans()) else g
    im = Image.fromarray(arr)
    kw = {"quality": draw(st.integers(30, 95)), "progressive": draw(st.booleans())}
    orientation = draw(st.sampled_from([None, 1, 3, 6, 8]))
    if orientation is not None:
        exif = im.getexif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    out = io.BytesIO()
    im.save(out, format="JPEG", **kw)
    return out.getvalue()


@fuzz(N)
@given(jpeg_with_exif(), st.tuples(st.integers(1, 40), st.integers(1, 40)))
def test_jpeg_pixels_equal_opencv_decode(folder, data, size):
    """read_image and load_gray8 (every reduced scale, EXIF orientation) give OpenCV's pixels exactly."""
    path = _write(folder, "jpeg", data)
    x = read_image(path)
    ref = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(x.pixels, images.to_gray(ref))
    assert x.meta == {"dtype": "uint8", "channels": 1 if ref.ndim == 2 else ref.shape[2]}
    assert x.pixels.flags.writeable
    np.testing.assert_array_equal(load_gray8(path, size), _opencv_load_gray8_jpeg(data, size))


@pytest.mark.parametrize("shape", [(1, 2), (2, 1), (3, 5), (7, 7), (9, 17), (15, 8), (33, 65)])
def test_jpeg_smaller_than_the_scale_factor(tmp_path, shape):
    """Found by fuzzing: a 1 x 2 JPEG at target 1 was decoded at full size, OpenCV decodes it at 1/8."""
    g = (np.arange(shape[0] * shape[1]) * 37 % 256).astype(np.uint8).reshape(shape)
    data = jpeg_bytes(g)
    path = tmp_path / "tiny.jpg"
    path.write_bytes(data)
    for size in ((1, 1), (1, 2), (2, 2), (3, 3), (4, 9)):
        np.testing.assert_array_equal(load_gray8(path, size), _opencv_load_gray8_jpeg(data, size))
