"""Unit tests of the pure config -> ``fairseq-train`` argv translation (:mod:`bartsmiles.training.config`)."""
from __future__ import annotations

import pytest

from bartsmiles.training.config import config_help
from bartsmiles.training.pretraining import PretrainConfig, pretrain_args

UD = "/some/user_dir"


def _value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


def test_data_first_and_core_flags():
    cfg = PretrainConfig(data="bin", save_dir="out", arch="bartsmiles_tiny", max_update=10, lr=1e-3, seed=7,
                         max_tokens=512, update_freq=2, num_workers=0, mask=0.25, randomize_smiles=0.5)
    argv = pretrain_args(cfg, user_dir=UD)
    assert argv[0] == "bin"
    assert _value(argv, "--user-dir") == UD
    assert _value(argv, "--task") == "smiles_denoising"
    assert _value(argv, "--arch") == "bartsmiles_tiny"
    assert _value(argv, "--criterion") == "cross_entropy"
    assert _value(argv, "--save-dir") == "out"
    assert float(_value(argv, "--lr")) == 1e-3
    assert _value(argv, "--seed") == "7"
    assert _value(argv, "--max-tokens") == "512"
    assert _value(argv, "--update-freq") == "2"
    assert _value(argv, "--num-workers") == "0"
    assert float(_value(argv, "--mask")) == 0.25
    assert float(_value(argv, "--randomize-smiles")) == 0.5
    assert _value(argv, "--max-update") == "10"
    assert _value(argv, "--log-format") == "json"


def test_default_user_dir_is_the_plugin_shim():
    from bartsmiles.tasks import USER_DIR

    argv = pretrain_args(PretrainConfig(data="bin"))
    assert _value(argv, "--user-dir") == USER_DIR
    assert USER_DIR.endswith("bartsmiles_plugin")


def test_zero_limits_are_left_out():
    argv = pretrain_args(PretrainConfig(data="bin", max_update=0, max_epoch=0, stop_time_hours=0), user_dir=UD)
    for flag in ("--max-update", "--max-epoch", "--stop-time-hours", "--validate-interval-updates"):
        assert flag not in argv
    argv = pretrain_args(PretrainConfig(data="bin", max_update=0, max_epoch=1, stop_time_hours=0.5,
                                        validate_interval_updates=20), user_dir=UD)
    assert _value(argv, "--max-epoch") == "1"
    assert float(_value(argv, "--stop-time-hours")) == 0.5
    assert _value(argv, "--validate-interval-updates") == "20"


@pytest.mark.parametrize("precision, present, absent", [
    ("fp32", [], ["--fp16", "--bf16"]),
    ("fp16", ["--fp16"], ["--bf16"]),
    ("bf16", ["--bf16"], ["--fp16"]),
])
def test_precision_mapping(precision, present, absent):
    argv = pretrain_args(PretrainConfig(data="bin", precision=precision), user_dir=UD)
    for flag in present:
        assert flag in argv
    for flag in absent:
        assert flag not in argv


def test_empty_data_is_an_error():
    with pytest.raises(ValueError, match="data"):
        pretrain_args(PretrainConfig(data=""), user_dir=UD)


@pytest.mark.parametrize("precision", ["fp8", "FP16", "half", ""])
def test_bad_precision_is_an_error(precision):
    with pytest.raises(ValueError, match="precision"):
        pretrain_args(PretrainConfig(data="bin", precision=precision), user_dir=UD)


def test_extra_args_pass_through_verbatim_at_the_end():
    extra = ("--encoder-layers", "1", "--no-epoch-checkpoints")
    argv = pretrain_args(PretrainConfig(data="bin", extra_args=extra), user_dir=UD)
    assert tuple(argv[-len(extra):]) == extra


def test_restore_file_and_reset_flags():
    argv = pretrain_args(PretrainConfig(data="bin"), user_dir=UD)
    assert "--restore-file" not in argv and "--reset-optimizer" not in argv
    argv = pretrain_args(PretrainConfig(data="bin", restore_file="/ckpt/x.pt", reset_optimizer=True), user_dir=UD)
    assert _value(argv, "--restore-file") == "/ckpt/x.pt"
    for flag in ("--reset-optimizer", "--reset-lr-scheduler", "--reset-meters", "--reset-dataloader"):
        assert flag in argv


def test_cpu_log_file_and_sample_ids():
    argv = pretrain_args(PretrainConfig(data="bin"), user_dir=UD)
    assert "--cpu" not in argv and "--log-file" not in argv and "--log-sample-ids" not in argv
    argv = pretrain_args(PretrainConfig(data="bin", cpu=True, log_file="l.txt", log_sample_ids="ids"), user_dir=UD)
    assert "--cpu" in argv
    assert _value(argv, "--log-file") == "l.txt"
    assert _value(argv, "--log-sample-ids") == "ids"


def test_world_size_flags():
    argv = pretrain_args(PretrainConfig(data="bin"), user_dir=UD)
    assert "--distributed-world-size" not in argv
    gpu = pretrain_args(PretrainConfig(data="bin", world_size=2), user_dir=UD)
    assert _value(gpu, "--distributed-world-size") == "2"
    assert "--distributed-backend" not in gpu
    cpu = pretrain_args(PretrainConfig(data="bin", world_size=2, cpu=True), user_dir=UD)
    assert _value(cpu, "--distributed-backend") == "gloo"
    assert _value(cpu, "--ddp-backend") == "legacy_ddp"


def test_pure_function():
    cfg = PretrainConfig(data="bin", extra_args=("--foo",))
    assert pretrain_args(cfg, user_dir=UD) == pretrain_args(cfg, user_dir=UD)
    assert cfg.extra_args == ("--foo",)


def test_argv_is_accepted_by_fairseq_parser():
    """Every flag we emit is one fairseq (plus the plugin) knows."""
    from bartsmiles.training.runner import parse_fairseq_args

    cfg = PretrainConfig(data="bin", arch="bartsmiles_tiny", max_update=3, max_epoch=2, cpu=True,
                         restore_file="x.pt", reset_optimizer=True, log_sample_ids="ids", randomize_smiles=0.2,
                         validate_interval_updates=5, stop_time_hours=1.0)
    fcfg = parse_fairseq_args(pretrain_args(cfg))
    assert fcfg.task._name == "smiles_denoising"
    assert fcfg.task.randomize_smiles == 0.2
    assert fcfg.task.log_sample_ids == "ids"
    assert fcfg.optimization.max_update == 3 and fcfg.optimization.max_epoch == 2
    assert fcfg.checkpoint.restore_file == "x.pt" and fcfg.checkpoint.reset_optimizer
    assert fcfg.common.cpu
    assert fcfg.model.encoder_layers == 2 and fcfg.model.encoder_embed_dim == 64


def test_config_help_covers_every_field():
    helps = config_help(PretrainConfig)
    assert set(helps) >= {"data", "save_dir", "world_size", "restore_file", "extra_args"}
    assert all(helps.values())
