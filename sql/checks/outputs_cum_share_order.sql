-- outputs_cum_share_order: rule "within one ranking (month, metric, window_months),
-- cum_share never decreases as rank goes up".
--
-- Reads:   customer_abc
-- Returns: the rows that break the rule: each row whose cum_share is below the
--          cum_share of the row ranked just before it.

with customer_abc as (
    select * from customer_abc
),

with_previous as (
    select
        month,
        metric,
        window_months,
        rank,
        customer_id,
        cum_share,
        lag(cum_share) over (
            partition by month, metric, window_months order by rank, customer_id
        ) as previous_cum_share
    from customer_abc
),

final as (
    select *
    from with_previous
    where cum_share < previous_cum_share
    order by all
)

select * from final
