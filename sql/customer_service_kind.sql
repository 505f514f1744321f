-- customer_service_kind: what each customer's service effort went into, by kind of
-- activity, over the tier window (spec: "Service effort and cost to serve"; the practice:
-- of Tier 3, name the activities that eat their margin).
--
-- Reads:    lake_customer_service_kind (each month's activities by customer and kind,
--           derived at extract; see customer_service_by_kind.sql)
-- Produces: one row per (month $month, window_months, customer_id, kind) with an activity
--           in the window: activities, effort (hours with hours, else activities) and
--           cost_to_serve (NULL without cost), and the kind's rank within the customer
--           (effort, then cost, then kind: the top kinds first).

with by_kind as (
    select * from lake_customer_service_kind
    where month <= $month::date
      and month > $month::date - to_months($tier_window_months)
),

summed as (
    select
        customer_id,
        kind,
        sum(activities) as activities,
        case when $has_hours then sum(hours) else sum(activities) end as effort,
        case when $has_service_cost then sum(cost_to_serve) end as cost_to_serve
    from by_kind
    group by customer_id, kind
),

final as (
    select
        $month::date as month,
        $tier_window_months::integer as window_months,
        customer_id,
        kind,
        activities::integer as activities,
        effort::money as effort,
        cost_to_serve::money as cost_to_serve,
        row_number() over (
            partition by customer_id
            order by effort desc, cost_to_serve desc nulls last, kind
        )::integer as kind_rank
    from summed
)

select * from final
