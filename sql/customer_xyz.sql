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

with months_of_window as (
    select cast(unnest(generate_series(
        $month::date - to_months($xyz_months - 1), $month::date, interval 1 month
    )) as date) as month
),

metric_in_window as (
    select metric_value.*
    from customer_metric as metric_value
    join months_of_window using (month)
),

customers_in_window as (
    select metric, customer_id
    from metric_in_window
    group by metric, customer_id
    having sum(value) > 0
),

monthly_series as (
    select
        customer.metric,
        customer.customer_id,
        window_month.month,
        coalesce(metric_value.value, 0) as value
    from customers_in_window as customer
    cross join months_of_window as window_month
    left join metric_in_window as metric_value
        on metric_value.metric = customer.metric
       and metric_value.customer_id = customer.customer_id
       and metric_value.month = window_month.month
),

moments as (
    select
        metric,
        customer_id,
        count(*) as n_months,
        sum(value) as total,
        sum(value * value) as total_of_squares
    from monthly_series
    group by metric, customer_id
),

variation as (
    select
        metric,
        customer_id,
        n_months * total_of_squares - total * total as spread,
        total * total as scale,
        sqrt(greatest(n_months * total_of_squares - total * total, 0)::double)
            / total::double as cv
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
