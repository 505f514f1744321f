-- customer_rank: the ranking of customers by value over a window, with shares, the
-- ABC class and the VIP flag (spec: "Ranking, shares, ABC" and "Monthly VIP segments").
-- This file is the one place where rank, abc_class and is_vip are decided.
--
-- Reads:    customer_metric, history_months
-- Produces: one row per (month, metric, window_months, customer_id) of the population
--           (value > 0) for
--             * window 1 in every month of the history read (monthly VIP lists), and
--             * every window of $rank_windows in month $month.
-- Class boundaries and the VIP count are decided on exact DECIMAL sums; shares are
-- floating point.

with ranking_requests as (
    select month, 1 as window_months from history_months
    union
    select $month::date as month, unnest($rank_windows) as window_months
),

window_values as (
    select
        request.month,
        metric_value.metric,
        request.window_months,
        metric_value.customer_id,
        sum(metric_value.value) as value
    from ranking_requests as request
    join customer_metric as metric_value
        on metric_value.month <= request.month
       and metric_value.month > request.month - to_months(request.window_months)
    group by all
),

population as (
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
        window_months,
        customer_id,
        value::decimal(18, 2) as value,
        rank::integer as rank,
        n_customers::integer as n_customers,
        total_value::decimal(18, 2) as total_value,
        cum_value_before::decimal(18, 2) as cum_value_before,
        value::double / total_value::double as share,
        (cum_value_before + value)::double / total_value::double as cum_share,
        case
            when cum_value_before < $a_share * total_value then 'A'
            when cum_value_before < $b_share * total_value then 'B'
            else 'C'
        end as abc_class,
        rank <= ceil($vip_share * n_customers) as is_vip
    from ranked
)

select * from final
