-- outputs_cum_share_ends_at_one: rule "within one ranking (month, metric, window_months)
-- the last customer's cum_share is 1", within $share_tolerance (shares are floating point).
--
-- Reads:   customer_abc; $share_tolerance
-- Returns: the rows that break the rule: one per ranking whose last cum_share is off
--          (or NULL), with the last rank and its cum_share.

with customer_abc as (
    select * from customer_abc
),

last_of_ranking as (
    select
        month,
        metric,
        window_months,
        max(rank) as last_rank,
        arg_max(cum_share, rank) as last_cum_share
    from customer_abc
    group by month, metric, window_months
),

final as (
    select *
    from last_of_ranking
    where last_cum_share is null or abs(last_cum_share - 1) > $share_tolerance
    order by all
)

select * from final
