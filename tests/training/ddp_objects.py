"""Run by test_inputs.py under `accelerate launch`: train on a datasets.Dataset object."""

import json
import sys

import yaml
from datasets import Dataset

from rsft.config import from_dict
from rsft.training import FineTuner, TrainConfig

config_path, out_path = sys.argv[1], sys.argv[2]
options = yaml.safe_load(open(config_path))
train = Dataset.from_parquet(options["data"].pop("train"))
tuner = FineTuner(from_dict(TrainConfig, options), train=train)
result = tuner.train()
acc = tuner.accelerator
record = {
    "rank": acc.process_index,
    "train": tuner.config.data.train,
    "step_losses": result["step_losses"],
}
with open(f"{out_path}.{acc.process_index}.json", "w") as f:
    json.dump(record, f)
