"""`bartsmiles export`: transformers and ONNX folders that reproduce the fairseq model.

Tiny models only: a randomly initialized ``bartsmiles_tiny`` whose every weight is then perturbed
(so layer norms, biases and positions all matter), and two 1-epoch fine-tunes of it (2-task
classification, regression with target scaling). The parity bound is 1e-4, max abs.
Tests that need the ``export`` extra skip cleanly without it; the missing-extra test runs always.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from bartsmiles.cli.main import main
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import BartSmilesError, ExportError, MissingExtraError

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from make_fixtures import build_untrained_model, corpus  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOL = 1e-4
#: brackets, charges, isotopes, stereo (@, @@, /, \), ring closures %10, Cl/Br, salts, aromatic heteroatoms
TRICKY = ["C[C@@H](N)C(=O)O", "N[C@](C)(F)C(=O)O", "c1ccc2c(c1)C%10CC%10CC2", "C%10CCCCC%10", "[NH4+].[Cl-]",
          "[O-][N+](=O)c1ccc(Cl)cc1", "BrC/C=C\\CCl", "F/C=C/F", "[2H]C([2H])([2H])Br", "[13CH4]", "c1cc[nH]c1",
          "[Na+].[O-]C(=O)C", "O=S(=O)(O)c1ccc(Br)cc1", "C#N", "[Pt+2]", "[se]1cccc1", "CCl.BrBr", "C1CC2CCC1C2",
          "*C(=O)O", "C=1CC1"]
MOLS = corpus(24) + TRICKY


# ------------------------------------------------------------------------------------- fixtures
def _perturb(path: Path, seed: int = 0) -> None:
    """Add noise to every float weight of the checkpoint at ``path`` (in place)."""
    from bartsmiles.model.checkpoint import safe_load

    state = safe_load(path)
    generator = torch.Generator().manual_seed(seed)
    for name, value in state["model"].items():
        if value.is_floating_point() and not name.endswith(".version"):
            noise = torch.randn(value.shape, generator=generator, dtype=torch.float32) * 0.1
            state["model"][name] = (value.float() + noise).to(value.dtype)
    torch.save(state, path)


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def onnx():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    return pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A tiny model folder (model.pt + dict.txt) whose every weight is perturbed."""
    torch.set_num_threads(1)
    folder = build_untrained_model(tmp_path_factory.mktemp("export") / "tiny")
    _perturb(folder / "model.pt")
    return folder


@pytest.fixture(scope="module")
def models(pretrained, tmp_path_factory):
    """``pretrained`` and two 1-epoch fine-tunes of it: ``clf`` (2 tasks) and ``reg`` (run folders)."""
    from bartsmiles.core.splits import Split
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("finetune")
    train = corpus(24)
    frame = pd.DataFrame({"smiles": train, "has_n": [float("N" in s or "n" in s) for s in train],
                          "has_cl": [float("Cl" in s) for s in train],
                          "length": [10.0 * len(s) + 50 for s in train]})
    frame.to_csv(root / "d.csv", index=False)
    Split(train=list(range(16)), valid=list(range(16, 24)), test=[], kind="random", seed=0).save(root / "split.json")
    common = dict(data=str(root / "d.csv"), pretrained=str(pretrained), split=str(root / "split.json"), epochs=1,
                  batch_size=8, lr=1e-3, keep_last_epochs=1, cpu=True, log_interval=100, score_test=False,
                  progress=False)
    clf = finetune(FinetuneConfig(save_dir=str(root / "clf"), target_columns=("has_n", "has_cl"),
                                  task_type="classification", **common))
    reg = finetune(FinetuneConfig(save_dir=str(root / "reg"), target_columns=("length",), task_type="regression",
                                  **common))
    return {"pretrained": pretrained, "clf": Path(clf.save_dir), "reg": Path(reg.save_dir)}


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


# ------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_ids_equal_ours_token_for_token():
    pytest.importorskip("tokenizers")
    from bartsmiles.model.export import build_tokenizer

    ours = SmilesTokenizer()
    smiles = corpus() + TRICKY
    vocab = Vocabulary.build(ours.tokenize(s) for s in smiles[: len(smiles) - 5])  # the last ones: some <unk>
    symbols = vocab.symbols + ["<mask>"]
    tok = build_tokenizer(symbols, max_positions=128)
    for s in smiles:
        expected = vocab.encode(ours.tokenize(s))
        encoding = tok.encode(s)
        assert encoding.ids == expected, s
        assert encoding.tokens[1:-1] == [t if t in vocab else "<unk>" for t in ours.tokenize(s)], s
        if vocab.unk not in expected:
            assert tok.decode(encoding.ids) == s  # special tokens skipped, tokens joined without spaces
    assert vocab.unk in tok.encode("[Pt+2]").ids or "[Pt+2]" in vocab


def test_tokenizer_over_the_shipped_vocabulary():
    pytest.importorskip("tokenizers")
    from bartsmiles.model.export import build_tokenizer
    from bartsmiles.model.resolve import shipped_model_dir

    vocab = Vocabulary.load(shipped_model_dir() / "dict.txt")
    tok = build_tokenizer(vocab.symbols + ["<mask>"], max_positions=128, pad_and_truncate=True)
    ours = SmilesTokenizer()
    for s in TRICKY + corpus(50):
        assert tok.encode(s).ids == vocab.encode(ours.tokenize(s)), s
    long = tok.encode("C" * 200)  # truncation as on_overflow="truncate": 126 tokens between <s> and </s>
    assert long.ids == vocab.encode(ours.tokenize("C" * 200), max_positions=128, on_overflow="truncate")
    batch = tok.encode_batch(["CCO", "c1ccccc1"])
    assert batch[0].ids[-1] == 1 and batch[0].attention_mask[-1] == 0  # right padding with <pad> = 1


# ---------------------------------------------------------------------------------- transformers
def test_hf_export_of_a_pretrained_model_matches_fairseq(transformers, models, tmp_path):
    from bartsmiles.model.export import EXPORT_JSON, export_hf
    from bartsmiles.model.pretrained import load_pretrained

    out = tmp_path / "hf"
    summary = export_hf(models["pretrained"], out)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", EXPORT_JSON} <= set(
        summary["files"])
    assert summary["self_check"]["max_abs_diff"]["features"] <= TOL

    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(out, local_files_only=True).eval()
    assert type(model).__name__ == "BartModel"
    assert model.config.scale_embedding is False and model.config.activation_function == "gelu"
    fairseq = load_pretrained(models["pretrained"])
    assert [tokenizer(s)["input_ids"] for s in MOLS] == fairseq.encode_ids(MOLS)
    batch = tokenizer(MOLS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model.get_encoder()(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    features = ((states * mask).sum(1) / mask.sum(1)).numpy()
    expected = fairseq.encode(MOLS, progress=False)
    assert _max_abs(features, expected) <= TOL
    assert np.abs(expected).max() > 0.1  # the comparison is not between zeros


@pytest.mark.parametrize("run", ["clf", "reg"])
def test_hf_export_of_a_finetuned_model_matches_fairseq(transformers, models, tmp_path, run):
    from bartsmiles.model.export import export_hf, fairseq_outputs, hf_outputs, load_source
    from bartsmiles.model.predictor import PropertyPredictor

    out = tmp_path / run
    export_hf(models[run], out)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out, local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert type(model).__name__ == "BartForSequenceClassification"
    task = model.config.bartsmiles["task"]
    names = ["has_n", "has_cl"] if run == "clf" else ["length"]
    assert [model.config.id2label[i] for i in range(len(names))] == names == task["task_names"]
    assert model.config.problem_type == ("multi_label_classification" if run == "clf" else "regression")

    with torch.inference_mode():
        logits = model(**tokenizer(MOLS, padding=True, return_tensors="pt")).logits.numpy()
    source = load_source(models[run])
    reference = fairseq_outputs(source, MOLS)
    assert _max_abs(logits, reference["logits"]) <= TOL
    # predictions as the config says to read them (canonical SMILES in, the scaling undone), against
    # the fine-tuned model's own predictor, which canonicalizes as its checkpoint records
    assert task["smiles_form"] == "canonical"
    canonical = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in MOLS]
    with torch.inference_mode():
        canonical_logits = model(**tokenizer(canonical, padding=True, return_tensors="pt")).logits.numpy()
    if run == "clf":
        assert task["target_scaling"] is None
        predictions, tolerance = 1 / (1 + np.exp(-canonical_logits)), TOL
    else:
        scaling = task["target_scaling"]
        assert scaling["std"][0] > 1  # original units differ from the standardized ones
        predictions = canonical_logits * np.asarray(scaling["std"]) + np.asarray(scaling["mean"])
        tolerance = TOL * scaling["std"][0]
    expected = PropertyPredictor(source.path).predict(MOLS)
    assert _max_abs(predictions, expected) <= tolerance
    exported = hf_outputs(out, MOLS, batch_size=7)  # other batches, same numbers
    assert _max_abs(exported["features"], reference["features"]) <= TOL
    assert _max_abs(exported["logits"], reference["logits"]) <= TOL


# ------------------------------------------------------------------------------------------ onnx
@pytest.mark.parametrize("run", ["pretrained", "clf", "reg"])
def test_onnx_export_matches_fairseq(onnx, models, tmp_path, run):
    from bartsmiles.model.export import OnnxModel, export_onnx, fairseq_outputs, load_source
    from bartsmiles.model.pretrained import load_pretrained

    out = tmp_path / run
    summary = export_onnx(models[run], out)
    assert {"model.onnx", "tokenizer.json"} <= set(summary["files"])
    proto = onnx.load(str(out / "model.onnx"))
    assert [i.name for i in proto.graph.input] == ["input_ids", "attention_mask"]
    assert json.loads({p.key: p.value for p in proto.metadata_props}["bartsmiles"])["kind"] == (
        "pretrained" if run == "pretrained" else "property")

    runtime = OnnxModel(out, threads=1)
    smiles = MOLS + ["C" * 124, "C"]  # the longest input the positions allow; a batch of its own length
    got = runtime.run(smiles, batch_size=5)
    source = load_source(models[run])
    reference = fairseq_outputs(source, smiles)
    assert set(got) == set(reference)
    for key in reference:
        assert _max_abs(got[key], reference[key]) <= TOL * (50 if key == "predictions" and run == "reg" else 1), key
    if run == "pretrained":
        assert _max_abs(got["features"], load_pretrained(models[run]).encode(smiles, progress=False)) <= TOL
    assert _max_abs(runtime.encode(smiles[-1:]), reference["features"][-1:]) <= TOL  # a batch of one


# ------------------------------------------------------------------------------------------- CLI
def test_cli_export_onnx_prints_a_summary(onnx, models, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["export", str(models["clf"]), str(out), "--format", "onnx"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "onnx" and summary["kind"] == "property"
    assert summary["self_check"]["max_abs_diff"]["logits"] <= TOL


def test_missing_extra_is_one_line_with_the_pip_command(pretrained, tmp_path, capsys, monkeypatch):
    for name in ("transformers", "onnx"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    for fmt, package in (("hf", "transformers"), ("onnx", "onnx")):
        assert main(["export", str(pretrained), str(tmp_path / fmt), "--format", fmt]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err
        assert 'pip install "bartsmiles[export]"' in err[0] and repr(package) in err[0]
    from bartsmiles.model.export import export_hf

    with pytest.raises(MissingExtraError) as caught:
        export_hf(pretrained, tmp_path / "api")
    assert isinstance(caught.value, ModuleNotFoundError) and isinstance(caught.value, BartSmilesError)
    assert caught.value.extra == "export"


def test_unmappable_models_are_refused(transformers, pretrained, tmp_path, capsys):
    from bartsmiles.model.export import export_hf, load_source

    source = load_source(pretrained)
    with pytest.raises(ExportError, match="sentencepiece"):
        export_hf(dataclasses.replace(source, tokenizer="sentencepiece"), tmp_path / "sp")
    source.model.args.encoder_normalize_before = True
    with pytest.raises(ExportError, match="pre-norm"):
        export_hf(source, tmp_path / "prenorm")
    assert main(["export", str(pretrained), str(pretrained)]) == 2
    assert "own folder" in capsys.readouterr().err
