"""The protocol runner (bartsmiles.evaluation.benchmark) and `bartsmiles benchmark`, on tiny data folders."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bartsmiles.core.splits import scaffold_split
from bartsmiles.data.datasets import load_dataset
from bartsmiles.evaluation import benchmark
from bartsmiles.evaluation.baselines import run_ecfp4_rf
from bartsmiles.evaluation.benchmark import BenchmarkConfig, run_benchmark
from bartsmiles.evaluation.report import summarize, write_markdown

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402

WITH_N = ["CCN", "CCCN", "c1ccncc1", "CC(=O)N", "CN(C)C", "NCCO", "c1ccc(N)cc1", "CC#N", "N#Cc1ccccc1",
          "CCNC(C)=O", "Cc1ccncc1", "CNC", "NC(=O)c1ccccc1", "CCCCN", "OCCN", "c1cnc[nH]1", "Nc1ccc2ccccc2c1",
          "CCN1CCCC1", "C1CCNCC1", "c1ccc2[nH]ccc2c1"]
NO_N = ["CCO", "CCCO", "c1ccccc1", "CC(=O)O", "COC", "OCCO", "c1ccc(O)cc1", "CC=O", "Clc1ccccc1",
        "CCOC(C)=O", "Cc1ccccc1", "CSC", "OC(=O)c1ccccc1", "CCCCO", "CCCl", "c1ccoc1", "Oc1ccc2ccccc2c1",
        "CCC1CCCC1", "C1CCOCC1", "c1ccc2occc2c1"]
MOLS = [m for pair in zip(WITH_N, NO_N) for m in pair]
TREES = 10


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """A data folder with small stand-ins for BBBP (classification) and ESOL (regression)."""
    root = tmp_path_factory.mktemp("data")
    (root / "moleculenet").mkdir()
    smiles = MOLS + ["C1CC"]  # the last row does not parse: dropped as the protocol says
    pd.DataFrame({"num": range(len(smiles)), "name": smiles, "p_np": [float("N" in s or "n" in s) for s in smiles],
                  "smiles": smiles}).to_csv(root / "moleculenet" / "BBBP.csv", index=False)
    pd.DataFrame({"Compound ID": MOLS, "measured log solubility in mols per litre": [-0.1 * len(s) for s in MOLS],
                  "smiles": MOLS}).to_csv(root / "moleculenet" / "delaney-processed.csv", index=False)
    return root


def _cfg(tiny_data, tmp_path, **kw) -> BenchmarkConfig:
    base = dict(datasets=("bbbp", "esol"), models=("ecfp4_rf",), seeds=(0, 1), data_dir=str(tiny_data),
                out=str(tmp_path / "res" / "bench"), isolate=False, rf_n_estimators=TREES,
                work_dir=str(tmp_path / "work"))
    base.update(kw)
    return BenchmarkConfig(**base)


def test_forest_runs_outputs_and_values(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path, models=("ecfp4_rf", "chemprop"))
    results = run_benchmark(cfg, command=["bartsmiles", "benchmark", "test"])
    runs = results["runs"]
    assert len(runs) == 8
    forest = [r for r in runs if r["model"] == "ecfp4_rf"]
    assert all(r["status"] == "ok" for r in forest)
    for r in forest:
        assert {"model", "dataset", "seed", "split", "metric", "value", "wall_s", "peak_rss_mb",
                "memory_scope", "split_checksum", "sizes"} <= set(r)
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 0
        data = load_dataset(r["dataset"], tiny_data)
        split = scaffold_split(data.smiles)
        assert r["split_checksum"] == split.checksum()
        expected = run_ecfp4_rf(data, split, r["seed"], n_estimators=TREES)
        assert r["value"] == pytest.approx(expected["value"])
    assert {r["metric"] for r in forest} == {"roc_auc", "rmse"}
    assert next(r for r in forest if r["dataset"] == "bbbp")["n_invalid"] == 1
    chem = [r for r in runs if r["model"] == "chemprop"]
    try:
        import chemprop  # noqa: F401
        assert all(r["status"] == "not_supported" for r in chem)
    except ImportError:
        assert all(r["status"] == "not_installed" for r in chem)
    saved = json.loads((tmp_path / "res" / "bench.json").read_text())
    assert saved["command"] == ["bartsmiles", "benchmark", "test"]
    assert saved["config"]["rf_n_estimators"] == TREES and saved["machine"]["cpu_count"] >= 1
    assert "date" in saved and len(saved["history"]) == 1
    md = (tmp_path / "res" / "bench.md").read_text()
    assert "| bbbp | scaffold | ROC-AUC ↑ |" in md and "(n=2)" in md
    assert "not installed" in md or "not supported" in md
    png = tmp_path / "res" / "bench.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_resume_skips_finished_runs_and_retries_failed(tiny_data, tmp_path, monkeypatch):
    cfg = _cfg(tiny_data, tmp_path, datasets=("esol",), seeds=(0,))
    run_benchmark(cfg, command=["first"])
    path = tmp_path / "res" / "bench.json"
    data = json.loads(path.read_text())
    data["runs"].append({"model": "ecfp4_rf", "dataset": "esol", "seed": 1, "split": "scaffold",
                         "status": "error", "value": None, "error": "boom"})
    path.write_text(json.dumps(data))
    calls = []
    real = benchmark.run_one
    monkeypatch.setattr(benchmark, "run_one", lambda spec: calls.append(spec["seed"]) or real(spec))
    results = run_benchmark(_cfg(tiny_data, tmp_path, datasets=("esol",), seeds=(0, 1, 2)), command=["again"])
    assert calls == [1, 2]
    assert sorted(r["seed"] for r in results["runs"]) == [0, 1, 2]
    assert all(r["status"] == "ok" for r in results["runs"])
    assert [h["command"] for h in results["history"]] == [["first"], ["again"]]
    calls.clear()
    run_benchmark(_cfg(tiny_data, tmp_path, datasets=("esol",), seeds=(0, 1, 2), resume=False), command=["x"])
    assert calls == [0, 1, 2]


def test_isolated_run_measures_its_own_process(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path, datasets=("bbbp",), seeds=(0,), isolate=True)
    ballast = np.ones(300 * 2 ** 20 // 8)  # 300 MiB in this (parent) process: not the run's memory
    parent = benchmark._peak_rss_mb()
    run = run_benchmark(cfg, command=["iso"])["runs"][0]
    del ballast
    assert run["peak_rss_mb"] < parent - 200
    assert run["status"] == "ok", run.get("error")
    assert run["process_wall_s"] >= run["wall_s"] > 0
    assert run["peak_rss_mb"] > 20 and "own process" in run["memory_scope"]
    assert Path(run["log"]).is_file()
    inline = run_benchmark(_cfg(tiny_data, tmp_path / "b", datasets=("bbbp",), seeds=(0,)), command=["x"])
    assert inline["runs"][0]["value"] == pytest.approx(run["value"])


def test_summary_uses_population_std_and_lists_failures(tmp_path):
    runs = [{"model": "ecfp4_rf", "dataset": "bbbp", "split": "scaffold", "seed": s, "metric": "roc_auc",
             "value": v, "status": "ok", "wall_s": 2.0, "peak_rss_mb": 100.0 + s} for s, v in enumerate([0.6, 0.7])]
    runs.append({"model": "ecfp4_rf", "dataset": "bbbp", "split": "scaffold", "seed": 2, "metric": "roc_auc",
                 "value": None, "status": "error", "error": "it broke"})
    entry = summarize(runs)[("bbbp", "scaffold", "ecfp4_rf")]
    assert entry["n"] == 2 and entry["mean"] == pytest.approx(0.65) and entry["std"] == pytest.approx(0.05)
    assert entry["peak_rss_mb"] == 101.0
    text = write_markdown({"runs": runs, "command": ["c"], "date": "d", "machine": {}}, tmp_path / "t.md")
    assert "0.650 ± 0.050 (n=2)" in text and "it broke" in text


def test_bad_configs(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        run_benchmark(_cfg(tiny_data, tmp_path, models=("svm",)))
    with pytest.raises(ValueError, match="not a property dataset"):
        run_benchmark(_cfg(tiny_data, tmp_path, datasets=("uspto50k_test",)))
    with pytest.raises(KeyError):
        run_benchmark(_cfg(tiny_data, tmp_path, datasets=("nope",)))
    with pytest.raises(ValueError, match="unknown fine-tuning"):
        run_benchmark(_cfg(tiny_data, tmp_path, finetune={"learning_rate": 1}))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"datasets": ["esol"], "finetune": {"epochs": 2, "lr": 1e-4}}))
    cfg = BenchmarkConfig.from_json(config, seeds=[5], datasets=None, finetune={"lr": 3e-4})
    assert cfg.datasets == ("esol",) and cfg.seeds == (5,) and cfg.finetune == {"epochs": 2, "lr": 3e-4}
    config.write_text(json.dumps({"dataset": ["esol"]}))
    with pytest.raises(ValueError, match="unknown key"):
        BenchmarkConfig.from_json(config)


def test_bartsmiles_needs_a_model(tiny_data, tmp_path):
    run = run_benchmark(_cfg(tiny_data, tmp_path, models=("bartsmiles",), datasets=("bbbp",), seeds=(0,)))["runs"][0]
    assert run["status"] == "error" and "pretrained" in run["error"]


@pytest.mark.slow
def test_finetuned_models_with_a_tiny_model(tiny_data, tmp_path):
    model = make_fixtures.build_untrained_model(tmp_path / "tiny")
    cfg = _cfg(tiny_data, tmp_path, models=("bartsmiles", "bartsmiles_encoder_mean", "bartsmiles_random_init"),
               datasets=("bbbp",), seeds=(0,),
               finetune={"pretrained": str(model), "epochs": 1, "batch_size": 16, "lr": 1e-3, "log_interval": 100,
                         "cpu": True})
    runs = run_benchmark(cfg, command=["ft"])["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"], [r.get("error") for r in runs]
    pre, enc, rand = runs
    assert pre["settings"]["head_input"] == "decoder_eos" and enc["settings"]["head_input"] == "encoder_mean"
    assert enc["settings"]["pretrained"] == pre["settings"]["pretrained"]
    assert pre["settings"]["pretrained"].endswith("model.pt") and rand["settings"]["pretrained"] == ""
    assert rand["settings"]["arch"] == pre["settings"]["arch"] == "bartsmiles_tiny"
    assert rand["settings"]["dict"] == str(model / "dict.txt")
    assert pre["split_checksum"] == scaffold_split(load_dataset("bbbp", tiny_data).smiles).checksum()
    assert 0.0 <= pre["value"] <= 1.0 and pre["metric"] == "roc_auc"
    assert not list(Path(pre["save_dir"]).glob("*.pt"))  # checkpoints are not kept by default


def test_cli_benchmark(tiny_data, tmp_path, capsys):
    from bartsmiles.cli.main import main

    out = tmp_path / "cli" / "b"
    assert main(["benchmark", "--datasets", "esol", "--models", "ecfp4_rf", "--seeds", "0", "--data-dir",
                 str(tiny_data), "--out", str(out), "--rf-trees", str(TREES), "--no-isolate",
                 "--work-dir", str(tmp_path / "w")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["esol/scaffold/ecfp4_rf"]["n"] == 1
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["config"]["datasets"] == ["esol"] and saved["config"]["isolate"] is False
    assert np.isfinite(saved["runs"][0]["value"])


def test_cli_exit_status_counts_only_its_own_grid(tiny_data, tmp_path, capsys):
    """Another queue's failure in the shared results file must not stop this queue's script."""
    from bartsmiles.cli.main import main

    out = tmp_path / "cli" / "b"
    argv = ["benchmark", "--datasets", "esol", "--models", "ecfp4_rf", "--seeds", "0", "--data-dir",
            str(tiny_data), "--out", str(out), "--rf-trees", str(TREES), "--no-isolate",
            "--work-dir", str(tmp_path / "w")]
    assert main(argv) == 0
    saved = json.loads(out.with_suffix(".json").read_text())
    saved["runs"].append(dict(saved["runs"][0], model="bartsmiles", dataset="sider", status="error", value=None,
                              error="boom"))
    out.with_suffix(".json").write_text(json.dumps(saved))
    assert main(argv) == 0
    cfg = _cfg(tiny_data, tmp_path, models=("bartsmiles",), datasets=("sider",), seeds=(0,))
    assert [r["error"] for r in benchmark.failed_runs(saved, cfg)] == ["boom"]
    capsys.readouterr()


def test_two_benchmarks_sharing_a_results_file_keep_each_others_runs(tmp_path):
    """Each write merges with the file on disk (under a lock), so concurrent runners lose nothing."""
    path = tmp_path / "shared.json"
    run = lambda model, seed, started, status="ok": {  # noqa: E731
        "model": model, "dataset": "bbbp", "seed": seed, "split": "scaffold", "status": status,
        "started": started, "value": 0.5}
    first = {"runs": [], "history": [{"command": "a"}]}   # both loaded the (empty) file at start
    second = {"runs": [], "history": [{"command": "b"}]}
    first["runs"].append(run("ecfp4_rf", 0, "t1"))
    first = benchmark._save_merged(path, first)
    second["runs"].append(run("bartsmiles", 0, "t2"))
    second = benchmark._save_merged(path, second)
    first["runs"].append(run("ecfp4_rf", 1, "t3"))
    benchmark._save_merged(path, first)
    saved = json.loads(path.read_text())
    assert sorted((r["model"], r["seed"]) for r in saved["runs"]) == [("bartsmiles", 0), ("ecfp4_rf", 0), ("ecfp4_rf", 1)]
    assert [h["command"] for h in saved["history"]] == ["a", "b"]
    # a newer ok run replaces an older one of the same key; a failed retry does not replace an ok run
    benchmark._save_merged(path, {"runs": [run("ecfp4_rf", 0, "t4", status="error")]})
    benchmark._save_merged(path, {"runs": [run("bartsmiles", 0, "t5")]})
    saved = {(r["model"], r["seed"]): r for r in json.loads(path.read_text())["runs"]}
    assert saved[("ecfp4_rf", 0)]["started"] == "t1" and saved[("bartsmiles", 0)]["started"] == "t5"
