-- customer_month: per business month and customer with at least one payment, the
-- month's money and counts (spec: "Metrics and windows").
--
-- Reads:    lake_payments (the good payments of the months being aggregated)
-- Produces: one row per (month, customer_id). The extract runs it on each month it
--           writes and publishes the result with the month's lake partition; the
--           computation of a month reads those (customer_month_history.sql).
-- units and margin are NULL when the source has no units / cost column.

with lake_payments as (
    select * from lake_payments
),

money_per_customer_month as (
    select
        month,
        customer_id,
        sum(amount) as revenue,
        coalesce(sum(amount) filter (where amount > 0), 0) as gross_revenue,
        coalesce(-sum(amount) filter (where amount < 0), 0) as refunds,
        count(*) filter (where amount > 0) as payments,
        sum(units) as units,
        sum(amount - cost) as margin
    from lake_payments
    group by month, customer_id
),

final as (
    select
        month,
        customer_id,
        revenue::money as revenue,
        gross_revenue::money as gross_revenue,
        refunds::money as refunds,
        payments::integer as payments,
        case when $has_units then units end::bigint as units,
        case when $has_margin then margin end::money as margin
    from money_per_customer_month
)

select * from final
