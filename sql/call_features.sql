-- call_features: what the call list's risk model knows of each customer it scores
-- (README "The call list"; pipeline/compute/call_score.py fits the BG/NBD model on these rows).
--
-- Reads:    lake_day_payments (the lake's payments of the months read: $month and the
--           11 before it at most), customer_month_history, customer_alert (month $month)
-- Produces: one row per (metric, customer_id, alert) of the alerts of $month, and one per
--           customer of the BG/NBD fit sample (metric NULL, in_fit_sample): the first
--           $fit_customers customers of the history by md5 of customer_id. Every figure is
--           as of the end of $month (nothing later):
--   recent_value          the metric's value over the $horizon_months months before $month
--   value_per_paying_day  the metric's value over the months read / paying days
--   paying_days, frequency (= paying_days - 1), recency (first to last paying day, in
--   days), age (first paying day to the end of $month), quiet_days (last paying day to the
--   end of $month): the BG/NBD summary of the paying days (payments > 0, business time zone)

with month_end as (
    select cast($month::date + interval 1 month - interval 1 day as date) as last_day
),

alerts as (
    select metric, customer_id, alert from customer_alert where month = $month
),

fit_sample as (
    select customer_id
    from (select distinct customer_id from customer_month_history)
    order by md5(customer_id), customer_id
    limit $fit_customers
),

scored as (
    select metric, customer_id, alert, false as in_fit_sample from alerts
    union all
    select null, customer_id, null, true from fit_sample
),

metric_history as (
    -- the alerted customers' months, valued by the metric of each of their alerts
    select
        alerts.metric,
        history.customer_id,
        history.month,
        case alerts.metric
            when 'revenue' then history.revenue
            when 'payments' then history.payments
            when 'units' then history.units
            when 'margin' then history.margin
        end as value
    from (select distinct metric, customer_id from alerts) as alerts
    join customer_month_history as history using (customer_id)
),

metric_values as (
    select
        metric,
        customer_id,
        sum(value) filter (
            where month >= cast($month::date - to_months($horizon_months) as date)
              and month < $month
        ) as recent_value,
        sum(value) as total_value
    from metric_history
    group by metric, customer_id
),

paying_days as (
    select distinct pay.customer_id, cast(pay.paid_at as date) as paid_day
    from lake_day_payments as pay
    semi join scored using (customer_id)
    where pay.amount > 0
),

day_summary as (
    select
        customer_id,
        count(*) as paying_days,
        min(paid_day) as first_day,
        max(paid_day) as last_day
    from paying_days
    group by customer_id
),

final as (
    select
        scored.metric,
        scored.customer_id,
        scored.alert,
        scored.in_fit_sample,
        coalesce(metric_values.recent_value, 0) as recent_value,
        coalesce(metric_values.total_value, 0) / greatest(days.paying_days, 1)
            as value_per_paying_day,
        coalesce(days.paying_days, 0) as paying_days,
        greatest(coalesce(days.paying_days, 0) - 1, 0) as frequency,
        coalesce(date_diff('day', days.first_day, days.last_day), 0) as recency,
        coalesce(date_diff('day', days.first_day, month_end.last_day), 0) as age,
        date_diff('day', days.last_day, month_end.last_day) as quiet_days
    from scored
    left join metric_values using (metric, customer_id)
    left join day_summary as days using (customer_id)
    cross join month_end
)

select * from final
