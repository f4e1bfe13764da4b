"""Where candidates come from: a :class:`Generator` per model, on transformers or vLLM.

``base``: the interface every backend implements; ``local``: transformers' batched generate
in this process; ``server``: a vLLM OpenAI-compatible server rsft starts; ``client``: the HTTP
generator over one or more such servers (or endpoints someone else runs); ``pool``: which
backend a run uses, its engines' starts, restarts and LoRA adapters.
"""

from rsft.generation.engines.base import Generator, Sampling

__all__ = ["Generator", "Sampling"]
