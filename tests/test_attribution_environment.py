"""attribution/environment.py: atom scores -> environment scores (no model needed)."""
from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from bartsmiles.attribution.environment import DEFAULT_ENVIRONMENT_RADIUS, environment_scores, shell_weights
from bartsmiles.attribution.groundtruth import atom_auc


def test_hand_computed_chain():
    mol = Chem.MolFromSmiles("CCOC")  # a chain 0-1-2-3
    s = [1.0, 0.0, 0.0, 0.0]
    # radius 1: each atom plus the mean of its bonded neighbours
    assert environment_scores(mol, s, 1).tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0])
    # radius 2: plus half the mean of the atoms two bonds away
    assert environment_scores(mol, s, 2).tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    # atom 1 has two neighbours (0 and 2): the mean, not the sum
    assert environment_scores(mol, [0.0, 0.0, 4.0, 0.0], 1).tolist() == pytest.approx([0.0, 2.0, 4.0, 4.0])


def test_radius_zero_is_the_identity_and_the_default_is_two():
    mol = Chem.MolFromSmiles("c1ccccc1O")
    s = np.random.default_rng(0).normal(size=mol.GetNumAtoms())
    assert np.array_equal(environment_scores(mol, s, 0), s)
    assert DEFAULT_ENVIRONMENT_RADIUS == 2
    assert np.allclose(environment_scores(mol, s), environment_scores(mol, s, 2))
    assert np.allclose(shell_weights(mol, 2) @ s, environment_scores(mol, s, 2))


def test_fragments_do_not_share():
    mol = Chem.MolFromSmiles("CC.O")
    assert environment_scores(mol, [1.0, 1.0, 0.0], 3).tolist() == pytest.approx([2.0, 2.0, 0.0])


def test_a_group_marked_by_one_atom_is_found_whole():
    """Token methods mark the carbonyl O of an ester; the environment ranks the whole group first."""
    smiles = "CCCCOC(=O)CCCC"  # ester C(=O)O-C: atoms 3 (O-CH2), 4 (O), 5 (C), 6 (=O)
    mol = Chem.MolFromSmiles(smiles)
    truth = [3, 4, 5, 6]
    s = np.zeros(mol.GetNumAtoms())
    s[6] = 1.0  # the carbonyl oxygen only
    s[4] = 0.5  # and the ester oxygen, weaker
    env = environment_scores(mol, s, 2)
    assert atom_auc(s, truth) == 0.75
    assert atom_auc(env, truth) > 0.95
    others = [i for i in range(mol.GetNumAtoms()) if i not in truth]
    assert env[5] > env[others].max()  # the carbonyl C, scored 0, now ranks above every atom outside the group


@pytest.mark.parametrize("radius", [-1, 1.5, True, "2"])
def test_bad_radius_fails_loudly(radius):
    with pytest.raises(ValueError, match="environment radius"):
        environment_scores(Chem.MolFromSmiles("CCO"), [0.0, 0.0, 0.0], radius)


def test_wrong_input_fails_loudly():
    with pytest.raises(ValueError, match="2 atom scores for a molecule of 3 atoms"):
        environment_scores(Chem.MolFromSmiles("CCO"), [0.0, 0.0], 1)
    with pytest.raises(TypeError, match="RDKit Mol"):
        environment_scores("CCO", [0.0, 0.0, 0.0], 1)
