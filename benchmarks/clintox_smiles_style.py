"""How much of ClinTox is learnable from the way its SMILES are *written*?

ClinTox joins approved drugs and drugs that failed clinical trials for toxicity, and the two
groups came with different SMILES conventions.  This script measures that leak and what
canonicalization does to it, on the protocol's scaffold split (test part):

1. a one-line rule, "the SMILES has no lower-case aromatic atom", used as a score for CT_TOX;
2. the frozen-feature head of :mod:`bartsmiles.evaluation.frozen` (shipped model, and a random-init model
   of the same shape, seed 0) on the SMILES as given and on RDKit-canonical SMILES
   (:func:`bartsmiles.core.chem.canonicalize`, which writes every molecule the same way).

    python benchmarks/clintox_smiles_style.py --out benchmarks/results/clintox_smiles_style

Writes ``OUT.json`` and ``OUT.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np


def no_aromatic_lowercase(smiles: str) -> bool:
    """True when no atom outside brackets is written as a lower-case aromatic symbol."""
    bare = re.sub(r"\[[^\]]*\]|Cl|Br", "", smiles)
    return re.search(r"[bcnops]", bare) is None


def _auc(y: np.ndarray, score: np.ndarray):
    """ROC-AUC over the labelled rows, None when they hold a single class."""
    from sklearn.metrics import roc_auc_score

    have = np.isfinite(y)
    return float(roc_auc_score(y[have], score[have])) if np.unique(y[have]).size == 2 else None


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default=None, help="pretrained model (default: the shipped one)")
    p.add_argument("--out", default="benchmarks/results/clintox_smiles_style")
    args = p.parse_args(argv)

    from bartsmiles.core.chem import canonicalize
    from bartsmiles.core.splits import scaffold_split
    from bartsmiles.data.datasets import load_dataset
    from bartsmiles.evaluation.frozen import run_frozen
    from bartsmiles.evaluation.machine import machine_info
    from bartsmiles.model.checkpoint import untrained_like
    from bartsmiles.model.pretrained import load_pretrained
    from bartsmiles.model.resolve import resolve_checkpoint

    ds = load_dataset("clintox", args.data_dir)
    split = scaffold_split(ds.smiles)
    test = np.asarray(split.test)
    j = ds.task_names.index("CT_TOX")
    y = ds.labels[:, j]
    rule = np.array([no_aromatic_lowercase(s) for s in ds.smiles], dtype=float)
    report: dict = {
        "command": " ".join(["python", "benchmarks/clintox_smiles_style.py", *(argv or sys.argv[1:])]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
        "split_checksum": split.checksum(),
        "rule": {"fraction_ct_tox_1": float(rule[y == 1].mean()), "fraction_ct_tox_0": float(rule[y == 0].mean()),
                 "n_ct_tox_1": int((y == 1).sum()),
                 "ct_tox_auc_all_rows": _auc(y, rule), "ct_tox_auc_test": _auc(y[test], rule[test])},
        "frozen": {},
    }
    from bartsmiles.core.tokenizer import SmilesTokenizer
    from bartsmiles.errors import TokenizationError

    tokenizer, kept_as_given = SmilesTokenizer(), []

    def canonical_or_given(i: int, smiles: str) -> str:
        """RDKit's canonical form; the given SMILES where that form uses syntax the tokenizer lacks."""
        form = canonicalize(smiles)
        try:
            tokenizer.tokenize(form)
        except TokenizationError:  # e.g. dative bonds ('->') RDKit writes for metal complexes
            kept_as_given.append(i)
            return smiles
        return form

    canonical = dataclasses.replace(ds, smiles=[canonical_or_given(i, s) for i, s in enumerate(ds.smiles)])
    report["rule"]["rows_kept_as_given"] = kept_as_given
    rule_c = np.array([no_aromatic_lowercase(s) for s in canonical.smiles], dtype=float)
    report["rule"]["fraction_after_canonicalization"] = float(rule_c.mean())
    source = resolve_checkpoint(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"shipped": str(source), "random_init": untrained_like(source, Path(tmp) / "model.pt", seed=0)}
        for name, path in models.items():
            model = load_pretrained(path)
            for form, data in (("as_given", ds), ("canonical", canonical)):
                out = run_frozen(data, split, 0, model, metric="roc_auc")
                report["frozen"][f"{name}/{form}"] = {"mean_roc_auc": out["value"],
                                                      "per_task": dict(zip(ds.task_names, out["per_task"]))}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    r = report["rule"]
    lines = ["# ClinTox: the label leaks through the SMILES writing style", "",
             f"Command: `{report['command']}`. Scaffold split (checksum {split.checksum()[:16]}), test part.", "",
             f"- CT_TOX = 1 molecules written without any lower-case aromatic atom: {r['fraction_ct_tox_1']:.3f} "
             f"(of {r['n_ct_tox_1']}); CT_TOX = 0: {r['fraction_ct_tox_0']:.3f}.",
             f"- That one-line rule as a CT_TOX score: ROC-AUC {_fmt(r['ct_tox_auc_test'])} on the test part "
             f"({_fmt(r['ct_tox_auc_all_rows'])} on all rows).",
             f"- After RDKit canonicalization, {r['fraction_after_canonicalization']:.3f} of the molecules "
             "still have no lower-case aromatic atom (those with no aromatic ring).", "",
             "| frozen features + linear head | SMILES as given | canonical SMILES |", "|---|---|---|"]
    for name in ("shipped", "random_init"):
        cells = []
        for form in ("as_given", "canonical"):
            e = report["frozen"][f"{name}/{form}"]
            cells.append(f"{_fmt(e['mean_roc_auc'])} (FDA {_fmt(e['per_task']['FDA_APPROVED'])}, "
                         f"CT_TOX {_fmt(e['per_task']['CT_TOX'])})")
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(cells) + " |")
    out_path.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
