"""`cxrkit batch`: manifests, shard plan, error rows, resume, plan check; the Ray engine against the local one,
including a worker killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrkit.batch import (
    ShardPlan,
    TaskSpec,
    read_manifest,
    read_results,
    run_batch,
    write_manifest,
)
from cxrkit.cli.main import main
from cxrkit.errors import CxrkitError

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "cxrkit" / "demo" / "sample" / "nih" / "images"
SHARD = 3  # 8 rows -> shards of 3, 3, 2
BAD = {"notes.png", "truncated.png"}


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    """Folder with the 6 bundled images, a text file named .png, a truncated PNG, and a manifest listing them
    with paths relative to the manifest (the two bad ones in the middle so every shard is exercised)."""
    root = tmp_path_factory.mktemp("batch")
    imgs = root / "images"
    imgs.mkdir()
    good = sorted(SAMPLE.glob("*.png"))
    for p in good:
        shutil.copy(p, imgs / p.name)
    (imgs / "notes.png").write_text("this is not an image\n")
    (imgs / "truncated.png").write_bytes(good[0].read_bytes()[:5000])
    names = [p.name for p in good[:3]] + ["notes.png"] + [p.name for p in good[3:]] + ["truncated.png"]
    write_manifest([f"images/{n}" for n in names], root / "manifest.csv")
    return root


@pytest.fixture(scope="module")
def reference(job, tmp_path_factory) -> pd.DataFrame:
    """An uninterrupted local segment run (the ground truth the other runs are compared with)."""
    out = tmp_path_factory.mktemp("ref")
    res = run_batch(job / "manifest.csv", out, TaskSpec("segment", threads=1), shard_size=SHARD, progress=False)
    assert res.complete and res.rows == 8 and res.errors == 2
    return read_results(out / "segment")


def test_shard_plan_bounds():
    plan = ShardPlan(rows=8, shard_size=3)
    assert plan.shards == 3
    assert [plan.bounds(k) for k in range(3)] == [(0, 3), (3, 6), (6, 8)]
    assert ShardPlan(0, 5).shards == 0
    with pytest.raises(CxrkitError):
        ShardPlan(4, 0)


def test_manifest_csv_parquet_and_errors(job, tmp_path):
    m = read_manifest(job / "manifest.csv")
    assert len(m) == 8 and m.rows[3].image_id == "notes.png"
    assert m.rows[0].path == str(job / "images" / m.rows[0].image_id)  # relative to the manifest's folder
    pq = tmp_path / "m.parquet"
    pd.DataFrame({"file": [r.path for r in m.rows], "sid": [f"s{i}" for i in range(8)]}).to_parquet(pq)
    mp = read_manifest(pq, path_column="file", id_column="sid")
    assert [r.path for r in mp.rows] == [r.path for r in m.rows] and mp.rows[2].image_id == "s2"
    assert mp.digest() != m.digest()  # other ids: another job
    with pytest.raises(CxrkitError, match=r"m\.parquet.*no path column 'path'.*\['file', 'sid'\]"):
        read_manifest(pq)
    with pytest.raises(CxrkitError, match="no id column 'nope'"):
        read_manifest(pq, path_column="file", id_column="nope")
    with pytest.raises(CxrkitError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(CxrkitError, match="empty manifest"):
        read_manifest(tmp_path / "empty.csv")


def test_cli_manifest_error_exit_2(job, tmp_path, capsys):
    (tmp_path / "m.csv").write_text("image,label\na.png,1\n")
    assert main(["batch", "segment", "--input", str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "m.csv" in err and "['image', 'label']" in err


def test_local_segment_end_to_end(job, reference, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["batch", "segment", "--input", str(job / "manifest.csv"), "--out", str(out), "--shard-size", str(SHARD),
               "--threads", "1", "--quiet"])
    assert rc == 1  # done, with error rows
    assert "8 rows in 3/3 shards" in capsys.readouterr().out
    task = out / "segment"
    assert sorted(p.name for p in task.iterdir()) == ["_SUCCESS.json", "_plan.json", "shard-00000.parquet",
                                                      "shard-00001.parquet", "shard-00002.parquet"]
    df = read_results(task)
    assert df["row_index"].tolist() == list(range(8))
    bad = df[df["error"].notna()]
    assert set(bad["image_id"]) == BAD
    assert "not a PNG, JPEG or DICOM" in bad.set_index("image_id").loc["notes.png", "error"]
    assert "corrupt" in bad.set_index("image_id").loc["truncated.png", "error"]
    assert bad["Landmarks"].isna().all()
    ok = df[df["error"].isna()]
    assert (ok["Height"] == 1024).all() and (ok["ImageID"] == ok["image_id"]).all()
    assert ok["Landmarks"].str.count(",").gt(200).all() and ok["Heart"].str.len().gt(10).all()
    assert list(df.columns[4:]) == ["ImageID", "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung",
                                    "Right Lung", "Heart", "Height", "Width"]
    pd.testing.assert_frame_equal(df, reference)  # deterministic on rerun
    success = json.loads((task / "_SUCCESS.json").read_text())
    assert (success["rows"], success["errors"], success["shards"], success["engine"]) == (8, 2, 3, "local")
    plan = json.loads((task / "_plan.json").read_text())["plan"]
    assert plan["shard_size"] == SHARD and plan["task"] == "segment" and plan["models"]["segmenter"]["name"] == "hybridgnet"

    # The batch rows are `cxrkit segment`'s rows (same functions), up to batch-composition float noise.
    from cxrkit.io.inputs import collect_images
    from cxrkit.models import create_model
    from cxrkit.segmentation.infer import segment_files

    _, good = collect_images([job / "images" / n for n in ok["image_id"]])
    segment_files(create_model("hybridgnet", pretrained=True), good, tmp_path / "seg.csv", progress=False, batch_size=SHARD)
    seg = pd.read_csv(tmp_path / "seg.csv").set_index("ImageID")
    for _, row in ok.iterrows():
        a = np.array(row["Landmarks"].split(","), float)
        b = np.array(seg.loc[row["ImageID"], "Landmarks"].split(","), float)
        assert np.abs(a - b).max() <= 1


def test_resume_after_stop_and_crash(job, reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    args = ["batch", "segment", "--input", str(job / "manifest.csv"), "--out", str(out), "--shard-size", str(SHARD),
            "--threads", "1", "--quiet"]
    assert main(args + ["--max-shards", "1"]) == 0  # stopped early as asked: incomplete
    assert "incomplete" in capsys.readouterr().out
    task = out / "segment"
    first = task / "shard-00000.parquet"
    assert first.is_file() and not (task / "shard-00001.parquet").exists() and not (task / "_SUCCESS.json").exists()
    mtime = first.stat().st_mtime_ns

    # A crash in the middle of writing shard 1: no shard file, no temporary left behind.
    import pyarrow.parquet as pq

    real_write = pq.write_table

    def torn_write(table, where, **kw):
        where.write(b"PAR1 half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pq, "write_table", torn_write)
    with pytest.raises(RuntimeError, match="disk full"):
        run_batch(job / "manifest.csv", out, TaskSpec("segment", threads=1), shard_size=SHARD, progress=False)
    monkeypatch.setattr(pq, "write_table", real_write)
    assert sorted(p.name for p in task.iterdir()) == ["_plan.json", "shard-00000.parquet"]

    (task / ".shard-00001.parquet.x1y2.tmp").write_bytes(b"left by a killed writer")
    capsys.readouterr()
    assert main(args) == 1
    assert "(2 computed, 1 already done)" in capsys.readouterr().out  # shard 0 was not recomputed
    assert first.stat().st_mtime_ns == mtime
    assert not list(task.glob(".*.tmp"))
    df = read_results(task)
    assert df["row_index"].tolist() == list(range(8))  # every row exactly once
    pd.testing.assert_frame_equal(df, reference)

    assert main(args) == 1  # idempotent: a finished job reruns as a no-op
    assert "(0 computed, 3 already done)" in capsys.readouterr().out
    assert json.loads((task / "_SUCCESS.json").read_text())["skipped_shards"] == 3


def test_redo_errors_recomputes_only_shards_with_errors(job, tmp_path, monkeypatch):
    root = tmp_path / "job"
    shutil.copytree(job, root)
    spec = TaskSpec("segment", threads=1)
    assert run_batch(root / "manifest.csv", root / "out", spec, shard_size=SHARD, progress=False).errors == 2
    shutil.copy(SAMPLE / min(os.listdir(SAMPLE)), root / "images" / "notes.png")  # the file is fixed
    res = run_batch(root / "manifest.csv", root / "out", spec, shard_size=SHARD, progress=False)
    assert res.errors == 2 and res.computed == []  # error rows are results: a plain rerun keeps them
    res = run_batch(root / "manifest.csv", root / "out", spec, shard_size=SHARD, redo_errors=True, progress=False)
    assert [c["shard"] for c in res.computed] == [1, 2] and res.complete and (res.rows, res.errors) == (8, 1)
    df = read_results(res.task_dir)
    assert df.loc[3, "error"] is None or pd.isna(df.loc[3, "error"])
    assert df.loc[3, "Landmarks"] == df.loc[0, "Landmarks"]  # the same picture as row 0


def test_plan_mismatch_refused_unless_overwrite(job, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["batch", "segment", "--input", str(job / "manifest.csv"), "--out", str(out), "--threads", "1", "--quiet",
            "--max-shards", "1"]
    assert main(base + ["--shard-size", "2"]) == 0
    capsys.readouterr()
    assert main(base + ["--shard-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "_plan.json" in err and "shard_size" in err and "--overwrite" in err
    other = tmp_path / "other.csv"
    write_manifest([str(job / "images" / n) for n in sorted(os.listdir(job / "images"))[:4]], other)
    assert main(["batch", "segment", "--input", str(other), "--out", str(out), "--shard-size", "2", "--quiet"]) == 2
    assert "manifest_sha256" in capsys.readouterr().err
    assert main(base + ["--shard-size", "4", "--overwrite"]) == 1  # its one shard holds an error row
    assert sorted(p.name for p in (out / "segment").glob("shard-*")) == ["shard-00000.parquet"]
    assert len(read_results(out / "segment")) == 4


def test_predict_and_analyze_columns(job, tmp_path):
    m = read_manifest(job / "manifest.csv")
    from cxrkit.batch import Manifest

    small = Manifest(m.source, m.rows[2:4])  # one image, one bad file
    res = run_batch(small, tmp_path, TaskSpec("predict", model="resnet_lite_lesions", threads=1), shard_size=2,
                    progress=False)
    df = read_results(res.task_dir)
    probs = [c for c in df.columns if c.startswith("prob_")]
    assert probs == ["prob_Effusion", "prob_Mass", "prob_Nodule"]
    ok = df[df["error"].isna()].iloc[0]
    assert 0 <= ok["prob_Mass"] <= 1 and ok["width"] == 1024 and isinstance(json.loads(ok["boxes"]), list)
    assert df["error"].notna().sum() == 1

    res = run_batch(small, tmp_path, TaskSpec("analyze", model="resnet_lite_lesions", threads=1), shard_size=2,
                    progress=False)
    df = read_results(res.task_dir)
    ok = df[df["error"].isna()].iloc[0]
    doc = json.loads(ok["analysis"])
    assert doc["schema_version"] and doc["image"] == ok["image_id"] and doc["qc"] is None
    assert ok["ctr"] == pytest.approx(doc["measurements"]["ctr"]) and 0.2 < ok["ctr"] < 0.9
    assert ok["prob_Mass"] == pytest.approx(doc["probabilities"]["Mass"])
    assert doc["classifier"]["provenance"]["synthetic"] is True  # named explicitly, labelled as what it is
    # without --model, analyze runs no classifier (none trained on real labels ships)
    res = run_batch(small, tmp_path / "plain", TaskSpec("analyze", threads=1), shard_size=2, progress=False)
    doc = json.loads(read_results(res.task_dir).dropna(subset=["analysis"]).iloc[0]["analysis"])
    assert doc["classifier"] is None and doc["probabilities"] == {} and doc["boxes"] == []
    assert np.isnan(ok["dice_rca_mean"])
    assert df["error"].notna().sum() == 1


# ---------------------------------------------------------------- Ray engine (local instance, 2 workers)


@pytest.fixture(scope="module")
def ray_local():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        pytest.skip(f"ray[data] is not installed ({exc}); pip install 'cxrkit[ray]'")
    old = {k: os.environ.get(k) for k in ("RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.slow
def test_ray_engine_matches_local(job, reference, ray_local, tmp_path):
    from cxrkit.batch.ray_engine import RayOptions

    res = run_batch(job / "manifest.csv", tmp_path, TaskSpec("segment"), engine="ray", shard_size=SHARD,
                    ray_options=RayOptions(actors=2, num_cpus=1), progress=False)
    assert res.complete and (res.rows, res.errors, len(res.computed)) == (8, 2, 3)
    assert ray_local.is_initialized()  # the job used the running instance and left it running
    # Landmarks are integers and masks are RLE strings: identical across processes, not just close.
    pd.testing.assert_frame_equal(read_results(res.task_dir), reference)
    assert json.loads((res.task_dir / "_SUCCESS.json").read_text())["engine"] == "ray"


class CrashOnceActor:
    """A fault-injecting ShardActor (the test's, not the library's): the actor that first reaches shard 1 kills
    its own process (as an OOM killer or a lost node would); a marker file makes it happen once across restarts."""

    marker: str = ""

    @staticmethod
    def make(marker):
        from cxrkit.batch.ray_engine import ShardActor

        class Actor(ShardActor):
            def before_shard(self, k: int) -> None:
                if k != 1:
                    return
                try:
                    with open(marker, "x"):
                        pass
                except FileExistsError:
                    return
                os.kill(os.getpid(), signal.SIGKILL)

        return Actor


@pytest.mark.slow
def test_ray_worker_killed_mid_run(job, reference, ray_local, tmp_path):
    from cxrkit.batch.ray_engine import RayOptions

    marker = tmp_path / "killed-once"
    res = run_batch(job / "manifest.csv", tmp_path / "out", TaskSpec("segment"), engine="ray", shard_size=SHARD,
                    ray_options=RayOptions(actors=2, num_cpus=1, actor=CrashOnceActor.make(str(marker))),
                    progress=False)
    assert marker.is_file()  # an actor really was SIGKILLed on shard 1
    assert res.complete and res.rows == 8
    df = read_results(res.task_dir)
    assert df["row_index"].tolist() == list(range(8))  # every row exactly once
    pd.testing.assert_frame_equal(df, reference)
    assert not list(res.task_dir.glob(".*.tmp"))
