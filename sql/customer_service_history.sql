-- customer_service_history: customer_service of every month the computation of $month
-- reads, with each customer month's effort (spec: "Service effort and cost to serve").
--
-- Reads:    lake_customer_service (each month's customer_service, derived at extract and
--           published with its activity partition; see customer_service.sql)
-- Produces: one row per (month, customer_id) with at least one activity; the reporting
--           table customer_service keeps month $month, later steps read the history.
-- hours and cost_to_serve are NULL unless every month read has them ($has_hours,
-- $has_service_cost), as for units and margin. effort = hours with hours, else the number
-- of activities.

with lake_customer_service as (
    select * from lake_customer_service
),

final as (
    select
        month,
        customer_id,
        activities::integer as activities,
        case when $has_hours then hours end::money as hours,
        case when $has_service_cost then cost_to_serve end::money as cost_to_serve,
        case when $has_hours then hours else activities end::money as effort
    from lake_customer_service
)

select * from final
