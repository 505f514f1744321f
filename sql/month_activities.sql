-- month_activities: one month of judged service activities, deduplicated (the payment
-- rules, month_payments.sql, applied to activities).
--
-- Reads:    judged_activities (see staging_activities.sql)
-- Produces: one row per distinct delivered activity of month $month:
--   * good rows (problem IS NULL) with typed values and `copies`, the number of identical
--     deliveries (copies - 1 of them are duplicates to drop), and `rounded_copies`;
--   * bad rows, one per delivered row, with the raw text kept for messages and the
--     quarantine. Two deliveries of one activity_id with different values are bad rows.
-- Rows whose occurred_at is missing or unparseable belong to no month and are always kept
-- (as bad rows): they could belong to this one.

with judged as not materialized (
    select * from judged_activities
),

of_this_month as not materialized (
    select * from judged
    where month = $month or month is null
),

distinct_good_activities as (
    select
        activity_id, customer_id, occurred_at, hours, cost, kind, month,
        count(*) as copies,
        count(*) filter (where rounded) as rounded_copies,
        min(source_file) as source_file
    from of_this_month
    where problem is null
    group by all
),

conflicting_activity_ids as (
    select activity_id
    from distinct_good_activities
    group by activity_id
    having count(*) > 1
),

good_activities as (
    select *
    from distinct_good_activities
    where activity_id not in (select activity_id from conflicting_activity_ids)
),

bad_rows as (
    select
        coalesce(raw_activity_id, activity_id) as raw_activity_id,
        coalesce(raw_customer_id, customer_id) as raw_customer_id,
        coalesce(raw_occurred_at, occurred_at::varchar) as raw_occurred_at,
        coalesce(raw_hours, hours::varchar) as raw_hours,
        coalesce(raw_cost, cost::varchar) as raw_cost,
        coalesce(raw_kind, kind) as raw_kind,
        source_file, month,
        coalesce(problem, 'activity_id repeated with different values') as problem
    from of_this_month
    where problem is not null
       or activity_id in (select activity_id from conflicting_activity_ids)
),

final as (
    select
        activity_id, customer_id, occurred_at, hours, cost, kind, month, copies,
        rounded_copies, null::varchar as problem,
        null::varchar as raw_activity_id, null::varchar as raw_customer_id,
        null::varchar as raw_occurred_at, null::varchar as raw_hours,
        null::varchar as raw_cost, null::varchar as raw_kind,
        source_file
    from good_activities
    union all by name
    select 1 as copies, 0 as rounded_copies, * from bad_rows
)

select * from final
