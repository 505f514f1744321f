-- warehouse_views: views for BI users over the reporting tables.
-- Portable SQL (DuckDB and PostgreSQL), created by the warehouse's ensure_schema().
--
--   latest_customer_segment  each customer's most recent monthly segment, per metric
--   latest_customer_class    each customer's most recent ABC / XYZ class, per metric and window
--   latest_customer_tier     each customer's most recent profitability tier
--   month_overview           per month and metric: customers, VIPs, A/B/C counts, alerts

create or replace view latest_customer_segment as
select distinct on (metric, customer_id)
    customer_id, metric, month, segment, movement, rank, value
from customer_segment
order by metric, customer_id, month desc;

create or replace view latest_customer_class as
select distinct on (metric, window_months, customer_id)
    customer_id, metric, window_months, month, abc_class, xyz_class, rank, value, share
from customer_abc
order by metric, window_months, customer_id, month desc;

create or replace view latest_customer_tier as
select distinct on (window_months, customer_id)
    customer_id, window_months, month, tier, revenue, margin, margin_pct
from customer_tier
order by window_months, customer_id, month desc;

create or replace view month_overview as
with segments as (
    select
        month,
        metric,
        count(*) as n_customers,
        sum(case when segment = 'vip' then 1 else 0 end) as n_vip,
        sum(case when segment = 'good' then 1 else 0 end) as n_good,
        sum(case when segment = 'regular' then 1 else 0 end) as n_regular
    from customer_segment
    group by month, metric
),
alerts as (
    select month, metric, count(*) as n_alerts
    from customer_alert
    group by month, metric
)
select
    summary.month,
    summary.metric,
    segments.n_customers,
    segments.n_vip,
    segments.n_good,
    segments.n_regular,
    summary.n_class_a,
    summary.n_class_b,
    summary.n_class_c,
    summary.total_value,
    summary.top20_share,
    summary.gini,
    coalesce(alerts.n_alerts, 0) as n_alerts
from pareto_summary as summary
left join segments on segments.month = summary.month and segments.metric = summary.metric
left join alerts on alerts.month = summary.month and alerts.metric = summary.metric
where summary.window_months = 1;
