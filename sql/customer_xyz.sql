-- customer_xyz: stability of each customer's monthly metric (spec: "XYZ").
--
-- Reads:    customer_metric
-- Produces: one row per (metric, customer_id) for month $month: the coefficient of
--           variation (population standard deviation / mean) of the customer's
--           monthly value over the $xyz_months months ending with $month, months
--           without payments (including those before the history start) counting
--           as 0, for customers whose value over those months is > 0; and its class:
--           X if cv <= $xyz_x_max_cv, Y if cv <= $xyz_y_max_cv, else Z.

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
        coalesce(metric_value.value, 0)::double as value
    from customers_in_window as customer
    cross join months_of_window as window_month
    left join metric_in_window as metric_value
        on metric_value.metric = customer.metric
       and metric_value.customer_id = customer.customer_id
       and metric_value.month = window_month.month
),

variation as (
    select
        metric,
        customer_id,
        stddev_pop(value) / avg(value) as cv
    from monthly_series
    group by metric, customer_id
),

final as (
    select
        $month::date as month,
        metric,
        customer_id,
        cv,
        case
            when cv <= $xyz_x_max_cv::double then 'X'
            when cv <= $xyz_y_max_cv::double then 'Y'
            else 'Z'
        end as xyz_class
    from variation
)

select * from final
