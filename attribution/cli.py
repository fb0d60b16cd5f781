"""``bartsmiles-attribute``: explain a fine-tuned BARTSmiles model's predictions (or a neuron).

    bartsmiles-attribute MODEL "O=[N+]([O-])c1ccccc1" "CCO" --out attr/
    bartsmiles-attribute MODEL --csv molecules.csv --smiles-column smiles --target nitro --out attr/
    bartsmiles-attribute MODEL --method mask_occlusion --attached "CC(=O)Nc1ccc(O)cc1" --out occ/
    bartsmiles-attribute PRETRAINED --neuron 17 --csv molecules.csv --out attr/
    bartsmiles-attribute SEED0 --member SEED1 --member SEED2 --csv molecules.csv --out attr/

``--member`` (repeatable) adds fine-tuned models of the same task: the attribution is then that
of the ensemble's mean output, the mean of the members' attributions (``Attributor``'s docstring).
An estimator saved with ``n_models=k`` keeps its first member in ``PATH`` and the others in
``PATH/member1`` ... ``PATH/member<k-1>``.

``--method`` picks the attribution method (:data:`bartsmiles.attribution.attributor.METHODS`):
``edit_occlusion`` (each atom edited out of the molecule), ``edit_gradient`` (edit occlusion plus
gradient x input), ``gradient_x_input``, ``ig`` (integrated gradients), ``mask_occlusion``,
``shapley``.  The default depends on what the model's head reads
(:data:`~bartsmiles.attribution.attributor.DEFAULT_METHODS`): ``edit_gradient`` for the decoder
head (the fine-tuning default), ``gradient_x_input`` for the encoder head and for ``--neuron``.

Writes into ``--out``:

* ``summary.csv`` -- per molecule: method, output, baseline output, sum of scores, delta, converged
  (empty for the methods that are not additive);
* ``atoms.csv`` -- per molecule and atom: the atom score and its environment score (the one drawn;
  ``--environment-radius``);
* ``tokens.csv`` -- per molecule and position (``<s>``, tokens, ``</s>``): the token score and its atoms;
* ``substructures.csv`` -- per molecule: functional groups, BRICS fragments, scaffold / side chains
  and ``--smarts`` patterns with their summed scores, ranked;
* ``attributions.json`` -- all of the above per molecule;
* ``images/mol_XXXX.png`` (or ``.svg``), ``grid.png`` and ``report.html`` (unless ``--no-images``);
* ``errors.csv`` -- the inputs that could not be attributed (invalid or too long), with the reason.

``--check`` adds the deletion check (:mod:`bartsmiles.attribution.faithfulness`): per molecule,
the output's fall when the ``--check-atoms`` atoms its map ranks first (environment scores, as
drawn) are hidden behind ``<mask>``, against ``--check-draws`` random sets of as many atoms.
``summary.csv`` gets ``check_atoms``, ``check_top_drop``, ``check_random_drop``, ``check_gain``
and ``check_rank``, ``attributions.json`` the whole check, and the last line says on how many
molecules the map's atoms beat random ones.  A gain near 0 says the picture is not what the model
reads, however chemical it looks.  Not for ``--neuron``.

The molecules are attributed :data:`CHUNK` at a time, with a progress bar on a terminal
(``--no-progress`` turns it off).  Each finished chunk is kept in ``OUT/.partial/`` until the
outputs are written, so a run that is killed resumes where it stopped when the same command is run
again (the same models, options and inputs; anything else starts afresh).  In int8, the CPU
default of the edit methods, a molecule's scores move by about 0.01 with the other molecules in
its batch (README, Attribution), so a file gives the same numbers on every run but not exactly
those of one ``Attributor.attribute`` call over it.

Exit status: 0 when at least one molecule was attributed, 2 for none / bad arguments.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
from tqdm.auto import tqdm

from bartsmiles.core.files import check_writable, read_csv
from bartsmiles.errors import AttributionError, BartSmilesError, InvalidSmilesError, MissingColumnError, run_handler
from bartsmiles.model.device import resolve_device
from bartsmiles.model.resolve import resolve_checkpoint

from .attributor import DEFAULT_METHODS, METHODS, PRECISIONS, Attributor, NeuronAttributor, check_method
from .draw import draw_attribution, draw_grid, write_html_report
from .environment import DEFAULT_ENVIRONMENT_RADIUS, check_radius
from .faithfulness import DEFAULT_CHECK_ATOMS, DEFAULT_CHECK_DRAWS, DeletionCheck
from .gradient_x_input import DEFAULT_ALPHA, check_alpha
from .result import Attribution
from .shapley import ESTIMATORS, FEATURES

__all__ = ["main", "build_parser", "CHUNK"]

#: molecules per ``attribute`` call: one step of the progress bar, large enough to keep every
#: method's batches full (an edit method runs about 8 edited copies per molecule)
CHUNK = 512


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bartsmiles-attribute", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="fine-tuned checkpoint (.pt or folder); with --neuron also a pretrained model")
    p.add_argument("smiles", nargs="*", help="SMILES to explain")
    p.add_argument("--member", action="append", default=[], metavar="MODEL",
                   help="another fine-tuned model of the same task (repeatable): explain the mean output of the "
                        "ensemble MODEL + members, as the mean of their attributions (one run per model; not with "
                        "--neuron). A saved estimator ensemble: --member PATH/member1 --member PATH/member2 ...")
    p.add_argument("--csv", help="CSV file with a SMILES column (instead of / besides positional SMILES)")
    p.add_argument("--smiles-column", default="smiles", help="SMILES column of --csv (default: smiles)")
    p.add_argument("--target", default="0", help="output index or task name (default 0)")
    p.add_argument("--neuron", type=int, default=None, help="attribute pooled encoder feature K instead of an output")
    p.add_argument("--pooling", default="mean", choices=("mean", "bos", "eos"), help="pooling of --neuron")
    p.add_argument("--output", default="logit", choices=("logit", "prediction"),
                   help="attribute the head's logit (default) or the prediction (probability / value)")
    p.add_argument("--method", default=None, metavar="{" + ",".join(METHODS) + "}",
                   help="attribution method; default by what the model's head reads: "
                        + ", ".join(f"{m} for {h}" for h, m in DEFAULT_METHODS.items())
                        + " and --neuron (chosen by the ground-truth benchmark: README, Attribution)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="fp32, bf16 (autocast for the gradient methods; a bfloat16 copy of the model for "
                        "edit_occlusion and the edits of edit_gradient), int8 (edit_occlusion and edit_gradient on a "
                        "CPU: the edits on an int8 copy of the model, the gradient in fp32; the same ground-truth "
                        "AUCs) or auto (int8 for those two on a CPU; else bf16 where the CPU or GPU has it in "
                        "hardware); default: fp32, auto for edit_occlusion and edit_gradient")
    p.add_argument("--device", default="cpu",
                   help="where the model runs: cpu (default), cuda, cuda:N or auto (a GPU if there is one)")
    p.add_argument("--baseline", default=None, choices=("pad", "mask", "eos", "zero"),
                   help="token put in place of the molecule's tokens (default: pad for ig, mask for mask_occlusion "
                        "and shapley); zero: a zero embedding, gradient_x_input only (its default)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="gradient_x_input and edit_gradient: take the gradient at baseline + ALPHA * (input - baseline), "
                        f"0 < ALPHA <= 1 (default {DEFAULT_ALPHA}: where a confident model is not saturated; "
                        "1: plain gradient x input)")
    p.add_argument("--n-steps", type=int, default=50, help="ig: integration steps (default 50)")
    p.add_argument("--ig-method", default="gausslegendre", help="ig: Captum integration rule (default gausslegendre)")
    p.add_argument("--internal-batch-size", type=int, default=None, help="ig: Captum internal batch size")
    p.add_argument("--nt-samples", type=int, default=0,
                   help="ig: SmoothGrad over this many noisy copies of the input (default 0: plain integrated "
                        "gradients)")
    p.add_argument("--nt-stdev", type=float, default=0.1,
                   help="ig with --nt-samples: noise std as a fraction of the input embeddings' range (default 0.1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="ig: molecules attributed together (default 16); other methods: most sequences per "
                        "forward pass")
    p.add_argument("--attached", action="store_true",
                   help="mask_occlusion: also mask the atom's bond / branch / ring-closure tokens")
    p.add_argument("--occlude-decoder", action="store_true", help="mask_occlusion: mask the decoder's input too")
    p.add_argument("--joint-copies", action=argparse.BooleanOptionalAction, default=True,
                   help="edit_occlusion and edit_gradient: also delete each group of repeated terminal heteroatoms (two chlorines, "
                        "a CF3's fluorines) at once and share the joint drop among them (default: on)")
    p.add_argument("--branch-fill", action=argparse.BooleanOptionalAction, default=True,
                   help="edit_occlusion and edit_gradient: score each atom without an edit that is not in a ring (the "
                        "carbonyl carbon of an amide) by the sum of its edited neighbours' scores (default: on)")
    p.add_argument("--n-samples", type=int, default=25, help="shapley: random permutations (default 25)")
    p.add_argument("--estimator", default="sampling", choices=ESTIMATORS,
                   help="shapley: Captum ShapleyValueSampling (default) or FeatureAblation")
    p.add_argument("--features", default="tokens", choices=FEATURES,
                   help="shapley: players are tokens (default) or atoms (+ one remainder player)")
    p.add_argument("--seed", type=int, default=0,
                   help="shapley: seed of the permutations; ig with --nt-samples: seed of the noise")
    p.add_argument("--environment-radius", type=int, default=DEFAULT_ENVIRONMENT_RADIUS, metavar="R",
                   help="pictures show each atom's score plus 1/d times the mean score of the atoms d bonds away, "
                        f"d = 1..R (default {DEFAULT_ENVIRONMENT_RADIUS}, chosen by the ground-truth table); "
                        "0: the atom scores alone. atoms.csv has both")
    p.add_argument("--tolerance", type=float, default=0.05, help="relative convergence-delta tolerance")
    p.add_argument("--on-delta", default="warn", choices=("warn", "raise", "ignore"),
                   help="above the tolerance: warn (default), fail, or ignore")
    p.add_argument("--smarts", action="append", default=[], metavar="NAME=SMARTS",
                   help="extra substructure to score (repeatable)")
    p.add_argument("--no-groups", action="store_true", help="skip the shipped functional-group library")
    p.add_argument("--no-brics", action="store_true", help="skip BRICS fragments")
    p.add_argument("--no-scaffold", action="store_true", help="skip the Murcko scaffold / side chains")
    p.add_argument("--check", action="store_true",
                   help="deletion check: does hiding each map's top atoms move the output more than hiding as many "
                        "random atoms? (columns check_* in summary.csv; not for --neuron)")
    p.add_argument("--check-atoms", type=int, default=DEFAULT_CHECK_ATOMS, metavar="K",
                   help=f"--check: atoms hidden per molecule (default {DEFAULT_CHECK_ATOMS})")
    p.add_argument("--check-draws", type=int, default=DEFAULT_CHECK_DRAWS, metavar="N",
                   help=f"--check: random atom sets per molecule (default {DEFAULT_CHECK_DRAWS}; seeded by --seed)")
    p.add_argument("--out", default="attribution", help="output folder (default ./attribution)")
    p.add_argument("--format", default="png", choices=("png", "svg"), help="per-molecule image format")
    p.add_argument("--style", default="atoms", choices=("atoms", "similarity"), help="image style")
    p.add_argument("--no-images", action="store_true", help="write tables and JSON only")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (by default one is shown on a terminal, on standard error)")
    return p


def _inputs(args) -> list[str]:
    smiles = list(args.smiles)
    if args.csv:
        frame = read_csv(args.csv)
        if args.smiles_column not in frame.columns:
            raise MissingColumnError(f"no column {args.smiles_column!r} in {args.csv} "
                                     f"(columns: {list(frame.columns)})")
        smiles += ["" if pd.isna(s) else str(s) for s in frame[args.smiles_column]]
    return smiles


def _user_smarts(items: Sequence[str]) -> dict:
    out = {}
    for item in items:
        name, sep, pattern = item.partition("=")
        if not sep or not name or not pattern:
            raise AttributionError(f"--smarts wants NAME=SMARTS, got {item!r}")
        out[name] = pattern
    return out


#: options that change what is written, not the scores: a run resumed with other values of these
#: reuses the finished chunks
_OUTPUT_ONLY = frozenset({"out", "no_images", "format", "style", "no_progress", "smarts", "no_groups", "no_brics",
                          "no_scaffold", "csv", "smiles_column", "smiles"})


def _model_key(path: str) -> dict:
    """The checkpoint ``path`` names, as a resumed run must find it again: file, size and time."""
    try:
        file = Path(resolve_checkpoint(path))
        stat = file.stat()
    except (OSError, BartSmilesError):
        return {"path": str(path)}  # a pretrained model folder for --neuron, say: the name alone
    return {"path": str(file.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _run_key(args, inputs: Sequence[str]) -> str:
    """What a kept chunk depends on: the models, every option that changes scores, the inputs in
    order and :data:`CHUNK` (a hex digest; a resumed run uses the chunks of its own key only)."""
    options = {k: v for k, v in vars(args).items() if k not in _OUTPUT_ONLY}
    options["model"] = _model_key(args.model)
    options["member"] = [_model_key(m) for m in args.member]
    blob = json.dumps({"options": options, "inputs": list(inputs), "chunk": CHUNK}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _attribute_in_chunks(attributor, run, inputs: list[str], partial: Path, progress: bool,
                         check=None) -> tuple[list, list, int]:
    """``run`` over ``inputs`` :data:`CHUNK` at a time, each finished chunk saved in ``partial`` (and
    read back from there when it is already saved); with ``check``, each chunk's deletion checks
    too (``check(attributions)``, kept in the same file).  The results and the checks (``None``
    each without ``check``) in input order, and how many were read back."""
    partial.mkdir(parents=True, exist_ok=True)
    results: list = []
    checks: list = []
    resumed = 0
    with tqdm(total=len(inputs), desc="attributing", unit="mol", dynamic_ncols=True,
              disable=None if progress else True) as bar:  # None: shown on a terminal only
        for k, start in enumerate(range(0, len(inputs), CHUNK)):
            chunk = inputs[start:start + CHUNK]
            path = partial / f"chunk_{k:06d}.json"
            if path.is_file():
                records = json.loads(path.read_text())
                molecules = attributor.prepare([r["smiles"] for r in records])
                results += [Attribution.from_dict(r, m.alignment) for r, m in zip(records, molecules)]
                checks += [DeletionCheck.from_dict(r["deletion_check"]) if r.get("deletion_check") else None
                           for r in records]
                resumed += len(chunk)
            else:
                done = run(chunk)
                verdicts = check(done) if check is not None else [None] * len(done)
                records = [{**a.to_dict(), **({"deletion_check": c.to_dict()} if c is not None else {})}
                           for a, c in zip(done, verdicts)]
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(records))
                os.replace(tmp, path)  # whole or absent: a kill while writing loses this chunk only
                results += done
                checks += verdicts
            bar.update(len(chunk))
    return results, checks, resumed


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # SMILES may follow options
    return run_handler("bartsmiles-attribute", lambda: _attribute(args))


def _attribute(args) -> int:
    if args.method is not None:
        check_method(args.method)  # before any work: an unknown method is one line, exit 2
    try:
        check_radius(args.environment_radius)
    except ValueError as exc:
        raise AttributionError(f"--environment-radius: {exc}") from None
    try:
        check_alpha(args.alpha, "--alpha")
    except ValueError as exc:
        raise AttributionError(str(exc)) from None
    resolve_device(args.device)  # a GPU this machine lacks: one line, before the output folder is made
    out = Path(args.out)
    check_writable(out / "summary.csv", make_folder=True)  # before any work: the output folder must be usable
    smiles = _inputs(args)
    if not smiles:
        print("bartsmiles-attribute: no SMILES given (positional or --csv)", file=sys.stderr)
        return 2
    smarts = _user_smarts(args.smarts)
    common = dict(baselines=args.baseline, n_steps=args.n_steps, method=args.ig_method,
                  internal_batch_size=args.internal_batch_size, batch_size=args.batch_size,
                  tolerance=args.tolerance, on_delta=args.on_delta, n_samples=args.n_samples,
                  estimator=args.estimator, features=args.features, attached=args.attached,
                  occlude_decoder=args.occlude_decoder, seed=args.seed, nt_samples=args.nt_samples,
                  nt_stdev=args.nt_stdev, environment_radius=args.environment_radius, alpha=args.alpha,
                  joint_copies=args.joint_copies, branch_fill=args.branch_fill)
    if args.neuron is not None and args.member:
        raise AttributionError("--member is for an ensemble's outputs; --neuron explains a feature of one model")
    if args.check and args.neuron is not None:
        raise AttributionError("--check is for a model's outputs; --neuron explains a feature")
    if args.check and (args.check_atoms < 1 or args.check_draws < 1):
        raise AttributionError(f"--check-atoms and --check-draws must be at least 1, got {args.check_atoms} and "
                               f"{args.check_draws}")
    if args.neuron is not None:
        attributor = NeuronAttributor(args.model, pooling=args.pooling, method=args.method, precision=args.precision,
                                       device=args.device)
        run = lambda batch: attributor.attribute(batch, args.neuron, **common)  # noqa: E731
    else:
        models = [args.model, *args.member] if args.member else args.model
        attributor = Attributor(models, output=args.output, method=args.method, precision=args.precision,
                                device=args.device)
        target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
        run = lambda batch: attributor.attribute(batch, target, **common)  # noqa: E731

    # check every input first: the bad ones are reported, the rest attributed
    good, errors = [], []
    for i, s in enumerate(smiles):
        try:
            attributor.prepare([s])
            good.append(i)
        except InvalidSmilesError as exc:
            errors.append({"row": i, "smiles": s, "error": str(exc).replace("at index 0", f"at row {i}")})
    if errors:
        pd.DataFrame(errors).to_csv(out / "errors.csv", index=False)
        for e in errors:
            print(f"bartsmiles-attribute: skipped row {e['row']}: {e['error']}", file=sys.stderr)
    if not good:
        print("bartsmiles-attribute: no molecule could be attributed", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        inputs = [smiles[i] for i in good]
        check = (lambda done: attributor.deletion_check(done, k=args.check_atoms, n_random=args.check_draws,  # noqa: E731
                                                        seed=args.seed)) if args.check else None
        results, checks, resumed = _attribute_in_chunks(attributor, run, inputs,
                                                        out / ".partial" / _run_key(args, inputs),
                                                        progress=not args.no_progress, check=check)
    for w in caught:
        if f"{os.sep}torch{os.sep}" in str(w.filename):  # torch's own deprecation notes say nothing to a user
            continue
        print(f"bartsmiles-attribute: warning: {w.message}", file=sys.stderr)

    tables, summary, atoms, tokens, subs, records = [], [], [], [], [], []
    for row, a, c in zip(good, results, checks):
        table = a.substructures(groups=not args.no_groups, brics=not args.no_brics,
                                scaffold=not args.no_scaffold, smarts=smarts)
        tables.append(table)
        summary.append({"row": row, "smiles": a.smiles, "method": a.attribution_method, "quantity": a.quantity,
                        "output": a.output,
                        "baseline_output": a.baseline_output, "total": a.total, "delta": a.delta,
                        "converged": a.converged, "remainder": a.remainder})
        if c is not None:
            summary[-1].update(check_atoms=" ".join(str(i) for i in c.atoms), check_top_drop=c.top_drop,
                               check_random_drop=c.random_drop, check_gain=c.gain, check_rank=c.rank)
        af = a.atom_frame()
        af.insert(0, "row", row)
        af.insert(1, "smiles", a.smiles)
        atoms.append(af)
        tf = a.token_frame()
        tf.insert(0, "row", row)
        tokens.append(tf)
        st = table.copy()
        st.insert(0, "row", row)
        st.insert(1, "smiles", a.smiles)
        subs.append(st)
        rec = a.to_dict()
        rec["row"] = row
        rec["substructures"] = json.loads(table.to_json(orient="records"))
        if c is not None:
            rec["deletion_check"] = c.to_dict()
        records.append(rec)
    pd.DataFrame(summary).to_csv(out / "summary.csv", index=False)
    pd.concat(atoms).to_csv(out / "atoms.csv", index=False)
    pd.concat(tokens).to_csv(out / "tokens.csv", index=False)
    pd.concat(subs).to_csv(out / "substructures.csv", index=False)
    (out / "attributions.json").write_text(json.dumps({"model": str(args.model), "members": list(args.member),
                                                       "method": attributor.method,
                                                       "precision": attributor.precision,
                                                       "device": str(attributor.device), "molecules": records,
                                                       "errors": errors}, indent=1))
    if not args.no_images:
        (out / "images").mkdir(exist_ok=True)
        names = []
        for row, a in zip(good, results):
            name = f"images/mol_{row:04d}.{args.format}"
            draw_attribution(a, out / name, fmt=args.format, style=args.style)
            names.append(name)
        draw_grid(results, out / "grid.png", style=args.style)
        write_html_report(results, out / "report.html", tables=tables, style=args.style,
                          images=names if args.format == "svg" else None)
    shutil.rmtree(out / ".partial", ignore_errors=True)  # every output is written: nothing to resume
    if resumed:
        print(f"bartsmiles-attribute: resumed {resumed} molecule(s) from the interrupted run")
    if args.check:
        gains = [c.gain for c in checks]
        print(f"bartsmiles-attribute: deletion check: hiding each map's top {args.check_atoms} atom(s) moved the "
              f"{args.output} by {sum(c.top_drop for c in checks) / len(checks):+.3f} "
              f"on average, {sum(c.random_drop for c in checks) / len(checks):+.3f} for as many random atoms; "
              f"the map's atoms moved it more on {sum(g > 0 for g in gains)} of {len(gains)} molecule(s)")
    print(f"bartsmiles-attribute: {len(results)} molecule(s) attributed, {len(errors)} skipped -> {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
