"""The CDGMVAE: Transformer-XL encoders and decoder (`layers`), the Gaussian-mixture prior
(`prior`), the whole model with its losses (`gmvae`), and named configurations (`config`)."""
