-- customer_alert: VIPs someone should call this month (spec: "Alerts").
--
-- Reads:    customer_rank (window 1), customer_segment, customer_month_history
-- Produces: one row per (month, metric, customer_id, alert) for month $month:
--   vip_stopped_paying  VIP in $previous_month, not in the population of $month;
--   vip_dropped         movement dropped_vip (still paying, no longer VIP);
--   margin_erosion      VIP in $month with revenue > 0 whose margin % is more than
--                       $erosion_points below the plain average of its margin % over
--                       the previous $erosion_lookback_months months (within the history)
--                       with revenue > 0; only where margin is available.
-- No VIP alert in the first month of the history ($has_previous_month false).

with monthly_rank as (
    select * from customer_rank where window_months = 1
),

vips_of_previous_month as (
    select * from monthly_rank
    where month = $previous_month and is_vip and $has_previous_month
),

population_of_month as (
    select metric, customer_id from monthly_rank where month = $month
),

stopped_paying as (
    select
        vip.metric,
        vip.customer_id,
        'vip_stopped_paying' as alert,
        printf('VIP in %s (rank %d of %d, value %s), no %s in %s',
            strftime(vip.month, '%Y-%m'), vip.rank, vip.n_customers, vip.value::varchar,
            vip.metric, strftime($month::date, '%Y-%m')) as detail
    from vips_of_previous_month as vip
    anti join population_of_month using (metric, customer_id)
),

dropped as (
    select
        metric,
        customer_id,
        'vip_dropped' as alert,
        printf('VIP in %s, now rank %d (value %s)',
            strftime($previous_month::date, '%Y-%m'), rank, value::varchar) as detail
    from customer_segment
    where movement = 'dropped_vip'
),

margin_pct_by_month as (
    select month, customer_id, margin::double / revenue::double as margin_pct
    from customer_month_history
    where revenue > 0 and margin is not null
),

margin_baseline as (
    select customer_id, avg(margin_pct) as avg_margin_pct, count(*) as n_months
    from margin_pct_by_month
    where month < $month
      and month >= $month::date - to_months($erosion_lookback_months)
    group by customer_id
),

eroding as (
    select
        vip.metric,
        vip.customer_id,
        'margin_erosion' as alert,
        printf('margin %.1f %% in %s vs %.1f %% average of %d previous month(s)',
            100 * current.margin_pct, strftime($month::date, '%Y-%m'),
            100 * baseline.avg_margin_pct, baseline.n_months) as detail
    from monthly_rank as vip
    join margin_pct_by_month as current
        on current.customer_id = vip.customer_id and current.month = vip.month
    join margin_baseline as baseline
        on baseline.customer_id = vip.customer_id
    where vip.month = $month
      and vip.is_vip
      -- rounded to 1e-12 so that exactly $erosion_points below is not an alert by float noise
      and round(baseline.avg_margin_pct - current.margin_pct, 12) > $erosion_points
),

final as (
    select $month::date as month, metric, customer_id, alert, detail
    from (
        select * from stopped_paying
        union all
        select * from dropped
        union all
        select * from eroding
    )
)

select * from final
