-- customer_month_customers_vs_lake: rule "customer_month has a row for every customer
-- with a payment in the month's lake partition, and for no one else".
--
-- Reads:   lake_partition, customer_month
-- Returns: the rows that break the rule: one per customer found on one side only, with
--          where it was found. No row when both hold the same customers.

with lake_partition as (
    select * from lake_partition
),

customer_month as (
    select * from customer_month
),

paying_customers as (
    select distinct customer_id from lake_partition
),

reported_customers as (
    select distinct customer_id from customer_month
),

final as (
    select
        coalesce(paying.customer_id, reported.customer_id) as customer_id,
        paying.customer_id is not null as paid_in_lake,
        reported.customer_id is not null as in_customer_month
    from paying_customers as paying
    full outer join reported_customers as reported
        on paying.customer_id = reported.customer_id
    where paying.customer_id is null or reported.customer_id is null
    order by all
)

select * from final
