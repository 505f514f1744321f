-- customer_month_gross_minus_refunds: rule "gross_revenue - refunds = revenue" on every
-- row of customer_month, exactly (DECIMAL).
--
-- Reads:   customer_month
-- Returns: the rows that break the rule, with the three amounts as text (exact).

with customer_month as (
    select * from customer_month
),

final as (
    select
        month,
        customer_id,
        gross_revenue::varchar as gross_revenue,
        refunds::varchar as refunds,
        revenue::varchar as revenue
    from customer_month
    where revenue is distinct from gross_revenue - refunds
    order by all
)

select * from final
