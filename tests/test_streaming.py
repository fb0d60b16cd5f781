"""Streamed prediction (predict_file, `bartsmiles predict`): chunks, resume, workers, .smi/.gz, Dask partitions."""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bartsmiles.cli.main import main
from bartsmiles.model import prediction
from bartsmiles.model.prediction import (
    ERROR_COLUMN,
    PredictConfig,
    predict_file,
    predict_partition,
    predict_table,
    progress_file,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fixtures"))
import make_fixtures  # noqa: E402
MOLS = ["CCN", "CCO", "CCCN", "CCCO", "c1ccncc1", "c1ccccc1", "CC(=O)N", "CC(=O)O", "CN(C)C", "COC",
        "NCCO", "OCCO", "c1ccc(N)cc1", "c1ccc(O)cc1", "CC#N", "CC=O", "N#Cc1ccccc1", "Clc1ccccc1",
        "CCNC(C)=O", "CCOC(C)=O", "Cc1ccncc1", "Cc1ccccc1", "CNC", "CSC"]
#: 23 rows; with chunks of 4 the bad rows sit on both sides of chunk borders (3|4, 7|8) and at the end
SMILES = ["CCN", "OCCO", "c1ccccc1", "not a smiles", "", "CCO", "CC(=O)O", "C1CC", "C" * 200, "CCCN",
          "c1ccncc1", "NCCO", "CN(C)C", "COC", "Clc1ccccc1", "CC#N", "OC(=O)c1ccccc1", "CCNC(C)=O", "CSC",
          "C[C@H](N)O", "c1ccc(N)cc1", "Cc1ccncc1", "xyz"]
BAD = {3, 4, 7, 8, 22}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny fine-tuned model (random init, 1 epoch on 16 molecules, two regression tasks): its checkpoint path."""
    return make_fixtures.tiny_regression_checkpoint(tmp_path_factory.mktemp("stream"), MOLS)


@pytest.fixture
def table(tmp_path):
    """The input CSV: ids written with leading zeros and a note with a comma, to check they come back as written."""
    path = tmp_path / "in.csv"
    frame = pd.DataFrame({"id": [f"{i:03d}" for i in range(len(SMILES))], "smiles": SMILES,
                          "note": [f"n{i}, x" for i in range(len(SMILES))]})
    frame.to_csv(path, index=False)
    return path


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str, "name": str}, keep_default_na=False,
                       converters={"has_n": _number, "length": _number})


def _number(text: str) -> float:
    return float(text) if text else np.nan


def _expected(model, source) -> pd.DataFrame:
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    out = predict_table(model, frame, smiles_column="smiles")
    return out.reset_index(drop=True)


def _same(streamed: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(streamed.columns) == list(expected.columns)
    for column in streamed.columns:
        if column in ("has_n", "length"):
            np.testing.assert_allclose(streamed[column].to_numpy(float), expected[column].to_numpy(float),
                                       rtol=1e-5, atol=1e-6, err_msg=column)
        else:
            assert streamed[column].tolist() == expected[column].tolist(), column


def test_streamed_output_equals_the_in_memory_table_with_bad_rows_at_chunk_borders(model, table, tmp_path):
    out = tmp_path / "out.csv"
    summary = predict_file(model, table, out, PredictConfig(chunk_size=4, batch_size=3, progress=False))
    assert summary == {"output": str(out), "n": len(SMILES), "n_errors": len(BAD)}
    streamed = _read(out)
    _same(streamed, _expected(model, table))
    assert list(streamed.columns) == ["id", "smiles", "note", "has_n", "length", ERROR_COLUMN]
    assert streamed["id"].tolist() == [f"{i:03d}" for i in range(len(SMILES))]  # as written, row for row
    assert {i for i, e in enumerate(streamed[ERROR_COLUMN]) if e} == BAD
    assert streamed.loc[sorted(BAD), ["has_n", "length"]].isna().all().all()
    assert not progress_file(out).exists()  # a finished run leaves no sidecar
    # one chunk or many: the same predictions
    whole = tmp_path / "whole.csv"
    predict_file(model, table, whole, PredictConfig(chunk_size=1000, progress=False))
    _same(_read(whole), streamed)


def test_smi_and_gzip_inputs_and_a_gzip_output(model, table, tmp_path):
    # the empty SMILES is a blank line; a .smi SMILES has no spaces (the rest of the line is the name)
    lines = [f"{s.replace(' ', '_')} mol{i}" if s else "" for i, s in enumerate(SMILES)]
    smi = tmp_path / "in.smi"
    smi.write_text("\n".join(lines) + "\n")
    smi_gz = tmp_path / "in.smi.gz"
    smi_gz.write_bytes(gzip.compress(smi.read_bytes()))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv.gz"
    predict_file(model, smi, a, PredictConfig(chunk_size=5, progress=False))
    summary = predict_file(model, smi_gz, b, PredictConfig(chunk_size=5, progress=False))
    assert summary["n"] == len(SMILES) - 1  # a blank line is no row
    from_smi = _read(a)
    assert list(from_smi.columns) == ["smiles", "name", "has_n", "length", ERROR_COLUMN]
    assert from_smi["name"].tolist() == [f"mol{i}" for i, s in enumerate(SMILES) if s]
    _same(pd.read_csv(b, dtype={"name": str}, keep_default_na=False, converters={"has_n": _number, "length": _number}),
          from_smi)  # a .gz output is one gzip stream to a reader, though written one member per chunk
    csv_gz = tmp_path / "in.csv.gz"
    csv_gz.write_bytes(gzip.compress(table.read_bytes()))
    c = tmp_path / "c.csv"
    predict_file(model, csv_gz, c, PredictConfig(chunk_size=6, progress=False))
    _same(_read(c), _expected(model, table))


def test_a_killed_run_resumes_without_recomputing_finished_chunks(model, table, tmp_path, monkeypatch):
    reference = tmp_path / "reference.csv"
    predict_file(model, table, reference, PredictConfig(chunk_size=4, progress=False))
    real = prediction.chunk_columns
    calls: list[list] = []

    def killed_on_the_third_chunk(predictor, smiles, **kwargs):
        calls.append(list(smiles))
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the process were stopped here
        return real(predictor, smiles, **kwargs)

    out = tmp_path / "out.csv"
    monkeypatch.setattr(prediction, "chunk_columns", killed_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        predict_file(model, table, out, PredictConfig(chunk_size=4, progress=False))
    record = json.loads(progress_file(out).read_text())
    assert record["chunks"] == 2 and record["rows"] == 8
    assert out.stat().st_size == record["bytes"]
    with open(out, "ab") as handle:  # a chunk half written when the process died
        handle.write(b"000,CCN,n0 x,0.1")

    def counted(predictor, smiles, **kwargs):
        calls.append(list(smiles))
        return real(predictor, smiles, **kwargs)

    calls.clear()
    monkeypatch.setattr(prediction, "chunk_columns", counted)
    summary = predict_file(model, table, out, PredictConfig(chunk_size=4, progress=False))
    assert summary["resumed_rows"] == 8 and summary["n"] == len(SMILES) and summary["n_errors"] == len(BAD)
    assert calls[0] == SMILES[8:12] and len(calls) == 4  # chunks 3..6 only: the first two were not recomputed
    assert out.read_bytes() == reference.read_bytes()
    assert not progress_file(out).exists()


def test_a_progress_file_of_another_input_starts_afresh(model, table, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("stale\n")
    progress_file(out).write_text(json.dumps({"fingerprint": {"input": "another"}, "chunks": 1, "rows": 4,
                                              "bytes": 6, "n_errors": 0}))
    summary = predict_file(model, table, out, PredictConfig(chunk_size=8, progress=False))
    assert "resumed_rows" not in summary
    _same(_read(out), _expected(model, table))


def test_two_worker_processes_write_what_one_writes(model, table, tmp_path):
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    predict_file(model, table, one, PredictConfig(chunk_size=4, progress=False))
    predict_file(model, table, two, PredictConfig(chunk_size=4, workers=2, progress=False))
    _same(_read(two), _read(one))


def test_a_header_only_input_gives_a_header_only_output(model, tmp_path):
    src, out = tmp_path / "empty.csv", tmp_path / "out.csv"
    src.write_text("id,smiles\n")
    assert predict_file(model, src, out, PredictConfig(progress=False))["n"] == 0
    assert out.read_text().strip() == f"id,smiles,has_n,length,{ERROR_COLUMN}"


def _one_line(capsys, *parts: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_bad_input_is_one_line_and_exit_status_2(model, table, tmp_path, capsys):
    out = str(tmp_path / "out.csv")
    missing = tmp_path / "missing.csv"
    assert main(["predict", "--model", model, "--input", str(missing), "--output", out, "--no-progress"]) == 2
    _one_line(capsys, str(missing), "not found")
    not_gzip = tmp_path / "table.csv.gz"
    not_gzip.write_text("smiles\nCCO\n")
    assert main(["predict", "--model", model, "--input", str(not_gzip), "--output", out, "--no-progress"]) == 2
    _one_line(capsys, str(not_gzip), "cannot be read")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(gzip.compress(table.read_bytes() * 50)[:-40])  # a download that stopped early
    assert main(["predict", "--model", model, "--input", str(cut), "--output", out, "--no-progress",
                 "--chunk-size", "5"]) == 2
    _one_line(capsys, str(cut), "cannot be read")
    assert main(["predict", "--model", model, "--input", str(table), "--output", out, "--smiles-column", "SMILES",
                 "--no-progress"]) == 2
    _one_line(capsys, "'SMILES'", str(table))
    nowhere = tmp_path / "no" / "such" / "out.csv"
    assert main(["predict", "--model", model, "--input", str(table), "--output", str(nowhere)]) == 2
    _one_line(capsys, str(nowhere), "does not exist")
    latin1 = tmp_path / "latin1.smi"
    latin1.write_bytes("CCO ethanol\nCCN \xe9thylamine\n".encode("latin-1"))
    assert main(["predict", "--model", model, "--input", str(latin1), "--output", out, "--no-progress"]) == 2
    _one_line(capsys, str(latin1), "line 2", "UTF-8")
    assert main(["predict", "--model", model, "--input", str(table), "--output", out, "--chunk-size", "0"]) == 2
    _one_line(capsys, "chunk-size", ">= 1")


def test_the_command_shows_a_progress_bar_and_prints_a_summary(model, table, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["predict", "--model", model, "--input", str(table), "--output", str(out), "--chunk-size", "4"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1]) == {"output": str(out), "n": len(SMILES),
                                                                "n_errors": len(BAD)}
    assert "predicting" in captured.err and "mol" in captured.err
    assert main(["predict", "--model", model, "--input", str(table), "--output", str(out), "--no-progress"]) == 0
    assert "predicting" not in capsys.readouterr().err


def test_dask_map_partitions_on_a_two_worker_local_cluster(model, table):
    dd = pytest.importorskip("dask.dataframe", reason="the 'dask' extra is not installed: pip install 'bartsmiles[dask]'")
    distributed = pytest.importorskip("distributed", reason="the 'dask' extra is not installed")
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    # threads, not processes: two worker processes would each start torch and fairseq (slow for a test)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        ddf = dd.from_pandas(frame, npartitions=3)
        meta = predict_partition(ddf._meta, model)
        result = ddf.map_partitions(predict_partition, model, meta=meta).compute()
    assert result.index.tolist() == list(range(len(SMILES)))
    _same(result.reset_index(drop=True), _expected(model, table))
