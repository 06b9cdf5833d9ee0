"""``teacher_forcing.feed: uniform``, the noise control: a uniformly random token (never
padding or BOS) where the coin says "not gold", on the plain and the fast decoder alike."""

import pytest
import torch

from seq2seq import config
from seq2seq.config import ModelConfig
from seq2seq.data.tokenizer import BOS, PAD
from seq2seq.errors import UserError
from seq2seq.model.decoder import noise_ids
from seq2seq.model.seq2seq import Seq2Seq

V = 12


def build(kernels, input_feeding=False):
    torch.manual_seed(0)
    cfg = ModelConfig(embedding_dim=8, hidden_size=8, dropout=0.0, kernels=kernels,
                      input_feeding=input_feeding)
    return Seq2Seq.from_config(cfg, 15, V, PAD).eval()


def batch(B=6, S=5, T=7):
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 15, (B, S), generator=g)
    tgt = torch.randint(4, V, (B, T), generator=g)
    tgt[:, 0] = BOS
    return src, torch.full((B,), S), tgt


def fed_ids(model, tf_ratio, seed=3, B=6, T=7):
    """The noise ids the decoder drew and embedded at steps 1.. (fed where the coin says "not
    gold"), ``(B, T - 1)``, the logits and the target."""
    seen = []
    hook = model.decoder.embedding.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    src, lens, tgt = batch(B=B, T=T)
    torch.manual_seed(seed)
    with torch.no_grad():
        logits = model(src, lens, tgt, tf_ratio, "uniform")
    hook.remove()
    fed = [ids for ids in seen[1:] if ids.dim() == 1]  # the first call embeds tgt_in whole
    return (torch.stack(fed, 1) if fed else None), logits, tgt


def test_noise_ids_leave_out_padding_and_bos():
    ids = noise_ids(V, (PAD, BOS))
    assert sorted(ids.tolist()) == [i for i in range(V) if i not in (PAD, BOS)]


@pytest.mark.parametrize("kernels", ["plain", "fast"])
def test_ratio_one_is_teacher_forcing(kernels):
    model = build(kernels)
    src, lens, tgt = batch()
    with torch.no_grad():
        forced = model(src, lens, tgt, 1.0)
        uniform = model(src, lens, tgt, 1.0, "uniform")
    torch.testing.assert_close(uniform, forced, atol=0, rtol=0)


@pytest.mark.parametrize("input_feeding", [False, True])
def test_fast_and_plain_feed_the_same_noise(input_feeding):
    """Same seed, same coins, same random tokens: the two paths compute the same logits."""
    plain = build("plain", input_feeding)
    fast = build("fast", input_feeding)
    for ratio in (0.0, 0.5):
        fed_p, logits_p, _ = fed_ids(plain, ratio)
        fed_f, logits_f, _ = fed_ids(fast, ratio)
        assert fed_p.shape == fed_f.shape == (6, 6)
        assert torch.equal(fed_p, fed_f)
        assert logits_p.shape == logits_f.shape == (6, 7, V)
        torch.testing.assert_close(logits_f, logits_p, atol=1e-5, rtol=0)


def test_ratio_zero_feeds_uniform_tokens_whatever_the_model_predicts():
    """At ratio 0 every fed token is noise: never PAD or BOS, every other id about equally
    often, and not the model's argmax (which a tiny random model repeats)."""
    model = build("plain")
    B, T = 400, 11
    fed, logits, tgt = fed_ids(model, 0.0, B=B, T=T)
    assert fed.shape == (B, T - 1)
    assert not bool(((fed == PAD) | (fed == BOS)).any())
    counts = torch.bincount(fed.flatten(), minlength=V).float()
    allowed = counts[[i for i in range(V) if i not in (PAD, BOS)]]
    expected = fed.numel() / (V - 2)
    assert float((allowed - expected).abs().max()) < 0.15 * expected
    argmax = logits.argmax(-1)[:, :-1]  # (B, T - 1): what feed=argmax would have fed
    assert float((fed == argmax).float().mean()) < 0.3


def test_ratio_half_is_stepping_on_gold_where_the_coin_says_gold_and_noise_elsewhere(
        monkeypatch):
    """The logits at ratio 0.5 are those of decoder.step fed the gold token where the coin
    said gold and the drawn noise token elsewhere; about half of each."""
    import seq2seq.model.decoder as decoder_module

    coins = []
    real = decoder_module.gold_mask
    monkeypatch.setattr(decoder_module, "gold_mask",
                        lambda *a, **k: coins.append(real(*a, **k)) or coins[-1])
    model = build("plain", input_feeding=True)
    B, T = 64, 7
    noise, logits, tgt = fed_ids(model, 0.5, B=B, T=T)
    gold = coins[0][:, 1:]  # (B, T - 1)
    assert 0.35 < float(gold.float().mean()) < 0.65
    inputs = torch.where(gold, tgt[:, 1:], noise)  # (B, T - 1)
    src, lens, _ = batch(B=B, T=T)
    with torch.no_grad():
        enc = model.encoder(src, lens)
        state = model.decoder.start(enc)
        y, outs = tgt[:, 0], []
        for t in range(T):
            step_logits, state, _ = model.decoder.step(y, state, enc)
            outs.append(step_logits)
            if t + 1 < T:
                y = inputs[:, t]
    torch.testing.assert_close(logits, torch.stack(outs, 1), atol=1e-5, rtol=0)


def test_the_config_takes_feed_uniform():
    cfg = config.load(None, ["teacher_forcing.feed=uniform"])
    assert cfg.teacher_forcing.feed == "uniform"
    with pytest.raises(UserError, match="feed"):
        config.load(None, ["teacher_forcing.feed=noise"])


def test_fast_and_plain_train_alike_on_noise():
    """The training objective and its gradients with feed=uniform at ratio 0.5 (the fast
    path sums the attention values' gradient after the loop) equal the plain model's."""
    from seq2seq.training.objective import Objective

    src, lens, tgt = batch()
    tgt_out = torch.cat([tgt[:, 1:], torch.full((tgt.size(0), 1), 3)], 1)  # target + EOS
    results = []
    for kernels in ("fast", "plain"):
        model = build(kernels).train()
        torch.manual_seed(5)
        out = Objective(model)(src, lens, tgt, tgt_out, 0.5, "uniform")
        out.objective.backward()
        results.append((out.objective.item(), [p.grad for p in model.parameters()]))
    (loss_f, grads_f), (loss_p, grads_p) = results
    assert loss_f == pytest.approx(loss_p, rel=1e-5)
    for g_f, g_p in zip(grads_f, grads_p):
        torch.testing.assert_close(g_f, g_p, rtol=1e-4, atol=1e-6)


def test_the_models_own_feed_never_predicts_padding():
    """A model whose largest logit is padding's (as minimum risk training can leave it, PAD
    never being sampled) is fed its best other token, as greedy search would output, in the
    stepping feed and in two-pass mixing: the free run is the greedy output."""
    import torch

    from seq2seq import config
    from seq2seq.model.seq2seq import Seq2Seq
    from seq2seq.training.two_pass import TwoPass

    cfg = config.load(None, ["model.embedding_dim=8", "model.hidden_size=8",
                             "model.dropout=0", "model.input_feeding=false"]).model
    for kernels in ("plain", "fast"):
        torch.manual_seed(0)
        model = Seq2Seq.from_config(cfg.__class__(**{**cfg.__dict__, "kernels": kernels}),
                                    12, 12, 0).eval()
        with torch.no_grad():
            model.decoder.out.bias[0] = 100.0  # padding (id 0) dominates every step
        src = torch.randint(4, 12, (3, 5))
        tgt_in = torch.cat([torch.full((3, 1), 2), torch.randint(4, 12, (3, 4))], 1)
        fed = []
        hook = model.decoder.embedding.register_forward_hook(
            lambda m, i, o: fed.append(i[0].clone()))
        with torch.no_grad():
            model(src, torch.full((3,), 5), tgt_in, 0.0)
        hook.remove()
        ids = torch.cat([f.reshape(3, -1) for f in fed[1:]], 1)  # the steps' fed ids
        assert (ids != 0).all(), kernels
        for mix in ("argmax", "sample"):
            first = torch.zeros(3, 5, 12)
            first[..., 0] = 100.0  # padding first everywhere, token 7 second
            first[..., 7] = 50.0
            gold = torch.zeros(3, 5, dtype=torch.bool)
            _, ids = TwoPass(mix).mixed_inputs(model.decoder, first, tgt_in, gold, 1.0)
            assert (ids[:, 1:] == 7).all() and (first[..., 0] == 100.0).all(), (kernels, mix)
