"""Models for the training tests, named by import path (this folder is put on sys.path)."""

import time

from rsft.tasks.digits import DigitsNet


class SlowNet(DigitsNet):
    """DigitsNet that sleeps in every training forward, so a test can kill it mid-epoch."""

    def forward(self, features):
        if self.training:
            time.sleep(0.08)
        return super().forward(features)


class SlowEvalNet(DigitsNet):
    """DigitsNet that sleeps in every forward, eval mode too (gradient-free steps run there)."""

    def forward(self, features):
        time.sleep(0.04)
        return super().forward(features)
