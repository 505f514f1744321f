-- raw_row_count_vs_manifest: rule "the partition holds as many rows as its manifest
-- says it wrote" (manifest.rows_written).
--
-- Reads:   lake_partition (the Parquet files the manifest names); $rows_written
-- Returns: the row that breaks the rule: (rows_in_lake, rows_in_manifest) when they
--          differ, no row when they are equal.

with lake_partition as (
    select * from lake_partition
),

counted as (
    select count(*) as rows_in_lake
    from lake_partition
),

final as (
    select rows_in_lake, $rows_written::bigint as rows_in_manifest
    from counted
    where rows_in_lake <> $rows_written::bigint
)

select * from final
