-- customer_tier: profitability tiers over the last $tier_window_months months
-- (spec: "Profitability tiers"); only where margin is available.
--
-- Reads:    customer_month_history, customer_rank (metric margin, window $tier_window_months)
-- Produces: one row per (month, window_months, customer_id) for every customer with a
--           payment in the window:
--   Tier 4  margin < 0
--   Tier 3  not 4, and revenue <= 0 or margin % < $breakeven_pct (decided exactly:
--           margin < breakeven_pct x revenue)
--   Tier 1  not 3 or 4, and class A when ranked by margin over the window
--   Tier 2  everyone else

with customer_months_in_window as (
    select *
    from customer_month_history
    where month <= $month
      and month > $month::date - to_months($tier_window_months)
      and margin is not null
),

window_totals as (
    select
        customer_id,
        sum(revenue) as revenue,
        sum(margin) as margin
    from customer_months_in_window
    group by customer_id
),

margin_class as (
    select customer_id, abc_class
    from customer_rank
    where month = $month and metric = 'margin' and window_months = $tier_window_months
),

tiered as (
    select
        window_totals.*,
        case when revenue > 0 then margin::double / revenue::double end as margin_pct,
        case
            when margin < 0 then 4
            when revenue <= 0 or margin < $breakeven_pct * revenue then 3
            when margin_class.abc_class = 'A' then 1
            else 2
        end as tier
    from window_totals
    left join margin_class using (customer_id)
),

final as (
    select
        $month::date as month,
        $tier_window_months::integer as window_months,
        customer_id,
        revenue::money as revenue,
        margin::money as margin,
        margin_pct,
        tier::integer as tier
    from tiered
)

select * from final
