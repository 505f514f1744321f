-- vip_roster_change: who joined and who left the rolling VIP roster in $month
-- (spec: "Rolling VIP roster").
--
-- Reads:    vip_roster_membership
-- Produces: one row per (month, metric, customer_id): `added` (on the roster of $month,
--           not of $previous_month) or `removed` (the other way round). None in the
--           first month of the history, whose previous roster is unknown.

with roster_now as (
    select metric, customer_id from vip_roster_membership where as_of_month = $month
),

roster_before as (
    select metric, customer_id
    from vip_roster_membership
    where as_of_month = $previous_month and $has_previous_month
),

added as (
    select metric, customer_id, 'added' as change from roster_now
    anti join roster_before using (metric, customer_id)
),

removed as (
    select metric, customer_id, 'removed' as change from roster_before
    anti join roster_now using (metric, customer_id)
),

final as (
    select $month::date as month, metric, customer_id, change
    from (select * from added union all select * from removed)
    where $has_previous_month
)

select * from final
