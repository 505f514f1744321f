-- customer_segment: monthly VIP / good / regular segments and VIP movements
-- (spec: "Monthly VIP segments").
--
-- Reads:    customer_rank (window 1 of months $month and $previous_month)
-- Produces: one row per (month, metric, customer_id) of the population of $month.
-- VIPs are decided in customer_rank.sql; this file adds the good segment: the next
-- ceil(good_share x (N - k_vip)) ranks plus every VIP of the previous month who is
-- in the population but no longer VIP. In the first month of the history the
-- previous month is unknown ($has_previous_month false): movement is NULL.

with monthly_rank as (
    select * from customer_rank where window_months = 1
),

this_month as (
    select * from monthly_rank where month = $month
),

vips_of_previous_month as (
    select metric, customer_id
    from monthly_rank
    where month = $previous_month and is_vip and $has_previous_month
),

vip_counts as (
    select metric, count(*) filter (where is_vip) as n_vip
    from this_month
    group by metric
),

with_previous as (
    select
        this_month.*,
        vips_of_previous_month.customer_id is not null as was_vip,
        vip_counts.n_vip
    from this_month
    join vip_counts using (metric)
    left join vips_of_previous_month using (metric, customer_id)
),

segmented as (
    select
        *,
        case
            when is_vip then 'vip'
            when was_vip then 'good'
            when rank <= n_vip + ceil($good_share * (n_customers - n_vip)) then 'good'
            else 'regular'
        end as segment,
        case
            when not $has_previous_month then null
            when is_vip and was_vip then 'kept_vip'
            when is_vip then 'new_vip'
            when was_vip then 'dropped_vip'
        end as movement
    from with_previous
),

final as (
    select month, metric, customer_id, value, rank, segment, movement
    from segmented
)

select * from final
