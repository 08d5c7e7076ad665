import csv
import io
import json

import numpy as np
import pytest
from conftest import REPO, shared_path

from cxrkit.cli.main import main
from cxrkit.findings import FINDINGS
from cxrkit.stats.labels import cooccurrence, prevalence

BUNDLED = REPO / "src" / "cxrkit" / "demo" / "sample" / "nih"


def test_cooccurrence_definition():
    y = np.zeros((5, 14))
    y[0, [0]] = 1           # Atelectasis alone
    y[1, [0, 2]] = 1        # Atelectasis + Effusion
    y[2, [0, 2, 3]] = 1
    y[3, [2]] = 1           # Effusion alone
    y[4, 5] = np.nan        # unknown counts as absent
    m = cooccurrence(y)
    assert m[0, 0] == 1 and m[2, 2] == 1 and m[0, 2] == m[2, 0] == 2 and m[0, 3] == 1 and m[5, 5] == 0
    assert (m == m.T).all()
    p = prevalence(y)
    assert p.iloc[0].positives == 3 and p.iloc[5].known == 4 and p.iloc[-1].positives == 1


def _run(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_contract_cooccurrence_csv_bundled(capsys):
    rc, out, _ = _run(capsys, ["stats", "cooccurrence", "--metadata", str(BUNDLED / "Data_Entry_2017_v2020.csv.gz"), "--format", "csv"])
    assert rc == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0][1:] == list(FINDINGS)
    assert [r[0] for r in rows[1:]] == list(FINDINGS)
    diag = [int(rows[i + 1][i + 1]) for i in range(14)]
    assert diag[:3] == [4215, 1093, 3955] and diag[13] == 110
    assert int(rows[1][3]) == 3275  # Atelectasis + Effusion


def test_cli_error_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    rc, out, err = _run(capsys, ["stats", "cooccurrence", "--metadata", str(bad), "--format", "csv"])
    assert rc != 0 and out == "" and err.count("\n") == 1 and "bad.csv" in err
    rc, _, err = _run(capsys, ["stats", "cooccurrence", "--metadata", str(tmp_path / "nope.csv")])
    assert rc != 0 and "no such file" in err


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["Data_Entry_2017.csv.gz", "sample_labels.csv"])
def test_contract_other_formats(capsys, name):
    rc, out, _ = _run(capsys, ["stats", "cooccurrence", "--metadata", str(shared_path("nih", name)), "--format", "json"])
    assert rc == 0
    m = np.array(json.loads(out)["matrix"])
    assert m.shape == (14, 14) and (m == m.T).all()


def test_summary_and_split_commands(capsys, tmp_path):
    rc, out, _ = _run(capsys, ["nih", "split", "--split-dir", str(BUNDLED), "--out", str(tmp_path / "s")])
    assert rc == 0 and "test: 25596 images" in out
    rc, out, _ = _run(capsys, ["nih", "check-split", str(tmp_path / "s" / "train.txt"), str(tmp_path / "s" / "test.txt")])
    assert rc == 0
    (tmp_path / "leak.txt").write_text((tmp_path / "s" / "test.txt").read_text().splitlines()[0].replace("_000", "_999") + "\n")
    rc, _, err = _run(capsys, ["nih", "check-split", str(tmp_path / "s" / "test.txt"), str(tmp_path / "leak.txt")])
    assert rc != 0 and "cross splits" in err
    rc, _, _ = _run(capsys, ["stats", "summary", "--metadata", str(BUNDLED / "Data_Entry_2017_v2020.csv.gz"),
                             "--split-dir", str(BUNDLED), "--out", str(tmp_path / "sum"), "--no-plots"])
    assert rc == 0
    summary = json.loads((tmp_path / "sum" / "summary.json").read_text())
    assert summary["all"]["images"] == 112_120
    assert summary["train"]["images"] + summary["val"]["images"] == 86_524 and summary["test"]["images"] == 25_596
