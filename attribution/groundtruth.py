"""Synthetic ground truth for attributions: labels defined by SMARTS rules, and how to score atoms.

A :class:`Rule` labels a molecule from the matches of one or two SMARTS patterns and names the
atoms that decide the label (the **ground-truth atoms**, RDKit atom indices):

* ``single`` (pattern ``A``): positive when ``A`` matches; ground truth = the atoms of every match.
* ``and`` (``A``, ``B``): positive when both match.  Negatives contain **exactly one** of the two
  (half ``A`` only, half ``B`` only), so neither group alone decides; molecules with neither are
  not used.  Ground truth = the atoms of both groups.
* ``or`` (``A``, ``B``): positive when either matches, drawn half with ``A`` only and half with
  ``B`` only (positives of both kinds); negatives have neither; molecules with both are not used.
  Ground truth = the atoms of the group present.
* ``count`` (``A``, ``min_count``): positive with at least ``min_count`` distinct matches of
  ``A``; negatives have **exactly one** (so the model must count, not detect); molecules without
  ``A`` are not used.  Ground truth = the atoms of every match.

:func:`classify` puts a molecule in a **stratum** (``"pos"``, ``"pos:A"``, ``"neg:B"``, ...;
``None``: not used by the rule); :func:`balanced_sample` draws the positives equally from the
positive strata and the negatives equally from the negative strata.

Did the model learn the rule at all?  :func:`rule_breaking_edits` makes, for a positive, the
small chemical edits after which the rule calls it negative (one per group the rule needs: a
halogen removed, a singly bonded heteroatom turned into carbon, or a multiple bond lowered by
one), so that a benchmark can ask whether a model's prediction flips when the deciding group is
broken.

Scores against the ground truth, per molecule: :func:`atom_auc` (ROC-AUC of the atom scores,
ground-truth atoms the positives) and :func:`top_k_hit_rate` (the fraction of the ``k`` best
scored atoms that are ground truth, ``k`` the number of ground-truth atoms; ties at the cut
count by their expected share, so a constant score gets the base rate, not a lucky order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from rdkit import Chem
from sklearn.metrics import roc_auc_score

from bartsmiles.core.chem import HALOGENS, atom_made_carbon, match_smarts, sanitized_or_none

__all__ = ["KINDS", "Rule", "Labelled", "classify", "label_molecule", "balanced_sample", "break_pattern",
           "rule_breaking_edits", "atom_auc", "top_k_hit_rate"]

#: the rule kinds (module docstring)
KINDS = ("single", "and", "or", "count")


@dataclass(frozen=True)
class Rule:
    """A labelling rule: ``kind`` (:data:`KINDS`), its SMARTS ``patterns`` (one, or two for
    ``and`` / ``or``), and ``min_count`` (``count`` only)."""

    name: str
    kind: str
    patterns: tuple[str, ...]
    min_count: int = 2

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        want = 2 if self.kind in ("and", "or") else 1
        if len(self.patterns) != want:
            raise ValueError(f"rule {self.name!r}: a {self.kind!r} rule takes {want} pattern(s), "
                             f"got {len(self.patterns)}")
        if self.kind == "count" and self.min_count < 2:
            raise ValueError(f"rule {self.name!r}: min_count must be >= 2, got {self.min_count}")


@dataclass(frozen=True)
class Labelled:
    """One molecule under a rule: its stratum (``None``: not used), label and ground-truth atoms."""

    stratum: Optional[str]
    label: Optional[float]
    truth: frozenset


def classify(rule: Rule, matches: Sequence[Sequence[tuple[int, ...]]]) -> Labelled:
    """Stratum, label and ground truth from ``matches`` (per pattern of ``rule``, its match tuples)."""
    present = [bool(m) for m in matches]
    atoms = [frozenset(a for match in m for a in match) for m in matches]
    if rule.kind == "single":
        return Labelled("pos", 1.0, atoms[0]) if present[0] else Labelled("neg", 0.0, frozenset())
    if rule.kind == "count":
        n = len(matches[0])
        if n >= rule.min_count:
            return Labelled("pos", 1.0, atoms[0])
        return Labelled("neg", 0.0, frozenset()) if n == 1 else Labelled(None, None, frozenset())
    a, b = present
    if rule.kind == "and":
        if a and b:
            return Labelled("pos", 1.0, atoms[0] | atoms[1])
        if a != b:
            return Labelled("neg:A" if a else "neg:B", 0.0, frozenset())
        return Labelled(None, None, frozenset())
    # "or"
    if a and b:
        return Labelled(None, None, frozenset())
    if a or b:
        return Labelled("pos:A" if a else "pos:B", 1.0, atoms[0] if a else atoms[1])
    return Labelled("neg", 0.0, frozenset())


def label_molecule(rule: Rule, mol) -> Labelled:
    """:func:`classify` of an RDKit molecule."""
    return classify(rule, [match_smarts(mol, p) for p in rule.patterns])


def balanced_sample(strata: Sequence[Optional[str]], n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``n`` molecules (or fewer): half positives, half negatives, each half split
    equally among its strata (``"pos"``/``"pos:*"``, ``"neg"``/``"neg:*"``), shuffled.

    Raises :class:`ValueError` when a stratum has fewer than 2 molecules to give.
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(strata):
        if s is not None:
            groups.setdefault(s, []).append(i)
    picked: list[int] = []
    for side in ("pos", "neg"):
        names = sorted(g for g in groups if g.split(":")[0] == side)
        if not names:
            raise ValueError(f"no {side}itive molecules for this rule")
        share = max(1, (n // 2) // len(names))
        for name in names:
            if len(groups[name]) < 2:
                raise ValueError(f"stratum {name!r} has {len(groups[name])} molecule(s)")
            k = min(share, len(groups[name]))
            picked += [int(i) for i in rng.choice(groups[name], k, replace=False)]
    rng.shuffle(picked)
    return picked


_HETEROATOMS = (7, 8, 16)


def _candidate_edits(mol: Chem.Mol, match: tuple[int, ...]):
    """Edited copies of ``mol`` (sanitized; ``None`` for an edit that does not sanitize), each
    touching one atom or bond of ``match``, in this order: a halogen removed; an N, O or S with
    single bonds only made carbon (amide, ester -> ketone; urea -> amide; sulfonamide -> sulfone);
    a bond between two matched atoms lowered by one order (nitrile -> imine, alkyne -> alkene);
    any other N, O or S made carbon."""
    def multiple_bonds(i: int) -> int:
        return sum(b.GetBondType() != Chem.BondType.SINGLE for b in mol.GetAtomWithIdx(i).GetBonds())

    for i in match:
        if mol.GetAtomWithIdx(i).GetAtomicNum() in HALOGENS:
            rw = Chem.RWMol(mol)
            rw.RemoveAtom(i)
            yield sanitized_or_none(rw)
    hetero = [i for i in match if mol.GetAtomWithIdx(i).GetAtomicNum() in _HETEROATOMS]
    for i in hetero:
        if not multiple_bonds(i):
            yield atom_made_carbon(mol, i)
    inside = set(match)
    lower = {Chem.BondType.TRIPLE: Chem.BondType.DOUBLE, Chem.BondType.DOUBLE: Chem.BondType.SINGLE}
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if a in inside and b in inside and bond.GetBondType() in lower:
            rw = Chem.RWMol(mol)
            rw.GetBondBetweenAtoms(a, b).SetBondType(lower[bond.GetBondType()])
            for k in (a, b):
                rw.GetAtomWithIdx(k).SetNoImplicit(False)
                rw.GetAtomWithIdx(k).SetNumExplicitHs(0)
            yield sanitized_or_none(rw)
    for i in hetero:
        if multiple_bonds(i):
            yield atom_made_carbon(mol, i)


def break_pattern(mol: Chem.Mol, smarts: str, keep: int = 0, max_edits: int = 8) -> Optional[Chem.Mol]:
    """``mol`` edited until at most ``keep`` matches of ``smarts`` are left, or ``None``.

    Each step takes the first match and applies the first edit of :func:`_candidate_edits` that
    sanitizes and leaves fewer matches; ``None`` when no edit does, or after ``max_edits`` steps.
    Atom indices of the result are not those of ``mol`` (an atom may be removed).
    """
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    current = Chem.Mol(mol)
    for _ in range(max_edits + 1):
        matches = match_smarts(current, smarts)
        if len(matches) <= keep:
            return current
        for edited in _candidate_edits(current, matches[0]):
            if edited is not None and len(match_smarts(edited, smarts)) < len(matches):
                current = edited
                break
        else:
            return None
    return None


def rule_breaking_edits(rule: Rule, mol: Chem.Mol) -> list[tuple[str, Chem.Mol]]:
    """For a positive of ``rule``, ``(group, edited molecule)`` pairs that the rule calls negative.

    ``single``: the pattern broken everywhere.  ``and``: each of the two groups broken in turn
    (``"A"``, ``"B"``).  ``or``: the group present broken.  ``count``: matches broken until
    ``min_count - 1`` are left.  An edit that fails (:func:`break_pattern` gives ``None``) or that
    the rule would not call negative (it made a new match) is left out, so the list may be empty.
    Raises :class:`ValueError` when ``rule`` does not call ``mol`` positive.
    """
    if label_molecule(rule, mol).label != 1.0:
        raise ValueError(f"rule {rule.name!r} does not call {Chem.MolToSmiles(mol)} positive")
    if rule.kind == "count":
        wanted = [("A", rule.patterns[0], rule.min_count - 1)]
    else:
        names = ("A", "B")[: len(rule.patterns)]
        wanted = [(n, p, 0) for n, p in zip(names, rule.patterns) if match_smarts(mol, p)]
    out = []
    for name, pattern, keep in wanted:
        edited = break_pattern(mol, pattern, keep)
        if edited is not None and label_molecule(rule, edited).label == 0.0:
            out.append((name, edited))
    return out


def _truth_vector(n_atoms: int, truth) -> np.ndarray:
    y = np.zeros(n_atoms, dtype=bool)
    y[list(truth)] = True
    return y


def atom_auc(scores: Sequence[float], truth) -> Optional[float]:
    """ROC-AUC of ``scores`` (per atom) against the ground-truth atom set; ``None`` when all or
    none of the atoms are ground truth."""
    y = _truth_vector(len(scores), truth)
    if y.all() or not y.any():
        return None
    return float(roc_auc_score(y, np.asarray(scores, dtype=float)))


def top_k_hit_rate(scores: Sequence[float], truth) -> Optional[float]:
    """The fraction of the ``k = len(truth)`` best-scored atoms that are ground truth.

    Atoms tied at the ``k``-th score fill the remaining places by their expected share (random
    tie-breaking), so constant scores give ``k / n_atoms``.  ``None`` when ``truth`` is empty.
    """
    s = np.asarray(scores, dtype=float)
    y = _truth_vector(len(s), truth)
    k = int(y.sum())
    if k == 0:
        return None
    cut = np.sort(s)[::-1][k - 1]
    above, tied = s > cut, s == cut
    hits = float(y[above].sum()) + (k - int(above.sum())) * float(y[tied].sum()) / float(tied.sum())
    return hits / k
