"""`bartsmiles run`, the README's main job: load, tokenize, scaffold split, summarize."""
import json

from bartsmiles.cli import main
from bartsmiles.splits import Split


def test_run_writes_the_protocol_split_and_the_invalid_rows(data_dir, tmp_path, capsys):
    assert main(["run", "--dataset", "bbbp", "--data-dir", str(data_dir), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "rows kept 2039" in out and "invalid SMILES dropped 11" in out
    split = Split.load(tmp_path / "split.json")
    assert split.sizes() == (1631, 204, 204)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["tokens"]["unk"] == 0
    assert summary["split"]["checksum"] == split.checksum()[:16]
    rows = (tmp_path / "invalid_rows.csv").read_text().splitlines()
    assert len(rows) == 12 and rows[0].startswith("row")  # header + the 11 rows RDKit cannot parse


def test_run_with_an_unknown_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--dataset", "bbbq", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bbbq" in err and "bbbp" in err  # names the bad name and lists the known ones
    assert "Traceback" not in err
