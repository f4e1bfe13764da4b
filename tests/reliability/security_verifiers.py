"""A verifier function that misbehaves on request, named by import path in test_security.py.

The completion says what to do: "hang" never returns, "exit" kills its own process, "raise"
raises; anything else is compared with the reference.
"""

import os
import time


def hostile(prompt: str, completion: str, reference: str | None) -> float:
    if completion == "hang":
        time.sleep(3600)
    if completion == "exit":
        os._exit(3)
    if completion == "raise":
        raise KeyError("a verifier bug")
    return float(completion == reference)
