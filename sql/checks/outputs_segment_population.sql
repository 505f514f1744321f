-- outputs_segment_population: rule "the segments partition the population": for each
-- ranked metric, every customer whose value in the month is > 0 (the population, read
-- from customer_month) has exactly one customer_segment row, and no one else has one.
--
-- Reads:   customer_segment, customer_month. The metrics checked are those that
--          customer_segment or customer_abc rank.
-- Returns: the rows that break the rule: one per (month, metric, customer) that is in
--          the population without exactly one segment, or has a segment outside it.
-- The segments themselves are looked up only for the customers that break the rule.

with customer_segment as not materialized (
    select * from customer_segment
),

customer_abc as not materialized (
    select * from customer_abc
),

customer_month as not materialized (
    select * from customer_month
),

ranked_metrics as (
    select metric from customer_segment
    union
    select metric from customer_abc
),

population as (
    -- each metric compared in its own type: no cast to a common one
    select month, 'revenue' as metric, customer_id from customer_month where revenue > 0
    union all
    select month, 'payments', customer_id from customer_month where payments > 0
    union all
    select month, 'units', customer_id from customer_month where units > 0
    union all
    select month, 'margin', customer_id from customer_month where margin > 0
),

population_of_ranked_metrics as (
    select * from population
    where metric in (select metric from ranked_metrics)
),

segments_per_customer as (
    select month, metric, customer_id, count(*) as n_segments
    from customer_segment
    group by month, metric, customer_id
),

mismatches as (
    select
        coalesce(population.month, segmented.month) as month,
        coalesce(population.metric, segmented.metric) as metric,
        coalesce(population.customer_id, segmented.customer_id) as customer_id,
        population.customer_id is not null as in_population,
        coalesce(segmented.n_segments, 0) as n_segments
    from population_of_ranked_metrics as population
    full outer join segments_per_customer as segmented
        on population.month = segmented.month
        and population.metric = segmented.metric
        and population.customer_id = segmented.customer_id
    where population.customer_id is null or coalesce(segmented.n_segments, 0) <> 1
),

final as (
    -- the segments of the few customers that break the rule, for the message
    select
        mismatches.month, mismatches.metric, mismatches.customer_id,
        mismatches.in_population, mismatches.n_segments,
        string_agg(customer_segment.segment, ',' order by customer_segment.segment) as segments
    from mismatches
    left join customer_segment
        on customer_segment.month = mismatches.month
        and customer_segment.metric = mismatches.metric
        and customer_segment.customer_id = mismatches.customer_id
    group by all
    order by all
)

select * from final
