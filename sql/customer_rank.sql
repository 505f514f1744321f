-- customer_rank: the ranking of customers by value over a window, with shares, the
-- ABC class and the VIP flag (spec: "Ranking, shares, ABC" and "Monthly VIP segments").
-- This file is the one place where rank, abc_class and is_vip are decided.
--
-- Reads:    customer_metric
-- Produces: one row per (month, metric, window_months, customer_id) of the population
--           (value > 0) for
--             * window 1 in each month whose VIP list is read: the $roster_months
--               months ending with $month and the one before them (the roster of
--               $month and of $previous_month, movements, alerts), and
--             * every window of $rank_windows in month $month.
-- Class boundaries and the VIP count are decided on exact DECIMAL sums; shares are
-- floating point.

with monthly_values as (
    -- window 1: a month's own values, no summing needed
    select month, metric, 1 as window_months, customer_id, value
    from customer_metric
    where month > $month::date - to_months($roster_months + 1)
),

longer_window_values as (
    -- the longer windows of $month: each customer's values summed over the window
    select
        $month::date as month,
        metric_value.metric,
        window_months,
        metric_value.customer_id,
        -- fits: the extract caps a month's money (see MONTH_MONEY_LIMIT in pipeline/lake.py),
        -- and the narrow type sorts much faster than DECIMAL(38)
        sum(metric_value.value)::decimal(18, 2) as value
    from customer_metric as metric_value,
        unnest($rank_windows) as requested(window_months)
    where window_months > 1
      and metric_value.month > $month::date - to_months(window_months)
    group by all
),

window_values as (
    select * from monthly_values
    union all
    select * from longer_window_values
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
