-- month_payments: one month of judged source rows, deduplicated.
--
-- Reads:    judged_payments (see staging_payments.sql)
-- Produces: one row per distinct delivered payment of month $month:
--   * good rows (problem IS NULL) with typed values and `copies`, the number of
--     identical deliveries (copies - 1 of them are duplicates to drop), and
--     `rounded_copies`, how many of those held a float amount or cost read as its
--     nearest cent;
--   * bad rows (problem names the first rule broken), one per delivered row, with
--     the raw text kept for error messages and the quarantine. Two deliveries of one
--     payment_id with different values are bad rows too.
-- Rows whose paid_at is missing or unparseable belong to no month and are always kept
-- (as bad rows): they could belong to this one.

-- "not materialized": both CTEs are read twice, and filtering the table again is much
-- cheaper than DuckDB's default of copying a month of rows into a temporary result
with judged as not materialized (
    select * from judged_payments
),

of_this_month as not materialized (
    select * from judged
    where month = $month or month is null
),

distinct_good_payments as (
    select
        payment_id, customer_id, paid_at, amount, currency, units, cost, month,
        count(*) as copies,
        count(*) filter (where rounded) as rounded_copies,
        min(source_file) as source_file
    from of_this_month
    where problem is null
    group by all
),

conflicting_payment_ids as (
    select payment_id
    from distinct_good_payments
    group by payment_id
    having count(*) > 1
),

good_payments as (
    select *
    from distinct_good_payments
    where payment_id not in (select payment_id from conflicting_payment_ids)
),

bad_rows as (
    -- rows that broke a rule kept their raw text; conflicting good rows show their values
    select
        coalesce(raw_payment_id, payment_id) as raw_payment_id,
        coalesce(raw_customer_id, customer_id) as raw_customer_id,
        coalesce(raw_paid_at, paid_at::varchar) as raw_paid_at,
        coalesce(raw_amount, amount::varchar) as raw_amount,
        coalesce(raw_currency, currency) as raw_currency,
        coalesce(raw_units, units::varchar) as raw_units,
        coalesce(raw_cost, cost::varchar) as raw_cost,
        source_file, month,
        coalesce(problem, 'payment_id repeated with different values') as problem
    from of_this_month
    where problem is not null
       or payment_id in (select payment_id from conflicting_payment_ids)
),

final as (
    select
        payment_id, customer_id, paid_at, amount, currency, units, cost, month, copies,
        rounded_copies, null::varchar as problem,
        null::varchar as raw_payment_id, null::varchar as raw_customer_id,
        null::varchar as raw_paid_at, null::varchar as raw_amount,
        null::varchar as raw_currency, null::varchar as raw_units, null::varchar as raw_cost,
        source_file
    from good_payments
    union all by name
    select 1 as copies, 0 as rounded_copies, * from bad_rows
)

select * from final
