"""Properties of the model on tiny configurations: memory equals a long pass, the cache equals a
full recompute, alpha = 1 is the plain KL term, and the MI identity of the class KL."""

from __future__ import annotations

import pytest
import torch

from emocompose.model.config import ModelConfig, preset
from emocompose.model.gmvae import KEY_DECAY, CDGMVAE, LossConfig, Reduction
from emocompose.model.layers import XLStack, skew
from emocompose.model.step import Product, StepCache, StepWeights, decoding_layout
from emocompose.model.prior import MixturePrior

torch.manual_seed(0)


def test_skew_reads_each_key_at_its_distance():
    q, k = 5, 12
    x = torch.randn(3, q, k + q - 1)
    distances = torch.arange(k - 1, -q, -1)  # column c holds distance k-1-c
    y = skew(x, k)
    for i in range(q):
        for j in range(k):
            c = int((distances == (k - q + i) - j).nonzero())
            assert torch.equal(y[:, i, j], x[:, i, c])


def _stack(causal):
    return XLStack(2, 16, 2, 32, 0.0, causal=causal).eval()


@pytest.mark.parametrize("causal", [True, False], ids=["decoder", "encoder"])
def test_memory_bar_by_bar_equals_all_bars_at_once(causal):
    st = _stack(causal)
    b, t, n, d = 2, 3, 6, 16
    x, cond = torch.randn(b, t, n, d), torch.randn(b, t, d)
    lens = torch.tensor([[6, 4, 5], [3, 6, 2]])
    h, pk, _ = st(x, lens, cond=cond)
    full = pk.pad(h)
    mems = mem_lens = None
    outs = []
    for tau in range(t):  # one bar per call, the memory carried by hand
        h, pk, (mems, mem_lens) = st(x[:, tau : tau + 1], lens[:, tau : tau + 1], mems, mem_lens, cond=cond[:, tau : tau + 1])
        assert torch.equal(mem_lens, lens[:, tau])
        outs.append(pk.pad(h))
    real = torch.arange(n) < lens[..., None]
    assert torch.allclose(torch.cat(outs, 1)[real], full[real], atol=1e-6)


def padded_layer(layer, x, mask):
    """One XL layer written plainly on a padded segment with no memory: the reference."""

    a = layer.attn
    q, k, v = a.qkv(layer.ln1(x)).split(x.shape[-1], dim=-1)
    r = a.rel(x.shape[1], x.shape[1], x.device)
    y = a.merge(a.attend(a.split(q), a.split(k), a.split(v), r, mask[:, None]))
    x = x + a.o(y)
    return x + layer.ff(layer.ln2(x))


@pytest.mark.parametrize("memory_bars", [1, 2])
def test_bars_with_memory_equal_one_pass_with_the_equivalent_mask(memory_bars):
    """Bar tau attending to the bars before it through the memory (1 or 2 of them) is one causal
    pass over all bars in which each bar sees those bars whole, except that their own layer
    inputs are what it sees (stop-gradient, same values)."""
    st = XLStack(2, 16, 2, 32, 0.0, causal=True, memory_bars=memory_bars).eval()
    n, d, t = 5, 16, 4
    x = torch.randn(1, t, n, d)
    lens = torch.full((1, t), n)
    h, pk, _ = st(x, lens)
    out = pk.pad(h)
    # the equivalent: one segment of t * n tokens, layer by layer, no memory
    bar = torch.arange(t * n) // n
    apart = bar[:, None] - bar[None, :]  # query's bar - key's bar
    mask = ((apart > 0) & (apart <= memory_bars)) | torch.ones(t * n, t * n, dtype=torch.bool).tril() & (apart == 0)
    h = x.reshape(1, t * n, d)
    for layer in st.layers:
        h = padded_layer(layer, h, mask[None])
    long = st.ln(h).view(1, t, n, d)
    assert torch.allclose(long, out, atol=1e-5)


BARS_APART = [[7, 3, 5], [2, 7, 7], [4, 1, 1]]  # the last sequence done 10 tokens before the second
SHORT_BARS = [[2, 1, 3, 2, 1, 2, 3, 1], [1, 1, 2, 1, 3, 3, 1, 2], [3, 3, 1, 2, 2, 1, 2, 1]]
FULL_BARS = [[2, 7, 7, 7], [7, 7, 7, 7], [5, 7, 7, 1]]  # bars as long as the room, begun at other columns


@pytest.mark.parametrize("layout,capacity,lens,memory_bars", [
    (False, 7, BARS_APART, 1), (True, 7, BARS_APART, 1), (False, 2, BARS_APART, 1), (False, 7, SHORT_BARS, 1),
    (False, 7, FULL_BARS, 1), (False, 7, BARS_APART, 2), (False, 7, SHORT_BARS, 3), (False, 7, FULL_BARS, 2)])  # fmt: skip
def test_step_cache_equals_full_recompute(layout, capacity, lens, memory_bars):
    """Each sequence begins its next bar as soon as its bar ends, so the sequences of a batch
    are at different bars and places in them (one done early, whose row leaves), as in
    `decode_bars`. Also with the weights stored as a model loaded for use stores them
    (`decoding_layout`: the same stack, computing the same); with too little room, so that the
    buffers grow (capacity 2); with short bars in ample room, so that the columns still read
    move far to the front; and with bars as long as the room, begun at other columns, so that the
    columns read span nearly two bars' room; and with a memory of 2 or 3 bars. With room for the
    longest bar the buffers never grow (a doubling is a batch's peak memory)."""
    st = _stack(True)
    st.memory_bars = memory_bars
    lens = torch.tensor(lens)
    (b, t), n, d = lens.shape, int(lens.max()), 16
    x, cond = torch.randn(b, t, n, d), torch.randn(b, t, d)
    h, pk, _ = st(x, lens, cond=cond)
    full = pk.pad(h)
    if layout:
        decoding_layout(st)
        assert torch.allclose(pk.pad(st(x, lens, cond=cond)[0]), full, atol=1e-6)
    mems, mem_lens = [torch.zeros(b, 1, d) for _ in st.layers], torch.zeros(b, dtype=torch.long)
    cache = StepCache(st, mems, mem_lens, capacity=capacity)
    room = cache.cap
    # each sequence's tokens in order: (bar, place)
    order = [[(tau, j) for tau in range(t) for j in range(int(lens[i, tau]))] for i in range(b)]
    outs, fewest = torch.zeros(b, t, n, d), b
    for s in range(max(map(len, order))):
        for i in range(b):
            if s < len(order[i]) and order[i][s][0] and not order[i][s][1]:
                cache.new_bar(i)
            elif s == len(order[i]):
                cache.done(i)
        rows = cache.seqs  # the rows of sequences that are done leave the batch
        fewest = min(fewest, len(rows))
        xs = torch.stack([x[(i, *order[i][s])] if s < len(order[i]) else torch.zeros(d) for i in rows])
        cs = torch.stack([cond[i, order[i][s][0]] if s < len(order[i]) else torch.zeros(d) for i in rows])
        y = cache.step(xs, cs)
        for r, i in enumerate(rows):
            if s < len(order[i]):
                outs[(i, *order[i][s])] = y[r]
    assert fewest < b
    assert (cache.cap > room) == (capacity < n)
    real = torch.arange(n) < lens[..., None]
    assert torch.allclose(outs[real], full[real], atol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, -0.5])
def test_int8_product_is_the_float_product_within_a_percent(alpha):
    w, x, plus = torch.randn(64, 48), torch.randn(3, 64), torch.randn(3, 48)
    exact = plus + alpha * (x @ w)
    for int8 in (False, True):
        err = (Product(w, alpha, int8)(x, plus) - exact).norm() / (alpha * (x @ w)).norm()
        assert err < (0.01 if int8 else 1e-6)


def test_int8_decoding_follows_the_float_decoding():
    """The same bar decoded through the float cache and the int8 one (`StepWeights(int8=True)`,
    for one piece at a time on a CPU): the outputs, layer-normed to about unit size, differ by
    a few hundredths at most, and do differ (the int8 products were used)."""
    st = _stack(True)
    n, d = 9, 16
    x, cond = torch.randn(1, n, d), torch.randn(1, d)
    mems, mem_lens = [torch.randn(1, 4, d) for _ in st.layers], torch.tensor([4])
    caches = [StepCache(st, mems, mem_lens, capacity=n, weights=StepWeights(st, 2 * n + 8, int8)) for int8 in (False, True)]
    with torch.inference_mode():
        a, b = (torch.stack([c.step(x[:, j], cond) for j in range(n)]) for c in caches)
    assert 0 < (a - b).abs().max() < 0.02


def test_alpha_one_is_the_plain_kl_term():
    prior = MixturePrior(8, -2.0)
    mu, lv = torch.randn(4, 3, 8), torch.randn(4, 3, 8) - 3
    w = torch.softmax(torch.randn(4, 2), -1)
    assert torch.allclose(prior.kl(mu, lv, w, 1.0), prior.kl_plain(mu, lv, w), atol=1e-5)
    # below 1 only the spread of the means is discounted, and a one-hot label has no spread
    plain = prior.kl_plain(mu, lv, w)
    assert (prior.kl(mu, lv, w, 0.2) <= plain + 1e-5 * (1 + plain.abs())).all()
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0]), 2).float()
    assert torch.allclose(prior.kl(mu, lv, onehot, 0.0), prior.kl_plain(mu, lv, onehot), atol=1e-5)


def test_dropping_the_mutual_information_leaves_the_kl_of_the_mean_posterior():
    """The class KL of unlabelled pieces with the MI kept is the batch mean of KL(q(y|x) || p(y));
    dropped, it is KL(q_bar || p) (model.md section 4). Their difference is MI(x; y) >= 0, which
    is 0 for a batch of one piece, and KL(q_bar || p) of a piece twice is that of the piece once."""
    cfg = preset("tiny", 60)
    torch.manual_seed(0)
    model = CDGMVAE(cfg).eval()
    for p in model.parameters():  # spread the pieces' q(y|x) apart
        p.data.add_(torch.randn_like(p) * 0.3)
    batch = {**_batch(cfg), "labels": torch.full((3, 2), -1)}

    def cat(b, drop):
        return float(model.losses(b, LossConfig(drop_mi=drop, kl_warmup=1), step=0)[1]["cat"].detach())

    kept, dropped = cat(batch, False), cat(batch, True)
    assert kept > dropped + 1e-4  # the pieces differ, so they share information with y
    one = {k: v[:1] for k, v in batch.items()}
    assert cat(one, False) == pytest.approx(cat(one, True), abs=1e-6)
    twice = {k: torch.cat([v[:1], v[:1]]) for k, v in batch.items()}
    assert cat(twice, True) == pytest.approx(cat(one, True), abs=1e-6)


def _batch(cfg: ModelConfig, b=3, t=4, n=9):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(2, cfg.vocab_size, (b, t, n), generator=g)
    lens = torch.tensor([[9, 5, 7, 0], [3, 9, 9, 9], [1, 2, 3, 4]])
    targets = torch.where(torch.arange(n) < lens[..., None], torch.randint(2, cfg.vocab_size, (b, t, n), generator=g), -100)
    return {
        "tokens": tokens, "lens": lens, "targets": targets,
        "rhythm": torch.randint(0, 3, (b, t, 16)).float(), "key": torch.randint(0, 24, (b, t)),
        "labels": torch.tensor([[1, 0], [-1, -1], [0, 1]]), "eps": torch.randn(b, t, 2, cfg.latent, generator=g),
    }  # fmt: skip


def test_losses_are_finite_and_every_weight_learns():
    cfg = preset("tiny", 60)
    model = CDGMVAE(cfg)
    loss, parts, _ = model.losses(_batch(cfg), LossConfig(kl_warmup=1), step=0)
    assert torch.isfinite(loss)
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not silent, silent


def test_gradient_reversal_pushes_encoders_against_the_adversary():
    cfg = preset("tiny", 60)
    model = CDGMVAE(cfg)
    batch = _batch(cfg)
    grads = {}
    for w in (0.0, 1.0):
        model.zero_grad()
        _, parts, _ = model.losses(batch, LossConfig(adv_weight=w), step=0)
        parts["adv_k"].backward()  # key read from z_r
        grads[w] = model.post_r.weight.grad.clone()
    assert grads[0.0].abs().sum() == 0  # weight 0: the encoder is untouched by the adversary
    assert grads[1.0].abs().sum() > 0


def test_byte_dropout_keeps_the_mean_and_drops_its_share():
    from emocompose.model.layers import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.ones(1000, 1000)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 26 / 256) < 0.002  # the rate, rounded to 1/256
    assert abs(y.mean().item() - 1.0) < 0.005  # inverted dropout: the expectation is kept
    assert torch.equal(drop.eval()(x), x) and torch.equal(Dropout(0.0).train()(x), x)


def test_key_table_is_a_decaying_mean_of_z_k_per_key():
    m = CDGMVAE(preset("tiny", 40))
    assert m.key_means() is None  # before any training step
    mu = torch.randn(2, 3, m.config.latent)
    key = torch.tensor([[0, 0, 5], [5, -100, 0]])  # -100: a padded bar
    m._update_key_table(mu, key, Reduction())
    means, known = m.key_means()
    assert known.nonzero().flatten().tolist() == [0, 5]
    assert torch.allclose(means[0], (mu[0, 0] + mu[0, 1] + mu[1, 2]) / 3)
    assert torch.allclose(means[5], (mu[0, 2] + mu[1, 0]) / 2)
    later = torch.randn(1, 1, m.config.latent)
    m._update_key_table(later, torch.tensor([[5]]), Reduction())
    w = 2 * KEY_DECAY
    assert torch.allclose(m.key_means()[0][5], (KEY_DECAY * (mu[0, 2] + mu[1, 0]) + later[0, 0]) / (w + 1))
