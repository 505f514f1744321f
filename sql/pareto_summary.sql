-- pareto_summary: how concentrated the value is, per metric and window
-- (spec: "Summaries").
--
-- Reads:    customer_rank (month $month, windows $windows)
-- Produces: one row per (month, metric, window_months) with a non-empty population.
--   top20_share  value share of the top ceil(0.2 x N) customers (0.2 is the column's
--                definition, not the configurable vip_share)
--   gini         2 * sum(i * x_i) / (N * sum(x_i)) - (N + 1) / N over values sorted
--                ascending (i = N - rank + 1; ties do not change the sum)
--   hhi          sum of squared shares, as (sum of squared values) / (sum of values)^2
--                on exact HUGEINT cents: the same bytes however DuckDB splits the sum

with ranking as (
    select * from customer_rank
    where month = $month and list_contains($windows, window_months)
),

summarised as (
    select
        month,
        metric,
        window_months,
        any_value(n_customers) as n_customers,
        sum(value) as total_value,
        sum(value) filter (where rank <= ceil(0.2 * n_customers)) as top20_value,
        count(*) filter (where abc_class = 'A') as n_class_a,
        count(*) filter (where abc_class = 'B') as n_class_b,
        count(*) filter (where abc_class = 'C') as n_class_c,
        sum((n_customers - rank + 1) * value) as ascending_weighted_sum,
        sum((value * 100)::hugeint * (value * 100)::hugeint) as sum_of_squared_cents,
        any_value(share) filter (where rank = 1) as top1_share
    from ranking
    group by month, metric, window_months
),

final as (
    select
        month,
        metric,
        window_months,
        n_customers::integer as n_customers,
        total_value::money as total_value,
        top20_value::double / total_value::double as top20_share,
        n_class_a::integer as n_class_a,
        n_class_b::integer as n_class_b,
        n_class_c::integer as n_class_c,
        -- the numerator in exact decimals: equal values give 0, never a rounding below it
        (2 * ascending_weighted_sum - (n_customers + 1) * total_value)::double
            / (n_customers * total_value::double) as gini,
        sum_of_squared_cents::double
            / ((total_value * 100)::hugeint * (total_value * 100)::hugeint)::double as hhi,
        top1_share
    from summarised
)

select * from final
