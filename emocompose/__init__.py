"""emocompose: write and rewrite symbolic music to carry a chosen emotion.

A Transformer-XL Gaussian-mixture VAE over REMI tokens (Ning, Han & Pan, PLOS ONE 2024).
Importing this package is cheap: torch and music21 load only inside the functions that need them.
"""

__version__ = "0.1.0"
