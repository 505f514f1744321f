-- criteria_overlap: how far the monthly VIP lists by different metrics agree
-- (spec: "Summaries").
--
-- Reads:    customer_rank (window 1, month $month)
-- Produces: one row per (month, metric_a, metric_b) for every pair of the computed
--           metrics, taken in the order revenue, payments, units, margin ($metrics is
--           in that order): the VIP set sizes, their intersection and the Jaccard
--           index (NULL when the union is empty).

with metric_order as (
    select unnest($metrics) as metric, generate_subscripts($metrics, 1) as position
),

metric_pairs as (
    select first.metric as metric_a, second.metric as metric_b
    from metric_order as first
    join metric_order as second on first.position < second.position
),

vips as (
    select metric, customer_id
    from customer_rank
    where month = $month and window_months = 1 and is_vip
),

vip_counts as (
    select metric, count(*) as n_vip from vips group by metric
),

shared_vips as (
    select a.metric as metric_a, b.metric as metric_b, count(*) as n_both
    from vips as a
    join vips as b on a.customer_id = b.customer_id and a.metric <> b.metric
    group by all
),

final as (
    select
        $month::date as month,
        pair.metric_a,
        pair.metric_b,
        coalesce(count_a.n_vip, 0)::integer as n_a,
        coalesce(count_b.n_vip, 0)::integer as n_b,
        coalesce(shared.n_both, 0)::integer as n_both,
        coalesce(shared.n_both, 0)::double
            / nullif(coalesce(count_a.n_vip, 0) + coalesce(count_b.n_vip, 0)
                     - coalesce(shared.n_both, 0), 0) as jaccard
    from metric_pairs as pair
    left join vip_counts as count_a on count_a.metric = pair.metric_a
    left join vip_counts as count_b on count_b.metric = pair.metric_b
    left join shared_vips as shared
        on shared.metric_a = pair.metric_a and shared.metric_b = pair.metric_b
)

select * from final
