-- vip_roster: the rolling VIP roster of $month, with the customers the period method
-- misses (spec: "Rolling VIP roster").
--
-- Reads:    vip_roster_membership, customer_rank (window $period_months of $month)
-- Produces: one row per (month, metric, customer_id) on the roster of $month.
-- missed_by_period_method: on the roster but not VIP by value summed over the last
-- $period_months months - typically a big one-month customer who may have left.

with roster as (
    select * from vip_roster_membership where as_of_month = $month
),

period_method_vips as (
    select metric, customer_id
    from customer_rank
    where month = $month and window_months = $period_months and is_vip
),

final as (
    select
        roster.as_of_month as month,
        roster.metric,
        roster.customer_id,
        roster.months_as_vip,
        roster.first_vip_month,
        roster.last_vip_month,
        roster.is_vip_this_month,
        period_method_vips.customer_id is null as missed_by_period_method
    from roster
    left join period_method_vips using (metric, customer_id)
)

select * from final
