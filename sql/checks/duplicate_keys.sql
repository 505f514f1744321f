-- duplicate_keys: rule "the key is unique": every key value occurs on one row only.
--
-- Reads:   checked_keys (the key columns of the table under check, nothing else)
-- Returns: the rows that break the rule: one row per repeated key value, with n_rows,
--          the number of rows that carry it. No row when every key is unique.
-- A NULL key counts as a value: two rows with the same NULLs repeat a key.

with checked_keys as (
    select * from checked_keys
),

rows_per_key as (
    select *, count(*) as n_rows
    from checked_keys
    group by all
),

final as (
    select *
    from rows_per_key
    where n_rows > 1
    order by all
)

select * from final
