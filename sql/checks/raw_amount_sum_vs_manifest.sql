-- raw_amount_sum_vs_manifest: rule "the exact sum of amount in the partition equals the
-- manifest's amount_sum" (money is compared as DECIMAL, never as floating point).
--
-- Reads:   lake_partition; $amount_sum (the manifest's sum, as text)
-- Returns: the row that breaks the rule: (amount_sum_in_lake, amount_sum_in_manifest) as
--          text when they differ, no row when they are equal. Both are compared with 10
--          decimals, so a manifest sum with more than 2 decimals cannot round into a match.

with lake_partition as (
    select * from lake_partition
),

summed as (
    select coalesce(sum(amount), 0)::decimal(38, 2) as amount_sum_in_lake
    from lake_partition
),

final as (
    select
        amount_sum_in_lake::varchar as amount_sum_in_lake,
        $amount_sum::varchar as amount_sum_in_manifest
    from summed
    where amount_sum_in_lake::decimal(38, 10) <> $amount_sum::decimal(38, 10)
)

select * from final
