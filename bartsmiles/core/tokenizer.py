"""Regex SMILES tokenizer with exact round trip and RDKit atom alignment.

Index spaces used in this module
--------------------------------
* **character index** – position in the SMILES string (0-based).
* **token index** – position in the list returned by :meth:`SmilesTokenizer.tokenize`.
* **atom index** – index of an atom in an RDKit molecule, as returned by
  ``Chem.MolFromSmiles`` with default sanitization (explicit ``[H]`` removed).
  For a plain SMILES the molecule is the whole string (all ``.``-separated
  fragments together); for a reaction SMILES it is one molecule substring.
* **molecule index** – for a reaction SMILES, the position of a molecule among
  all ``.``-separated molecules of all ``>``-separated sides, in order of
  appearance. A plain SMILES is one molecule (index 0), salts included.

This module is *core*: it imports neither torch, fairseq, pandas nor (at module
level) RDKit. RDKit is imported lazily by :meth:`SmilesTokenizer.align` only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from bartsmiles.errors import TokenizationError

__all__ = [
    "SMILES_REGEX",
    "TokenAlignment",
    "SmilesTokenizer",
]

#: One alternative per token class. Order matters: ``Cl``/``Br`` before ``C``/``B``.
#: Bracket atoms (``[C@@H]``, ``[nH+]``, ``[2H]``, ``[Pt+2]``, ``[se]``) are one token;
#: a ``[`` inside a bracket is rejected so that errors point at the right place.
SMILES_REGEX: str = (
    r"\[[^\[\]]+\]"  # bracket atom
    r"|Cl?|Br?"  # C, Cl, B, Br
    r"|[NOPSFI]"  # rest of the aliphatic organic subset
    r"|[bcnops]"  # aromatic organic subset
    r"|[()]"  # branches
    r"|[-=#$:/\\]"  # bonds
    r"|%\d\d|\d"  # ring closures
    r"|[.>]"  # fragment / reaction separators
    r"|\*"  # wildcard atom
)

_PATTERN = re.compile(SMILES_REGEX)
_findall = _PATTERN.findall
_ATOM_START = frozenset("[BCNOPSFIbcnops*")
_BOND_TOKENS = frozenset("-=#$:/\\")


def _tokenization_error(smiles: str) -> TokenizationError:
    """Build the error for ``smiles``, locating the first uncovered character."""
    expected = 0
    for match in _PATTERN.finditer(smiles):
        if match.start() != expected:
            break
        expected = match.end()
    char = smiles[expected] if expected < len(smiles) else ""
    if char.isspace():
        why = "whitespace is not part of SMILES (strip it first)"
    elif char == "[":
        why = "unterminated or nested bracket atom"
    else:
        why = "no SMILES token starts here"
    return TokenizationError(
        f"cannot tokenize SMILES {smiles!r}: character {char!r} at index {expected}: {why}",
        smiles, expected, char)


@dataclass(frozen=True)
class TokenAlignment:
    """Per-token alignment of a (reaction) SMILES to RDKit atoms.

    All lists are indexed by **token index** and have ``len(tokens)`` entries.

    * ``atoms[t]`` – atom indices (RDKit, molecule ``molecule[t]``) that token ``t``
      stands for: one for an atom token, ``()`` for non-atom tokens and for an
      explicit ``[H]`` that RDKit's default parsing removes. A SentencePiece
      piece may stand for several atoms.
    * ``molecule[t]`` – molecule index of token ``t``; ``-1`` for the ``>`` and
      ``.`` separators of a reaction. Always 0 for a plain SMILES.
    * ``molecules`` – the molecule substrings by molecule index; ``[smiles]`` for a
      plain SMILES.
    * ``joins[t]`` – atoms a structural token relates (removed atoms omitted):
      a bond token → (atom before, atom after); for a bond written in front of a
      ring-closure digit → the two atoms the ring bond connects;
      a ring-closure token (both the opening and the closing digit) → (atom it is
      written after, its ring partner); ``(`` and its matching ``)`` →
      (branch anchor atom, first atom of the branch); a removed ``[H]`` → (its
      heavy neighbour,). ``()`` for every other token.
    """

    tokens: list[str]
    atoms: list[tuple[int, ...]]
    molecule: list[int]
    molecules: list[str]
    joins: list[tuple[int, ...]]


class SmilesTokenizer:
    """Regex tokenizer: ``"".join(tokenize(s)) == s`` for every accepted SMILES."""

    kind = "regex"

    def tokenize(self, smiles: str) -> list[str]:
        """Split ``smiles`` into tokens; raise :class:`TokenizationError` if any character is uncovered."""
        tokens = _findall(smiles)
        # findall skips characters it cannot match; equal total length means full coverage.
        if sum(map(len, tokens)) != len(smiles):
            raise _tokenization_error(smiles)
        return tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Inverse of :meth:`tokenize` (plain concatenation)."""
        return "".join(tokens)

    @staticmethod
    def is_atom_token(token: str) -> bool:
        """True for bracket atoms, organic-subset atoms and the ``*`` wildcard."""
        return bool(token) and token[0] in _ATOM_START

    def align(self, smiles: str) -> TokenAlignment:
        """Align tokens to RDKit atoms (see :class:`TokenAlignment` for the rules).

        Raises :class:`TokenizationError` if the string cannot be tokenized and
        ``ValueError`` naming the SMILES if RDKit cannot parse (part of) it.
        """
        tokens = self.tokenize(smiles)
        n = len(tokens)
        atoms: list[tuple[int, ...]] = [()] * n
        joins: list[tuple[int, ...]] = [()] * n
        if ">" not in tokens:
            _align_molecule(smiles, tokens, 0, n, atoms, joins)
            return TokenAlignment(tokens, atoms, [0] * n, [smiles], joins)
        molecule = [-1] * n
        molecules: list[str] = []
        start = 0
        for end in range(n + 1):
            if end == n or tokens[end] in (".", ">"):
                if end > start:
                    substring = "".join(tokens[start:end])
                    _align_molecule(substring, tokens, start, end, atoms, joins)
                    molecule[start:end] = [len(molecules)] * (end - start)
                    molecules.append(substring)
                elif end < n and tokens[end] == ".":
                    raise ValueError(f"empty molecule before '.' at token index {end} in {smiles!r}")
                start = end + 1
        return TokenAlignment(tokens, atoms, molecule, molecules, joins)


def _atom_map(smiles: str, n_atom_tokens: int) -> list[int | None]:
    """Map the k-th atom token of ``smiles`` to its atom index in ``Chem.MolFromSmiles(smiles)``.

    Parses with explicit hydrogens kept (then atoms are numbered in order of
    appearance), tags each atom with its order, removes hydrogens the way the
    default parser does and reads the tags back. ``None`` marks a removed ``[H]``.
    """
    # lazy: RDKit is needed for the atom alignment only; tokenizing works without it (GPU images lack it)
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    blocker = BlockLogs()  # silence parser warnings; restores the previous log state
    try:
        params = Chem.SmilesParserParams()
        params.removeHs = False
        with_h = Chem.MolFromSmiles(smiles, params)
        reference = Chem.MolFromSmiles(smiles)
        if with_h is None or reference is None:
            raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
        if with_h.GetNumAtoms() != n_atom_tokens:
            raise ValueError(f"SMILES {smiles!r}: {n_atom_tokens} atom tokens but RDKit "
                             f"parsed {with_h.GetNumAtoms()} atoms")
        for atom in with_h.GetAtoms():
            atom.SetIntProp("_bartsmiles_k", atom.GetIdx())
        without_h = Chem.RemoveHs(with_h)
    finally:
        del blocker
    mapping: list[int | None] = [None] * n_atom_tokens
    for atom in without_h.GetAtoms():
        mapping[atom.GetIntProp("_bartsmiles_k")] = atom.GetIdx()
    if without_h.GetNumAtoms() == reference.GetNumAtoms() and all(
        a.GetAtomicNum() == b.GetAtomicNum() and a.GetIsotope() == b.GetIsotope()
        for a, b in zip(without_h.GetAtoms(), reference.GetAtoms())
    ):
        return mapping
    # The default parser kept a hydrogen that RemoveHs drops (an explicit [H] on a directional
    # bond, e.g. "CC(=N/[H])/C"): match the two parses directly instead.
    return _match_kept_hydrogens(smiles, with_h, reference)


def _match_kept_hydrogens(smiles: str, with_h: Any, reference: Any) -> list[int | None]:
    """Atom-token order ``k`` -> atom of ``reference`` when the two parses differ only in kept [H].

    Heavy atoms keep their relative order in both parses, so they pair up in order; each hydrogen
    that ``reference`` kept pairs with an unpaired hydrogen of ``with_h`` on the same heavy atom
    (hydrogens without a heavy neighbour pair in order).  Any other difference is an error.
    """
    def heavy(mol):
        return [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() != 1]

    pairs = list(zip(heavy(with_h), heavy(reference)))
    if len(heavy(with_h)) != len(heavy(reference)):
        raise ValueError(f"SMILES {smiles!r}: could not reproduce RDKit's hydrogen removal")
    mapping: list[int | None] = [None] * with_h.GetNumAtoms()
    k_of_j = {j: k for k, j in pairs}
    for k, j in pairs:
        mapping[k] = j
    free = [a.GetIdx() for a in with_h.GetAtoms() if a.GetAtomicNum() == 1]
    for atom in reference.GetAtoms():
        if atom.GetAtomicNum() != 1:
            continue
        anchors = [k_of_j[n.GetIdx()] for n in atom.GetNeighbors() if n.GetIdx() in k_of_j]
        here = [k for k in free
                if not anchors or any(n.GetIdx() in anchors for n in with_h.GetAtomWithIdx(k).GetNeighbors())]
        if not here:
            raise ValueError(f"SMILES {smiles!r}: could not reproduce RDKit's hydrogen removal")
        free.remove(here[0])
        mapping[here[0]] = atom.GetIdx()
    def same(k: int, m: int) -> bool:
        a, b = with_h.GetAtomWithIdx(k), reference.GetAtomWithIdx(m)
        return a.GetAtomicNum() == b.GetAtomicNum() and a.GetIsotope() == b.GetIsotope()

    if any(m is not None and not same(k, m) for k, m in enumerate(mapping)):
        raise ValueError(f"SMILES {smiles!r}: could not reproduce RDKit's hydrogen removal")
    return mapping


def _align_molecule(smiles: str, tokens: list[str], start: int, end: int,
                    atoms: list[tuple[int, ...]], joins: list[tuple[int, ...]]) -> None:
    """Fill ``atoms`` and ``joins`` for ``tokens[start:end]`` (which spell ``smiles``).

    Walks the tokens keeping the current atom (by atom-token order ``k``), a
    stack of open branches and the open ring closures, then translates ``k`` to
    RDKit atom indices with :func:`_atom_map`.
    """
    atom_tokens = [t for t in range(start, end) if SmilesTokenizer.is_atom_token(tokens[t])]
    mapping = _atom_map(smiles, len(atom_tokens))
    k_of_token = {t: k for k, t in enumerate(atom_tokens)}
    pairs: dict[int, tuple[int | None, int | None]] = {}  # token -> (k, k) it relates
    current: int | None = None
    pending_bonds: list[tuple[int, int | None]] = []  # (bond token, atom before)
    branches: list[list[Any]] = []  # [open token, anchor k, first k or None]
    awaiting_first: list[list[Any]] = []
    rings: dict[str, tuple[int | None, list[int]]] = {}  # label -> (k, tokens to fill)
    neighbours: dict[int, list[int]] = {}  # k -> bonded k (for removed [H])

    def bond(a: int | None, b: int | None) -> None:
        if a is not None and b is not None:
            neighbours.setdefault(a, []).append(b)
            neighbours.setdefault(b, []).append(a)

    for t in range(start, end):
        tok = tokens[t]
        if t in k_of_token:
            k = k_of_token[t]
            for bond_token, before in pending_bonds:
                pairs[bond_token] = (before, k)
            bond(current, k)
            pending_bonds = []
            for record in awaiting_first:
                record[2] = k
            awaiting_first = []
            current = k
        elif tok in _BOND_TOKENS:
            pending_bonds.append((t, current))
        elif tok[0] in "%0123456789":
            label = tok
            members = [t] + [b for b, _ in pending_bonds]
            pending_bonds = []
            if label in rings:
                partner, opened = rings.pop(label)
                for member in opened + members:
                    pairs[member] = (current, partner) if member in members else (partner, current)
                bond(current, partner)
            else:
                rings[label] = (current, members)
        elif tok == "(":
            record = [t, current, None]
            branches.append(record)
            awaiting_first.append(record)
        elif tok == ")":
            if not branches:
                raise ValueError(f"unbalanced ')' at token index {t} in {smiles!r}")
            open_token, anchor, first = branches.pop()
            pairs[open_token] = pairs[t] = (anchor, first)
            current = anchor
        elif tok == ".":
            current = None

    for t, k in k_of_token.items():
        idx = mapping[k]
        if idx is not None:
            atoms[t] = (idx,)
        else:  # removed [H]: point at its heavy neighbour(s)
            joins[t] = tuple(mapping[n] for n in neighbours.get(k, []) if mapping[n] is not None)
    for t, (a, b) in pairs.items():
        joins[t] = tuple(mapping[k] for k in (a, b) if k is not None and mapping[k] is not None)
