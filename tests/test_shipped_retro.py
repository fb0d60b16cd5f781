"""The shipped retrosynthesis model (``pretrained/retro/``, the model ``--model retro`` names).

It loads by name, reads root-aligned products, answers with valid reactant sets that are not the
product itself, and its card reports exactly the numbers of the results files it was made from.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bartsmiles.core.chem import canonicalize_set_or_none
from bartsmiles.model.checkpoint import read_metadata
from bartsmiles.model.resolve import resolve_checkpoint, shipped_model_dir

ROOT = Path(__file__).resolve().parents[1]
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"


@pytest.fixture(scope="module")
def shipped():
    from bartsmiles.seq2seq import BartSmilesSeq2Seq

    return BartSmilesSeq2Seq.load("retro")


def test_the_retro_model_ships_and_describes_itself():
    path = resolve_checkpoint("retro")
    assert path == (shipped_model_dir() / "retro" / "model.pt").resolve()
    assert (path.parent / "dict.txt").is_file() and (path.parent / "MODEL_CARD.md").is_file()
    assert path.stat().st_size < 20e6  # fp16
    meta = read_metadata(path)
    assert meta["arch"] == "bartsmiles_small" and meta["num_updates"] > 0
    assert meta["extra"]["shipped_as"] == "retro"


def test_the_card_reports_the_measured_numbers():
    card = (shipped_model_dir() / "retro" / "MODEL_CARD.md").read_text()
    test = json.loads((ROOT / "benchmarks" / "results" / "retro_shipped.json").read_text())
    scores = test["scores"]
    assert scores["n"] == 5004  # the whole Liu test split
    row = next(line for line in card.splitlines() if line.startswith("| this model |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells == [f"{100 * scores[k]:.1f}" for k in ("top1", "top3", "top5", "top10", "invalid_top1")]
    assert str(read_metadata(resolve_checkpoint("retro"))["num_updates"]) in card


def test_the_shipped_model_answers_by_name(shipped, capsys):
    from bartsmiles.cli.main import main
    from bartsmiles.seq2seq import retrosynthesis

    assert shipped.source_views == "rooted"
    (result,) = retrosynthesis([PARACETAMOL], shipped, top_k=3, beam=5)
    product = canonicalize_set_or_none(PARACETAMOL)
    assert 1 <= len(result.candidates) <= 3
    assert all(canonicalize_set_or_none(c.reactants) == c.reactants != product for c in result.candidates)
    assert main(["retro", PARACETAMOL, "--top-k", "2", "--beam", "4", "--json"]) == 0  # default: --model retro
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["product"] == PARACETAMOL and 1 <= len(entry["candidates"]) <= 2
