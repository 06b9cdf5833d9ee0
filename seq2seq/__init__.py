"""seq2seq: an RNN encoder-decoder translation toolkit (LSTM/GRU, manual and fused layers).

The Python API (:mod:`seq2seq.api`), imported on first use so that ``import seq2seq`` stays
light::

    from seq2seq import Translator
    Translator.load("runs/reverse").translate("a c e g")
    seq2seq.train("recipes/reverse.yaml", "runs/r", overrides=["train.max_steps=200"])
"""

__version__ = "0.1.0"

__all__ = ["Translator", "Translation", "train", "load_config", "Config", "UserError",
           "ConfigError", "__version__"]


def __getattr__(name: str):
    if name in __all__:  # the API's names, imported on first use (not by ``import seq2seq``)
        import importlib

        return getattr(importlib.import_module("seq2seq.api"), name)
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
