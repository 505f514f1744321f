-- call_features: what the call list's risk model knows of each customer it scores
-- (README "The call list"; pipeline/call_score.py fits the models on these rows).
--
-- Reads:    lake_day_payments (the lake's payments of the months read, $month and the
--           11 before it at most), customer_month_history, customer_alert (month $month),
--           customer_rank (window 1: the VIPs of the months whose VIP lists are read)
-- Produces: one row per (as_of, metric, customer_id, alert) of
--   * the alerts of $month (is_training false), and
--   * the training examples: in each month T of $training_months (whose $horizon_months
--     months after end by $month), the VIPs of T-1 that are not VIP in T, as alerts of T
--     (vip_stopped_paying without value in T, else vip_dropped), with what followed:
--     value_after over T+1 .. T+h and leaving = value_after below half of recent_value;
-- and the customers of the BG/NBD fit sample (as_of $month, metric NULL, in_fit_sample):
-- the first $fit_customers customers of the history by md5 of customer_id.
-- Every figure of a row is as of the end of its month as_of (nothing later), h =
-- $horizon_months:
--   value_now, value_last_month   the metric's value in as_of and in the month before
--   typical_value     the mean monthly value over the months read before as_of (0 where
--                     the customer did not pay)
--   recent_value      the value over as_of-h .. as_of-1
--   value_per_paying_day  value over the months read up to as_of / paying days
--   paying_days, frequency (= paying_days - 1), recency (first to last paying day, days),
--   age (first paying day to the end of as_of, days), quiet_days (last paying day to the
--   end of as_of): the BG/NBD summary of the paying days (payments > 0, business time zone)

with metric_names as (
    select unnest($metrics::varchar[]) as metric
),

history as (
    select
        history.month,
        metric_names.metric,
        history.customer_id,
        case metric_names.metric
            when 'revenue' then history.revenue
            when 'payments' then history.payments
            when 'units' then history.units
            when 'margin' then history.margin
        end as value
    from customer_month_history as history
    cross join metric_names
),

vips as (
    select month, metric, customer_id from customer_rank where window_months = 1 and is_vip
),

targets as (
    select $month::date as as_of, metric, customer_id, alert, false as is_training
    from customer_alert
    where month = $month
),

training as (
    select
        training_month.as_of,
        before.metric,
        before.customer_id,
        case when coalesce(now.value, 0) > 0 then 'vip_dropped' else 'vip_stopped_paying' end
            as alert,
        true as is_training
    from (select unnest($training_months::date[]) as as_of) as training_month
    join vips as before
        on before.month = cast(training_month.as_of - interval 1 month as date)
    left join history as now
        on now.month = training_month.as_of
        and now.metric = before.metric and now.customer_id = before.customer_id
    anti join vips as still
        on still.month = training_month.as_of
        and still.metric = before.metric and still.customer_id = before.customer_id
),

fit_sample as (
    select $month::date as as_of, null::varchar as metric, customer_id, null::varchar as alert,
        false as is_training
    from (select distinct customer_id from customer_month_history)
    order by md5(customer_id), customer_id
    limit $fit_customers
),

scored as (
    select *, false as in_fit_sample from targets
    union all
    select *, false from training
    union all
    select *, true from fit_sample
),

values_as_of as (
    select
        scored.as_of,
        scored.metric,
        scored.customer_id,
        sum(history.value) filter (where history.month = scored.as_of) as value_now,
        sum(history.value) filter (
            where history.month = cast(scored.as_of - interval 1 month as date)
        ) as value_last_month,
        sum(history.value) filter (where history.month < scored.as_of) as value_before,
        sum(history.value) filter (
            where history.month >= cast(scored.as_of - to_months($horizon_months) as date)
              and history.month < scored.as_of
        ) as recent_value,
        sum(history.value) filter (where history.month <= scored.as_of) as value_to_date,
        sum(history.value) filter (
            where history.month > scored.as_of
              and history.month <= cast(scored.as_of + to_months($horizon_months) as date)
        ) as value_after
    from (select distinct as_of, metric, customer_id from scored where metric is not null)
        as scored
    join history
        on history.metric = scored.metric and history.customer_id = scored.customer_id
    group by scored.as_of, scored.metric, scored.customer_id
),

months_before as (
    -- the months read before each as_of: the typical value's denominator
    select as_of, count(distinct history.month) as n
    from (select distinct as_of from scored) as as_ofs
    join (select distinct month from customer_month_history) as history
        on history.month < as_ofs.as_of
    group by as_of
),

paying_days as (
    select distinct pay.customer_id, cast(pay.paid_at as date) as paid_day
    from lake_day_payments as pay
    semi join (select distinct customer_id from scored) using (customer_id)
    where pay.amount > 0
),

day_summary as (
    select
        as_ofs.as_of,
        paying_days.customer_id,
        count(*) as paying_days,
        min(paid_day) as first_day,
        max(paid_day) as last_day
    from (select distinct as_of, customer_id from scored) as as_ofs
    join paying_days
        on paying_days.customer_id = as_ofs.customer_id
        and paying_days.paid_day < as_ofs.as_of + interval 1 month
    group by as_ofs.as_of, paying_days.customer_id
),

final as (
    select
        scored.as_of,
        scored.metric,
        scored.customer_id,
        scored.alert,
        scored.is_training,
        scored.in_fit_sample,
        coalesce(v.value_now, 0) as value_now,
        coalesce(v.value_last_month, 0) as value_last_month,
        coalesce(v.value_before, 0) / greatest(months_before.n, 1) as typical_value,
        coalesce(v.recent_value, 0) as recent_value,
        coalesce(v.value_to_date, 0) / greatest(d.paying_days, 1) as value_per_paying_day,
        coalesce(v.value_after, 0) as value_after,
        coalesce(v.value_after, 0) < 0.5 * coalesce(v.recent_value, 0) as leaving,
        coalesce(d.paying_days, 0) as paying_days,
        greatest(coalesce(d.paying_days, 0) - 1, 0) as frequency,
        coalesce(date_diff('day', d.first_day, d.last_day), 0) as recency,
        coalesce(date_diff('day', d.first_day,
            cast(scored.as_of + interval 1 month - interval 1 day as date)), 0) as age,
        date_diff('day', d.last_day,
            cast(scored.as_of + interval 1 month - interval 1 day as date)) as quiet_days
    from scored
    left join values_as_of as v
        on v.as_of = scored.as_of and v.metric = scored.metric
        and v.customer_id = scored.customer_id
    left join months_before on months_before.as_of = scored.as_of
    left join day_summary as d on d.as_of = scored.as_of and d.customer_id = scored.customer_id
)

select * from final
