"""The encoder-decoder, and the one place where config becomes constructor calls."""

from torch import Tensor, nn

from seq2seq.kernels.fast_model import FastDecoder, FastEncoder

from .decoder import Decoder
from .encoder import Encoder


class Seq2Seq(nn.Module):
    """Encoder-decoder returning logits; the loss is computed outside (see
    :class:`seq2seq.training.objective.Objective`).

    Inputs: ``src (B, S)``, ``src_len (B,)``, ``tgt_in (B, T)`` (BOS + target, padded),
    ``tf_ratio`` (probability of feeding the gold previous token) and ``feed``, ``scope``,
    ``temperature`` (what is fed otherwise; see :class:`seq2seq.model.decoder.Decoder`).
    Output: logits ``(B, T, V_tgt)``.
    """

    engine = "pytorch"  # what runs the model (an exported one: "onnxruntime")

    def __init__(self, encoder: Encoder, decoder: Decoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    @property
    def kernels(self) -> str:
        """``fast`` (the CPU speed paths of :mod:`seq2seq.kernels`) or ``plain``."""
        return self.decoder.kernels

    @classmethod
    def from_config(cls, cfg, src_vocab: int, tgt_vocab: int, pad_id: int, *,
                    prepack: bool = True, defer_value_grads: bool = True) -> "Seq2Seq":
        """Build from a :class:`seq2seq.config.ModelConfig`: ``cfg.kernels`` ``plain`` builds
        :class:`Encoder` and :class:`Decoder` (the reference), ``fast`` the same model on the
        CPU speed paths (:class:`seq2seq.kernels.fast_model.FastEncoder`, ``FastDecoder``;
        same parameters from the same random numbers). ``prepack``, ``defer_value_grads``: the
        fast decoder's options, for comparisons (``scripts/bench.py``)."""
        enc_args = (cfg.cell, cfg.impl, src_vocab, cfg.embedding_dim, cfg.hidden_size,
                    cfg.num_layers, cfg.bidirectional, cfg.dropout, cfg.hidden_size,
                    cfg.num_layers, pad_id)
        if cfg.kernels == "fast":
            encoder = FastEncoder(*enc_args, manual_backward=cfg.manual_backward)
        else:
            encoder = Encoder(*enc_args)
        dec_args = (cfg.cell, cfg.impl, tgt_vocab, cfg.embedding_dim, cfg.hidden_size,
                    cfg.num_layers, cfg.dropout, encoder.out_size, cfg.attention,
                    cfg.input_feeding, cfg.tie_embeddings, pad_id)
        if cfg.kernels == "fast":
            decoder = FastDecoder(*dec_args, manual_backward=cfg.manual_backward,
                                  prepack=prepack, defer_value_grads=defer_value_grads)
        else:
            decoder = Decoder(*dec_args)
        return cls(encoder, decoder)

    @staticmethod
    def describe(cfg) -> str:
        """The model of a :class:`seq2seq.config.ModelConfig` in words, for the run's log:
        which layers, which kernels, and for ``impl: manual`` which backward trains them."""
        backward = ""
        if cfg.impl == "manual":
            backward = (" (hand-written backward; autograd in bf16/fp16 training)"
                        if cfg.kernels == "fast" and cfg.manual_backward == "handwritten"
                        else " (autograd backward)")
        kernels = ("fast kernels" if cfg.kernels == "fast"
                   else "plain kernels (the reference, no CPU speed paths)")
        return f"{cfg.cell} {cfg.impl}{backward}, attention {cfg.attention}, {kernels}"

    def features(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tf_ratio: float = 1.0,
                 feed: str = "argmax", scope: str = "token", temperature: float = 1.0
                 ) -> Tensor:
        """What the output projection takes, ``(B, T, O)`` (see
        :meth:`seq2seq.model.decoder.Decoder.features`); the same arguments as :meth:`forward`."""
        enc = self.encoder(src, src_len)
        return self.decoder.features(enc, tgt_in, tf_ratio, feed, scope, temperature)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tf_ratio: float = 1.0,
                feed: str = "argmax", scope: str = "token", temperature: float = 1.0) -> Tensor:
        enc = self.encoder(src, src_len)
        return self.decoder(enc, tgt_in, tf_ratio, feed, scope, temperature)  # (B, T, V)
