"""bartsmiles.data.audit and `bartsmiles audit`: the data-trust report on small synthetic tables."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

import bartsmiles
from bartsmiles.cli.main import main
from bartsmiles.core.chem import canonicalize, inchi_key, parse_in_written_order
from bartsmiles.core.splits import Split
from bartsmiles.data.audit import (
    FEATURES,
    AuditReport,
    audit,
    audit_name,
    is_leak,
    spelling_features,
)
from bartsmiles.errors import MissingColumnError, SplitFileError

SUBSTITUENTS = ["C", "CC", "O", "N", "F", "Cl", "Br", "C(=O)O", "C=O", "OC", "C(F)(F)F", "NC(C)=O", "CO", "C(C)C", "SC"]


def _molecules() -> list[str]:
    """105 distinct para-disubstituted benzenes (canonical SMILES)."""
    return [canonicalize(f"c1({a})ccc({b})cc1") for a, b in itertools.combinations(SUBSTITUENTS, 2)]


def _kekule(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    return Chem.MolToSmiles(mol, kekuleSmiles=True)


def _styled(seed: int, leak: bool) -> pd.DataFrame:
    """Random labels; label-1 molecules written Kekulé (``leak``) or every style chosen at random."""
    rng = np.random.default_rng(seed)
    smiles = _molecules()
    y = rng.integers(0, 2, size=len(smiles))
    kekule = y == 1 if leak else rng.integers(0, 2, size=len(smiles)) == 1
    written = [_kekule(s) if k else s for s, k in zip(smiles, kekule)]
    return pd.DataFrame({"smiles": written, "y": y})


def test_features_see_the_writing_not_the_molecule():
    aromatic, kekule = spelling_features("Cc1ccccc1"), spelling_features("CC1=CC=CC=C1")
    names = list(FEATURES)
    assert aromatic[names.index("aromatic_lowercase")] == pytest.approx(6 / 7)
    assert aromatic[names.index("kekule_aromatic")] == 0.0
    assert kekule[names.index("aromatic_lowercase")] == 0.0
    assert kekule[names.index("kekule_aromatic")] == 1.0
    f = dict(zip(names, spelling_features("[NH3+]C[C@H](O)/C=C/c1cc[nH]c1.[Cl-]")))
    assert (f["explicit_h"], f["charged_atoms"], f["stereo_centres"], f["stereo_bonds"]) == (3 / 12, 2, 1, 2)
    assert (f["ring_closures"], f["fragments"], f["length"]) == (2, 1, len("[NH3+]C[C@H](O)/C=C/c1cc[nH]c1.[Cl-]"))
    assert np.isnan(spelling_features("C1CC")[names.index("kekule_aromatic")])  # does not parse


def test_written_order_parse_and_inchikey():
    mol = parse_in_written_order("[H]C1=CC=CC=C1")
    assert mol.GetAtomWithIdx(0).GetSymbol() == "H" and mol.GetAtomWithIdx(1).GetIsAromatic()
    assert inchi_key("Oc1ccccn1") == inchi_key("O=c1cccc[nH]1")  # a tautomer pair: one InChIKey
    assert inchi_key("*C") == ""


def test_a_spelling_leak_is_flagged_and_a_clean_set_is_not():
    leaky = audit(_styled(0, leak=True), split="random")
    task = leaky.leak.tasks[0]
    assert task.as_written > 0.95 and task.canonical < 0.7 and task.flagged
    assert leaky.leak.flagged and leaky.exit_code == 1
    assert any("spelling leak" in w for w in leaky.warnings)

    clean = audit(_styled(0, leak=False), split="random")
    task = clean.leak.tasks[0]
    assert not task.flagged and task.as_written < 0.75
    assert clean.warnings == [] and clean.exit_code == 0


def test_leak_rule():
    assert is_leak(0.99, 0.88, "roc_auc")  # ClinTox-like: gain above 0.10
    assert is_leak(0.96, 0.90, "roc_auc")  # gain 0.06 that halves the canonical error
    assert not is_leak(0.88, 0.80, "roc_auc")  # gain 0.08, error 0.12 > half of 0.20
    assert not is_leak(0.70, 0.50, "roc_auc")  # below the floor
    assert is_leak(0.60, 0.40, "r2") and not is_leak(0.35, 0.30, "r2")


def test_duplicates_and_conflicting_labels():
    frame = pd.DataFrame({
        "smiles": ["CCO", "OCC", "c1ccccc1", "C1=CC=CC=C1", "Oc1ccccn1", "O=c1cccc[nH]1", "CCN", "not a smiles"],
        "a": [0, 1, 1, 1, 0, 1, 0, 0],
        "b": [1, 1, 0, 0, 1, 1, np.nan, 1],
    })
    report = audit(frame, target_columns=["a", "b"], split="random")
    assert [(r.row, r.smiles) for r in report.invalid] == [(7, "not a smiles")]
    by = {d.by: d for d in report.duplicates}
    canon = by["canonical_smiles"]
    assert canon.n_groups == 2 and canon.n_conflicting == 1
    conflict = next(g for g in canon.groups if g.conflicting)
    assert conflict.rows == [0, 1] and conflict.conflicting_tasks == ["a"]
    tautomers = [g for g in by["inchikey"].groups if g.rows == [4, 5]]
    assert by["inchikey"].n_groups == 3 and tautomers and tautomers[0].conflicting_tasks == ["a"]
    assert any("conflicting labels" in w for w in report.warnings) and report.exit_code == 1
    assert all(t.skipped for t in report.leak.tasks)  # far too few rows to test


def test_regression_duplicates_conflict_only_beyond_the_tolerance():
    rng = np.random.default_rng(1)
    smiles = _molecules()[:60]
    y = rng.normal(size=60)
    frame = pd.DataFrame({"smiles": smiles + ["OCC", "CCO", "CCN", "NCC"], "y": [*y, 0.0, 3.0, 1.0, 1.001]})
    report = audit(frame, split="random")
    assert report.task_type == "regression" and report.leak.metric == "r2"
    groups = {tuple(g.rows): g.conflicting for g in report.duplicates[0].groups}
    assert groups == {(60, 61): True, (62, 63): False}
    balance = report.splits[0].balance[0].parts
    assert set(balance) == {"all", "train", "valid", "test"} and balance["all"]["n"] == 64


def test_split_overlap_after_canonicalization(tmp_path):
    frame = pd.DataFrame({"smiles": ["CCO", "c1ccccc1C", "CCN", "OCC", "Cc1ccccc1", "CCCl"], "y": [0, 1, 0, 0, 1, 1]})
    split = Split(train=[0, 1, 2], valid=[4], test=[3, 5], kind="random", seed=0)
    report = audit(frame, split=split)
    s = report.splits[0]
    assert s.shared_canonical == {"train/valid": 1, "train/test": 1, "valid/test": 0}
    assert s.test_rows_in_train == 1 and s.valid_rows_in_train == 1 and s.overlapping
    assert s.test_rows_scaffold_in_train == 2  # "CCO" shares the acyclic scaffold "", as does "CCCl"
    assert report.exit_code == 1 and any("more than one part" in w for w in report.warnings)

    path = tmp_path / "split.json"
    split.save(path)
    assert audit(frame, split=[path, "scaffold"]).splits[0].shared_canonical["train/test"] == 1
    Split(train=[0, 9], valid=[], test=[1], kind="random", seed=0).save(path)
    with pytest.raises(SplitFileError, match="out of range"):
        audit(frame, split=path)


def test_report_files_and_top_level_api(tmp_path):
    report = bartsmiles.audit(_styled(0, leak=True), split=["scaffold", "random"], name="leaky")
    assert isinstance(report, AuditReport)
    md, js = report.write(tmp_path)
    assert md.name == "audit_leaky.md" and js.name == "audit_leaky.json"
    data = json.loads(js.read_text())
    assert data["exit_code"] == 1 and data["leak"]["flagged_tasks"] == ["y"]
    assert [s["name"] for s in data["splits"]] == ["scaffold", "random"]
    assert "Spelling-leak test" in md.read_text() and "LEAK" in md.read_text()
    assert audit_name("some/dir/my data.csv.gz") == "my_data" and audit_name(pd.DataFrame()) == "table"


def test_missing_column_is_an_error():
    with pytest.raises(MissingColumnError, match="nope"):
        audit(pd.DataFrame({"smiles": ["CCO"], "y": [1]}), target_columns=["nope"])


# ------------------------------------------------------------------------------ command line


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_cli_exit_codes(tmp_path, capsys):
    clean, leaky = tmp_path / "clean.csv", tmp_path / "leaky.csv"
    _styled(0, leak=False).to_csv(clean, index=False)
    _styled(0, leak=True).to_csv(leaky, index=False)
    out = tmp_path / "reports"

    assert main(["audit", str(clean), "--out-dir", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "verdict: clean" in stdout and (out / "audit_clean.md").is_file() and (out / "audit_clean.json").is_file()

    assert main(["audit", str(leaky), "--target-columns", "y", "--split", "random", "--out-dir", str(out)]) == 1
    stdout = capsys.readouterr().out
    assert "LEAK" in stdout and "WARNINGS" in stdout
    assert json.loads((out / "audit_leaky.json").read_text())["exit_code"] == 1


def test_cli_errors_are_one_line(tmp_path, capsys):
    table = tmp_path / "t.csv"
    _styled(0, leak=False).to_csv(table, index=False)
    assert main(["audit", str(tmp_path / "missing.csv"), "--out-dir", str(tmp_path)]) == 2
    _one_line(capsys, "bartsmiles audit: error:", "missing.csv")
    assert main(["audit", str(table), "--target-columns", "toxicity", "--out-dir", str(tmp_path)]) == 2
    _one_line(capsys, "toxicity", str(table))
    assert main(["audit", str(table), "--smiles-column", "SMILES", "--out-dir", str(tmp_path)]) == 2
    _one_line(capsys, "'SMILES'")
    assert main(["audit", "no_such_dataset", "--out-dir", str(tmp_path)]) == 2
    _one_line(capsys, "no_such_dataset", "clintox")
    assert main(["audit", str(table), "--split", str(tmp_path / "split.json"), "--out-dir", str(tmp_path)]) == 2
    _one_line(capsys, "split.json")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["audit", str(table), "--out-dir", str(blocker / "sub")]) == 2
    _one_line(capsys, str(blocker))
    assert not list(tmp_path.glob("audit_*"))
