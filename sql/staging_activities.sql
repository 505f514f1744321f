-- staging_activities: the service source's rows, parsed into canonical types and judged
-- (spec: "Service effort and cost to serve"; the payment rules of "Input: payments").
--
-- Reads the view `source_rows` (see pipeline/sources/) of the [service] source: every
-- canonical column as text, except the columns a typed source already holds as exact
-- values (occurred_at, hours, cost), which come as `<column>_value` with the text column
-- NULL, and hours or cost held as binary floating point, which come as `<column>_float`
-- and are read as their nearest hundredth, as staging_payments.sql reads a float amount.
-- Produces one row per delivered source row with its typed values, its business `month`
-- and `problem`, the first input rule it breaks (NULL for a good row), keeping the raw
-- text for error messages and the quarantine. month_activities.sql then takes one month.
-- hours and cost are exact decimals >= 0 with at most 2 decimals (hundredths of an hour,
-- cents), like the payments' money.

with source as (
    select * from source_rows
),

number_text as (
    select
        *,
        replace(nullif(trim(hours), ''), $decimal_separator, '.') as hours_text,
        replace(nullif(trim(cost), ''), $decimal_separator, '.') as cost_text
    from source
),

float_parts as (
    -- a float split exactly into its whole units and hundredths, and the spacing of the
    -- floats of its own type at its magnitude (see staging_payments.sql)
    select
        *,
        trunc(hours_float::double) as hours_float_units,
        (hours_float::double - trunc(hours_float::double)) * 100 as hours_float_hundredths,
        nextafter(abs(hours_float), abs(hours_float) + abs(hours_float)) - abs(hours_float)
            as hours_float_ulp,
        trunc(cost_float::double) as cost_float_units,
        (cost_float::double - trunc(cost_float::double)) * 100 as cost_float_hundredths,
        nextafter(abs(cost_float), abs(cost_float) + abs(cost_float)) - abs(cost_float)
            as cost_float_ulp
    from number_text
),

float_hundredths as (
    select
        *,
        case when abs(hours_float) < 1e16 then (
            hours_float_units::bigint * 100 + round(hours_float_hundredths)::bigint
        )::decimal(18, 0) * 0.01 end as hours_float_cent,
        abs(hours_float_hundredths - round(hours_float_hundredths)) / 100 as hours_float_off,
        case when abs(cost_float) < 1e16 then (
            cost_float_units::bigint * 100 + round(cost_float_hundredths)::bigint
        )::decimal(18, 0) * 0.01 end as cost_float_cent,
        abs(cost_float_hundredths - round(cost_float_hundredths)) / 100 as cost_float_off
    from float_parts
),

parsed as (
    select
        nullif(trim(activity_id), '') as activity_id,
        nullif(trim(customer_id), '') as customer_id,
        occurred_at_value is not null or nullif(trim(occurred_at), '') is not null
            as occurred_at_given,
        coalesce(occurred_at_value, try_cast(nullif(trim(occurred_at), '') as timestamptz))
            as occurred_at,
        hours_value is not null or hours_float is not null or hours_text is not null
            as hours_given,
        coalesce(
            hours_value::decimal(38, 10), hours_float_cent, try_cast(hours_text as decimal(38, 10))
        ) as hours_wide,
        coalesce(
            try_cast(hours_value as money), hours_float_cent,
            try_cast(hours_text as money)
        ) as hours,
        hours_value is not null or coalesce(isfinite(hours_float), false)
            or coalesce(isfinite(try_cast(hours_text as double)), false) as hours_is_number,
        coalesce(
            regexp_matches(hours_text, '\.[0-9]{2}[0-9]*[1-9]'),
            hours_float_off > greatest(1e-6, 4 * hours_float_ulp)
        ) as hours_has_fraction,
        hours_float_off > hours_float_ulp / 2 as hours_rounded,
        cost_value is not null or cost_float is not null or cost_text is not null as cost_given,
        coalesce(
            cost_value::decimal(38, 10), cost_float_cent, try_cast(cost_text as decimal(38, 10))
        ) as cost_wide,
        coalesce(
            try_cast(cost_value as money), cost_float_cent,
            try_cast(cost_text as money)
        ) as cost,
        cost_value is not null or coalesce(isfinite(cost_float), false)
            or coalesce(isfinite(try_cast(cost_text as double)), false) as cost_is_number,
        coalesce(
            regexp_matches(cost_text, '\.[0-9]{2}[0-9]*[1-9]'),
            cost_float_off > greatest(1e-6, 4 * cost_float_ulp)
        ) as cost_has_fraction,
        cost_float_off > cost_float_ulp / 2 as cost_rounded,
        nullif(trim(kind), '') as kind,
        source.activity_id as raw_activity_id,
        source.customer_id as raw_customer_id,
        source.occurred_at as raw_occurred_at,
        source.hours as raw_hours,
        source.hours_value,
        source.hours_float,
        source.cost as raw_cost,
        source.cost_value,
        source.cost_float,
        source.kind as raw_kind,
        source.source_file
    from float_hundredths as source
),

judged as (
    select
        *,
        cast(date_trunc('month', occurred_at) as date) as month,
        case
            when activity_id is null then 'missing activity_id'
            when customer_id is null then 'missing customer_id'
            when not occurred_at_given then 'missing occurred_at'
            when occurred_at is null then 'unparseable occurred_at'
            when $has_hours and not hours_given then 'missing hours'
            when $has_hours and hours_wide is null and not hours_is_number
                then 'unparseable hours'
            when $has_hours and (hours_wide is null
                or abs(hours_wide) >= 10000000000000000::decimal(38, 10)) then 'hours out of range'
            when $has_hours and (hours_has_fraction or hours is null or hours_wide <> hours)
                then 'hours with more than 2 decimals'
            when $has_hours and hours < 0 then 'negative hours'
            when $has_cost and not cost_given then 'missing cost'
            when $has_cost and cost_wide is null and not cost_is_number then 'unparseable cost'
            when $has_cost and (cost_wide is null
                or abs(cost_wide) >= 10000000000000000::decimal(38, 10)) then 'cost out of range'
            when $has_cost and (cost_has_fraction or cost is null or cost_wide <> cost)
                then 'cost with more than 2 decimals'
            when $has_cost and cost < 0 then 'negative cost'
        end as problem,
        ($has_hours and coalesce(hours_rounded, false))
            or ($has_cost and coalesce(cost_rounded, false)) as rounded
    from parsed
),

final as (
    -- the raw text is kept for bad rows only (messages and quarantine)
    select
        activity_id, customer_id, occurred_at, hours, cost, kind, month, problem,
        problem is null and rounded as rounded,
        source_file,
        case when problem is not null then raw_activity_id end as raw_activity_id,
        case when problem is not null then raw_customer_id end as raw_customer_id,
        case when problem is not null then coalesce(raw_occurred_at, occurred_at::varchar) end
            as raw_occurred_at,
        case when problem is not null
            then coalesce(raw_hours, hours_value::varchar, hours_float::varchar) end
            as raw_hours,
        case when problem is not null
            then coalesce(raw_cost, cost_value::varchar, cost_float::varchar) end
            as raw_cost,
        case when problem is not null then raw_kind end as raw_kind
    from judged
)

select * from final
