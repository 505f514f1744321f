-- customer_xyz: stability of each customer's monthly metric (spec: "XYZ").
--
-- Reads:    customer_month_history (one row per customer month, the metrics side by side)
-- Produces: one row per (metric, customer_id), for the metrics $metrics, for month
--           $month: the coefficient of variation (population standard deviation / mean)
--           of the customer's monthly value over the $xyz_months months ending with
--           $month, months without payments (including those before the history start)
--           counting as 0, for customers whose value over those months is > 0; and its
--           class: X if cv <= $xyz_x_max_cv, Y if cv <= $xyz_y_max_cv, else Z.
-- The class is decided exactly: with n months, sum s and sum of squares q,
-- cv <= t  <=>  n * q - s^2 <= t^2 * s^2 (the mean is > 0), so a customer exactly on
-- a boundary is not moved by floating-point rounding.

with customer_months_in_window as (
    -- each metric as the DECIMAL(18, 2) value it is ranked by (customer_metric.sql)
    select
        customer_id,
        revenue::money as revenue,
        payments::money as payments,
        units::money as units,
        margin::money as margin
    from customer_month_history
    where month > $month::date - to_months($xyz_months)
),

sums_per_customer as (
    -- the months without payments add nothing to either sum. Squares are taken as HUGEINT
    -- cents: the square of a DECIMAL(18, 2) does not fit DECIMAL(18) (nor its sum
    -- DECIMAL(38)). A NULL metric (units, margin where the source lacks them) sums to NULL.
    select
        customer_id,
        sum(revenue) as revenue_total,
        sum((revenue * 100)::hugeint * (revenue * 100)::hugeint) as revenue_squares,
        sum(payments) as payments_total,
        sum((payments * 100)::hugeint * (payments * 100)::hugeint) as payments_squares,
        sum(units) as units_total,
        sum((units * 100)::hugeint * (units * 100)::hugeint) as units_squares,
        sum(margin) as margin_total,
        sum((margin * 100)::hugeint * (margin * 100)::hugeint) as margin_squares
    from customer_months_in_window
    group by customer_id
),

sums_per_metric as (
    unpivot sums_per_customer
    on (revenue_total, revenue_squares) as revenue,
        (payments_total, payments_squares) as payments,
        (units_total, units_squares) as units,
        (margin_total, margin_squares) as margin
    into name metric value total, total_of_squares
),

moments as (
    -- the months without payments count in n, which is therefore $xyz_months for every
    -- customer
    select
        metric,
        customer_id,
        $xyz_months::hugeint as n_months,
        (total * 100)::hugeint as total_cents,
        total_of_squares as total_of_squares_cents
    from sums_per_metric
    where list_contains($metrics, metric)
      and total > 0
),

variation as (
    select
        metric,
        customer_id,
        n_months * total_of_squares_cents - total_cents * total_cents as spread,
        total_cents * total_cents as scale,
        sqrt(greatest(n_months * total_of_squares_cents - total_cents * total_cents, 0)::double)
            / total_cents::double as cv
    from moments
),

final as (
    select
        $month::date as month,
        metric,
        customer_id,
        cv,
        case
            when spread <= $xyz_x_max_cv * $xyz_x_max_cv * scale then 'X'
            when spread <= $xyz_y_max_cv * $xyz_y_max_cv * scale then 'Y'
            else 'Z'
        end as xyz_class
    from variation
)

select * from final
