"""RDKit helpers: parse, validate, canonicalize, scaffold, randomize and match molecules.

Every function here takes typed input and fails loudly:

* a SMILES that RDKit cannot parse (default sanitization, as ``Chem.MolFromSmiles``)
  raises :class:`InvalidSmilesError`, which names the SMILES, the row when one is
  known, and RDKit's own reason when it can be recovered;
* an empty or whitespace-only string is invalid (RDKit would silently return an
  empty molecule for it);
* a value of the wrong type raises :class:`TypeError` naming the type received.

RDKit's C++ logging is silenced while parsing, so that a data set with a few bad rows
does not flood stderr; the reason is recovered by re-parsing the failing SMILES
without sanitization and sanitizing it explicitly, which turns RDKit's log line into
an exception message.

This module is part of the core layer: it imports RDKit and numpy only. RDKit is optional at import
time (the GPU images that only tokenize and pretrain lack it); using a function without it is a
one-line ``ModuleNotFoundError``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

try:
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold
except ImportError as _error:  # RDKit is optional where only tokenizing and pretraining run (GPU images lack it)
    _WHY = str(_error)

    class _NoRDKit:
        """Stands in for RDKit when it is not installed; any use says so in one line."""

        def __getattr__(self, name: str):
            raise ModuleNotFoundError(f"RDKit is needed here (rdkit.{name}) but cannot be imported ({_WHY}): "
                                      "pip install rdkit")

    Chem = RDLogger = MurckoScaffold = _NoRDKit()

from bartsmiles.errors import InvalidSmilesError

__all__ = [
    "parse_smiles",
    "is_valid_smiles",
    "canonicalize",
    "canonicalize_set",
    "model_spelling",
    "canonicalize_set_or_none",
    "murcko_scaffold",
    "inchi_key",
    "parse_in_written_order",
    "randomize_smiles",
    "match_smarts",
    "quiet_rdkit",
    "sanitized_or_none",
    "atom_made_carbon",
    "checked_atom_index",
    "HALOGENS",
]


@contextlib.contextmanager
def quiet_rdkit() -> Iterator[None]:
    """Silence RDKit's error and warning log for the duration of the block."""
    blocker = getattr(Chem.rdBase, "BlockLogs", None)
    if blocker is not None:  # RDKit >= 2022.03: scoped and restores the previous state
        block = blocker()
        try:
            yield
        finally:
            del block
        return
    RDLogger.DisableLog("rdApp.*")  # pragma: no cover - old RDKit only
    try:  # pragma: no cover
        yield
    finally:  # pragma: no cover
        RDLogger.EnableLog("rdApp.*")


def _check_str(value: object, what: str = "smiles") -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}: {value!r}")
    return value


def _failure_reason(smiles: str) -> str:
    """Recover why ``Chem.MolFromSmiles`` rejected ``smiles`` (called on failure only)."""
    with quiet_rdkit():
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            return "SMILES syntax error (RDKit could not parse the string)"
        try:
            Chem.SanitizeMol(raw)
        except Exception as exc:  # RDKit raises several sanitization exception types
            text = str(exc).strip()
            return f"sanitization failed: {text}" if text else "sanitization failed"
    return "RDKit rejected the SMILES"


def parse_smiles(smiles: str, *, row: int | None = None) -> Chem.Mol:
    """Parse ``smiles`` with RDKit's default sanitization.

    Args:
        smiles: the SMILES string.
        row: optional 0-based row number, only used in the error message.

    Returns:
        The sanitized molecule (never ``None``).

    Raises:
        TypeError: ``smiles`` is not a ``str``.
        InvalidSmilesError: the string is empty or RDKit cannot parse/sanitize it.
    """
    _check_str(smiles)
    if not smiles.strip():
        raise InvalidSmilesError(smiles, row=row, reason="empty SMILES")
    with quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidSmilesError(smiles, row=row, reason=_failure_reason(smiles))
    return mol


def is_valid_smiles(smiles: str) -> bool:
    """Return True when :func:`parse_smiles` would succeed (False for non-strings too)."""
    if not isinstance(smiles, str):
        return False
    try:
        parse_smiles(smiles)
    except InvalidSmilesError:
        return False
    return True


def _as_mol(smiles_or_mol: str | Chem.Mol, caller: str) -> Chem.Mol:
    if isinstance(smiles_or_mol, Chem.Mol):
        return smiles_or_mol
    if isinstance(smiles_or_mol, str):
        return parse_smiles(smiles_or_mol)
    raise TypeError(f"{caller} expects a SMILES str or an RDKit Mol, got {type(smiles_or_mol).__name__}")


def canonicalize(smiles: str | Chem.Mol, *, isomeric: bool = True) -> str:
    """RDKit canonical SMILES of ``smiles`` (a SMILES or a parsed Mol); ``isomeric=False`` drops stereo and isotopes."""
    return Chem.MolToSmiles(_as_mol(smiles, "canonicalize"), isomericSmiles=isomeric)


def model_spelling(smiles: str, mol: Chem.Mol | None = None) -> str:
    """The spelling a fine-tuned model reads: RDKit's canonical isomeric SMILES of ``smiles``.

    Where the canonical form has a dative bond, ``smiles`` itself (stripped) is returned: RDKit
    writes the bonds of some metal complexes (vitamin B12 in ClinTox) as arrows, ``->``/``<-``,
    which the regex tokenizer has no token for. ``mol``: ``smiles`` already parsed, to skip
    a second parse. Raises :class:`~bartsmiles.errors.InvalidSmilesError` if ``smiles`` does not parse.
    """
    canonical = canonicalize(mol if mol is not None else smiles)
    # the only non-SMILES tokens RDKit writes; '->' would even tokenize, as '-' and a reaction arrow
    return smiles.strip() if "->" in canonical or "<-" in canonical else canonical


def canonicalize_set(smiles: str) -> str:
    """Order-independent key for a ``'.'``-joined set of molecules.

    The whole string is parsed once (so ring closures written across a ``'.'`` are
    handled correctly), written as canonical SMILES, split into its fragments, and
    the fragments are sorted and re-joined with ``'.'``. Repeated fragments are kept.
    ``canonicalize_set("OCC.c1ccccc1") == canonicalize_set("c1ccccc1.CCO")``.
    """
    canonical = Chem.MolToSmiles(parse_smiles(smiles))
    return ".".join(sorted(canonical.split(".")))


def canonicalize_set_or_none(smiles: str) -> str | None:
    """:func:`canonicalize_set` of ``smiles``, or ``None`` when it is not a valid SMILES string.

    For scoring generated text, where an invalid candidate is an outcome, not an error.
    """
    if not isinstance(smiles, str):
        return None
    try:
        return canonicalize_set(smiles)
    except InvalidSmilesError:
        return None


def murcko_scaffold(smiles_or_mol: str | Chem.Mol, *, include_chirality: bool = False) -> str:
    """Bemis-Murcko scaffold SMILES, as ``MurckoScaffold.MurckoScaffoldSmiles``.

    Acyclic molecules have the empty scaffold ``""``.

    Raises:
        TypeError: the argument is neither a ``str`` nor an RDKit ``Mol``.
        InvalidSmilesError: a SMILES argument does not parse.
    """
    mol = _as_mol(smiles_or_mol, "murcko_scaffold")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=include_chirality)


def inchi_key(smiles_or_mol: str | Chem.Mol) -> str:
    """Standard InChIKey of a molecule, or ``""`` when the InChI library cannot make one.

    The InChI library's warnings (undefined stereo, ...) are silenced; a molecule it refuses
    (some organometallics, dummy atoms ``*``) gets ``""``, never an exception.

    Raises:
        TypeError: the argument is neither a ``str`` nor an RDKit ``Mol``.
        InvalidSmilesError: a SMILES argument does not parse.
    """
    mol = _as_mol(smiles_or_mol, "inchi_key")
    with quiet_rdkit():
        try:
            return Chem.MolToInchiKey(mol) or ""
        except Exception:  # noqa: BLE001 - the InChI wrapper raises several types; "no key" is the answer
            return ""


def parse_in_written_order(smiles: str) -> Chem.Mol:
    """Parse ``smiles`` keeping explicit ``[H]`` atoms, so that atom ``k`` is the ``k``-th atom written.

    Sanitized as :func:`parse_smiles` (aromaticity perceived), but hydrogens are not removed: the
    atoms are exactly the atom tokens of the string, in order (what
    :meth:`bartsmiles.core.tokenizer.SmilesTokenizer.is_atom_token` counts). Use it to compare how a
    SMILES is *written* with what RDKit perceives, e.g. an aromatic ring written in Kekulé form.

    Raises:
        TypeError: ``smiles`` is not a ``str``.
        InvalidSmilesError: the string is empty or RDKit cannot parse/sanitize it.
    """
    _check_str(smiles)
    if not smiles.strip():
        raise InvalidSmilesError(smiles, reason="empty SMILES")
    params = Chem.SmilesParserParams()
    params.removeHs = False
    with quiet_rdkit():
        mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise InvalidSmilesError(smiles, reason=_failure_reason(smiles))
    return mol


def randomize_smiles(smiles: str, rng: np.random.Generator) -> str:
    """A random, valid, non-canonical SMILES of the same molecule.

    The atoms are renumbered by ``rng.permutation`` and the molecule is written with
    ``canonical=False`` (stereo kept), so the result depends only on ``rng``'s state.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    mol = parse_smiles(smiles)
    order = [int(i) for i in rng.permutation(mol.GetNumAtoms())]
    shuffled = Chem.RenumberAtoms(mol, order)
    return Chem.MolToSmiles(shuffled, canonical=False)


def match_smarts(mol: Chem.Mol, smarts: str) -> list[tuple[int, ...]]:
    """All (unique) substructure matches of ``smarts`` in ``mol``, as atom-index tuples.

    Raises:
        TypeError: ``mol`` is not an RDKit ``Mol`` or ``smarts`` not a ``str``.
        ValueError: ``smarts`` is not a valid SMARTS pattern (the message names it).
    """
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    _check_str(smarts, "smarts")
    with quiet_rdkit():
        pattern = Chem.MolFromSmarts(smarts) if smarts.strip() else None
    if pattern is None:
        raise ValueError(f"invalid SMARTS pattern {smarts!r}")
    return [tuple(int(i) for i in match) for match in mol.GetSubstructMatches(pattern)]


def sanitized_or_none(mol: Chem.Mol) -> Chem.Mol | None:
    """An edited molecule (a ``Chem.RWMol`` or ``Chem.Mol``) as a sanitized ``Chem.Mol``, or ``None``
    when RDKit rejects the edit (a valence it cannot reach, an aromatic ring it cannot kekulize);
    RDKit's log stays quiet."""
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    out = mol.GetMol() if isinstance(mol, Chem.RWMol) else Chem.Mol(mol)
    try:
        with quiet_rdkit():
            Chem.SanitizeMol(out)
    except Exception:  # noqa: BLE001 - RDKit raises several types for an impossible edit
        return None
    return out


#: atomic numbers of the halogens F, Cl, Br and I
HALOGENS = frozenset({9, 17, 35, 53})


def checked_atom_index(mol: Chem.Mol, index: int) -> int:
    """``index`` as an int, once ``mol`` is an RDKit ``Mol`` that has that atom (RDKit atom index);
    raises :class:`TypeError` for a non-``Mol`` and :class:`IndexError` for an atom ``mol`` lacks."""
    if not isinstance(mol, Chem.Mol):
        raise TypeError(f"mol must be an RDKit Mol, got {type(mol).__name__}")
    if not 0 <= int(index) < mol.GetNumAtoms():
        raise IndexError(f"atom {index} is out of range for a molecule of {mol.GetNumAtoms()} atoms")
    return int(index)


def atom_made_carbon(mol: Chem.Mol, index: int) -> Chem.Mol | None:
    """A copy of ``mol`` with atom ``index`` (RDKit atom index) turned into a neutral carbon with
    implicit hydrogens (an amide N gives a ketone, a ring O a CH2), sanitized; ``None`` when the
    result does not sanitize.  Raises :class:`TypeError` for a non-``Mol`` and :class:`IndexError`
    for an atom ``mol`` lacks (:func:`checked_atom_index`)."""
    index = checked_atom_index(mol, index)
    rw = Chem.RWMol(mol)
    atom = rw.GetAtomWithIdx(index)
    atom.SetAtomicNum(6)
    atom.SetFormalCharge(0)
    atom.SetNumExplicitHs(0)
    atom.SetNoImplicit(False)
    return sanitized_or_none(rw)
