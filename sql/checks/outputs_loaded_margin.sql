-- outputs_loaded_margin: rule "loaded_margin = margin - cost_to_serve on every row of
-- customer_tier, exactly, and cost_to_serve, loaded_margin and loaded_margin_pct are
-- given together (all NULL without service costs)".
--
-- Reads:   customer_tier
-- Returns: the rows that break the rule.

with customer_tier as (
    select * from customer_tier
),

final as (
    select
        customer_id,
        margin::varchar as margin,
        cost_to_serve::varchar as cost_to_serve,
        loaded_margin::varchar as loaded_margin
    from customer_tier
    where (cost_to_serve is null) <> (loaded_margin is null)
       or (revenue > 0 and (loaded_margin is null) <> (loaded_margin_pct is null))
       or loaded_margin <> margin - cost_to_serve
    order by customer_id
)

select * from final
