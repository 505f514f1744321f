-- customer_window_values: the value of each customer over each window the computation of
-- $month ranks itself (spec: "Metrics and windows").
--
-- Reads:    customer_metric
-- Produces: one row per (month, metric, window_months, customer_id) for
--             * window 1 of the months in $unranked_months: months whose lake partition
--               carries no monthly ranking (lake schema version 1), and
--             * every window longer than 1 of $rank_windows in month $month: the sum of
--               the customer's monthly values over the window's months.
-- The monthly ranking of every other month was ranked at extract (customer_ranking.sql)
-- and is read from the lake.

with monthly_values as (
    select month, metric, 1 as window_months, customer_id, value
    from customer_metric
    where list_contains($unranked_months, month)
),

longer_window_values as (
    select
        $month::date as month,
        metric_value.metric,
        window_months,
        metric_value.customer_id,
        sum(metric_value.value) as value
    from customer_metric as metric_value,
        unnest($rank_windows) as requested(window_months)
    where window_months > 1
      and metric_value.month > $month::date - to_months(window_months)
    group by all
),

final as (
    select * from monthly_values
    union all
    -- fits: the extract caps a month's money (MONTH_MONEY_LIMIT in pipeline/lake.py), and
    -- the narrow type ranks much faster than DECIMAL(38)
    select month, metric, window_months, customer_id, value::decimal(18, 2)
    from longer_window_values
)

select * from final
