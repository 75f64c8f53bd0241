"""The pure core: the DAG, the scheduler, agent selection, and how events change state.

No I/O and no clock (time is passed in): everything here is unit-tested without
processes, and every store backend applies the same ``projection``.
"""
