"""``bartsmiles serve``: the JSON API through FastAPI's test client, the page in headless Chromium.

One tiny two-task classification model (random init, 2 epochs on 24 molecules) and one tiny
regression model serve every test; the calibrations are written by hand, so that the interval
arithmetic can be checked exactly.
"""
from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'bartsmiles[serve]'")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx (the serve extra)")

from fastapi.testclient import TestClient  # noqa: E402

from bartsmiles.cli.parser import build_parser  # noqa: E402
from bartsmiles.model.prediction import ERROR_COLUMN  # noqa: E402
from bartsmiles.model.uncertainty import Calibration, forget_calibration, save_calibration  # noqa: E402
from bartsmiles.serve.app import build_app  # noqa: E402
from bartsmiles.serve.config import LOCALHOST, ServeConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import make_fixtures  # noqa: E402
from bartsmiles.serve.service import ModelService  # noqa: E402

MOLS = make_fixtures.PROPERTY_MOLS
LONG = "C" * 200  # 202 positions > 128


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Checkpoints: a 2-task classifier, the same with a calibration, and a regressor with one."""
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("serve")
    common = dict(**make_fixtures.property_inputs(root), epochs=2, batch_size=8, lr=1e-3,
                  keep_last_epochs=1, cpu=True, log_interval=100, score_test=False)
    clf = finetune(FinetuneConfig(save_dir=str(root / "clf"), target_columns=("has_n", "has_o"),
                                  task_type="classification", **common)).best_checkpoint
    reg = finetune(FinetuneConfig(save_dir=str(root / "reg"), target_columns=("length",), task_type="regression",
                                  **common)).best_checkpoint
    forget_calibration(clf)  # fine-tuning may store one: this model is the one without
    calibrated = root / "clf_cal" / "checkpoint_best.pt"
    calibrated.parent.mkdir()
    shutil.copy(clf, calibrated)
    # 19 scores 0.05, 0.10, ..., 0.95: at alpha = 0.1 the threshold is the 18th smallest, 0.90
    save_calibration(Calibration("classification", ["has_n", "has_o"], [np.arange(1, 20) / 20.0] * 2), calibrated)
    # |y - prediction| = 1..19: at alpha = 0.1 the interval is prediction -/+ 18
    save_calibration(Calibration("regression", ["length"], [np.arange(1, 20, dtype=float)]), reg)
    return {"clf": Path(clf), "clf_cal": calibrated, "reg": Path(reg)}


@pytest.fixture(scope="module")
def service(runs):
    return ModelService(runs["clf"], max_molecules=5)


@pytest.fixture(scope="module")
def client(service):
    return TestClient(build_app(service, max_request_bytes=4000))


# ------------------------------------------------------------------------------------- predict


def test_predict_a_valid_smiles(client, runs):
    from bartsmiles.model.predictor import predict

    r = client.post("/predict", json={"smiles": ["CCO", "c1ccccc1"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tasks"] == ["has_n", "has_o"] and body["task_type"] == "classification"
    assert body["interval_level"] is None and body["n_errors"] == 0
    assert [row["smiles"] for row in body["rows"]] == ["CCO", "c1ccccc1"]
    expected = predict(runs["clf"], ["CCO", "c1ccccc1"])
    got = np.array([[row["predictions"][t] for t in body["tasks"]] for row in body["rows"]])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert all(row["uncertainty"] == {} and row["error"] == "" for row in body["rows"])


@pytest.mark.parametrize("smiles, words", [("C1CC", "invalid SMILES"), ("not a smiles", "invalid SMILES"),
                                           (LONG, "too long: 202 tokens > 128 positions"), ("", "empty SMILES")])
def test_predict_refuses_a_bad_smiles_with_its_index(client, smiles, words):
    r = client.post("/predict", json={"smiles": ["CCO", smiles]})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "index 1" in detail and words in detail


def test_predict_can_report_bad_rows_instead(client):
    r = client.post("/predict", json={"smiles": ["CCO", "C1CC", "CCN"], "errors": "report"})
    assert r.status_code == 200
    rows = r.json()["rows"]
    assert [row["error"] != "" for row in rows] == [False, True, False]
    assert rows[1]["predictions"] == {"has_n": None, "has_o": None}
    assert rows[2]["predictions"]["has_n"] is not None  # rows never shift


def test_too_many_molecules_and_too_large_requests_are_refused(client):
    r = client.post("/predict", json={"smiles": ["CCO"] * 6})
    assert r.status_code == 422 and "too many molecules" in r.json()["detail"] and "5" in r.json()["detail"]
    r = client.post("/predict", json={"smiles": ["CCO"] * 5})
    assert r.status_code == 200
    r = client.post("/predict", json={"smiles": ["C" * 5000]})
    assert r.status_code == 413 and "4000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(10):
            yield b" " * 1000
    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/predict", json={"smiles": []})
    assert r.status_code == 422 and "no molecules" in r.json()["detail"]
    r = client.post("/predict", json={"smiles": "CCO"})  # not a list: the framework's own validation
    assert r.status_code == 422


# ------------------------------------------------------------------------------------ attribute


def test_attribute_a_valid_smiles(client, service):
    r = client.post("/attribute", json={"smiles": "O=[N+]([O-])c1ccccc1", "target": 0})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["target"] == 0 and a["target_name"] == "has_n"
    assert a["method"] == service.attributor.method  # the Attributor's default, whatever it is
    assert len(a["atoms"]) == 9 and [x["symbol"] for x in a["atoms"]][:3] == ["O", "N", "O"]
    assert a["environment_radius"] == 2 and all(isinstance(x["environment_score"], float) for x in a["atoms"])
    assert ">(radius 2)</text>" in a["svg"]  # the picture shows the environment scores
    assert a["svg"].startswith("<svg") and "bartsmiles_cbar" in a["svg"]  # the drawing and its colour bar
    kinds = {s["kind"] for s in a["substructures"]}
    assert "scaffold" in kinds and [s["rank"] for s in a["substructures"]] == list(range(1, len(a["substructures"]) + 1))
    scores = [s["score"] for s in a["substructures"]]
    assert scores == sorted(scores, reverse=True)
    check = a["check"]  # the deletion check of this map: its top 3 atoms hidden, against 8 random sets
    assert len(check["atoms"]) == 3 and check["n_random"] == 8 and 0 <= check["rank"] <= 1
    assert check["gain"] == pytest.approx(check["top_drop"] - check["random_drop"], abs=1e-9)
    top = sorted(range(9), key=lambda i: (-a["atoms"][i]["environment_score"], i))[:3]
    assert check["atoms"] == top  # ranked by the scores the picture shows
    ring = next(s for s in a["substructures"] if s["kind"] == "scaffold")
    assert ring["score"] == pytest.approx(sum(a["atoms"][i]["score"] for i in ring["atoms"]), abs=1e-9)


def test_attribute_switches_task_by_index_or_name(client):
    first = client.post("/attribute", json={"smiles": "NCCO", "target": 0}).json()
    second = client.post("/attribute", json={"smiles": "NCCO", "target": "has_o"}).json()
    assert (first["target"], first["target_name"]) == (0, "has_n")
    assert (second["target"], second["target_name"]) == (1, "has_o")
    assert first["output"] != second["output"]
    assert first["prediction"] == second["prediction"]  # the predictions are of every task either way
    r = client.post("/attribute", json={"smiles": "NCCO", "target": 2})
    assert r.status_code == 422 and "out of range" in r.json()["detail"]
    r = client.post("/attribute", json={"smiles": "NCCO", "target": "logp"})
    assert r.status_code == 422 and "has_n" in r.json()["detail"]


def test_attribute_after_predict_on_the_one_loaded_model(runs):
    """The page predicts, then explains the same molecule with the same weights: no inference-mode tensors left."""
    client = TestClient(build_app(ModelService(runs["clf"])))
    assert client.post("/predict", json={"smiles": ["CCCO"]}).status_code == 200
    r = client.post("/attribute", json={"smiles": "CCCO"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("smiles, words", [("C1CC", "invalid SMILES"), (LONG, "too long")])
def test_attribute_refuses_bad_smiles(client, smiles, words):
    r = client.post("/attribute", json={"smiles": smiles})
    assert r.status_code == 422 and words in r.json()["detail"]


# ---------------------------------------------------------------------------------- CSV in and out


def test_csv_upload_and_download(client, runs):
    from bartsmiles.model.prediction import predict_table

    frame = pd.DataFrame({"id": ["a", "b", "c"], "smi": ["CCO", "C1CC", "c1ccccc1"]})
    upload = {"file": ("mine.csv", frame.to_csv(index=False).encode(), "text/csv")}
    r = client.post("/predict/table", files=upload, data={"smiles_column": "smi"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="mine_predictions.csv"' in r.headers["content-disposition"]
    out = pd.read_csv(io.StringIO(r.text), keep_default_na=False)
    expected = predict_table(runs["clf"], frame, smiles_column="smi")
    assert list(out.columns) == list(expected.columns) == ["id", "smi", "has_n", "has_o", ERROR_COLUMN]
    assert out[ERROR_COLUMN].tolist()[0] == "" and out[ERROR_COLUMN].tolist()[1].startswith("invalid SMILES")
    np.testing.assert_allclose(pd.to_numeric(out["has_n"]).to_numpy()[[0, 2]],
                               expected["has_n"].to_numpy()[[0, 2]], rtol=1e-5)
    r = client.post("/predict/table?format=json", files=upload, data={"smiles_column": "smi"})
    assert r.status_code == 200 and [row["error"] != "" for row in r.json()["rows"]] == [False, True, False]


def test_csv_upload_errors_name_the_file(client):
    upload = {"file": ("mine.csv", b"id,smi\na,CCO\n", "text/csv")}
    r = client.post("/predict/table", files=upload)
    assert r.status_code == 422 and "'smiles'" in r.json()["detail"] and "mine.csv" in r.json()["detail"]
    r = client.post("/predict/table", files={"file": ("latin.csv", "smiles\nCCO\xe9\n".encode("latin-1"), "text/csv")})
    assert r.status_code == 422 and "latin.csv: not UTF-8" in r.json()["detail"]
    r = client.post("/predict/table", files={"file": ("empty.csv", b"", "text/csv")})
    assert r.status_code == 422 and "empty.csv is empty" in r.json()["detail"]
    many = "smiles\n" + "CCO\n" * 6
    r = client.post("/predict/table", files={"file": ("many.csv", many.encode(), "text/csv")})
    assert r.status_code == 422 and "too many molecules" in r.json()["detail"]


# ------------------------------------------------------------------------------------- intervals


def test_prediction_sets_when_the_model_has_a_calibration(runs):
    service = ModelService(runs["clf_cal"])
    client = TestClient(build_app(service))
    body = client.post("/predict", json={"smiles": ["CCO", "CCN"]}).json()
    assert body["interval_level"] == 90
    for row in body["rows"]:
        for task, p in row["predictions"].items():
            # label 0 is in the set when p <= 0.9, label 1 when 1 - p <= 0.9
            assert row["uncertainty"][task]["set"] == [c for c, keep in ((0, p <= 0.9), (1, 1 - p <= 0.9)) if keep]
    csv = client.post("/predict/table", files={"file": ("m.csv", b"smiles\nCCO\nC1CC\n", "text/csv")}).text
    out = pd.read_csv(io.StringIO(csv), keep_default_na=False)
    assert list(out.columns) == ["smiles", "has_n", "has_o", "has_n_set", "has_o_set", ERROR_COLUMN]
    assert out["has_n_set"][1] == ""  # an invalid row has no set
    first = body["rows"][0]["uncertainty"]  # the CSV says what the JSON says
    assert out["has_n_set"][0] == "{" + ",".join(map(str, first["has_n"]["set"])) + "}"


def test_regression_intervals_are_the_conformal_quantile(runs):
    service = ModelService(runs["reg"], alpha=0.1)
    body = service.predict(["CCO", "C1CC"], errors="report")
    row = body["rows"][0]
    value = row["predictions"]["length"]
    assert row["uncertainty"]["length"] == {"lower": pytest.approx(value - 18), "upper": pytest.approx(value + 18)}
    assert body["rows"][1]["uncertainty"] == {}
    out = service.predict_frame(pd.DataFrame({"smiles": ["CCO"]}))
    assert list(out.columns) == ["smiles", "length", "length_lower", "length_upper", ERROR_COLUMN]
    # too few calibration points for alpha=0.01 (needs 99): intervals off, said in /info
    strict = ModelService(runs["reg"], alpha=0.01)
    assert strict.level is None and "too few" in strict.info()["intervals"]


# ------------------------------------------------------------------------------------ the framework


def test_openapi_lists_both_endpoints_and_the_page_is_served(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/attribute", "/predict/table", "/info"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and 'id="drawing"' in page.text and 'id="substructures"' in page.text
    assert client.get("/info").json()["tasks"] == ["has_n", "has_o"]


def test_command_line_binds_localhost_and_refuses_bad_settings(runs, tmp_path, capsys):
    from bartsmiles.cli.main import main

    args = build_parser().parse_args(["serve", str(runs["clf"])])
    assert args.host == LOCALHOST == "127.0.0.1" and args.port == 8000
    with pytest.raises(ValueError, match="--port"):
        ServeConfig(model="m", port=0).check()
    for argv, words in ((["serve", str(tmp_path / "nothing.pt")], "nothing.pt"),
                        (["serve", str(runs["clf"]), "--max-molecules", "0"], "--max-molecules must be >= 1")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------------------- a real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
def test_the_page_in_headless_chromium(service, tmp_path):
    """The page, served by uvicorn on 127.0.0.1 (in a thread, with the loaded model), in a real browser."""
    import threading

    import uvicorn

    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium): the browser test is skipped")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(service), host=LOCALHOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/?smiles=O%3D%5BN%2B%5D(%5BO-%5D)c1ccccc1&smiles=C1CC&task=has_o"
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000",
                              "--dump-dom", url], check=False, capture_output=True, text=True, timeout=120).stdout
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert 'data-state="done"' in dom, dom[-2000:]
    drawing = dom[dom.index('id="drawing"'):]
    assert drawing.index("<svg") < drawing.index("</div>")  # the SVG drawing is in the drawing panel
    assert "bartsmiles_cbar" in drawing  # with its colour bar
    table = dom[dom.index('id="substructures"'):]
    assert "Murcko scaffold" in table[: table.index("</table>")]
    assert "output 1 (has_o)" in dom and "invalid SMILES" in dom  # the chosen task; the bad row reported, not dropped
