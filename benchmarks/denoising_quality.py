"""Denoising quality of a pretrained model on MOSES test and test_scaffolds.

For a seeded sample of molecules, each SMILES is corrupted the way pretraining corrupts it
(BART text infilling: spans with Poisson(3) lengths cover 30% of the tokens, and each span
becomes one <mask>).  We then measure:

* **masked-token accuracy**: with teacher forcing, the fraction of the tokens inside masked
  spans that the decoder predicts exactly (argmax);
* **reconstruction**: greedy decoding of the whole corrupted input; the fraction of outputs
  that are valid SMILES (RDKit), and the fraction whose canonical SMILES equals the original
  molecule's (exact match).

    python benchmarks/denoising_quality.py --model pretrained --n 1000 --seed 0 \
        --out benchmarks/results/denoising_quality.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

import bartsmiles
from bartsmiles.core.chem import canonicalize, is_valid_smiles
from bartsmiles.data.registry import locate


def corrupt(ids: list[int], rng: np.random.Generator, mask_idx: int, ratio=0.3, lam=3.0):
    """Text infilling on the inner tokens of ``[<s> ... </s>]``; returns (source, masked positions)."""
    inner = len(ids) - 2
    n_mask = int(np.ceil(inner * ratio))
    masked = np.zeros(len(ids), dtype=bool)
    covered = 0
    while covered < n_mask:
        length = max(1, int(rng.poisson(lam)))
        start = int(rng.integers(1, len(ids) - 1))
        end = min(start + length, len(ids) - 1, start + (n_mask - covered))
        new = (~masked[start:end]).sum()
        masked[start:end] = True
        covered += int(new)
    source, i = [], 0
    while i < len(ids):
        if masked[i]:
            source.append(mask_idx)
            while i < len(ids) and masked[i]:
                i += 1
        else:
            source.append(ids[i])
            i += 1
    return source, masked


def read_sample(path, n, rng):
    with gzip.open(path, "rt") as fh:
        rows = [line.strip().split(",")[0] for line in fh][1:]
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in sorted(pick)]


@torch.no_grad()
def evaluate(pm, smiles, rng, batch_size=64):
    from fairseq.sequence_generator import SequenceGenerator

    model, task = pm.model, pm.task
    mask_idx = task.source_dictionary.index("<mask>")
    pad, eos = task.source_dictionary.pad(), task.source_dictionary.eos()
    gen = SequenceGenerator([model], task.target_dictionary, beam_size=1, max_len_b=pm.max_positions - 2, max_len_a=0)
    ids = pm.encode_ids(smiles, on_overflow="truncate")
    correct = total = valid = exact = 0
    for b in range(0, len(ids), batch_size):
        batch = ids[b:b + batch_size]
        pairs = [corrupt(x, rng, mask_idx) for x in batch]
        src_len = max(len(p[0]) for p in pairs)
        tgt_len = max(len(x) for x in batch)
        src = torch.full((len(batch), src_len), pad, dtype=torch.long)
        tgt = torch.full((len(batch), tgt_len), pad, dtype=torch.long)
        prev = torch.full((len(batch), tgt_len), pad, dtype=torch.long)
        for i, ((s, _), t) in enumerate(zip(pairs, batch)):
            src[i, : len(s)] = torch.tensor(s)
            tgt[i, : len(t)] = torch.tensor(t)
            prev[i, 0] = eos
            prev[i, 1 : len(t)] = torch.tensor(t[:-1])
        lengths = (src != pad).sum(1)
        logits, _ = model(src, lengths, prev)
        pred = logits.argmax(-1)
        for i, (_, masked) in enumerate(pairs):
            m = torch.tensor(masked)
            correct += int((pred[i, : len(masked)][m] == tgt[i, : len(masked)][m]).sum())
            total += int(m.sum())
        hyps = gen.generate([model], {"net_input": {"src_tokens": src, "src_lengths": lengths}})
        for i, h in enumerate(hyps):
            tokens = pm.vocab.decode(h[0]["tokens"].tolist(), strip_special=True)
            out = "".join(tokens)
            if is_valid_smiles(out):
                valid += 1
                if canonicalize(out) == canonicalize(smiles[b + i]):
                    exact += 1
    n = len(ids)
    return {"molecules": n, "masked_tokens": total, "masked_token_accuracy": correct / max(total, 1),
            "valid_fraction": valid / n, "exact_match_fraction": exact / n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--n", type=int, default=1000, help="molecules per test file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default="benchmarks/results/denoising_quality.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    pm = bartsmiles.load_pretrained(args.model)
    results = {}
    for name in ("moses_test", "moses_test_scaffolds"):
        rng = np.random.default_rng(args.seed)
        smiles = read_sample(locate(name, args.data_dir), args.n, rng)
        results[name] = evaluate(pm, smiles, rng)
        print(name, json.dumps(results[name]))
    report = {
        "model": str(pm.path),
        "metadata": {k: pm.metadata.get(k) for k in ("arch", "source_num_updates", "created")},
        "noise": "30% of tokens in Poisson(3) spans, one <mask> per span (no random replacement)",
        "decoding": "greedy (beam 1)",
        "results": results,
        "command": " ".join(sys.argv),
        "seed": args.seed,
        "machine": f"{platform.node()} {platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1),
    }
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
