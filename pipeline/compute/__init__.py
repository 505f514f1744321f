"""The computation of a month: every reporting table of month M from the lake's partitions.

Modules:

    models.py      the month's SQL models in one ordered list
    month.py       plan_month, compute_month, write_month: running them for one month
    call_score.py  the call list's risk model (BG/NBD), between its two SQL models
"""
