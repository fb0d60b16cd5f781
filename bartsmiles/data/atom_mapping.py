"""Atom maps for reactions, and root-aligned training files for retrosynthesis.

The USPTO-50k split of Liu et al. (``PRODUCT >> REACTANTS`` lines, canonical SMILES) carries no
atom maps, and root alignment (:mod:`bartsmiles.core.reactions`) needs them. They come from
Indigo's automapper (``epam.indigo`` on PyPI, the optional ``retro`` extra: a C++ library in the
wheel, no weights to download).

* :func:`map_reactions` maps ``(product, reactants)`` pairs in parallel and caches the result in a
  CSV (one row per pair: ``index``, ``mapped``, ``error``), so that a killed or repeated run maps
  only what is missing. A pair the mapper fails on keeps an empty ``mapped`` and the reason.
* :func:`build_root_aligned` writes ``train.csv`` / ``valid.csv`` / ``test.csv`` (columns
  ``source``, ``target``) for the ``smiles_seq2seq`` task: ``k`` root-aligned views per mapped
  reaction (:func:`bartsmiles.core.reactions.align_reaction` with the roots of
  :func:`~bartsmiles.core.reactions.product_roots`); an unmapped reaction keeps its canonical
  pair (``k`` copies, so that the data's proportions stay), and is counted in the report. The
  test file keeps one canonical pair per reaction (scoring compares molecule sets; test-time
  views are made by the generator).
"""
from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from bartsmiles.core.chem import canonicalize_set_or_none, parse_smiles
from bartsmiles.core.reactions import align_reaction, edit_distance, product_roots, split_mapped_reaction
from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.errors import InvalidSmilesError, MissingExtraError, Seq2SeqDataError

__all__ = ["MappingReport", "map_reaction", "map_reactions", "read_reaction_lines", "build_root_aligned",
           "ALIGNED_SPLITS"]

logger = logging.getLogger(__name__)

#: the files :func:`build_root_aligned` reads from a split folder (Liu et al.'s names)
ALIGNED_SPLITS = {"train": "retrosynthesis-train.smi", "valid": "retrosynthesis-valid.smi",
                  "test": "retrosynthesis-test.smi"}
_CACHE_FIELDS = ["index", "mapped", "error"]
_INDIGO = None


def _indigo():
    """One Indigo instance per process (its objects are not picklable)."""
    global _INDIGO
    if _INDIGO is None:
        try:
            # lazy: epam.indigo is the optional "retro" extra, needed only to compute atom maps
            from indigo import Indigo
        except ImportError as error:
            raise MissingExtraError(f"atom mapping needs Indigo ({error}): pip install 'bartsmiles[retro]' "
                                    "(or: pip install epam.indigo)") from None
        _INDIGO = Indigo()
        _INDIGO.setOption("aam-timeout", 5000)
    return _INDIGO


def map_reaction(product: str, reactants: str) -> tuple[str, str]:
    """``(mapped "reactants>>product", "")``, or ``("", reason)`` when Indigo cannot map the pair."""
    indigo = _indigo()
    try:
        reaction = indigo.loadReaction(f"{reactants}>>{product}")
        reaction.automap("discard")
        mapped = reaction.smiles().split(" ")[0]  # Indigo may append "|...|" extensions
    except Exception as error:  # IndigoException, and anything the C++ side raises
        return "", f"indigo: {str(error).strip() or type(error).__name__}"
    mapped_reactants, mapped_product = split_mapped_reaction(mapped)
    try:
        mol = parse_smiles(mapped_product)
    except InvalidSmilesError as error:
        return "", f"mapped product does not parse: {error.reason}"
    if not any(atom.GetAtomMapNum() for atom in mol.GetAtoms()):
        return "", "no product atom was mapped"
    return f"{mapped_reactants}>>{mapped_product}", ""


def _map_chunk(chunk: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
    return [(index, *map_reaction(product, reactants)) for index, product, reactants in chunk]


def _read_cache(path: Path) -> dict[int, tuple[str, str]]:
    if not path.is_file():
        return {}
    done = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            done[int(row["index"])] = (row["mapped"], row["error"])
    return done


def map_reactions(pairs: Sequence[tuple[str, str]], cache: str | os.PathLike, *, workers: int = 1,
                  chunk: int = 64, progress: bool = True) -> list[tuple[str, str]]:
    """``(mapped, error)`` for every ``(product, reactants)`` pair, in input order; cached in ``cache``.

    Pairs already in the cache (by input index) are not mapped again; new results are appended
    chunk by chunk, so a killed run loses at most the chunks in flight.
    """
    path = Path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _read_cache(path)
    todo = [(i, p, r) for i, (p, r) in enumerate(pairs) if i not in done]
    if todo:
        _indigo()  # fail early, in this process, when the extra is missing
        new_file = not path.is_file() or path.stat().st_size == 0
        chunks = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
        with open(path, "a", newline="", encoding="utf-8") as fh, \
                tqdm(total=len(todo), desc="atom mapping", unit="rxn", disable=not progress) as bar:
            writer = csv.writer(fh)
            if new_file:
                writer.writerow(_CACHE_FIELDS)
            with ProcessPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool:
                results: Iterable = pool.map(_map_chunk, chunks) if pool else map(_map_chunk, chunks)
                for rows in results:
                    writer.writerows(rows)
                    fh.flush()
                    done.update({i: (m, e) for i, m, e in rows})
                    bar.update(len(rows))
    return [done[i] for i in range(len(pairs))]


def read_reaction_lines(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(product, reactants)`` of each ``PRODUCT >> REACTANTS`` line; a malformed line is an error naming it."""
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.split(">>")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise Seq2SeqDataError(f"{path}, line {number}: expected 'PRODUCT >> REACTANTS', got {line.strip()!r}")
            pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


@dataclass
class MappingReport:
    """What :func:`build_root_aligned` did, per split (written as ``report.json`` beside the files)."""

    k: dict[str, int]
    reactions: dict[str, int] = field(default_factory=dict)
    mapped: dict[str, int] = field(default_factory=dict)
    unmapped: dict[str, list[dict]] = field(default_factory=dict)
    pairs_written: dict[str, int] = field(default_factory=dict)
    edit_distance: dict[str, dict[str, float]] = field(default_factory=dict)


def build_root_aligned(source: str | os.PathLike, out: str | os.PathLike, *, k_train: int = 5,
                       k_valid: int = 1, workers: int = 1, seed: int = 0, progress: bool = True,
                       cache: str | os.PathLike | None = None, limit: int = 0) -> MappingReport:
    """Root-aligned ``train``/``valid``/``test`` CSVs in ``out`` from the Liu split folder ``source``.

    Atom maps are cached in ``cache`` (default ``out/maps``), one CSV per split. The report also
    gives the mean token edit distance between source and target, canonical against aligned, on
    the first view of each mapped reaction. ``limit > 0`` keeps the first ``limit`` reactions of
    the train and valid files (small-scale runs; the test file stays whole).
    """
    source, out = Path(source), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    maps = Path(cache) if cache else out / "maps"
    ks = {"train": k_train, "valid": k_valid, "test": 1}
    report = MappingReport(k=ks)
    tokenizer = SmilesTokenizer()
    for split, name in ALIGNED_SPLITS.items():
        path = source / name
        if not path.is_file():
            raise Seq2SeqDataError(f"{path}: no such file (a folder with {', '.join(ALIGNED_SPLITS.values())})")
        pairs = read_reaction_lines(path)
        if split == "test":  # scored as molecule sets; test-time views come from the generator
            rows = list(pairs)
            report.reactions[split] = report.pairs_written[split] = len(rows)
        else:
            pairs = pairs[:limit] if limit > 0 else pairs
            rows = _aligned_split(pairs, maps / f"{split}.csv", ks[split], seed, workers, progress, split, report,
                                  tokenizer)
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["source", "target"])
            writer.writerows(rows)
        logger.info("%s: %d reactions, %d pairs written", split, len(pairs), len(rows))
    (out / "report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _aligned_split(pairs, cache: Path, k: int, seed: int, workers: int, progress: bool, split: str,
                   report: MappingReport, tokenizer: SmilesTokenizer) -> list[tuple[str, str]]:
    """The ``k`` views of every pair of one split (canonical copies where mapping or alignment failed)."""
    mapped = map_reactions(pairs, cache, workers=workers, progress=progress)
    rows, unmapped, before, after = [], [], [], []
    for index, ((product, reactants), (reaction, error)) in enumerate(zip(pairs, mapped)):
        views = None
        if reaction:
            try:
                views = _aligned_views(reaction, reactants, k, seed + index)
            except (Seq2SeqDataError, InvalidSmilesError) as exc:
                error = f"alignment: {exc}"
        if views is None:
            unmapped.append({"index": index, "line": index + 1, "reason": error})
            views = [(product, reactants)] * k
        else:
            before.append(edit_distance(tokenizer.tokenize(product), tokenizer.tokenize(reactants)))
            after.append(edit_distance(tokenizer.tokenize(views[0][0]), tokenizer.tokenize(views[0][1])))
        rows.extend(views)
    report.reactions[split] = len(pairs)
    report.mapped[split] = len(pairs) - len(unmapped)
    report.unmapped[split] = unmapped
    report.pairs_written[split] = len(rows)
    if before:
        report.edit_distance[split] = {"canonical": float(np.mean(before)), "root_aligned": float(np.mean(after)),
                                       "n": len(before)}
    if unmapped:
        logger.warning("%s: %d of %d reactions could not be mapped or aligned; kept in canonical form (report.json)",
                       split, len(unmapped), len(pairs))
    return rows


def _aligned_views(reaction: str, reactants: str, k: int, seed: int) -> list[tuple[str, str]]:
    """``k`` root-aligned (product, reactants) views of a mapped reaction; checked to be the same molecules."""
    mapped_reactants, mapped_product = split_mapped_reaction(reaction)
    n_atoms = parse_smiles(mapped_product).GetNumAtoms()
    expected = canonicalize_set_or_none(reactants)
    views = []
    for root in product_roots(n_atoms, k, seed):
        pair = align_reaction(mapped_reactants, mapped_product, root)
        if canonicalize_set_or_none(pair.reactants) != expected:
            raise Seq2SeqDataError("the aligned reactants are not the input's molecules")
        views.append((pair.product, pair.reactants))
    return views
