"""Model and loss configuration, and the named model presets (saved with the weights as JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from emocompose.errors import UsageError


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 1074
    d: int = 256  # model width
    heads: int = 4
    ff: int = 1024
    enc_layers: int = 2  # per encoder (E_r and E_k have the same shape, separate weights)
    dec_layers: int = 4
    # bars before its own that each decoder layer reads (Transformer-XL's memory; the paper's and
    # the shipped model's 1): real music keeps its register over many bars, and the shipped
    # decoder, reading one, drifts out of the bass (`benchmarks/bass_drift.py`)
    dec_memory_bars: int = 1
    latent: int = 64  # per latent (z_r and z_k)
    dropout: float = 0.1
    feature_hidden: int = 128  # width of the local decoders and the adversaries
    prior_log_std: float = -2.0  # mixture standard deviations start at e^-2 (model.md section 4)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class LossConfig:
    alpha: float = 0.2  # variance penalty on the spread of the component means (1 = plain ELBO)
    drop_mi: bool = True  # use KL(q_bar(y) || p(y)) instead of the batch mean of KL(q(y|x) || p(y))
    kl_weight: float = 1.0  # beta on KL_z (per latent dimension, against per-token cross-entropy)
    kl_warmup: int = 1000  # steps over which beta rises linearly from 0
    free_bits: float = 0.25  # nats per latent dimension and bar below which KL_z is not pushed
    cls_weight: float = 1.0  # cross-entropy of q(y|x) against labels
    cat_weight: float = 1.0  # the categorical KL term
    feature_weight: float = 1.0  # local decoders D_r, D_k
    adv_weight: float = 0.1  # gradient-reversal strength for the cross predictors

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    # for tests: builds and trains in milliseconds
    "tiny": ModelConfig(d=32, heads=2, ff=64, enc_layers=1, dec_layers=2, latent=8, dropout=0.0, feature_hidden=16),
    # for sweeps and quick experiments: a quarter of small's width, a third of its layers
    "mini": ModelConfig(d=128, heads=4, ff=512, enc_layers=1, dec_layers=2, latent=32, feature_hidden=64),
    # the CPU default: about 7M weights, learns in hours on 2 cores
    "small": ModelConfig(),
    # the paper's size (Ning et al. 2024): needs GPUs
    "paper": ModelConfig(d=512, heads=8, ff=2048, enc_layers=12, dec_layers=12, latent=128, feature_hidden=256),
}


def preset(name: str, vocab_size: int) -> ModelConfig:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return ModelConfig.from_dict({**PRESETS[name].to_dict(), "vocab_size": vocab_size})
