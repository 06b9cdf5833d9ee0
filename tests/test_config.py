"""Config: YAML in, unknown keys rejected with the nearest valid one, values checked, --set."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from seq2seq import config
from seq2seq.config import Config, ConfigError, ModelConfig

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def write(tmp_path, text, name="cfg.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_model_key_names_are_the_contract():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    assert {"cell", "impl", "attention", "embedding_dim", "hidden_size", "num_layers",
            "bidirectional", "dropout", "input_feeding", "tie_embeddings"} <= names


def test_no_file_gives_the_defaults():
    assert config.load() == Config()


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_configs_load(path):
    cfg = config.load(path)
    assert config.from_dict(cfg.to_dict()) == cfg


def test_yaml_round_trip(tmp_path):
    cfg = config.load(None, ["model.cell=gru", "train.max_steps=7", "data.valid_split=null"])
    assert config.load(write(tmp_path, config.to_yaml(cfg))) == cfg


@pytest.mark.parametrize("text,wrong,suggested", [
    ("model:\n  hiden_size: 3\n", "model.hiden_size", "hidden_size"),
    ("model:\n  num_layer: 2\n", "model.num_layer", "num_layers"),
    ("model:\n  input_feed: true\n", "model.input_feed", "input_feeding"),
    ("teacher_forcing:\n  schedul: linear\n", "teacher_forcing.schedul", "schedule"),
    ("modle:\n  cell: gru\n", "modle", "model"),
])
def test_unknown_key_is_rejected_with_the_nearest_valid_key(tmp_path, text, wrong, suggested):
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text))
    msg = str(e.value)
    assert wrong in msg and repr(suggested) in msg and "cfg.yaml" in msg


BAD_VALUES = [
    ("hidden_size", -3, "> 0"),
    ("embedding_dim", 0, "> 0"),
    ("num_layers", 2.5, "integer"),
    ("num_layers", True, "integer"),
    ("hidden_size", "big", "integer"),
    ("cell", "lstmm", "'lstm'"),  # the nearest choice
    ("impl", "cuda", "manual, fused"),
    ("attention", "dot", "none, bahdanau, luong"),
    ("dropout", 1.5, "[0.0, 1.0)"),
    ("dropout", -0.1, "[0.0, 1.0)"),
    ("dropout", "high", "number"),
    ("bidirectional", "yes", "true or false"),
    ("tie_embeddings", 1, "true or false"),
]


@pytest.mark.parametrize("key,value,hint", BAD_VALUES,
                         ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_bad_value_names_the_key(tmp_path, key, value, hint):
    path = write(tmp_path, yaml.safe_dump({"model": {key: value}}))
    with pytest.raises(ConfigError, match=f"model.{key}") as e:
        config.load(path)
    assert hint in str(e.value)
    with pytest.raises(ConfigError, match=f"model.{key}"):  # the same through --set
        config.load(None, [f"model.{key}={yaml.safe_dump(value).splitlines()[0]}"])


def test_other_sections_are_checked_too():
    for override, key in [("train.lr=0", "train.lr"), ("train.batch_size=-1", "train.batch_size"),
                          ("train.clip_norm=-1", "train.clip_norm"),
                          ("tokenizer.model_type=words", "tokenizer.model_type"),
                          ("data.max_len=0", "data.max_len")]:
        with pytest.raises(ConfigError, match=key):
            config.load(None, [override])


def test_set_overrides_are_parsed_and_type_checked(tmp_path):
    path = write(tmp_path, "model:\n  cell: gru\n  hidden_size: 64\ntrain:\n  lr: 0.01\n")
    cfg = config.load(path, ["model.hidden_size=256", "model.bidirectional=false",
                             "train.lr=3e-4", "train.max_steps=2000", "data.valid_split=null",
                             "model.attention=luong", "model.attention=none"])
    assert cfg.model.cell == "gru"  # from the file, untouched
    assert cfg.model.hidden_size == 256 and type(cfg.model.hidden_size) is int
    assert cfg.model.bidirectional is False
    assert cfg.train.lr == pytest.approx(3e-4) and type(cfg.train.lr) is float
    assert cfg.train.max_steps == 2000
    assert cfg.data.valid_split is None
    assert cfg.model.attention == "none"  # the last --set wins


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float key still takes it as a number."""
    assert config.load(write(tmp_path, "train:\n  lr: 1e-3\n")).train.lr == pytest.approx(1e-3)
    assert config.load(None, ["train.lr=5E-4"]).train.lr == pytest.approx(5e-4)
    for bad in ("nan", ".inf", "1e-3x"):
        with pytest.raises(ConfigError, match="train.lr"):
            config.load(None, [f"train.lr={bad}"])


@pytest.mark.parametrize("override,fragment", [
    ("model.hidden_size", "section.key=value"),
    ("hidden_size=3", "section.key"),
    ("model.rnn.cell=gru", "section.key"),
    ("modle.cell=gru", "'model'"),
    ("model.hiden_size=3", "'hidden_size'"),
    ("model.hidden_size=[1, 2", "cannot parse"),
])
def test_malformed_set_is_rejected(override, fragment):
    with pytest.raises(ConfigError) as e:
        config.load(None, [override])
    assert fragment in str(e.value)


@pytest.mark.parametrize("text,fragment", [
    ("model: [1, 2]\n", "mapping"),
    ("- model\n", "mapping"),
    ("model:\n  cell: lstm\n   impl: fused\n", "line"),
])
def test_bad_files_are_rejected(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        config.load(write(tmp_path, text))


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")


def test_configs_are_frozen():
    cfg = config.load()
    for section in dataclasses.fields(cfg):
        assert type(getattr(cfg, section.name)).__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.hidden_size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = ModelConfig()
    changed = cfg.replace(model=dataclasses.replace(cfg.model, cell="gru"))
    assert changed.model.cell == "gru" and cfg.model.cell == "lstm"
