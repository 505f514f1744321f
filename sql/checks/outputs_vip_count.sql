-- outputs_vip_count: rule "each month and metric has exactly ceil(vip_share x N) VIPs",
-- N = the size of the month's population (the customers with a customer_segment row of
-- that metric; a customer on two rows is outputs_segment_population's business).
--
-- Reads:   customer_segment; $vip_share_numerator / $vip_share_denominator (vip_share as
--          an exact fraction, so the ceiling is integer arithmetic: 0.2 x 5 is 1, not 2)
-- Returns: the rows that break the rule: one per (month, metric) whose VIP count differs.

with customer_segment as (
    select * from customer_segment
),

population as (
    select
        month,
        metric,
        count(distinct customer_id) as n_customers,
        count(distinct customer_id) filter (where segment = 'vip') as n_vip
    from customer_segment
    group by month, metric
),

with_expected as (
    select
        *,
        (
            ($vip_share_numerator::hugeint * n_customers + $vip_share_denominator - 1)
            // $vip_share_denominator
        )::bigint as expected_vip
    from population
),

final as (
    select month, metric, n_customers, n_vip, expected_vip
    from with_expected
    where n_vip <> expected_vip
    order by all
)

select * from final
