"""Build the shipped vocabulary (pretrained/dict.txt) and measure its <unk> rates.

The vocabulary covers every token of MOSES train, of every MoleculeNet file (valid rows) and of
the USPTO-50k training reactions, so that no charged atom, nitro group or metal of a downstream
set becomes <unk>.  This is vocabulary only: no test molecule or label enters pretraining.

    python scripts/build_vocab.py --data-dir ../shared/data --out pretrained/dict.txt \
        --report benchmarks/results/vocab_coverage.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from datetime import datetime, timezone

from bartsmiles.core.encoding import count_tokens, encode_many
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.data.datasets import load_dataset
from bartsmiles.data.registry import locate
from bartsmiles.tasks.binarize import iter_corpus_file

MOLECULENET = ["bbbp", "bace", "clintox", "tox21", "toxcast", "sider", "hiv", "muv", "esol", "freesolv", "lipo"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="data folder (default: $BARTSMILES_DATA)")
    ap.add_argument("--out", default="pretrained/dict.txt")
    ap.add_argument("--report", default="benchmarks/results/vocab_coverage.json")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()

    counts: Counter = Counter()
    sources = {}
    moses = locate("moses_train", args.data_dir)
    uspto_train = locate("uspto50k_train", args.data_dir)
    counts.update(count_tokens(iter_corpus_file(moses), n_jobs=args.workers))
    sources["moses_train"] = str(moses)
    counts.update(count_tokens(iter_corpus_file(uspto_train), n_jobs=args.workers))
    sources["uspto50k_train"] = str(uspto_train)
    mnet = {}
    for name in MOLECULENET:
        ds = load_dataset(name, args.data_dir)
        mnet[name] = ds.smiles
        counts.update(count_tokens(ds.smiles, n_jobs=args.workers))
        sources[name] = f"{len(ds)} valid SMILES"
    vocab = Vocabulary.from_counter(counts)
    vocab.save(args.out)

    def rate(smiles):
        _, st = encode_many(smiles, vocab, n_jobs=args.workers, max_positions=None)
        return {"smiles": st.n, "tokens": st.n_tokens, "unk": st.n_unk, "unk_rate": st.n_unk / max(st.n_tokens, 1)}

    coverage = {name: rate(sm) for name, sm in mnet.items()}
    coverage["uspto50k_test"] = rate(iter_corpus_file(locate("uspto50k_test", args.data_dir)))
    coverage["moses_test"] = rate(iter_corpus_file(locate("moses_test", args.data_dir)))
    # what a MOSES-only vocabulary would have done, for comparison
    moses_only = Vocabulary.from_counter(count_tokens(iter_corpus_file(moses), n_jobs=args.workers))
    moses_only_rates = {}
    for name, sm in mnet.items():
        _, st = encode_many(sm, moses_only, n_jobs=args.workers)
        moses_only_rates[name] = st.n_unk / max(st.n_tokens, 1)

    report = {
        "vocabulary": args.out,
        "symbols": len(vocab.symbols),
        "sources": sources,
        "unk_rate_with_this_vocabulary": coverage,
        "unk_rate_with_a_moses_only_vocabulary": moses_only_rates,
        "command": " ".join(sys.argv),
        "machine": f"{platform.node()} {platform.machine()} {platform.python_version()}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - t0, 1),
    }
    with open(args.report, "w") as fh:
        json.dump(report, fh, indent=2)
    print(json.dumps({k: report[k] for k in ("symbols", "unk_rate_with_this_vocabulary")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
