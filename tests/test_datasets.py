"""Tests for bartsmiles.data.datasets: registry, locate/download, loading and bad input."""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bartsmiles.data.datasets import load_dataset, load_table
from bartsmiles.data.registry import DatasetSpec, default_cache_dir, get_spec, locate, registry
from bartsmiles.errors import ChecksumError, InvalidSmilesError

MOLECULENET = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider", "hiv", "muv", "esol", "freesolv", "lipo"]


# --------------------------------------------------------------------------- registry

def test_registry_has_protocol_datasets():
    specs = registry()
    for name in MOLECULENET:
        spec = specs[name]
        assert spec.subdir == "moleculenet" and spec.is_property_dataset
        assert len(spec.sha256) == 64 and spec.url.startswith("https://")
    assert {n: s.metric for n, s in specs.items() if n in MOLECULENET} == {
        **{n: "roc_auc" for n in MOLECULENET}, "muv": "prc_auc", "esol": "rmse", "freesolv": "rmse", "lipo": "rmse"}
    assert specs["bace"].smiles_column == "mol" and specs["bace"].targets == ("Class",)
    assert specs["esol"].targets == ("measured log solubility in mols per litre",)
    assert len(specs["tox21"].targets) == 12 and len(specs["muv"].targets) == 17
    assert specs["toxcast"].targets == () and specs["toxcast"].targets_exclude == ("smiles",)
    for name in ["moses_train", "moses_test", "moses_test_scaffolds", "uspto50k_train", "uspto50k_valid", "uspto50k_test"]:
        assert not specs[name].is_property_dataset


def test_registry_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_spec("bbbp").name = "x"  # type: ignore[misc]


def test_get_spec_unknown_lists_names():
    with pytest.raises(KeyError, match="bbbp.*"):
        get_spec("nope")


def test_registered_sums_match_shared_files(data_dir):
    for name, spec in registry().items():
        path = locate(spec, data_dir, download=False)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.stat().st_size < 3e6 else None
        if digest is not None:
            assert digest == spec.sha256, name
        if spec.filename.endswith(".gz") and path.stat().st_size < 3e6:
            assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == spec.content_sha256, name


# --------------------------------------------------------------------------- locate

def test_locate_search_order_and_layouts(tmp_path, monkeypatch):
    spec = get_spec("esol")
    flat, nested, env = tmp_path / "flat", tmp_path / "nested", tmp_path / "env"
    (flat).mkdir()
    (flat / spec.filename).write_text("x")
    (nested / "moleculenet").mkdir(parents=True)
    (nested / "moleculenet" / spec.filename).write_text("x")
    (env / "moleculenet").mkdir(parents=True)
    (env / "moleculenet" / spec.filename).write_text("x")
    monkeypatch.setenv("BARTSMILES_DATA", str(env))
    assert locate("esol", flat, cache_dir=tmp_path / "c", download=False) == flat / spec.filename
    assert locate("esol", nested, cache_dir=tmp_path / "c", download=False) == nested / "moleculenet" / spec.filename
    assert locate("esol", cache_dir=tmp_path / "c", download=False) == env / "moleculenet" / spec.filename


def test_locate_not_found_lists_places(tmp_path, monkeypatch):
    monkeypatch.delenv("BARTSMILES_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        locate("bbbp", tmp_path / "d", cache_dir=tmp_path / "c", download=False)
    msg = str(info.value)
    for p in [tmp_path / "d" / "BBBP.csv", tmp_path / "d" / "moleculenet" / "BBBP.csv", tmp_path / "c" / "BBBP.csv",
              tmp_path / "c" / "moleculenet" / "BBBP.csv"]:
        assert str(p) in msg


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BARTSMILES_CACHE", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a"
    monkeypatch.delenv("BARTSMILES_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "bartsmiles"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "bartsmiles"


# --------------------------------------------------------------------------- download (loopback only)

class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    _CountingHandler.hits = []
    handler = functools.partial(_CountingHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}", _CountingHandler.hits
    finally:
        httpd.shutdown()
        httpd.server_close()


CSV = b"smiles,y\nCCO,1\nc1ccccc1,0\n"


def _spec(url: str, sha: str, **kw) -> DatasetSpec:
    return DatasetSpec(name="tiny", filename=kw.pop("filename", "tiny.csv"), smiles_column="smiles", targets=("y",),
                       task_type="classification", metric="roc_auc", url=url, sha256=sha, description="t",
                       subdir="moleculenet", **kw)


def test_download_verifies_and_caches(server, tmp_path, monkeypatch):
    monkeypatch.delenv("BARTSMILES_DATA", raising=False)
    root, base, hits = server
    (root / "tiny.csv").write_bytes(CSV)
    spec = _spec(f"{base}/tiny.csv", hashlib.sha256(CSV).hexdigest())
    cache = tmp_path / "cache"
    path = locate(spec, cache_dir=cache)
    assert path == cache / "moleculenet" / "tiny.csv" and path.read_bytes() == CSV
    assert locate(spec, cache_dir=cache) == path
    assert hits == ["/tiny.csv"]  # second call served from the cache
    assert sorted(p.name for p in (cache / "moleculenet").iterdir()) == ["tiny.csv"]


def test_download_wrong_sum_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.delenv("BARTSMILES_DATA", raising=False)
    root, base, _ = server
    (root / "tiny.csv").write_bytes(CSV)
    spec = _spec(f"{base}/tiny.csv", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError) as info:
        locate(spec, cache_dir=cache)
    msg = str(info.value)
    assert "tiny.csv" in msg and "0" * 64 in msg and hashlib.sha256(CSV).hexdigest() in msg
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_download_transform_gzip_and_content_sum(server, tmp_path, monkeypatch):
    """The HIV-style path: CRLF + blank lines upstream, stored edited and gzipped."""
    monkeypatch.delenv("BARTSMILES_DATA", raising=False)
    root, base, _ = server
    upstream = CSV.replace(b"\n", b"\r\n\n")
    (root / "up.csv").write_bytes(upstream)
    spec = _spec(f"{base}/up.csv", "stored-file-sum-not-reproducible", filename="tiny.csv.gz",
                 url_sha256=hashlib.sha256(upstream).hexdigest(), content_sha256=hashlib.sha256(CSV).hexdigest(),
                 transform=("crlf_to_lf", "drop_blank_lines", "gzip"))
    path = locate(spec, cache_dir=tmp_path / "cache")
    assert gzip.decompress(path.read_bytes()) == CSV
    bad = dataclasses.replace(spec, content_sha256="f" * 64)
    with pytest.raises(ChecksumError, match="f" * 64):
        locate(bad, cache_dir=tmp_path / "cache2")
    assert not any(p.is_file() for p in (tmp_path / "cache2").rglob("*"))


def test_download_archive_member(server, tmp_path, monkeypatch):
    import zipfile

    monkeypatch.delenv("BARTSMILES_DATA", raising=False)
    root, base, _ = server
    with zipfile.ZipFile(root / "pkg.whl", "w") as zf:
        zf.writestr("pkg/data/tiny.csv", CSV)
    spec = _spec(f"{base}/pkg.whl", hashlib.sha256(CSV).hexdigest(), archive_member="pkg/data/tiny.csv",
                 url_sha256=hashlib.sha256((root / "pkg.whl").read_bytes()).hexdigest())
    assert locate(spec, cache_dir=tmp_path / "c").read_bytes() == CSV


# --------------------------------------------------------------------------- registered datasets

def test_load_bbbp_drops_11_invalid(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="bartsmiles.data.datasets"):
        data = load_dataset("bbbp", data_dir, download=False)
    assert len(data) == 2039 and len(data.invalid) == 11
    assert [r.row for r in data.invalid] == [59, 61, 391, 614, 642, 645, 646, 647, 648, 649, 685]
    assert "11 row(s)" in caplog.text and "row 59 (line 61)" in caplog.text
    assert data.labels.shape == (2039, 1) and data.labels.dtype == np.float64
    assert data.task_names == ["p_np"] and data.task_type == "classification"
    assert data.rows[59] == 60 and data.rows[0] == 0 and len(set(data.rows)) == 2039
    assert abs(data.summary()["tasks"]["p_np"]["positive_fraction"] - 0.76) < 0.01


def test_load_tox21_keeps_nan_labels(data_dir):
    data = load_dataset("tox21", data_dir, download=False)
    assert data.labels.shape == (7823, 12)
    assert 0.15 < np.isnan(data.labels).mean() < 0.19
    assert data.summary()["missing_fraction"] == pytest.approx(np.isnan(data.labels).mean())


def test_load_sider_resolves_all_other_columns(data_dir):
    data = load_dataset("sider", data_dir, download=False)
    assert len(data.task_names) == 27 and "smiles" not in data.task_names


def test_load_dataset_refuses_non_property(data_dir):
    with pytest.raises(ValueError, match="locate"):
        load_dataset("uspto50k_test", data_dir, download=False)


# --------------------------------------------------------------------------- user tables and bad input

def _write(tmp_path, text, name="t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_table_basic_and_inference(tmp_path):
    path = _write(tmp_path, "smiles,a,b\nCCO,1,\nCCN,0,1\nC1CC,1,0\n,0,1\nc1ccccc1,,0\n")
    data = load_table(path, "smiles")
    assert data.task_names == ["a", "b"] and data.task_type == "classification"
    assert data.smiles == ["CCO", "CCN", "c1ccccc1"] and list(data.rows) == [0, 1, 4]
    assert [(r.row, r.smiles) for r in data.invalid] == [(2, "C1CC"), (3, "")]
    assert np.isnan(data.labels[0, 1]) and np.isnan(data.labels[2, 0])
    reg = load_table(pd.DataFrame({"s": ["CCO", "CC"], "y": [0.5, 2.0]}), "s", ["y"])
    assert reg.task_type == "regression"


def test_invalid_report_and_strict(tmp_path):
    path = _write(tmp_path, "smiles,y\nCCO,1\nC1CC,0\nXx,1\n")
    report = tmp_path / "out" / "bad.csv"
    data = load_table(path, "smiles", ["y"], invalid_report=report)
    rows = pd.read_csv(report)
    assert list(rows.columns) == ["row", "smiles", "reason"] and list(rows["row"]) == [1, 2]
    with pytest.raises(InvalidSmilesError) as info:
        load_table(path, "smiles", ["y"], strict=True)
    assert "2 invalid" in str(info.value) and "row 1 (line 3)" in str(info.value) and "row 2 (line 4)" in str(info.value)
    assert len(data) == 1


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_table(tmp_path / "nope.csv", "smiles")


def test_missing_column_names_it_and_lists_existing(tmp_path):
    path = _write(tmp_path, "smiles,y\nCCO,1\n")
    with pytest.raises(KeyError) as info:
        load_table(path, "smiles", ["z"])
    assert "'z'" in str(info.value) and "['smiles', 'y']" in str(info.value)
    with pytest.raises(KeyError, match="SMILES"):
        load_table(path, "SMILES", ["y"])


def test_empty_table(tmp_path):
    with pytest.raises(ValueError, match="no data rows"):
        load_table(_write(tmp_path, "smiles,y\n"), "smiles", ["y"])
    with pytest.raises(ValueError, match="empty"):
        load_table(_write(tmp_path, "", "e.csv"), "smiles", ["y"])


def test_non_numeric_label(tmp_path):
    path = _write(tmp_path, "smiles,y\nCCO,1\nCCN,active\n")
    with pytest.raises(ValueError) as info:
        load_table(path, "smiles", ["y"])
    msg = str(info.value)
    assert "'active'" in msg and "'y'" in msg and "row 1 (line 3)" in msg


def test_classification_labels_must_be_binary(tmp_path):
    path = _write(tmp_path, "smiles,y\nCCO,1\nCCN,2\n")
    with pytest.raises(ValueError, match="0 or 1.*'y'.*row 1"):
        load_table(path, "smiles", ["y"], task_type="classification")
    assert load_table(path, "smiles", ["y"]).task_type == "regression"


def test_all_invalid_raises(tmp_path):
    with pytest.raises(ValueError, match="none of the"):
        load_table(_write(tmp_path, "smiles,y\nC1CC,1\n"), "smiles", ["y"])
