"""Training configs check every field when made, naming the field and its allowed values; the CLI's choices
are the configs' allowed values."""

import re
from typing import get_args

import pytest

from matryoshka_rag import InputError, SupervisedConfig, UnsupervisedConfig
from matryoshka_rag.cli.app import build_parser
from matryoshka_rag.training_options import SupervisedObjective, UnsupervisedObjective

BAD_UNSUPERVISED = [
    ("objective", "listwse", "objective must be one of 'listwise', 'paper'; got 'listwse'"),
    ("start", "PCA", "start must be one of 'pca', 'identity'; got 'PCA'"),
    ("batch_size", 0, "batch_size must be an integer >= 1; got 0"),
    ("eval_every", 0, "eval_every must be an integer >= 1; got 0"),
    ("k", 0, "k must be an integer >= 1; got 0"),
    ("temperature", 0.0, "temperature must be a finite number > 0; got 0.0"),
    ("temperature", -0.05, "temperature must be a finite number > 0; got -0.05"),
    ("lr", float("nan"), "lr must be a finite number > 0; got nan"),
    ("max_steps", 2.5, "max_steps must be an integer >= 1; got 2.5"),
    ("patience", 0, "patience must be an integer >= 1; got 0"),
    ("holdout", -1, "holdout must be an integer >= 0; got -1"),
    ("num_layers", 0, "num_layers must be an integer >= 1; got 0"),
    ("alpha", -1.0, "alpha must be a finite number >= 0; got -1.0"),
]

BAD_SUPERVISED = [
    ("objective", "softmx", "objective must be one of 'multi-positive', 'softmax', 'pairwise'; got 'softmx'"),
    ("batch_size", 0, "batch_size must be an integer >= 1; got 0"),
    ("eval_every", -5, "eval_every must be an integer >= 1; got -5"),
    ("max_candidates", 0, "max_candidates must be an integer >= 1; got 0"),
    ("validation_fraction", 1.0, "validation_fraction must be a finite number > 0 and < 1; got 1.0"),
    ("validation_fraction", 0.0, "validation_fraction must be a finite number > 0 and < 1; got 0.0"),
    ("temperature", 0.0, "temperature must be a finite number > 0; got 0.0"),
    ("temperature", (0.05, -0.1), "temperature must be a finite number > 0; got -0.1"),
    ("temperature", (), "temperature must be one number > 0 or several; got none"),
    ("max_positives", 0, "max_positives must be an integer >= 1; got 0"),
    ("hard_negatives", -1, "hard_negatives must be an integer >= 0; got -1"),
    ("temperature_steps", -1, "temperature_steps must be an integer >= 0; got -1"),
    ("refit", "no", "refit must be True or False; got 'no'"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_UNSUPERVISED)
def test_unsupervised_config_names_the_bad_field(field, value, message):
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        UnsupervisedConfig(**{field: value})


@pytest.mark.parametrize(("field", "value", "message"), BAD_SUPERVISED)
def test_supervised_config_names_the_bad_field(field, value, message):
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        SupervisedConfig(**{field: value})


def test_every_allowed_value_is_accepted_and_a_list_of_temperatures_becomes_a_tuple():
    for objective in get_args(UnsupervisedObjective):
        assert UnsupervisedConfig(objective=objective).objective == objective
    for objective in get_args(SupervisedObjective):
        assert SupervisedConfig(objective=objective).objective == objective
    assert SupervisedConfig(temperature=[0.05, 0.1]).temperature == (0.05, 0.1)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_cli_choices_are_the_configs_allowed_values(command):
    parser = build_parser()
    required = ["--corpus", "c.jsonl"] if command == "train" else ["--dataset", "d"]
    base = [command, *required, "--out", "o"]
    for objective in get_args(UnsupervisedObjective):
        assert parser.parse_args([*base, "--objective", objective]).objective == objective
    for objective in get_args(SupervisedObjective):
        assert parser.parse_args([*base, "--ranking", objective]).ranking == objective
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--objective", "listwse"])
