"""The home side of the device retrosynthesis run (scripts/device/retro_kit.py): views and scoring."""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bartsmiles.core.chem import canonicalize_set

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "device" / "retro_kit.py"
PRODUCTS = ["CC(=O)Nc1ccc(O)cc1", "CCOC(C)=O", "c1ccccc1O"]
TARGETS = ["CC(=O)Cl.Nc1ccc(O)cc1", "CCO.CC(=O)O", "Oc1ccccc1Br"]


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("retro_kit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rooted(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target"])
        writer.writerows(zip(PRODUCTS, TARGETS))
    return folder


def test_score_aggregates_views_and_counts_the_ranks(kit, tmp_path, monkeypatch):
    rooted, out = _rooted(tmp_path / "rooted"), tmp_path / "device"
    out.mkdir()
    beams = {  # (product, view) -> ranked candidates
        (0, 0): [("CC(=O)Cl.Nc1ccc(O)cc1", -0.1), ("CCO", -2.0)],       # right at rank 1 in view 0
        (0, 1): [("Nc1ccc(O)cc1.CC(Cl)=O", -0.2)],                      # the same set, spelled otherwise
        (1, 0): [("C1CC", -0.1), ("CC(=O)O.CCO", -0.5)],                # invalid first, right second
        (1, 1): [("CCO.CC(=O)O", -0.3)],
        (2, 0): [("Oc1ccccc1Cl", -0.1)],                                # never right
        (2, 1): [("Oc1ccccc1I", -0.2)],
    }
    with gzip.open(out / "beams.jsonl.gz", "wt") as handle:
        for (p, v), cands in beams.items():
            handle.write(json.dumps({"product": p, "view": v, "beams": [list(c) for c in cands]}) + "\n")
        handle.write('{"product": 2, "view": 2, "bea')  # a run cut off mid-line
    monkeypatch.setattr(sys, "argv", ["retro_kit.py", "score", str(out), "--rooted", str(rooted),
                                      "--out", str(tmp_path / "res")])
    assert kit.main() == 0
    result = json.loads((tmp_path / "res.json").read_text())
    assert result["products_scored"] == 3 and result["views"] == 2
    one, agg = result["one_view"], result["all_views"]
    assert one["top1"] == pytest.approx(1 / 3) and one["top3"] == pytest.approx(2 / 3)
    assert one["invalid_top1"] == pytest.approx(1 / 3)
    # aggregated, invalid dropped: product 1's right answer moves to rank 1
    assert agg["top1"] == pytest.approx(2 / 3) and agg["top10"] == pytest.approx(2 / 3)
    assert agg["invalid_top1"] == 0.0
    assert "| 2 (aggregated, invalid dropped) | 66.7 |" in (tmp_path / "res.md").read_text()


def test_prepare_writes_view_major_rooted_views_of_the_same_molecule(kit, tmp_path, monkeypatch):
    rooted = _rooted(tmp_path / "rooted")
    (rooted / "train.csv").write_text("source,target\n" + "\n".join(f"{p},{t}" for p, t in zip(PRODUCTS, TARGETS)))
    (rooted / "valid.csv").write_text("source,target\n")
    monkeypatch.setattr(kit, "REPO", tmp_path)
    monkeypatch.setattr(sys, "argv", ["retro_kit.py", "prepare", "--rooted", str(rooted), "--views", "3"])
    assert kit.main() == 0
    with gzip.open(tmp_path / ".devkit" / "retro" / "test_views.csv.gz", "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["view"]), int(r["product"])) for r in rows] == [(v, p) for v in range(3) for p in range(3)]
    for r in rows:
        assert canonicalize_set(r["source"]) == canonicalize_set(PRODUCTS[int(r["product"])])
    with gzip.open(tmp_path / ".devkit" / "retro" / "train.csv.gz", "rt") as handle:
        assert handle.read().splitlines()[1] == f"{PRODUCTS[0]},{TARGETS[0]}"
