-- customer_abc: the reporting table of ranks, shares and ABC classes per window,
-- with the XYZ class on the rows of the XYZ window (spec: "Ranking, shares, ABC", "XYZ").
--
-- Reads:    customer_rank, customer_xyz
-- Produces: one row per (month, metric, window_months, customer_id) for month $month
--           and the reporting windows $windows.

with ranking as (
    select * from customer_rank
    where month = $month and list_contains($windows, window_months)
),

stability as (
    select * from customer_xyz
),

final as (
    select
        ranking.month,
        ranking.metric,
        ranking.window_months,
        ranking.customer_id,
        ranking.value,
        ranking.rank,
        ranking.share,
        ranking.cum_share,
        ranking.abc_class,
        case when ranking.window_months = $xyz_months then stability.xyz_class end as xyz_class
    from ranking
    left join stability
        on stability.metric = ranking.metric
       and stability.customer_id = ranking.customer_id
)

select * from final
