-- raw_volume_vs_recent_months: rule "the month's volume is in line with the months before
-- it": its rows, customers and amount lie within [median x (1 - $max_drop),
-- median x $max_rise] of the same figure over the $volume_months extracted months before
-- it. A header-only file (zero rows where there were rows) or half a delivery breaks it.
-- Months whose median row count is below $min_rows are not compared: small months swing.
--
-- Reads:   recent_months (month, rows, customers, amount: one row per month compared,
--          from the manifests); $rows, $customers, $amount (this month); $accepted (the
--          month is listed in [checks.volume] accept: its change is known)
-- Returns: one row per figure that breaks the rule: (measure, this_month, recent_median,
--          lowest_allowed, highest_allowed); none when there is no month to compare with.

with recent_months as (
    select * from recent_months
),

medians as (
    select 'rows' as measure, $rows::decimal(38, 2) as this_month,
        median(rows)::decimal(38, 2) as recent_median
    from recent_months
    union all
    select 'customers', $customers::decimal(38, 2), median(customers)::decimal(38, 2)
    from recent_months
    union all
    select 'amount', $amount::decimal(38, 2), median(amount)::decimal(38, 2)
    from recent_months
),

bounds as (
    select
        *,
        recent_median * (1 - $max_drop) as lowest_allowed,
        recent_median * $max_rise as highest_allowed
    from medians
    where recent_median > 0  -- nothing to compare with (no months, or no money before)
      and (select median(rows) from recent_months) >= $min_rows
),

final as (
    select measure, this_month, recent_median, lowest_allowed, highest_allowed
    from bounds
    where not $accepted
      and (this_month < lowest_allowed or this_month > highest_allowed)
)

select * from final
