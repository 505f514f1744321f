-- customer_tier_loaded: customer_tier with a [service] source (spec: "Service effort and
-- cost to serve"): decided on the loaded margin when both the payments and the activities
-- have cost ($loaded), else the tiers of customer_tier.sql with the three service columns
-- NULL.
--
-- Reads:    customer_tier (customer_tier.sql: revenue, margin, margin_pct per customer
--           with a payment in the window), customer_service_history, service_rank (metric
--           loaded_margin, window $tier_window_months)
-- Produces: one row per (month, window_months, customer_id) for every customer with a
--           payment in the window and, when $loaded, every customer served in it (revenue
--           0 and margin 0 when it paid nothing). Over the window:
--   cost_to_serve      sum of the activities' cost (0 where none)
--   loaded_margin      margin - cost_to_serve
--   loaded_margin_pct  loaded_margin / revenue (NULL where revenue <= 0)
--   Tier 4  loaded_margin < 0
--   Tier 3  not 4, and revenue <= 0 or loaded_margin < $breakeven_pct x revenue (exactly)
--   Tier 1  not 3 or 4, and class A when ranked by loaded_margin over the window
--   Tier 2  everyone else
-- margin and margin_pct keep their meaning.

with margin_tiers as (
    select * from customer_tier
),

served as (
    select customer_id, sum(coalesce(cost_to_serve, 0)) as cost_to_serve
    from customer_service_history
    where month <= $month::date
      and month > $month::date - to_months($tier_window_months)
    group by customer_id
),

loaded_class as (
    select customer_id, abc_class
    from service_rank
    where metric = 'loaded_margin' and window_months = $tier_window_months
),

loaded as (
    select
        customer_id,
        coalesce(margin_tiers.revenue, 0) as revenue,
        coalesce(margin_tiers.margin, 0) as margin,
        margin_tiers.margin_pct,
        coalesce(served.cost_to_serve, 0) as cost_to_serve,
        coalesce(margin_tiers.margin, 0) - coalesce(served.cost_to_serve, 0) as loaded_margin
    from margin_tiers
    full join served using (customer_id)
    where $loaded
),

loaded_tiers as (
    select
        loaded.*,
        case when revenue > 0 then loaded_margin::double / revenue::double end
            as loaded_margin_pct,
        case
            when loaded_margin < 0 then 4
            when revenue <= 0 or loaded_margin < $breakeven_pct * revenue then 3
            when loaded_class.abc_class = 'A' then 1
            else 2
        end as tier
    from loaded
    left join loaded_class using (customer_id)
),

unloaded_tiers as (
    select
        customer_id, revenue, margin, margin_pct, tier,
        null as cost_to_serve, null as loaded_margin, null as loaded_margin_pct
    from margin_tiers
    where not $loaded
),

final as (
    select
        $month::date as month,
        $tier_window_months::integer as window_months,
        customer_id,
        revenue::money as revenue,
        margin::money as margin,
        margin_pct::double as margin_pct,
        tier::integer as tier,
        cost_to_serve::money as cost_to_serve,
        loaded_margin::money as loaded_margin,
        loaded_margin_pct::double as loaded_margin_pct
    from (
        select customer_id, revenue, margin, margin_pct, tier, cost_to_serve, loaded_margin,
            loaded_margin_pct
        from loaded_tiers
        union all
        select customer_id, revenue, margin, margin_pct, tier, cost_to_serve, loaded_margin,
            loaded_margin_pct
        from unloaded_tiers
    )
)

select * from final
