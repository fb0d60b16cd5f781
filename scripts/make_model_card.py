"""Write pretrained/MODEL_CARD.md and the loss-curve PNG from a pretraining run's own records.

Every number in the card is read from a file: fairseq's JSON log (updates, tokens, wall time,
losses), the exported model's metadata, and the denoising evaluation
(benchmarks/denoising_quality.py).

    python scripts/make_model_card.py --log runs/pretrain_small.log --model pretrained \
        --denoising benchmarks/results/denoising_quality.json --hardware "..." --command "..."
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    """(train_inner records, valid records) from a fairseq --log-file with --log-format json.

    Lines are either bare JSON or ``... | train_inner | {json}``; epoch summaries (keys prefixed
    ``train_``) are skipped.
    """
    train, valid = [], []
    for line in path.read_text().splitlines():
        start = line.find("{")
        if start < 0 or not line.rstrip().endswith("}"):
            continue
        try:
            rec = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if "valid_loss" in rec:
            valid.append(rec)
        elif "loss" in rec and "num_updates" in rec:
            train.append(rec)
    return train, valid


def plot(train: list[dict], valid: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if train:
        ax.plot([int(r["num_updates"]) for r in train], [float(r["loss"]) for r in train],
                label="train (running mean per log interval)", color="#999999", lw=1)
    if valid:
        ax.plot([int(r["valid_num_updates"]) for r in valid], [float(r["valid_loss"]) for r in valid],
                "o-", label="validation (MOSES test, 2,000 molecules)", color="#1f77b4")
    ax.set_xlabel("updates")
    ax.set_ylabel("denoising cross-entropy (bits/token)")
    ax.set_title("bartsmiles_small pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", required=True, help="fairseq --log-file of the pretraining run")
    ap.add_argument("--model", default="pretrained", help="exported model folder")
    ap.add_argument("--denoising", required=True, help="JSON from benchmarks/denoising_quality.py")
    ap.add_argument("--encode", default="benchmarks/results/encode_throughput.json", help="JSON from benchmarks/encode_throughput.py")
    ap.add_argument("--hardware", required=True, help="where the run happened, in words")
    ap.add_argument("--command", required=True, help="the pretraining command that was run")
    ap.add_argument("--corpus", default="MOSES train (1,584,663 SMILES) + the molecules of the USPTO-50k training reactions (108,436 SMILES): 1,693,099 SMILES, 59.6M tokens; validation: the first 2,000 SMILES of MOSES test")
    args = ap.parse_args()

    from bartsmiles.checkpoint import read_metadata

    model_dir = Path(args.model)
    meta = read_metadata(model_dir / "model.pt")
    train, valid = read_log(Path(args.log))
    if not train:
        raise SystemExit(f"{args.log}: no train_inner records")
    last = train[-1]
    updates = int(last["num_updates"])
    wall = float(last["wall"])
    # tokens seen: each log interval covers (num_updates delta) updates of ~wpb tokens
    tokens, prev = 0.0, 0
    for r in train:
        n = int(r["num_updates"])
        tokens += (n - prev) * float(r["wpb"])
        prev = n
    png = model_dir / "pretraining_loss.png"
    plot(train, valid, png)
    dq = json.loads(Path(args.denoising).read_text())
    enc = json.loads(Path(args.encode).read_text()) if Path(args.encode).is_file() else None

    rows = []
    for name, res in dq["results"].items():
        rows.append(f"| {name} | {res['molecules']} | {res['masked_token_accuracy']:.3f} | "
                    f"{res['valid_fraction']:.3f} | {res['exact_match_fraction']:.3f} |")
    arch = meta.get("arch")
    dims = meta.get("architecture") or {}
    lines = [
        f"# Model card: `{arch}` (shipped default)",
        "",
        "A BART denoising autoencoder over SMILES, trained by `bartsmiles pretrain` (fairseq).",
        "It is the starting point for fine-tuning. It is small on purpose, so that fine-tuning runs on a",
        "laptop CPU, and it was trained briefly: see *Limits*.",
        "",
        "## Architecture and files",
        f"- Shape: {dims}",
        f"- Tokenizer: {meta.get('tokenizer')} (atom-level SMILES regex); vocabulary `dict.txt`, {len(meta.get('vocabulary') or [])} symbols plus 4 specials and `<mask>`",
        f"- `model.pt`: fp16 weights, no optimizer state; loads with `bartsmiles.load_pretrained()` (weights-only, allowlisted)",
        f"- Versions at export: {meta.get('versions')}",
        "",
        "## Training",
        f"- Corpus: {args.corpus}.",
        "- Objective: BART text infilling: 30% of the tokens are masked in Poisson(λ=3) spans, with one `<mask>` per span and 10% of the masks replaced by random tokens. There is no rotation or permutation.",
        f"- Updates: {updates}; tokens seen: {tokens/1e6:.1f}M ({tokens/59.6e6:.2f} epochs); wall time: {wall/60:.0f} min",
        f"- Hardware: {args.hardware}",
        f"- Command: `{args.command}`",
        f"- Final logged train loss: {float(last['loss']):.3f} bits/token; last validation loss: "
        + (f"{float(valid[-1]['valid_loss']):.3f} (update {valid[-1]['valid_num_updates']})" if valid else "n/a"),
        "",
        f"![validation loss]({png.name})",
        "",
        "## Denoising quality (measured)",
        f"{dq['noise']}; decoding: {dq['decoding']}; seed {dq['seed']}; machine: {dq['machine']}; command: `{dq['command']}`.",
        "",
        "| test set | molecules | masked-token accuracy (teacher-forced) | valid SMILES (greedy reconstruction) | exact match |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    if enc:
        lines += [
            "## Feature extraction speed",
            f"- `encode()` on {enc.get('n')} MOSES molecules: {enc.get('molecules_per_second', enc.get('mol_per_s'))} molecules/s ({enc.get('machine')}; command `{enc.get('command')}`)",
            "",
        ]
    lines += [
        "## Limits",
        "- The GPU run of this session (985 updates, ~63M tokens, on an H200) lost its checkpoint when the process hung at exit. This model was trained on 2 shared CPU cores instead, so it has seen only a fraction of one epoch.",
        "- Expect fine-tuning to gain less from it than from a fully pretrained model. Retraining with `scripts/device/pretrain.sh` on a GPU (about 400k tokens/s measured) is the way to improve it.",
        "- The positions beyond the longest pretraining SMILES (MOSES is under about 60 tokens) were rarely trained. Longer molecules (up to 128 tokens) rely on fine-tuning.",
        "",
    ]
    (model_dir / "MODEL_CARD.md").write_text("\n".join(lines))
    print(f"wrote {model_dir / 'MODEL_CARD.md'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
