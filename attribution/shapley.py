"""Shapley values of atoms and tokens, by Captum's permutation sampling, with a ``<mask>`` baseline.

The players are groups of positions of the encoder's input token embeddings (the input the other
methods perturb; see :mod:`bartsmiles.attribution.integrated_gradients`).  A player that is
"absent" has its embeddings replaced by the baseline's -- by default ``<mask>``, the corruption
BARTSmiles was pretrained on.  The groups (Captum's ``feature_mask``):

* ``features="tokens"`` (default): every token is a player; atom tokens and structural tokens
  (bonds, branches, ring digits, ``.``) alike.  Token scores go to atoms exactly as for integrated
  gradients (:mod:`bartsmiles.attribution.mapping`: a bond's value is shared by the atoms it joins).
* ``features="atoms"``: each atom's token(s) are one player and all other tokens together are one
  more player whose value is the ``remainder``.  Fewer players, so it is cheaper.

``<s>`` and ``</s>`` keep their real embeddings (so their value is zero) unless
``replace_specials``, in which case each is a player too.

``estimator="sampling"`` (default) is :class:`captum.attr.ShapleyValueSampling` with ``n_samples``
random permutations.  Each permutation's marginal contributions add up to ``F(input) -
F(baseline)``, so the values are **complete** (up to float round-off) for any ``n_samples``; more
samples reduce their variance.  ``estimator="ablation"`` is :class:`captum.attr.FeatureAblation`
(each player removed alone: ``F(input) - F(input without it)``), which is deterministic but not
additive.

Batching: molecules are sorted by the number of players and grouped so that one forward pass holds
at most ``batch_size`` sequences (``molecules x perturbations per evaluation``).  The permutations
are drawn from ``torch.manual_seed(seed)`` per group (the global random state is restored), so a
call is reproducible; a molecule's values depend on which molecules it was grouped with only
through the random permutations (exactly so for ``"ablation"``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from captum.attr import FeatureAblation, ShapleyValueSampling

from .inputs import Molecule, ScoreModel, baseline_ids, make_batch
from .result import MethodScores

__all__ = ["ESTIMATORS", "FEATURES", "player_ids", "shapley"]

ESTIMATORS = ("sampling", "ablation")
FEATURES = ("tokens", "atoms")


def player_ids(mol: Molecule, features: str, replace_specials: bool) -> tuple[list[int], int]:
    """Player id per position (position space, ``len(mol.ids)`` entries) and the number of players.

    ``"tokens"``: token ``t`` is player ``t``.  ``"atoms"``: an atom token is the player of its
    (first) atom index; every other token is player ``n_atoms`` (the remainder).  ``<s>``/``</s>``
    are players of their own with ``replace_specials``; otherwise they join player 0, harmlessly,
    since their baseline is their real embedding.
    """
    if features == "tokens":
        body = list(range(mol.n_tokens))
    else:
        rest = mol.n_atoms
        body = [members[0] if members else rest for members in mol.alignment.atoms]
    n_players = max(body) + 1
    if replace_specials:
        return [n_players, *body, n_players + 1], n_players + 2
    return [0, *body, 0], n_players


def _groups(order: Sequence[int], sizes: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive runs of ``order`` whose ``len(run) * max(sizes in run)`` stays within ``batch_size``."""
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * max(sizes[j] for j in [*groups[-1], i]) <= batch_size:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _values(model: ScoreModel, chunk: Sequence[Molecule], players: Sequence[list[int]], *, baseline_id: int,
            n_samples: int, estimator: str, replace_specials: bool, batch_size: int,
            seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B, L)`` player value at each position, ``F(input)`` and ``F(baseline)`` of one group."""
    batch = make_batch([m.ids for m in chunk], model.pad, model.device)
    args = (batch.src, batch.lengths, batch.prev)
    mask = torch.zeros(batch.src.shape, dtype=torch.long)
    for r, ids in enumerate(players):
        mask[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    mask = mask.unsqueeze(-1).to(model.device)  # (B, L, 1): a player covers all embedding dimensions
    per_eval = max(1, batch_size // len(chunk))
    with torch.no_grad():
        x = model.embed(batch.src)
        b = model.embed(baseline_ids(batch, baseline_id, replace_specials))
        both = model.score(torch.cat([x, b]), *(torch.cat([t, t]) for t in args))  # F(input), F(baseline): one pass
        fx, fb = both[: len(chunk)], both[len(chunk):]
        if estimator == "sampling":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                attr = ShapleyValueSampling(model.score).attribute(
                    x, baselines=b, additional_forward_args=args, feature_mask=mask, n_samples=int(n_samples),
                    perturbations_per_eval=per_eval)
        else:
            attr = FeatureAblation(model.score).attribute(
                x, baselines=b, additional_forward_args=args, feature_mask=mask, perturbations_per_eval=per_eval)
    # every position of a player carries the player's whole value (Captum's convention for groups)
    return (attr[..., 0].double().cpu().numpy(), fx.double().cpu().numpy(), fb.double().cpu().numpy())


def _scores(mol: Molecule, row: np.ndarray, ids: Sequence[int], features: str, replace_specials: bool,
            output: float, baseline_output: float) -> MethodScores:
    """One molecule's :class:`MethodScores` from its player values ``row`` (position space)."""
    specials = {"<s>": float(row[0]) if replace_specials else 0.0,
                "</s>": float(row[len(mol.ids) - 1]) if replace_specials else 0.0}
    values = row[1: len(mol.ids) - 1].copy()  # token index space
    if features == "tokens":
        return MethodScores(token_scores=values, special_scores=specials, output=output,
                            baseline_output=baseline_output)
    body = ids[1:-1]
    atom_scores = np.zeros(mol.n_atoms)
    rest = [t for t, p in enumerate(body) if p == mol.n_atoms]
    for t, p in enumerate(body):
        if p < mol.n_atoms:
            atom_scores[p] = values[t]
    tokens = values.copy()
    if rest:
        tokens[rest] = values[rest[0]] / len(rest)  # the remainder player's value, spread over its tokens
    return MethodScores(token_scores=tokens, special_scores=specials, output=output,
                        baseline_output=baseline_output, atom_scores=atom_scores)


def shapley(model: ScoreModel, molecules: Sequence[Molecule], *, baseline_id: int, n_samples: int,
            estimator: str, features: str, replace_specials: bool, batch_size: int,
            seed: int) -> list[MethodScores]:
    """Shapley values (or feature ablation) for each molecule, in input order (module docstring)."""
    players = [player_ids(m, features, replace_specials) for m in molecules]
    sizes = [n for _, n in players]
    order = sorted(range(len(molecules)), key=lambda i: (sizes[i], len(molecules[i].ids)))
    found: dict[int, MethodScores] = {}
    for g, group in enumerate(_groups(order, sizes, max(1, int(batch_size)))):
        chunk = [molecules[i] for i in group]
        rows, fx, fb = _values(model, chunk, [players[i][0] for i in group], baseline_id=baseline_id,
                               n_samples=n_samples, estimator=estimator, replace_specials=replace_specials,
                               batch_size=max(1, int(batch_size)), seed=int(seed) + g)
        for r, i in enumerate(group):
            found[i] = _scores(molecules[i], rows[r], players[i][0], features, replace_specials,
                               float(fx[r]), float(fb[r]))
    return [found[i] for i in range(len(molecules))]
