"""The epoch's log line names the task's metric, not "acc" for every task."""

from rsft.training.records import format_record

RECORD = {"epoch": 2, "train_loss": 0.25, "accepted": 90, "acceptance_rate": 0.9}


def test_line_says_acc_for_accuracy():
    line = format_record({**RECORD, "eval_accuracy": 0.5})
    assert line == "epoch 2 | train loss 0.2500 | accepted 90 (90%) | eval acc 50.00%"


def test_line_names_a_custom_metric_by_its_function():
    line = format_record({**RECORD, "eval_accuracy": 0.468}, "examples.seg.task:mean_iou")
    assert line.endswith("| eval mean_iou 46.80%")
    assert "eval acc" not in line


def test_line_without_evaluation_has_no_metric():
    assert "eval" not in format_record(RECORD, "pkg:fn")
