"""The payment lake: one month-partition of canonical, typed Parquet per business month.

Layout::

    lake/payments/month=YYYY-MM/manifest.json        what the extract read and wrote
    lake/payments/month=YYYY-MM/part-<hash>.parquet  the month's payments
    lake/payments/month=YYYY-MM/customer_month-<hash>.parquet
    lake/payments/month=YYYY-MM/monthly_ranking-<hash>.parquet
                                                     derived from those payments and
                                                     published with them: the month's
                                                     customer_month and its customers
                                                     ranked by each metric (window 1)
    lake/quarantine/month=YYYY-MM/bad-rows.parquet   bad rows set aside (quarantine on)
    lake/quarantine/undated/bad-rows.parquet         rows with no usable paid_at

Modules, in the order they import each other:

    partition.py  what a partition holds (Dataset, Manifest) and reading it; hold_months
    publish.py    publishing a partition atomically, on a local disk or an object store
    derived.py    the tables derived at extract and published with the month's rows
    delivery.py   judging a month's delivery: the refusals (bad rows, an empty month, the
                  money limit, ids given again)
    extract.py    extract, extract_months: from the source to a published partition
"""
