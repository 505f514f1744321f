-- customer_xyz: stability of each customer's monthly metric (spec: "XYZ").
--
-- Reads:    customer_metric
-- Produces: one row per (metric, customer_id) for month $month: the coefficient of
--           variation (population standard deviation / mean) of the customer's
--           monthly value over the $xyz_months months ending with $month, months
--           without payments (including those before the history start) counting
--           as 0, for customers whose value over those months is > 0; and its class:
--           X if cv <= $xyz_x_max_cv, Y if cv <= $xyz_y_max_cv, else Z.
-- The class is decided exactly: with n months, sum s and sum of squares q,
-- cv <= t  <=>  n * q - s^2 <= t^2 * s^2 (the mean is > 0), so a customer exactly on
-- a boundary is not moved by floating-point rounding.

with metric_in_window as (
    select * from customer_metric
    where month > $month::date - to_months($xyz_months)
),

moments as (
    -- the months without payments add nothing to either sum; they count in n, which
    -- is therefore $xyz_months for every customer. Squares are taken as HUGEINT cents:
    -- the square of a DECIMAL(18, 2) does not fit DECIMAL(18) (nor its sum DECIMAL(38)).
    select
        metric,
        customer_id,
        $xyz_months::hugeint as n_months,
        sum(value)::hugeint * 100 as total_cents,
        sum((value * 100)::hugeint * (value * 100)::hugeint) as total_of_squares_cents
    from metric_in_window
    group by metric, customer_id
    having sum(value) > 0
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
