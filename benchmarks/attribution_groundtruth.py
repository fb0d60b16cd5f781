"""Do attributions find the atoms that decide the label?  A synthetic ground-truth benchmark.

Each task labels MOSES molecules by a SMARTS rule (:mod:`bartsmiles.attribution.groundtruth`):
seven **single** patterns (urea, ester, amide, sulfonamide, aromatic halide, nitrile, terminal
alkyne), an **AND** rule (amide and aromatic halide; the negatives have exactly one of them), an
**OR** rule (nitrile or sulfonamide; positives of both kinds) and a **count** rule (at least two
aromatic halogens; the negatives have exactly one).  The ground-truth atoms of a positive are
the atoms of the matching group(s).

The molecule pool is fixed: ``--pool`` rows drawn with ``--data-seed`` from the first
``--pool-rows`` rows of MOSES train.  Per task a balanced sample (:func:`balanced_sample`) is
split into train / valid / test (the same for every model seed).  Per task and model seed the
shipped model (``--pretrained``) is fine-tuned small and fast (length-sorted batches) with
:func:`bartsmiles.training.finetuning.finetune`; its test ROC-AUC and accuracy (logit > 0) go in
the table, since an attribution of a model that did not learn the rule means nothing.  Then every
method of :data:`METHODS` attributes the positive test molecules (at most ``--n-explain``; or,
with ``--explain-from pool``, ``--n-explain`` positives from MOSES rows that no task used), and
per molecule its atom scores are compared with the ground truth: atom ROC-AUC and the top-k hit
rate (:func:`top_k_hit_rate`), averaged over molecules; molecules/s is measured in the same
process.  References: ``ecfp_rf`` -- a random forest on ECFP4 bits of the same training set with
the fingerprint similarity map (RDKit's ``GetAtomicWeightsForModel`` numbers, batched:
:func:`bartsmiles.attribution.fingerprint_map.fingerprint_atom_weights`) -- and ``random``.

``rule_check`` (not an attribution) asks whether the models learned the rule at all: each
explained positive is edited so that the rule calls it negative
(:func:`bartsmiles.attribution.groundtruth.rule_breaking_edits`), and the table gives the share
of the model's and of the forest's positive calls that flip to negative.  A group whose removal
a model does not notice is not one its attributions can be expected to find.

Everything is cached under ``--work-dir`` (data, fine-tuned models, one ``scores.json`` per task
and seed, with the command, machine and date that computed it), so a killed run resumes and
several processes may fill the cache for different ``--tasks``; a last run over every task
(all cached) writes ``OUT/attribution_groundtruth.{json,md}``.

The committed run (2 CPU cores shared with a long benchmark and other jobs; 1 thread, ``nice -n
10``).  Two processes first scored every method on urea, ester, aromatic halide and nitrile; three
more then filled the cache for the other six tasks with ``--methods gxi_zero,ig_mask,occlusion,ecfp_rf,random``
(``--tasks`` split three ways); the last run, all cached, wrote the table::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \\
        benchmarks/attribution_groundtruth.py --seeds 0 --methods gxi_zero,ig_mask,occlusion,ecfp_rf,random

The environment-score table (``benchmarks/results/attribution_groundtruth_encoder_mean/``; models
fine-tuned with the encoder-mean head, seeds 0-2, cached from an earlier run; every method of one
task and seed scored in one process, 2 free cores, two processes)::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --head-input encoder_mean \
        --methods gxi_zero,gxi_env1,gxi_env,ig_mask,ig_mask_env,occlusion,occlusion_env,ecfp_rf,random \
        --work-dir runs/attribution_gt_enc --out benchmarks/results/attribution_groundtruth_encoder_mean

and its held-out check on models trained 10 epochs (``--epochs 10``, ``--work-dir
runs/attribution_gt_ep10``, ``--out benchmarks/results/attribution_groundtruth_encoder_mean_epochs10``).

The default head with three seeds (``benchmarks/results/attribution_groundtruth.{md,json}``; seed 0
and its slow methods cached from the first run; one process, 1 thread, beside another run)::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 \
        --methods gxi_zero,gxi_env,gxi_a075,gxi_a075_env,gxi_a05_env,ecfp_rf,random,rule_check

and two sets trained and scored after ``alpha`` = 0.75 was chosen (they overturned it for 0.5;
README, Attribution): 1,200 training molecules
(``--n-train 1200 --work-dir runs/attribution_gt_n1200 --out
benchmarks/results/attribution_groundtruth_n1200``, seeds 0-2) and the fine-tuning defaults a user
gets (``--epochs 10 --batch-size 16 --work-dir runs/attribution_gt_default --out
benchmarks/results/attribution_groundtruth_finetune_defaults``: about 4 minutes a model on one
thread; seeds 1 and 2 were added later).  ``rule_check`` was added to every set afterwards with
``--methods rule_check``.

Edit occlusion with repeated copies deleted together (``edit_occlusion*``) was last scored on every
set with ``--methods edit_occlusion,edit_occlusion_env,edit_occlusion_bf16_env,ecfp_rf`` and each
set's own options above (two processes, one thread each).  The scores it gave before joint copies
are kept as ``edit_occlusion_single*`` (renamed in the caches; ``joint_copies=False`` computes them
again).  The user-default set, every method, seeds 0-2::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 \
        --methods gxi_zero,gxi_env,gxi_a075,gxi_a075_env,gxi_a05_env,edit_occlusion,edit_occlusion_env,edit_occlusion_bf16_env,ecfp_rf,random,rule_check \
        --work-dir runs/attribution_gt_default --out benchmarks/results/attribution_groundtruth_finetune_defaults

Session 11 re-scored, with ``--rescore`` (recompute although cached; the models are reused):
first ``--methods edit_occlusion_env,gxi_a05_env,ecfp_rf`` on every set, for the per-molecule AUCs
and the "called positive" flags (``atom_auc_called``: the AUC over the explained positives the
explained model itself calls positive); then ``--methods
edit_occlusion,edit_occlusion_env,edit_occlusion_bf16_env,ecfp_rf`` on every set, after the
halogens became one kind of repeated copy and bf16 edit occlusion a bfloat16 copy of the model
(each set's own options above, two processes of one thread each), e.g. for the user-default set::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 --rescore \
        --methods edit_occlusion,edit_occlusion_env,edit_occlusion_bf16_env,ecfp_rf \
        --work-dir runs/attribution_gt_default --out benchmarks/results/attribution_groundtruth_finetune_defaults

The README's tables for edit occlusion come from that last run.

Session 12 trained two more sets with randomized-SMILES augmentation in fine-tuning
(``--randomize-smiles 0.5``: per epoch each training molecule is a random SMILES with probability
0.5; the task data copied from the sets without it, so the molecules and splits are the same).
The fine-tuning defaults with it (two processes of one thread, split by ``--tasks``, then one
last run over every task, all cached, that wrote the table)::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 --randomize-smiles 0.5 \
        --methods edit_occlusion_env,edit_occlusion_bf16_env,gxi_zero,gxi_a05_env,ecfp_rf,rule_check \
        --work-dir runs/attribution_gt_rand05 --out benchmarks/results/attribution_groundtruth_randomized_smiles

and the 1,200-molecule set with it (``--n-train 1200 --randomize-smiles 0.5``, the 3-epoch
defaults of this script, ``--work-dir runs/attribution_gt_n1200_rand05 --out
benchmarks/results/attribution_groundtruth_n1200_randomized_smiles``; its last run also scored
``edit_gradient_bf16_env,edit_gradient_env``).

Edit occlusion + gradient (``edit_gradient*``, the decoder head's default since session 12) was
then scored on every other set with ``--methods edit_gradient_bf16_env,edit_gradient_env,ecfp_rf``
and each set's own options above (one process of one thread, beside the training runs), e.g. for
the user-default set::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 \
        --methods edit_gradient_bf16_env,edit_gradient_env,ecfp_rf \
        --work-dir runs/attribution_gt_default --out benchmarks/results/attribution_groundtruth_finetune_defaults

and with ``--methods edit_gradient_bf16_env,ecfp_rf`` on the two encoder-head sets.

Session 13 (an Intel Xeon; the caches of earlier sessions were not on the machine) trained the
user-default set again, seeds 0-2 (the same models: edit occlusion, ``edit_gradient`` and the map
gave session 12's means), two processes of one thread split by ``--tasks``, and scored branch fill
(``*_fill*``, then made the default); the last run, all cached, wrote the table::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 \
        --methods edit_gradient_bf16_env,edit_occlusion_bf16_env,edit_occlusion_fill_bf16_env,edit_gradient_fill_bf16_env,ecfp_rf \
        --work-dir runs/attribution_gt_default --out benchmarks/results/attribution_groundtruth_finetune_defaults_s13

and the 3-epoch set (this script's defaults) the same way, as a second held-out check
(``--work-dir runs/attribution_gt --out benchmarks/results/attribution_groundtruth_s13_3epochs``),
and the 1,200-molecule randomized-SMILES set from scratch (``--n-train 1200
--randomize-smiles 0.5 --methods edit_gradient_bf16_env,edit_gradient_fill_bf16_env,edit_occlusion_fill_bf16_env,ecfp_rf
--work-dir runs/attribution_gt_n1200_rand05 --out
benchmarks/results/attribution_groundtruth_n1200_randomized_smiles_s13``).

Session 14 (the same Intel Xeon and caches) scored the edits in int8 (``*_int8_env``, then made
the CPU default) beside their bf16 columns on the three cached sets, two processes of one thread
split by ``--tasks``, then a last all-cached run per set, e.g. for the user-default set::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 \
        --methods edit_gradient_fill_int8_env,edit_occlusion_fill_int8_env,edit_gradient_fill_bf16_env,edit_occlusion_fill_bf16_env,ecfp_rf \
        --work-dir runs/attribution_gt_default --out benchmarks/results/attribution_groundtruth_finetune_defaults_s14_int8

and the same methods with ``--work-dir runs/attribution_gt --out
benchmarks/results/attribution_groundtruth_s14_3epochs_int8`` and ``--n-train 1200
--randomize-smiles 0.5 --work-dir runs/attribution_gt_n1200_rand05 --out
benchmarks/results/attribution_groundtruth_n1200_randomized_smiles_s14_int8``.

Session 15 trained the set a user gets from ``FinetuneConfig``'s own defaults (10 epochs, batch 16 and
``--lr 3e-5``; the "user-default" set above was trained at this script's 1e-4), from scratch with
the task data copied from ``runs/attribution_gt_default`` (the same molecules and splits), two
processes of one thread split by ``--tasks``, then a last all-cached run::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 --lr 3e-5 \
        --methods edit_gradient_fill_int8_env,edit_occlusion_fill_int8_env,gxi_a05_env,ecfp_rf,random,rule_check \
        --work-dir runs/attribution_gt_user --out benchmarks/results/attribution_groundtruth_finetune_config_defaults

and the same defaults with ``--randomize-smiles 0.5`` (task data copied from that set, ``--methods
edit_gradient_fill_int8_env,edit_occlusion_fill_int8_env,ecfp_rf,rule_check --work-dir
runs/attribution_gt_user_rand05 --out
benchmarks/results/attribution_groundtruth_finetune_config_defaults_randomized_smiles``).

Session 16 scored the two ``FinetuneConfig``-default sets again on a larger held-out sample: 200
positives per task (``--explain-from pool --n-explain 200``) drawn from the 60,000 MOSES rows after
the pool's (``--explain-rows``), which no model and no forest saw, instead of the first 25 positive
test molecules; the same cached models.  The table adds each method's paired difference to the
map with a bootstrap interval.  Two processes of one thread, one per set::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --epochs 10 --batch-size 16 --lr 3e-5 \
        --explain-from pool --n-explain 200 \
        --methods edit_gradient_fill_int8_env,edit_occlusion_fill_int8_env,ecfp_rf,random,rule_check \
        --work-dir runs/attribution_gt_user --out benchmarks/results/attribution_groundtruth_finetune_config_defaults_heldout200

and the same with ``--randomize-smiles 0.5 --work-dir runs/attribution_gt_user_rand05 --out
benchmarks/results/attribution_groundtruth_finetune_config_defaults_randomized_smiles_heldout200``.
The rule check then kept a per-molecule flag (``model_needs_rule``: does every rule-breaking edit
turn the model's call negative?), so it was run again on both sets with ``--methods rule_check
--rescore`` and ``--tasks`` naming all ten tasks (so that it wrote no table), before the command
above, run again with everything cached, wrote each table.  The
10-epoch lr 1e-4 set the same way (``--epochs 10 --batch-size 16 --work-dir
runs/attribution_gt_default --out benchmarks/results/attribution_groundtruth_finetune_defaults_heldout200``,
two processes split by ``--tasks``, then the all-cached run), and the 1,200-molecule
randomized-SMILES set (``--n-train 1200 --randomize-smiles 0.5`` with this script's 3-epoch
defaults, ``--work-dir runs/attribution_gt_n1200_rand05 --out
benchmarks/results/attribution_groundtruth_n1200_randomized_smiles_heldout200``).  Every set's
held-out sample is the same 200 molecules per task: no set's molecules come from those rows.

Session 17 fine-tuned the 1,200-molecule randomized-SMILES set for 10 epochs instead of 3 (the
same task data and the same 200 held-out positives per task, copied from
``runs/attribution_gt_n1200_rand05``: ``data/``, ``molecules.json`` and the ``explain_pool200_*``
file of each task; two processes split by ``--tasks``, then the all-cached run with ``--out``)::

    BARTSMILES_DATA=/work/shared/data OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python \
        benchmarks/attribution_groundtruth.py --seeds 0,1,2 --n-train 1200 --epochs 10 --randomize-smiles 0.5 \
        --explain-from pool --n-explain 200 \
        --methods edit_gradient_fill_int8_env,edit_occlusion_fill_int8_env,ecfp_rf,random,rule_check \
        --work-dir runs/attribution_gt_n1200_rand05_ep10 \
        --out benchmarks/results/attribution_groundtruth_n1200_randomized_smiles_epochs10_heldout200

and added ``deletion_check`` (:func:`deletion_check`: which atoms, hidden, move the fine-tuned
model most -- the default's top k, the ground truth's k, the map's top k, or k random ones?) to
the held-out sets: each set's command above with ``--methods deletion_check`` and ``--tasks``
naming all ten tasks (so that it writes no table), then the command itself, with everything
cached and ``deletion_check`` added to ``--methods``, wrote the set's table.

Smoke run (seconds, random-init tiny model, numbers meaningless)::

    python benchmarks/attribution_groundtruth.py --smoke --out /tmp/gt_smoke --work-dir /tmp/gt_smoke/work
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from typing import Callable, Optional, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from sklearn.ensemble import RandomForestClassifier

from bartsmiles.attribution import Attributor
from bartsmiles.attribution.faithfulness import random_sets, top_atoms
from bartsmiles.attribution.fingerprint_map import fingerprint_atom_weights
from bartsmiles.attribution.groundtruth import (
    Rule,
    atom_auc,
    balanced_sample,
    label_molecule,
    rule_breaking_edits,
    top_k_hit_rate,
)
from bartsmiles.core.chem import parse_smiles
from bartsmiles.errors import InvalidSmilesError
from bartsmiles.evaluation.baselines import ecfp4
from bartsmiles.evaluation.machine import machine_info
from bartsmiles.model.predictor import PropertyPredictor
from bartsmiles.training.finetuning import FinetuneConfig, finetune

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MOSES = Path(os.environ.get("BARTSMILES_DATA") or ROOT.parent / "shared" / "data") / "pretrain" / "moses" / "train.csv.gz"

AROMATIC_HALIDE = "[F,Cl,Br,I;$(*a)]"
AMIDE = "[CX3](=[OX1])[NX3]"
NITRILE = "[NX1]#[CX2]"
SULFONAMIDE = "[SX4](=[OX1])(=[OX1])[NX3]"
#: the tasks, in table order (SMARTS as in the shipped library, plus the terminal alkyne)
TASKS = [
    Rule("urea", "single", ("[NX3][CX3](=[OX1])[NX3]",)),
    Rule("ester", "single", ("[CX3](=[OX1])[OX2][#6]",)),
    Rule("amide", "single", (AMIDE,)),
    Rule("sulfonamide", "single", (SULFONAMIDE,)),
    Rule("aromatic halide", "single", (AROMATIC_HALIDE,)),
    Rule("nitrile", "single", (NITRILE,)),
    Rule("terminal alkyne", "single", ("[CX2H1]#[CX2]",)),
    Rule("AND: amide + aromatic halide", "and", (AMIDE, AROMATIC_HALIDE)),
    Rule("OR: nitrile | sulfonamide", "or", (NITRILE, SULFONAMIDE)),
    Rule("COUNT: >= 2 aromatic halogens", "count", (AROMATIC_HALIDE,), min_count=2),
]
#: the attribution methods compared: name -> (Attributor method, attribute() options); each is
#: scored by ``Attribution.environment_scores``, so ``environment_radius=0`` scores the atom scores
#: themselves and the ``*_env`` entries each atom plus its neighbourhood (attribution/environment.py);
#: ``gxi_a075*`` / ``gxi_a05*`` take the gradient at 0.75 / 0.5 of the way from the zero baseline
#: (attribution/gradient_x_input.py); ``gxi_mask*`` / ``gxi_pad*`` from a ``<mask>`` / ``<pad>``
#: token baseline instead of zero; ``edit_occlusion*`` edit each atom out of the molecule
#: (attribution/edit_occlusion.py; ``*_single*`` without deleting repeated copies together, as
#: before they were; ``*_bf16*`` with the model's matrix products in bfloat16, ``precision="bf16"``);
#: ``edit_gradient*`` add the two, edit occlusion and the gradient at 0.5 (attribution/edit_gradient.py);
#: ``*_fill*`` with ``branch_fill`` (the default since session 13; the other edit entries keep it off,
#: as they were scored): a branch atom without an edit scores its edited neighbours' sum;
#: ``*_int8*`` with the edits on an int8 copy of the model (``precision="int8"``, the CPU default of
#: the edit methods since session 14; the gradient of ``edit_gradient`` as in ``*_bf16*``);
#: ``gxi_a05_env`` is the default of ``Attributor`` (``gxi_a075_env``
#: was, until the two held-out sets of the module docstring were scored)
METHODS = {
    "ig_pad": ("ig", {"baselines": "pad", "n_steps": 16, "environment_radius": 0}),
    "ig_mask": ("ig", {"baselines": "mask", "n_steps": 16, "environment_radius": 0}),
    "gxi_zero": ("gradient_x_input", {"baselines": "zero", "alpha": 1.0, "environment_radius": 0}),
    "gxi_mask": ("gradient_x_input", {"baselines": "mask", "alpha": 1.0, "environment_radius": 0}),
    "occlusion": ("mask_occlusion", {"environment_radius": 0}),
    "occlusion_attached": ("mask_occlusion", {"attached": True, "environment_radius": 0}),
    "shapley_atoms": ("shapley", {"features": "atoms", "n_samples": 4, "environment_radius": 0}),
    "gxi_env1": ("gradient_x_input", {"baselines": "zero", "alpha": 1.0, "environment_radius": 1}),
    "gxi_env": ("gradient_x_input", {"baselines": "zero", "alpha": 1.0, "environment_radius": 2}),
    "gxi_a075": ("gradient_x_input", {"baselines": "zero", "alpha": 0.75, "environment_radius": 0}),
    "gxi_a075_env": ("gradient_x_input", {"baselines": "zero", "alpha": 0.75, "environment_radius": 2}),
    "gxi_a05_env": ("gradient_x_input", {"baselines": "zero", "alpha": 0.5, "environment_radius": 2}),
    "ig_mask_env": ("ig", {"baselines": "mask", "n_steps": 16, "environment_radius": 2}),
    "occlusion_env": ("mask_occlusion", {"environment_radius": 2}),
    "gxi_mask_a05_env": ("gradient_x_input", {"baselines": "mask", "alpha": 0.5, "environment_radius": 2}),
    "gxi_pad_a05_env": ("gradient_x_input", {"baselines": "pad", "alpha": 0.5, "environment_radius": 2}),
    "edit_occlusion": ("edit_occlusion", {"branch_fill": False, "environment_radius": 0}),
    "edit_occlusion_env": ("edit_occlusion", {"branch_fill": False, "environment_radius": 2}),
    "edit_occlusion_single": ("edit_occlusion", {"joint_copies": False, "branch_fill": False, "environment_radius": 0}),
    "edit_occlusion_single_env": ("edit_occlusion", {"joint_copies": False, "branch_fill": False, "environment_radius": 2}),
    "edit_occlusion_bf16_env": ("edit_occlusion", {"precision": "bf16", "branch_fill": False, "environment_radius": 2}),
    "edit_gradient_env": ("edit_gradient", {"branch_fill": False, "environment_radius": 2}),
    "edit_gradient_bf16_env": ("edit_gradient", {"precision": "bf16", "branch_fill": False, "environment_radius": 2}),
    "edit_occlusion_fill_bf16_env": ("edit_occlusion", {"precision": "bf16", "branch_fill": True, "environment_radius": 2}),
    "edit_gradient_fill_bf16_env": ("edit_gradient", {"precision": "bf16", "branch_fill": True, "environment_radius": 2}),
    "edit_occlusion_fill_int8_env": ("edit_occlusion", {"precision": "int8", "branch_fill": True, "environment_radius": 2}),
    "edit_gradient_fill_int8_env": ("edit_gradient", {"precision": "int8", "branch_fill": True, "environment_radius": 2}),
}
REFERENCES = ("ecfp_rf", "random")
#: not attributions: does breaking the deciding group flip the model's and the forest's prediction
#: (``rule_check``)?  Which atoms, hidden, move the model most (``deletion_check``)?
CHECKS = ("rule_check", "deletion_check")
#: the method whose top-ranked atoms ``deletion_check`` hides: the decoder head's default, as scored here
CHECKED_METHOD = "edit_gradient_fill_int8_env"
#: random atom sets per molecule in ``deletion_check``
CHECK_DRAWS = 8
#: what ``deletion_check`` hides, in its order: the checked method's top k atoms, the ground truth,
#: the map's top k atoms, k random atoms (the mean of CHECK_DRAWS draws); k = the ground truth's size
HIDDEN = ("method", "truth", "map", "random")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def moses_smiles(path: Path, rows: int, skip: int = 0) -> list[str]:
    """The non-empty SMILES of ``rows`` rows of a MOSES CSV after its first ``skip`` rows (its
    ``SMILES`` column, else the first)."""
    frame = pd.read_csv(path, skiprows=range(1, skip + 1) if skip else None, nrows=rows)
    column = "SMILES" if "SMILES" in frame.columns else frame.columns[0]
    return [str(s) for s in frame[column].dropna()]


def parsable(smiles: Sequence[str]) -> list:
    """``(SMILES, Mol)`` for each of ``smiles`` that RDKit parses, in order."""
    out = []
    for s in smiles:
        try:
            out.append((s, parse_smiles(s)))
        except InvalidSmilesError:
            continue
    return out


def read_pool(path: Path, rows: int, size: int, seed: int) -> list:
    """``size`` parsable molecules drawn with ``seed`` from the first ``rows`` rows (SMILES, Mol)."""
    smiles = moses_smiles(path, rows)
    picked = np.random.default_rng(seed).choice(len(smiles), min(size, len(smiles)), replace=False)
    return parsable([smiles[i] for i in sorted(int(i) for i in picked)])


def task_data(rule: Rule, index: int, pool: list, args, folder: Path) -> pd.DataFrame:
    """The task's molecules (split, smiles, label, stratum, truth atoms), made once and cached."""
    path = folder / "molecules.json"
    if path.is_file():
        return pd.read_json(path, orient="records")
    labelled = [label_molecule(rule, mol) for _, mol in pool]
    n_total = args.n_train + args.n_valid + args.n_test
    picked = balanced_sample([x.stratum for x in labelled], n_total, np.random.default_rng([args.data_seed, index]))
    n_train = round(len(picked) * args.n_train / n_total)
    n_valid = round(len(picked) * args.n_valid / n_total)
    splits = ["train"] * n_train + ["valid"] * n_valid + ["test"] * (len(picked) - n_train - n_valid)
    frame = pd.DataFrame({"split": splits, "smiles": [pool[i][0] for i in picked],
                          "label": [labelled[i].label for i in picked],
                          "stratum": [labelled[i].stratum for i in picked],
                          "truth": [sorted(labelled[i].truth) for i in picked]})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        frame[frame.split == split][["smiles", "label"]].to_csv(folder / "data" / f"{split}.csv", index=False)
    frame.to_json(path, orient="records")
    return frame


def read_heldout(path: Path, start: int, rows: int) -> list:
    """The parsable molecules (SMILES, Mol) of MOSES rows ``start`` .. ``start + rows - 1`` that are
    written in canonical form (so the atom numbering the model reads is the ground truth's): after
    the rows the pool is drawn from, so no task ever used them."""
    return [(s, mol) for s, mol in parsable(moses_smiles(path, rows, skip=start)) if Chem.MolToSmiles(mol) == s]


def explained_molecules(rule: Rule, index: int, candidates: Callable[[], list], frame: pd.DataFrame, args,
                        folder: Path) -> pd.DataFrame:
    """The positives whose attributions are scored (smiles, stratum, truth atoms).

    ``--explain-from test``: the first ``--n-explain`` positive test molecules of the task.
    ``--explain-from pool``: ``--n-explain`` positives drawn from ``candidates()``
    (:func:`read_heldout`: canonical SMILES of MOSES rows after the pool's, which no model and no
    forest saw; called only when the sample is not cached yet), equally from each positive stratum (the OR rule's two groups), with ``[--data-seed, task
    index, 1]``; made once and cached in ``TASK/explain_pool{N}_rows{FIRST}-{END}.json``.  Fewer
    when there are fewer.
    """
    if args.explain_from == "test":
        test = frame[frame.split == "test"]
        return test[test.label == 1.0].head(args.n_explain)[["smiles", "stratum", "truth"]]
    path = folder / f"explain_pool{args.n_explain}_rows{args.pool_rows}-{args.pool_rows + args.explain_rows}.json"
    if path.is_file():
        return pd.read_json(path, orient="records")
    used = set(frame.smiles)
    strata: dict[str, list[int]] = {}
    labelled = {}
    pool = candidates()
    for i, (smiles, mol) in enumerate(pool):
        if smiles in used:
            continue
        x = label_molecule(rule, mol)
        if x.label == 1.0:
            strata.setdefault(x.stratum, []).append(i)
            labelled[i] = x
    rng = np.random.default_rng([args.data_seed, index, 1])
    share = max(1, args.n_explain // max(1, len(strata)))
    picked = [int(i) for name in sorted(strata)
              for i in rng.choice(strata[name], min(share, len(strata[name])), replace=False)]
    explained = pd.DataFrame({"smiles": [pool[i][0] for i in picked],
                              "stratum": [labelled[i].stratum for i in picked],
                              "truth": [sorted(labelled[i].truth) for i in picked]})
    folder.mkdir(parents=True, exist_ok=True)
    explained.to_json(path, orient="records")
    return explained


def scores_file(args) -> str:
    """The per-seed cache of scores for this run's explained molecules."""
    return "scores.json" if args.explain_from == "test" else f"scores_pool{args.n_explain}.json"


def fine_tuned(folder: Path, seed: int, args) -> dict:
    """Fine-tune (or reuse the cached run of) one model seed on the task's data."""
    record = folder / f"seed{seed}" / "model.json"
    if record.is_file():
        info = json.loads(record.read_text())
        if info.get("head_input", "decoder_eos") != args.head_input:
            raise SystemExit(f"{record} is a model with head_input={info.get('head_input', 'decoder_eos')}, not "
                             f"{args.head_input}: give this run its own --work-dir")
        if info.get("randomize_smiles", 0.0) != args.randomize_smiles:
            raise SystemExit(f"{record} is a model with randomize_smiles={info.get('randomize_smiles', 0.0)}, not "
                             f"{args.randomize_smiles}: give this run its own --work-dir")
        return info
    cfg = FinetuneConfig(data=str(folder / "data"), pretrained=args.pretrained,
                         arch="bartsmiles_tiny" if args.smoke else "", save_dir=str(folder / f"seed{seed}" / "run"),
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, keep_last_epochs=0,
                         length_sorted_batches=True, cpu=True, num_workers=0, log_interval=100, progress=False,
                         head_input=args.head_input, randomize_smiles=args.randomize_smiles)
    result = finetune(cfg)
    info = {"checkpoint": result.best_checkpoint, "test_roc_auc": result.test_metric,
            "valid_roc_auc": result.best_valid_metric, "seconds": round(result.seconds, 1), "seed": seed,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "head_input": args.head_input,
            "randomize_smiles": args.randomize_smiles}
    last = Path(result.save_dir) / "checkpoint_last.pt"
    if last.is_file() and Path(result.best_checkpoint) != last:
        last.unlink()  # the run is finished: keep the best checkpoint only (disk)
    record.write_text(json.dumps(info, indent=2))
    return info


def summarize(per_molecule: list[tuple], called: Optional[Sequence[bool]] = None) -> dict:
    """Mean atom ROC-AUC and top-k hit over the explained molecules, and each molecule's AUC.
    ``called``: per molecule, whether the explained model calls it positive; then also the mean
    AUC over those alone (``atom_auc_called``: an attribution cannot be right about the rule on a
    molecule the model gets wrong)."""
    aucs = [a for a, _ in per_molecule if a is not None]
    hits = [h for _, h in per_molecule if h is not None]
    out = {"atom_auc": float(np.mean(aucs)) if aucs else None, "atom_auc_std": float(np.std(aucs)) if aucs else None,
           "top_k_hit": float(np.mean(hits)) if hits else None, "n_molecules": len(aucs),
           "per_molecule_auc": [None if a is None else round(float(a), 4) for a, _ in per_molecule]}
    if called is not None:
        kept = [a for (a, _), c in zip(per_molecule, called) if c and a is not None]
        out.update({"called": [bool(c) for c in called], "n_called": len(kept),
                    "atom_auc_called": float(np.mean(kept)) if kept else None})
    return out


def flip_summary(before: np.ndarray, after: np.ndarray, groups: list[str], threshold: float) -> dict:
    """Of the (molecule, edit) pairs whose original is called positive (``before > threshold``), the
    share whose edited copy is called negative, overall and per group; and the mean drop."""
    called = before > threshold
    out = {"pairs": int(called.sum()), "flip_rate": float(np.mean(after[called] <= threshold)) if called.any() else None,
           "mean_drop": float(np.mean(before - after)) if len(before) else None, "groups": {}}
    for g in sorted(set(groups)):
        mask = called & (np.asarray(groups) == g)
        out["groups"][g] = {"pairs": int(mask.sum()),
                            "flip_rate": float(np.mean(after[mask] <= threshold)) if mask.any() else None}
    return out


def rule_check(rule: Rule, smiles: list[str], attributor: Attributor, forest) -> dict:
    """Break the deciding group(s) of each positive (:func:`rule_breaking_edits`) and ask whether the
    fine-tuned model (logit > 0) and the forest (probability > 0.5) flip to negative: an
    attribution cannot point at a group whose removal the model does not notice."""
    originals, edited, groups = [], [], []
    for i, smi in enumerate(smiles):
        for group, mol in rule_breaking_edits(rule, parse_smiles(smi)):
            originals.append(i)
            edited.append(Chem.MolToSmiles(mol))
            groups.append(group)
    if not edited:
        return {"n_molecules": len(smiles), "n_edits": 0}
    logits = attributor.predict_outputs(list(smiles) + edited)[:, 0]
    before, after = logits[: len(smiles)][originals], logits[len(smiles):]
    proba = forest.predict_proba(ecfp4(list(smiles) + edited))[:, list(forest.classes_).index(1.0)]
    rf_before, rf_after = proba[: len(smiles)][originals], proba[len(smiles):]
    return {"n_molecules": len(smiles), "n_edits": len(edited), "examples": list(zip(
                [smiles[i] for i in originals[:3]], edited[:3])),
            "model": flip_summary(before, after, groups, 0.0), "rf": flip_summary(rf_before, rf_after, groups, 0.5),
            "model_needs_rule": needs_rule(len(smiles), originals, before, after, 0.0)}


def deletion_check(smiles: list[str], truth: list[set], predictor: PropertyPredictor, forest, seed: int,
                   checked: Optional[list] = None, weights: Optional[list] = None) -> dict:
    """Which atoms does the fine-tuned model read?  Per explained positive, with ``k`` its number of
    ground-truth atoms, hide (``Attributor.hidden_outputs``: ``<mask>`` over the atoms' tokens and
    those joining them) the :data:`CHECKED_METHOD`'s top ``k`` atoms (environment scores), the
    ground-truth atoms, the ECFP4+RF map's top ``k`` atoms, and ``k`` random atoms
    (:data:`CHECK_DRAWS` draws, seeded by ``seed`` and the SMILES), and record the model's logit
    falls (:data:`HIDDEN` order).  A method that finds what the model reads makes it fall at least as
    far as the ground truth does, even where the model reads the label from other atoms too.
    ``checked`` / ``weights``: the method's environment scores and the map's atom weights when
    this process has them already (computed here otherwise)."""
    method, options = METHODS[CHECKED_METHOD]
    attributor = Attributor(predictor, method=method, precision=options.get("precision", "fp32"))
    if checked is None:
        results = attributor.attribute(smiles, on_delta="ignore",
                                       **{k: v for k, v in options.items() if k != "precision"})
        checked = [a.environment_scores for a in results]
    if weights is None:
        weights = fingerprint_atom_weights([parse_smiles(s) for s in smiles],
                                           lambda x: forest.predict_proba(x)[:, list(forest.classes_).index(1.0)])
    sets = []
    for smi, c, w, t in zip(smiles, checked, weights, truth):
        k = len(t)
        sets.append([top_atoms(c, k), tuple(sorted(t)), top_atoms(w, k),
                     *random_sets(smi, len(w), k, CHECK_DRAWS, seed)])
    values = attributor.hidden_outputs(smiles, sets)
    falls = np.array([[v[0] - x for x in v[1:4]] + [float(np.mean(v[0] - v[4:]))] for v in values])
    return {"method": CHECKED_METHOD, "n_random": CHECK_DRAWS, "hidden": list(HIDDEN),
            "mean_falls": dict(zip(HIDDEN, falls.mean(axis=0).round(4).tolist())),
            "per_molecule_falls": falls.round(4).tolist()}


def needs_rule(n: int, originals: Sequence[int], before: np.ndarray, after: np.ndarray, threshold: float) -> list:
    """Per explained molecule: ``True`` when the model calls it positive (``> threshold``) and every
    rule-breaking edit of it (one per deciding group) is called negative -- the model needs each
    group the rule names; ``False`` when it is called positive and some edit is still called
    positive; ``None`` when it is not called positive or has no edit."""
    out: list = [None] * n
    for i, b, a in zip(originals, before, after):
        if b > threshold:
            out[i] = (out[i] is not False) and bool(a <= threshold)
    return out


def score_methods(rule: Rule, frame: pd.DataFrame, positives: pd.DataFrame, model: dict, seed: int, args,
                  methods: list[str]) -> dict:
    """Per method: atom ROC-AUC, top-k hit rate and molecules/s on the explained ``positives``
    (:func:`explained_molecules`); and ``rule_check`` (:func:`rule_check`) when asked for."""
    train, test = frame[frame.split == "train"], frame[frame.split == "test"]
    smiles, truth = list(positives.smiles), [set(t) for t in positives.truth]
    out: dict = {}
    predictor_methods = [m for m in methods if m in METHODS]
    accuracy = None
    predictor = PropertyPredictor(model["checkpoint"]) if predictor_methods or "deletion_check" in methods else None
    called = None  # per explained molecule: does the model call it positive (fp32 logit > 0)?
    checked = weights = None  # CHECKED_METHOD's environment scores and the map's, when scored here
    for name in predictor_methods:
        method, options = METHODS[name]
        options = {**options, "n_steps": 4, "n_samples": 2} if args.smoke else options
        precision = options.get("precision", "fp32")  # an Attributor setting, not an attribute() option
        options = {k: v for k, v in options.items() if k != "precision"}
        attributor = Attributor(predictor, method=method, precision=precision)
        if accuracy is None:
            fp32 = attributor if attributor.precision == "fp32" else Attributor(predictor, precision="fp32")
            logits = fp32.predict_outputs(list(test.smiles))[:, 0]
            accuracy = float(np.mean((logits > 0) == (test.label.to_numpy() == 1.0)))
            called = list(fp32.predict_outputs(smiles)[:, 0] > 0)
        subset = smiles[: args.n_explain_slow] if method == "shapley" else smiles
        start = time.perf_counter()
        results = attributor.attribute(subset, on_delta="ignore", **options)
        seconds = time.perf_counter() - start
        # atom scores are numbered as in the SMILES the model read (canonical for a canonical model);
        # the ground truth is numbered as in the pool's SMILES: they must be the same string
        rewritten = [(s, a.smiles) for s, a in zip(subset, results) if a.smiles != s]
        if rewritten:
            raise SystemExit(f"{len(rewritten)} molecule(s) were rewritten before attribution, so atom indices "
                             f"differ from the ground truth's, e.g. {rewritten[0]}")
        if name == CHECKED_METHOD:
            checked = [a.environment_scores for a in results]
        out[name] = {**summarize([(atom_auc(a.environment_scores, t), top_k_hit_rate(a.environment_scores, t))
                                  for a, t in zip(results, truth)], called[: len(results)]),
                     "method": method, "options": options, "precision": precision, "seconds": round(seconds, 2),
                     "molecules_per_second": round(len(results) / seconds, 3)}
    forest = fit_seconds = None
    if any(m in methods for m in ("ecfp_rf", "rule_check", "deletion_check")):
        start = time.perf_counter()
        forest = RandomForestClassifier(n_estimators=args.rf_trees, random_state=seed, n_jobs=1)
        forest.fit(ecfp4(list(train.smiles)), train.label.to_numpy())
        fit_seconds = time.perf_counter() - start
    if "rule_check" in methods:
        # fp32 predictions whatever the method's default precision: a flip is a sign change at 0
        out["rule_check"] = rule_check(rule, smiles, Attributor(predictor or PropertyPredictor(model["checkpoint"]),
                                                                precision="fp32"), forest)
    if "ecfp_rf" in methods:
        rf_accuracy = float(np.mean(forest.predict(ecfp4(list(test.smiles))) == test.label.to_numpy()))
        start = time.perf_counter()
        weights = fingerprint_atom_weights([parse_smiles(s) for s in smiles],
                                           lambda x: forest.predict_proba(x)[:, list(forest.classes_).index(1.0)])
        seconds = time.perf_counter() - start
        rf_called = forest.predict_proba(ecfp4(smiles))[:, list(forest.classes_).index(1.0)] > 0.5
        out["ecfp_rf"] = {**summarize([(atom_auc(w, t), top_k_hit_rate(w, t)) for w, t in zip(weights, truth)],
                                      list(rf_called)),
                          "test_accuracy": rf_accuracy, "fit_seconds": round(fit_seconds, 2),
                          "n_estimators": args.rf_trees, "seconds": round(seconds, 3),
                          "molecules_per_second": round(len(weights) / seconds, 3)}
        for name in predictor_methods:  # the map's speed in this process, for the speed ratio
            out[name]["map_molecules_per_second"] = out["ecfp_rf"]["molecules_per_second"]
    if "deletion_check" in methods:  # after the method and the map: their scores are reused, not recomputed
        out["deletion_check"] = deletion_check(smiles, truth, predictor, forest, seed, checked, weights)
    if "random" in methods:
        rng = np.random.default_rng([seed, 7])
        scores = [rng.normal(size=parse_smiles(s).GetNumAtoms()) for s in smiles]
        out["random"] = summarize([(atom_auc(w, t), top_k_hit_rate(w, t)) for w, t in zip(scores, truth)])
    return {"test_accuracy": accuracy, "methods": out}


def run_task(rule: Rule, index: int, pool: list, seeds: list[int], args, work: Path, provenance: dict,
             wanted: list[str], candidates: Callable[[], list]) -> dict:
    folder = work / slug(rule.name)
    frame = task_data(rule, index, pool, args, folder)
    positives = explained_molecules(rule, index, candidates, frame, args, folder)
    if positives.empty:
        print(f"{rule.name}: no positives to explain, skipped", flush=True)
        seeds = []
    digest = hashlib.sha256("\n".join(positives.smiles).encode()).hexdigest()[:16]
    per_seed = {}
    for seed in seeds:
        path = folder / f"seed{seed}" / scores_file(args)
        cached = json.loads(path.read_text()) if path.is_file() else None
        if cached is not None and cached.get("explained", digest) != digest:
            cached = None  # scored on other molecules (the explained sample was made again): score afresh
        missing = [m for m in wanted if cached is None or m not in cached["methods"] or args.rescore]
        if missing:
            # the map is recomputed with any method, so that speed ratios come from one process
            missing += ["ecfp_rf"] if "ecfp_rf" in wanted and "ecfp_rf" not in missing else []
            model = fine_tuned(folder, seed, args)
            scores = score_methods(rule, frame, positives, model, seed, args, missing)
            kept = {m: v for m, v in (cached or {}).get("methods", {}).items() if m not in missing}
            earlier = [(cached or {}).get("provenance")] + list((cached or {}).get("earlier_provenance", []))
            accuracy = scores["test_accuracy"] if scores["test_accuracy"] is not None else (cached or {}).get("test_accuracy")
            cached = {"model": model, "test_accuracy": accuracy, "explained": digest,
                      "methods": {**kept, **scores["methods"]},
                      "provenance": {**provenance, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "methods": missing},
                      "earlier_provenance": [p for p in earlier if p]}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cached, indent=2, default=str))
        per_seed[str(seed)] = cached
        print(f"{rule.name} seed {seed}: model test ROC-AUC {cached['model']['test_roc_auc']}, " +
              ", ".join(f"{m} {v['atom_auc']:.3f}" for m, v in cached["methods"].items() if v.get("atom_auc") is not None),
              flush=True)
    counts = frame.groupby(["split", "stratum"]).size()
    return {"task": rule.name, "kind": rule.kind, "patterns": list(rule.patterns), "min_count": rule.min_count,
            "sizes": {k: int(v) for k, v in frame.split.value_counts().items()},
            "strata": {f"{a}/{b}": int(v) for (a, b), v in counts.items()},
            "mean_truth_atoms": float(np.mean([len(t) for t in frame[frame.label == 1.0].truth])),
            "explained": {"from": args.explain_from, "n": len(positives),
                          "strata": {k: int(v) for k, v in positives.stratum.value_counts().items()}},
            "seeds": per_seed}


def mean_over_seeds(task: dict, method: str, key: str):
    values = [s["methods"][method][key] for s in task["seeds"].values()
              if method in s["methods"] and s["methods"][method].get(key) is not None]
    return (float(np.mean(values)), float(np.std(values)), len(values)) if values else (None, None, 0)


def paired_difference(task: dict, method: str, reference: str = "ecfp_rf", n_boot: int = 2000):
    """``method``'s per-molecule atom ROC-AUC minus ``reference``'s on the same molecules, averaged
    over the seeds that scored both, then over molecules: ``(mean, low, high, n)`` with a 95%
    bootstrap interval over molecules (seeded, so the table is reproducible); ``None`` when no
    molecule has both."""
    rows = []
    for s in task["seeds"].values():
        mine = s["methods"].get(method, {}).get("per_molecule_auc")
        ref = s["methods"].get(reference, {}).get("per_molecule_auc")
        if mine is not None and ref is not None and len(mine) == len(ref):
            rows.append([np.nan if a is None or b is None else a - b for a, b in zip(mine, ref)])
    if not rows:
        return None
    table = np.array(rows, dtype=float)
    per_molecule = np.nanmean(table[:, np.isfinite(table).any(axis=0)], axis=0)
    if not len(per_molecule):
        return None
    rng = np.random.default_rng(0)
    boots = rng.choice(per_molecule, (n_boot, len(per_molecule)), replace=True).mean(axis=1)
    return (float(per_molecule.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975)),
            int(len(per_molecule)))


def reliance_auc(task: dict, method: str, needs: bool):
    """``method``'s mean atom ROC-AUC over the explained positives whose ``model_needs_rule`` flag
    (:func:`needs_rule`, from the seed's rule check) is ``needs``: ``(mean over seeds, mean number of
    molecules per seed)``, or ``None`` when no seed has both."""
    means, counts = [], []
    for s in task["seeds"].values():
        flags = s["methods"].get("rule_check", {}).get("model_needs_rule")
        aucs = s["methods"].get(method, {}).get("per_molecule_auc")
        if flags is None or aucs is None or len(flags) != len(aucs):
            continue
        kept = [a for a, f in zip(aucs, flags) if f is needs and a is not None]
        if kept:
            means.append(float(np.mean(kept)))
            counts.append(len(kept))
    return (float(np.mean(means)), float(np.mean(counts))) if means else None


def task_rows(report: dict, columns: Sequence, cell_of) -> list[str]:
    """One markdown table row per task of ``report``: its name, then ``cell_of(task, column)``
    for each of ``columns``."""
    return [f"| {cell_text(t['task'])} | " + " | ".join(cell_of(t, c) for c in columns) + " |" for t in report["tasks"]]


def cell_text(text: str) -> str:
    """``text`` safe inside a markdown table cell (the OR task's name holds a ``|``)."""
    return text.replace("|", "\\|")


def goal_table(report: dict) -> dict:
    """Per method: how many single-pattern tasks reach ECFP4+RF - 0.02, whether it beats ECFP4+RF on
    the AND and OR tasks, its mean atom ROC-AUC / top-k hit over tasks, and its speed over the map's."""
    out = {}
    for m in METHODS:
        singles = ok = 0
        flags = {"and": "n/a", "or": "n/a"}
        aucs, hits, called = [], [], []
        singles_called = ok_called = 0
        for t in report["tasks"]:
            mine, rf = mean_over_seeds(t, m, "atom_auc")[0], mean_over_seeds(t, "ecfp_rf", "atom_auc")[0]
            mine_c, rf_c = mean_over_seeds(t, m, "atom_auc_called")[0], mean_over_seeds(t, "ecfp_rf", "atom_auc_called")[0]
            if mine_c is not None and rf_c is not None:
                called.append(mine_c)
                if t["kind"] == "single":
                    singles_called += 1
                    ok_called += mine_c >= rf_c - 0.02
            hit = mean_over_seeds(t, m, "top_k_hit")[0]
            if mine is None or rf is None:
                continue
            aucs.append(mine)
            hits += [hit] if hit is not None else []
            if t["kind"] == "single":
                singles += 1
                ok += mine >= rf - 0.02
            elif t["kind"] in flags:
                flags[t["kind"]] = "yes" if mine > rf else "no"
        ratios = [s["methods"][m]["molecules_per_second"] / s["methods"][m]["map_molecules_per_second"]
                  for t in report["tasks"] for s in t["seeds"].values()
                  if s["methods"].get(m, {}).get("map_molecules_per_second")]
        out[m] = {"tasks": len(aucs), "singles": singles, "singles_ok": int(ok), "and_above": flags["and"], "or_above": flags["or"],
                  "mean_auc": float(np.mean(aucs)) if aucs else None, "mean_top_k": float(np.mean(hits)) if hits else None,
                  "speed_ratio": float(np.mean(ratios)) if ratios else None,
                  "called_tasks": len(called), "mean_auc_called": float(np.mean(called)) if called else None,
                  "singles_called": singles_called, "singles_ok_called": int(ok_called)}
    return out


def scored(report: dict, method: str) -> bool:
    """Whether any task and seed of ``report`` scored ``method``."""
    return any(method in s["methods"] for t in report["tasks"] for s in t["seeds"].values())


def to_markdown(report: dict) -> str:
    methods = [m for m in list(METHODS) + list(REFERENCES) if scored(report, m)]
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    lines = ["# Attribution ground truth (SMARTS rules on MOSES)", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {report['machine'].get('cpu', '?')}, {report['machine'].get('cpu_count')} cores shared; "
             f"{report['started']}. Model seeds: {report['seeds']}. Per task: "
             f"{report['config']['n_train']} train / {report['config']['n_valid']} valid / "
             f"{report['config']['n_test']} test molecules, {report['config']['epochs']} epochs from "
             f"`{report['config']['pretrained']}`"
             + (f", randomized-SMILES augmentation p = {report['config']['randomize_smiles']}"
                if report['config'].get('randomize_smiles') else "")
             + (f"; at most {report['config']['n_explain']} positive test molecules "
                if report['config'].get('explain_from', 'test') == 'test' else
                f"; at most {report['config']['n_explain']} positives drawn from {report['config'].get('explain_rows')} MOSES "
                f"rows after the pool's {report['config']['pool_rows']} (held out from every model and forest; "
                "equally from each positive stratum) ")
             + f"explained ({report['config']['n_explain_slow']} for Shapley). Mean over seeds (± std when more than one).",
             "", "## Atom ROC-AUC", "",
             "| task | model test ROC-AUC | model test accuracy | RF test accuracy | " + " | ".join(methods) + " |",
             "|---" * (4 + len(methods)) + "|"]

    def cell(task, method, key):
        mean, std, n = mean_over_seeds(task, method, key)
        return fmt(mean) + (f" ± {std:.3f}" if n > 1 else "")

    for t in report["tasks"]:
        seeds = list(t["seeds"].values())
        model_auc = [s["model"]["test_roc_auc"] for s in seeds if s["model"]["test_roc_auc"] is not None]
        acc = [s["test_accuracy"] for s in seeds if s["test_accuracy"] is not None]
        rf_acc = [s["methods"]["ecfp_rf"]["test_accuracy"] for s in seeds if "ecfp_rf" in s["methods"]]
        lines.append(f"| {cell_text(t['task'])} | {fmt(np.mean(model_auc) if model_auc else None)} | "
                     f"{fmt(np.mean(acc) if acc else None)} | {fmt(np.mean(rf_acc) if rf_acc else None)} | "
                     + " | ".join(cell(t, m, "atom_auc") for m in methods) + " |")
    lines += ["", "## Top-k hit rate (k = number of ground-truth atoms)", "",
              "| task | " + " | ".join(methods) + " |", "|---" * (1 + len(methods)) + "|"]
    for t in report["tasks"]:
        lines.append(f"| {cell_text(t['task'])} | " + " | ".join(cell(t, m, "top_k_hit") for m in methods) + " |")
    lines += ["", "## The goal, per method (seed means): atom ROC-AUC >= ECFP4+RF - 0.02 on every single pattern, "
              "above ECFP4+RF on AND and OR; speed relative to the ECFP4+RF map measured in the same processes", "",
              "| method | tasks scored | single patterns within 0.02 of ECFP4+RF | AND above | OR above | "
              "mean atom ROC-AUC | mean top-k hit | speed / ECFP4+RF map (same process) |", "|---|---|---|---|---|---|---|---|"]
    for m, row in goal_table(report).items():
        if not row["tasks"]:
            continue
        lines.append(f"| {m} | {row['tasks']} | {row['singles_ok']}/{row['singles']} | {row['and_above']} | {row['or_above']} | "
                     f"{fmt(row['mean_auc'])} | {fmt(row['mean_top_k'])} | {fmt(row['speed_ratio'])} |")
    paired = [m for m in methods if m not in REFERENCES]
    if "ecfp_rf" in methods and paired:
        lines += ["", "## Paired difference to ECFP4+RF (atom ROC-AUC, same molecules)", "",
                  "Per explained molecule, the method's atom ROC-AUC minus the map's, averaged over the seeds, then "
                  "over molecules; in brackets a 95% bootstrap interval over molecules and the number of molecules.  "
                  "An interval that holds 0 does not tell the two apart.", "",
                  "| task | " + " | ".join(paired) + " |", "|---" * (1 + len(paired)) + "|"]

        def difference(t, m):
            d = paired_difference(t, m)
            return "n/a" if d is None else f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}; {d[3]}]"

        lines += task_rows(report, paired, difference)
    with_called = [m for m in methods if m != "random"
                   and any(s["methods"].get(m, {}).get("atom_auc_called") is not None
                           for t in report["tasks"] for s in t["seeds"].values())]
    if "ecfp_rf" in with_called and len(with_called) > 1:
        lines += ["", "## On the positives each model calls positive", "",
                  "Atom ROC-AUC over the explained positives that the explained model itself calls positive "
                  "(fine-tuned model: logit > 0; ECFP4+RF: probability > 0.5), mean over seeds; in brackets the mean "
                  "number of such molecules per seed.  An attribution cannot be right about the rule on a molecule "
                  "its model gets wrong, so this compares the explainers on the molecules their models get right.", "",
                  "| task | " + " | ".join(with_called) + " |", "|---" * (1 + len(with_called)) + "|"]

        def called_cell(t, m):
            n = [s["methods"][m]["n_called"] for s in t["seeds"].values() if s["methods"].get(m, {}).get("n_called") is not None]
            return cell(t, m, "atom_auc_called") + (f" ({np.mean(n):.1f})" if n else "")

        lines += task_rows(report, with_called, called_cell)
        lines += ["", "| method | single patterns within 0.02 of ECFP4+RF (called positives) | mean atom ROC-AUC (called) |",
                  "|---|---|---|"]
        for m, row in goal_table(report).items():
            if row["called_tasks"]:
                lines.append(f"| {m} | {row['singles_ok_called']}/{row['singles_called']} | {fmt(row['mean_auc_called'])} |")
    relied = [m for m in methods if m != "random"]
    if any(reliance_auc(t, m, True) for t in report["tasks"] for m in relied):
        lines += ["", "## Where the model needs the rule's groups", "",
                  "Atom ROC-AUC over the explained positives the fine-tuned model calls positive, split by the rule "
                  "check below: **needs** -- every rule-breaking edit (one per deciding group) turns its call "
                  "negative, so the model uses each group the truth names; **does not** -- some edit leaves it "
                  "positive, so the model reads the label from something else as well.  The same molecules for "
                  "every column (the split is the fine-tuned model's, also for the map); mean over seeds, in "
                  "brackets the mean number of molecules per seed.", "",
                  "| task | " + " | ".join(f"{m}: needs | {m}: does not" for m in relied) + " |",
                  "|---" * (1 + 2 * len(relied)) + "|"]

        def reliance_cell(t, column):
            r = reliance_auc(t, *column)
            return "n/a" if r is None else f"{r[0]:.3f} ({r[1]:.1f})"

        lines += task_rows(report, [(m, flag) for m in relied for flag in (True, False)], reliance_cell)
    checked = [t for t in report["tasks"] if any("rule_check" in x["methods"] for x in t["seeds"].values())]
    if checked:
        lines += ["", "## Did the models learn the rule? Breaking the deciding group (rule_check)", "",
                  "Each positive explained above is edited so that the rule calls it negative (a halogen removed, a "
                  "singly bonded N, O or S made carbon, or a multiple bond lowered: amide and ester -> ketone, urea -> "
                  "amide, sulfonamide -> sulfone, nitrile -> imine, alkyne -> alkene; for AND each group in turn, A "
                  "then B; bartsmiles.attribution.groundtruth.rule_breaking_edits). "
                  "Of the pairs whose original the model (logit > 0) or the forest (probability > 0.5) calls "
                  "positive, the share it calls negative after the edit (mean over seeds; per group for AND).", "",
                  "| task | edits per seed | model: prediction flips | forest: prediction flips | model: mean logit drop |",
                  "|---|---|---|---|---|"]
        for t in checked:
            runs = [x["methods"]["rule_check"] for x in t["seeds"].values() if x["methods"].get("rule_check", {}).get("n_edits")]
            lines.append(f"| {cell_text(t['task'])} | {round(float(np.mean([r['n_edits'] for r in runs]))) if runs else 'n/a'} | "
                         f"{flip_cell(runs, 'model')} | {flip_cell(runs, 'rf')} | "
                         f"{fmt(float(np.mean([r['model']['mean_drop'] for r in runs])) if runs else None)} |")
    hidden = [(t, d) for t in report["tasks"] if (d := deletion_summary(t)) is not None]
    if hidden:
        lines += ["", "## Which atoms does the model read? Hiding them (deletion_check)", "",
                  f"Per explained positive, with k its number of ground-truth atoms, four sets of atoms are hidden "
                  f"behind `<mask>` (their tokens and those joining them, in what the encoder and the decoder read): "
                  f"{CHECKED_METHOD}'s top k atoms, the ground-truth atoms, the ECFP4+RF map's top k atoms, and k "
                  f"random atoms (mean of {CHECK_DRAWS} draws).  The table gives the fine-tuned model's mean logit "
                  "fall (mean over seeds), on all explained positives and on those the model calls positive without "
                  "needing every group (the rule check's *does not* molecules), and the share of molecules on which "
                  "hiding the method's atoms moves the model at least as far as hiding the ground truth.  The map "
                  "column hides the map's atoms from the fine-tuned model, not from the forest.", "",
                  "| task | method | truth | map | random | method >= truth | does not need: method | "
                  "does not need: truth |", "|---|---|---|---|---|---|---|---|"]
        for t, d in hidden:
            lines.append(f"| {cell_text(t['task'])} | " + " | ".join(fmt(d['all'][h]) for h in HIDDEN) +
                         f" | {fmt(d['at_least_truth'])} | {fmt(d['not_needed'].get('method'))} | "
                         f"{fmt(d['not_needed'].get('truth'))} |")
    timed = [m for m in methods if m != "random"]
    lines += ["", "## Molecules per second (same process, per task; mean over tasks and seeds)", "",
              "| " + " | ".join(timed) + " |", "|---" * len(timed) + "|",
              "| " + " | ".join(fmt(report["speed"].get(m)) for m in timed) + " |"]
    return "\n".join(lines) + "\n"


def deletion_summary(task: dict) -> Optional[dict]:
    """A task's deletion check over seeds (:func:`deletion_check`): the mean falls per hidden set on
    all explained positives (``all``) and on those whose rule-check flag is ``False`` (called
    positive without needing every group: ``not_needed``), and the share of molecules where the
    method's fall is at least the ground truth's; ``None`` when no seed has the check."""
    runs = [(x["methods"]["deletion_check"], x["methods"].get("rule_check", {}).get("model_needs_rule"))
            for x in task["seeds"].values() if "deletion_check" in x["methods"]]
    if not runs:
        return None
    every, not_needed, at_least = [], [], []
    for check, flags in runs:
        falls = np.asarray(check["per_molecule_falls"], dtype=float)
        every.append(falls.mean(axis=0))
        at_least.append(float(np.mean(falls[:, 0] >= falls[:, 1])))
        if flags is not None and len(flags) == len(falls):
            rows = [f is False for f in flags]
            if any(rows):
                not_needed.append(falls[rows].mean(axis=0))
    mean = np.mean(every, axis=0)
    return {"all": dict(zip(HIDDEN, mean.tolist())), "at_least_truth": float(np.mean(at_least)),
            "not_needed": dict(zip(HIDDEN, np.mean(not_needed, axis=0).tolist())) if not_needed else {}}


def plot_deletion(report: dict, path: Path) -> None:
    """Grouped bars of the deletion check (:func:`deletion_summary`): per task, the model's mean
    logit fall when each of :data:`HIDDEN` is hidden; on all explained positives, and on those the
    model calls positive without needing every group."""
    # lazy: matplotlib is optional (the viz extra); the object API leaves the global backend alone
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(t["task"], d) for t in report["tasks"] if (d := deletion_summary(t)) is not None]
    fig = Figure(figsize=(12, 6.5))
    FigureCanvasAgg(fig)
    labels = {"method": f"{CHECKED_METHOD}: its top k", "truth": "ground truth (k atoms)",
              "map": "ECFP4+RF map: its top k", "random": "k random atoms"}
    width = 0.8 / len(HIDDEN)
    for panel, (key, title) in enumerate((("all", "all explained positives"),
                                          ("not_needed", "called positive without needing every group"))):
        ax = fig.add_subplot(2, 1, panel + 1)
        for j, h in enumerate(HIDDEN):
            ax.bar([i + (j - 1.5) * width for i in range(len(rows))], [d[key].get(h, np.nan) for _, d in rows],
                   width, label=labels[h])
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([name.split(":")[0] for name, _ in rows], fontsize=8)  # AND, OR, COUNT: their kind
        ax.set_ylabel("logit fall when hidden")
        ax.set_title(title, fontsize=9)
    handles, names = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(HIDDEN), fontsize=8)
    fig.suptitle("Which atoms does the fine-tuned model read? Mean over seeds (deletion_check)", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)


def flip_cell(runs: list[dict], who: str) -> str:
    """Mean flip rate over seeds of ``who`` (``"model"`` / ``"rf"``), with the per-group rates when
    the rule has two groups."""
    rates = [r[who]["flip_rate"] for r in runs if r[who]["flip_rate"] is not None]
    if not rates:
        return "n/a"
    text = f"{np.mean(rates):.2f}"
    groups = sorted({g for r in runs for g in r[who]["groups"]})
    if len(groups) > 1:
        per = []
        for g in groups:
            vals = [r[who]["groups"][g]["flip_rate"] for r in runs
                    if g in r[who]["groups"] and r[who]["groups"][g]["flip_rate"] is not None]
            per.append(f"{g} {np.mean(vals):.2f}" if vals else f"{g} n/a")
        text += f" ({', '.join(per)})"
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--moses", default=str(MOSES), help="MOSES CSV(.gz) with a SMILES column")
    p.add_argument("--pool-rows", type=int, default=300000, help="MOSES rows the pool is drawn from")
    p.add_argument("--pool", type=int, default=20000, help="molecules in the pool")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the pool and of each task's sample and split")
    p.add_argument("--tasks", default="", help="comma-separated task names (default: all of TASKS)")
    p.add_argument("--seeds", default="0", help="comma-separated fine-tuning seeds")
    p.add_argument("--methods", default="", help="comma-separated names of METHODS and REFERENCES to compute where "
                                                 "not cached (default: all); cached scores of others are reported too")
    p.add_argument("--rescore", action="store_true",
                   help="recompute --methods where they are cached too (the fine-tuned models are reused)")
    p.add_argument("--pretrained", default=str(ROOT / "pretrained"), help="pretrained model folder or .pt")
    p.add_argument("--n-train", type=int, default=500)
    p.add_argument("--n-valid", type=int, default=100)
    p.add_argument("--n-test", type=int, default=80)
    p.add_argument("--n-explain", type=int, default=25, help="positive molecules attributed per task")
    p.add_argument("--explain-from", default="test", choices=("test", "pool"),
                   help="explain the first --n-explain positive test molecules (test), or --n-explain positives "
                        "drawn from the --explain-rows MOSES rows after --pool-rows, which no task used, equally "
                        "from each positive stratum (pool: a larger held-out sample, scored into "
                        "seedN/scores_poolN.json)")
    p.add_argument("--explain-rows", type=int, default=60000,
                   help="MOSES rows after --pool-rows that --explain-from pool draws its positives from")
    p.add_argument("--n-explain-slow", type=int, default=8, help="of which Shapley attributes the first N")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--randomize-smiles", type=float, default=0.0,
                   help="fine-tuning augmentation (FinetuneConfig.randomize_smiles): per epoch, each training molecule "
                        "is a random SMILES with this probability")
    p.add_argument("--rf-trees", type=int, default=200)
    p.add_argument("--head-input", default="decoder_eos", choices=("decoder_eos", "encoder_mean"),
                   help="what the fine-tuned models' head reads (bartsmiles.tasks.property_head); give each its "
                        "own --work-dir and --out")
    p.add_argument("--out", default=None,
                   help="folder for attribution_groundtruth.{json,md} (default: benchmarks/results when every task "
                        "is run; a --tasks subset or --smoke writes a table only to a folder given here, so that runs "
                        "splitting the tasks never overwrite the committed table)")
    p.add_argument("--work-dir", default=str(ROOT / "runs" / "attribution_gt"),
                   help="data, fine-tuned models and per-task scores (the cache a resumed run reuses)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, random-init bartsmiles_tiny, 1 task")
    args = p.parse_args(argv)
    if not Path(args.moses).is_file():
        p.error(f"--moses {args.moses}: no such file (set BARTSMILES_DATA to the shared data folder)")
    for name in ("n_explain", "explain_rows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] or [r.name for r in TASKS]
    if args.smoke:
        args.pool_rows, args.pool = min(args.pool_rows, 3000), min(args.pool, 3000)
        args.explain_rows = min(args.explain_rows, 2000)
        args.n_train, args.n_valid, args.n_test, args.n_explain, args.n_explain_slow = 40, 16, 16, 4, 2
        args.epochs, args.rf_trees, args.lr, args.pretrained = 1, 10, 1e-3, ""
        names = names if args.tasks else ["nitrile"]
        torch.set_num_threads(1)
    by_name = {r.name: (i, r) for i, r in enumerate(TASKS)}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown task(s) {unknown}; choose from {list(by_name)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    command = " ".join(["python", "benchmarks/attribution_groundtruth.py", *(sys.argv[1:] if argv is None else argv)])
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    provenance = {"command": command, "started": started, "machine": machine_info(),
                  "torch_threads": torch.get_num_threads()}
    pool = read_pool(Path(args.moses), args.pool_rows, args.pool, args.data_seed)
    # read (seconds) only when a task's held-out sample is not cached yet, and then once
    candidates = functools.cache(lambda: read_heldout(Path(args.moses), args.pool_rows, args.explain_rows))
    work = Path(args.work_dir)
    known = list(METHODS) + list(REFERENCES) + list(CHECKS)
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()] or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {known}")
    tasks = [run_task(by_name[n][1], by_name[n][0], pool, seeds, args, work, provenance, wanted, candidates)
             for n in names]
    speed = {}
    for m in list(METHODS) + ["ecfp_rf"]:
        values = [s["methods"][m]["molecules_per_second"] for t in tasks for s in t["seeds"].values() if m in s["methods"]]
        speed[m] = float(np.mean(values)) if values else None
    report = {"command": command, "started": started, "machine": provenance["machine"], "seeds": seeds,
              "config": {k: v for k, v in vars(args).items()}, "methods": {k: list(v) for k, v in METHODS.items()},
              "speed": speed, "tasks": tasks}
    report["goal"] = goal_table(report)
    if args.out is None and (args.tasks or args.smoke):
        print(f"scored {len(tasks)} task(s) into {work}; no table written ({'--smoke' if args.smoke else '--tasks'} "
              f"without --out)")
        return 0
    out = Path(args.out) if args.out is not None else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    (out / "attribution_groundtruth.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "attribution_groundtruth.md").write_text(to_markdown(report))
    if any(deletion_summary(t) for t in report["tasks"]):
        plot_deletion(report, out / "attribution_groundtruth_deletion.png")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
