-- customer_rank: shares, the ABC class and the VIP flag of every ranked customer
-- (spec: "Ranking, shares, ABC" and "Monthly VIP segments").
-- This file is the one place where abc_class and is_vip are decided.
--
-- Reads:    monthly_ranking (window 1 of the months whose VIP lists are read, ranked
--           at extract and read from the lake), computed_ranking (the windows ranked
--           for $month); both from customer_ranking.sql
-- Produces: one row per (month, metric, window_months, customer_id) of the population
--           (value > 0), for the metrics $metrics, of
--             * every window of $rank_windows in month $month, and
--             * the VIPs of window 1 in each earlier month whose VIP list is read: the
--               roster_months months ending with $month and the one before them (the
--               roster of $month and of $previous_month, movements, alerts; MonthPlan in
--               pipeline/compute/month.py). Nothing reads their other customers.
-- Class boundaries and the VIP count are decided on exact DECIMAL sums; shares are
-- floating point.

with ranking as (
    select * from monthly_ranking
    union all
    select * from computed_ranking
),

ranked as (
    select
        month,
        metric,
        window_months,
        customer_id,
        value,
        rank,
        n_customers,
        total_value,
        cum_value_before,
        value::double / total_value::double as share,
        (cum_value_before + value)::double / total_value::double as cum_share,
        case
            when cum_value_before < $a_share * total_value then 'A'
            when cum_value_before < $b_share * total_value then 'B'
            else 'C'
        end as abc_class,
        rank <= ceil($vip_share * n_customers) as is_vip
    from ranking
    where list_contains($metrics, metric)
),

final as (
    select * from ranked
    where month = $month or is_vip
)

select * from final
