"""Scoring generated SMILES against references: canonical molecule-set matching.

* :func:`topk_accuracy` -- top-k exact match after RDKit canonicalization of the whole molecule
  set (order-independent), plus the fraction of invalid top-1 SMILES.
* :func:`_merge_canonical` and :func:`_aggregate` -- how :meth:`bartsmiles.seq2seq.BartSmilesSeq2Seq.generate`
  merges candidates that are the same molecule set, and ranks them over the beams of test-time
  augmentation (``aggregate="prob"`` or ``"rank"``; the ``Scores`` section of :mod:`bartsmiles.seq2seq`).

RDKit is imported inside the functions (through :mod:`bartsmiles.chem`), only when they run.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

AGGREGATES = ("prob", "rank")


def _canonical(smiles: str) -> Optional[str]:
    from .chem import InvalidSmilesError, canonicalize_set

    try:
        return canonicalize_set(smiles)
    except (InvalidSmilesError, TypeError):
        return None


def _merge_canonical(cands, drop_invalid: bool):
    out: dict[str, float] = {}
    for s, score in cands:
        key = _canonical(s)
        if key is None:
            if drop_invalid:
                continue
            key = s
        if key not in out or score > out[key]:
            out[key] = score
    return sorted(out.items(), key=lambda kv: -kv[1])


def _aggregate(beams, how: str, n_best: int, drop_invalid: bool):
    """Rank aggregation of the canonical candidates of several beams (:mod:`bartsmiles.seq2seq` docstring)."""
    totals: dict[str, float] = {}
    for cands in beams:
        seen = set()
        for rank, (s, score) in enumerate(cands, start=1):
            key = _canonical(s)
            if key is None:
                if drop_invalid:
                    continue
                key = s
            if key in seen:  # the same molecule set twice in one beam counts once (its best rank)
                continue
            seen.add(key)
            totals[key] = totals.get(key, 0.0) + (math.exp(score) if how == "prob" else 1.0 / rank)
    order = sorted(totals.items(), key=lambda kv: -kv[1])  # stable: first appearance wins ties
    return order[:n_best]


# -------------------------------------------------------------------------------------- metric


def topk_accuracy(predictions: Sequence[Sequence], references: Sequence[str],
                  ks: Iterable[int] = (1, 3, 5, 10)) -> dict:
    """Top-k exact-match accuracy of ranked predictions against reference SMILES.

    ``predictions[i]`` is the ranked candidate list of input ``i``: SMILES strings or
    ``(smiles, score)`` pairs.  A candidate matches when RDKit's canonical form of its whole
    molecule set equals the reference's (:func:`bartsmiles.chem.canonicalize_set`: molecule
    order, atom order and SMILES spelling do not matter).  Top-k counts an input as correct when
    any of its first ``k`` candidates matches (candidates are taken as ranked, not deduplicated).
    Returns ``{"top1": .., "top3": .., ..., "n": N, "invalid_top1": fraction of inputs whose
    first candidate is not a valid SMILES (or that have no candidate)}``.
    A reference that RDKit cannot parse is an error naming its index.
    """
    from .chem import InvalidSmilesError, canonicalize_set

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} prediction lists but {len(references)} references")
    n = len(references)
    hits = {k: 0 for k in ks}
    invalid = 0
    for i, (cands, ref) in enumerate(zip(predictions, references)):
        try:
            ref_key = canonicalize_set(str(ref).strip())
        except InvalidSmilesError as exc:
            raise ValueError(f"reference {i} is not a valid SMILES: {exc}") from None
        keys = []
        for c in list(cands)[: ks[-1]]:
            s = c[0] if isinstance(c, (tuple, list)) else c
            keys.append(_canonical(str(s)))
        if not keys or keys[0] is None:
            invalid += 1
        first = next((r for r, key in enumerate(keys) if key == ref_key), None)
        for k in ks:
            hits[k] += first is not None and first < k
    out = {f"top{k}": (hits[k] / n if n else float("nan")) for k in ks}
    out["n"] = n
    out["invalid_top1"] = invalid / n if n else float("nan")
    return out


__all__ = ["topk_accuracy", "AGGREGATES"]
