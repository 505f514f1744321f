-- outputs_cost_to_serve_vs_lake: rule "customer_service adds up, exactly, to the month's
-- activity partition": per customer, its activities are the partition's rows of that
-- customer and its cost_to_serve their sum of cost (NULL without a cost column).
--
-- Reads:   lake_partition (the month's activities), customer_service
-- Returns: the rows that break the rule: one per customer whose figures differ (or who is
--          in one and not the other), with both sides.

with lake_partition as (
    select * from lake_partition
),

customer_service as (
    select * from customer_service
),

lake_per_customer as (
    select customer_id, count(*) as activities_in_lake, sum(cost) as cost_in_lake
    from lake_partition
    group by customer_id
),

final as (
    select
        customer_id,
        lake_per_customer.activities_in_lake,
        customer_service.activities as activities_in_customer_service,
        lake_per_customer.cost_in_lake::varchar as cost_in_lake,
        customer_service.cost_to_serve::varchar as cost_to_serve_in_customer_service
    from lake_per_customer
    full join customer_service using (customer_id)
    where lake_per_customer.activities_in_lake is distinct from customer_service.activities
       or (customer_service.cost_to_serve is not null
           and customer_service.cost_to_serve is distinct from lake_per_customer.cost_in_lake)
    order by customer_id
)

select * from final
