-- outputs_segment_population: rule "the segments partition the population": for each
-- ranked metric, every customer whose value in the month is > 0 (the population, read
-- from customer_month) has exactly one customer_segment row, and no one else has one.
--
-- Reads:   customer_segment, customer_month. The metrics checked are those that
--          customer_segment or customer_abc rank.
-- Returns: the rows that break the rule: one per (month, metric, customer) that is in
--          the population without exactly one segment, or has a segment outside it.

with customer_segment as (
    select * from customer_segment
),

customer_abc as (
    select * from customer_abc
),

customer_month as (
    select * from customer_month
),

ranked_metrics as (
    select metric from customer_segment
    union
    select metric from customer_abc
),

month_values as (
    unpivot (
        select
            month,
            customer_id,
            revenue::decimal(38, 2) as revenue,
            payments::decimal(38, 2) as payments,
            units::decimal(38, 2) as units,
            margin::decimal(38, 2) as margin
        from customer_month
    )
    on revenue, payments, units, margin
    into name metric value metric_value
),

population as (
    select month, metric, customer_id
    from month_values
    where metric_value > 0
      and metric in (select metric from ranked_metrics)
),

segments_per_customer as (
    select
        month,
        metric,
        customer_id,
        count(*) as n_segments,
        string_agg(segment, ',' order by segment) as segments
    from customer_segment
    group by month, metric, customer_id
),

final as (
    select
        coalesce(population.month, segmented.month) as month,
        coalesce(population.metric, segmented.metric) as metric,
        coalesce(population.customer_id, segmented.customer_id) as customer_id,
        population.customer_id is not null as in_population,
        coalesce(segmented.n_segments, 0) as n_segments,
        segmented.segments
    from population
    full outer join segments_per_customer as segmented
        on population.month = segmented.month
        and population.metric = segmented.metric
        and population.customer_id = segmented.customer_id
    where population.customer_id is null or coalesce(segmented.n_segments, 0) <> 1
    order by all
)

select * from final
