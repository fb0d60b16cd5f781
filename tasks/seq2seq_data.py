"""Reading the reaction pair files of the ``smiles_seq2seq`` task: find, parse, check and encode.

:func:`split_file` finds the one file of a split in the data folder, :func:`read_pairs` reads its
reaction lines or CSV rows into a :class:`PairTable` (plus the encoded ids), and collects every bad
line as a :class:`SkippedLine` with its 1-based line number; :func:`write_skipped` writes those to
CSV.  The file formats and rules are described in :mod:`bartsmiles.tasks.seq2seq`, which
re-exports everything here.  RDKit is imported only when SMILES are checked.
"""

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from bartsmiles.core.tokenizer import SmilesTokenizer
from bartsmiles.core.vocab import Vocabulary
from bartsmiles.errors import InvalidSmilesError, Seq2SeqDataError, SequenceTooLongError, TokenizationError

SPLIT_PATTERNS = ("{s}.smi", "{s}.txt", "{s}.csv", "*-{s}.smi", "*_{s}.smi", "*-{s}.csv", "*_{s}.csv")


@dataclass
class SkippedLine:
    line: int
    reason: str
    text: str
    too_long: bool = False  # readable, but longer than the positions allowed (not a data error)


@dataclass
class PairTable:
    """The usable pairs of one file; ``lines[i]`` is the 1-based line of pair ``i``."""

    path: str
    sources: List[str]
    targets: List[str]
    lines: List[int]
    skipped: List[SkippedLine]

    def __len__(self) -> int:
        return len(self.sources)


def split_file(data: str, split: str) -> Path:
    """The one file of ``split`` in the folder ``data`` (see :mod:`bartsmiles.tasks.seq2seq`)."""
    folder = Path(data)
    if not folder.is_dir():
        raise Seq2SeqDataError(f"smiles_seq2seq: DATA must be a folder holding one file per split, got {data!r}")
    found: List[Path] = []
    for pattern in SPLIT_PATTERNS:
        found += [p for p in sorted(folder.glob(pattern.format(s=split))) if p.is_file() and p not in found]
    if not found:
        raise FileNotFoundError(
            f"smiles_seq2seq: no file for split {split!r} in {folder} (looked for "
            + ", ".join(p.format(s=split) for p in SPLIT_PATTERNS) + ")"
        )
    if len(found) > 1:
        raise Seq2SeqDataError(f"smiles_seq2seq: several files for split {split!r} in {folder}: {[p.name for p in found]}")
    return found[0]


def parse_reaction_line(text: str, direction: str, layout: str) -> Tuple[str, str]:
    """``(source, target)`` of one reaction line; ValueError says what is wrong with it."""
    parts = [p.strip() for p in text.split(">")]
    if len(parts) != 3:
        raise ValueError("no '>>' separator" if len(parts) < 3 else f"{len(parts) - 1} '>' characters (a reaction has 2)")
    left, agents, right = parts
    if layout == "product_first":
        if agents:
            raise ValueError("an agents part between '>' and '>' in a product_first line")
        product, reactants = left, right
    else:
        reactants, product = left, right
    if not product:
        raise ValueError("empty product side")
    if not reactants:
        raise ValueError("empty reactants side")
    return (product, reactants) if direction == "retro" else (reactants, product)


def _raw_pairs(path: Path, cfg) -> Tuple[List[Tuple[int, str, Optional[str], Optional[str], str]], str]:
    """``(line, text, source, target, error)`` per non-blank line/row, before any SMILES check."""
    rows = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            for name in (cfg.source_column, cfg.target_column):
                if name not in columns:
                    raise Seq2SeqDataError(f"{path}: no column {name!r} (columns: {columns})")
            for i, row in enumerate(reader):
                line = i + 2  # the header is line 1
                src, tgt = (row.get(cfg.source_column) or "").strip(), (row.get(cfg.target_column) or "").strip()
                text = f"{src},{tgt}"
                err = "" if src and tgt else f"empty {cfg.source_column if not src else cfg.target_column} column"
                rows.append((line, text, src, tgt, err))
        return rows, "csv"
    with open(path, encoding="utf-8") as fh:
        for line, raw in enumerate(fh, start=1):
            text = raw.strip()
            if not text:
                continue
            try:
                src, tgt = parse_reaction_line(text, str(cfg.direction), str(cfg.reaction_layout))
                rows.append((line, text, src, tgt, ""))
            except ValueError as exc:
                rows.append((line, text, None, None, str(exc)))
    return rows, "reaction"


def read_pairs(path, cfg, vocab: Optional[Vocabulary] = None) -> Tuple[PairTable, List[List[int]], List[List[int]]]:
    """Read, check and encode the pairs of ``path``: ``(table, source ids, target ids)``.

    Every bad line is collected; without ``cfg.skip_invalid`` they raise one
    :class:`Seq2SeqDataError` listing them by line number.
    """
    path = Path(path)
    rows, _ = _raw_pairs(path, cfg)
    tokenizer = SmilesTokenizer()
    check = not getattr(cfg, "no_check_smiles", False)
    if check:
        from bartsmiles.core.chem import parse_smiles  # lazy: RDKit only when data is read
    limits = (int(cfg.max_source_positions), int(cfg.max_target_positions))
    sources, targets, lines, skipped, src_ids, tgt_ids = [], [], [], [], [], []
    for line, text, src, tgt, err in rows:
        ids: List[List[int]] = []
        too_long = False
        if not err:
            for side, smi, limit in (("source", src, limits[0]), ("target", tgt, limits[1])):
                if check:
                    try:
                        parse_smiles(smi)
                    except InvalidSmilesError as exc:
                        err = f"invalid {side} SMILES {smi!r}: {exc.reason}"
                        break
                try:
                    tokens = tokenizer.tokenize(smi)
                except TokenizationError as exc:
                    err = f"{side} SMILES cannot be tokenized: {exc}"
                    break
                if vocab is not None:
                    try:
                        ids.append(vocab.encode(tokens, max_positions=limit, on_overflow="error"))
                    except SequenceTooLongError as exc:
                        err = f"{side} needs {exc.length} positions (<s>, </s> included), more than {limit}"
                        too_long = True
                        break
        if err:
            skipped.append(SkippedLine(line, err, text, too_long=too_long))
            continue
        sources.append(src)
        targets.append(tgt)
        lines.append(line)
        if vocab is not None:
            src_ids.append(ids[0])
            tgt_ids.append(ids[1])
    if skipped and not cfg.skip_invalid:
        shown = "; ".join(f"line {s.line}: {s.reason}" for s in skipped[:20])
        more = f" (and {len(skipped) - 20} more)" if len(skipped) > 20 else ""
        raise Seq2SeqDataError(
            f"{path}: {len(skipped)} bad line(s): {shown}{more}. Fix them, or pass --skip-invalid to leave them out"
        )
    return PairTable(str(path), sources, targets, lines, skipped), src_ids, tgt_ids


def write_skipped(skipped: List[SkippedLine], path) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "reason", "text"])
        for s in skipped:
            writer.writerow([s.line, s.reason, s.text])


__all__ = [
    "SkippedLine", "PairTable", "SPLIT_PATTERNS", "split_file", "parse_reaction_line",
    "read_pairs", "write_skipped",
]
