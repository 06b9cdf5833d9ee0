"""seq2seq: an RNN encoder-decoder translation toolkit (LSTM/GRU, manual and fused layers)."""

__version__ = "0.1.0"
