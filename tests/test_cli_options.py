"""The command line is built from the config dataclasses: every field is an option, and the defaults
are the dataclass's own (nothing repeated by hand)."""
from __future__ import annotations

import dataclasses

import pytest

from bartsmiles.cli.options import config_from_args
from bartsmiles.cli.parser import build_parser
from bartsmiles.evaluation.mainjob import MainJobConfig
from bartsmiles.evaluation.probe import ProbeConfig
from bartsmiles.evaluation.retro import RetroBenchmarkConfig
from bartsmiles.training.finetuning import FinetuneConfig
from bartsmiles.training.pretraining import PretrainConfig

CASES = [("run", MainJobConfig, []), ("pretrain", PretrainConfig, []), ("finetune", FinetuneConfig, []),
         ("probe", ProbeConfig, []), ("benchmark-retro", RetroBenchmarkConfig, [])]


@pytest.mark.parametrize("command, cls, extra", CASES)
def test_defaults_come_from_the_dataclass(command, cls, extra):
    args = build_parser().parse_args([command, *extra])
    assert config_from_args(cls, args) == cls()


@pytest.mark.parametrize("command, cls, extra", CASES)
def test_every_field_is_an_option_with_help(command, cls, extra):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    dests = {a.dest: a for a in sub._actions}
    for f in dataclasses.fields(cls):
        if f.name == "extra_args":
            continue
        assert f.name in dests, f"{command}: no option for {cls.__name__}.{f.name}"
        assert dests[f.name].help and f.metadata.get("help", "") in dests[f.name].help


def test_values_and_booleans_reach_the_config():
    args = build_parser().parse_args(["finetune", "--data", "d.csv", "--lr", "0.001", "--target-columns", "a", "b",
                                      "--no-progress", "--cpu", "--adam-betas", "0.8", "0.9", "--precision", "bf16"])
    cfg = config_from_args(FinetuneConfig, args, ["--foo"])
    assert (cfg.data, cfg.lr, cfg.target_columns, cfg.progress, cfg.cpu) == ("d.csv", 0.001, ("a", "b"), False, True)
    assert cfg.adam_betas == (0.8, 0.9) and cfg.precision == "bf16" and cfg.extra_args == ("--foo",)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--precision", "fp8"])  # choices come from the field


def test_benchmark_options_override_only_what_was_given():
    args = build_parser().parse_args(["benchmark", "--rf-trees", "7", "--no-isolate", "--model", "m.pt"])
    assert args.rf_n_estimators == 7 and args.isolate is False and args.pretrained == "m.pt"
    assert args.seeds is None and args.resume is None  # left to --config / the dataclass
