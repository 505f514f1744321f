"""What reaches people from the warehouse: the month's report (``report`` renders it from
``report_data`` and ``report_charts``), the call list (``call_list``) and its mail
(``notify``), the PNG charts (``charts``) and the call lists' backtest (``backtest``).
Nothing here records run state: the steps that do are in ``pipeline.run.steps``."""
