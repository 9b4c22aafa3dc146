"""discrete_priors: priors over image latent codes (Binary Latent Diffusion and its baselines)."""

__version__ = "0.1.0"
