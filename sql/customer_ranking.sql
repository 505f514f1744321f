-- customer_ranking: customers ranked by value within each (month, metric, window)
-- (spec: "Ranking, shares, ABC"). The one place the order of customers is decided.
--
-- Reads:    window_values (month, metric, window_months, customer_id, value)
-- Produces: one row per customer of the population (value > 0) of each
--           (month, metric, window_months): rank (value descending, customer_id
--           ascending on ties), the population's size and total, and the value of the
--           customers ranked before. No configuration is read: the extract ranks each
--           month's window 1 once and publishes it with the month's lake partition.

with population as (
    select * from window_values where value > 0
),

ranked as (
    select
        *,
        row_number() over ranking as rank,
        count(*) over whole_population as n_customers,
        sum(value) over whole_population as total_value,
        coalesce(sum(value) over (ranking rows between unbounded preceding and 1 preceding), 0)
            as cum_value_before
    from population
    window
        whole_population as (partition by month, metric, window_months),
        ranking as (partition by month, metric, window_months order by value desc, customer_id)
),

final as (
    select
        month,
        metric,
        window_months::integer as window_months,
        customer_id,
        value::money as value,
        rank::integer as rank,
        n_customers::integer as n_customers,
        total_value::money as total_value,
        cum_value_before::money as cum_value_before
    from ranked
)

select * from final
