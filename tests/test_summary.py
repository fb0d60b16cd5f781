"""`bartsmiles run`, the README's main job: summary and split, the peers, fine-tuning."""
import json
import math
import sys
from pathlib import Path

import pytest

from bartsmiles.cli.main import main
from bartsmiles.core.splits import Split


def test_run_writes_the_protocol_split_and_the_invalid_rows(data_dir, tmp_path, capsys):
    assert main(["run", "--dataset", "bbbp", "--data-dir", str(data_dir), "--out", str(tmp_path),
                 "--no-finetune", "--rf-trees", "20"]) == 0
    out = capsys.readouterr().out
    assert "ECFP4 + random forest (20 trees)" in out and "frozen features" in out
    report = json.loads((tmp_path / "main_job.json").read_text())
    assert [r["key"] for r in report["results"]] == ["ecfp4_rf", "bartsmiles_frozen"]
    assert all(0.5 < r["test"] < 1.0 for r in report["results"])  # both beat chance on BBBP
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


@pytest.mark.slow
def test_main_job_finetunes_and_prints_the_three_scores(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
    import make_fixtures
    import pandas as pd
    from test_benchmark import MOLS

    data = tmp_path / "data"
    (data / "moleculenet").mkdir(parents=True)
    pd.DataFrame({"num": range(len(MOLS)), "name": MOLS, "p_np": [float("N" in s or "n" in s) for s in MOLS],
                  "smiles": MOLS}).to_csv(data / "moleculenet" / "BBBP.csv", index=False)
    model = make_fixtures.build_untrained_model(tmp_path / "tiny")
    out = tmp_path / "out"
    assert main(["run", "--data-dir", str(data), "--model", str(model), "--epochs", "2", "--rf-trees", "10",
                 "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "bartsmiles fine-tuned (2 epochs)" in printed and "ECFP4 + random forest" in printed
    report = json.loads((out / "main_job.json").read_text())
    assert [r["key"] for r in report["results"]] == ["bartsmiles", "ecfp4_rf", "bartsmiles_frozen"]
    assert all(math.isfinite(r["test"]) for r in report["results"])
    assert report["finetune"]["argv"].count("--max-epoch") == 1
    assert Path(report["results"][0]["checkpoint"]).is_file()


def test_main_job_refuses_bad_settings_before_any_work(tmp_path, capsys):
    assert main(["run", "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    assert main(["run", "--epochs", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr()
    assert "missing.pt" in err.err and "epochs and batch_size must be >= 1" in err.err
    assert "rows kept" not in err.out and not (tmp_path / "o").exists()  # nothing ran, nothing written
