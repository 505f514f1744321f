-- customer_window_values: the value of each customer over each window the computation of
-- $month ranks itself (spec: "Metrics and windows").
--
-- Reads:    customer_month_history (one row per customer month, the metrics side by side)
-- Produces: one row per (month, metric, window_months, customer_id) for the metrics the
--           run computes ($metrics) and
--             * window 1 of the months in $unranked_months: months whose lake partition
--               carries no monthly ranking (lake schema version 1), and
--             * every window longer than 1 of $rank_windows in month $month: the sum of
--               the customer's monthly values over the window's months.
--           A NULL value (units or margin where the source lacks them) gives no row.
-- The monthly ranking of every other month was ranked at extract (customer_ranking.sql)
-- and is read from the lake.
-- The windows are summed on the wide rows, all metrics at once, and only then turned
-- into one row per metric: a quarter of the rows to group of summing customer_metric.sql's
-- long form, which the extract still uses for its single month.

with customer_month as (
    select * from customer_month_history
),

monthly_totals as (
    select month, 1 as window_months, customer_id, revenue, payments, units, margin
    from customer_month
    where list_contains($unranked_months, month)
),

longer_window_totals as (
    select
        $month::date as month,
        window_months,
        customer_id,
        sum(revenue) as revenue,
        sum(payments) as payments,
        sum(units) as units,
        sum(margin) as margin
    from customer_month,
        unnest($rank_windows) as requested(window_months)
    where window_months > 1
      and customer_month.month > $month::date - to_months(window_months)
    group by all
),

window_totals as (
    select * from monthly_totals
    union all
    select * from longer_window_totals
),

window_totals_as_values as (
    -- the type of a value, for all four metrics alike. Fits: the extract caps a month's
    -- money and units (MONTH_MONEY_LIMIT, MONTH_UNITS_LIMIT in pipeline/lake/delivery.py),
    -- and the narrow type ranks much faster than DECIMAL(38)
    select
        month,
        window_months,
        customer_id,
        revenue::money as revenue,
        payments::money as payments,
        units::money as units,
        margin::money as margin
    from window_totals
),

metric_values as (
    -- one row per metric; UNPIVOT leaves out the NULL values
    unpivot window_totals_as_values
    on revenue, payments, units, margin
    into name metric value value
),

final as (
    select month, metric, window_months, customer_id, value
    from metric_values
    where list_contains($metrics, metric)
)

select * from final
