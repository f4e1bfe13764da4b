"""rsft: rejection-sampling fine-tuning of pretrained models."""

__version__ = "0.1.0"
