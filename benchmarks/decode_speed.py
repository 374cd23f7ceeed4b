"""Generation speed: bar-by-bar decoding with the key/value cache against naive decoding that
re-runs the decoder over the bar so far for every token, in one run, at batch 1 and 8.

    python benchmarks/decode_speed.py [--model PATH] [--preset small] [--bars 8] [--repeat 5]

Both decode with temperature 0 and the same grammar, so they must write the same tokens (checked).
On an x86 CPU the cached decoding reads int8 weights (`hardware.int8_decoding`), whose greedy
tokens may part from float32's at a near tie: a third row, `float`, decodes with float32 weights,
and it is the one that must match the naive decoder.
Without --model, a randomly initialised model of the preset is used (speed does not depend on
the weights; the number of tokens per bar does, so each line prints it). Peak memory is each
configuration's maximum resident set, measured in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def naive_decode(model, vocab, cond, plans):
    """Greedy decoding without a cache: the whole bar so far goes through the decoder each step."""
    import torch

    from emocompose.sampling import AFTER_BAR, Grammar
    from emocompose.tokenizer import PITCH, POSITION

    B, T, d = cond.shape
    L = vocab.config.max_bar_tokens
    g = Grammar(vocab, L)
    out = [[] for _ in range(B)]
    mems, mem_lens = [torch.zeros(B, 1, d) for _ in model.dec.layers], torch.zeros(B, dtype=torch.long)
    for t in range(T):
        seq = torch.tensor([[vocab.bar_token(p.positions[t]) for p in plans]]).T  # (B, 1)
        state, pos, track, length = [AFTER_BAR] * B, [-1] * B, [-1] * B, [1] * B
        live = list(range(B))
        while live:
            h, pk, _ = model.dec(model.embed(seq)[:, None], torch.tensor(length)[:, None], mems, mem_lens,
                                 cond=cond[:, t : t + 1])  # fmt: skip
            last = pk.pad(h)[:, 0, :][torch.arange(B), torch.tensor(length) - 1]
            logits = model.logits(last).float().numpy()
            nxt_col, still = torch.full((B,), vocab.pad), []
            for i in live:
                ids, _, _ = g.allowed(state[i], pos[i], plans[i].positions[t], track[i], length[i])
                nxt = int(ids[logits[i, ids].argmax()])
                if g.end[nxt] or length[i] >= L:
                    continue
                kind = int(g.kind[nxt])
                state[i] = g.next_state(kind, state[i])
                pos[i] = int(g.value[nxt]) if kind == POSITION else pos[i]
                track[i] = int(g.track[nxt]) if kind == PITCH else track[i]
                nxt_col[i] = nxt
                length[i] += 1
                still.append(i)
            live = still
            if live:
                seq = torch.cat([seq, nxt_col[:, None]], 1)
        lens = torch.tensor(length)
        h, pk, (mems, mem_lens) = model.dec(model.embed(seq)[:, None], lens[:, None], mems, mem_lens,
                                            cond=cond[:, t : t + 1])  # fmt: skip
        ids = seq.numpy()
        for i in range(B):
            out[i].append(ids[i, : length[i]])
    return out


def one(mode: str, batch: int, args) -> dict:
    import numpy as np
    import torch

    from emocompose.compose import Composer
    from emocompose.model.config import preset
    from emocompose.model.gmvae import CDGMVAE
    from emocompose.model.step import decoding_layout
    from emocompose.sampling import BarPlan, SamplingConfig, decode_bars
    from emocompose.tokenizer import Vocab

    if mode == "float":
        import emocompose.hardware

        emocompose.hardware.int8_decoding = lambda device: False
    torch.manual_seed(0)
    if args.model:
        c = Composer.load(args.model)
        model, vocab = c.trained.model, c.tok.vocab
    else:
        vocab = Vocab()
        model = CDGMVAE(preset(args.preset, len(vocab))).eval().requires_grad_(False)
        decoding_layout(model.dec)  # as a loaded model has it
    cond = model.condition(torch.randn(batch, args.bars, model.config.latent), torch.randn(batch, args.bars, model.config.latent))
    plans = [BarPlan([16] * args.bars, [-1] * args.bars) for _ in range(batch)]
    dt = float("inf")
    # the cached decoding is short enough for a shared machine's moments to move it: best of
    # --repeat (the naive one runs once: it takes 10-20x as long)
    for _ in range(1 if mode == "naive" else args.repeat):
        t0 = time.perf_counter()
        with torch.no_grad():
            if mode in ("cached", "float"):
                out = decode_bars(model, vocab, cond, plans, SamplingConfig(temperature=0.0))
            else:
                out = naive_decode(model, vocab, cond, plans)
        dt = min(dt, time.perf_counter() - t0)
    tokens = sum(len(b) for seq in out for b in seq)
    return {"mode": mode, "batch": batch, "seconds": dt, "tokens": tokens, "tokens_per_s": tokens / dt,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ids": [np.concatenate(s).tolist() for s in out]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5, help="cached decodings timed, the best kept")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args)))
        return
    rows = {}
    extra = ["--preset", args.preset, "--bars", str(args.bars), "--repeat", str(args.repeat)]
    extra += ["--model", args.model] if args.model else []
    for batch in (1, 8):
        modes = ("cached", "float", "naive")
        for mode in modes:
            r = subprocess.run([sys.executable, __file__, "--one", mode, str(batch), *extra], capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(r.stderr)
            rows[mode, batch] = json.loads(r.stdout)
            x = rows[mode, batch]
            print(f"{mode:6s} batch {batch}: {x['tokens']:5d} tokens in {x['seconds']:6.2f} s = {x['tokens_per_s']:7.1f} "
                  f"tokens/s, peak {x['peak_mb']:.0f} MB")  # fmt: skip
        same = {m: rows[m, batch]["ids"] == rows["naive", batch]["ids"] for m in modes[:-1]}
        print(f"ratio at batch {batch}: cache {rows['cached', batch]['tokens_per_s'] / rows['naive', batch]['tokens_per_s']:.1f}x "
              f"as fast; same tokens as naive: {', '.join(f'{m} {v}' for m, v in same.items())}")  # fmt: skip


if __name__ == "__main__":
    main()
