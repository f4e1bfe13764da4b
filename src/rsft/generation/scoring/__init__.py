"""How a candidate is scored: a reward r(x, y), 1/0 for a verifier.

``verifiers``: the :class:`~rsft.generation.scoring.verifiers.Verifier` interface, the built-in
rules (numeric, regex, math-verify, a function by import path) and how they are run (threads,
or time-limited worker processes: ``timed_pool``); ``reward_model``: a sequence-classification
model's score, in batches.
"""
