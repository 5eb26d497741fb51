#!/usr/bin/env python3
"""porthole demo: a run that fails after about 20 seconds.

Meant to run with a linger (`porthole run --linger 10m -- python3 fail.py`)
so that the agent keeps SSH up after the failure: open a shell, look at
the state the run left behind. Standard library only.
"""

import sys
import time


def load_batch(step):
    if step == 20:
        shape = (32, 3, 224, 224)
        raise ValueError(f"batch {step}: expected shape {shape}, got (32, 224, 224)")
    return step


def main():
    print("loading data", flush=True)
    for step in range(1, 1000):
        time.sleep(1)
        load_batch(step)
        print(f"step {step} ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(1)
