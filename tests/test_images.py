import cv2
import numpy as np
import pytest
from conftest import shared_path

from cxrkit.errors import CxrkitError
from cxrkit.io.images import load_gray8, read_image, to_uint8


def _ramp(h=64, w=48, dtype=np.uint8, top=255):
    return (np.linspace(0, top, h * w).reshape(h, w)).astype(dtype)


def test_png_8bit_16bit_rgb_rgba(tmp_path):
    g = _ramp()
    cv2.imwrite(str(tmp_path / "g.png"), g)
    x = read_image(tmp_path / "g.png")
    assert x.kind == "png" and x.pixels.dtype == np.uint8 and (x.pixels == g).all() and x.spacing is None
    g16 = _ramp(dtype=np.uint16, top=4095)
    cv2.imwrite(str(tmp_path / "g16.png"), g16)
    x16 = read_image(tmp_path / "g16.png")
    assert x16.pixels.dtype == np.uint16 and (x16.pixels == g16).all()
    # 12-bit content in a 16-bit PNG is stretched to the full 8-bit range, not truncated to 0..15
    assert load_gray8(tmp_path / "g16.png").max() == 255
    rgba = np.dstack([g, g, g, np.full_like(g, 255)])
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba)
    assert (read_image(tmp_path / "rgba.png").pixels == g).all()
    assert (load_gray8(tmp_path / "rgba.png") == g).all()
    rgb = np.dstack([g, g, g])
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    assert read_image(tmp_path / "rgb.png").pixels.shape == g.shape


def test_jpeg_reduced_decode_and_resize(tmp_path):
    g = _ramp(800, 600)
    cv2.imwrite(str(tmp_path / "a.jpg"), g)
    small = load_gray8(tmp_path / "a.jpg", (100, 75))
    assert small.shape == (100, 75) and small.dtype == np.uint8
    ref = cv2.resize(g, (75, 100), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - ref).mean() < 3


def test_content_sniffed_not_extension(tmp_path):
    g = _ramp()
    cv2.imwrite(str(tmp_path / "x.png"), g)
    (tmp_path / "x.jpg").write_bytes((tmp_path / "x.png").read_bytes())
    assert read_image(tmp_path / "x.jpg").kind == "png"
    (tmp_path / "t.png").write_text("not an image")
    with pytest.raises(CxrkitError, match="t.png: not a PNG, JPEG or DICOM"):
        read_image(tmp_path / "t.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(CxrkitError, match="trunc.png"):
        read_image(tmp_path / "trunc.png")
    with pytest.raises(CxrkitError, match="no such file"):
        read_image(tmp_path / "missing.png")


def _dicom(path, pixels, photometric="MONOCHROME2", slope=1.0, intercept=0.0, window=None, with_pixels=True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.2, 0.25]
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if with_pixels:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_monochrome1_rescale_spacing(tmp_path):
    px = _ramp(32, 40, np.uint16, 4000)
    _dicom(tmp_path / "m2.dcm", px, slope=2.0, intercept=-10)
    x = read_image(tmp_path / "m2.dcm")
    assert x.kind == "dicom" and x.spacing == (0.2, 0.25)
    assert np.allclose(x.pixels, px * 2.0 - 10)
    _dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1")
    x1 = read_image(tmp_path / "m1.dcm")
    assert x1.pixels[0, 0] > x1.pixels[-1, -1]  # inverted: low stored value = bright
    _dicom(tmp_path / "w.dcm", px, window=(1000, 500))
    xw = read_image(tmp_path / "w.dcm")
    # VOI window 1000 +- 250 applied: values outside it saturate
    assert (xw.pixels[px < 700] == xw.pixels.min()).all() and (xw.pixels[px > 1300] == xw.pixels.max()).all()
    assert len(np.unique(xw.pixels[(px > 800) & (px < 1200)])) > 10
    g = load_gray8(tmp_path / "m1.dcm", 16)
    assert g.shape == (16, 16) and g.dtype == np.uint8


def test_dicom_without_pixels(tmp_path):
    _dicom(tmp_path / "empty.dcm", _ramp(8, 8, np.uint16), with_pixels=False)
    with pytest.raises(CxrkitError, match="empty.dcm: DICOM file has no pixel data"):
        read_image(tmp_path / "empty.dcm")


def test_to_uint8_flat_image():
    assert to_uint8(np.full((3, 3), 7.0)).max() == 0


@pytest.mark.realdata
def test_real_nih_pngs_all_load():
    folder = shared_path("nih", "images")
    files = sorted(folder.glob("*.png"))
    assert len(files) == 200
    rgba = 0
    for f in files:
        x = read_image(f)
        rgba += x.meta["channels"] == 4
        assert x.pixels.shape == (1024, 1024) and x.pixels.dtype == np.uint8
        small = load_gray8(f, 224)
        assert small.shape == (224, 224)
    assert rgba == 6


def test_header_size_png_and_jpeg_without_decoding():
    from cxrkit.io.images import header_size

    img = np.zeros((37, 53), np.uint8)
    for ext in (".png", ".jpg"):
        ok, buf = cv2.imencode(ext, img)
        assert header_size(buf.tobytes()[:4096]) == (37, 53), ext
    assert header_size(b"not an image") is None
