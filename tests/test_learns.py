"""A tiny model of each cell and implementation overfits a toy set: it catches wiring mistakes
that leave shapes right and numbers wrong (a swapped direction, a mask on the wrong side)."""

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.data.batching import collate
from seq2seq.decoding.search import greedy
from seq2seq.training.loss import masked_cross_entropy
from seq2seq.model.seq2seq import Seq2Seq
from seq2seq.data.tokenizer import PAD

N_PAIRS, N_SYMBOLS = 40, 8  # reverse 3-8 symbols; ids 4.. (0-3 are PAD, UNK, BOS, EOS)
MAX_STEPS, CHECK_EVERY = 200, 25  # reaches 100% in 50-75 full-batch steps (seeds 1-8)


def reverse_task(seed):
    g = torch.Generator().manual_seed(seed)
    src = [torch.randint(4, 4 + N_SYMBOLS, (int(torch.randint(3, 9, (1,), generator=g)),),
                         generator=g).tolist() for _ in range(N_PAIRS)]
    return src, [s[::-1] for s in src]


def exact_match(model, batch, tgt) -> float:
    model.eval()
    hyps = greedy(model, batch.src, batch.src_len).hyps
    model.train()
    return sum(h == t for h, t in zip(hyps, tgt)) / len(tgt)


@pytest.mark.parametrize("impl", ["manual", "fused"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tiny_model_overfits_reversal(cell, impl):
    seed = 1
    src, tgt = reverse_task(seed)
    batch = collate(src, tgt, range(N_PAIRS))  # the whole set is one batch
    vocab = 4 + N_SYMBOLS
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, impl=impl, attention="bahdanau", embedding_dim=16,
                      hidden_size=32, dropout=0.0)
    model = Seq2Seq.from_config(cfg, vocab, vocab, PAD).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    assert exact_match(model, batch, tgt) < 0.5  # not solved by chance before training

    accuracy = 0.0
    for step in range(1, MAX_STEPS + 1):
        loss, n = masked_cross_entropy(model(batch.src, batch.src_len, batch.tgt_in),
                                       batch.tgt_out, PAD)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        if step % CHECK_EVERY == 0:
            accuracy = exact_match(model, batch, tgt)
            if accuracy == 1.0:
                break
    assert accuracy == 1.0, f"{cell}/{impl}: {accuracy:.0%} exact match after {step} steps"
