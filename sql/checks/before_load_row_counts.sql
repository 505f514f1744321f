-- before_load_row_counts: rule "every reporting table about to be loaded has exactly
-- the rows that were computed".
--
-- Reads:   row_counts (table_name, computed_rows, rows_to_load; NULL where a table is
--          missing on one side)
-- Returns: the rows that break the rule: one per table whose counts differ.

with row_counts as (
    select * from row_counts
),

final as (
    select table_name, computed_rows, rows_to_load
    from row_counts
    where computed_rows is distinct from rows_to_load
    order by table_name
)

select * from final
