"""Tests for bartsmiles.core.chem."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from bartsmiles.core.chem import (
    canonicalize,
    canonicalize_set,
    is_valid_smiles,
    match_smarts,
    murcko_scaffold,
    parse_smiles,
    randomize_smiles,
)
from bartsmiles.errors import InvalidSmilesError


def test_parse_valid_returns_mol():
    mol = parse_smiles("c1ccccc1O")
    assert isinstance(mol, Chem.Mol) and mol.GetNumAtoms() == 7


@pytest.mark.parametrize(
    "smiles, fragment",
    [("C1CC", "syntax"), ("C(C)(C)(C)(C)C", "valence"), ("c1cccc1", "kekulize"), ("", "empty"), ("   ", "empty")],
)
def test_parse_invalid_raises_with_reason(smiles, fragment):
    with pytest.raises(InvalidSmilesError) as info:
        parse_smiles(smiles, row=7)
    err = info.value
    assert err.smiles == smiles and err.row == 7
    assert repr(smiles) in str(err) and "row 7" in str(err)
    assert fragment in str(err).lower()


def test_parse_is_quiet(capfd):
    assert not is_valid_smiles("C(C)(C)(C)(C)C")
    captured = capfd.readouterr()
    assert "valence" not in captured.err.lower()


def test_parse_rejects_non_str():
    with pytest.raises(TypeError, match="NoneType"):
        parse_smiles(None)  # type: ignore[arg-type]
    assert is_valid_smiles(None) is False  # type: ignore[arg-type]


def test_invalid_smiles_error_is_value_error():
    assert issubclass(InvalidSmilesError, ValueError)


def test_canonicalize():
    assert canonicalize("OCC") == canonicalize("C(O)C") == "CCO"
    assert canonicalize("C[C@H](N)O") != canonicalize("C[C@@H](N)O")
    assert canonicalize("C[C@H](N)O", isomeric=False) == canonicalize("C[C@@H](N)O", isomeric=False)
    with pytest.raises(InvalidSmilesError):
        canonicalize("not a smiles")


def test_canonicalize_set_order_independent():
    a = canonicalize_set("c1ccccc1.OCC")
    assert a == canonicalize_set("CCO.C1=CC=CC=C1")
    assert a.split(".") == sorted(a.split("."))
    assert canonicalize_set("CC.CC") == "CC.CC"  # repeats kept
    assert canonicalize_set("C1.C1") == "CC"  # ring-closure bond across the dot


def test_murcko_scaffold():
    assert murcko_scaffold("CCc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("CCO") == ""
    assert murcko_scaffold(parse_smiles("O=C(O)c1ccc2ccccc2c1")) == "c1ccc2ccccc2c1"
    # chirality dropped by default
    assert "@" not in murcko_scaffold("C[C@H]1CC[C@@H](C)C(c2ccccc2)C1")
    with pytest.raises(TypeError):
        murcko_scaffold(3)  # type: ignore[arg-type]


def test_randomize_smiles_same_molecule_and_seeded():
    smi = "CC(=O)Oc1ccccc1C(=O)O"
    outs = {randomize_smiles(smi, np.random.default_rng(s)) for s in range(10)}
    assert len(outs) > 1
    assert {canonicalize(o) for o in outs} == {canonicalize(smi)}
    assert randomize_smiles(smi, np.random.default_rng(3)) == randomize_smiles(smi, np.random.default_rng(3))
    with pytest.raises(TypeError):
        randomize_smiles(smi, 3)  # type: ignore[arg-type]


def test_randomize_keeps_stereo():
    smi = "C[C@H](N)C(=O)O"
    out = randomize_smiles(smi, np.random.default_rng(1))
    assert canonicalize(out) == canonicalize(smi)


def test_match_smarts():
    mol = parse_smiles("OCCO")
    assert match_smarts(mol, "[OX2H]") == [(0,), (3,)]
    assert match_smarts(mol, "c") == []
    with pytest.raises(ValueError, match=r"\[C"):
        match_smarts(mol, "[C")
    with pytest.raises(TypeError):
        match_smarts("OCCO", "[OH]")  # type: ignore[arg-type]


def test_model_spelling_is_canonical_unless_rdkit_writes_a_dative_bond():
    from bartsmiles.core.chem import model_spelling
    from bartsmiles.core.tokenizer import SmilesTokenizer

    assert model_spelling("OCC") == "CCO" and model_spelling(" C(C)O ") == "CCO"
    # RDKit writes the N-Co bond of an ammine complex as a dative arrow, which no SMILES token reads
    assert "->" in Chem.MolToSmiles(Chem.MolFromSmiles("[NH3][Co]"))
    assert model_spelling(" [NH3][Co] ") == "[NH3][Co]"
    SmilesTokenizer().tokenize(model_spelling("[NH3][Co]"))
    with pytest.raises(InvalidSmilesError):
        model_spelling("C1CC")


def test_atom_made_carbon_and_sanitized_or_none():
    """The shared edits of the ground-truth rule check and edit occlusion: a heteroatom made carbon,
    and an edited molecule sanitized or None (never an exception, never an unsanitized Mol)."""
    from bartsmiles.core.chem import atom_made_carbon, sanitized_or_none

    amide = parse_smiles("CC(=O)NC")
    assert canonicalize(atom_made_carbon(amide, 3)) == canonicalize("CC(=O)CC")  # amide N -> ketone
    assert canonicalize(atom_made_carbon(parse_smiles("C[N+](C)(C)C"), 1)) == "CC(C)(C)C"  # charge dropped
    assert atom_made_carbon(parse_smiles("O=S(=O)(C)C"), 1) is None  # a six-valent carbon does not sanitize
    with pytest.raises(IndexError, match="out of range"):
        atom_made_carbon(amide, 9)
    with pytest.raises(TypeError, match="RDKit Mol"):
        atom_made_carbon("CC(=O)NC", 3)  # type: ignore[arg-type]
    rw = Chem.RWMol(parse_smiles("c1ccccc1"))
    rw.RemoveAtom(0)  # an open aromatic chain cannot be kekulized
    assert sanitized_or_none(rw) is None
    rw = Chem.RWMol(parse_smiles("CCCl"))
    rw.RemoveAtom(2)
    assert Chem.MolToSmiles(sanitized_or_none(rw)) == "CC"
    with pytest.raises(TypeError, match="RDKit Mol"):
        sanitized_or_none("CC")  # type: ignore[arg-type]


def test_checked_atom_index_and_halogens():
    from bartsmiles.core.chem import HALOGENS, checked_atom_index

    mol = parse_smiles("FC(Cl)Br")
    assert checked_atom_index(mol, np.int64(3)) == 3 and type(checked_atom_index(mol, 0)) is int
    with pytest.raises(IndexError, match="atom -1 is out of range for a molecule of 4 atoms"):
        checked_atom_index(mol, -1)
    with pytest.raises(TypeError, match="RDKit Mol"):
        checked_atom_index("FC(Cl)Br", 0)  # type: ignore[arg-type]
    assert sorted(a.GetSymbol() for a in mol.GetAtoms() if a.GetAtomicNum() in HALOGENS) == ["Br", "Cl", "F"]
