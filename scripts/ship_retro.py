"""Ship a trained retrosynthesis model as ``pretrained/retro/`` (the model ``--model retro`` names).

Writes ``pretrained/retro/model.pt`` (fp16 weights, no optimizer state, with the ``bartsmiles``
metadata entry), its ``dict.txt``, and ``MODEL_CARD.md``. Every number in the card is read from a
file: the learning curve (``benchmarks/retro_alignment.py``'s JSON, which also records the
training command and the training wall time), and the scoring of the exported model on all 5,004
test reactions (``bartsmiles benchmark-retro``'s JSON).

    python scripts/ship_retro.py export --checkpoint runs/retro_full/rooted/checkpoint_last.pt
    bartsmiles benchmark-retro --model pretrained/retro --beam 10 --out benchmarks/results/retro_shipped
    python scripts/ship_retro.py card --curve benchmarks/results/retro_rooted_full.json \\
        --test benchmarks/results/retro_shipped.json --train-dir runs/retro_full/rooted
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bartsmiles.model.checkpoint import export_model, read_metadata

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "pretrained" / "retro"

#: The published anchors of issue 13 (USPTO-50k, Liu split, reaction class unknown; top-1/3/5/10 in %).
ANCHORS = [
    ("R-SMILES (Zhong et al., Chem. Sci. 2022)", "56.3", "79.2", "86.2", "91.0"),
    ("Augmented Transformer ×100 (Tetko et al., Nat. Commun. 2020)", "53.5", "—", "81.0", "85.7"),
]


def export(args) -> int:
    checkpoint = Path(args.checkpoint)
    target = export_model(checkpoint, args.out, fp16=True, dict_path=checkpoint.parent / "dict.txt",
                          extra_metadata={"shipped_as": "retro"})
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return 0


def _flag(argv: list[str], name: str) -> str:
    """The value of fairseq flag ``name`` in a run's recorded argument list (its first occurrence)."""
    return argv[argv.index(name) + 1] if name in argv else "?"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _epochs_text(epochs: float) -> str:
    """``0.80`` -> "0.80 of an epoch"; about 1 -> "one epoch" (published models train for hundreds)."""
    return "one epoch" if abs(epochs - 1.0) < 0.01 else f"{epochs:.2f} of an epoch"


def _wall_time(done: dict, updates: int) -> str:
    """The training wall time from the run's ``done`` record (``benchmarks/retro_alignment.py``): one part,
    or each call of a continued run (``to_update``: the update it was asked to reach; ``updates``: reached)."""
    parts = done.get("parts")
    if not parts:
        return f"{done.get('train_s', float('nan')) / 3600:.2f} h, one thread, sharing the cores with other jobs"
    texts, start = [], 0
    for p in parts:
        end = min(int(p["to_update"]), updates)
        texts.append(f"{end - start:,} updates in {p['train_s'] / 3600:.2f} h on {p['threads']} "
                     f"thread{'s' if p['threads'] > 1 else ''}{' shared with other jobs' if p.get('shared') else ''}")
        start = end
    return f"{sum(p['train_s'] for p in parts) / 3600:.2f} h: {', then '.join(texts)}"


def card(args) -> int:
    curve = json.loads(Path(args.curve).read_text())
    test = json.loads(Path(args.test).read_text())
    meta = read_metadata(Path(args.out) / "model.pt")
    train_dir = Path(args.train_dir)
    done = json.loads((train_dir / "done").read_text()) if (train_dir / "done").is_file() else {}
    argv = json.loads((train_dir / "fairseq_train_argv.json").read_text())
    points = curve["curves"]["rooted"]
    settings = curve["settings"]
    s = test["scores"]
    machine = curve["machine"]
    hardware = f"{machine.get('cpu', '?')}, {machine.get('usable_cpus', '?')} CPU cores, no GPU"
    updates = int(meta.get("num_updates") or points[-1]["updates"])
    pairs = updates * settings["batch_size"]
    lines = [
        "# Model card: `retro`, the shipped retrosynthesis model",
        "",
        f"> **Read this first.** On the 5,004 test reactions of USPTO-50k (Liu split, reaction class unknown) "
        f"this model's top-1 is **{_pct(s['top1'])}%** and its top-10 **{_pct(s['top10'])}%**; R-SMILES reaches "
        f"56.3% and 91.0%. It was trained for {_epochs_text(pairs / (settings['train'] * settings['k']))} on 2 CPU "
        "cores (published models train for hundreds), so it shows what the command "
        "does, not a tool to plan syntheses with. A GPU run (`scripts/device/retro.sh`) is prepared to replace it.",
        "",
        "It reads a product and writes its reactants, both as SMILES. `bartsmiles retro PRODUCT` and "
        "`bartsmiles.seq2seq.retrosynthesis(products)` use it by default (`--model retro`).",
        "",
        "## Architecture and files",
        f"- `{meta.get('arch')}` (BART, {meta.get('architecture')}), started from the shipped pretrained model.",
        "- Spelling: root-aligned SMILES (the product written from a root atom, the reactants from the atoms mapped "
        "to it; `bartsmiles prepare-retro`), so test-time augmentation writes the product from more roots.",
        "- `model.pt`: fp16 weights, no optimizer state, with a `bartsmiles` metadata entry; `dict.txt`: the shipped vocabulary.",
        f"- Versions at export: {meta.get('versions')}",
        "",
        "## Training",
        f"- Data: USPTO-50k, Liu split, train: {curve.get('mapped', {}).get('train', '?')} of {settings['train']} reactions "
        f"atom-mapped by Indigo; {settings['k']} root-aligned views of each "
        f"({curve.get('unmapped_train', '?')} unmappable reactions kept as canonical pairs).",
        f"- {updates} updates of {settings['batch_size']} pairs ({pairs:,} pairs, about "
        f"{pairs / (settings['train'] * settings['k']):.2f} of an epoch of the views), label smoothing "
        f"{_flag(argv, '--label-smoothing')}, peak "
        f"learning rate {settings['lr']} after {_flag(argv, '--warmup-updates')} warm-up updates, decaying "
        f"linearly towards zero at {_flag(argv, '--total-num-update')} updates (one epoch) and stopped at "
        f"{updates}; seed {settings['seed']}.",
        f"- Hardware: {hardware}; training wall time {_wall_time(done, updates)}.",
        f"- Command: `{curve['command']}`",
        "",
        "## Learning curve (measured)",
        f"Top-1 and top-5 by beam search (beam {settings['beam']}) on a fixed, seeded sample of "
        f"{len(curve['sample'])} valid reactions; teacher-forced token accuracy on the same sample.",
        "",
        "| updates | valid token accuracy (%) | top-1 (%) | top-5 (%) | invalid top-1 (%) |",
        "|---|---|---|---|---|",
        *[f"| {p['updates']} | {p.get('valid_token_accuracy') or float('nan'):.1f} | {_pct(p['top1'])} | "
          f"{_pct(p.get('top5', float('nan')))} | {_pct(p['invalid_top1'])} |" for p in points],
        "",
        "## Test set (measured)",
        f"All {s['n']} test reactions of the Liu split, beam {test['beam']}, "
        f"{'no test-time augmentation' if not test.get('augment') else str(test['augment']) + ' extra rooted views'}; "
        f"generation {test['generate_s'] / 60:.0f} min on {test['machine'].get('cpu', '?')} "
        f"({test['machine'].get('usable_cpus', '?')} cores). Command: `{test['command']}`.",
        "",
        "| model | top-1 | top-3 | top-5 | top-10 | invalid top-1 |",
        "|---|---|---|---|---|---|",
        f"| this model | {_pct(s['top1'])} | {_pct(s['top3'])} | {_pct(s['top5'])} | {_pct(s['top10'])} | "
        f"{_pct(s['invalid_top1'])} |",
        *[f"| {name} | {a} | {b} | {c} | {d} | |" for name, a, b, c, d in ANCHORS],
        "",
        "## Limits",
        "- Far from the published models, which train for hundreds of epochs on GPUs; see the README's learning curve.",
        "- Invalid candidates are dropped and counted by `bartsmiles retro`, never returned as answers.",
        "- Trained on US patent reactions only (USPTO-50k): ten reaction classes, no stereo-selective or "
        "enzymatic chemistry to speak of.",
        "",
    ]
    (Path(args.out) / "MODEL_CARD.md").write_text("\n".join(lines))
    print(f"wrote {Path(args.out) / 'MODEL_CARD.md'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write OUT/model.pt (fp16) and OUT/dict.txt from a trained checkpoint")
    p.add_argument("--checkpoint", required=True, help="a smiles_seq2seq fairseq checkpoint (its dict.txt beside it)")
    p.add_argument("--out", default=str(OUT))
    p.set_defaults(func=export)
    p = sub.add_parser("card", help="write OUT/MODEL_CARD.md from the learning curve and the test scoring")
    p.add_argument("--curve", required=True, help="JSON from benchmarks/retro_alignment.py (--only rooted)")
    p.add_argument("--test", required=True, help="JSON from bartsmiles benchmark-retro on OUT")
    p.add_argument("--train-dir", required=True, help="the training run folder (its 'done' file has the wall time)")
    p.add_argument("--out", default=str(OUT))
    p.set_defaults(func=card)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
