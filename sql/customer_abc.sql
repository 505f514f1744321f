-- customer_abc: the reporting table of ranks, shares and ABC classes per window,
-- with the XYZ class on the rows of the XYZ window (spec: "Ranking, shares, ABC", "XYZ").
--
-- Reads:    customer_rank, customer_xyz (joined to the rows of window $xyz_months only: the
--           other windows carry no XYZ class, and need no lookup)
-- Produces: one row per (month, metric, window_months, customer_id) for month $month
--           and the reporting windows $windows.

with ranking as (
    select * from customer_rank
    where month = $month and list_contains($windows, window_months)
),

stability as (
    select * from customer_xyz
),

ranking_of_xyz_window as (
    select ranking.*, stability.xyz_class
    from ranking
    left join stability
        on stability.metric = ranking.metric
       and stability.customer_id = ranking.customer_id
    where ranking.window_months = $xyz_months
),

ranking_of_other_windows as (
    select *, null::varchar as xyz_class
    from ranking
    where window_months <> $xyz_months
),

classified as (
    select * from ranking_of_xyz_window
    union all
    select * from ranking_of_other_windows
),

final as (
    select
        month,
        metric,
        window_months,
        customer_id,
        value,
        rank,
        share,
        cum_share,
        abc_class,
        xyz_class
    from classified
)

select * from final
