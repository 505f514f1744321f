-- customer_service_by_kind: per business month, customer and kind of activity, the
-- month's activities, hours and cost (what eats a customer's margin: its tickets, visits,
-- returns...).
--
-- Reads:    lake_activities (the good activities of the month being extracted)
-- Produces: one row per (month, customer_id, kind); an activity without a kind counts as
--           'unspecified'. The extract publishes it with the month's activity partition;
--           customer_service_kind.sql sums it over the tier window.
-- hours and cost_to_serve are NULL when the source has no hours / cost column.

with lake_activities as (
    select * from lake_activities
),

per_kind as (
    select
        month,
        customer_id,
        coalesce(kind, 'unspecified') as kind,
        count(*) as activities,
        sum(hours) as hours,
        sum(cost) as cost_to_serve
    from lake_activities
    group by all
),

final as (
    select
        month,
        customer_id,
        kind,
        activities::integer as activities,
        case when $has_hours then hours end::money as hours,
        case when $has_cost then cost_to_serve end::money as cost_to_serve
    from per_kind
)

select * from final
