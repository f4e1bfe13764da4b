"""Fine-tuning on the accepted set: TRL's SFTTrainer, in this process or launched.

``config``: the ``sft`` section and its launch checks; ``train``: one process's fine-tuning
(resumable, saved atomically); ``guard``: its divergence guard; ``launch``: several processes
under ``accelerate launch``; ``worker``: what each launched process runs; ``job``: the spec
both sides of a launch share.
"""
