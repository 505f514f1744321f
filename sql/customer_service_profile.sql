-- customer_service_profile: who brings the revenue and who eats the service effort, over
-- the tier window (spec: "Service effort and cost to serve").
--
-- Reads:    customer_month_history, customer_service_history, service_rank (the revenue
--           and effort rankings of the tier window, customer_rank.sql on
--           service_window_values.sql)
-- Produces: one row per (month, window_months, customer_id) for every customer with
--           revenue > 0 or effort > 0 over the window:
--   revenue_share  revenue / the total of the customers with revenue > 0 (0 when <= 0)
--   effort_share   effort / total effort (0 without effort)
--   revenue_class, effort_class  the ABC class by revenue, resp. effort (NULL outside
--                  that population)
--   profile        troublesome: effort_class A and revenue_share < effort_share / 2;
--                  best: revenue_class A and effort_share <= revenue_share; good: the rest.
-- The profile is decided on exact sums: revenue_share < effort_share / 2 is
-- 2 x revenue x total_effort < effort x total_revenue, and so on.

with window_revenue as (
    select customer_id, sum(revenue) as revenue
    from customer_month_history
    where month <= $month::date
      and month > $month::date - to_months($tier_window_months)
    group by customer_id
),

window_effort as (
    select customer_id, sum(effort) as effort
    from customer_service_history
    where month <= $month::date
      and month > $month::date - to_months($tier_window_months)
    group by customer_id
),

by_revenue as (
    select customer_id, share, abc_class, total_value
    from service_rank
    where metric = 'revenue' and window_months = $tier_window_months
),

by_effort as (
    select customer_id, share, abc_class, total_value
    from service_rank
    where metric = 'effort' and window_months = $tier_window_months
),

totals as (
    select
        coalesce((select any_value(total_value) from by_revenue), 0) as total_revenue,
        coalesce((select any_value(total_value) from by_effort), 0) as total_effort
),

population as (
    select
        customer_id,
        coalesce(window_revenue.revenue, 0) as revenue,
        coalesce(window_effort.effort, 0) as effort
    from window_revenue
    full join window_effort using (customer_id)
    where coalesce(window_revenue.revenue, 0) > 0 or coalesce(window_effort.effort, 0) > 0
),

profiled as (
    select
        population.*,
        coalesce(by_revenue.share, 0) as revenue_share,
        coalesce(by_effort.share, 0) as effort_share,
        by_revenue.abc_class as revenue_class,
        by_effort.abc_class as effort_class,
        case
            when by_effort.abc_class = 'A'
                and 2 * greatest(population.revenue, 0) * totals.total_effort
                    < population.effort * totals.total_revenue
                then 'troublesome'
            when by_revenue.abc_class = 'A'
                and population.effort * totals.total_revenue
                    <= population.revenue * totals.total_effort
                then 'best'
            else 'good'
        end as profile
    from population
    cross join totals
    left join by_revenue using (customer_id)
    left join by_effort using (customer_id)
),

final as (
    select
        $month::date as month,
        $tier_window_months::integer as window_months,
        customer_id,
        revenue::money as revenue,
        effort::money as effort,
        revenue_share,
        effort_share,
        revenue_class,
        effort_class,
        profile
    from profiled
)

select * from final
