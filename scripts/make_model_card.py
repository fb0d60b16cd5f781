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
    ``train_``) are skipped. A run restarted from a checkpoint logs some updates again: the later
    record of an update wins, so every update is counted once. With the descriptor loss, the
    denoising cross-entropy is ``nll_loss`` (``loss`` adds the descriptor term); it is the one used.
    """
    train, valid = {}, {}
    for line in path.read_text().splitlines():
        start = line.find("{")
        if start < 0 or not line.rstrip().endswith("}"):
            continue
        try:
            rec = json.loads(line[start:])
        except json.JSONDecodeError:
            continue
        if "valid_loss" in rec:
            rec["valid_loss"] = rec.get("valid_nll_loss", rec["valid_loss"])
            valid[int(rec["valid_num_updates"])] = rec
        elif "loss" in rec and "num_updates" in rec:
            rec["loss"] = rec.get("nll_loss", rec["loss"])
            train[int(rec["num_updates"])] = rec
    return [train[k] for k in sorted(train)], [valid[k] for k in sorted(valid)]


def plot(phases: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
    colors = ["#d62728", "#1f77b4", "#2ca02c"]
    for k, ph in enumerate(phases):
        off, c = ph["offset"], colors[k % len(colors)]
        ax.plot([off + int(r["num_updates"]) for r in ph["train"]], [float(r["loss"]) for r in ph["train"]],
                color=c, alpha=0.35, lw=1, label=f"train, {ph['label']}")
        if ph["valid"]:
            ax.plot([off + int(r["valid_num_updates"]) for r in ph["valid"]], [float(r["valid_loss"]) for r in ph["valid"]],
                    "o-", color=c, label=f"validation, {ph['label']}")
        if k:
            ax.axvline(off, color="#777777", ls=":", lw=1)
    ax.set_xlabel("updates (cumulative)")
    ax.set_ylabel("denoising cross-entropy (bits/token)")
    ax.set_yscale("log")
    ax.set_title("bartsmiles_small pretraining")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", action="append", required=True, metavar="LABEL|LOG|HARDWARE|COMMAND",
                    help="one training phase, in order: a label, fairseq's --log-file, the hardware in words, the command")
    ap.add_argument("--model", default="pretrained", help="exported model folder")
    ap.add_argument("--denoising", required=True, help="JSON from benchmarks/denoising_quality.py")
    ap.add_argument("--encode", default="benchmarks/results/encode_throughput.json", help="JSON from benchmarks/encode_throughput.py")
    ap.add_argument("--value", default="benchmarks/results/pretraining_value.json",
                    help="JSON from benchmarks/pretraining_value.py (the frozen-feature table of this model)")
    ap.add_argument("--value-label", default="", help="the label of this model's points in --value")
    ap.add_argument("--corpus", default="MOSES train (1,584,663 SMILES) plus the molecules of the USPTO-50k training reactions (108,436 SMILES): 1,693,099 SMILES, 59.6M tokens")
    args = ap.parse_args()

    from bartsmiles.model.checkpoint import read_metadata

    model_dir = Path(args.model)
    meta = read_metadata(model_dir / "model.pt")
    phases, offset = [], 0
    for spec in args.phase:
        label, log, hardware, command = spec.split("|", 3)
        train, valid = read_log(Path(log))
        if not train:
            raise SystemExit(f"{log}: no training records")
        tokens, prev = 0.0, 0
        for r in train:
            n = int(r["num_updates"])
            tokens += (n - prev) * float(r["wpb"])
            prev = n
        final = max([prev] + [int(r["valid_num_updates"]) for r in valid])  # updates after the last log line
        tokens += (final - prev) * float(train[-1]["wpb"])
        prev = final
        wps = sorted(float(r["wps"]) for r in train)
        phases.append(dict(label=label, log=log, hardware=hardware, command=command, train=train, valid=valid,
                           offset=offset, updates=prev, tokens=tokens, wall=float(train[-1]["wall"]),
                           wps_median=wps[len(wps) // 2]))
        offset += prev
    png = model_dir / "pretraining_loss.png"
    plot(phases, png)
    dq = json.loads(Path(args.denoising).read_text())
    enc = json.loads(Path(args.encode).read_text()) if Path(args.encode).is_file() else None
    total_updates = sum(p["updates"] for p in phases)
    total_tokens = float(meta.get("tokens_seen") or sum(p["tokens"] for p in phases))
    objective = meta.get("objective") or {"name": "denoising"}
    with_descriptors = "descriptors" in str(objective.get("name"))

    phase_rows = [
        f"| {p['label']} | {p['hardware']} | {p['updates']} | {p['tokens']/1e6:.1f}M | {p['wall']/60:.1f} min | "
        f"{p['wps_median']:,.0f} | {float(p['valid'][-1]['valid_loss']):.3f} |" if p["valid"] else
        f"| {p['label']} | {p['hardware']} | {p['updates']} | {p['tokens']/1e6:.1f}M | {p['wall']/60:.1f} min | {p['wps_median']:,.0f} | n/a |"
        for p in phases
    ]
    dq_rows = [
        f"| {name} | {res['molecules']} | {res['masked_token_accuracy']:.3f} | {res['valid_fraction']:.3f} | {res['exact_match_fraction']:.3f} |"
        for name, res in dq["results"].items()
    ]
    arch, dims = meta.get("arch"), meta.get("architecture") or {}
    lines = [
        f"# Model card: `{arch}`, the shipped default",
        "",
        "This is a BART denoising autoencoder over SMILES, trained with fairseq through `bartsmiles pretrain`.",
        "It is the starting point for fine-tuning. It is small on purpose, so that fine-tuning runs on a laptop",
        "CPU, and it was trained only briefly (see *Limits*). Every number below was read from the run's own logs",
        "by `scripts/make_model_card.py`; the logs are kept in `benchmarks/results/pretraining_logs/`.",
        "",
        "## Architecture and files",
        f"- Shape: {dims.get('encoder_layers')}+{dims.get('decoder_layers')} layers, d={dims.get('dim')}, {dims.get('heads')} heads, FFN {dims.get('ffn')}, {dims.get('positions')} positions; about 7.7M parameters",
        f"- Tokenizer: {meta.get('tokenizer')}, the atom-level SMILES regex",
        f"- Vocabulary: `dict.txt`; {len(meta.get('vocabulary') or [])} symbols including the 4 specials, plus `<mask>`. It covers MOSES, every MoleculeNet file and USPTO-50k train",
        "- `model.pt`: fp16 weights, no optimizer state, with a `bartsmiles` metadata entry",
        "- Load it with `bartsmiles.load_pretrained()`, which uses torch's weights-only loader with an allowlist",
        f"- Versions at export: {meta.get('versions')}",
        "",
        "## Training",
        f"- Corpus: {args.corpus}. Validation: the first SMILES of MOSES test (10,000 in the GPU phase, 2,000 in the CPU phase).",
        f"- Objective (last phase): `{objective.get('name')}`. BART text infilling:",
        "  - 30% of the tokens are masked, in spans with Poisson(λ=3) lengths.",
        "  - Each span becomes one `<mask>`, and 10% of the masks are random tokens instead.",
        "  - There is no rotation or permutation.",
        *([f"  - Plus the descriptor loss (weight {objective.get('descriptor_weight')}): a head on the mean-pooled encoder "
           f"output regresses {objective.get('descriptors')} standardized RDKit 2D descriptors of the molecule. "
           "The head is not part of the shipped weights."] if with_descriptors else []),
        f"- In all: {total_updates} updates, {total_tokens/1e6:.1f}M tokens (recorded in the model's metadata), "
        f"or {total_tokens/59.6e6:.2f} of an epoch.",
        f"- Phases, in order: {', '.join(p['label'] for p in phases)}. The validation loss is the denoising "
        "cross-entropy in every phase.",
        "",
        "| phase | hardware | updates | tokens | train wall time | median tokens/s | last validation loss (bits/token) |",
        "|---|---|---|---|---|---|---|",
        *phase_rows,
        "",
        "Commands:",
        *[f"- {p['label']}: `{p['command']}`" for p in phases],
        "",
        f"![pretraining loss]({png.name})",
        "",
        "## Denoising quality (measured)",
        f"- Noise: {dq['noise']}.",
        f"- Decoding: {dq['decoding']}.",
        f"- Seed {dq['seed']}, molecules drawn at random from each test file.",
        f"- Machine: {dq['machine']}.",
        f"- Command: `{dq['command']}`.",
        "",
        "| test set | molecules | masked-token accuracy (teacher-forced) | valid SMILES (greedy reconstruction) | exact match |",
        "|---|---|---|---|---|",
        *dq_rows,
        "",
    ]
    value = json.loads(Path(args.value).read_text()) if Path(args.value).is_file() else None
    if value:
        names = value.get("protocol", {}).get("datasets", [])
        mine = sorted((p for p in value["points"].values() if p["label"] == args.value_label),
                      key=lambda p: p["tokens_seen"])
        shown = [mine[-1]] if mine else []
        shown += [p for p in value["points"].values() if "shipped (denoising)" == p["label"]]
        rows = [f"| {p['label']} | {p['tokens_seen']/1e6:.1f}M | "
                + " | ".join(f"{p['scores'][n]['value']:.3f}" if n in p["scores"] else "" for n in names) + " |"
                for p in shown]
        rnd = []
        for n in names:
            vals = [e[n]["value"] for e in value["random_init"].values() if n in e]
            rnd.append(f"{sum(vals)/len(vals):.3f}" if vals else "")
        peers = value.get("peers", {}).get("ECFP4+RF", {})
        lines += [
            "## Frozen features on MoleculeNet (measured)",
            "- Mean-pooled encoder features, a linear head with its strength chosen on valid, scaffold split, test set;",
            "  ROC-AUC for the first five columns, RMSE (lower is better) for the last three.",
            f"- From `benchmarks/pretraining_value.py`; the whole curve is in `benchmarks/results/{Path(args.value).stem}.md`.",
            "",
            "| model | tokens | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
            *rows,
            "| random init, 3 seeds (mean) | 0 | " + " | ".join(rnd) + " |",
            "| ECFP4+RF (PEERS.md) | | " + " | ".join(f"{peers[n]:.3f}" if n in peers else "" for n in names) + " |",
            "",
            f"![value curve](../benchmarks/results/{Path(args.value).stem}.png)",
            "",
        ]
    if enc:
        mach = enc.get("machine") or {}
        where = (f"{mach.get('cpu_count')} CPU cores, {mach.get('torch_threads')} torch threads, torch {mach.get('torch')}"
                 if isinstance(mach, dict) else str(mach))
        lines += [
            "## Feature extraction speed",
            f"- `encode()` on {(enc.get('data') or {}).get('n', enc.get('n'))} MOSES molecules: "
            f"**{enc.get('molecules_per_second')} molecules/s**.",
            f"- Settings: batch {enc.get('batch_size')}, {enc.get('pooling')} pooling, on {where}.",
            f"- Command: `{enc.get('command')}`.",
            "",
        ]
    lines += [
        "## Limits",
        f"- **Little training.** The model has seen {total_tokens/59.6e6:.2f} of an epoch of its corpus.",
        "  - The first GPU run (985 updates, about 63M tokens, validation loss 0.337) lost its checkpoint: the process hung at exit and the lease ended.",
        "  - The shipped weights come from a 70-second GPU run, continued on 2 shared CPU cores.",
        "  - Expect fine-tuning to gain less from this model than from a fully pretrained one.",
        "  - To improve it, continue the documented CPU run (README, *Pretraining*), or run `scripts/device/pretrain.sh` on a GPU (about 400k tokens/s on an H200), and re-export.",
        "- **Reconstruction is weak.** Greedy reconstruction of a whole corrupted molecule gives a valid SMILES for about a third of test molecules and almost never the exact molecule; the masked-token accuracy is the better guide to what the model has learnt.",
        "- **The validation losses of the phases are not strictly comparable.** The GPU phase validated on the first 10,000 MOSES test SMILES, and the CPU phases on the first 2,000 of them.",
        "- **Positions past about 60 tokens were rarely trained,** because MOSES SMILES are short. Longer molecules, up to 128 tokens, depend on fine-tuning.",
        "- **Measured downstream value is small.** See the frozen-feature table above against the random-init and "
        "ECFP4+RF rows; fine-tuned rows are in `benchmarks/results/benchmark_moleculenet_cpu.md` and the README.",
        "",
    ]
    (model_dir / "MODEL_CARD.md").write_text("\n".join(lines))
    print(f"wrote {model_dir / 'MODEL_CARD.md'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
