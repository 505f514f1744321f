-- vip_roster_membership: who is on the rolling VIP roster as of $month and as of the
-- month before (spec: "Rolling VIP roster"). The one place the roster rule lives.
--
-- Reads:    customer_rank (window 1: the monthly VIP lists)
-- Produces: one row per (as_of_month, metric, customer_id) for as_of_month in
--           {$previous_month, $month}: the customers VIP in at least one of the
--           $roster_months months ending with as_of_month, with the count and the
--           first and last of those months.

with monthly_vips as (
    select month, metric, customer_id
    from customer_rank
    where window_months = 1 and is_vip
),

as_of_months as (
    select unnest([$previous_month::date, $month::date]) as as_of_month
),

final as (
    select
        as_of.as_of_month,
        vip.metric,
        vip.customer_id,
        count(*)::integer as months_as_vip,
        min(vip.month) as first_vip_month,
        max(vip.month) as last_vip_month,
        bool_or(vip.month = as_of.as_of_month) as is_vip_this_month
    from as_of_months as as_of
    join monthly_vips as vip
        on vip.month <= as_of.as_of_month
       and vip.month > as_of.as_of_month - to_months($roster_months)
    group by all
)

select * from final
