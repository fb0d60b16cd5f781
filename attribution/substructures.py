"""Atom scores -> substructure scores.

A substructure's score is the **sum** of the scores of its atoms (``mean_score`` is that sum over
its atom count).  Four sources of substructures, each optional:

* ``functional_group`` -- the shipped SMARTS library ``functional_groups.json`` (functional groups
  and structural alerts such as nitro, Michael acceptor, epoxide, azo): one row per match.
  Patterns overlap (an aromatic nitro is also a nitro), so these rows do not add up to the total.
* ``brics`` -- BRICS fragments (the molecule cut at the bonds ``BRICS.FindBRICSBonds`` returns):
  a partition of the atoms, so these rows add up to the sum of the atom scores.
* ``scaffold`` -- the Bemis-Murcko scaffold (as :func:`bartsmiles.core.chem.murcko_scaffold` computes
  it) and each connected side chain: also a partition.
* ``user`` -- SMARTS given by the caller, ``{name: smarts}``: one row per match.

:func:`substructure_table` returns them as one pandas DataFrame, ranked by score (largest first).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from rdkit import Chem
from rdkit.Chem import BRICS
from rdkit.Chem.Scaffolds import MurckoScaffold

from bartsmiles.core.chem import match_smarts, parse_smiles

__all__ = ["FunctionalGroup", "functional_groups", "substructure_table", "brics_fragments",
           "scaffold_parts", "smarts_matches", "COLUMNS"]

LIBRARY = Path(__file__).with_name("functional_groups.json")
COLUMNS = ["rank", "kind", "name", "pattern", "match", "atoms", "n_atoms", "score", "mean_score"]


@dataclass(frozen=True)
class FunctionalGroup:
    name: str
    smarts: str
    category: str
    description: str = ""
    example: str = ""


def functional_groups(path: Optional[str] = None) -> list[FunctionalGroup]:
    """The shipped SMARTS library (or a JSON file of the same format: ``{"groups": [...]}``)."""
    return list(_load_groups(str(path or LIBRARY)))


@lru_cache(maxsize=4)
def _load_groups(path: str) -> tuple[FunctionalGroup, ...]:
    data = json.loads(Path(path).read_text())
    entries = data["groups"] if isinstance(data, dict) else data
    return tuple(FunctionalGroup(name=e["name"], smarts=e["smarts"], category=e.get("category", ""),
                                 description=e.get("description", ""), example=e.get("example", ""))
                 for e in entries)


def _mol(mol_or_smiles):
    return mol_or_smiles if isinstance(mol_or_smiles, Chem.Mol) else parse_smiles(mol_or_smiles)


def smarts_matches(mol, smarts: str) -> list[tuple[int, ...]]:
    """Unique matches of ``smarts`` (atom-index tuples); ValueError naming an invalid pattern."""

    return match_smarts(_mol(mol), smarts)


def _components(n_atoms: int, edges: Iterable[tuple[int, int]], keep: Optional[set] = None) -> list[tuple[int, ...]]:
    """Connected components of the atoms ``keep`` (default: all) over ``edges``."""
    nodes = set(range(n_atoms)) if keep is None else set(keep)
    neighbours: dict[int, list[int]] = {a: [] for a in nodes}
    for a, b in edges:
        if a in nodes and b in nodes:
            neighbours[a].append(b)
            neighbours[b].append(a)
    seen: set[int] = set()
    out = []
    for start in sorted(nodes):
        if start in seen:
            continue
        stack, comp = [start], []
        seen.add(start)
        while stack:
            a = stack.pop()
            comp.append(a)
            for b in neighbours[a]:
                if b not in seen:
                    seen.add(b)
                    stack.append(b)
        out.append(tuple(sorted(comp)))
    return out


def brics_fragments(mol) -> list[tuple[int, ...]]:
    """Atom sets of the BRICS fragments of ``mol`` (a partition of its atoms)."""
    mol = _mol(mol)
    cut = {tuple(sorted(pair)) for pair, _labels in BRICS.FindBRICSBonds(mol)}
    edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()
             if tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) not in cut]
    return _components(mol.GetNumAtoms(), edges)


def scaffold_parts(mol) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """(scaffold atoms, side chains as connected atom sets); an acyclic molecule has no scaffold."""
    mol = Chem.Mol(_mol(mol))
    for atom in mol.GetAtoms():
        atom.SetIntProp("_bartsmiles_idx", atom.GetIdx())
    core = MurckoScaffold.GetScaffoldForMol(mol)
    scaffold = tuple(sorted(a.GetIntProp("_bartsmiles_idx") for a in core.GetAtoms() if a.HasProp("_bartsmiles_idx")))
    rest = set(range(mol.GetNumAtoms())) - set(scaffold)
    edges = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    return scaffold, _components(mol.GetNumAtoms(), edges, keep=rest)


def _fragment_smiles(mol, atoms: Sequence[int]) -> str:
    return Chem.MolFragmentToSmiles(mol, atomsToUse=list(atoms)) if atoms else ""


def substructure_table(mol, atom_scores: Sequence[float], *, groups: bool | Sequence[FunctionalGroup] = True,
                       brics: bool = True, scaffold: bool = True,
                       smarts: Optional[Mapping[str, str]] = None) -> pd.DataFrame:
    """Substructure scores of one molecule, ranked by score (see the module docstring).

    ``mol``: an RDKit Mol or a SMILES; ``atom_scores``: one per atom (RDKit atom index).
    Columns: ``rank`` (1 = largest score), ``kind`` (functional_group | toxicophore | brics |
    scaffold | side_chain | user), ``name``, ``pattern`` (the SMARTS, or the fragment SMILES),
    ``match`` (0, 1, ... per match of one pattern), ``atoms`` (tuple of atom indices),
    ``n_atoms``, ``score`` (sum of atom scores) and ``mean_score``.
    """
    mol = _mol(mol)
    scores = np.asarray(atom_scores, dtype=np.float64)
    if scores.shape != (mol.GetNumAtoms(),):
        raise ValueError(f"{scores.size} atom scores for a molecule of {mol.GetNumAtoms()} atoms")
    rows: list[dict] = []

    def add(kind: str, name: str, pattern: str, match: int, atoms: Sequence[int]) -> None:
        atoms = tuple(int(a) for a in atoms)
        total = float(scores[list(atoms)].sum()) if atoms else 0.0
        rows.append({"kind": kind, "name": name, "pattern": pattern, "match": match, "atoms": atoms,
                     "n_atoms": len(atoms), "score": total, "mean_score": total / len(atoms) if atoms else 0.0})

    if groups is not False:
        library = functional_groups() if groups is True else list(groups)
        for g in library:
            for k, match in enumerate(smarts_matches(mol, g.smarts)):
                add(g.category or "functional_group", g.name, g.smarts, k, match)
    if brics:
        for k, frag in enumerate(brics_fragments(mol)):
            add("brics", f"BRICS fragment {k}", _fragment_smiles(mol, frag), k, frag)
    if scaffold:
        core, chains = scaffold_parts(mol)
        if core:
            add("scaffold", "Murcko scaffold", _fragment_smiles(mol, core), 0, core)
        for k, chain in enumerate(chains):
            add("side_chain", f"side chain {k}", _fragment_smiles(mol, chain), k, chain)
    for name, pattern in (smarts or {}).items():
        for k, match in enumerate(smarts_matches(mol, pattern)):
            add("user", name, pattern, k, match)
    frame = pd.DataFrame(rows, columns=COLUMNS[1:])
    frame = frame.sort_values("score", ascending=False, kind="mergesort").reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame
