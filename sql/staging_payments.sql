-- staging_payments: the source's rows, parsed into canonical types and judged.
--
-- Reads the view `source_rows` (see pipeline/sources/): every canonical column as
-- text, except the columns a typed source already holds as exact values (paid_at,
-- amount, cost, units), which come as `<column>_value` with the text column NULL, and an
-- amount or cost held as binary floating point, which comes as `<column>_float` in its own
-- type (REAL or DOUBLE) and is read as its nearest cent (`float_parts`, `float_cents`,
-- the rule in `parsed`).
-- Produces one row per delivered source row with its typed values, its business
-- `month` and `problem`, the first input rule it breaks (NULL for a good row), keeping
-- the raw text for error messages and the quarantine. month_payments.sql then takes
-- one month of it.
-- Timestamps without an offset are read in the session time zone, which the pipeline
-- sets to the business time zone.

with source as (
    select * from source_rows
),

money_text as (
    -- amounts and costs as text with a '.' decimal point, ready to parse
    select
        *,
        replace(nullif(trim(amount), ''), $decimal_separator, '.') as amount_text,
        replace(nullif(trim(cost), ''), $decimal_separator, '.') as cost_text
    from source
),

float_parts as (
    -- a float amount or cost split exactly into its whole units and its hundredths (their
    -- rounding is its nearest cent, whatever its magnitude), and `_ulp`, the spacing of
    -- the floats of its own type (REAL or DOUBLE) at its magnitude
    select
        *,
        trunc(amount_float::double) as amount_float_units,
        (amount_float::double - trunc(amount_float::double)) * 100 as amount_float_hundredths,
        nextafter(abs(amount_float), abs(amount_float) + abs(amount_float)) - abs(amount_float)
            as amount_float_ulp,
        trunc(cost_float::double) as cost_float_units,
        (cost_float::double - trunc(cost_float::double)) * 100 as cost_float_hundredths,
        nextafter(abs(cost_float), abs(cost_float) + abs(cost_float)) - abs(cost_float)
            as cost_float_ulp
    from money_text
),

float_cents as (
    -- the cent nearest to a float (NULL beyond DECIMAL(18, 2)), and how far the float lies
    -- from it
    select
        *,
        case when abs(amount_float) < 1e16 then (
            amount_float_units::bigint * 100 + round(amount_float_hundredths)::bigint
        )::decimal(18, 0) * 0.01 end as amount_float_cent,
        abs(amount_float_hundredths - round(amount_float_hundredths)) / 100 as amount_float_off,
        case when abs(cost_float) < 1e16 then (
            cost_float_units::bigint * 100 + round(cost_float_hundredths)::bigint
        )::decimal(18, 0) * 0.01 end as cost_float_cent,
        abs(cost_float_hundredths - round(cost_float_hundredths)) / 100 as cost_float_off
    from float_parts
),

parsed as (
    -- a typed value is taken as it is, text is parsed. A float means its nearest cent when
    -- within 1e-6 of it, or within 4 ulps where that is coarser (large values); it counts
    -- as rounded unless it is the cent's own float (12.29 as a float is the float nearest
    -- 12.29: not rounded; 0.1 + 0.2 is not the float of 0.30: rounded). DuckDB compares a
    -- float and a decimal in the float's type, REAL or DOUBLE
    select
        nullif(trim(payment_id), '') as payment_id,
        nullif(trim(customer_id), '') as customer_id,
        paid_at_value is not null or nullif(trim(paid_at), '') is not null as paid_at_given,
        coalesce(paid_at_value, try_cast(nullif(trim(paid_at), '') as timestamptz)) as paid_at,
        amount_value is not null or amount_float is not null or amount_text is not null
            as amount_given,
        coalesce(
            amount_value::decimal(38, 10), amount_float_cent, try_cast(amount_text as decimal(38, 10))
        ) as amount_wide,
        coalesce(
            try_cast(amount_value as money), amount_float_cent,
            try_cast(amount_text as money)
        ) as amount,
        amount_value is not null or coalesce(isfinite(amount_float), false)
            or coalesce(isfinite(try_cast(amount_text as double)), false) as amount_is_number,
        coalesce(
            regexp_matches(amount_text, '\.[0-9]{2}[0-9]*[1-9]'),
            amount_float_off > greatest(1e-6, 4 * amount_float_ulp)
        ) as amount_has_cents_fraction,
        amount_float <> amount_float_cent as amount_rounded,
        upper(nullif(trim(currency), '')) as currency,
        units_value is not null or nullif(trim(units), '') is not null as units_given,
        -- units are whole numbers: '1.5' is a bad row, not 2
        coalesce(
            units_value::bigint,
            case when regexp_full_match(trim(units), '[+-]?[0-9]+(\.0*)?')
                then try_cast(trim(units) as bigint) end
        ) as units,
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
        ) as cost_has_cents_fraction,
        cost_float <> cost_float_cent as cost_rounded,
        source.payment_id as raw_payment_id,
        source.customer_id as raw_customer_id,
        source.paid_at as raw_paid_at,
        source.amount as raw_amount,
        source.amount_value,
        source.amount_float,
        source.currency as raw_currency,
        source.units as raw_units,
        source.units_value,
        source.cost as raw_cost,
        source.cost_value,
        source.cost_float,
        source.source_file
    from float_cents as source
),

judged as (
    select
        *,
        cast(date_trunc('month', paid_at) as date) as month,
        case
            when payment_id is null then 'missing payment_id'
            when customer_id is null then 'missing customer_id'
            when not paid_at_given then 'missing paid_at'
            when paid_at is null then 'unparseable paid_at'
            when not amount_given then 'missing amount'
            when amount_wide is null and not amount_is_number then 'unparseable amount'
            when amount_wide is null or abs(amount_wide) >= 10000000000000000::decimal(38, 10) then 'amount out of range'
            when amount_has_cents_fraction or amount is null or amount_wide <> amount
                then 'amount with more than 2 decimals'
            when $has_currency and currency is null then 'missing currency'
            when $has_currency and currency <> $currency then 'other currency'
            when $has_units and not units_given then 'missing units'
            when $has_units and units is null then 'unparseable units'
            when $has_units and units < 0 then 'negative units'
            when $has_cost and not cost_given then 'missing cost'
            when $has_cost and cost_wide is null and not cost_is_number then 'unparseable cost'
            when $has_cost and (cost_wide is null or abs(cost_wide) >= 10000000000000000::decimal(38, 10))
                then 'cost out of range'
            when $has_cost and (cost_has_cents_fraction or cost is null or cost_wide <> cost)
                then 'cost with more than 2 decimals'
            when $has_cost and cost < 0 then 'negative cost'
        end as problem,
        coalesce(amount_rounded, false) or ($has_cost and coalesce(cost_rounded, false))
            as rounded
    from parsed
),

final as (
    -- the raw text is kept for bad rows only (messages and quarantine): a big month's
    -- good rows would otherwise be held twice; a typed value is shown as its text
    select
        payment_id, customer_id, paid_at, amount, currency, units, cost, month, problem,
        problem is null and rounded as rounded,
        source_file,
        case when problem is not null then raw_payment_id end as raw_payment_id,
        case when problem is not null then raw_customer_id end as raw_customer_id,
        case when problem is not null then coalesce(raw_paid_at, paid_at::varchar) end
            as raw_paid_at,
        case when problem is not null
            then coalesce(raw_amount, amount_value::varchar, amount_float::varchar) end
            as raw_amount,
        case when problem is not null then raw_currency end as raw_currency,
        case when problem is not null then coalesce(raw_units, units_value::varchar) end
            as raw_units,
        case when problem is not null
            then coalesce(raw_cost, cost_value::varchar, cost_float::varchar) end
            as raw_cost
    from judged
)

select * from final
