"""FinetuneConfig -> fairseq-train argument list: a pure function, checked flag by flag."""
from __future__ import annotations

import dataclasses

import pytest

from bartsmiles.errors import FinetuneError, PropertyDataError
from bartsmiles.training.config import updates_per_epoch
from bartsmiles.training.finetuning import FinetuneConfig, finetune_args
from bartsmiles.tasks.property_table import split_targets


def _cfg(**kw) -> FinetuneConfig:
    base = dict(data="x.csv", task_type="classification", arch="bartsmiles_tiny", save_dir="out")
    base.update(kw)
    return FinetuneConfig(**base)


def _value(argv, flag):
    i = argv.index(flag)
    return argv[i + 1]


def test_every_field_has_help():
    for f in dataclasses.fields(FinetuneConfig):
        assert f.metadata.get("help"), f"FinetuneConfig.{f.name} lacks help text"


def test_paper_recipe_defaults():
    argv = finetune_args(_cfg(pretrained="pre.pt"), n_train=100, user_dir="/plugin")
    assert argv[0] == "x.csv"
    assert _value(argv, "--user-dir") == "/plugin"
    assert _value(argv, "--task") == "smiles_property"
    assert _value(argv, "--criterion") == "smiles_property"
    assert _value(argv, "--optimizer") == "adam"
    assert _value(argv, "--adam-betas") == "(0.9, 0.999)"
    assert float(_value(argv, "--weight-decay")) == 0.01
    assert float(_value(argv, "--clip-norm")) == 0.1
    assert _value(argv, "--lr-scheduler") == "polynomial_decay"
    assert _value(argv, "--batch-size") == "16"
    assert _value(argv, "--max-epoch") == "10"
    # 100 molecules / 16 per batch = 7 updates per epoch, 10 epochs = 70; warmup 16% = 11
    assert _value(argv, "--total-num-update") == "70"
    assert _value(argv, "--max-update") == "70"
    assert _value(argv, "--warmup-updates") == "11"
    assert _value(argv, "--best-checkpoint-metric") == "roc_auc"
    assert "--maximize-best-checkpoint-metric" in argv
    assert _value(argv, "--restore-file") == "pre.pt"
    for flag in ("--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler"):
        assert flag in argv
    assert "--no-epoch-checkpoints" not in argv
    assert _value(argv, "--keep-last-epochs") == "5"
    assert _value(argv, "--save-dir") == "out"
    assert _value(argv, "--split-file").endswith("split.json")
    assert "--cpu" not in argv


def test_updates_follow_batch_epochs_and_update_freq():
    assert updates_per_epoch(33, 16) == 3
    assert updates_per_epoch(33, 16, update_freq=2) == 2
    argv = finetune_args(_cfg(epochs=3, batch_size=8, update_freq=2, warmup_ratio=0.5), n_train=40, user_dir="/p")
    assert _value(argv, "--total-num-update") == "9"  # ceil(ceil(40/8)/2) = 3 per epoch
    assert _value(argv, "--warmup-updates") == "4"  # round(4.5) -> 4 (banker's), never above total


def test_regression_selects_on_rmse_and_minimizes():
    argv = finetune_args(_cfg(task_type="regression"), n_train=10, user_dir="/p")
    assert _value(argv, "--best-checkpoint-metric") == "rmse"
    assert "--maximize-best-checkpoint-metric" not in argv
    assert _value(argv, "--task-type") == "regression"


def test_no_pretrained_no_restore_and_cpu_flag():
    argv = finetune_args(_cfg(cpu=True), n_train=10, user_dir="/p")
    assert "--restore-file" not in argv and "--reset-optimizer" not in argv
    assert "--cpu" in argv


def test_split_file_given_or_computed(tmp_path):
    argv = finetune_args(_cfg(split="my_split.json"), n_train=10, user_dir="/p")
    assert _value(argv, "--split-file") == "my_split.json"
    folder = tmp_path / "d"
    folder.mkdir()
    argv = finetune_args(_cfg(data=str(folder)), n_train=10, user_dir="/p")
    assert "--split-file" not in argv


def test_targets_lr_dropout_seed_and_extra_args():
    argv = finetune_args(
        _cfg(target_columns=("a", "b"), lr=1e-5, dropout=0.3, seed=7, pos_weight="auto", extra_args=("--foo", "1")),
        n_train=10, user_dir="/p",
    )
    assert _value(argv, "--target-columns") == "a,b"
    assert float(_value(argv, "--lr")) == 1e-5
    assert float(_value(argv, "--dropout")) == 0.3
    assert _value(argv, "--seed") == "7"
    assert _value(argv, "--pos-weight") == "auto"
    assert argv[-2:] == ["--foo", "1"]


def test_target_names_with_commas_reach_the_task_whole():
    """SIDER's labels ("Neoplasms benign, malignant and ...") hold commas: they travel as JSON."""
    names = ("Hepatobiliary disorders", "Neoplasms benign, malignant and unspecified", "Cardiac disorders")
    argv = finetune_args(_cfg(target_columns=names), n_train=10, user_dir="/p")
    assert split_targets(_value(argv, "--target-columns")) == list(names)
    assert split_targets("a, b") == ["a", "b"]
    with pytest.raises(PropertyDataError, match="target-columns"):
        split_targets('["a", 1]')


@pytest.mark.parametrize(
    "change, n_train",
    [({"data": ""}, 10), ({"task_type": ""}, 10), ({"arch": ""}, 10), ({"precision": "fp8"}, 10), ({}, 0),
     ({"on_overflow": "drop"}, 10), ({"warmup_ratio": 1.5}, 10)],
)
def test_bad_configs_are_refused(change, n_train):
    with pytest.raises(FinetuneError):
        finetune_args(_cfg(**change), n_train=n_train, user_dir="/p")


def test_fairseq_parses_the_argument_list():
    from bartsmiles.training.runner import parse_fairseq_args

    argv = finetune_args(_cfg(pretrained="pre.pt", target_columns=("p_np",), cpu=True), n_train=160)
    cfg = parse_fairseq_args(argv)
    assert cfg.task._name == "smiles_property"
    assert cfg.task.target_columns == "p_np"
    assert cfg.task.max_positions == 128
    assert cfg.criterion._name == "smiles_property"
    assert tuple(cfg.optimizer.adam_betas) == (0.9, 0.999) or cfg.optimizer.adam_betas == "(0.9, 0.999)"
    assert cfg.lr_scheduler.warmup_updates == 16 and cfg.lr_scheduler.total_num_update == 100
    assert cfg.checkpoint.restore_file == "pre.pt"
    assert cfg.checkpoint.reset_optimizer and cfg.checkpoint.reset_meters
    assert cfg.checkpoint.reset_dataloader and cfg.checkpoint.reset_lr_scheduler
    assert cfg.checkpoint.maximize_best_checkpoint_metric
    assert not cfg.checkpoint.no_epoch_checkpoints
    assert cfg.common.cpu


def test_token_budget_counts_the_batches_fairseq_will_cut():
    # 10 short molecules and 6 long ones; 4 per batch, at most 200 padded positions per batch
    sizes = [20] * 10 + [90] * 6
    # sorted buckets: [20]*4, [20]*4, [20]*2 + [90]*2 -> cut: 2 long need 180 <= 200 but 4 x 90 > 200
    n = updates_per_epoch(len(sizes), 4, sizes=sizes, max_tokens=200)
    assert n == updates_per_epoch(len(sizes), 4, sizes=list(reversed(sizes)), max_tokens=200)  # order-free
    assert n > updates_per_epoch(len(sizes), 4)  # the long molecules come in smaller batches
    assert updates_per_epoch(len(sizes), 4, sizes=sizes, max_tokens=10_000) == updates_per_epoch(len(sizes), 4)
    with pytest.raises(ValueError, match="size of every"):
        updates_per_epoch(len(sizes), 4, max_tokens=200)


def test_max_tokens_reaches_fairseq_and_needs_sizes():
    sizes = [30] * 90 + [120] * 10
    argv = finetune_args(_cfg(max_tokens=512, batch_size=16), n_train=100, user_dir="/p", train_sizes=sizes)
    assert _value(argv, "--max-tokens") == "512"
    per_epoch = updates_per_epoch(100, 16, sizes=sizes, max_tokens=512)
    assert _value(argv, "--max-update") == str(10 * per_epoch) and per_epoch > 7
    assert "--max-tokens" not in finetune_args(_cfg(), n_train=100, user_dir="/p")
    with pytest.raises(FinetuneError, match="train_sizes"):
        finetune_args(_cfg(max_tokens=512), n_train=100, user_dir="/p")
    with pytest.raises(FinetuneError, match="at least max_positions"):
        finetune_args(_cfg(max_tokens=64), n_train=100, user_dir="/p", train_sizes=sizes)


def test_keep_last_epochs_zero_writes_no_epoch_checkpoints():
    argv = finetune_args(_cfg(keep_last_epochs=0), n_train=10, user_dir="/p")
    assert "--no-epoch-checkpoints" in argv and "--keep-last-epochs" not in argv
