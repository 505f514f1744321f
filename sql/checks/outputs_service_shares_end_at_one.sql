-- outputs_service_shares_end_at_one: rule "the effort shares and the revenue shares of
-- customer_service_profile each add up to 1 (within $share_tolerance), or to 0 when
-- nobody in the window has effort (revenue > 0)".
--
-- Reads:   customer_service_profile; $share_tolerance
-- Returns: the rows that break the rule: one per (month, window_months, share) whose sum
--          is off.

with customer_service_profile as (
    select * from customer_service_profile
),

summed as (
    select
        month,
        window_months,
        sum(effort_share) as effort_shares,
        bool_or(effort > 0) as has_effort,
        sum(revenue_share) as revenue_shares,
        bool_or(revenue > 0) as has_revenue
    from customer_service_profile
    group by month, window_months
),

final as (
    select month, window_months, 'effort_share' as share, effort_shares as total
    from summed
    where abs(effort_shares - case when has_effort then 1 else 0 end) > $share_tolerance
    union all
    select month, window_months, 'revenue_share', revenue_shares
    from summed
    where abs(revenue_shares - case when has_revenue then 1 else 0 end) > $share_tolerance
    order by all
)

select * from final
