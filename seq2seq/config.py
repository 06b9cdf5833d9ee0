"""Configuration: frozen dataclasses loaded from YAML.

Unknown or misspelled keys are rejected with the nearest valid key, values are type- and
range-checked, and ``--set a.b=c`` overrides apply on top of the file. Every key is commented
inline with its meaning; the YAML files under ``recipes/`` use the same names.
"""

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    path: Optional[str] = None  # datasets.load_dataset path: hub id ("bentrevett/multi30k"), "json", "csv", or "text" for line-aligned files
    name: Optional[str] = None  # datasets config name, e.g. "de-en" for wmt16
    data_files: Optional[Any] = None  # passed to load_dataset; for path "text": {split: [src_file, tgt_file]}
    src: str = "src"  # source column, or key in a `translation` column
    tgt: str = "tgt"  # target column, or key in a `translation` column
    train_split: str = "train"  # the split to train on (and to learn the tokenizer from)
    valid_split: Optional[str] = "validation"  # validated during training, picks best.pt; None: no validation
    test_split: Optional[str] = "test"  # what recipes and `evaluate --checkpoint` decode and score by default
    max_len: Optional[int] = None  # drop training pairs with more pieces than this on either side, with a warning; None: a limit learned from the data (8 x the median pair length, at least 256), which stops the run instead if it would drop over 1%
    streaming: bool = False  # read the training split as a stream, chunk by chunk (corpora larger than memory); needs train.max_steps
    chunk_size: int = 100000  # streaming: pairs tokenized, bucketed and shuffled together; the tokenizer learns from the first chunk

    def __post_init__(self):
        if self.max_len is not None:
            _positive(self, "max_len")
        _positive(self, "chunk_size")


@dataclass(frozen=True)
class TokenizerConfig:
    model_type: Literal["unigram", "bpe", "word", "char"] = "bpe"  # sentencepiece level: subwords (bpe trains in a second; unigram), whole words (unseen ones become bytes), or characters
    vocab_size: int = 8000  # upper bound; shrunk automatically when the data has fewer pieces
    joint: bool = True  # one model for source and target (False: one each)
    character_coverage: float = 1.0  # share of characters the pieces must cover (the rest: bytes or UNK)
    byte_fallback: bool = True  # unseen characters become bytes, so decode(encode(x)) == x
    split_digits: bool = False  # one piece per digit (helps number tasks)
    underscore_as_letter: bool = True  # "_" counts as a letter, so I_TURN_LEFT or max_len_a can be one piece (False: sentencepiece cuts at every "_")
    split_by_number: bool = False  # True: no piece mixes digits and letters; False: I_RUN2 or mp3 can be one piece
    split_by_unicode_script: bool = True  # True: no piece crosses a change of script (letters | punctuation | Han | ...); False: "man." can be one piece
    split_by_whitespace: bool = True  # True: no piece crosses a space; False: pieces like "▁of▁the" can be learned
    max_piece_length: int = 16  # longest piece, in characters (its leading "▁" counts)
    user_defined_symbols: List[str] = field(default_factory=list)  # strings that are always one piece each, wherever they occur (tags like "<sep>", symbols)

    def __post_init__(self):
        _positive(self, "vocab_size")
        _positive(self, "max_piece_length")
        _in_range(self, "character_coverage", 0.0, 1.0, low_open=True)
        for x in self.user_defined_symbols:
            if not x or any(c.isspace() for c in x):
                raise ConfigError(f"tokenizer.user_defined_symbols: {x!r} is empty or holds "
                                  "a space")
            if x in ("<pad>", "<unk>", "<s>", "</s>"):  # the special pieces' own names
                raise ConfigError(f"tokenizer.user_defined_symbols: {x!r} is a special piece "
                                  "(padding, unknown, BOS or EOS): choose another string")


@dataclass(frozen=True)
class ModelConfig:
    cell: Literal["lstm", "gru"] = "lstm"  # recurrent cell of the encoder and the decoder
    impl: Literal["manual", "fused"] = "fused"  # same parameters and numbers; fused is nn.LSTM/nn.GRU, manual the cells of seq2seq/model/cells.py
    manual_backward: Literal["handwritten", "autograd"] = "handwritten"  # impl manual, kernels fast, training: the hand-written backward of seq2seq/kernels/recurrence.py (same numbers, faster; autograd under autocast), or autograd through the cells
    kernels: Literal["fast", "plain"] = "fast"  # fast: the CPU speed paths of seq2seq/kernels/ (hand-written backward, oneDNN prepacking, bf16 precision regions, fused projection + loss, dropout masks by torch.rand): the same functions to rounding, faster; plain: the readable reference of seq2seq/model/ everywhere (what tests compare with); off the CPU the fast paths step aside either way
    attention: Literal["none", "bahdanau", "luong"] = "bahdanau"  # additive (Bahdanau 2015) or general (Luong 2015) attention, masked on source padding
    embedding_dim: int = 256  # source and target embedding size
    hidden_size: int = 512  # per direction in the encoder; the decoder's size
    num_layers: int = 1  # encoder and decoder layers
    bidirectional: bool = True  # encoder only
    dropout: float = 0.2  # on embeddings, between layers, before the output projection
    input_feeding: bool = False  # feed the previous attentional vector to the decoder (Luong 2015)
    tie_embeddings: bool = False  # output projection shares the target embedding matrix

    def __post_init__(self):
        for k in ("embedding_dim", "hidden_size", "num_layers"):
            _positive(self, k)
        _in_range(self, "dropout", 0.0, 1.0, high_open=True)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # stop after this many epochs ...
    max_steps: Optional[int] = None  # ... or after this many updates, whichever comes first
    max_minutes: Optional[float] = None  # ... or after this much training time (minutes)
    batch_size: int = 64  # sentences per batch (when batch_tokens is not set)
    batch_tokens: Optional[int] = None  # target-token budget per batch instead of batch_size
    lr: float = 1e-3  # Adam learning rate
    lr_schedule: Literal["constant", "plateau", "cosine"] = "plateau"  # plateau: times lr_decay when validation stalls; cosine: to 0 at the last step
    lr_decay: float = 0.5  # plateau: multiply lr by this when validation BLEU stalls
    warmup_steps: int = 0  # linear warm-up of the learning rate
    clip_norm: float = 1.0  # gradient-norm clipping (0: off)
    label_smoothing: float = 0.0  # share of the target probability spread over the vocabulary
    seed: int = 1  # model initialization, batch order, dropout and teacher-forcing coins
    eval_every: int = 0  # validate every N updates (0: once per epoch)
    patience: int = 0  # early stopping: validations without a BLEU gain (0: off)
    keep_last: int = 0  # also keep the checkpoints of the last N validations (step-N.pt), for averaging
    ema_decay: float = 0.0  # exponential moving average of the weights, e.g. 0.999: validated, and saved as the checkpoint's model (0: off)
    device: str = "auto"  # auto | cpu | cuda
    amp: Literal["none", "bf16", "fp16", "auto"] = "none"  # autocast precision; fp16 (with a grad scaler) needs CUDA; auto: bf16 where the hardware has it (AVX-512 BF16 or AMX on the CPU, a bf16 GPU), else none
    threads: int = 1  # torch threads; 1 never stalls; more are faster on a quiet machine but stall when another process takes a core (0: one per core)
    valid_max_sentences: int = 1000  # decode at most this many validation sentences for BLEU
    tensorboard: bool = False  # also write TensorBoard event files into the run folder: the metrics.jsonl scalars and a few validation translations (pip install tensorboard)
    objective: Literal["mle", "mrt"] = "mle"  # mle: token cross-entropy (maximum likelihood, with teacher_forcing as set); mrt: minimum risk training, the expected cost of the model's own samples (the mrt section), usually as fine-tuning (--init-from)

    def __post_init__(self):
        for k in ("epochs", "batch_size"):
            _positive(self, k)
        for k in ("max_steps", "batch_tokens", "max_minutes"):
            if getattr(self, k) is not None:
                _positive(self, k)
        _in_range(self, "lr", 0.0, 10.0, low_open=True)
        _in_range(self, "label_smoothing", 0.0, 1.0, high_open=True)
        _in_range(self, "lr_decay", 0.0, 1.0, low_open=True)
        _in_range(self, "ema_decay", 0.0, 1.0, high_open=True)
        for k in ("clip_norm", "warmup_steps", "eval_every", "patience", "threads", "keep_last"):
            if getattr(self, k) < 0:
                raise ConfigError(f"train.{k} must be >= 0, got {getattr(self, k)}")


@dataclass(frozen=True)
class TeacherForcingConfig:
    schedule: Literal["constant", "linear", "exponential", "inverse_sigmoid"] = "constant"  # how the ratio changes over training (seq2seq/teacher_forcing.py)
    ratio: float = 1.0  # constant: the probability of feeding the gold token
    k: Optional[float] = None  # linear: start (1.0); exponential: base < 1; inverse_sigmoid: k >= 1
    c: Optional[float] = None  # linear: decrease per unit; inverse_sigmoid: speed, eps = k/(k+exp(c*i/k)) (1: the paper's)
    min: float = 0.0  # floor for linear and exponential
    unit: Literal["step", "epoch"] = "step"  # what i counts in the schedule
    feed: Literal["argmax", "sample", "uniform"] = "argmax"  # what the decoder feeds when not forced: its argmax, a sample, or a uniformly random token (the noise control)
    temperature: float = 1.0  # feed sample (and passes 2, mix sample or soft): softmax(logits / T); 1 is the model's own distribution (Zhang et al. 2019's word-level oracle), 0 the argmax
    scope: Literal["token", "sequence", "batch"] = "token"  # one coin per token per example (Bengio et al. 2015), per example (the old PyTorch tutorial), or per step for the batch (bentrevett's notebooks)
    passes: int = 1  # 1: below ratio 1 the decoder steps, feeding its previous prediction (feed); 2: two-pass sampling (Duckworth et al. 2019), a teacher-forced pass's predictions mixed into the gold inputs of a second teacher-forced pass, each one call of the recurrent layer (needs model.input_feeding false; feed stays argmax, mix decides; seq2seq/training/two_pass.py)
    mix: Literal["argmax", "sample", "soft"] = "argmax"  # passes 2: what a position the coin says is not gold is fed: the first pass's argmax, a sample from softmax(logits / temperature), or the softmax-weighted average of the target embedding (soft; Goyal et al. 2017)
    mix_gradient: bool = False  # passes 2, mix soft: the gradient flows through the first pass into the soft mix (false: the first pass runs without gradient)
    oracle: Literal["none", "sentence"] = "none"  # none: what feed says is fed where the coin says not gold; sentence: Zhang et al. 2019's sentence-level oracle instead, a length-constrained beam search per batch (the oracle section), fed in one teacher-forced pass (needs feed argmax, passes 1, train.objective mle)

    def __post_init__(self):
        from seq2seq.training.teacher_forcing import check_schedule  # the module owns its rules
        check_schedule(self)


@dataclass(frozen=True)
class MrtConfig:  # train.objective mrt: minimum risk training (Shen et al. 2016; seq2seq/training/mrt.py)
    samples: int = 8  # candidates drawn per sentence from the model (temperature 1, no dropout, no gradient), then deduplicated
    sharpness: float = 0.005  # alpha of Q(c) = softmax(alpha * log P(c|x)) over a sentence's candidates: Shen et al.'s 5e-3 (their cost -sBLEU in [-1, 0] is ours minus 1: the same gradient)
    cost: Literal["bleu", "chrf"] = "bleu"  # 1 - sentence score / 100 against the reference (detokenized): sacreBLEU's smoothed sentence BLEU (exp smoothing, effective order) or sentence chrF
    mle_weight: float = 0.0  # loss = w * token cross-entropy (per target token) + (1 - w) * expected cost (per sentence)
    include_reference: bool = True  # the reference is one of each sentence's candidates (cost 0)

    def __post_init__(self):
        _positive(self, "samples")
        _in_range(self, "sharpness", 0.0, math.inf, low_open=True, high_open=True)
        _in_range(self, "mle_weight", 0.0, 1.0)


@dataclass(frozen=True)
class OracleConfig:  # teacher_forcing.oracle sentence (Zhang et al. 2019; seq2seq/training/sentence_oracle.py)
    beam: int = 4  # beams of the search, without gradient or dropout; every candidate has the reference's length; the one with the best sentence BLEU (smoothed, detokenized) against the reference is the oracle
    noise: float = 1.0  # scale of the Gumbel noise added to the search's log-probabilities at each step (Zhang et al.'s); 1: one beam draws each token from the model's distribution renormalized without PAD, BOS and EOS (Gumbel-max); 0: none, the plain scores


@dataclass(frozen=True)
class DecodeConfig:
    """How translate, evaluate and the recipes decode (validation during training is greedy).
    The options of ``seq2seq translate``/``evaluate`` override these keys one by one."""

    beam: int = 1  # beams per sentence (1: greedy search)
    length_penalty: float = 1.0  # beam search: GNMT length normalization exponent (0: none)
    n_best: int = 1  # translate: write the n best hypotheses of the beam per input (n <= beam), or n samples with sample
    max_len_a: Optional[float] = None  # maximum output length: a * source length + b (pieces, EOS included); None: learned from the training data (stored in the checkpoint)
    max_len_b: Optional[int] = None  # ... the b of a * source length + b; None: learned from the training data
    max_src_len: int = 1024  # sources longer than this (pieces) are truncated, with a warning
    batch_size: int = 128  # sentences per decoding batch (divided by the beam size)
    bf16: bool = False  # decode under bfloat16 autocast (faster on CPUs with AVX512-BF16 or AMX; outputs may differ slightly)
    sample: bool = False  # draw each token from the model's distribution instead of taking the argmax (needs beam 1)
    temperature: float = 1.0  # sample: divide the logits by this (< 1: closer to greedy, > 1: more diverse)
    top_k: int = 0  # sample: draw among the k most probable tokens only (0: all; 1: greedy search)
    top_p: float = 1.0  # sample: draw among the fewest most probable tokens that cover probability p (nucleus; 1.0: all)
    seed: int = 1  # sample: the same seed gives the same samples, however the lines are batched
    no_repeat_ngram: int = 0  # no n-gram of this many tokens twice in one output (0: off)
    coverage_penalty: float = 0.0  # beam search: weight beta of GNMT's coverage penalty (0: off; needs attention)

    def __post_init__(self):
        for k in ("beam", "n_best", "max_src_len", "batch_size"):
            _positive(self, k)
        for k in ("length_penalty", "max_len_a", "max_len_b", "top_k", "no_repeat_ngram",
                  "coverage_penalty"):
            if getattr(self, k) is not None and getattr(self, k) < 0:
                raise ConfigError(f"decode.{k} must be >= 0, got {getattr(self, k)}")
        _in_range(self, "temperature", 0.0, math.inf, low_open=True, high_open=True)
        _in_range(self, "top_p", 0.0, 1.0, low_open=True)
        if self.sample and self.beam > 1:
            raise ConfigError(f"decode.sample draws one token at a time, it is not beam search: "
                              f"decode.beam must be 1 with it, got {self.beam}")
        if self.n_best > self.beam and not self.sample:
            raise ConfigError(f"decode.n_best ({self.n_best}) must be <= decode.beam "
                              f"({self.beam})")
        if self.coverage_penalty and self.beam == 1:
            raise ConfigError("decode.coverage_penalty ranks the hypotheses of beam search: "
                              "it needs decode.beam > 1")


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher_forcing: TeacherForcingConfig = field(default_factory=TeacherForcingConfig)
    mrt: MrtConfig = field(default_factory=MrtConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self):  # the rules across sections
        from seq2seq.training.teacher_forcing import check_oracle, check_passes  # its rules
        check_passes(self.teacher_forcing, self.model)
        check_oracle(self.teacher_forcing, self.oracle, self.train)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections) -> "Config":
        return dataclasses.replace(self, **sections)


def _positive(obj, name):
    v = getattr(obj, name)
    if v <= 0:
        raise ConfigError(f"{_section(obj)}.{name} must be > 0, got {v}")


def _in_range(obj, name, lo, hi, low_open=False, high_open=False):
    v = getattr(obj, name)
    if (v <= lo if low_open else v < lo) or (v >= hi if high_open else v > hi):
        raise ConfigError(f"{_section(obj)}.{name} must be in {'(' if low_open else '['}{lo}, "
                          f"{hi}{')' if high_open else ']'}, got {v}")


_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _section(obj) -> str:
    return next(name for name, cls in _SECTIONS.items() if isinstance(obj, cls))


def _nearest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(valid)})"


def _coerce(value: Any, tp, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, e.g. [a, b], got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}{hint}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    return value


def _build(cls, values: Dict[str, Any], prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix} must be a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key {prefix}.{key}{_nearest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    return cls(**kwargs)


def from_dict(d: Optional[Dict[str, Any]]) -> Config:
    """Build a :class:`Config` from nested dicts, rejecting unknown keys."""
    d = d or {}
    if not isinstance(d, dict):
        raise ConfigError("the config must be a mapping with sections "
                          + ", ".join(_SECTIONS))
    for key in d:
        if key not in _SECTIONS:
            raise ConfigError(f"unknown config section {key!r}{_nearest(str(key), _SECTIONS)}")
    return Config(**{k: _build(_SECTIONS[k], d[k] or {}, k) for k in d})


def parse_override(text: str) -> tuple:
    """``"a.b=c"`` -> ``(["a", "b"], value)`` with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. model.hidden_size=256")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) != 2 or not all(path):
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. train.lr")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: cannot parse the value as YAML: "
                          f"{getattr(e, 'problem', None) or e}") from None
    return path, value


def load(path: Optional[Union[str, Path]] = None, overrides: List[str] = ()) -> Config:
    """Read a YAML config (or none: defaults) and apply ``--set`` overrides; relative data
    files are resolved against the current folder (see ``readers.absolute_paths``)."""
    d: Dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            d = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config file {p}{where} is not valid YAML: "
                              f"{getattr(e, 'problem', e)}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"config file {p} is not UTF-8 text ({e.reason})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections "
                              f"({', '.join(_SECTIONS)})")
    file_only = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in _SECTIONS:
            raise ConfigError(f"--set {text}: unknown section {section!r}{_nearest(section, _SECTIONS)}")
        d[section] = {**(d.get(section) or {}), key: value}
    try:
        cfg = from_dict(d)
    except ConfigError as e:
        # name where the bad value came from: the file, or a --set override
        try:
            from_dict(file_only)
            where = "--set" if overrides else None
        except ConfigError:
            where = str(path) if path else None
        raise ConfigError(f"{where}: {e}" if where else str(e)) from None
    from seq2seq.data.readers import absolute_paths  # relative files: from this folder
    return cfg.replace(data=absolute_paths(cfg.data))


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
