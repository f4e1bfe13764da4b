"""Run by test_ddp.py under `accelerate launch`: train, then record what each rank saw."""

import json
import sys

import yaml

from rsft.config import from_dict
from rsft.training import FineTuner, TrainConfig

config_path, out_path = sys.argv[1], sys.argv[2]
tuner = FineTuner(from_dict(TrainConfig, yaml.safe_load(open(config_path))))
shards = {}
for epoch in range(tuner.config.epochs):
    tuner.sampler.set_epoch(epoch)
    shards[epoch] = list(tuner.sampler)
result = tuner.train()
acc = tuner.accelerator
record = {
    "rank": acc.process_index,
    "world": acc.num_processes,
    "shards": shards,
    "step_losses": result["step_losses"],
    "test_accuracy": result["test_accuracy"],
    "backpropagated": result["backpropagated"],
    "step_acceptance": result.get("step_acceptance"),
    "param_sum": float(sum(p.double().sum() for p in tuner.clf.model.parameters())),
}
with open(f"{out_path}.{acc.process_index}.json", "w") as f:
    json.dump(record, f)
