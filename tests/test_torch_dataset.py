import numpy as np
import pytest
from conftest import REPO

torch = pytest.importorskip("torch", reason="torch not installed (pip install 'cxrkit[torch]')")

from cxrkit.data.locate import ImageLocator  # noqa: E402
from cxrkit.data.nih import read_boxes, read_metadata  # noqa: E402
from cxrkit.data.torch_datasets import NIHDataset, collate  # noqa: E402
from cxrkit.errors import CxrkitError  # noqa: E402

BUNDLED = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    # NIH download layout: images_001/images/*.png
    root = tmp_path_factory.mktemp("nih")
    sub = root / "images_001" / "images"
    sub.mkdir(parents=True)
    for p in (BUNDLED / "images").glob("*.png"):
        (sub / p.name).write_bytes(p.read_bytes())
    meta = read_metadata(BUNDLED / "Data_Entry_2017_v2020.csv.gz")
    meta = meta[meta["Image Index"].isin([p.name for p in sub.glob("*.png")])]
    return NIHDataset(meta, root, size=128, boxes=read_boxes(BUNDLED / "BBox_List_2017.csv.gz"))


def test_sample_contract(dataset):
    assert len(dataset) == 6 and dataset.findings[0] == "Atelectasis"
    s = dataset[0]
    assert s["image"].shape == (1, 128, 128) and s["image"].dtype == torch.float32
    assert 0 <= float(s["image"].min()) and float(s["image"].max()) <= 1
    assert s["labels"].shape == (14,)
    assert s["id"] == dataset.table["Image Index"][0]
    assert s["boxes"].shape[1] == 4 and len(s["boxes"]) == len(s["box_labels"]) >= 1
    # box scaled from 1024 to 128 pixels
    assert float(s["boxes"].max()) <= 128


def test_dataloader_collate(dataset):
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 1, 128, 128) and batch["labels"].shape == (3, 14)
    assert isinstance(batch["id"], list) and len(batch["boxes"]) == 3


def test_missing_image_named(tmp_path):
    meta = read_metadata(BUNDLED / "Data_Entry_2017_v2020.csv.gz").head(1)
    ds = NIHDataset(meta, ImageLocator(tmp_path))
    with pytest.raises(CxrkitError, match="not found under"):
        ds[0]
    assert np.isfinite(ds._labels).all()


def test_masks_from_chexmask_rows(dataset):
    from cxrkit.io.rle import encode

    name = dataset.table["Image Index"][0]
    m = np.zeros((1024, 1024), bool)
    m[256:768, 128:384] = True  # right lung (image left)
    from cxrkit.data.chexmask import CheXmaskRecord

    rec = CheXmaskRecord(image_id=name, landmarks="", right_lung=encode(m), left_lung="", heart="")
    ds = NIHDataset(dataset.table, dataset.locator, size=128, masks={name: rec})
    s0, s1 = ds[0], ds[1]
    assert s0["has_masks"] and s0["masks"].shape == (3, 128, 128)
    assert float(s0["masks"][0].sum()) == 64 * 32 and float(s0["masks"][1:].sum()) == 0
    assert float(s0["masks"][0, 32:96, 16:48].min()) == 1
    assert not s1["has_masks"] and float(s1["masks"].sum()) == 0
