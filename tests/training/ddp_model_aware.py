"""Run by test_model_aware.py under `accelerate launch`: a model-aware run on each rank,
recording the rounds' accepted samples and the samples this rank trained on per step."""

import json
import sys

import yaml

from rsft.config import from_dict
from rsft.training import FineTuner, TrainConfig

config_path, out_path = sys.argv[1], sys.argv[2]
tuner = FineTuner(from_dict(TrainConfig, yaml.safe_load(open(config_path))))
online = tuner.online
rounds, steps = [], []
score, step = online.score_round, tuner.stepper.step


def score_round(model, indices, epoch, global_step):
    n0 = len(online.queue)
    out = score(model, indices, epoch, global_step)
    rounds.append([int(i) for i, _ in online.queue.state_dict()[n0:]])
    return out


def optimizer_step(micro, n_step):
    # A zero-weight stand-in (a final step smaller than the number of ranks) is not trained.
    steps.append([i for b, w in micro for i, x in zip(b["index"].tolist(), w.tolist()) if x])
    return step(micro, n_step)


online.score_round = score_round
tuner.stepper.step = optimizer_step
result = tuner.train()
acc = tuner.accelerator
record = {
    "rank": acc.process_index,
    "world": acc.num_processes,
    "rounds": rounds,
    "steps": steps,
    "step_losses": result["step_losses"],
    "backpropagated": result["backpropagated"],
    "acceptance_rate": result["acceptance_rate"],
}
with open(f"{out_path}.{acc.process_index}.json", "w") as f:
    json.dump(record, f)
