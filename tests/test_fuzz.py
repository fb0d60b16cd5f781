"""Property-based fuzz tests (hypothesis) for the regex tokenizer, the RDKit atom alignment and
row-preserving prediction.

* tokenizer: every string either round-trips exactly or raises ``TokenizationError`` pointing at the
  first character no token can start with; randomized SMILES of real molecules always round-trip.
* alignment: for every string RDKit parses, the atom tokens map one-to-one onto the atoms of
  ``Chem.MolFromSmiles`` (same element and isotope; removed explicit ``[H]`` map to nothing), and bond,
  ring-closure and branch tokens relate atoms RDKit bonds; otherwise a documented ``ValueError``
  (``TokenizationError`` is one).
* prediction: ``predict_rows`` keeps one row per input, in input order; a row's error and prediction
  depend on that row only.

Every test is derandomized (reproducible in CI) and the whole file runs in well under a minute on two
CPU cores (~20 s, of which ~6 s is one tiny fine-tuning run shared by the prediction tests).

``test_align_explicit_h_on_a_directional_bond`` and ``test_pandas_na_is_an_empty_smiles`` pin two
bugs these tests found (an explicit [H] on a directional bond; pandas' missing value read as "<NA>").
"""
from __future__ import annotations

import math
import re
import string
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rdkit import Chem
from rdkit.rdBase import BlockLogs

from bartsmiles.core.chem import randomize_smiles
from bartsmiles.core.tokenizer import SMILES_REGEX, SmilesTokenizer, TokenAlignment
from bartsmiles.errors import TokenizationError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "fixtures"))
import make_fixtures  # noqa: E402

TOK = SmilesTokenizer()
_TOKEN = re.compile(SMILES_REGEX)


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------ molecules


def _corpus() -> list[str]:
    """~45 molecules of the tiny corpus: every bracket-atom / salt one, then the first plain ones."""
    lines = [line.strip() for line in (HERE / "fixtures" / "tiny_corpus.smi").read_text().splitlines()
             if line.strip()]
    special = [s for s in lines if "[" in s or "." in s][:25]
    plain = [s for s in lines if s not in special][:20]
    return special + plain


#: Hand-written edge cases: stereo, %nn ring closures, explicit and isotopic H, charges, maps,
#: wildcards, aromatic Se, boron, reused ring labels, multi-fragment SMILES.
HANDWRITTEN = [
    "C[C@H](N)C(=O)O", "N[C@@H](Cc1ccccc1)C(=O)O", "OC[C@H]1OC(O)[C@H](O)[C@@H](O)[C@@H]1O",
    "F/C=C/F", "C/C=C\\C", "C%10CCCCC%10", "C%12CC%13CCC%12C%13", "c1ccc2c(c1)[nH]c1ccccc12",
    "[2H]C([2H])([2H])O", "[H]OC", "C([H])([H])O", "[H]C#N", "[H]N([H])c1ccccc1", "[H][H]",
    "[13CH4]", "[CH3:1][OH:2]", "[Na+].[Cl-]", "O=S(=O)([O-])[O-].[Cu+2]", "[C-]#[O+]", "[OH-]",
    "C[Si](C)(C)C", "c1cc[se]c1", "OB(O)c1ccccc1", "*c1ccccc1", "C1CC1.C1CC1", "C1CC.C1",
    "Brc1ccc(I)cc1Cl", "C=1CC=1", "C(=O)=O", "N#N", "P(=O)(O)(O)O", "[NH4+]", "C[N+](C)(C)C",
    "c1ccc(cc1)-c1ccccc1", "C1=CC=CC=C1", "O.O.O", "CC(C)(C)C", "[Pt+2]", "S(=O)(=O)(O)O",
]
MOLS = _corpus() + HANDWRITTEN
assert len(MOLS) >= 60


def _parse(smiles: str):
    block = BlockLogs()
    try:
        return Chem.MolFromSmiles(smiles)
    finally:
        del block


def _parse_with_h(smiles: str):
    params = Chem.SmilesParserParams()
    params.removeHs = False
    block = BlockLogs()
    try:
        return Chem.MolFromSmiles(smiles, params)
    finally:
        del block


def _parse_raw(smiles: str):
    """Unsanitized, explicit hydrogens kept: atoms in order of appearance."""
    block = BlockLogs()
    try:
        return Chem.MolFromSmiles(smiles, sanitize=False)
    finally:
        del block


def _lone_atom(token: str):
    """The atom a single atom token stands for, parsed on its own (unsanitized)."""
    block = BlockLogs()
    try:
        mol = Chem.MolFromSmiles(token, sanitize=False)
    finally:
        del block
    assert mol is not None and mol.GetNumAtoms() == 1, f"atom token {token!r} is not one atom"
    return mol.GetAtomWithIdx(0)


# ------------------------------------------------------------------------------------------ strategies

#: Characters SMILES are made of, plus near misses ('l', 'a', 'e' outside brackets, '+', '@', 'H', ' ').
SMILES_ALPHABET = "CNOSPFIBrlcnospa()[]=#$:/\\%0123456789.+-@H>*e "
ORGANIC_TOKENS = ["C", "N", "O", "S", "P", "F", "I", "Cl", "Br", "B", "c", "n", "o", "s", "p", "*"]
TOKEN_SOUP = ORGANIC_TOKENS + ["(", ")", "=", "#", "-", "/", "\\", ":", "$", ".", ">", "1", "2", "%10",
                               "[nH]", "[C@@H]", "[O-]", "[N+]", "[2H]", "[H]", "[se]", "[Na+]", "[CH3:1]"]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@st.composite
def randomized_smiles(draw) -> str:
    """A random (non-canonical) SMILES of a real molecule, by one of three RDKit writers."""
    smiles = draw(st.sampled_from(MOLS))
    seed = draw(st.integers(1, 2**31 - 1))  # RDKit: randomSeed 0 or >= 2**31 means "unseeded"
    how = draw(st.sampled_from(["randomize_smiles", "doRandom", "kekule"]))
    if how == "randomize_smiles":
        return randomize_smiles(smiles, _rng(seed))
    mol = _parse(smiles)
    if how == "kekule":
        Chem.Kekulize(mol, clearAromaticFlags=True)
        return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed, kekuleSmiles=True)[0]
    return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed)[0]


any_valid_smiles = st.one_of(st.sampled_from(MOLS), randomized_smiles())


@st.composite
def mutated_smiles(draw) -> str:
    """A real or randomized SMILES with 1-3 characters inserted, deleted or replaced."""
    text = draw(any_valid_smiles)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        char = draw(st.sampled_from(SMILES_ALPHABET) | st.characters(codec="utf-8"))
        if op == "insert":
            i = draw(st.integers(0, len(text)))
            text = text[:i] + char + text[i:]
        elif text:
            i = draw(st.integers(0, len(text) - 1))
            text = text[:i] + (char if op == "replace" else "") + text[i + 1:]
    return text


token_soup = st.lists(st.sampled_from(TOKEN_SOUP), max_size=25).map("".join)


# ------------------------------------------------------------------------------------------ tokenizer


def _assert_round_trip_or_tokenization_error(smiles: str) -> list[str] | None:
    """Round trip, or a TokenizationError naming the first character no token can start at."""
    try:
        tokens = TOK.tokenize(smiles)
    except TokenizationError as err:
        assert isinstance(err, ValueError)
        assert err.smiles == smiles
        assert isinstance(err.position, int) and 0 <= err.position < len(smiles), err.position
        assert err.char == smiles[err.position]
        assert f"index {err.position}" in str(err)
        # everything before the position is tokenizable, and no token starts at the position
        prefix = smiles[:err.position]
        assert "".join(TOK.tokenize(prefix)) == prefix
        assert _TOKEN.match(smiles, err.position) is None
        return None
    assert isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens)
    assert "".join(tokens) == smiles
    assert TOK.detokenize(tokens) == smiles
    # every token is one whole regex token (no token is a concatenation the regex would split)
    assert all(_TOKEN.fullmatch(t) for t in tokens), tokens
    return tokens


@_settings(1000)
@given(st.text(alphabet=string.printable, max_size=40))
@example("CC C")
@example("C[C[N]]")
@example("C%1C")
@example("")
def test_tokenize_printable_text_round_trips_or_raises_tokenization_error(smiles):
    _assert_round_trip_or_tokenization_error(smiles)


@_settings(500)
@given(st.text(max_size=30))
def test_tokenize_unicode_text_round_trips_or_raises_tokenization_error(smiles):
    _assert_round_trip_or_tokenization_error(smiles)


@_settings(1000)
@given(st.text(alphabet=SMILES_ALPHABET, max_size=40) | token_soup)
@example("[C@@H](N)(O)C(=O)[O-]")
@example("[]")
@example("[[C]]")
def test_tokenize_smiles_alphabet_round_trips_or_raises_tokenization_error(smiles):
    tokens = _assert_round_trip_or_tokenization_error(smiles)
    if tokens is not None:
        # atom tokens are exactly the ones starting like an atom
        for t in tokens:
            assert SmilesTokenizer.is_atom_token(t) == (t[0] in "[BCNOPSFIbcnops*")


@_settings(500)
@given(randomized_smiles())
@example("C%12CC%13CCC%12C%13")
def test_tokenize_randomized_real_smiles_round_trips(smiles):
    tokens = TOK.tokenize(smiles)
    assert "".join(tokens) == smiles
    assert tokens == TOK.tokenize(TOK.detokenize(tokens))


@_settings(1000)
@given(mutated_smiles())
def test_tokenize_mutated_smiles_round_trips_or_raises_tokenization_error(smiles):
    _assert_round_trip_or_tokenization_error(smiles)


# ------------------------------------------------------------------------------------------ alignment


def _check_molecule(alignment: TokenAlignment, token_ids: list[int], smiles: str) -> None:
    """Check the alignment of the tokens ``token_ids`` (which spell ``smiles``) against RDKit."""
    tokens, atoms, joins = alignment.tokens, alignment.atoms, alignment.joins
    mol, with_h = _parse(smiles), _parse_with_h(smiles)
    assert mol is not None and with_h is not None, f"align accepted {smiles!r}, which RDKit rejects"
    atom_tokens = [t for t in token_ids if SmilesTokenizer.is_atom_token(tokens[t])]
    # one atom token per atom RDKit reads when it keeps explicit hydrogens
    assert len(atom_tokens) == with_h.GetNumAtoms(), (smiles, atom_tokens)
    # ... and the k-th atom token is RDKit's k-th atom (order of appearance, before sanitization)
    raw = _parse_raw(smiles)
    for k, t in enumerate(atom_tokens):
        lone, atom = _lone_atom(tokens[t]), raw.GetAtomWithIdx(k)
        assert (atom.GetSymbol(), atom.GetIsotope(), atom.GetFormalCharge()) == (
            lone.GetSymbol(), lone.GetIsotope(), lone.GetFormalCharge()), (smiles, t, tokens[t], k)
    covered: list[int] = []
    n_removed = 0
    for t in token_ids:
        if t not in atom_tokens:
            assert atoms[t] == (), (smiles, t, tokens[t], atoms[t])
            continue
        lone = _lone_atom(tokens[t])
        if atoms[t] == ():  # an explicit [H] that RDKit's default parsing removes
            n_removed += 1
            assert lone.GetSymbol() == "H", (smiles, t, tokens[t])
            assert all(0 <= j < mol.GetNumAtoms() for j in joins[t]), (smiles, t, joins[t])
            continue
        assert len(atoms[t]) == 1, (smiles, t, atoms[t])
        (idx,) = atoms[t]
        assert 0 <= idx < mol.GetNumAtoms(), (smiles, t, idx)
        atom = mol.GetAtomWithIdx(idx)
        # the aligned RDKit atom is the one the token spells (sanitization may move charges: N(=O)=O)
        assert (atom.GetSymbol(), atom.GetIsotope()) == (lone.GetSymbol(), lone.GetIsotope()), (
            smiles, t, tokens[t], idx)
        assert joins[t] == (), (smiles, t, joins[t])
        covered.append(idx)
    # every atom of Chem.MolFromSmiles(smiles) is covered exactly once
    assert sorted(covered) == list(range(mol.GetNumAtoms())), (smiles, covered)
    assert n_removed == with_h.GetNumAtoms() - mol.GetNumAtoms()
    # bond, ring-closure and branch tokens relate two bonded atoms
    for t in token_ids:
        tok = tokens[t]
        if tok in ("-", "=", "#", "$", ":", "/", "\\") or tok[0] in "%0123456789" or tok in "()":
            assert all(0 <= j < mol.GetNumAtoms() for j in joins[t]), (smiles, t, joins[t])
            if len(joins[t]) == 2:
                a, b = joins[t]
                assert a != b and mol.GetBondBetweenAtoms(a, b) is not None, (smiles, t, tok, joins[t])
            else:  # an atom is missing only when it is a removed [H]
                assert len(joins[t]) < 2 and n_removed, (smiles, t, tok, joins[t])
        elif tok in (".", ">"):
            assert joins[t] == ()


def _check_alignment(smiles: str, alignment: TokenAlignment) -> None:
    n = len(alignment.tokens)
    assert alignment.tokens == TOK.tokenize(smiles)
    assert len(alignment.atoms) == len(alignment.molecule) == len(alignment.joins) == n
    if ">" not in alignment.tokens:
        assert alignment.molecule == [0] * n and alignment.molecules == [smiles]
        _check_molecule(alignment, list(range(n)), smiles)
        return
    for m, substring in enumerate(alignment.molecules):
        ids = [t for t in range(n) if alignment.molecule[t] == m]
        assert ids == list(range(ids[0], ids[-1] + 1)), "a molecule's tokens are contiguous"
        assert "".join(alignment.tokens[t] for t in ids) == substring
        _check_molecule(alignment, ids, substring)
    assert all(alignment.tokens[t] in (".", ">") for t in range(n) if alignment.molecule[t] == -1)


@_settings(600)
@given(any_valid_smiles)
@example("[H][H]")
@example("[2H]C([2H])([2H])O")
@example("C([H])([H])O")
def test_align_maps_atom_tokens_one_to_one_onto_rdkit_atoms(smiles):
    _check_alignment(smiles, TOK.align(smiles))


def _fragments_parse(smiles: str) -> bool:
    """True unless a ring bond crosses a '.' ("C1CC.C1"): a reaction splits molecules at '.'."""
    return all(_parse(part) is not None for part in smiles.split("."))


@_settings(200)
@given(st.lists(st.lists(any_valid_smiles.filter(_fragments_parse), min_size=1, max_size=2),
                min_size=2, max_size=3),
       st.booleans())
def test_align_reaction_smiles_maps_every_molecule(sides, empty_reagents):
    if empty_reagents and len(sides) == 3:
        sides[1] = []
    reaction = ">".join(".".join(side) for side in sides)
    alignment = TOK.align(reaction)
    # molecules: every '.'-separated molecule of every side, in order (salts are split too)
    assert alignment.molecules == [m for side in sides for s in side for m in s.split(".")]
    _check_alignment(reaction, alignment)


def _token_molecules(smiles: str) -> list[str]:
    """The substrings between '.' and '>' tokens (a bracket atom may hold '.' or '>')."""
    parts, current = [], []
    for token in TOK.tokenize(smiles) + ["."]:
        if token in (".", ">"):
            parts.append("".join(current))
            current = []
        else:
            current.append(token)
    return parts


@_settings(1500)
@given(mutated_smiles() | st.text(alphabet=SMILES_ALPHABET, max_size=30) | token_soup)
@example("C(=O")
@example("C)C")
@example("C1CC")
@example("[H]")
@example("CC>>")
def test_align_mutated_smiles_is_consistent_or_a_documented_error(smiles):
    try:
        alignment = TOK.align(smiles)
        event("aligned")
    except ValueError as err:  # documented: TokenizationError (a ValueError) or ValueError naming the SMILES
        if not isinstance(err, TokenizationError):
            # the message names the SMILES, or for a reaction the molecule that fails
            parts = [smiles] + (_token_molecules(smiles) if ">" in TOK.tokenize(smiles) else [])
            assert any(repr(part) in str(err) for part in parts), str(err)
            if ">" not in TOK.tokenize(smiles):
                # a plain SMILES is refused only when RDKit cannot parse it (with or without its
                # explicit hydrogens: RDKit's default parser accepts some hypervalent [H], e.g.
                # "[HH]F" or "[H]=C", that it rejects when it keeps them)
                assert _parse(smiles) is None or _parse_with_h(smiles) is None, (smiles, str(err))
        return
    _check_alignment(smiles, alignment)


@pytest.mark.parametrize("smiles", ["CC(=N/[H])/C", "[H]/N=C", "[H]/C=N", "C(\\[H])=N"])
def test_align_explicit_h_on_a_directional_bond(smiles):
    assert _parse(smiles) is not None  # RDKit parses it (and keeps the [H] as an atom)
    _check_alignment(smiles, TOK.align(smiles))


# ------------------------------------------------------------------------------------------ prediction

PRED_MOLS = ["CCN", "CCO", "CCCN", "CCCO", "c1ccncc1", "c1ccccc1", "CC(=O)N", "CC(=O)O", "CN(C)C", "COC",
             "NCCO", "OCCO", "c1ccc(N)cc1", "c1ccc(O)cc1", "CC#N", "CC=O", "N#Cc1ccccc1", "Clc1ccccc1",
             "CCNC(C)=O", "CCOC(C)=O", "Cc1ccncc1", "Cc1ccccc1", "CNC", "CSC"]
LIMIT = 128  # bartsmiles_tiny / FinetuneConfig default max_positions


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """One tiny fine-tuned model (random init, 1 epoch on 16 molecules, two regression tasks)."""
    from bartsmiles.model.predictor import PropertyPredictor

    model = PropertyPredictor(make_fixtures.tiny_regression_checkpoint(tmp_path_factory.mktemp("fuzz_pred"), PRED_MOLS))
    assert int(model.task.cfg.max_positions) == LIMIT
    return model


def _long_smiles(n: int, unit: str) -> str:
    return unit * n


#: SMILES whose encoding is longer than the model's 128 positions (valid molecules).
long_smiles = st.builds(_long_smiles, st.integers(42, 110), st.sampled_from(["CCO", "OCC", "CC(C)"])) | \
    st.builds(lambda n: "C" * n, st.integers(120, 300))

cells = st.one_of(
    st.sampled_from(PRED_MOLS),
    any_valid_smiles,
    mutated_smiles(),
    st.text(alphabet=SMILES_ALPHABET, max_size=15),
    st.text(alphabet=string.printable, max_size=10),
    st.sampled_from(["", "   ", "\t", None, float("nan"), np.nan, " CCO ", "CC O", "C1CC", "c1cccc1"]),
    long_smiles,
)


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _expected_error(value, on_overflow: str) -> str:
    """What the error column must say for ``value``, derived independently of bartsmiles' code
    ('' when the row can be predicted; otherwise the documented prefix)."""
    text = _text(value)
    if not text:
        return "empty SMILES"
    mol = _parse(text)
    if mol is None:
        return "invalid SMILES"
    try:  # the fixture model reads canonical SMILES (the default), so that is what must tokenize and fit
        tokens = TOK.tokenize(Chem.MolToSmiles(mol))
    except TokenizationError:
        return "cannot tokenize"
    if on_overflow == "error" and len(tokens) + 2 > LIMIT:
        return f"too long: {len(tokens) + 2} tokens > {LIMIT} positions"
    return ""


class _Alone:
    """The prediction of each SMILES predicted alone (batch of one), computed once per text."""

    def __init__(self):
        self.preds: dict[str, np.ndarray] = {}

    def prediction(self, predictor, text: str) -> np.ndarray:
        if text not in self.preds:
            self.preds[text] = predictor.predict([text], batch_size=1)[0]
        return self.preds[text]


@pytest.fixture(scope="module")
def alone():
    return _Alone()


def _values_equal(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a is b or (type(a) is type(b) and a == b)


@_settings(150)
@given(smiles=st.lists(cells, max_size=10), on_overflow=st.sampled_from(["error", "truncate"]),
       batch_size=st.integers(1, 4))
@example(smiles=["CCN", "not a smiles", "c1ccccc1", "", "C" * 200, "C1CC", None, "CCO"], on_overflow="error",
         batch_size=2)
@example(smiles=[], on_overflow="error", batch_size=1)
@example(smiles=["C" * 126, "C" * 127, "CCO", "C" * 127], on_overflow="error", batch_size=2)  # 128 fits, 129 not
@example(smiles=["C" * 127, "CCO", "C" * 126, "c1ccccc1"], on_overflow="truncate", batch_size=4)
@example(smiles=[float("nan"), "C" * 200, "CCO"], on_overflow="truncate", batch_size=3)
def test_predict_rows_keeps_rows_in_place(predictor, alone, smiles, on_overflow, batch_size):
    from bartsmiles.model.prediction import predict_rows, row_errors

    given_smiles = list(smiles)
    preds, errors, names = predict_rows(predictor, smiles, on_overflow=on_overflow, batch_size=batch_size)
    # the input is not modified
    assert len(smiles) == len(given_smiles) and all(map(_values_equal, smiles, given_smiles))
    assert names == ["has_n", "length"]
    assert isinstance(preds, np.ndarray) and preds.shape == (len(smiles), len(names))
    assert isinstance(errors, list) and len(errors) == len(smiles)
    for i, value in enumerate(smiles):
        error, expected = errors[i], _expected_error(value, on_overflow)
        assert isinstance(error, str)
        event(f"row: {expected.split(':')[0] or 'predicted'}")
        # row i's error is the one item i gets alone, and the documented one for item i
        assert error == row_errors(predictor, [value], on_overflow=on_overflow)[0], (i, value, error)
        if expected in ("", "empty SMILES") or expected.startswith("too long"):
            assert error == expected, (i, value, error, expected)
        else:
            assert error.startswith(expected), (i, value, error, expected)
        if error:
            assert np.isnan(preds[i]).all(), (i, value, preds[i])
        else:
            assert np.isfinite(preds[i]).all(), (i, value, preds[i])
            # the prediction of row i is that of item i predicted alone: no row shifted
            np.testing.assert_allclose(preds[i], alone.prediction(predictor, _text(value)), rtol=1e-5,
                                       atol=1e-5, err_msg=f"row {i} ({value!r}) differs from its prediction alone")


def test_pandas_na_is_an_empty_smiles(predictor):
    import pandas as pd

    from bartsmiles.model.prediction import predict_rows

    preds, errors, _ = predict_rows(predictor, pd.Series(["CCO", None, "CCN"], dtype="string").tolist())
    assert np.isnan(preds[1]).all() and np.isfinite(preds[[0, 2]]).all()  # holds today: no shift
    assert errors == ["", "empty SMILES", ""]  # pd.NA is a missing cell, not the SMILES '<NA>'
