"""Running months: the steps of a month (``steps``), their run state (``state``), months in
a row and the cascade (``backfill``), the orchestrated month (``schedule``, pure Python:
the DAG imports it at parse time, so this file imports nothing) and the warm Airflow
processes (``preload``)."""
