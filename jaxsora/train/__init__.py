"""Training: optimiser, checkpoints, metrics and the loops for the VAE and the diffusion transformer."""
