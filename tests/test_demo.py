import re

from cxrkit.cli.main import main


def test_demo_writes_index_with_working_links(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    index = (out / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"#:]+)"', index)
    assert len(links) >= 10
    missing = [link for link in links if not (out / link).is_file()]
    assert not missing, missing
    assert "failed" not in index


def test_demo_unknown_section(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--sections", "nope"]) == 2
    assert "unknown section" in capsys.readouterr().err
