"""Flax Linen models: the causal video VAE, the diffusion transformer, the text encoders."""
