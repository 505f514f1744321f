-- customer_metric: the ranking metrics of every customer month, in long form.
--
-- Reads:    customer_month_history
-- Produces: one row per (month, metric, customer_id) with the metric's value, for the
--           metrics the run computes ($metrics: revenue, payments, units, margin).
-- The extract ranks its month's window 1 from these rows (pipeline/lake/derived.py, then
-- customer_ranking.sql); the computation of a month sums the wide customer_month_history
-- instead (customer_window_values.sql, customer_xyz.sql).

with customer_month as (
    select * from customer_month_history
),

metric_values as (
    select month, customer_id, 'revenue' as metric, revenue as value from customer_month
    union all
    select month, customer_id, 'payments', payments from customer_month
    union all
    select month, customer_id, 'units', units from customer_month
    union all
    select month, customer_id, 'margin', margin from customer_month
),

final as (
    select month, metric, customer_id, value::money as value
    from metric_values
    where list_contains($metrics, metric)
      and value is not null
)

select * from final
