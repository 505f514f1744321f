-- backtest: how the call lists of months $first..$last did, judged $follow_up_months (3)
-- months later
-- (README "The call list": tiers backtest; ../shared/tools/call_precision.py computes the
-- same shares from a DuckDB warehouse).
--
-- Reads:    customer_call (the months' call lists), customer_segment (their VIP values of
--           the month and the one before), customer_month (revenue/payments/units/margin
--           of M-3 .. M+3, with 3 = $follow_up_months), all for metric $metric
-- Produces: one row per month with a complete follow-up (M+1..M+3 loaded) and an 'overall'
--           row (month NULL):
--   alerts                the month's alerts (one per customer)
--   leaving_all           share of them that were leaving: value over M+1..M+3 below
--                         $leaving_below (half) of the value over M-3..M-1
--   leaving_top_stake     the same share among the first $top by value at stake (the value
--                         fallen since M-1: the order before customer_call)
--   leaving_top_call      the same share among the first $top by call_rank
--   value_left_*          the value that left with the leaving customers of each group:
--                         value over M-3..M-1 minus value over M+1..M+3

with calls as (
    select month, customer_id, min(call_rank) as call_rank
    from customer_call
    where metric = $metric and month between $first and $last
    group by month, customer_id
),

month_values as (
    select month, customer_id,
        case $metric
            when 'revenue' then revenue
            when 'payments' then payments
            when 'units' then units
            when 'margin' then margin
        end as value
    from customer_month
),

stakes as (
    select
        calls.*,
        coalesce(before_month.value, 0) - coalesce(this_month.value, 0) as value_at_stake
    from calls
    left join customer_segment as before_month
        on before_month.metric = $metric and before_month.customer_id = calls.customer_id
        and before_month.month = cast(calls.month - interval 1 month as date)
    left join customer_segment as this_month
        on this_month.metric = $metric and this_month.customer_id = calls.customer_id
        and this_month.month = calls.month
),

followed as (
    select
        stakes.*,
        row_number() over (
            partition by stakes.month order by value_at_stake desc, customer_id
        ) as stake_rank,
        row_number() over (partition by stakes.month order by call_rank, customer_id)
            as call_order,
        coalesce((
            select sum(v.value) from month_values as v
            where v.customer_id = stakes.customer_id
              and v.month between cast(stakes.month - to_months($follow_up_months) as date)
                              and cast(stakes.month - interval 1 month as date)
        ), 0) as value_before,
        coalesce((
            select sum(v.value) from month_values as v
            where v.customer_id = stakes.customer_id
              and v.month between cast(stakes.month + interval 1 month as date)
                              and cast(stakes.month + to_months($follow_up_months) as date)
        ), 0) as value_after
    from stakes
    where cast(stakes.month + to_months($follow_up_months) as date) <= $last_loaded
),

judged as (
    select
        *,
        value_after < $leaving_below * value_before as leaving,
        case
            when value_after < $leaving_below * value_before then value_before - value_after
            else 0
        end as value_left
    from followed
),

per_month as (
    select
        month,
        count(*) as alerts,
        avg(leaving::int) as leaving_all,
        avg(leaving::int) filter (where stake_rank <= $top) as leaving_top_stake,
        avg(leaving::int) filter (where call_order <= $top) as leaving_top_call,
        sum(value_left) as value_left_all,
        sum(value_left) filter (where stake_rank <= $top) as value_left_top_stake,
        sum(value_left) filter (where call_order <= $top) as value_left_top_call
    from judged
    group by grouping sets ((month), ())
),

final as (
    select * from per_month order by month nulls last
)

select * from final
