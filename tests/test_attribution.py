"""Attribution: IG, mask occlusion, gradient x input and Shapley sampling at the encoder input
embeddings, token -> atom -> substructure, drawing, CLI.

A tiny model (bartsmiles_tiny, random init, shipped dict) is fine-tuned once per module on 30
molecules labelled by the presence of a nitro group (about 5 s on one CPU thread).
"""
from __future__ import annotations

import json
import warnings
from importlib.metadata import entry_points
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from bartsmiles.attribution import (
    METHODS,
    Attributor,
    NeuronAttributor,
    brics_fragments,
    functional_groups,
    map_token_scores,
    occlusion_groups,
    scaffold_parts,
    substructure_table,
)
from bartsmiles.core.chem import parse_smiles
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.errors import (
    AttributionError,
    ConvergenceError,
    ConvergenceWarning,
    InvalidSmilesError,
    SmilesTooLongError,
    TargetError,
)

NITRO = ["O=[N+]([O-])c1ccccc1", "CC[N+](=O)[O-]", "Cc1ccc([N+](=O)[O-])cc1", "O=[N+]([O-])c1ccc(O)cc1",
         "C[N+](=O)[O-]", "O=[N+]([O-])CCO", "Nc1ccc([N+](=O)[O-])cc1", "O=C(O)c1ccc([N+](=O)[O-])cc1",
         "O=[N+]([O-])c1cccnc1", "CCC[N+](=O)[O-]", "Clc1ccc([N+](=O)[O-])cc1", "O=[N+]([O-])C1CCCCC1",
         "COc1ccc([N+](=O)[O-])cc1", "O=[N+]([O-])c1ccccc1Br", "CC(C)[N+](=O)[O-]"]
PLAIN = ["c1ccccc1", "CCO", "Cc1ccccc1", "Oc1ccccc1", "CC(=O)O", "OCCO", "Nc1ccccc1", "O=C(O)c1ccccc1",
         "c1ccncc1", "CCCN", "Clc1ccccc1", "C1CCCCC1", "COc1ccccc1", "Brc1ccccc1", "CC(C)O"]
# rings, branches, charges, stereo, a salt ('.')
PROBES = ["O=[N+]([O-])c1ccccc1", "CC(C)(C)c1ccc(cc1)C(=O)O", "[NH3+]CC(=O)[O-]", "C/C=C/C(=O)OC",
          "C[C@@H](N)C(=O)O.[Na+].[Cl-]", "CCO"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nitro")
    smiles = [s for pair in zip(NITRO, PLAIN) for s in pair]
    frame = pd.DataFrame({"smiles": smiles, "nitro": [float(i % 2 == 0) for i in range(len(smiles))]})
    (root / "data").mkdir()
    frame.to_csv(root / "data" / "train.csv", index=False)
    frame.to_csv(root / "data" / "valid.csv", index=False)
    result = finetune(FinetuneConfig(
        data=str(root / "data"), arch="bartsmiles_tiny", save_dir=str(root / "run"), epochs=6, batch_size=8,
        lr=3e-3, dropout=0.0, attention_dropout=0.0, warmup_ratio=0.1, clip_norm=1.0, keep_last_epochs=1,
        cpu=True, num_workers=0, log_interval=100, score_test=False))
    return result.best_checkpoint


@pytest.fixture(scope="module")
def attributor(checkpoint):
    return Attributor(checkpoint)


@pytest.fixture(scope="module")
def probes(attributor):
    return attributor.attribute(PROBES, n_steps=32)


# --------------------------------------------------------------------------------- completeness


def test_completeness_atoms_tokens_and_model_output(attributor, probes, checkpoint):
    from bartsmiles.model.predictor import PropertyPredictor

    predictor = PropertyPredictor(checkpoint)
    ids, _, _ = predictor.task.encode(PROBES)
    ds = predictor.task.build_dataset_for_inference(ids)
    with torch.no_grad():
        logits, _ = predictor.model(**ds.collater([ds[i] for i in range(len(ds))])["net_input"],
                                    features_only=True, classification_head_name="smiles_property")
    for a, logit in zip(probes, logits[:, 0].tolist()):
        # F(x) through token_embeddings= is the model's own output
        assert a.output == pytest.approx(logit, abs=1e-5)
        token_sum = float(a.token_scores.sum()) + sum(a.special_scores.values())
        assert a.atom_scores.sum() + a.remainder == pytest.approx(token_sum, abs=1e-9)
        # Captum's delta: sum(scores) - (F(x) - F(baseline))
        assert token_sum == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-5)
        assert a.converged and abs(a.delta) < 1e-3
        assert a.atom_scores.shape == (parse_smiles(a.smiles).GetNumAtoms(),)
        # specials keep their real embedding in the default baseline: exactly zero
        assert a.special_scores == {"<s>": 0.0, "</s>": 0.0}
    salt = probes[4]
    dots = [t for t, tok in enumerate(salt.tokens) if tok == "."]
    assert salt.remainder == pytest.approx(float(salt.token_scores[dots].sum()), abs=1e-12)


def test_batching_does_not_change_attributions(attributor, probes):
    [alone] = attributor.attribute(PROBES[-1], n_steps=32)  # CCO was padded in the batch
    np.testing.assert_allclose(alone.token_scores, probes[-1].token_scores, atol=1e-5)
    assert alone.output == pytest.approx(probes[-1].output, abs=1e-5)


@pytest.mark.parametrize("baseline", ["mask", "eos"])
def test_other_baselines_and_replaced_specials(attributor, baseline):
    [a] = attributor.attribute(PROBES[0], baselines=baseline, n_steps=32, replace_specials=True)
    assert a.baseline == baseline
    assert a.total == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-5)
    assert a.atom_scores.sum() + a.remainder == pytest.approx(a.total, abs=1e-9)
    assert a.remainder == pytest.approx(sum(a.special_scores.values()), abs=1e-12)


def test_accepts_predictor_estimator_and_folder(checkpoint, probes):
    from pathlib import Path

    from bartsmiles.errors import AttributionError
    from bartsmiles.model.predictor import PropertyPredictor

    predictor = PropertyPredictor(checkpoint)
    fitted = SimpleNamespace(_get_predictor=lambda: predictor)  # what a fitted BartSmilesClassifier offers
    for source in (predictor, fitted, Path(checkpoint).parent):
        [a] = Attributor(source).attribute(PROBES[0], n_steps=32)
        np.testing.assert_allclose(a.atom_scores, probes[0].atom_scores, atol=1e-5)
    with pytest.raises(TypeError, match="cannot attribute a int"):
        Attributor(3)
    with pytest.raises(AttributionError, match="output must be"):
        Attributor(predictor, output="odds")


def test_prediction_output_attributes_the_probability(checkpoint):
    from bartsmiles.model.predictor import predict

    [a] = Attributor(checkpoint, output="prediction").attribute(PROBES[0], n_steps=32)
    assert a.output == pytest.approx(float(predict(checkpoint, [PROBES[0]])[0, 0]), abs=1e-5)
    assert 0.0 <= a.baseline_output <= 1.0


# --------------------------------------------------------------------------------- convergence


def test_more_steps_shrink_the_delta_and_the_check_fires(attributor):
    smiles = PROBES[:3]
    coarse = attributor.attribute(smiles, n_steps=2, on_delta="ignore")
    fine = attributor.attribute(smiles, n_steps=48, on_delta="ignore")
    coarse_trap = attributor.attribute(smiles, n_steps=4, method="riemann_trapezoid", on_delta="ignore")
    fine_trap = attributor.attribute(smiles, n_steps=64, method="riemann_trapezoid", on_delta="ignore")
    assert sum(abs(a.delta) for a in fine) < sum(abs(a.delta) for a in coarse)
    assert sum(abs(a.delta) for a in fine_trap) < sum(abs(a.delta) for a in coarse_trap)
    with pytest.raises(ConvergenceError, match="increase n_steps"):
        attributor.attribute(smiles, n_steps=2, method="riemann_left", tolerance=1e-9, on_delta="raise")
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        attributor.attribute(smiles, n_steps=2, method="riemann_left", tolerance=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        attributor.attribute(smiles, n_steps=2, method="riemann_left", tolerance=1e-9, on_delta="ignore")


# --------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_clear_errors(attributor):
    with pytest.raises(InvalidSmilesError, match=r"index 1.*'C1CC'") as err:
        attributor.attribute(["CCO", "C1CC"], n_steps=2)
    assert err.value.index == 1 and err.value.smiles == "C1CC"
    with pytest.raises(InvalidSmilesError, match="index 0"):
        attributor.attribute("", n_steps=2)
    with pytest.raises(SmilesTooLongError, match="202 positions.*at most 128") as err:
        attributor.attribute(["CCO", "C" * 200], n_steps=2)
    assert (err.value.length, err.value.limit, err.value.index) == (202, 128, 1)
    with pytest.raises(TargetError, match="target 3 is out of range: the model has 1 output"):
        attributor.attribute("CCO", target=3, n_steps=2)
    with pytest.raises(TargetError, match="'toxic' is not an output"):
        attributor.attribute("CCO", target="toxic", n_steps=2)
    assert attributor.attribute("CCO", target="nitro", n_steps=2)[0].target_name == "nitro"
    with pytest.raises(ValueError, match="n_steps must be >= 2"):
        attributor.attribute("CCO", n_steps=1)
    with pytest.raises(ValueError, match="baselines must be one of"):
        attributor.attribute("CCO", baselines="zeros", n_steps=2)


# --------------------------------------------------------------------------------- mapping


def _mapped(smiles, scores=None):
    alignment = SmilesTokenizer().align(smiles)
    scores = np.ones(len(alignment.tokens)) if scores is None else np.asarray(scores, dtype=float)
    return map_token_scores(alignment, scores, parse_smiles(smiles).GetNumAtoms(), special_scores=[0.25, 0.5])


@pytest.mark.parametrize("smiles, expected, remainder", [
    # ring closure digits: half to each ring partner
    ("C1CC1", [2.0, 1.0, 2.0], 0.75),
    # branch '(' ')' and bond '=': shared by the anchor and the first branch atom
    ("CC(=O)O", [1.0, 2.5, 2.5, 1.0], 0.75),
    # charged bracket atoms are one token each
    ("[NH3+]CC(=O)[O-]", [1.0, 1.0, 2.5, 2.5, 1.0], 0.75),
    # stereo bonds are bonds
    ("C/C=C/C", [1.5, 2.0, 2.0, 1.5], 0.75),
    # an explicit [H] goes to its heavy neighbour; '.' goes to the remainder
    ("[H]OC.N", [2.0, 1.0, 1.0], 1.75),
])
def test_token_to_atom_rule(smiles, expected, remainder):
    m = _mapped(smiles)
    np.testing.assert_allclose(m.atom_scores, expected)
    assert m.remainder == pytest.approx(remainder)
    assert m.atom_scores.sum() + m.remainder == pytest.approx(len(SmilesTokenizer().tokenize(smiles)) + 0.75)


def test_mapping_of_fused_rings_conserves_random_scores():
    smiles = "Cc1ccc2c(c1)[nH]c1ccc(C(=O)[O-])cc12"
    rng = np.random.default_rng(0)
    scores = rng.normal(size=len(SmilesTokenizer().tokenize(smiles)))
    m = _mapped(smiles, scores)
    assert m.atom_scores.sum() + m.remainder == pytest.approx(scores.sum() + 0.75)
    assert set(m.rule) <= {"atom", "join"}
    with pytest.raises(ValueError, match="token scores"):
        _mapped(smiles, scores[:-1])


# --------------------------------------------------------------------------------- substructures


def test_functional_group_library_parses_and_matches_its_examples():
    from bartsmiles.core.chem import match_smarts

    groups = functional_groups()
    assert len(groups) >= 30
    names = {g.name for g in groups}
    assert {"nitro", "aromatic nitro", "Michael acceptor", "aldehyde", "epoxide", "azo"} <= names
    for g in groups:
        assert match_smarts(parse_smiles(g.example), g.smarts), g.name
    assert not match_smarts(parse_smiles("CC(C)=O"), next(g.smarts for g in groups if g.name == "aldehyde"))
    assert not match_smarts(parse_smiles("CCO[N+](=O)[O-]"), next(g.smarts for g in groups if g.name == "nitro"))


def test_substructure_sums_partitions_and_ranking():
    smiles = "O=[N+]([O-])c1ccc(cc1)C(=O)OCC"
    mol = parse_smiles(smiles)
    scores = np.random.default_rng(1).normal(size=mol.GetNumAtoms())
    table = substructure_table(mol, scores, smarts={"ring N": "[N+]c"})
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    assert np.all(np.diff(table["score"].to_numpy()) <= 0)
    for row in table.itertuples():
        assert row.score == pytest.approx(scores[list(row.atoms)].sum())
    nitro = table[table["name"] == "nitro"].iloc[0]
    assert sorted(nitro["atoms"]) == [0, 1, 2]
    assert set(table["kind"]) >= {"toxicophore", "functional_group", "brics", "scaffold", "side_chain", "user"}
    assert table[table["kind"] == "brics"]["score"].sum() == pytest.approx(scores.sum())
    assert table[table["kind"].isin(["scaffold", "side_chain"])]["score"].sum() == pytest.approx(scores.sum())
    frags = brics_fragments(mol)
    assert sorted(a for f in frags for a in f) == list(range(mol.GetNumAtoms())) and len(frags) > 1
    core, chains = scaffold_parts(mol)
    assert sorted(core) == [3, 4, 5, 6, 7, 8] and len(chains) == 2
    assert scaffold_parts("CCO")[0] == ()
    with pytest.raises(ValueError, match="invalid SMARTS"):
        substructure_table(mol, scores, smarts={"bad": "[C"})
    with pytest.raises(ValueError, match="atom scores"):
        substructure_table(mol, scores[:-1])


def test_attribution_substructures_of_the_model(probes):
    table = probes[0].substructures()
    assert table[table["kind"] == "brics"]["score"].sum() == pytest.approx(probes[0].atom_scores.sum())
    assert "aromatic nitro" in set(table["name"])


# --------------------------------------------------------------------------------- neurons


def test_neuron_attribution_matches_the_pooled_feature(checkpoint):
    from bartsmiles.model.predictor import PropertyPredictor

    predictor = PropertyPredictor(checkpoint)
    neurons = NeuronAttributor(predictor)
    results = neurons.attribute(PROBES[:3], neuron=5, n_steps=32)
    ids, _, _ = predictor.task.encode(PROBES[:3])
    for a, row in zip(results, ids):
        with torch.no_grad():
            out = predictor.model.encoder(torch.tensor([row]), src_lengths=torch.tensor([len(row)]))
        feature = out["encoder_out"][0][:, 0, 5].mean().item()  # mean over <s>, tokens, </s>
        assert a.output == pytest.approx(feature, abs=1e-5)
        assert a.target == 5 and a.quantity.startswith("encoder feature 5")
        assert a.atom_scores.sum() + a.remainder == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-5)
    assert not results[0].substructures().empty
    with pytest.raises(TargetError, match="64 features"):
        neurons.attribute("CCO", neuron=64)


# --------------------------------------------------------------------------------- drawing and CLI


def test_drawing_writes_png_svg_grid_and_html(probes, tmp_path):
    from bartsmiles.attribution.draw import draw_attribution, draw_grid, write_html_report

    draw_attribution(probes[0], tmp_path / "a.png")
    draw_attribution(probes[1], tmp_path / "a.svg")
    draw_attribution("CCO", tmp_path / "s.png", scores=[0.1, -0.2, 0.3], style="similarity")
    draw_grid(probes, tmp_path / "grid.png", n_cols=3)
    write_html_report(probes[:2], tmp_path / "r.html")
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "s.png").stat().st_size > 1000 and (tmp_path / "grid.png").stat().st_size > 1000
    svg = (tmp_path / "a.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "linearGradient" in svg
    page = (tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in page and "O=[N+]([O-])c1ccccc1" in page and "<table" in page


def test_cli_end_to_end(checkpoint, tmp_path):
    from bartsmiles.attribution.cli import main

    csv = tmp_path / "in.csv"
    pd.DataFrame({"smi": ["O=[N+]([O-])c1ccccc1", "C1CC", "CCO"]}).to_csv(csv, index=False)
    out = tmp_path / "out"
    rc = main([str(checkpoint), "--csv", str(csv), "--smiles-column", "smi", "--n-steps", "16",
               "--smarts", "nitro N=[N+](=O)[O-]", "--format", "svg", "--out", str(out)])
    assert rc == 0
    for name in ("summary.csv", "atoms.csv", "tokens.csv", "substructures.csv", "attributions.json",
                 "errors.csv", "grid.png", "report.html", "images/mol_0000.svg", "images/mol_0002.svg"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert pd.read_csv(out / "errors.csv")["row"].tolist() == [1]
    summary = pd.read_csv(out / "summary.csv")
    assert summary["row"].tolist() == [0, 2]
    data = json.loads((out / "attributions.json").read_text())
    first = data["molecules"][0]
    assert sum(first["atom_scores"]) + first["remainder"] == pytest.approx(first["total"], abs=1e-9)
    assert any(s["kind"] == "user" for s in first["substructures"])
    rc = main([str(checkpoint), "CCO", "--neuron", "3", "--no-images", "--out", str(tmp_path / "n")])
    assert rc == 0 and (tmp_path / "n" / "atoms.csv").is_file()
    assert main([str(checkpoint), "C1CC", "--out", str(tmp_path / "bad")]) == 2


def test_console_script_is_registered():
    """setup.cfg declares it; the installed script (pip install -e .) calls the CLI's main."""
    import configparser
    import sys
    from pathlib import Path

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert "bartsmiles-attribute = bartsmiles.attribution.cli:main" in cfg["options.entry_points"]["console_scripts"]
    assert cfg.get("options.package_data", "bartsmiles.attribution").strip() == "*.json"
    # a stale bartsmiles.egg-info in the repository root can shadow the installed metadata: look at both
    registered = any(e.value == "bartsmiles.attribution.cli:main" for e in entry_points(group="console_scripts")
                     if e.name == "bartsmiles-attribute")
    script = Path(sys.executable).with_name("bartsmiles-attribute")
    assert registered or (script.is_file() and "bartsmiles.attribution.cli" in script.read_text())


def test_groundtruth_benchmark_smoke(tmp_path):
    """benchmarks/attribution_groundtruth.py --smoke runs end to end (numbers meaningless)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "attribution_groundtruth.py"
    spec = importlib.util.spec_from_file_location("attribution_groundtruth", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if not bench.MOSES.is_file():
        pytest.skip(f"MOSES not found at {bench.MOSES}")
    assert bench.main(["--smoke", "--pool", "1500", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work")]) == 0
    report = json.loads((tmp_path / "attribution_groundtruth.json").read_text())
    methods = report["tasks"][0]["methods"]
    assert set(methods) == {"bartsmiles_ig", "ecfp_rf", "random"}
    assert all(m["n_molecules"] > 0 for m in methods.values())
    assert (tmp_path / "attribution_groundtruth.md").read_text().startswith("# Attribution ground truth")


def test_clintox_example_script_smoke(checkpoint, tmp_path):
    """benchmarks/attribution_clintox.py runs end to end on a stand-in ClinTox file."""
    import importlib.util
    from pathlib import Path

    smiles = [s for pair in zip(NITRO, PLAIN) for s in pair] * 2
    (tmp_path / "data" / "moleculenet").mkdir(parents=True)
    pd.DataFrame({"smiles": smiles, "FDA_APPROVED": [1.0] * len(smiles),
                  "CT_TOX": [float("N+" in s) for s in smiles]}).to_csv(
        tmp_path / "data" / "moleculenet" / "clintox.csv.gz", index=False)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "attribution_clintox.py"
    spec = importlib.util.spec_from_file_location("attribution_clintox", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "res" / "clintox"
    assert bench.main(["--checkpoint", checkpoint, "--data-dir", str(tmp_path / "data"), "--target", "0",
                       "--top", "6", "--draw", "4", "--n-steps", "8", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["attributed"]) == 6 and report["held_out"]["n_scored"] > 0
    # ranked most "toxic" first: the tiny model was trained to find nitro groups
    probs = [a["probability"] for a in report["attributed"]]
    assert probs == sorted(probs, reverse=True)
    assert report["groups"] and {"name", "molecules", "mean_score_per_match"} <= set(report["groups"][0])
    assert out.with_suffix(".png").stat().st_size > 1000 and out.with_suffix(".html").is_file()
    assert out.with_suffix(".md").read_text().startswith("# Attribution on clintox")


def test_memory_bound_chunks_the_integration_without_changing_it(attributor, monkeypatch):
    """internal_batch_size=None splits the steps into passes of about IG_TOKEN_BUDGET tokens."""
    from bartsmiles.attribution import integrated_gradients as ig_module

    whole = attributor.attribute(PROBES[:3], n_steps=16, internal_batch_size=10_000, on_delta="ignore")
    monkeypatch.setattr(ig_module, "IG_TOKEN_BUDGET", 40)  # a few rows per pass
    chunked = attributor.attribute(PROBES[:3], n_steps=16, on_delta="ignore")
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a.atom_scores, b.atom_scores, rtol=1e-4, atol=1e-6)
        assert a.delta == pytest.approx(b.delta, abs=1e-5)


# --------------------------------------------------------------------------------- other methods

#: (method, options): every method and its variants, with settings small enough for the tiny model
VARIANTS = [
    ("ig", {"n_steps": 16}),
    ("mask_occlusion", {}),
    ("mask_occlusion", {"attached": True, "occlude_decoder": True}),
    ("gradient_x_input", {}),
    ("gradient_x_input", {"baselines": "mask", "replace_specials": True}),
    ("shapley", {"n_samples": 3}),
    ("shapley", {"n_samples": 3, "features": "atoms", "replace_specials": True}),
    ("shapley", {"estimator": "ablation"}),
]
ADDITIVE = {("ig", "gausslegendre"), ("shapley", "sampling/tokens"), ("shapley", "sampling/atoms")}


@pytest.fixture(scope="module")
def predictor(checkpoint):
    from bartsmiles.model.predictor import PropertyPredictor

    return PropertyPredictor(checkpoint)


def _ids(variants):
    return [f"{m}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'default'}" for m, o in variants]


@pytest.mark.parametrize("method, options", VARIANTS, ids=_ids(VARIANTS))
def test_every_method_scores_every_atom(predictor, probes, method, options):
    """Rings, branches, charges, stereo and a salt: one finite score per RDKit atom, same result type."""
    results = Attributor(predictor, method=method).attribute(PROBES, **options)
    assert [a.smiles for a in results] == PROBES
    for a, ig in zip(results, probes):
        assert a.attribution_method == method
        assert a.atom_scores.shape == (parse_smiles(a.smiles).GetNumAtoms(),)
        assert np.all(np.isfinite(a.atom_scores)) and np.any(a.atom_scores != 0)
        assert a.token_scores.shape == (len(a.tokens),)
        assert a.output == pytest.approx(ig.output, abs=1e-5)  # the same F for every method
        assert a.atom_scores.sum() + a.remainder == pytest.approx(a.total, abs=1e-6)
        assert a.total == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-5)
        if (method, a.method) in ADDITIVE:
            assert a.converged is True
        else:
            assert a.converged is None
        assert not a.substructures().empty and len(a.token_frame()) == len(a.tokens) + 2
        assert json.loads(json.dumps(a.to_dict()))["attribution_method"] == method


def test_occlusion_scores_the_atom_the_output_reads(predictor, monkeypatch):
    """A stand-in head that only looks for the N token: occluding N is the only thing that matters."""
    occlusion = Attributor(predictor, method="mask_occlusion")
    embed = occlusion.model.encoder.embed_tokens
    target = embed.weight[occlusion.vocab.index("N")].detach()

    def reads_n(emb, src, lengths, prev):  # (B, 1): how N-like the most N-like position is
        return torch.nn.functional.cosine_similarity(emb, target.expand_as(emb), dim=-1).amax(dim=1, keepdim=True)

    monkeypatch.setattr(occlusion, "_forward", reads_n)
    smiles = "CC(=O)Nc1ccc(O)cc1"  # paracetamol: the amide N is atom 3
    for attached in (False, True):
        [a] = occlusion.attribute(smiles, attached=attached)
        assert int(np.argmax(a.atom_scores)) == 3 and a.atom_scores[3] > 0.1
        assert np.allclose(np.delete(a.atom_scores, 3), 0.0, atol=1e-6)


def test_occlusion_of_the_nitro_model_finds_the_nitro_group(predictor):
    [a] = Attributor(predictor, method="mask_occlusion").attribute("O=[N+]([O-])c1ccccc1")
    assert int(np.argmax(a.atom_scores)) in (0, 1, 2)
    assert a.baseline == "mask" and a.method == "atom"


def test_occlusion_groups_follow_the_alignment():
    alignment = SmilesTokenizer().align("C1CC1=O")  # tokens C 1 C C 1 = O
    assert occlusion_groups(alignment, 4) == [(0,), (2,), (3,), (6,)]
    assert occlusion_groups(alignment, 4, attached=True) == [(0, 1, 4), (2,), (1, 3, 4, 5), (5, 6)]


def test_shapley_values_are_complete(predictor):
    shap = Attributor(predictor, method="shapley")
    occluded = Attributor(predictor, method="mask_occlusion").attribute(PROBES)
    for options in ({"n_samples": 2}, {"n_samples": 5, "features": "atoms"}, {"n_samples": 2, "replace_specials": True}):
        for a, occ in zip(shap.attribute(PROBES, **options), occluded):
            assert a.converged and abs(a.delta) < 1e-4
            assert a.atom_scores.sum() + a.remainder == pytest.approx(a.output - a.baseline_output, abs=1e-4)
            if not options.get("replace_specials"):
                # the same baseline as occlusion's: every molecule token masked
                assert a.baseline_output == pytest.approx(occ.baseline_output, abs=1e-5)
    salt = shap.attribute(PROBES[4], n_samples=2)[0]  # '.' is a player whose value is the remainder
    dots = [t for t, tok in enumerate(salt.tokens) if tok == "."]
    assert salt.remainder == pytest.approx(float(salt.token_scores[dots].sum()), abs=1e-9)
    again = shap.attribute(PROBES, n_samples=2)  # seeded: reproducible
    first = shap.attribute(PROBES, n_samples=2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.atom_scores, b.atom_scores)


BATCHED = [("mask_occlusion", {"batch_size": 7}), ("mask_occlusion", {"batch_size": 5, "attached": True}),
           ("gradient_x_input", {"batch_size": 4}), ("shapley", {"estimator": "ablation", "batch_size": 16})]


@pytest.mark.parametrize("method, options", BATCHED, ids=_ids(BATCHED))
def test_batching_gives_the_scores_of_one_at_a_time(predictor, method, options):
    attributor = Attributor(predictor, method=method)
    together = attributor.attribute(PROBES, **options)
    for a, smiles in zip(together, PROBES):
        [alone] = attributor.attribute(smiles, **options)
        np.testing.assert_allclose(a.atom_scores, alone.atom_scores, atol=1e-5)
        np.testing.assert_allclose(a.token_scores, alone.token_scores, atol=1e-5)
        assert a.baseline_output == pytest.approx(alone.baseline_output, abs=1e-5)


def test_methods_for_neurons(predictor):
    for method in ("mask_occlusion", "gradient_x_input", "shapley"):
        results = NeuronAttributor(predictor, method=method).attribute(PROBES[:3], neuron=5, n_samples=2)
        for a in results:
            assert a.atom_scores.shape == (parse_smiles(a.smiles).GetNumAtoms(),)
            assert a.target == 5 and a.attribution_method == method


def test_bad_methods_and_options(checkpoint, predictor):
    assert METHODS[0] == "ig" and set(METHODS) == {"ig", "mask_occlusion", "gradient_x_input", "shapley"}
    with pytest.raises(AttributionError, match="unknown attribution method 'lime'"):
        Attributor("no/such/checkpoint.pt", method="lime")  # checked before anything is loaded
    shap = Attributor(predictor, method="shapley")
    with pytest.raises(AttributionError, match="estimator must be one of"):
        shap.attribute("CCO", estimator="kernel")
    with pytest.raises(AttributionError, match="features must be one of"):
        shap.attribute("CCO", features="bonds")
    with pytest.raises(AttributionError, match="n_samples must be >= 1"):
        shap.attribute("CCO", n_samples=0)
    with pytest.raises(AttributionError, match="batch_size must be >= 1"):
        shap.attribute("CCO", batch_size=0)
    with pytest.raises(AttributionError, match="baselines must be one of"):
        Attributor(predictor).attribute("CCO", baselines="zero", n_steps=2)
    with pytest.raises(InvalidSmilesError, match="index 1"):
        Attributor(predictor, method="mask_occlusion").attribute(["CCO", "C1CC"])


def test_cli_methods(checkpoint, tmp_path, capsys):
    from bartsmiles.attribution.cli import main

    runs = (("mask_occlusion", ["--attached", "--format", "svg"]), ("gradient_x_input", ["--no-images"]),
            ("shapley", ["--n-samples", "2", "--features", "atoms", "--no-images"]),
            ("ig", ["--ig-method", "riemann_trapezoid", "--no-images"]))
    for method, extra in runs:
        out = tmp_path / method
        assert main([str(checkpoint), "O=[N+]([O-])c1ccccc1", "CCO", "--method", method, *extra, "--n-steps", "8",
                     "--on-delta", "ignore", "--out", str(out)]) == 0
        summary = pd.read_csv(out / "summary.csv")
        assert summary["method"].tolist() == [method, method]
        data = json.loads((out / "attributions.json").read_text())
        assert len(data["molecules"][0]["atom_scores"]) == 9
    page = (tmp_path / "mask_occlusion" / "report.html").read_text()
    assert "Mask occlusion" in page and "not additive" in page and "above tolerance" not in page
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([str(checkpoint), "CCO", "--method", "lime", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown attribution method 'lime'" in err and "Traceback" not in err
    assert not bad.exists()  # refused before any work


def test_speed_benchmark_smoke(tmp_path):
    """benchmarks/attribution_speed.py --smoke runs end to end (numbers meaningless)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "attribution_speed.py"
    spec = importlib.util.spec_from_file_location("attribution_speed", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if not Path(bench.MOSES_TEST).is_file():
        pytest.skip(f"MOSES not found at {bench.MOSES_TEST}")
    assert bench.main(["--smoke", "--runs", "ig,mask_occlusion,shapley", "--out", str(tmp_path),
                       "--work-dir", str(tmp_path / "work")]) == 0
    report = json.loads((tmp_path / "attribution_speed.json").read_text())
    assert set(report["runs"]) == {"ig", "mask_occlusion", "shapley"}
    assert all(r["molecules_per_second"] > 0 and r["n_molecules"] == 6 for r in report["runs"].values())
    assert report["machine"]["cpu_count"] and report["command"].startswith("python benchmarks/attribution_speed.py")
