"""The smiles_seq2seq task, BartSmilesSeq2Seq and the top-k metric: tiny pretrained model, on CPU."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rdkit import Chem

from bartsmiles.core.chem import canonicalize_set_or_none
from bartsmiles.errors import Seq2SeqError
from bartsmiles.evaluation.retro import topk_accuracy
from bartsmiles.seq2seq import BartSmilesSeq2Seq
from bartsmiles.training.seq2seq import Seq2SeqConfig, seq2seq_args

# 30 short reactions of the USPTO-50k training split (liu2017), as written there: PRODUCT >> REACTANTS
USPTO = """\
CCOC(=O)c1coc2cc(O)ccc12 >> CCOC(=O)c1coc2cc(OC)ccc12
Cc1ccc(N2NCC(=O)C2=O)cc1 >> Cc1ccc(N2NC(C)C(=O)C2=O)cc1
NCCc1csc2ccccc12 >> N#CCc1csc2ccccc12
C=CCOCCCCCCCCCCCCCCCC >> C=CCBr.CCCCCCCCCCCCCCCCO
COc1cc2c(cc1C(=O)O)C(=O)CC2 >> COC(=O)c1cc2c(cc1OC)CCC2=O
O=C(O)c1ccc(OC2CCCCO2)cc1 >> C1=COCCC1.O=C(O)c1ccc(O)cc1
CCCCC(CC)COC(=O)c1cccnc1 >> CCCCC(CC)CO.O=C(O)c1cccnc1
C=CC(O)(CCCl)c1ccccc1 >> C=C[Mg+].O=C(CCCl)c1ccccc1
CCCCCCCCOCCC(=O)OC(C)(C)C >> C=CC(=O)OC(C)(C)C.CCCCCCCCO
CCOC(=O)C=Cc1ccc(OC)nc1 >> C=CC(=O)OCC.COc1ccc(Br)cn1
O=C(O)CNc1cc(Cl)ccc1C(=O)O >> NCC(=O)O.O=C(O)c1ccc(Cl)cc1Cl
O=C(O)Cn1ccc(C2CC2)n1 >> CCOC(=O)Cn1ccc(C2CC2)n1
O=C(O)CCCC1(c2ccccc2)OCCO1 >> O=C(O)CCCC(=O)c1ccccc1.OCCO
CCCCCC1=CCC(CO)CC1 >> CCCCCC1=CCC(C(=O)O)CC1
CC(=O)NCCc1ccc(C)s1 >> CC(=O)OC(C)=O.Cc1ccc(CCN)s1
Nc1ccnc(SCCCCO)n1 >> CCOC(=O)CCCSc1nccc(N)n1
CCCOC(=O)c1ccccc1S >> CCCO.O=C(O)c1ccccc1S
COCCCc1cc(C(=O)O)cc(OC)c1OC >> CI.COc1cc(C(=O)O)cc(CCCO)c1OC
Cc1c(Cl)ccnc1C(=O)C1CC1 >> Cc1c(Cl)ccnc1C(O)C1CC1
CN(CC(=O)O)C(=O)OCc1ccccc1 >> CNCC(=O)O.O=C(Cl)OCc1ccccc1
Nc1ccc(CS(N)(=O)=O)cc1 >> NS(=O)(=O)Cc1ccc([N+](=O)[O-])cc1
Cc1cc2c(cc1C)C(O)CC2 >> Cc1cc2c(cc1C)C(=O)CC2
CC(C)(C)COCc1ccc(CN)cc1 >> CC(C)(C)COCc1ccc(C#N)cc1
CCCOC(=O)CCC(=O)CN >> CCCO.NCC(=O)CCC(=O)O
CCCn1ccc2ccncc21 >> CCCI.c1cc2cc[nH]c2cn1
CCOC(=O)Cc1ccncc1N >> CCOC(=O)Cc1ccncc1[N+](=O)[O-]
C#CCN(CC=O)C(=O)Nc1ncc(I)s1 >> C#CCNCC=O.O=C=Nc1ncc(I)s1
COC(=O)CCCCCNC(=O)c1ccccn1 >> COC(=O)CCCCCN.O=C(O)c1ccccn1
Brc1cnn(C2COC2)c1 >> BrC1COC1.Brc1cn[nH]c1
COC(=O)Cc1cccc(C#N)c1 >> COC(=O)Cc1cccc(Br)c1.[C-]#N
"""
REACTIONS = [line for line in USPTO.splitlines() if line.strip()]
PRODUCTS = [r.split(">>")[0].strip() for r in REACTIONS]
REACTANTS = [r.split(">>")[1].strip() for r in REACTIONS]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _user_dir() -> str:
    return subprocess.run([sys.executable, "-m", "bartsmiles.cli", "user-dir"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1")


# ------------------------------------------------------------------------------ config -> argv


def test_args_are_a_pure_function_of_the_config():
    cfg = Seq2SeqConfig(data="d", arch="bartsmiles_tiny", save_dir="s", epochs=3, batch_size=4, warmup_ratio=0.25,
                        pretrained="p.pt", cpu=True, randomize_smiles=0.5, keep_target=True, skip_invalid=True)
    argv = seq2seq_args(cfg, n_train=10, user_dir="U")
    assert argv == seq2seq_args(cfg, n_train=10, user_dir="U")
    assert argv[:5] == ["d", "--user-dir", "U", "--task", "smiles_seq2seq"]

    def value(flag):
        return argv[argv.index(flag) + 1]

    assert value("--max-update") == value("--total-num-update") == "9"  # 3 epochs x ceil(10 / 4)
    assert value("--warmup-updates") == "2"
    assert value("--criterion") == "label_smoothed_cross_entropy" and value("--label-smoothing") == "0.1"
    assert value("--randomize-smiles") == "0.5" and "--keep-target" in argv and "--skip-invalid" in argv
    assert value("--restore-file") == "p.pt" and "--reset-optimizer" in argv and "--cpu" in argv
    assert value("--direction") == "retro" and value("--reaction-layout") == "product_first"
    plain = seq2seq_args(Seq2SeqConfig(data="d", arch="a", criterion="cross_entropy"), n_train=1, user_dir="U")
    assert "--label-smoothing" not in plain and "--randomize-smiles" not in plain and "--restore-file" not in plain


def test_args_reject_bad_settings():
    good = dict(data="d", arch="bartsmiles_tiny")
    for bad in (dict(criterion="mse"), dict(direction="sideways"), dict(reaction_layout="x"), dict(precision="fp8"),
                dict(randomize_smiles=1.5), dict(warmup_ratio=1.0), dict(arch=""), dict(data="")):
        with pytest.raises(Seq2SeqError):
            seq2seq_args(Seq2SeqConfig(**{**good, **bad}), n_train=5, user_dir="U")


def test_fairseq_parses_the_args(tmp_path):
    import bartsmiles.tasks.seq2seq  # noqa: F401
    from bartsmiles.training.runner import parse_fairseq_args

    cfg = Seq2SeqConfig(data=str(tmp_path), arch="bartsmiles_tiny", save_dir=str(tmp_path / "s"), cpu=True,
                        randomize_smiles=0.25, criterion="cross_entropy")
    parsed = parse_fairseq_args(seq2seq_args(cfg, n_train=3))
    assert parsed.task._name == "smiles_seq2seq" and parsed.task.randomize_smiles == 0.25
    assert parsed.task.keep_target is False and parsed.criterion._name == "cross_entropy"


# ------------------------------------------------------------------------------ reading files


def _task_cfg(tmp_path, **kw):
    from bartsmiles.tasks.seq2seq import SmilesSeq2SeqConfig

    return SmilesSeq2SeqConfig(data=str(tmp_path), save_dir=str(tmp_path / "save"), seed=1, restore_file="", **kw)


def _vocab():
    from bartsmiles.core.tokenizer import SmilesTokenizer
    from bartsmiles.core.vocab import Vocabulary

    tok = SmilesTokenizer()
    return Vocabulary.build(tok.tokenize(s) for s in PRODUCTS + REACTANTS)


def test_reads_uspto_lines_both_layouts_and_directions(tmp_path):
    from bartsmiles.tasks.seq2seq_data import read_pairs, split_file

    (tmp_path / "retrosynthesis-train.smi").write_text("\n".join(REACTIONS[:3]) + "\n\n")
    path = split_file(str(tmp_path), "train")
    table, src, tgt = read_pairs(path, _task_cfg(tmp_path), _vocab())
    assert table.sources == PRODUCTS[:3] and table.targets == REACTANTS[:3] and table.lines == [1, 2, 3]
    assert src[0][0] == 0 and src[0][-1] == 2 and len(src) == len(tgt) == 3  # <s> ... </s>
    table, _, _ = read_pairs(path, _task_cfg(tmp_path, direction="forward"))
    assert table.sources == REACTANTS[:3] and table.targets == PRODUCTS[:3]
    rxn = tmp_path / "rxn" / "train.smi"
    rxn.parent.mkdir()
    rxn.write_text(f"{REACTANTS[0]}>>{PRODUCTS[0]}\n{REACTANTS[1]}>O>{PRODUCTS[1]}\n")
    table, _, _ = read_pairs(rxn, _task_cfg(tmp_path, reaction_layout="reactants_first"))
    assert table.sources == PRODUCTS[:2] and table.targets == REACTANTS[:2]  # agents dropped


BAD = [
    ("CCO CCC", "no '>>' separator"),
    (" >> CCO", "empty product side"),
    ("CCO >> ", "empty reactants side"),
    ("C1CC >> CCO", "invalid source SMILES 'C1CC'"),
    ("CCO >> CC(C", "invalid target SMILES 'CC(C'"),
    ("CCO >> CC~C", "cannot be tokenized"),
]


@pytest.mark.parametrize("bad,reason", BAD)
def test_each_bad_line_kind_is_an_error_with_its_line_number(tmp_path, bad, reason):
    from bartsmiles.errors import Seq2SeqDataError
    from bartsmiles.tasks.seq2seq_data import read_pairs

    path = tmp_path / "train.smi"
    path.write_text("\n".join([REACTIONS[0], "", REACTIONS[1], bad, REACTIONS[2]]) + "\n")
    with pytest.raises(Seq2SeqDataError, match=rf"line 4: .*{re.escape(reason)}"):
        read_pairs(path, _task_cfg(tmp_path))


def test_too_long_and_csv_errors_name_the_line(tmp_path):
    from bartsmiles.errors import Seq2SeqDataError
    from bartsmiles.tasks.seq2seq_data import read_pairs

    path = tmp_path / "train.smi"
    path.write_text(f"{REACTIONS[0]}\n{'C' * 200} >> CCO\n")
    with pytest.raises(Seq2SeqDataError, match="line 2: source needs 202 positions"):
        read_pairs(path, _task_cfg(tmp_path), _vocab())
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("src,tgt\nCCO,CC=O\nC1CC,CCO\n")
    with pytest.raises(Seq2SeqDataError, match="line 3: invalid source SMILES"):
        read_pairs(csv_path, _task_cfg(tmp_path, source_column="src", target_column="tgt"))
    with pytest.raises(Seq2SeqDataError, match="no column 'source'"):
        read_pairs(csv_path, _task_cfg(tmp_path))


def test_skip_invalid_uses_the_rest_and_reports_the_lines(tmp_path):
    from bartsmiles.tasks.seq2seq import SmilesSeq2SeqTask

    lines = [REACTIONS[0]] + [b for b, _ in BAD] + [REACTIONS[1]]
    (tmp_path / "train.smi").write_text("\n".join(lines) + "\n")
    cfg = _task_cfg(tmp_path, skip_invalid=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "pretrained" / "dict.txt", tmp_path / "dict.txt")
    task = SmilesSeq2SeqTask.setup_task(cfg)
    ds = task.load_dataset("train")
    assert len(ds) == 2
    with open(tmp_path / "save" / "skipped_lines_train.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["line"]) for r in rows] == list(range(2, 2 + len(BAD)))
    assert rows[0]["reason"] == "no '>>' separator" and rows[0]["text"] == "CCO CCC"
    assert task.reports["train"]["skipped"] == len(BAD)
    sample = ds.collater([ds[0], ds[1]])
    # encoder and decoder see what pretraining showed them: <s> ... </s>, decoder input </s> <s> ...
    assert sample["net_input"]["src_tokens"][0, 0] == 0
    assert sample["net_input"]["prev_output_tokens"][0, :2].tolist() == [2, 0]


def test_augmentation_is_seeded_per_epoch_and_keeps_the_molecules(tmp_path):
    from bartsmiles.core.chem import canonicalize_set
    from bartsmiles.tasks.seq2seq import SmilesSideDataset

    vocab = _vocab()
    ids = [vocab.encode(__import__("bartsmiles.core.tokenizer").core.tokenizer.SmilesTokenizer().tokenize(s)) for s in REACTANTS]
    ds = SmilesSideDataset(REACTANTS, ids, vocab, side=1, prob=1.0, seed=3)
    again = SmilesSideDataset(REACTANTS, ids, vocab, side=1, prob=1.0, seed=3)

    def text(d, i):
        return "".join(vocab.decode(d[i].tolist()))

    epoch1 = [text(ds, i) for i in range(len(ds))]
    assert epoch1 == [text(again, i) for i in range(len(again))]
    ds.set_epoch(2)
    epoch2 = [text(ds, i) for i in range(len(ds))]
    assert epoch1 != epoch2 and epoch1 != REACTANTS
    for a, b, ref in zip(epoch1, epoch2, REACTANTS):
        assert canonicalize_set(a) == canonicalize_set(b) == canonicalize_set(ref)
        assert a.count(".") == ref.count(".")


# ------------------------------------------------------------------------------ metric


def test_topk_is_order_independent_and_counts_invalid_top1():
    refs = ["CCO.c1ccccc1", "CC(=O)O", "CCN", "CCCl"]
    preds = [
        ["c1ccccc1.OCC", "CC"],                     # same set, other order and spelling: top-1
        ["CC", ("OC(C)=O", -0.1)],                  # rank 2, (smiles, score) pairs accepted
        ["C1CC", "CC", "CCC", "NCC"],               # invalid first candidate, match at rank 4
        [],                                         # nothing generated: invalid, no hit
    ]
    out = topk_accuracy(preds, refs, ks=(1, 3, 5))
    assert out == {"top1": 0.25, "top3": 0.5, "top5": 0.75, "n": 4, "invalid_top1": 0.5}
    with pytest.raises(ValueError, match="reference 0"):
        topk_accuracy([["CCO"]], ["C1CC"])
    with pytest.raises(ValueError, match="references"):
        topk_accuracy([["CCO"]], ["CCO", "CCC"])


def test_generate_merges_and_aggregates_candidates():
    from bartsmiles.seq2seq import aggregate_beams, merge_candidates

    merged = merge_candidates([("OCC", -0.5), ("CCO", -0.2), ("C1CC", -0.3), ("CC", -0.9)], drop_invalid=False)
    assert merged == [("CCO", -0.2), ("C1CC", -0.3), ("CC", -0.9)]
    assert [s for s, _ in merge_candidates([("C1CC", -0.1), ("CC", -0.9)], drop_invalid=True)] == ["CC"]
    beams = [[("CCO", -0.1), ("CC", -0.2)], [("CC", -0.05), ("OCC", -0.3)], [("CC", -1.0)]]
    rank = aggregate_beams(beams, "rank", 10, False)
    assert rank[0] == ("CC", pytest.approx(0.5 + 1 + 1)) and rank[1] == ("CCO", pytest.approx(1.5))
    prob = aggregate_beams(beams, "prob", 1, False)
    assert len(prob) == 1 and prob[0][0] == "CC"


# ------------------------------------------------------------------------------ training


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """A bartsmiles_tiny denoising checkpoint (3 updates) over the reactions' molecules, dict.txt beside it."""
    from bartsmiles.training.pretraining import PretrainConfig, build_vocabulary, preprocess, pretrain

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pre")
    mols = PRODUCTS + REACTANTS
    (root / "train.smi").write_text("\n".join(mols) + "\n")
    (root / "valid.smi").write_text("\n".join(mols[:8]) + "\n")
    vocab, _ = build_vocabulary([root / "train.smi", root / "valid.smi"], n_jobs=1)
    preprocess([root / "train.smi"], [root / "valid.smi"], vocab, root / "bin", n_jobs=1)
    pretrain(PretrainConfig(data=str(root / "bin"), save_dir=str(root / "save"), arch="bartsmiles_tiny", cpu=True,
                            max_update=3, max_tokens=2048, warmup_updates=1, save_interval_updates=0,
                            num_workers=0, log_interval=100))
    ckpt = root / "save" / "checkpoint_last.pt"
    shutil.copy(root / "bin" / "dict.txt", ckpt.with_name("dict.txt"))
    return ckpt


def _tiny(pretrained, save_dir, **kw) -> Seq2SeqConfig:
    base = dict(pretrained=str(pretrained), save_dir=str(save_dir), batch_size=8, lr=5e-3, dropout=0.0,
                attention_dropout=0.0, label_smoothing=0.0, weight_decay=0.0, warmup_ratio=0.05, cpu=True,
                log_interval=1000)
    base.update(kw)
    return Seq2SeqConfig(**base)


@pytest.fixture(scope="module")
def smoke(pretrained, tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    model = BartSmilesSeq2Seq(_tiny(pretrained, root / "run", epochs=3, lr=1e-3, randomize_smiles=0.5,
                                    label_smoothing=0.1))
    model.fit(PRODUCTS, REACTANTS, PRODUCTS[:8], REACTANTS[:8])
    return model, root


def test_smoke_fit_then_generate_ranked_candidates(smoke, pretrained):
    model, root = smoke
    run = Path(model.config.save_dir)
    assert (run / "checkpoint_last.pt").is_file() and (run / "dict.txt").is_file()
    assert model.config.arch == "bartsmiles_tiny"
    state = torch.load(run / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 3 * 4  # 3 epochs x ceil(30 / 8)
    assert state["task_state"]["bartsmiles_seq2seq"]["dictionary"][-1] == "<mask>"
    pre = torch.load(pretrained, map_location="cpu", weights_only=False)["model"]["encoder.embed_tokens.weight"]
    assert pre.shape == state["model"]["encoder.embed_tokens.weight"].shape
    preds = model.generate(PRODUCTS[:4], beam=3, n_best=3, canonicalize=False)
    assert len(preds) == 4
    for cands in preds:
        assert 1 <= len(cands) <= 3
        scores = [s for _, s in cands]
        assert all(isinstance(s, str) and s for s, _ in cands)
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)
    canon = model.generate(PRODUCTS[:2], beam=3, n_best=3, augment=2, aggregate="rank")
    assert len(canon) == 2 and all(1 <= len(c) <= 3 for c in canon)


def test_save_and_load_round_trip(smoke, tmp_path):
    model, _ = smoke
    model.save(tmp_path / "m")
    again = BartSmilesSeq2Seq.load(tmp_path / "m")
    a = model.generate(PRODUCTS[:3], beam=2, n_best=2, canonicalize=False)
    b = again.generate(PRODUCTS[:3], beam=2, n_best=2, canonicalize=False)
    assert [[s for s, _ in c] for c in a] == [[s for s, _ in c] for c in b]


def test_to_a_device_keeps_generation_and_refuses_half_on_cpu(smoke, tmp_path):
    model, _ = smoke
    model.save(tmp_path / "m")
    moved = BartSmilesSeq2Seq.load(tmp_path / "m").to("cpu")
    a = model.generate(PRODUCTS[:2], beam=2, n_best=2, canonicalize=False)
    assert moved.generate(PRODUCTS[:2], beam=2, n_best=2, canonicalize=False) == a
    with pytest.raises(Seq2SeqError, match="GPU"):
        moved.to("cpu", half=True)


def test_overfits_a_handful_of_uspto_reactions(pretrained, tmp_path):
    """8 reactions, train = valid; a working pipeline memorizes them (top-1 exact match)."""
    n = 8
    model = BartSmilesSeq2Seq(_tiny(pretrained, tmp_path / "run", epochs=120))
    model.fit(PRODUCTS[:n], REACTANTS[:n])
    preds = model.generate(PRODUCTS[:n], beam=3, n_best=3)
    acc = topk_accuracy(preds, REACTANTS[:n], ks=(1, 3))
    assert acc["top1"] >= 0.75, acc


def test_resume_continues_the_saved_run_instead_of_restarting(pretrained, tmp_path):
    """resume=True continues checkpoint_last.pt (update count, schedule, optimizer) past a --max-update
    the first run stopped at; without it the same command starts again from the pretrained weights."""
    from bartsmiles.training.config import RESET_FLAGS, continue_from_last

    def run(max_update: int, save: Path, resume: bool) -> dict:
        cfg = _tiny(pretrained, save, epochs=3, extra_args=("--max-update", str(max_update)), resume=resume)
        model = BartSmilesSeq2Seq(cfg).fit(PRODUCTS, REACTANTS, PRODUCTS[:8], REACTANTS[:8])
        state = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)
        return {"updates": state["optimizer_history"][-1]["num_updates"], "argv": model.argv}

    first = run(4, tmp_path / "a", resume=True)  # nothing to continue yet: starts from the pretrained model
    assert first["updates"] == 4 and "--reset-optimizer" in first["argv"]
    resumed = run(8, tmp_path / "a", resume=True)
    assert resumed["updates"] == 8  # 4 more, not 8 from the start
    assert not set(RESET_FLAGS) & set(resumed["argv"]) and resumed["argv"][-2:] == ["--restore-file", "checkpoint_last.pt"]
    run(4, tmp_path / "b", resume=False)
    restarted = run(8, tmp_path / "b", resume=False)
    assert restarted["updates"] == 8 and "--reset-optimizer" in restarted["argv"]  # 8 from the pretrained weights
    cfg = _tiny(pretrained, tmp_path / "b", epochs=3, lr=1e-3, extra_args=("--max-update", "9"), resume=True)
    other = BartSmilesSeq2Seq(cfg).fit(PRODUCTS, REACTANTS, PRODUCTS[:8], REACTANTS[:8])
    assert "--reset-optimizer" in other.argv  # another learning rate: not the same run, so it starts afresh
    assert continue_from_last(["x", "--restore-file", "p.pt", "--reset-meters", "--seed", "1"]) == \
        ["x", "--seed", "1", "--restore-file", "checkpoint_last.pt"]


def test_plugin_registers_the_seq2seq_task():
    """`import bartsmiles.tasks` (what `--user-dir $(bartsmiles user-dir)` does) must register smiles_seq2seq."""
    code = "import bartsmiles.tasks\nfrom fairseq.tasks import TASK_REGISTRY\nprint('smiles_seq2seq' in TASK_REGISTRY)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert out.stdout.strip() == "True", (
        "smiles_seq2seq is not registered by `import bartsmiles.tasks`: add `seq2seq` to the registration "
        "import in tasks/__init__.py" + out.stderr[-1000:])


def test_documented_fairseq_train_matches_fit(smoke, tmp_path):
    """`fairseq-train DATA --user-dir $(bartsmiles user-dir) --task smiles_seq2seq ...` in a fresh process."""
    model, _ = smoke
    argv = list(model.argv)
    argv[argv.index("--user-dir") + 1] = _user_dir()
    argv[argv.index("--save-dir") + 1] = str(tmp_path / "cli")
    fairseq_train = Path(sys.executable).with_name("fairseq-train")
    proc = subprocess.run([str(fairseq_train), *argv], capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = torch.load(Path(model.config.save_dir) / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    cli = torch.load(tmp_path / "cli" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    assert api["extra_state"]["val_loss"] == cli["extra_state"]["val_loss"]
    for key, value in api["model"].items():
        assert torch.equal(value, cli["model"][key]), key


def test_documented_fairseq_generate_on_a_test_file(smoke, tmp_path):
    """`fairseq-generate DATA --user-dir ... --task smiles_seq2seq --path CKPT --gen-subset test` prints SMILES."""
    model, _ = smoke
    data = tmp_path / "data"
    data.mkdir()
    (data / "retrosynthesis-test.smi").write_text("\n".join(REACTIONS[:4]) + "\n")
    ckpt = Path(model.config.save_dir) / "checkpoint_last.pt"
    cmd = [str(Path(sys.executable).with_name("fairseq-generate")), str(data), "--user-dir", _user_dir(),
           "--task", "smiles_seq2seq", "--path", str(ckpt), "--gen-subset", "test", "--beam", "3", "--nbest", "3",
           "--batch-size", "32", "--required-batch-size-multiple", "1", "--cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyps: dict = {}
    for line in proc.stdout.splitlines():
        if line.startswith("D-"):
            tag, score, smiles = line.split("\t")
            hyps.setdefault(int(tag[2:]), []).append((smiles, float(score)))
        if line.startswith("T-"):
            tag, target = line.split("\t")
            assert target.replace(" ", "") == REACTANTS[int(tag[2:])]
    assert sorted(hyps) == [0, 1, 2, 3] and all(len(v) == 3 for v in hyps.values())
    assert all(" " not in s for v in hyps.values() for s, _ in v)  # detokenized: plain SMILES
    # the same beams as the API (same model, same forced <s>, same beam search)
    api = model.__class__.load(ckpt).generate(PRODUCTS[:4], beam=3, n_best=3, canonicalize=False)
    for i in range(4):
        assert [s for s, _ in hyps[i]] == [s for s, _ in api[i]]
        # fairseq-generate prints scores in base 2; the API returns natural-log scores
        assert [p * math.log(2) for _, p in hyps[i]] == pytest.approx([p for _, p in api[i]], abs=1e-4)


def test_benchmark_retro_cli_writes_json_and_markdown(smoke, tmp_path):
    from bartsmiles.cli.main import main

    model, _ = smoke
    data = tmp_path / "data"
    data.mkdir()
    (data / "retrosynthesis-test.smi").write_text("\n".join(REACTIONS[:5]) + "\nnot a reaction\n")
    out = tmp_path / "res" / "retro"
    # the bad line is refused with its line number (the model's task settings: no --skip-invalid)
    assert main(["benchmark-retro", "--model", model.checkpoint, "--data", str(data), "--beam", "3",
                 "--out", str(out)]) == 2
    (data / "retrosynthesis-test.smi").write_text("\n".join(REACTIONS[:5]) + "\n")
    assert main(["benchmark-retro", "--model", model.checkpoint, "--data", str(data), "--beam", "3",
                 "--limit", "4", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["n"] == 4 and {"top1", "top3", "n", "invalid_top1"} <= set(result["scores"])
    assert result["scores"]["unreadable_lines"] == [] and result["command"].startswith("bartsmiles benchmark-retro")
    assert "top-3" in out.with_suffix(".md").read_text()
    # --skip-invalid scores the rest and reports the bad line; an overlong product is a miss, not dropped
    long_product = "C" * 140
    (data / "retrosynthesis-test.smi").write_text("\n".join(REACTIONS[:3]) + f"\nnot a reaction\n{long_product} >> CC\n")
    assert main(["benchmark-retro", "--model", model.checkpoint, "--data", str(data), "--beam", "3",
                 "--skip-invalid", "--out", str(out)]) == 0
    scores = json.loads(out.with_suffix(".json").read_text())["scores"]
    assert scores["n"] == 4 and scores["n_generated"] == 3 and scores["unreadable_lines"] == [5]
    assert [b["line"] for b in scores["skipped_bad_lines"]] == [4]
    assert scores["top3"] <= 0.75 and scores["invalid_top1"] >= 0.25


def test_retro_cli_prints_valid_candidates_and_json(smoke, tmp_path, capsys):
    """`bartsmiles retro`: top-k valid reactant sets per product, invalid ones dropped and counted."""
    from bartsmiles.cli.main import main
    from bartsmiles.seq2seq import retrosynthesis

    model, _ = smoke
    results = retrosynthesis(PRODUCTS[:3], model, top_k=2, beam=4)
    assert [r.product for r in results] == PRODUCTS[:3]
    for r in results:
        assert len(r.candidates) <= 2 and r.invalid_dropped >= 0
        assert all(canonicalize_set_or_none(c.reactants) == c.reactants for c in r.candidates)  # valid, canonical
        assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates), reverse=True)
        # what was dropped is exactly the invalid part of the beam
        beam = model.generate([r.product], beam=4, n_best=4)[0]
        assert r.invalid_dropped == sum(canonicalize_set_or_none(s) is None for s, _ in beam)
        # the product given back is not an answer: dropped and counted
        product = canonicalize_set_or_none(r.product)
        assert all(c.reactants != product for c in r.candidates)
        assert r.unchanged_dropped == sum(canonicalize_set_or_none(s) == product for s, _ in beam)
    (tmp_path / "in.smi").write_text(PRODUCTS[0] + "\n")
    assert main(["retro", PRODUCTS[1], "--input", str(tmp_path / "in.smi"), "--model", model.checkpoint,
                 "--top-k", "2", "--beam", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["product"] for o in out] == [PRODUCTS[1], PRODUCTS[0]]
    assert all(set(c) == {"reactants", "score"} for o in out for c in o["candidates"])
    assert main(["retro", PRODUCTS[0], "--model", model.checkpoint, "--top-k", "1", "--beam", "2"]) == 0
    assert PRODUCTS[0] in capsys.readouterr().out
    # bad input: one line, exit 2
    assert main(["retro", "C1CC", "--model", model.checkpoint]) == 2
    assert "index 0" in capsys.readouterr().err
    assert main(["retro", "--model", model.checkpoint]) == 2


def test_retrosynthesis_drops_the_product_given_back(smoke, monkeypatch):
    """A candidate that is the product itself (in any spelling) is no disconnection: dropped, counted."""
    from bartsmiles.seq2seq import retrosynthesis

    model, _ = smoke
    product = "CC(=O)Nc1ccc(O)cc1"
    beam = [("Oc1ccc(NC(C)=O)cc1", -0.1), ("CC(=O)Cl.Nc1ccc(O)cc1", -0.2), ("C1CC", -0.3), ("CC(=O)OC(C)=O.Nc1ccc(O)cc1", -0.4)]
    monkeypatch.setattr(model, "generate", lambda products, **kw: [list(beam) for _ in products])
    (result,) = retrosynthesis([product], model, top_k=3, beam=4)
    assert [c.reactants for c in result.candidates] == ["CC(=O)Cl.Nc1ccc(O)cc1", "CC(=O)OC(C)=O.Nc1ccc(O)cc1"]
    assert (result.invalid_dropped, result.unchanged_dropped) == (1, 1)
    assert result.to_dict()["unchanged_dropped"] == 1


def test_rooted_views_are_the_same_molecule_and_recorded_in_the_checkpoint(smoke):
    from bartsmiles.core.reactions import rooted_views

    model, _ = smoke
    assert model.source_views == "random"
    views = rooted_views(PRODUCTS[0], 4, seed=0)
    assert len(views) == 4 and views[0] == Chem.MolToSmiles(Chem.MolFromSmiles(PRODUCTS[0]))
    assert {Chem.MolToSmiles(Chem.MolFromSmiles(v)) for v in views} == {views[0]}
    assert len(set(views)) > 1
    preds = model.generate(PRODUCTS[:2], beam=2, n_best=2, augment=3, views="rooted")
    assert len(preds) == 2 and all(1 <= len(c) <= 2 for c in preds)
    with pytest.raises(Seq2SeqError):
        model.generate(PRODUCTS[:1], views="sideways")
