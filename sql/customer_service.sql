-- customer_service: per business month and customer with at least one service activity,
-- the month's activities, hours and cost to serve (spec: "Service effort and cost to
-- serve").
--
-- Reads:    lake_activities (the good activities of the month being extracted)
-- Produces: one row per (month, customer_id). The extract runs it on each month it writes
--           and publishes the result with the month's activity partition; the computation
--           of a month reads those (customer_service_history.sql).
-- hours and cost_to_serve are NULL when the source has no hours / cost column.

with lake_activities as (
    select * from lake_activities
),

per_customer_month as (
    select
        month,
        customer_id,
        count(*) as activities,
        sum(hours) as hours,
        sum(cost) as cost_to_serve
    from lake_activities
    group by month, customer_id
),

final as (
    select
        month,
        customer_id,
        activities::integer as activities,
        case when $has_hours then hours end::money as hours,
        case when $has_cost then cost_to_serve end::money as cost_to_serve
    from per_customer_month
)

select * from final
