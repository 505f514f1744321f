-- service_window_values: the values the service rules rank, per window, in the shape of
-- customer_window_values.sql, so that customer_ranking.sql and customer_rank.sql rank
-- them exactly as the payments' metrics (spec: "Service effort and cost to serve").
--
-- Reads:    customer_service_history, customer_month_history
-- Produces: one row per (month $month, metric, window_months, customer_id):
--   effort         effort summed over every window of $service_windows (the pareto
--                  windows and the tier window)
--   revenue        revenue over the tier window ($tier_window_months): the profile's
--                  revenue class, whatever metrics the run ranks
--   loaded_margin  margin - cost to serve over the tier window ($loaded only): Tier 1 is
--                  class A by it; a customer served without payments has margin 0
-- Values <= 0 are kept here; the ranking leaves them out of the population.

with effort_values as (
    select
        $month::date as month,
        'effort' as metric,
        window_months,
        customer_id,
        sum(effort) as value
    from customer_service_history,
        unnest($service_windows) as requested(window_months)
    where customer_service_history.month <= $month::date
      and customer_service_history.month > $month::date - to_months(window_months)
    group by all
),

tier_payments as (
    select customer_id, sum(revenue) as revenue, sum(margin) as margin
    from customer_month_history
    where month <= $month::date
      and month > $month::date - to_months($tier_window_months)
    group by customer_id
),

tier_service_costs as (
    select customer_id, sum(coalesce(cost_to_serve, 0)) as cost_to_serve
    from customer_service_history
    where month <= $month::date
      and month > $month::date - to_months($tier_window_months)
    group by customer_id
),

revenue_values as (
    select
        $month::date as month,
        'revenue' as metric,
        $tier_window_months as window_months,
        customer_id,
        revenue as value
    from tier_payments
),

loaded_margin_values as (
    select
        $month::date as month,
        'loaded_margin' as metric,
        $tier_window_months as window_months,
        customer_id,
        coalesce(tier_payments.margin, 0) - coalesce(tier_service_costs.cost_to_serve, 0)
            as value
    from tier_payments
    full join tier_service_costs using (customer_id)
    where $loaded
),

final as (
    select month, metric, window_months::integer as window_months, customer_id,
        value::money as value
    from (
        select * from effort_values
        union all
        select * from revenue_values
        union all
        select * from loaded_margin_values
    )
)

select * from final
