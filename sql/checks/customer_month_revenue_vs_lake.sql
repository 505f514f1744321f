-- customer_month_revenue_vs_lake: rule "the month's revenue in customer_month adds up,
-- exactly, to the sum of amount in the month's lake partition".
--
-- Reads:   lake_partition, customer_month
-- Returns: the row that breaks the rule: (revenue_in_customer_month, amount_sum_in_lake)
--          when the exact DECIMAL sums differ, no row when they are equal.

with lake_partition as (
    select * from lake_partition
),

customer_month as (
    select * from customer_month
),

lake_total as (
    select coalesce(sum(amount), 0)::decimal(38, 2) as amount_sum_in_lake
    from lake_partition
),

reported_total as (
    select coalesce(sum(revenue), 0)::decimal(38, 2) as revenue_in_customer_month
    from customer_month
),

final as (
    select
        reported_total.revenue_in_customer_month::varchar as revenue_in_customer_month,
        lake_total.amount_sum_in_lake::varchar as amount_sum_in_lake
    from reported_total
    cross join lake_total
    where reported_total.revenue_in_customer_month <> lake_total.amount_sum_in_lake
)

select * from final
