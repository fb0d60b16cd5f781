"""Pretraining end to end: binarize, train through fairseq, distribute on CPU, resume, augment.

Every training run here is ``bartsmiles_tiny`` on ``tests/fixtures/tiny_corpus.smi`` (408 SMILES),
on the CPU, with ``--num-workers 0``.  Runs inside the pytest process go through
``bartsmiles.cli.main.main``; runs that must be separate processes (the ``fairseq-train`` console
script, the kill/resume run, the distributed ranks) use the venv's own executables.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from bartsmiles.cli import main as cli
from bartsmiles.errors import TrainingSetupError
from bartsmiles.model.checkpoint import safe_load
from bartsmiles.training.pretraining import PretrainConfig, build_vocabulary, preprocess, pretrain, pretrain_args

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "tiny_corpus.smi"
BIN_DIR = Path(sys.executable).parent
SUBPROCESS_TIMEOUT = 150


# --------------------------------------------------------------------------------------- helpers
def _exe(name: str) -> str:
    """A console script of this venv (next to ``sys.executable``)."""
    path = shutil.which(name, path=str(BIN_DIR))
    if path is None:
        pytest.skip(f"console script {name!r} not found next to {sys.executable}")
    return path


def _bartsmiles_cmd() -> list[str]:
    path = shutil.which("bartsmiles", path=str(BIN_DIR))
    return [path] if path else [sys.executable, "-m", "bartsmiles.cli"]


def _json_records(text: str) -> list[dict]:
    """fairseq's ``--log-format json`` records found in ``text`` (one per line)."""
    out = []
    for line in text.splitlines():
        m = re.search(r"(\{\"epoch\".*\})\s*$", line)
        if m:
            try:
                out.append(json.loads(m.group(1)))
            except json.JSONDecodeError:
                pass
    return out


def _final_train_loss(records: list[dict]) -> float:
    losses = [float(r["train_loss"]) for r in records if "train_loss" in r]
    assert losses, f"no end-of-epoch train_loss in the log ({len(records)} json records)"
    return losses[-1]


def _load_ckpt(path: Path) -> dict:
    """fairseq checkpoint through torch's safe (weights-only) loader.

    (Not ``with torch.serialization.safe_globals([Namespace])``: on exit that context removes the
    allowlist entry that ``import bartsmiles.tasks`` made, and a later in-process run would fail.)
    """
    return safe_load(path)


def _num_updates(state: dict) -> int:
    return int(state["optimizer_history"][-1]["num_updates"])


def _record(state: dict) -> dict:
    """The training record the smiles_denoising task saves (tokens seen, objective)."""
    return state["extra_state"]["SmilesDenoisingTask"]


def _run(cmd: list[str], *, cwd=None, timeout=SUBPROCESS_TIMEOUT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def _tiny_flags(data, save_dir, *, max_update: int = 10, seed: int = 3) -> list[str]:
    """``bartsmiles pretrain`` flags of the tiny CPU run."""
    flags = [
        "--data", str(data), "--save-dir", str(save_dir), "--arch", "bartsmiles_tiny", "--cpu",
        "--num-workers", "0", "--max-tokens", "1024", "--warmup-updates", "5", "--lr", "0.001",
        "--log-interval", "1", "--save-interval-updates", "0", "--seed", str(seed),
        "--max-update", str(max_update),  # 0: no limit
    ]
    return flags


def _cli_fails(argv: list[str], capsys, exc_type: type[BaseException], pattern: str) -> None:
    """``bartsmiles ARGV`` (in process) fails loudly: it raises ``exc_type``, or it exits non-zero
    printing a message that matches ``pattern``."""
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except exc_type as exc:
        assert re.search(pattern, str(exc)), str(exc)
        return
    err = capsys.readouterr().err
    assert rc != 0, f"bartsmiles {' '.join(argv)} exited 0"
    assert re.search(pattern, err), err


@pytest.fixture
def train_log(caplog):
    """Collect fairseq's json log records of in-process runs."""
    caplog.set_level(logging.INFO)

    def records() -> list[dict]:
        return _json_records("\n".join(r.getMessage() for r in caplog.records))

    return records


# -------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread here and in every subprocess: a tiny model gains nothing from more, and
    OpenMP threads spinning on a busy 2-core machine slow each run down several times over."""
    old_env, old_threads = os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads()
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old_threads)
    if old_env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = old_env


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    smiles = [line.strip() for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert 300 <= len(smiles) <= 600
    return smiles


@pytest.fixture(scope="module")
def corpus_files(corpus, tmp_path_factory):
    """Train/valid split of the fixture: every 10th SMILES is validation."""
    root = tmp_path_factory.mktemp("corpus")
    train = [s for i, s in enumerate(corpus) if i % 10]
    valid = [s for i, s in enumerate(corpus) if i % 10 == 0]
    (root / "train.smi").write_text("\n".join(train) + "\n")
    (root / "valid.smi").write_text("\n".join(valid) + "\n")
    return types.SimpleNamespace(train=root / "train.smi", valid=root / "valid.smi", train_smiles=train,
                                 valid_smiles=valid, root=root)


@pytest.fixture(scope="module")
def vocab(corpus_files):
    v, per_file = build_vocabulary([corpus_files.train, corpus_files.valid], n_jobs=1)
    assert per_file == {str(corpus_files.train): len(corpus_files.train_smiles),
                        str(corpus_files.valid): len(corpus_files.valid_smiles)}
    return v


@pytest.fixture(scope="module")
def data_dir(corpus_files, vocab, tmp_path_factory):
    dest = tmp_path_factory.mktemp("bin")
    report = preprocess([corpus_files.train], [corpus_files.valid], vocab, dest, n_jobs=1)
    assert report.data_path == str(dest)
    return dest


def _read_rows(prefix: Path, dict_txt: Path) -> list[list[int]]:
    from fairseq.data import Dictionary, data_utils

    ds = data_utils.load_indexed_dataset(str(prefix), Dictionary.load(str(dict_txt)))
    assert ds is not None, f"no indexed dataset at {prefix}"
    return [ds[i].tolist() for i in range(len(ds))]


def _decode_rows(rows, vocab) -> list[str]:
    out = []
    for row in rows:
        tokens = vocab.decode(row, strip_special=False)
        assert tokens[-1] == "</s>" and "</s>" not in tokens[:-1] and "<s>" not in tokens
        out.append("".join(tokens[:-1]))
    return out


# ------------------------------------------------------------------------------------ preprocess
def test_fixture_is_rebuilt_identically(tmp_path):
    src = Path(os.environ.get("BARTSMILES_DATA") or REPO.parent / "shared" / "data") / "pretrain" / "moses" / "train.csv.gz"
    if not src.exists():
        pytest.skip(f"MOSES training file not found at {src}")
    sys.path.insert(0, str(FIXTURE.parent))
    try:
        import make_tiny_corpus
    finally:
        sys.path.remove(str(FIXTURE.parent))
    rebuilt = make_tiny_corpus.build(src)
    assert rebuilt == FIXTURE.read_text().split()
    assert any("[N+](=O)[O-]" in s for s in rebuilt) and any("-]" in s for s in rebuilt)


def test_preprocess_roundtrip(data_dir, corpus_files, vocab):
    assert (data_dir / "dict.txt").is_file()
    for split, smiles in (("train", corpus_files.train_smiles), ("valid", corpus_files.valid_smiles)):
        rows = _read_rows(data_dir / split, data_dir / "dict.txt")
        assert _decode_rows(rows, vocab) == smiles
    report = json.loads((data_dir / "preprocess.json").read_text())
    assert [s["rows"] for s in report["splits"]] == [len(corpus_files.train_smiles), len(corpus_files.valid_smiles)]
    assert all(s["unk"] == 0 and s["truncated"] == 0 for s in report["splits"])


def test_preprocess_sharded(corpus_files, vocab, tmp_path):
    dest = tmp_path / "sharded"
    report = preprocess([corpus_files.train], [corpus_files.valid], vocab, dest, n_jobs=1, num_shards=2)
    shards = [dest / "shard0", dest / "shard1"]
    assert report.data_path == os.pathsep.join(map(str, shards))
    decoded = []
    for shard in shards:
        for name in ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx"):
            assert (shard / name).is_file(), f"{shard / name} missing"
        assert _decode_rows(_read_rows(shard / "valid", shard / "dict.txt"), vocab) == corpus_files.valid_smiles
        decoded.append(_decode_rows(_read_rows(shard / "train", shard / "dict.txt"), vocab))
    n = len(corpus_files.train_smiles)
    assert all(rows for rows in decoded), f"an empty shard: sizes {[len(r) for r in decoded]}"
    assert sum(map(len, decoded)) == n
    assert sorted(decoded[0] + decoded[1]) == sorted(corpus_files.train_smiles)
    assert abs(len(decoded[0]) - len(decoded[1])) <= 1  # round-robin, row by row
    assert decoded[0] == corpus_files.train_smiles[0::2] and decoded[1] == corpus_files.train_smiles[1::2]


def test_preprocess_truncates_and_counts(corpus_files, vocab, tmp_path):
    from bartsmiles.core.tokenizer import SmilesTokenizer

    limit = 20  # positions, <s> and </s> included
    tok = SmilesTokenizer()
    lengths = [len(tok.tokenize(s)) for s in corpus_files.train_smiles]
    expected = sum(n + 2 > limit for n in lengths)
    assert expected > 0
    report = preprocess([corpus_files.train], [corpus_files.valid], vocab, tmp_path / "short", n_jobs=1,
                        max_positions=limit)
    train = report.splits[0]
    assert train.split == "train" and train.truncated == expected and train.rows == len(lengths)
    rows = _read_rows(tmp_path / "short" / "train", tmp_path / "short" / "dict.txt")
    assert max(map(len, rows)) == limit - 1  # the task prepends <s>
    assert all(r[-1] == vocab.eos for r in rows)
    for row, n, smi in zip(rows, lengths, corpus_files.train_smiles):
        if n + 2 <= limit:
            assert "".join(vocab.decode(row)) == smi
    assert json.loads((tmp_path / "short" / "preprocess.json").read_text())["splits"][0]["truncated"] == expected


def test_preprocess_missing_file_is_named(corpus_files, vocab, tmp_path):
    missing = tmp_path / "nope.smi"
    with pytest.raises(FileNotFoundError, match="nope.smi"):
        preprocess([corpus_files.train, missing], [corpus_files.valid], vocab, tmp_path / "out", n_jobs=1)
    with pytest.raises(FileNotFoundError, match="nope.smi"):
        preprocess([corpus_files.train], [missing], vocab, tmp_path / "out", n_jobs=1)


# ------------------------------------------------------------------------ same path, same loss
@pytest.mark.slow
def test_cli_and_fairseq_train_give_the_same_loss(data_dir, tmp_path, train_log, capsys):
    flags = _tiny_flags(data_dir, tmp_path / "api", max_update=10)
    assert cli.main(["pretrain", *flags]) == 0
    api_loss = _final_train_loss(train_log())
    api_state = _load_ckpt(tmp_path / "api" / "checkpoint_last.pt")
    assert _num_updates(api_state) == 10

    # the documented command: what `bartsmiles pretrain --print-command` prints, with
    # --user-dir $(bartsmiles user-dir)
    capsys.readouterr()
    assert cli.main(["pretrain", *_tiny_flags(data_dir, tmp_path / "fs", max_update=10), "--print-command"]) == 0
    printed = shlex.split(capsys.readouterr().out.strip())
    assert printed[0] == "fairseq-train"
    assert cli.main(["user-dir"]) == 0
    user_dir = capsys.readouterr().out.strip()
    assert printed[printed.index("--user-dir") + 1] == user_dir
    assert not (tmp_path / "fs").exists()  # --print-command trains nothing

    proc = _run([_exe("fairseq-train"), *printed[1:]], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    fs_loss = _final_train_loss(_json_records(proc.stdout))
    assert fs_loss == pytest.approx(api_loss, abs=1e-6)
    # the logged loss has 3 decimals only: the weights must agree as well
    fs_state = _load_ckpt(tmp_path / "fs" / "checkpoint_last.pt")
    assert _num_updates(fs_state) == 10
    assert api_state["model"].keys() == fs_state["model"].keys()
    for name, value in api_state["model"].items():
        torch.testing.assert_close(fs_state["model"][name], value, rtol=0, atol=1e-6, msg=name)


# --------------------------------------------------------------------------- plugin imported once
_ONE_PROCESS = textwrap.dedent(
    """
    import sys
    from bartsmiles.training.pretraining import PretrainConfig
    from bartsmiles.training.pretraining import pretrain
    from bartsmiles.tasks import USER_DIR

    data, out = sys.argv[1], sys.argv[2]
    pretrain(PretrainConfig(data=data, save_dir=out + "/api", arch="bartsmiles_tiny", max_update=2, cpu=True,
                            num_workers=0, max_tokens=1024, save_interval_updates=0, log_interval=1))
    print("API-OK", flush=True)

    import fairseq_cli.train
    common = [data, "--task", "smiles_denoising", "--arch", "bartsmiles_tiny", "--criterion", "cross_entropy",
              "--optimizer", "adam", "--lr", "1e-4", "--max-tokens", "1024", "--max-update", "2", "--cpu",
              "--num-workers", "0", "--log-format", "json"]
    sys.argv = ["fairseq-train", *common, "--user-dir", USER_DIR, "--save-dir", out + "/cli"]
    fairseq_cli.train.cli_main()
    print("CLI-OK", flush=True)

    from fairseq.tasks import TASK_REGISTRY
    print("TASK-MODULE", TASK_REGISTRY["smiles_denoising"].__module__, flush=True)
    """
)


@pytest.mark.slow
def test_plugin_registered_once_api_then_fairseq_cli(data_dir, tmp_path):
    script = tmp_path / "one_process.py"
    script.write_text(_ONE_PROCESS)
    proc = _run([sys.executable, str(script), str(data_dir), str(tmp_path)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "registered twice" not in proc.stdout and "Cannot register duplicate" not in proc.stdout
    assert "API-OK" in proc.stdout and "CLI-OK" in proc.stdout
    assert "TASK-MODULE bartsmiles.tasks.denoising" in proc.stdout
    for run in ("api", "cli"):
        assert _num_updates(_load_ckpt(tmp_path / run / "checkpoint_last.pt")) == 2


@pytest.mark.slow
def test_bare_tasks_folder_as_user_dir(data_dir, tmp_path):
    proc = _run([
        _exe("fairseq-train"), str(data_dir), "--user-dir", str(REPO / "tasks"), "--task", "smiles_denoising",
        "--arch", "bartsmiles_tiny", "--criterion", "cross_entropy", "--optimizer", "adam", "--lr", "1e-4",
        "--max-tokens", "1024", "--max-update", "2", "--cpu", "--num-workers", "0", "--save-dir", str(tmp_path / "ck"),
    ], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _num_updates(_load_ckpt(tmp_path / "ck" / "checkpoint_last.pt")) == 2


# ------------------------------------------------------------------------------- two CPU workers
@pytest.mark.slow
@pytest.mark.parametrize("descriptors", [False, True], ids=["denoising", "denoising+descriptors"])
def test_two_cpu_workers_split_the_epoch(data_dir, corpus_files, tmp_path, descriptors):
    ids_dir = tmp_path / "ids"
    save = tmp_path / "ck"
    flags = _tiny_flags(data_dir, save, max_update=0) + [
        "--max-epoch", "1", "--world-size", "2", "--log-sample-ids", str(ids_dir), "--max-tokens", "512",
        *(["--descriptor-loss"] if descriptors else []),
    ]
    proc = _run([*_bartsmiles_cmd(), "pretrain", *flags], cwd=tmp_path, timeout=240)
    logs = "".join((save / "logs" / f"rank{r}.log").read_text()[-2000:] for r in range(2) if (save / "logs" / f"rank{r}.log").exists())
    assert proc.returncode == 0, proc.stdout[-2000:] + logs
    for rank in range(2):
        log = (save / "logs" / f"rank{rank}.log").read_text()
        assert "initialized host" in log and f"rank {rank}" in log
    per_rank, batches = [], []
    for rank in range(2):
        path = ids_dir / f"rank{rank}.ids"
        assert path.is_file(), f"{path} missing: rank {rank} trained nothing"
        lines = [line for line in path.read_text().split("\n") if line.strip()]
        batches.append(len(lines))
        ids = [int(i) for line in lines for i in line.split()]
        assert len(ids) == len(set(ids)), f"rank {rank} saw a sample twice in one epoch"
        per_rank.append(set(ids))
    n = len(corpus_files.train_smiles)
    assert not per_rank[0] & per_rank[1], "the ranks trained on overlapping samples"
    assert per_rank[0] | per_rank[1] == set(range(n))
    for ids in per_rank:
        assert 0.3 * n <= len(ids) <= 0.7 * n, [len(s) for s in per_rank]
    state = _load_ckpt(save / "checkpoint_last.pt")
    assert _num_updates(state) == max(batches)  # one update = one batch on every rank (or a dummy)
    assert min(batches) >= max(batches) - 1
    # tokens seen = both ranks' target tokens (<s> + row), once each: dummy batches are not counted
    rows = _read_rows(data_dir / "train", data_dir / "dict.txt")
    assert _record(state)["tokens_seen"] == sum(len(r) + 1 for r in rows)
    assert _record(state)["objective"]["name"] == ("denoising+descriptors" if descriptors else "denoising")


def test_world_size_without_gpu_fails_loudly(data_dir, tmp_path, capsys):
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs: the spawn would work")
    flags = _tiny_flags(data_dir, tmp_path / "ck", max_update=2)
    flags[flags.index("--cpu")] = "--no-cpu"  # ask for GPU workers explicitly (without it: the CPU recipe)
    _cli_fails(["pretrain", *flags, "--world-size", "2"], capsys, TrainingSetupError, "exit 0 having trained nothing")
    # also when the distributed flags come through verbatim, with an init method fairseq would spawn on
    _cli_fails(["pretrain", *_tiny_flags(data_dir, tmp_path / "ck", max_update=2), "--",
                "--distributed-world-size", "2", "--distributed-init-method", "tcp://127.0.0.1:29511"],
               capsys, TrainingSetupError, "GPU")
    with pytest.raises(TrainingSetupError, match="trained nothing"):  # the API raises
        pretrain(PretrainConfig(data=str(data_dir), save_dir=str(tmp_path / "ck"), world_size=2, cpu=False))
    assert not (tmp_path / "ck" / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_raw_fairseq_train_two_workers_without_gpu_trains_nothing(data_dir, tmp_path):
    """Documents fairseq's silent failure that ``bartsmiles pretrain`` refuses (test above)."""
    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs")
    from bartsmiles.training.runner import free_port

    save = tmp_path / "ck"
    argv = pretrain_args(PretrainConfig(data=str(data_dir), save_dir=str(save), arch="bartsmiles_tiny", max_update=2,
                                        cpu=True, num_workers=0, max_tokens=1024))
    proc = _run([_exe("fairseq-train"), *argv, "--distributed-world-size", "2",
                 "--distributed-init-method", f"tcp://127.0.0.1:{free_port()}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]  # "success" ...
    assert not (save / "checkpoint_last.pt").exists()  # ... having trained nothing
    assert not _json_records(proc.stdout)


# -------------------------------------------------------------------------------- resume after kill
@pytest.mark.slow
@pytest.mark.parametrize("descriptors", [False, True], ids=["denoising", "denoising+descriptors"])
def test_resume_after_kill(data_dir, tmp_path, descriptors):
    save = tmp_path / "ck"
    max_update = 40
    cmd = [*_bartsmiles_cmd(), "pretrain", *_tiny_flags(data_dir, save, max_update=max_update),
           "--save-interval-updates", "5", "--keep-interval-updates", "1",
           *(["--descriptor-loss"] if descriptors else [])]
    last = save / "checkpoint_last.pt"
    log1 = tmp_path / "first.log"
    with open(log1, "w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT
            saved = 0
            while time.monotonic() < deadline and proc.poll() is None:
                if last.exists():
                    try:
                        saved = _num_updates(_load_ckpt(last))
                    except Exception:  # being written
                        saved = 0
                    if saved >= 5:
                        proc.send_signal(signal.SIGKILL)
                        break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"not killed (rc {proc.returncode}):\n{log1.read_text()[-2000:]}"
    killed = _load_ckpt(last)  # what is on disk now (a later save may have landed)
    at_kill = _num_updates(killed)
    assert 5 <= at_kill < max_update

    proc = _run(cmd, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    loaded = re.findall(r"Loaded checkpoint (\S+) \(epoch \d+ @ (\d+) updates\)", proc.stdout)
    assert loaded, proc.stdout[-3000:]
    assert Path(loaded[0][0]).name == "checkpoint_last.pt" and int(loaded[0][1]) == at_kill
    records = [r for r in _json_records(proc.stdout) if "num_updates" in r and "loss" in r]
    updates = [int(r["num_updates"]) for r in records]
    assert updates and updates[0] == at_kill + 1 and updates[-1] == max_update
    final = _load_ckpt(last)
    assert _num_updates(final) == max_update
    # the token count continues from the checkpoint (each update's wpb is its target tokens at --log-interval 1)
    assert _record(final)["tokens_seen"] == _record(killed)["tokens_seen"] + sum(int(float(r["wpb"])) for r in records)
    if descriptors:
        assert "descriptor_mse" in records[0]
        assert final["criterion"] is not None and "head.out.weight" in final["criterion"]


# --------------------------------------------------------------------------------- restore-file
def test_missing_restore_file_fails_in_bartsmiles(data_dir, tmp_path, capsys):
    missing = tmp_path / "no_such_checkpoint.pt"
    _cli_fails(["pretrain", *_tiny_flags(data_dir, tmp_path / "ck", max_update=2), "--restore-file", str(missing)],
               capsys, FileNotFoundError, "no_such_checkpoint.pt")
    with pytest.raises(FileNotFoundError, match="no_such_checkpoint.pt"):
        pretrain(PretrainConfig(data=str(data_dir), save_dir=str(tmp_path / "ck2"), restore_file=str(missing),
                                cpu=True, world_size=2))
    assert not (tmp_path / "ck" / "checkpoint_last.pt").exists()


def test_missing_restore_file_fairseq_alone_starts_from_scratch(data_dir, tmp_path, train_log, monkeypatch):
    """What the check above guards against: fairseq trains from scratch without a word."""
    from fairseq_cli import train as fairseq_train_cli

    save = tmp_path / "ck"
    argv = pretrain_args(PretrainConfig(data=str(data_dir), save_dir=str(save), arch="bartsmiles_tiny", max_update=2,
                                        cpu=True, num_workers=0, max_tokens=1024, log_interval=1,
                                        restore_file=str(tmp_path / "no_such_checkpoint.pt")))
    monkeypatch.setattr(sys, "argv", ["fairseq-train", *argv])
    fairseq_train_cli.cli_main()
    state = _load_ckpt(save / "checkpoint_last.pt")
    assert _num_updates(state) == 2
    updates = [int(r["num_updates"]) for r in train_log() if "loss" in r and "num_updates" in r]
    assert updates[0] == 1  # from scratch


# ------------------------------------------------------------------------- randomized SMILES
def test_randomize_smiles_trains(data_dir, tmp_path, train_log):
    save = tmp_path / "ck"
    assert cli.main(["pretrain", *_tiny_flags(data_dir, save, max_update=3), "--randomize-smiles", "1.0"]) == 0
    assert _num_updates(_load_ckpt(save / "checkpoint_last.pt")) == 3
    assert np.isfinite(_final_train_loss(train_log()))


def test_randomize_smiles_wraps_the_training_split_only(data_dir):
    from fairseq import tasks as fairseq_tasks

    from bartsmiles.tasks.augment import RandomizedSmilesDataset
    from bartsmiles.training.runner import parse_fairseq_args

    cfg = parse_fairseq_args(pretrain_args(PretrainConfig(data=str(data_dir), arch="bartsmiles_tiny",
                                                          randomize_smiles=1.0, cpu=True)))
    task = fairseq_tasks.setup_task(cfg.task)
    task.load_dataset("train")
    task.load_dataset("valid")
    assert isinstance(task.datasets["train"].dataset, RandomizedSmilesDataset)
    assert not isinstance(task.datasets["valid"].dataset, RandomizedSmilesDataset)
    # the denoising wrapper forwards the epoch to the augmentation
    task.datasets["train"].set_epoch(3)
    assert task.datasets["train"].dataset.epoch == 3


def test_batches_are_loaded_without_a_buffer_thread(data_dir):
    """A buffer thread would race dropout for torch's RNG (masking draws from it): see
    test_cli_and_fairseq_train_give_the_same_loss, whose weights then differ by ~5e-3."""
    from fairseq import tasks as fairseq_tasks

    from bartsmiles.training.runner import parse_fairseq_args

    cfg = parse_fairseq_args(pretrain_args(PretrainConfig(data=str(data_dir), arch="bartsmiles_tiny", cpu=True)))
    task = fairseq_tasks.setup_task(cfg.task)
    task.load_dataset("train")
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=1024, data_buffer_size=10)
    assert itr.buffer_size == 0
    assert len(list(itr.next_epoch_itr(shuffle=False))) > 1


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items
        self.sizes = np.array([len(t) for t in items])

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self):
        return len(self.items)


def test_randomized_smiles_dataset(corpus, vocab):
    from bartsmiles.core.chem import canonicalize
    from bartsmiles.core.tokenizer import SmilesTokenizer
    from bartsmiles.tasks.augment import RandomizedSmilesDataset

    tok = SmilesTokenizer()
    smiles = corpus[:40] + corpus[-8:]  # includes the charged / nitro molecules
    items = [torch.tensor(vocab.encode(tok.tokenize(s)), dtype=torch.long) for s in smiles]

    def view(seed, epoch, prob=1.0):
        ds = RandomizedSmilesDataset(_ListDataset(items), vocab, prob=prob, seed=seed, max_tokens=128)
        ds.set_epoch(epoch)
        return ["".join(vocab.decode(ds[i].tolist())) for i in range(len(ds))]

    e1, e2 = view(1, 1), view(1, 2)
    for original, a, b in zip(smiles, e1, e2):
        assert canonicalize(a) == canonicalize(original) == canonicalize(b)
    changed = sum(a != s for a, s in zip(e1, smiles))
    assert changed >= 0.8 * len(smiles), f"only {changed} of {len(smiles)} items were randomized"
    assert sum(a != b for a, b in zip(e1, e2)) >= 0.8 * len(smiles), "epochs give the same view"
    assert view(1, 2) == e2, "not deterministic for the same (seed, epoch, index)"
    assert view(2, 2) != e2
    assert view(1, 1, prob=0.0) == smiles
    # items keep <s> ... </s>
    ds = RandomizedSmilesDataset(_ListDataset(items), vocab, prob=1.0, seed=1, max_tokens=128)
    for i in range(len(ds)):
        row = ds[i]
        assert row[0] == vocab.bos and row[-1] == vocab.eos and row.dtype == items[i].dtype
    with pytest.raises(ValueError):
        RandomizedSmilesDataset(_ListDataset(items), vocab, prob=1.5, seed=1, max_tokens=128)


# ----------------------------------------------------------------------------------- numpy shim
def test_numpy_compat_shim(monkeypatch):
    from bartsmiles.tasks import _compat

    fake = types.ModuleType("numpy")
    fake.int64 = np.int64
    monkeypatch.setattr(_compat, "np", fake)
    assert not hasattr(fake, "compat")
    _compat.ensure_numpy_compat()
    assert fake.compat.long is np.int64
    before = fake.compat
    _compat.ensure_numpy_compat()  # idempotent: an existing compat is left alone
    assert fake.compat is before


def test_numpy_compat_shim_leaves_real_numpy_alone():
    from bartsmiles.tasks import _compat

    had = hasattr(np, "compat")
    before = getattr(np, "compat", None)
    _compat.ensure_numpy_compat()
    if had:
        assert np.compat is before
    assert np.compat.long is np.int64 or np.compat.long is int


def test_checkpoint_allowlist(tmp_path):
    from bartsmiles.tasks import _compat

    _compat.apply()
    path = tmp_path / "ns.pt"
    torch.save({"args": argparse.Namespace(arch="bartsmiles_tiny"), "w": torch.ones(2)}, path)
    state = torch.load(path, weights_only=True)
    assert state["args"].arch == "bartsmiles_tiny"

    torch.save({"evil": _NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        torch.load(tmp_path / "evil.pt", weights_only=True)


class _NotAllowed:
    pass


def test_missing_data_folder_is_named_with_the_way_to_make_it(tmp_path, capsys):
    from bartsmiles.cli.main import main

    missing = tmp_path / "no-such-data"
    assert main(["pretrain", "--data", str(missing), "--cpu", "--save-dir", str(tmp_path / "ck")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err and "bartsmiles preprocess" in err


# ------------------------------------------------------------------------------ descriptor loss
def test_descriptor_flags(data_dir, tmp_path):
    base = dict(data=str(data_dir), save_dir=str(tmp_path), arch="bartsmiles_tiny", cpu=True)
    plain = pretrain_args(PretrainConfig(**base))
    assert plain[plain.index("--criterion") + 1] == "cross_entropy" and "--descriptor-loss" not in plain
    argv = pretrain_args(PretrainConfig(**base, descriptor_loss=True, descriptor_weight=0.5))
    assert argv[argv.index("--criterion") + 1] == "smiles_denoising"
    assert "--descriptor-loss" in argv and argv[argv.index("--descriptor-weight") + 1] == "0.5"
    with pytest.raises(ValueError, match="not both"):
        pretrain_args(PretrainConfig(**base, init_from="a.pt", restore_file="b.pt"))


def test_descriptor_loss_needs_its_criterion(data_dir, tmp_path, capsys):
    _cli_fails(["pretrain", *_tiny_flags(data_dir, tmp_path / "ck", max_update=2), "--",
                "--descriptor-loss"], capsys, ValueError, "--criterion smiles_denoising")


@pytest.mark.slow
def test_descriptor_loss_falls(data_dir, tmp_path, train_log):
    """The overfit test of the descriptor head: its validation error falls epoch after epoch."""
    save = tmp_path / "ck"
    flags = _tiny_flags(data_dir, save, max_update=120)
    flags[flags.index("--lr") + 1] = "0.003"
    assert cli.main(["pretrain", *flags, "--descriptor-loss", "--descriptor-weight", "10", "--log-interval", "100"]) == 0
    valid = [float(r["valid_descriptor_mse"]) for r in train_log() if "valid_descriptor_mse" in r]
    assert len(valid) >= 5, valid
    assert valid[-1] < 0.9 * valid[0], valid
    state = _load_ckpt(save / "checkpoint_last.pt")
    assert _record(state)["objective"]["name"] == "denoising+descriptors"
    # the head is the criterion's, not the model's: the weights are those of a plain BART
    assert not any("head" in k for k in state["model"])
    assert set(state["criterion"]) == {"head.dense.weight", "head.dense.bias", "head.out.weight", "head.out.bias"}


def test_init_from_continues_the_token_count(data_dir, tmp_path):
    first = tmp_path / "first"
    assert cli.main(["pretrain", *_tiny_flags(data_dir, first, max_update=3)]) == 0
    seen = _record(_load_ckpt(first / "checkpoint_last.pt"))["tokens_seen"]
    assert seen > 0
    second = tmp_path / "second"
    argv = pretrain(PretrainConfig(data=str(data_dir), save_dir=str(second), arch="bartsmiles_tiny", cpu=True,
                                   num_workers=0, max_tokens=1024, max_update=2, save_interval_updates=0,
                                   init_from=str(first / "checkpoint_last.pt"), descriptor_loss=True))
    assert argv[argv.index("--initial-tokens-seen") + 1] == str(seen)
    state = _load_ckpt(second / "checkpoint_last.pt")
    assert _num_updates(state) == 2  # a fresh optimizer and counter of updates
    assert _record(state)["tokens_seen"] > seen


def test_the_criterion_without_descriptors_is_cross_entropy(data_dir, tmp_path, train_log):
    assert cli.main(["pretrain", *_tiny_flags(data_dir, tmp_path / "ce", max_update=3)]) == 0
    ce = [float(r["loss"]) for r in train_log() if "loss" in r and "num_updates" in r]
    n = len(train_log())
    assert cli.main(["pretrain", *_tiny_flags(data_dir, tmp_path / "sd", max_update=3),
                     "--", "--criterion", "smiles_denoising"]) == 0
    sd = [float(r["loss"]) for r in train_log()[n:] if "loss" in r and "num_updates" in r]
    assert len(ce) == len(sd) == 3 and ce == sd
    a = _load_ckpt(tmp_path / "ce" / "checkpoint_last.pt")["model"]
    b = _load_ckpt(tmp_path / "sd" / "checkpoint_last.pt")["model"]
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=0, atol=1e-6, msg=name)
