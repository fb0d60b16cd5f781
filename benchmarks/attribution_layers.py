"""Where should gradient x input look? The input embeddings against each encoder layer's output.

A probe for issue 14, on the models and molecules that ``benchmarks/attribution_groundtruth.py``
cached: for each task's fine-tuned model (one seed), the positive test molecules it explained are
attributed by gradient x activation at the encoder's input token embeddings (layer 0: exactly the
``gradient_x_input`` method with a zero baseline) and at the output of each encoder layer
1..L (position space, so the token -> atom mapping is the same). Scored by per-molecule atom
ROC-AUC against the ground truth, as in the ground-truth table.

    python benchmarks/attribution_layers.py --work-dir runs/attribution_gt_enc --seed 0 \\
        --out benchmarks/results/attribution_layers

Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bartsmiles.attribution.attributor import Attributor
from bartsmiles.attribution.groundtruth import atom_auc
from bartsmiles.attribution.inputs import make_batch
from bartsmiles.attribution.mapping import map_token_scores
from bartsmiles.evaluation.machine import machine_info


def layer_scores(att: Attributor, molecule) -> list[np.ndarray]:
    """Atom scores of gradient x activation at the input embeddings (index 0) and after each encoder layer."""
    encoder = att.model.encoder
    batch = make_batch([molecule.ids], int(att.vocab.pad), att.device)
    acts: dict[int, torch.Tensor] = {}

    def keep(index):
        def hook(module, inputs, output):
            acts[index] = output[0] if isinstance(output, tuple) else output
        return hook

    hooks = [layer.register_forward_hook(keep(i + 1)) for i, layer in enumerate(encoder.layers)]
    try:
        acts[0] = encoder.embed_tokens(batch.src).detach().requires_grad_(True)
        with torch.enable_grad():
            out = att._forward(acts[0], batch.src, batch.lengths, batch.prev)[:, 0].sum()
            grads = torch.autograd.grad(out, [acts[k] for k in range(len(acts))])
    finally:
        for h in hooks:
            h.remove()
    scores = []
    for k, grad in enumerate(grads):
        act = acts[k]
        if k > 0:  # fairseq's encoder layers are time-major: (L, B, d)
            act, grad = act.transpose(0, 1), grad.transpose(0, 1)
        position = (act * grad).sum(-1)[0].detach().double().cpu().numpy()
        scores.append(map_token_scores(molecule.alignment, position[1:-1], molecule.n_atoms).atom_scores)
    return scores


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work-dir", default="runs/attribution_gt_enc", help="the ground-truth script's --work-dir")
    p.add_argument("--seed", type=int, default=0, help="the fine-tuning seed whose models are probed")
    p.add_argument("--n-explain", type=int, default=25, help="positive test molecules per task (as the table)")
    p.add_argument("--out", default="benchmarks/results/attribution_layers")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    t0 = time.perf_counter()
    rows = []
    for task_dir in sorted(d for d in work.iterdir() if (d / "molecules.json").is_file()):
        checkpoint = task_dir / f"seed{args.seed}" / "run" / "checkpoint_best.pt"
        if not checkpoint.is_file():
            continue
        molecules = json.loads((task_dir / "molecules.json").read_text())
        positives = [m for m in molecules if m["split"] == "test" and m["label"] == 1][: args.n_explain]
        att = Attributor(checkpoint)
        per_layer: list[list[float]] = []
        for entry, molecule in zip(positives, att.prepare([m["smiles"] for m in positives])):
            aucs = [atom_auc(s, entry["truth"]) for s in layer_scores(att, molecule)]
            per_layer.append([np.nan if a is None else a for a in aucs])
        means = np.nanmean(np.array(per_layer), axis=0)
        rows.append({"task": task_dir.name, "n_molecules": len(positives), "checkpoint": str(checkpoint),
                     "atom_auc_by_layer": [round(float(x), 4) for x in means]})
        print(task_dir.name, " ".join(f"{x:.3f}" for x in means), flush=True)
    n_layers = len(rows[0]["atom_auc_by_layer"]) if rows else 0
    record = {"command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
              "machine": machine_info(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": args.seed,
              "seconds": round(time.perf_counter() - t0, 1), "tasks": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    header = "| task | " + " | ".join(["input embeddings (gradient × input)"] +
                                      [f"after layer {k}" for k in range(1, n_layers)]) + " |"
    lines = ["# Gradient × activation by encoder layer (atom ROC-AUC)", "",
             f"Command: `{record['command']}`  ", f"Machine: {record['machine'].get('cpu', '?')}, "
             f"{record['machine'].get('usable_cpus', '?')} cores; {record['date']}. Models: `{args.work_dir}`, "
             f"seed {args.seed}; the positive test molecules each task explained (mean per-molecule atom ROC-AUC).", "",
             header, "|---|" + "---|" * n_layers]
    lines += [f"| {r['task']} | " + " | ".join(f"{x:.3f}" for x in r["atom_auc_by_layer"]) + " |" for r in rows]
    if rows:
        mean = np.mean([r["atom_auc_by_layer"] for r in rows], axis=0)
        lines.append("| **mean** | " + " | ".join(f"**{x:.3f}**" for x in mean) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
