"""jaxsora: a JAX/Flax implementation of the Sora design."""

__version__ = "0.1.0"
