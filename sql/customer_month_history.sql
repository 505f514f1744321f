-- customer_month_history: customer_month of every month the computation of $month reads.
--
-- Reads:    lake_customer_month (each month's customer_month, derived at extract and
--           published with its lake partition; see customer_month.sql)
-- Produces: one row per (month, customer_id) of the months read; the reporting table
--           customer_month keeps month $month, later steps read the history.
-- units and margin are NULL unless every month read has them ($has_units, $has_margin):
-- a window must not sum a metric that some of its months cannot give.

with lake_customer_month as (
    select * from lake_customer_month
),

final as (
    select
        month,
        customer_id,
        revenue,
        gross_revenue,
        refunds,
        payments,
        case when $has_units then units end::bigint as units,
        case when $has_margin then margin end::money as margin
    from lake_customer_month
)

select * from final
