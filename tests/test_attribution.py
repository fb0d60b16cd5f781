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
from rdkit import Chem

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
from bartsmiles.attribution.faithfulness import random_sets, top_atoms
from bartsmiles.core.chem import canonicalize, parse_smiles
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
    return Attributor(checkpoint, method="ig")


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
        [a] = Attributor(source, method="ig").attribute(PROBES[0], n_steps=32)
        np.testing.assert_allclose(a.atom_scores, probes[0].atom_scores, atol=1e-5)
    with pytest.raises(TypeError, match="cannot attribute a int"):
        Attributor(3)
    with pytest.raises(AttributionError, match="output must be"):
        Attributor(predictor, output="odds")


def test_prediction_output_attributes_the_probability(checkpoint):
    from bartsmiles.model.predictor import predict

    [a] = Attributor(checkpoint, output="prediction", method="ig").attribute(PROBES[0], n_steps=32)
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


def test_smoothgrad_is_ig_without_noise_seeded_with_it_and_not_additive(attributor, probes):
    smiles = PROBES[:3]
    quiet = attributor.attribute(smiles, n_steps=32, nt_samples=2, nt_stdev=0.0)
    for a, ig in zip(quiet, probes):
        np.testing.assert_allclose(a.token_scores, ig.token_scores, atol=1e-5)
        assert a.method == "smoothgrad2+gausslegendre" and a.converged is None
    noisy = attributor.attribute(smiles, n_steps=8, nt_samples=3, nt_stdev=0.2, seed=1)
    again = attributor.attribute(smiles, n_steps=8, nt_samples=3, nt_stdev=0.2, seed=1)
    other = attributor.attribute(smiles, n_steps=8, nt_samples=3, nt_stdev=0.2, seed=2)
    for a, b, c, ig in zip(noisy, again, other, probes):
        np.testing.assert_array_equal(a.token_scores, b.token_scores)
        assert not np.allclose(a.token_scores, c.token_scores)
        assert not np.allclose(a.token_scores, ig.token_scores, atol=1e-3)
        assert a.output == pytest.approx(ig.output, abs=1e-6)  # the noise never touches the output reported
        assert a.total == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-5)
    with pytest.raises(AttributionError, match="nt_samples"):
        attributor.attribute(smiles, nt_samples=-1)


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
    assert main([str(checkpoint), "CCO", "--neuron", "3", "--check", "--out", str(tmp_path / "n")]) == 2
    assert main([str(checkpoint), "CCO", "--check", "--check-atoms", "0", "--out", str(tmp_path / "n")]) == 2
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
    argv = ["--smoke", "--pool", "1500", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work")]
    assert bench.main(argv) == 0
    report = json.loads((tmp_path / "attribution_groundtruth.json").read_text())
    [seed] = report["tasks"][0]["seeds"].values()
    assert set(seed["methods"]) == set(bench.METHODS) | {"ecfp_rf", "random", "rule_check", "deletion_check"}
    hidden = seed["methods"].pop("deletion_check")
    falls = np.asarray(hidden["per_molecule_falls"])
    assert falls.shape == (seed["methods"]["random"]["n_molecules"], 4) and np.all(np.isfinite(falls))
    assert hidden["mean_falls"]["truth"] == pytest.approx(falls[:, 1].mean(), abs=1e-3)
    assert "## Which atoms does the model read?" in (tmp_path / "attribution_groundtruth.md").read_text()
    assert (tmp_path / "attribution_groundtruth_deletion.png").stat().st_size > 0
    # alone, the check computes the method's scores and the map itself: the same falls as reusing them
    assert bench.main(argv + ["--methods", "deletion_check", "--rescore"]) == 0
    alone = json.loads((tmp_path / "work" / "nitrile" / "seed0" / "scores.json").read_text())["methods"]
    assert np.allclose(alone["deletion_check"]["per_molecule_falls"], hidden["per_molecule_falls"], atol=1e-3)
    check = seed["methods"].pop("rule_check")
    assert len(check["model_needs_rule"]) == check["n_molecules"]
    assert check["n_edits"] > 0 and 0 <= check["rf"]["flip_rate"] <= 1 and check["rf"]["pairs"] > 0
    assert all(m["n_molecules"] > 0 and 0 <= m["top_k_hit"] <= 1 for m in seed["methods"].values())
    edit = seed["methods"]["edit_occlusion_env"]
    assert len(edit["per_molecule_auc"]) == len(edit["called"]) == edit["n_molecules"]
    kept = [a for a, c in zip(edit["per_molecule_auc"], edit["called"]) if c]
    assert edit["n_called"] == len(kept) and (not kept or edit["atom_auc_called"] == pytest.approx(np.mean(kept), abs=1e-3))
    assert len(seed["methods"]["ecfp_rf"]["called"]) == seed["methods"]["ecfp_rf"]["n_molecules"]
    assert report["machine"]["cpu_count"] and report["command"].startswith("python benchmarks/attribution_groundtruth.py")
    assert (tmp_path / "attribution_groundtruth.md").read_text().startswith("# Attribution ground truth")
    stamp = (tmp_path / "work" / "nitrile" / "seed0" / "scores.json").stat().st_mtime
    assert bench.main(argv) == 0  # a second run reuses the cached model and scores
    assert (tmp_path / "work" / "nitrile" / "seed0" / "scores.json").stat().st_mtime == stamp
    # without --out, a run over part of the tasks (or a smoke run) writes no table: never the committed one
    committed = [bench.RESULTS / f"attribution_groundtruth.{ext}" for ext in ("json", "md")]
    before = [f.stat().st_mtime if f.is_file() else None for f in committed]
    no_out = [a for a in argv if a not in ("--out", str(tmp_path))]
    assert bench.main(no_out + ["--tasks", "nitrile"]) == 0
    assert [f.stat().st_mtime if f.is_file() else None for f in committed] == before
    assert bench.main(argv + ["--methods", "random", "--rescore"]) == 0  # recomputed although cached
    rescored = json.loads((tmp_path / "work" / "nitrile" / "seed0" / "scores.json").read_text())
    assert rescored["provenance"]["methods"] == ["random"] and "edit_occlusion_env" in rescored["methods"]
    # a held-out sample from the pool: molecules the task never used, canonical, all positive
    pool_argv = argv + ["--explain-from", "pool", "--methods", "edit_gradient_fill_int8_env,ecfp_rf"]
    assert bench.main(pool_argv) == 0
    task = tmp_path / "work" / "nitrile"
    used = set(pd.read_json(task / "molecules.json", orient="records").smiles)
    explained = pd.read_json(task / "explain_pool4_rows3000-5000.json", orient="records")
    assert len(explained) == 4 and not used & set(explained.smiles)
    assert all(Chem.MolToSmiles(Chem.MolFromSmiles(s)) == s and t for s, t in zip(explained.smiles, explained.truth))
    scores = json.loads((task / "seed0" / "scores_pool4.json").read_text())
    assert set(scores["methods"]) == {"edit_gradient_fill_int8_env", "ecfp_rf"}
    assert len(scores["methods"]["ecfp_rf"]["per_molecule_auc"]) == 4
    assert "## Paired difference to ECFP4+RF" in (tmp_path / "attribution_groundtruth.md").read_text()
    # a sample made again (here: one molecule fewer) is scored afresh, never matched to stale scores
    explained.head(3).to_json(task / "explain_pool4_rows3000-5000.json", orient="records")
    assert bench.main(pool_argv) == 0
    assert len(json.loads((task / "seed0" / "scores_pool4.json").read_text())["methods"]["ecfp_rf"]["per_molecule_auc"]) == 3


def test_groundtruth_paired_difference():
    """The paired difference averages a molecule's difference over the seeds that scored it, then
    over molecules, with a bootstrap interval around that mean."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "attribution_groundtruth.py"
    spec = importlib.util.spec_from_file_location("attribution_groundtruth", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    seed = lambda mine, ref: {"methods": {"m": {"per_molecule_auc": mine}, "ecfp_rf": {"per_molecule_auc": ref}}}  # noqa: E731
    task = {"seeds": {"0": seed([1.0, 0.5, None, 0.9], [0.9, 0.7, 0.8, None]),
                      "1": seed([0.8, 0.6, None, 0.7], [0.9, 0.5, 0.8, 0.6])}}
    mean, low, high, n = bench.paired_difference(task, "m")
    # molecule differences: (0.1 - 0.1) / 2 = 0, (-0.2 + 0.1) / 2 = -0.05, none, 0.1 (seed 1 only)
    assert n == 3 and mean == pytest.approx((0.0 - 0.05 + 0.1) / 3)
    assert -0.05 <= low <= mean <= high <= 0.1
    assert bench.paired_difference(task, "other") is None


def test_groundtruth_needs_rule_split():
    """A molecule 'needs the rule' when it is called positive and every rule-breaking edit turns
    the call negative; the AUC split follows those flags."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "attribution_groundtruth.py"
    spec = importlib.util.spec_from_file_location("attribution_groundtruth", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # molecule 0: two edits, both flip; 1: one of two flips; 2: not called; 3: no edit
    originals = [0, 0, 1, 1, 2]
    before = np.array([3.0, 3.0, 2.0, 2.0, -1.0])
    after = np.array([-1.0, -0.5, -2.0, 0.5, -3.0])
    flags = bench.needs_rule(4, originals, before, after, 0.0)
    assert flags == [True, False, None, None]
    task = {"seeds": {"0": {"methods": {"m": {"per_molecule_auc": [0.9, 0.6, 0.1, 0.2]},
                                        "rule_check": {"model_needs_rule": flags}}}}}
    assert bench.reliance_auc(task, "m", True) == (0.9, 1.0)
    assert bench.reliance_auc(task, "m", False) == (0.6, 1.0)
    assert bench.reliance_auc(task, "other", True) is None


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
    ("edit_gradient", {}),
    ("edit_gradient", {"joint_copies": False, "alpha": 1.0}),
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
    results = Attributor(predictor, method=method, precision="fp32").attribute(PROBES, **options)  # the same F
    assert [a.smiles for a in results] == [canonicalize(s) for s in PROBES]  # the form the model reads
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

    def reads_n(emb, src, lengths, prev, model=None):  # (B, 1): how N-like the most N-like position is
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



# --------------------------------------------------------------------------------- deletion check


def test_top_atoms_and_random_sets():
    assert top_atoms([0.1, 0.5, 0.5, -1.0], 3) == (1, 2, 0)  # by score, ties by atom index
    assert top_atoms([2.0], 1) == (0,)
    for bad in (0, 5, 1.5, True):
        with pytest.raises(ValueError, match="k must be"):
            top_atoms([0.1, 0.5, 0.5, -1.0], bad)
    first = random_sets("CCO", 3, 2, 4, seed=0)
    assert first == random_sets("CCO", 3, 2, 4, seed=0) and len(first) == 4
    assert all(len(set(s)) == 2 and all(0 <= a < 3 for a in s) for s in first)
    assert random_sets("CCCCCCCCCC", 10, 3, 8, seed=0) != random_sets("CCCCCCCCCC", 10, 3, 8, seed=1)


def test_deletion_check_tells_a_faithful_map_from_a_reversed_one(predictor, monkeypatch):
    """A stand-in head that reads only the N token: a map with N first makes hiding it move the
    output more than random atoms do (gain > 0, rank >= 0.5); the same map reversed does not."""
    checker = Attributor(predictor, method="mask_occlusion", precision="fp32")
    embed = checker.model.encoder.embed_tokens
    target = embed.weight[checker.vocab.index("N")].detach()

    def reads_n(emb, src, lengths, prev, model=None):
        return torch.nn.functional.cosine_similarity(emb, target.expand_as(emb), dim=-1).amax(dim=1, keepdim=True)

    monkeypatch.setattr(checker, "_forward", reads_n)
    smiles = ["CC(=O)Nc1ccc(O)cc1", "CCCCNCCCC"]  # N is atom 3 and atom 4
    results = checker.attribute(smiles, environment_radius=0)
    for a, n in zip(results, (3, 4)):
        assert int(np.argmax(a.atom_scores)) == n
    checks = checker.deletion_check(results, k=1, scores="atoms")
    for c, n in zip(checks, (3, 4)):
        assert c.atoms == (n,) and c.top_drop > 0.1 and c.gain > 0.05 and c.rank >= 0.5
        assert len(c.random_drops) == 8 and c.output == pytest.approx(results[0 if n == 3 else 1].output, abs=1e-5)
        assert json.loads(json.dumps(c.to_dict()))["gain"] == pytest.approx(c.gain)
    for a in results:
        a.atom_scores = -a.atom_scores  # the same map, reversed: N last
    for c in checker.deletion_check(results, k=1, scores="atoms"):
        assert c.top_drop == pytest.approx(0.0, abs=1e-6) and c.gain <= 0 and c.rank <= 0.5
    # one at a time: the same checks (random sets seeded by the SMILES, not the batch)
    [alone] = checker.deletion_check(results[1:], k=1, scores="atoms")
    again = checker.deletion_check(results, k=1, scores="atoms")[1]
    assert alone.random_drops == pytest.approx(again.random_drops, abs=1e-6)


def test_deletion_check_of_the_model_and_its_errors(predictor):
    attributor = Attributor(predictor, precision="fp32")
    results = attributor.attribute(["O=[N+]([O-])c1ccccc1", "CCO"])
    checks = attributor.deletion_check(results, n_random=3)
    assert [c.k for c in checks] == [3, 3] and [len(c.random_drops) for c in checks] == [3, 3]
    assert checks[1].atoms == tuple(sorted(checks[1].atoms, key=lambda a: -results[1].environment_scores[a]))
    assert checks[1].gain == pytest.approx(0.0, abs=1e-6)  # every set is the whole molecule
    outputs = attributor.predict_outputs(["O=[N+]([O-])c1ccccc1", "CCO"])[:, 0]
    assert [c.output for c in checks] == pytest.approx(list(outputs), abs=1e-4)
    [values] = attributor.hidden_outputs(["CCO"], [[(), (0, 1, 2)]])
    assert values.shape == (3,)
    assert values[1] == pytest.approx(outputs[1], abs=1e-4)  # an empty set hides nothing
    ensemble = Attributor([predictor, predictor], precision="fp32")
    twice = ensemble.deletion_check(ensemble.attribute(["O=[N+]([O-])c1ccccc1"]), n_random=3)
    assert twice[0].top_drop == pytest.approx(checks[0].top_drop, abs=1e-5)
    with pytest.raises(AttributionError, match="k .atoms hidden. must be"):
        attributor.deletion_check(results, k=0)
    with pytest.raises(AttributionError, match="n_random"):
        attributor.deletion_check(results, n_random=0)
    with pytest.raises(AttributionError, match="'environment' or 'atoms'"):
        attributor.deletion_check(results, scores="tokens")
    with pytest.raises(AttributionError, match="Attribution results"):
        attributor.deletion_check(["CCO"])
    with pytest.raises(AttributionError, match="atom 7 is not in"):
        attributor.hidden_outputs(["CCO"], [[(7,)]])
    assert attributor.deletion_check([]) == []

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
    for method in ("mask_occlusion", "gradient_x_input", "shapley", "edit_occlusion", "edit_gradient"):
        results = NeuronAttributor(predictor, method=method).attribute(PROBES[:3], neuron=5, n_samples=2)
        for a in results:
            assert a.atom_scores.shape == (parse_smiles(a.smiles).GetNumAtoms(),)
            assert a.target == 5 and a.attribution_method == method


def test_bad_methods_and_options(checkpoint, predictor):
    assert METHODS[0] == "ig" and set(METHODS) == {"ig", "mask_occlusion", "gradient_x_input", "shapley", "edit_occlusion",
                                                  "edit_gradient"}
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
    with pytest.raises(AttributionError, match="branch_fill must be True or False, got 'no'"):
        Attributor(predictor, method="edit_occlusion").attribute("CCO", branch_fill="no")
    with pytest.raises(AttributionError, match="joint_copies must be True or False"):
        Attributor(predictor, method="edit_gradient").attribute("CCO", joint_copies=1)
    with pytest.raises(AttributionError, match="baselines must be one of"):
        Attributor(predictor, method="ig").attribute("CCO", baselines="zero", n_steps=2)
    with pytest.raises(InvalidSmilesError, match="index 1"):
        Attributor(predictor, method="mask_occlusion").attribute(["CCO", "C1CC"])


def test_cli_methods(checkpoint, tmp_path, capsys):
    from bartsmiles.attribution.cli import main

    runs = (("mask_occlusion", ["--attached", "--format", "svg"]), ("gradient_x_input", ["--no-images"]),
            ("shapley", ["--n-samples", "2", "--features", "atoms", "--no-images"]),
            ("ig", ["--ig-method", "riemann_trapezoid", "--no-images"]),
            ("edit_gradient", ["--no-images", "--alpha", "0.75"]),
            ("edit_occlusion", ["--no-images", "--no-joint-copies", "--no-branch-fill"]))
    for method, extra in runs:
        out = tmp_path / method
        assert main([str(checkpoint), "O=[N+]([O-])c1ccccc1", "CCO", "--method", method, *extra, "--n-steps", "8",
                     "--on-delta", "ignore", "--out", str(out)]) == 0
        summary = pd.read_csv(out / "summary.csv")
        assert summary["method"].tolist() == [method, method]
        data = json.loads((out / "attributions.json").read_text())
        assert len(data["molecules"][0]["atom_scores"]) == 9
        edits = method.startswith("edit_")  # the defaults on a CPU: int8 edits; gradient methods fp32
        assert data["method"] == method and data["precision"] == ("int8" if edits else "fp32")  # the one in use
        assert data["device"] == "cpu"
    assert data["molecules"][0]["method"] == "atom edit"  # --no-joint-copies and --no-branch-fill reached the method
    edit_gradient = json.loads((tmp_path / "edit_gradient" / "attributions.json").read_text())
    assert edit_gradient["molecules"][0]["method"] == "atom edit+joint copies+branch fill + gradient at alpha=0.75"
    page = (tmp_path / "mask_occlusion" / "report.html").read_text()
    assert "Mask occlusion" in page and "not additive" in page and "above tolerance" not in page
    out = tmp_path / "edit_fp32"
    assert main([str(checkpoint), "CCO", "--method", "edit_occlusion", "--precision", "fp32", "--no-images",
                 "--out", str(out)]) == 0
    assert json.loads((out / "attributions.json").read_text())["precision"] == "fp32"
    capsys.readouterr()
    assert main([str(checkpoint), "CCO", "--method", "ig", "--precision", "int8", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision 'int8' is only for" in err[0] and "the method is 'ig'" in err[0]
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([str(checkpoint), "CCO", "--method", "lime", "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown attribution method 'lime'" in err and "Traceback" not in err
    assert not bad.exists()  # refused before any work
    if not torch.cuda.is_available():
        assert main([str(checkpoint), "CCO", "--device", "cuda", "--out", str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no CUDA GPU" in err and "Traceback" not in err
        assert not bad.exists()  # refused before the output folder is made


def test_device_moves_the_model_and_a_missing_one_is_refused(predictor):
    """``device`` puts the model there (``None`` leaves it); a device this machine lacks or a name
    torch does not know is a DeviceError before anything runs."""
    from bartsmiles.errors import DeviceError

    on_cpu = Attributor(predictor, device="cpu")
    assert on_cpu.device == torch.device("cpu") and Attributor(predictor).device == torch.device("cpu")
    assert Attributor(predictor, device="auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="not a torch device name"):
        Attributor(predictor, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            Attributor(predictor, device="cuda")
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            NeuronAttributor(predictor, device="cuda:0")
    assert next(predictor.model.parameters()).device.type == "cpu"  # nothing moved by a refused request


def test_environment_scores_of_every_method(checkpoint, tmp_path, capsys):
    """environment_scores are the atom scores' neighbourhood (radius 2 by default), atom_scores stay
    additive and unchanged, radius 0 gives the atom scores back, and the drawing says which it shows."""
    from bartsmiles.attribution.cli import main
    from bartsmiles.attribution.draw import draw_attribution
    from bartsmiles.attribution.environment import environment_scores

    smiles = ["O=[N+]([O-])c1ccc(Cl)cc1", "CC(=O)OCC"]
    for method in METHODS:
        att = Attributor(checkpoint, method=method)
        options = {"n_steps": 4, "n_samples": 2, "on_delta": "ignore"}
        default = att.attribute(smiles, **options)
        raw = att.attribute(smiles, environment_radius=0, **options)
        for a, b in zip(default, raw):
            assert a.environment_radius == 2 and b.environment_radius == 0
            assert np.allclose(a.atom_scores, b.atom_scores)
            assert np.array_equal(b.environment_scores, b.atom_scores)
            assert np.allclose(a.environment_scores, environment_scores(parse_smiles(a.smiles), a.atom_scores, 2))
            assert not np.allclose(a.environment_scores, a.atom_scores), method
            assert a.atom_frame()["environment_score"].tolist() == pytest.approx(list(a.environment_scores))
            assert a.to_dict()["environment_radius"] == 2
    with pytest.raises(AttributionError, match="environment radius"):
        Attributor(checkpoint).attribute("CCO", environment_radius=-1)
    svg = draw_attribution(default[0], fmt="svg")
    assert ">environment score</text>" in svg and ">(radius 2)</text>" in svg
    assert "environment score" not in draw_attribution(raw[0], fmt="svg")
    out = tmp_path / "env"
    assert main([str(checkpoint), *smiles, "--environment-radius", "1", "--out", str(out)]) == 0
    atoms = pd.read_csv(out / "atoms.csv")
    first = atoms[atoms["row"] == 0]
    expected = environment_scores(parse_smiles(first["smiles"].iloc[0]), first["score"].to_numpy(), 1)
    assert first["environment_score"].to_numpy() == pytest.approx(expected)
    assert "environment scores (radius 1)" in (out / "report.html").read_text()
    capsys.readouterr()
    assert main([str(checkpoint), "CCO", "--environment-radius", "-1", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--environment-radius" in err and not (tmp_path / "bad").exists()
    assert main([str(checkpoint), "CCO", "--alpha", "0", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--alpha must be in (0, 1]" in err and not (tmp_path / "bad").exists()


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
    assert bench.main(["--smoke", "--runs", "edit_occlusion,edit_occlusion_full_decoder,edit_occlusion_autocast",
                       "--rounds", "3", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work")]) == 0
    runs = json.loads((tmp_path / "attribution_speed.json").read_text())["runs"]
    assert runs["edit_occlusion"]["eos_only"] and not runs["edit_occlusion_full_decoder"]["eos_only"]
    assert all(len(r["molecules_per_second_by_round"]) == 3 == r["rounds"] and r["device"] == "cpu"
               and r["molecules_per_second"] == sorted(r["molecules_per_second_by_round"])[1] for r in runs.values())


def test_device_attribution_driver_on_the_cpu(checkpoint, tmp_path):
    """scripts/device/attribution_device.py, rehearsed with the CPU as the "other" device: identical
    fp32 scores, and a sweep of batch sizes and token budgets that leaves the default budget as it was."""
    import importlib.util
    from pathlib import Path

    from bartsmiles.attribution import inputs

    script = Path(__file__).resolve().parents[1] / "scripts" / "device" / "attribution_device.py"
    spec = importlib.util.spec_from_file_location("attribution_device", script)
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    moses = tmp_path / "moses.csv"
    pd.DataFrame({"SMILES": ["C1CC", *PROBES[:4]]}).to_csv(moses, index=False)  # an unparsable row is skipped
    driver.main(["agreement", "--checkpoint", str(checkpoint), "--moses", str(moses), "--n", "3", "--device", "cpu",
                 "--methods", "edit_occlusion", "--json", str(tmp_path / "agreement.json")])
    report = json.loads((tmp_path / "agreement.json").read_text())
    assert report["methods"]["edit_occlusion"]["vs_cpu_fp32"]["cpu_fp32"]["max_abs_diff_rel"] == 0.0
    default = inputs.length_batches.__defaults__
    driver.main(["sweep", "--checkpoint", str(checkpoint), "--moses", str(moses), "--n", "3", "--device", "cpu",
                 "--sizes", "edit_occlusion:8,64/512", "--json", str(tmp_path / "sweep.json")])
    runs = json.loads((tmp_path / "sweep.json").read_text())["runs"]
    assert [(r["batch_size"], r["token_budget"]) for r in runs] == [(8, inputs.TOKEN_BUDGET), (64, 512)]
    assert all(r["molecules_per_second"] > 0 for r in runs) and inputs.length_batches.__defaults__ == default


# ------------------------------------------------------------------- ground truth and batching


def _labelled(rule, smiles):
    from bartsmiles.attribution.groundtruth import label_molecule

    return [label_molecule(rule, parse_smiles(s)) for s in smiles]


GT_POOL = ["CC(=O)Nc1ccc(Cl)cc1", "CC(=O)NC1CCCCC1", "Clc1ccccc1", "CCO", "NC(=O)c1ccc(Br)cc1Cl",
           "Clc1ccc(Cl)cc1", "N#Cc1ccccc1", "CS(=O)(=O)Nc1ccccc1", "N#Cc1ccc(S(N)(=O)=O)cc1", "c1ccccc1"]


def test_composite_rules_label_and_name_the_deciding_atoms():
    from bartsmiles.attribution.groundtruth import Rule

    halide, amide = "[F,Cl,Br,I;$(*a)]", "[CX3](=[OX1])[NX3]"
    both = _labelled(Rule("and", "and", (amide, halide)), GT_POOL)
    assert [x.stratum for x in both] == ["pos", "neg:A", "neg:B", None, "pos", "neg:B", None, None, None, None]
    assert both[0].truth == {1, 2, 3, 8}  # C(=O)N of the amide and the Cl
    assert both[4].truth == {0, 1, 2, 7, 10}  # amide N, C, O and both halogens
    either = _labelled(Rule("or", "or", ("[NX1]#[CX2]", "[SX4](=[OX1])(=[OX1])[NX3]")), GT_POOL)
    assert [x.stratum for x in either][6:9] == ["pos:A", "pos:B", None]  # both groups: not used
    assert either[6].truth == {0, 1} and either[7].truth == {1, 2, 3, 4} and either[3].stratum == "neg"
    count = _labelled(Rule("count", "count", (halide,), min_count=2), GT_POOL)
    assert [x.stratum for x in count] == ["neg", None, "neg", None, "pos", "pos", None, None, None, None]
    assert count[5].truth == {0, 5} and count[5].label == 1.0 and count[0].label == 0.0
    single = _labelled(Rule("single", "single", (halide,)), GT_POOL)
    assert [x.label for x in single] == [1, 0, 1, 0, 1, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="takes 2 pattern"):
        Rule("bad", "and", (amide,))


def test_balanced_sample_splits_each_side_equally_among_its_strata():
    from bartsmiles.attribution.groundtruth import balanced_sample

    strata = ["pos"] * 50 + ["neg:A"] * 30 + ["neg:B"] * 40 + [None] * 20
    picked = balanced_sample(strata, 40, np.random.default_rng(0))
    got = pd.Series([strata[i] for i in picked]).value_counts().to_dict()
    assert got == {"pos": 20, "neg:A": 10, "neg:B": 10} and len(set(picked)) == 40
    assert picked == balanced_sample(strata, 40, np.random.default_rng(0))  # seeded: the same sample
    with pytest.raises(ValueError, match="no positive"):
        balanced_sample(["neg"] * 10, 4, np.random.default_rng(0))


def test_and_negatives_contain_exactly_one_group():
    from bartsmiles.attribution.groundtruth import Rule, balanced_sample

    rule = Rule("and", "and", ("[CX3](=[OX1])[NX3]", "[F,Cl,Br,I;$(*a)]"))
    pool = GT_POOL * 3
    labelled = _labelled(rule, pool)
    for i in balanced_sample([x.stratum for x in labelled], 8, np.random.default_rng(1)):
        mol = parse_smiles(pool[i])
        present = [bool(mol.GetSubstructMatches(Chem.MolFromSmarts(p))) for p in rule.patterns]
        assert sum(present) == (2 if labelled[i].label == 1.0 else 1)


@pytest.mark.parametrize("smiles, smarts, keep, expected", [
    ("CC(=O)NC", "[CX3](=[OX1])[NX3]", 0, "CCC(C)=O"),                    # amide -> ketone
    ("CNC(=O)NC", "[NX3][CX3](=[OX1])[NX3]", 0, "CCC(=O)NC"),             # urea -> amide
    ("CS(=O)(=O)NC", "[SX4](=[OX1])(=[OX1])[NX3]", 0, "CCS(C)(=O)=O"),    # sulfonamide -> sulfone
    ("N#Cc1ccccc1", "[NX1]#[CX2]", 0, "N=Cc1ccccc1"),                      # nitrile -> imine
    ("C#CC", "[CX2H1]#[CX2]", 0, "C=CC"),                                  # alkyne -> alkene
    ("Clc1ccc(Br)cc1F", "[F,Cl,Br,I;$(*a)]", 1, "Fc1ccccc1"),             # keep one halogen
    ("CC", "[CH3]", 0, None),                                              # no edit breaks it
])
def test_break_pattern_makes_the_smallest_edit_that_removes_the_group(smiles, smarts, keep, expected):
    from bartsmiles.attribution.groundtruth import break_pattern

    edited = break_pattern(parse_smiles(smiles), smarts, keep)
    assert (None if edited is None else Chem.MolToSmiles(edited)) == (None if expected is None else canonicalize(expected))
    with pytest.raises(TypeError, match="RDKit Mol"):
        break_pattern(smiles, smarts)


def test_rule_breaking_edits_give_one_negative_per_needed_group():
    from bartsmiles.attribution.groundtruth import Rule, label_molecule, rule_breaking_edits

    rule = Rule("and", "and", ("[CX3](=[OX1])[NX3]", "[F,Cl,Br,I;$(*a)]"))
    edits = rule_breaking_edits(rule, parse_smiles("CC(=O)Nc1ccc(Cl)cc1"))
    assert [g for g, _ in edits] == ["A", "B"]
    assert [Chem.MolToSmiles(m) for _, m in edits] == [canonicalize("CC(=O)Cc1ccc(Cl)cc1"), canonicalize("CC(=O)Nc1ccccc1")]
    assert all(label_molecule(rule, m).label == 0.0 for _, m in edits)
    either = Rule("or", "or", ("[NX1]#[CX2]", "[SX4](=[OX1])(=[OX1])[NX3]"))
    assert [g for g, _ in rule_breaking_edits(either, parse_smiles("CS(=O)(=O)Nc1ccccc1"))] == ["B"]
    with pytest.raises(ValueError, match="does not call"):
        rule_breaking_edits(rule, parse_smiles("CC(=O)NC1CCCCC1"))


@pytest.mark.parametrize("scores, truth, hit", [
    ([5, 4, 3, 2, 1], {0, 1}, 1.0),            # the two best are the truth
    ([5, 4, 3, 2, 1], {0, 4}, 0.5),            # one of the two
    ([1, 2, 3, 4, 5], {0, 1}, 0.0),            # the worst two
    ([1, 1, 1, 1], {2}, 0.25),                 # all tied: the base rate, whatever the order
    ([3, 1, 1, 1, 0], {0, 3}, 0.5 + 0.5 / 3),  # one sure hit, one of three tied places
    ([0.2, 0.9, 0.1], set(), None),            # nothing to find
])
def test_top_k_hit_rate_on_hand_made_cases(scores, truth, hit):
    from bartsmiles.attribution.groundtruth import top_k_hit_rate

    assert top_k_hit_rate(scores, truth) == (None if hit is None else pytest.approx(hit))


def test_atom_auc_on_hand_made_cases():
    from bartsmiles.attribution.groundtruth import atom_auc

    assert atom_auc([3, 2, 1, 0], {0, 1}) == 1.0 and atom_auc([0, 1, 2, 3], {0, 1}) == 0.0
    assert atom_auc([1, 1, 1, 1], {2}) == 0.5
    assert atom_auc([1, 2], {0, 1}) is None and atom_auc([1, 2], set()) is None


def test_batched_fingerprint_map_equals_rdkit_one_atom_at_a_time():
    from rdkit import DataStructs
    from rdkit.Chem.Draw import SimilarityMaps
    from rdkit.rdBase import BlockLogs
    from sklearn.ensemble import RandomForestClassifier

    from bartsmiles.attribution.fingerprint_map import fingerprint_atom_weights
    from bartsmiles.evaluation.baselines import ecfp4

    labels = [float(i % 2) for i in range(len(GT_POOL))]
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(ecfp4(GT_POOL), labels)
    mols = [parse_smiles(s) for s in GT_POOL]
    ours = fingerprint_atom_weights(mols, lambda x: forest.predict_proba(x)[:, 1], chunk=7)

    def bits(fp):
        row = np.zeros((fp.GetNumBits(),), dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(fp, row)
        return row[None, :]

    quiet = BlockLogs()  # RDKit's GetMorganFingerprint logs a deprecation notice per call
    reference = [SimilarityMaps.GetAtomicWeightsForModel(
        parse_smiles(s), lambda m, a=-1: SimilarityMaps.GetMorganFingerprint(m, atomId=a, radius=2, fpType="bv",
                                                                            nBits=2048),
        lambda fp: float(forest.predict_proba(bits(fp))[0, 1])) for s in GT_POOL]
    del quiet
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_length_batches_bound_rows_and_tokens():
    from bartsmiles.attribution.inputs import length_batches

    lengths = [30, 5, 12, 12, 40, 7, 200]
    batches = length_batches(lengths, max_rows=3, token_budget=40)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 3 and (len(b) * max(lengths[i] for i in b) <= 40 or len(b) == 1)
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)  # shortest first


@pytest.mark.parametrize("method, options", [("gradient_x_input", {}), ("mask_occlusion", {"attached": True}),
                                             ("gradient_x_input", {"baselines": "mask"})])
def test_token_budget_batches_give_the_scores_of_one_at_a_time(predictor, monkeypatch, method, options):
    import bartsmiles.attribution.inputs as inputs

    attributor = Attributor(predictor, method=method)
    alone = [attributor.attribute(s, **options)[0] for s in PROBES]
    monkeypatch.setattr(inputs.length_batches, "__defaults__", (60,))  # two or three sequences per pass
    together = attributor.attribute(PROBES, **options)
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.atom_scores, b.atom_scores, atol=1e-5)
        assert a.output == pytest.approx(b.output, abs=1e-5)
    np.testing.assert_allclose(attributor.predict_outputs(PROBES)[:, 0], [a.output for a in alone], atol=1e-5)


@pytest.mark.parametrize("smiles, index, expected", [
    ("CC(=O)Nc1ccc(Cl)cc1", 8, "CC(=O)Nc1ccccc1"),      # terminal halogen deleted
    ("CC(=O)Nc1ccc(Cl)cc1", 3, "CC(=O)Cc1ccc(Cl)cc1"),  # amide N -> carbon
    ("CCOCC", 1, "CCOC"),                               # chain carbon cut out, neighbours joined
    ("CC(=O)Nc1ccc(Cl)cc1", 5, None),                   # ring carbon: no edit
    ("CC(C)(C)C", 1, None),                             # branch point: no edit
    ("C", 0, None),                                     # nothing would be left
])
def test_remove_atom_edits_one_atom_out(smiles, index, expected):
    from bartsmiles.attribution.edit_occlusion import remove_atom

    assert remove_atom(parse_smiles(smiles), index) == (None if expected is None else canonicalize(expected))
    with pytest.raises(IndexError, match="out of range"):
        remove_atom(parse_smiles(smiles), 99)


def test_edit_occlusion_scores_are_output_drops_by_hand(predictor):
    """An atom's score is F(molecule) - F(edited molecule); atoms without an edit score 0."""
    from bartsmiles.attribution.edit_occlusion import remove_atom

    # fp32: int8 (the CPU default) scales each batch, and the drops here are recomputed in other batches
    attributor = Attributor(predictor, method="edit_occlusion", precision="fp32")
    smiles = "O=[N+]([O-])c1ccc(Cl)cc1"
    [a] = attributor.attribute(smiles, joint_copies=False, branch_fill=False)
    mol = parse_smiles(a.smiles)
    edited = [remove_atom(mol, i) for i in range(mol.GetNumAtoms())]
    outputs = attributor.predict_outputs([a.smiles] + [e for e in edited if e])[:, 0]
    expected, k = [], 1
    for e in edited:
        expected.append(outputs[0] - outputs[k] if e else 0.0)
        k += bool(e)
    np.testing.assert_allclose(a.atom_scores, expected, rtol=1e-4, atol=1e-5)
    assert a.output == pytest.approx(outputs[0], abs=1e-5) and a.method == "atom edit" and a.converged is None
    assert a.delta == pytest.approx(float(np.sum(a.atom_scores)), abs=1e-6)  # no baseline molecule


def test_repeated_terminal_groups_and_remove_atoms():
    from bartsmiles.attribution.edit_occlusion import remove_atoms, repeated_terminal_groups

    mol = parse_smiles("FC(F)(F)c1ccc(Cl)cc1Cl")
    assert repeated_terminal_groups(mol) == [[0, 2, 3, 8, 11]]  # three F, two Cl: the halogens are one kind
    assert repeated_terminal_groups(parse_smiles("Fc1ccc(Br)cc1")) == [[0, 5]]
    assert repeated_terminal_groups(parse_smiles("FC(F)(F)c1ccc(O)cc1")) == [[0, 2, 3]]
    assert repeated_terminal_groups(parse_smiles("Clc1ccc(O)cc1")) == []  # one of each
    assert repeated_terminal_groups(parse_smiles("CC(C)C")) == []  # carbons are never grouped
    assert repeated_terminal_groups(parse_smiles("CS(N)(=O)=O")) == [[3, 4]]  # a sulfonyl's two =O
    # a ketone's =O, a nitro group's =O and its [O-]: three kinds of oxygen, no group
    assert repeated_terminal_groups(parse_smiles("CC(=O)c1ccc(cc1)[N+](=O)[O-]")) == []
    assert repeated_terminal_groups(parse_smiles("CC(=O)NCC(=O)NC")) == [[2, 6]]  # two amide =O
    assert repeated_terminal_groups(parse_smiles("[Na+].[Cl-].[Cl-]")) == [[1, 2]]  # ions: no neighbour
    assert remove_atoms(mol, [0, 2, 3]) == canonicalize("Cc1ccc(Cl)cc1Cl")
    assert remove_atoms(mol, [8, 11]) == canonicalize("FC(F)(F)c1ccccc1")
    assert remove_atoms(parse_smiles("ClCl"), [0, 1]) is None  # nothing would be left
    assert remove_atoms(parse_smiles("[Na+].[Cl-].[Cl-]"), [1, 2]) == "[Na+]"
    with pytest.raises(ValueError, match="atom 1 has 4 heavy neighbours"):
        remove_atoms(mol, [0, 1])
    with pytest.raises(ValueError, match="no atoms"):
        remove_atoms(mol, [])
    with pytest.raises(IndexError, match="out of range"):
        remove_atoms(mol, [42])
    with pytest.raises(TypeError, match="RDKit Mol"):
        repeated_terminal_groups("CCl")


@pytest.mark.parametrize("canonical", [False, True])
def test_encode_smiles_gives_the_ids_prepare_gives(predictor, canonical):
    """Edit occlusion encodes its edited copies without an atom alignment: same ids, same checks."""
    from bartsmiles.attribution.inputs import encode_smiles, prepare_molecules

    attributor = Attributor(predictor)
    args = (attributor.tokenizer, attributor.vocab, attributor.max_positions, canonical)
    smiles = PROBES + ["FC(F)(F)c1ccc(Cl)cc1Cl", "OC(=O)[C@@H]1CCCN1", "[2H]C([2H])([2H])Oc1ccccc1"]
    prepared = prepare_molecules(smiles, *args)
    assert [encode_smiles(s, *args) for s in smiles] == [m.ids for m in prepared]
    with pytest.raises(InvalidSmilesError, match="C1CC"):
        encode_smiles("C1CC" if canonical else "C1CC%", *args)
    with pytest.raises(SmilesTooLongError, match="positions"):
        encode_smiles("C" * 500, attributor.tokenizer, attributor.vocab, attributor.max_positions, canonical)


def test_edit_occlusion_runs_each_distinct_edit_once(predictor, monkeypatch):
    """A CF3's three fluorines give one edited molecule: it runs once, and all three get its drop."""
    from bartsmiles.attribution import edit_occlusion as module

    sizes = []
    forward = module._forward
    monkeypatch.setattr(module, "_forward", lambda model, seqs, bs: sizes.append(len(seqs)) or forward(model, seqs, bs))
    [a] = Attributor(predictor, method="edit_occlusion").attribute("FC(F)(F)c1ccccc1", joint_copies=False)
    mol = parse_smiles(a.smiles)
    edits = [module.remove_atom(mol, i) for i in range(mol.GetNumAtoms())]
    fluorines = [i for i in range(mol.GetNumAtoms()) if mol.GetAtomWithIdx(i).GetSymbol() == "F"]
    assert len({edits[i] for i in fluorines}) == 1 and sizes == [1 + len({e for e in edits if e})]
    assert a.atom_scores[fluorines[0]] == a.atom_scores[fluorines[1]] == a.atom_scores[fluorines[2]] != 0


def test_edit_occlusion_joint_copies_by_hand(predictor):
    """With joint_copies (the default) each group of repeated terminal heteroatoms also gets the
    molecule without the whole group: the group's scores add up to that joint drop, shared by the
    excess over the single drops; every other atom keeps its single drop."""
    from bartsmiles.attribution.edit_occlusion import remove_atom, remove_atoms

    # fp32: int8 (the CPU default) scales each batch, and the drops here are recomputed in other batches
    attributor = Attributor(predictor, method="edit_occlusion", precision="fp32")
    smiles = "Clc1ccc(Cl)cc1C#N"
    [single] = attributor.attribute(smiles, joint_copies=False, branch_fill=False)
    [joint] = attributor.attribute(smiles, branch_fill=False)
    mol = parse_smiles(joint.smiles)
    chlorines = [a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "Cl"]
    assert len(chlorines) == 2 and joint.method == "atom edit+joint copies" and single.method == "atom edit"
    outputs = attributor.predict_outputs([joint.smiles, remove_atoms(mol, chlorines)]
                                         + [remove_atom(mol, i) for i in chlorines])[:, 0]
    np.testing.assert_allclose(single.atom_scores[chlorines], outputs[0] - outputs[2:], rtol=1e-4, atol=1e-5)
    excess = (outputs[0] - outputs[1]) - (outputs[0] - outputs[2:]).sum()
    np.testing.assert_allclose(joint.atom_scores[chlorines], outputs[0] - outputs[2:] + excess / 2, rtol=1e-4, atol=1e-5)
    assert joint.atom_scores[chlorines].sum() == pytest.approx(outputs[0] - outputs[1], abs=1e-4)
    others = [i for i in range(mol.GetNumAtoms()) if i not in chlorines]
    np.testing.assert_allclose(joint.atom_scores[others], single.atom_scores[others], atol=1e-6)


def test_fill_branches_sums_edited_neighbours_outside_rings():
    """A branch atom without an edit (the amide's carbonyl carbon) gets the sum of its edited heavy
    neighbours' scores; a ring atom without an edit keeps its own; edited atoms keep theirs."""
    from bartsmiles.attribution.edit_occlusion import fill_branches

    mol = Chem.MolFromSmiles("CC(=O)Nc1ccccc1")  # C0 C1(=O2) N3 c4..c9
    scores = np.array([0.5, 0.0, 2.0, 3.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0])
    edited = [True, False, True, True, False, True, False, False, False, False]
    filled = fill_branches(mol, scores, edited)
    np.testing.assert_allclose(filled, [0.5, 5.5, 2.0, 3.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0])
    assert scores[1] == 0.0  # a new array
    with pytest.raises(ValueError, match="one entry per atom"):
        fill_branches(mol, scores[:-1], edited)
    with pytest.raises(TypeError, match="RDKit Mol"):
        fill_branches("CC", scores, edited)


def test_edit_occlusion_branch_fill(predictor):
    """branch_fill (the default): the branch carbon of an amide (no edit, not in a ring) scores the
    sum of its edited neighbours; every other atom keeps edit occlusion's own score."""
    from bartsmiles.attribution.edit_occlusion import remove_atom

    attributor = Attributor(predictor, method="edit_occlusion")
    [plain] = attributor.attribute("CC(C)C(=O)Nc1ccccc1", branch_fill=False)
    [filled] = attributor.attribute("CC(C)C(=O)Nc1ccccc1")
    mol = parse_smiles(filled.smiles)
    edited = [remove_atom(mol, i) is not None for i in range(mol.GetNumAtoms())]
    branch = [a.GetIdx() for a in mol.GetAtoms() if not edited[a.GetIdx()] and not a.IsInRing()]
    assert len(branch) == 2 and filled.method == "atom edit+joint copies+branch fill"
    assert plain.method == "atom edit+joint copies"
    for b in branch:
        neighbours = [n.GetIdx() for n in mol.GetAtomWithIdx(b).GetNeighbors() if edited[n.GetIdx()]]
        assert plain.atom_scores[b] == 0.0
        assert filled.atom_scores[b] == pytest.approx(plain.atom_scores[neighbours].sum())
    others = [i for i in range(mol.GetNumAtoms()) if i not in branch]
    np.testing.assert_allclose(filled.atom_scores[others], plain.atom_scores[others])


def test_gradient_taken_part_of_the_way_along_the_path(predictor):
    """alpha: the gradient at alpha * input (zero baseline) times the input, by hand; alpha=1 is plain
    gradient x input; the output is still the model's output at the input; 0 < alpha <= 1."""
    from bartsmiles.attribution.gradient_x_input import DEFAULT_ALPHA
    from bartsmiles.attribution.inputs import make_batch

    attributor = Attributor(predictor, method="gradient_x_input")
    smiles = "O=[N+]([O-])c1ccc(Cl)cc1"
    [mol] = attributor.prepare([smiles])
    model = attributor._score_model(0)
    batch = make_batch([mol.ids], model.pad, model.device)
    with torch.no_grad():
        x = model.embed(batch.src)
    for alpha in (DEFAULT_ALPHA, 0.75, 1.0):
        point = x.clone()
        point[:, 1:-1] = alpha * x[:, 1:-1]  # <s> and </s> keep their embeddings (zero baseline)
        point.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(model.score(point, batch.src, batch.lengths, batch.prev).sum(), point)
        expected = (grad * x)[0, 1:-1].sum(-1).double().numpy()
        [a] = attributor.attribute(smiles, alpha=alpha)
        np.testing.assert_allclose(a.token_scores, expected, rtol=1e-4, atol=1e-6)
        assert a.output == pytest.approx(attributor.predict_outputs([smiles])[0, 0], abs=1e-5)
        assert a.method == ("gradient_x_input" if alpha == 1.0 else f"gradient at alpha={alpha:g}")
    assert not np.allclose(attributor.attribute(smiles, alpha=0.5)[0].token_scores,
                           attributor.attribute(smiles, alpha=1.0)[0].token_scores)
    for bad in (0.0, 1.5):
        with pytest.raises(AttributionError, match="alpha must be in"):
            attributor.attribute(smiles, alpha=bad)


def test_a_forward_only_method_first_leaves_gradient_methods_working(checkpoint):
    """Occlusion runs without gradients; fairseq's decoder caches its causal mask, and a mask made
    in inference mode would make a later gradient method on the same model fail."""
    from bartsmiles.model.predictor import PropertyPredictor

    predictor = PropertyPredictor(checkpoint)  # a fresh model: nothing cached yet
    longest = max(PROBES, key=len)
    Attributor(predictor, method="mask_occlusion").attribute(longest)
    [a] = Attributor(predictor, method="gradient_x_input").attribute("CCO")
    assert np.isfinite(a.atom_scores).all()


def test_bf16_precision_gives_nearly_the_fp32_scores(predictor):
    fp32 = Attributor(predictor, method="gradient_x_input").attribute(PROBES)
    bf16 = Attributor(predictor, method="gradient_x_input", precision="bf16").attribute(PROBES)
    for a, b in zip(fp32, bf16):
        assert b.output == pytest.approx(a.output, abs=0.05 * max(1.0, abs(a.output)))
        assert np.corrcoef(a.atom_scores, b.atom_scores)[0, 1] > 0.9
        assert b.atom_scores.dtype == np.float64
    with pytest.raises(AttributionError, match="precision must be one of fp32, bf16, int8, auto"):
        Attributor(predictor, precision="fp16")


def test_edit_gradient_is_edit_occlusion_plus_the_gradient(predictor):
    """edit_gradient adds edit occlusion's atom scores and the gradient's (alpha, zero baseline), atom by
    atom and token by token, with edit occlusion's outputs; the gradient part skips its output passes
    without changing its scores."""
    from bartsmiles.attribution.gradient_x_input import gradient_x_input

    for alpha, joint in ((0.5, True), (0.8, False)):
        both = Attributor(predictor, method="edit_gradient", precision="fp32").attribute(
            PROBES, alpha=alpha, joint_copies=joint, environment_radius=0)
        edits = Attributor(predictor, method="edit_occlusion", precision="fp32").attribute(
            PROBES, joint_copies=joint, environment_radius=0)
        grads = Attributor(predictor, method="gradient_x_input", precision="fp32").attribute(
            PROBES, alpha=alpha, environment_radius=0)
        for a, e, g in zip(both, edits, grads):
            np.testing.assert_allclose(a.atom_scores, e.atom_scores + g.atom_scores, atol=1e-6)
            np.testing.assert_allclose(a.token_scores, e.token_scores + g.token_scores, atol=1e-6)
            assert a.output == e.output and a.baseline_output == e.output
            assert a.method == f"atom edit{'+joint copies' if joint else ''}+branch fill + gradient at alpha={alpha:g}"
    attributor = Attributor(predictor, method="gradient_x_input", precision="fp32")
    model = attributor._score_model(0)
    molecules = attributor.prepare(PROBES)
    full = gradient_x_input(model, molecules, baseline_id=None, batch_size=4, replace_specials=False, alpha=0.5)
    lean = gradient_x_input(model, molecules, baseline_id=None, batch_size=4, replace_specials=False, alpha=0.5,
                            outputs=False)
    for a, b in zip(full, lean):
        np.testing.assert_allclose(a.token_scores, b.token_scores, atol=1e-6)
        assert np.isfinite(a.output) and np.isnan(b.output) and np.isnan(b.baseline_output)
    with pytest.raises(AttributionError, match="alpha must be in"):
        Attributor(predictor, method="edit_gradient").attribute("CCO", alpha=0.0)
    with pytest.raises(AttributionError, match="zero baseline"):
        Attributor(predictor, method="edit_gradient").attribute("CCO", baselines="mask")


def test_edit_occlusion_in_bf16_runs_a_bf16_copy(predictor):
    """Edit occlusion in bf16 runs a bfloat16 copy of the model (no autocast casts); the model itself
    stays float32 and its fairseq GELU is untouched; scores and outputs stay near fp32's, and
    predict_outputs gives the outputs the method sees."""
    from bartsmiles.model.precision import FAIRSEQ_GELU

    fp32 = Attributor(predictor, method="edit_occlusion", precision="fp32")
    bf16 = Attributor(predictor, method="edit_occlusion", precision="bf16")
    exact, rounded = fp32.attribute(PROBES), bf16.attribute(PROBES)
    copy = bf16._forward_only_model()
    assert next(copy.parameters()).dtype == torch.bfloat16 and copy is bf16._forward_only_model()  # made once
    assert next(bf16.model.parameters()).dtype == torch.float32 and copy is not bf16.model
    layers = [m for m in copy.modules() if getattr(m, "activation_fn", None) is FAIRSEQ_GELU]
    assert len(layers) == len(copy.encoder.layers) + len(copy.decoder.layers)  # swapped back after the run
    assert fp32._forward_only_model() is fp32.model
    assert Attributor(predictor, method="gradient_x_input", precision="bf16")._forward_only_model().training is False
    for a, b in zip(exact, rounded):
        assert b.output == pytest.approx(a.output, abs=0.05 * max(1.0, abs(a.output)))
        assert np.abs(b.atom_scores - a.atom_scores).max() <= 0.05 * max(1.0, np.abs(a.atom_scores).max())
    outputs = bf16.predict_outputs([b.smiles for b in rounded])[:, 0]
    np.testing.assert_allclose(outputs, [b.output for b in rounded], atol=1e-6)


def test_projections_as_layers_is_the_same_function(checkpoint):
    """The path int8 needs (attention projections called as layers) computes fairseq's forward and
    the eos-only forward to float rounding, rows of different lengths in one batch."""
    from bartsmiles.attribution.inputs import make_batch
    from bartsmiles.model.eos_forward import decoder_eos_logits
    from bartsmiles.model.precision import projections_as_layers
    from bartsmiles.model.predictor import PropertyPredictor

    predictor = PropertyPredictor(checkpoint)
    model = predictor.model.eval()
    attributor = Attributor(predictor, method="edit_occlusion", precision="fp32")
    batch = make_batch([m.ids for m in attributor.prepare(PROBES)], int(attributor.vocab.pad), attributor.device)
    with torch.no_grad():
        before = [decoder_eos_logits(model, batch.src, batch.lengths, batch.prev, attributor.head),
                  model(batch.src, batch.lengths, batch.prev, features_only=True,
                        classification_head_name=attributor.head)[0]]
        assert projections_as_layers(model) is model
        after = [decoder_eos_logits(model, batch.src, batch.lengths, batch.prev, attributor.head),
                 model(batch.src, batch.lengths, batch.prev, features_only=True,
                       classification_head_name=attributor.head)[0]]
    for a, b in zip(before, after):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_edit_methods_in_int8_run_an_int8_copy(predictor):
    """precision="int8": the edits run on a copy whose encoder and decoder linear layers are int8
    (the model itself and its heads untouched), near fp32's scores; the gradient part of
    edit_gradient is fp32's exactly; int8 is refused for a method with gradients."""
    from bartsmiles.model.precision import int8_copy

    fp32 = Attributor(predictor, method="edit_gradient", precision="fp32")
    int8 = Attributor(predictor, method="edit_gradient", precision="int8")
    assert int8.precision == "int8"
    exact, quantized = fp32.attribute(PROBES), int8.attribute(PROBES)
    edits = {name: Attributor(predictor, method="edit_occlusion", precision=name).attribute(PROBES)
             for name in ("fp32", "int8")}
    for a, b, ea, eb in zip(exact, quantized, edits["fp32"], edits["int8"]):  # the gradient part, in fp32 both times
        np.testing.assert_allclose(b.atom_scores - eb.atom_scores, a.atom_scores - ea.atom_scores, atol=1e-5)
    copy = int8._forward_only_model()
    assert copy is int8._forward_only_model() and copy is not int8.model  # made once
    kinds = {name: type(m).__module__ for name, m in copy.named_modules() if name.endswith(("fc1", "q_proj", "out_proj"))}
    assert kinds and all(("quantized" in kind) != ("classification_heads" in name) for name, kind in kinds.items())
    assert all(isinstance(m, torch.nn.Linear) for m in int8.model.modules() if type(m).__name__ == "Linear")
    assert all(not m.skip_embed_dim_check for m in int8.model.modules() if hasattr(m, "skip_embed_dim_check"))
    for a, b in zip(exact, quantized):
        assert b.method == a.method
        assert b.output == pytest.approx(a.output, abs=0.05 * max(1.0, abs(a.output)))
        assert np.abs(b.atom_scores - a.atom_scores).max() <= 0.05 * max(1.0, np.abs(a.atom_scores).max())
    again = int8.attribute(PROBES)  # the same batches: the same numbers
    for a, b in zip(quantized, again):
        np.testing.assert_array_equal(a.atom_scores, b.atom_scores)
    with pytest.raises(AttributionError, match="the method is 'gradient_x_input'"):
        Attributor(predictor, method="gradient_x_input", precision="int8")
    with pytest.raises(ValueError, match="CPU only"):
        int8_copy(torch.nn.Linear(2, 2).to("meta"))


def test_bf16_inference_swaps_fairseqs_gelu_only_inside(predictor):
    """bf16: autocast, and torch's GELU (the same function: equal in fp32) in place of fairseq's,
    which casts to fp32 and back; the model is left as found, after an error too."""
    import torch.nn.functional as F

    from bartsmiles.model.precision import FAIRSEQ_GELU, bf16_inference, gelu

    layers = [m for m in predictor.model.modules() if getattr(m, "activation_fn", None) is FAIRSEQ_GELU]
    assert len(layers) == 4  # the tiny model's encoder and decoder layers
    with bf16_inference(predictor.model):
        assert all(m.activation_fn is gelu for m in layers) and torch.is_autocast_enabled("cpu")
    assert all(m.activation_fn is FAIRSEQ_GELU for m in layers) and not torch.is_autocast_enabled("cpu")
    with bf16_inference(predictor.model, enabled=False):
        assert all(m.activation_fn is FAIRSEQ_GELU for m in layers) and not torch.is_autocast_enabled("cpu")
    with pytest.raises(RuntimeError, match="boom"):
        with bf16_inference(predictor.model):
            raise RuntimeError("boom")
    assert all(m.activation_fn is FAIRSEQ_GELU for m in layers)
    x = torch.randn(16, 32)
    assert torch.equal(F.gelu(x), FAIRSEQ_GELU(x))
    # torch's GELU: in the tensor itself without autograd, a new tensor (and a gradient) with it
    y = x.clone()
    with torch.no_grad():
        assert gelu(y) is y and torch.equal(y, F.gelu(x))
    leaf = x.clone().requires_grad_(True)
    out = gelu(leaf * 1.0)
    out.sum().backward()
    assert torch.equal(out.detach(), F.gelu(x)) and leaf.grad is not None and torch.equal(leaf.detach(), x)


def test_the_default_method_follows_what_the_head_reads(checkpoint):
    """DEFAULT_METHODS: edit occlusion plus the gradient for the decoder head (the fine-tuning
    default), gradient x input for the encoder head and for neurons (pooled encoder features); an
    explicit method wins."""
    from bartsmiles.attribution import DEFAULT_METHODS, default_method
    from bartsmiles.model.predictor import PropertyPredictor
    from bartsmiles.tasks.property_head import HEAD_INPUTS, use_head_input

    assert set(DEFAULT_METHODS) == set(HEAD_INPUTS) and set(DEFAULT_METHODS.values()) <= set(METHODS)
    decoder = PropertyPredictor(checkpoint)
    assert decoder.meta.get("head_input", "decoder_eos") == "decoder_eos"
    assert Attributor(decoder).method == "edit_gradient" == default_method("decoder_eos")
    assert NeuronAttributor(decoder).method == "gradient_x_input"
    assert Attributor(decoder, method="ig").method == "ig"
    encoder = PropertyPredictor(checkpoint)
    encoder.meta["head_input"] = "encoder_mean"
    use_head_input(encoder.model, "encoder_mean")
    attributor = Attributor(encoder)
    assert attributor.method == "gradient_x_input" and attributor.precision == "fp32"
    assert Attributor(decoder).eos_only and not attributor.eos_only  # the encoder head has no decoder to trim
    [a] = attributor.attribute("O=[N+]([O-])c1ccccc1")
    assert a.attribution_method == "gradient_x_input" and np.isfinite(a.atom_scores).all()
    with pytest.raises(AttributionError, match="no default attribution method for head_input 'cls'"):
        default_method("cls")


@pytest.mark.parametrize("pre_norm", [False, True])
def test_eos_only_forward_is_the_models_own_forward(checkpoint, pre_norm):
    """decoder_eos_logits (last decoder layer at each row's final </s> only) gives fairseq's forward's
    logits and the same gradients with respect to the encoder's input embeddings, for rows of
    different lengths, post-norm (BART's) and pre-norm layers; an extra it does not implement
    turns it off."""
    from bartsmiles.attribution.inputs import make_batch
    from bartsmiles.model.eos_forward import decoder_eos_logits, eos_only_supported
    from bartsmiles.model.predictor import PropertyPredictor

    predictor = PropertyPredictor(checkpoint)
    model = predictor.model
    for layer in model.decoder.layers:
        layer.normalize_before = pre_norm
    attributor = Attributor(predictor, method="gradient_x_input", precision="fp32")
    assert eos_only_supported(model) and attributor.eos_only
    batch = make_batch([m.ids for m in attributor.prepare(PROBES)], int(attributor.vocab.pad), attributor.device)
    assert len(set(batch.lengths.tolist())) > 2  # padding inside the batch
    grads = []
    for fast in (False, True):
        emb = model.encoder.embed_tokens(batch.src).detach().requires_grad_(True)
        if fast:
            out = decoder_eos_logits(model, batch.src, batch.lengths, batch.prev, attributor.head, token_embeddings=emb)
        else:
            out, _ = model(batch.src, batch.lengths, batch.prev, classification_head_name=attributor.head,
                           token_embeddings=emb)
        out.sum().backward()
        grads.append((out.detach(), emb.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-6, rtol=1e-4)
    assert grads[0][1].abs().sum() > 0
    model.decoder.layers[-1].attn_ln = torch.nn.LayerNorm(model.decoder.embed_dim)
    assert not eos_only_supported(model)


def test_auto_precision_and_each_methods_default(predictor, monkeypatch):
    """precision=None is the method's DEFAULT_PRECISION: fp32 for the gradient methods, "auto" for
    edit occlusion and edit_gradient; "auto" is int8 for those two where the device runs it
    (native_int8: a CPU), else bf16 exactly where the device has it in hardware (native_bf16)."""
    from bartsmiles.attribution import attributor as module
    from bartsmiles.attribution.inputs import native_bf16, native_int8

    cpu = torch.device("cpu")
    assert isinstance(native_bf16(cpu), bool) and native_bf16(torch.device("meta")) is False
    assert native_int8(cpu) is True and native_int8(torch.device("meta")) is False
    native = "bf16" if native_bf16(cpu) else "fp32"
    assert Attributor(predictor, method="gradient_x_input").precision == "fp32"
    assert Attributor(predictor).precision == "int8"  # the decoder head's default, edit_gradient, on a CPU
    assert Attributor(predictor, method="gradient_x_input", precision="auto").precision == native
    assert Attributor(predictor, method="edit_occlusion", precision="fp32").precision == "fp32"
    for has_int8, has_bf16, expected in ((True, True, "int8"), (True, False, "int8"), (False, True, "bf16"),
                                         (False, False, "fp32")):
        monkeypatch.setattr(module, "native_bf16", lambda device, has=has_bf16: has)
        monkeypatch.setattr(module, "native_int8", lambda device, has=has_int8: has)
        assert Attributor(predictor, precision="auto").precision == expected
        assert Attributor(predictor, method="edit_occlusion").precision == expected
        assert Attributor(predictor, method="ig", precision="auto").precision == ("bf16" if has_bf16 else "fp32")
        assert Attributor(predictor, precision="bf16").precision == "bf16"  # asked for: emulated if need be
    assert set(module.DEFAULT_PRECISION) == set(module.METHODS)


def test_a_canonical_model_attributes_the_smiles_it_reads(predictor):
    """The model reads canonical SMILES (smiles_form recorded at fine-tuning): so does the Attributor,
    and its output is the model's prediction for any spelling of the molecule."""
    assert predictor.meta.get("smiles_form") == "canonical"
    kekule, aromatic = "C1=CC=C(C=C1)[N+](=O)[O-]", "O=[N+]([O-])c1ccccc1"
    attributor = Attributor(predictor, precision="fp32")  # the prediction path runs in fp32
    a, b = attributor.attribute([kekule, aromatic])
    assert a.smiles == b.smiles == aromatic  # RDKit's canonical form
    np.testing.assert_allclose(a.atom_scores, b.atom_scores, atol=1e-6)
    ids, _, _ = predictor.task.encode([kekule])  # the prediction path: canonical SMILES -> ids
    ds = predictor.task.build_dataset_for_inference(ids)
    with torch.no_grad():
        logits, _ = predictor.model(**ds.collater([ds[0]])["net_input"], features_only=True,
                                    classification_head_name="smiles_property")
    assert a.output == pytest.approx(float(logits[0, 0]), abs=1e-5)


# ------------------------------------------------------------------------------------ ensembles


@pytest.fixture(scope="module")
def second_checkpoint(tmp_path_factory, checkpoint):
    """A second tiny fine-tune of the nitro task (seed 2; the first has the default, 1): an ensemble member."""
    from pathlib import Path

    from bartsmiles.training.finetuning import FinetuneConfig, finetune

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("nitro_seed2")
    data = Path(checkpoint).parents[1] / "data"
    result = finetune(FinetuneConfig(
        data=str(data), arch="bartsmiles_tiny", save_dir=str(root / "run"), epochs=6, batch_size=8, seed=2,
        lr=3e-3, dropout=0.0, attention_dropout=0.0, warmup_ratio=0.1, clip_norm=1.0, keep_last_epochs=1,
        cpu=True, num_workers=0, log_interval=100, score_test=False))
    return result.best_checkpoint


ENSEMBLE_RUNS = (("edit_gradient", {}), ("edit_occlusion", {}), ("gradient_x_input", {}),
                 ("ig", {"n_steps": 8}), ("mask_occlusion", {"attached": True}),
                 ("shapley", {"n_samples": 2, "features": "atoms"}))


@pytest.mark.parametrize("method,options", ENSEMBLE_RUNS, ids=[m for m, _ in ENSEMBLE_RUNS])
def test_ensemble_explains_the_members_mean(checkpoint, second_checkpoint, method, options):
    """An ensemble's attribution is the mean of its members' (every method is linear in the
    attributed function), its output the mean output, and an additive method stays complete."""
    smiles = ["O=[N+]([O-])c1ccc(Cl)cc1", "CC(=O)OCC", "Clc1ccc(Cl)cc1"]
    opts = {"on_delta": "ignore", **options}
    alone = [Attributor(c, method=method, precision="fp32").attribute(smiles, **opts)
             for c in (checkpoint, second_checkpoint)]
    ensemble = Attributor([checkpoint, second_checkpoint], method=method, precision="fp32")
    assert ensemble.n_members == 2 and len(ensemble.members) == 1
    together = ensemble.attribute(smiles, **opts)
    for i, a in enumerate(together):
        first, second = alone[0][i], alone[1][i]
        assert not np.allclose(first.atom_scores, second.atom_scores)  # two different models
        np.testing.assert_allclose(a.atom_scores, (first.atom_scores + second.atom_scores) / 2, atol=1e-5)
        np.testing.assert_allclose(a.token_scores, (first.token_scores + second.token_scores) / 2, atol=1e-5)
        np.testing.assert_allclose(a.environment_scores, (first.environment_scores + second.environment_scores) / 2,
                                   atol=1e-5)
        assert a.output == pytest.approx((first.output + second.output) / 2, abs=1e-5)
        assert a.baseline_output == pytest.approx((first.baseline_output + second.baseline_output) / 2, abs=1e-5)
        assert a.total == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-5)
        assert a.quantity == "mean logit of output 0 (nitro), 2 models"
    outputs = ensemble.predict_outputs(smiles)[:, 0]
    assert outputs == pytest.approx([a.output for a in together], abs=1e-5)


def test_ensemble_of_a_fitted_estimator_and_its_probability(checkpoint, second_checkpoint):
    """A fitted estimator with n_models > 1 is explained as an ensemble: with output="prediction"
    the attributed output is what its predict_proba returns, the members' mean probability."""
    from bartsmiles.model.predictor import PropertyPredictor

    members = [PropertyPredictor(checkpoint), PropertyPredictor(second_checkpoint)]
    fitted = SimpleNamespace(_get_predictors=lambda: members)  # what a fitted BartSmilesClassifier offers
    att = Attributor(fitted, output="prediction", method="gradient_x_input")
    assert att.n_members == 2
    [a] = att.attribute("O=[N+]([O-])c1ccccc1")
    probabilities = [float(p.predict(["O=[N+]([O-])c1ccccc1"])[0][0]) for p in members]
    assert a.output == pytest.approx(np.mean(probabilities), abs=1e-5)
    assert a.quantity == "mean probability of output 0 (nitro), 2 models"
    lone = Attributor(SimpleNamespace(_get_predictors=lambda: members[:1]), method="gradient_x_input")
    assert lone.n_members == 1 and lone.members == []


def test_ensemble_refuses_models_of_another_task(checkpoint, second_checkpoint):
    from bartsmiles.model.predictor import PropertyPredictor

    other = PropertyPredictor(second_checkpoint)
    other.meta = {**other.meta, "task_names": ["toxic"]}
    with pytest.raises(AttributionError, match=r"ensemble member 1 is not a model of the same task as member 0: "
                                               r"its task names \['toxic'\] against \['nitro'\]"):
        Attributor([checkpoint, other])
    with pytest.raises(AttributionError, match="at least one model"):
        Attributor([])
    with pytest.raises(AttributionError, match="a neuron is a feature of one model"):
        NeuronAttributor([checkpoint, second_checkpoint])


def test_cli_member_makes_an_ensemble(checkpoint, second_checkpoint, tmp_path, capsys):
    from bartsmiles.attribution.cli import main

    out = tmp_path / "ensemble"
    assert main([str(checkpoint), "O=[N+]([O-])c1ccccc1", "--member", str(second_checkpoint), "--no-images",
                 "--out", str(out)]) == 0
    data = json.loads((out / "attributions.json").read_text())
    assert data["members"] == [str(second_checkpoint)]
    [expected] = Attributor([checkpoint, second_checkpoint]).attribute("O=[N+]([O-])c1ccccc1")
    assert data["molecules"][0]["atom_scores"] == pytest.approx(list(expected.atom_scores), abs=1e-4)
    assert pd.read_csv(out / "summary.csv")["quantity"].tolist() == ["mean logit of output 0 (nitro), 2 models"]
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main([str(checkpoint), "CCO", "--neuron", "0", "--member", str(second_checkpoint), "--out", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--member is for an ensemble's outputs" in err


def test_cli_attributes_in_chunks(checkpoint, tmp_path, monkeypatch):
    """The CLI attributes CHUNK molecules per call (a progress-bar step); rows stay in input order
    and a batch-independent method gives the numbers of one call over all of them."""
    from bartsmiles.attribution import cli

    monkeypatch.setattr(cli, "CHUNK", 2)
    out = tmp_path / "chunks"
    assert cli.main([str(checkpoint), *PROBES[:5], "--method", "gradient_x_input", "--no-images", "--no-progress",
                     "--out", str(out)]) == 0
    data = json.loads((out / "attributions.json").read_text())
    expected = Attributor(checkpoint, method="gradient_x_input").attribute(PROBES[:5])
    assert [m["row"] for m in data["molecules"]] == [0, 1, 2, 3, 4]
    for got, want in zip(data["molecules"], expected):
        assert got["smiles"] == want.smiles
        assert got["atom_scores"] == pytest.approx(list(want.atom_scores), abs=1e-5)


def test_cli_resumes_a_killed_run(checkpoint, tmp_path, monkeypatch, capsys):
    """A run killed after its first chunk keeps that chunk; the same command run again attributes only
    the rest, reads the first back, writes what an uninterrupted run writes, and tidies up."""
    from bartsmiles.attribution import cli

    monkeypatch.setattr(cli, "CHUNK", 2)
    command = [str(checkpoint), *PROBES[:5], "--method", "gradient_x_input", "--no-images", "--no-progress",
               "--check", "--check-draws", "3"]  # the deletion checks are kept and resumed with their chunk
    assert cli.main(command + ["--out", str(tmp_path / "whole")]) == 0
    assert "deletion check: hiding each map's top 3 atom(s)" in capsys.readouterr().out
    summary = pd.read_csv(tmp_path / "whole" / "summary.csv")
    assert summary.check_gain.to_numpy() == pytest.approx((summary.check_top_drop - summary.check_random_drop).to_numpy())
    assert summary.check_rank.between(0, 1).all() and summary.check_atoms.notna().all()
    calls = []

    class Counting(Attributor):
        def attribute(self, smiles, *args, **kwargs):
            calls.append(list(smiles))
            return super().attribute(smiles, *args, **kwargs)

    class Killed(Attributor):  # killed during its second chunk
        def attribute(self, smiles, *args, **kwargs):
            calls.append(list(smiles))
            if len(calls) == 2:
                raise KeyboardInterrupt
            return super().attribute(smiles, *args, **kwargs)

    monkeypatch.setattr(cli, "Attributor", Killed)
    out = tmp_path / "killed"
    assert cli.main(command + ["--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert [p.name for p in (out / ".partial").glob("*/chunk_*.json")] == ["chunk_000000.json"]
    calls.clear()
    monkeypatch.setattr(cli, "Attributor", Counting)
    assert cli.main(command + ["--out", str(out)]) == 0
    assert calls == [PROBES[2:4], PROBES[4:5]]  # the first chunk was read back, not attributed again
    assert "resumed 2 molecule(s)" in capsys.readouterr().out
    assert not (out / ".partial").exists()
    for name in ("atoms.csv", "tokens.csv", "summary.csv", "substructures.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(tmp_path / "whole" / name))
    whole = json.loads((tmp_path / "whole" / "attributions.json").read_text())["molecules"]
    assert json.loads((out / "attributions.json").read_text())["molecules"] == whole
    # another option is another run: nothing kept is reused
    monkeypatch.setattr(cli, "Attributor", Killed)
    calls.clear()
    assert cli.main(command + ["--alpha", "0.75", "--out", str(out)]) == 130
    assert len(list((out / ".partial").iterdir())) == 1
    calls.clear()
    monkeypatch.setattr(cli, "Attributor", Counting)
    assert cli.main(command + ["--out", str(out)]) == 0 and not (out / ".partial").exists()
    assert len(calls) == 3  # the --alpha 0.75 chunk was not the default run's
