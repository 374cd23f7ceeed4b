"""The Gaussian-mixture prior of one latent: two components (low, high) of one emotion axis.

Arousal lives on z_r, valence on z_k (model.md section 4). The class posterior needs no extra
network (VaDE): q(y|x) = softmax_y( log p(y) + mean over bars of log N(z; mu_y, sigma^2) / latent ).
choice: both components share one learned variance vector, which makes the variance-penalty
decomposition below exact.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_2PI = math.log(2 * math.pi)


class MixturePrior(nn.Module):
    def __init__(self, latent: int, log_std: float):
        super().__init__()
        self.means = nn.Parameter(torch.empty(2, latent))
        nn.init.xavier_uniform_(self.means)
        self.log_std = nn.Parameter(torch.full((latent,), float(log_std)))
        # p(y): uniform and fixed, so an unlabelled batch cannot talk the model out of a class
        self.register_buffer("log_py", torch.full((2,), -math.log(2.0)), persistent=False)

    def log_lik(self, z: torch.Tensor) -> torch.Tensor:
        """(..., latent) -> (..., 2): log N(z; mu_y, sigma^2) for y in (low, high)."""
        var = torch.exp(2 * self.log_std)
        diff = z[..., None, :] - self.means
        return -0.5 * ((diff**2) / var + 2 * self.log_std + LOG_2PI).sum(-1)

    def class_logits(self, z: torch.Tensor, bar_mask: torch.Tensor) -> torch.Tensor:
        """z (b, t, latent), bar_mask (b, t) -> (b, 2) unnormalised log q(y|x) of each piece.

        choice (model.md): a piece combines its bars by averaging their log-likelihoods.
        choice (measured): the log-likelihood is averaged over latent dimensions too, a
        temperature equal to the latent size. Summed over 64 dimensions with sigma = e^-2, the
        two components differ by ~100 nats, q(y|x) is 0 or 1, a wrong label costs ~40 nats and its
        gradient (clipped) drowned the reconstruction: at step 60 the token loss had not moved.
        """
        ll = self.log_lik(z) / z.shape[-1]
        w = bar_mask.to(ll.dtype)[..., None]
        mean_ll = (ll * w).sum(1) / w.sum(1).clamp_min(1.0)
        return mean_ll + self.log_py

    def log_q(self, z: torch.Tensor, bar_mask: torch.Tensor) -> torch.Tensor:
        """(b, 2) log q(y|x) of each piece: what training scores against labels and what
        `TrainedModel` reports as the emotion it hears."""
        return torch.log_softmax(self.class_logits(z, bar_mask), dim=-1)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
        """Per-dimension KL_z with the variance penalty alpha, shape (b, t, latent).

        KL_z = sum_y w_y KL(N(mu, e^logvar) || N(mu_y, sigma^2)), w = q(y|x) or the label.
        With one sigma^2,  sum_y w_y (mu - mu_y)^2 = (mu - mu_bar)^2 + sum_y w_y (mu_y - mu_bar)^2,
        mu_bar = sum_y w_y mu_y. The second term pulls the component means together until they
        collapse; alpha scales it (alpha = 1 is the plain term, the paper's best is 0.2).
        """
        log_var = 2 * self.log_std
        var = torch.exp(log_var)
        base = 0.5 * (log_var - logvar + torch.exp(logvar) / var - 1)
        w = weights[:, None, :, None]  # (b, 1, 2, 1)
        mu_bar = (w * self.means).sum(2)  # (b, 1, latent)
        spread = (w * (self.means - mu_bar[:, :, None]) ** 2).sum(2)
        return base + 0.5 * ((mu - mu_bar) ** 2 + alpha * spread) / var

    def kl_plain(self, mu: torch.Tensor, logvar: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum_y w_y KL(q(z|x) || N(mu_y, sigma^2)) computed directly (for tests and reference)."""
        log_var = 2 * self.log_std
        var = torch.exp(log_var)
        kl_y = 0.5 * (log_var - logvar[..., None, :] + (torch.exp(logvar)[..., None, :] + (mu[..., None, :] - self.means) ** 2) / var - 1)
        return (weights[:, None, :, None] * kl_y).sum(2)
