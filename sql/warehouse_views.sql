-- warehouse_views: the views BI users start from, over the reporting tables.
-- Portable SQL (DuckDB and PostgreSQL), created by the warehouse's ensure_schema(); the
-- descriptions BI tools show (COMMENT ON) are in pipeline/schema.py.
--
--   month_load               per month: which run's data it holds and its last attempt
--   current_month            the last loaded month: what "latest" and "current" mean
--   tier_name                tier numbers 1..4 and their names
--   customer_tier_named      customer_tier with the tier's name
--   customer_class_migration customer_abc with the previous month's class, rank and value
--   latest_customer_segment  the current month's segment of each customer, per metric
--   latest_customer_class    the current month's ABC / XYZ class, per metric and window
--   latest_customer_tier     the current month's profitability tier, with its name
--   current_vip              the current month's VIPs, with their previous rank and value
--                            (and name and account owner, from the customer table)
--   vip_call_list            every alert with its numbers as columns (whom to call, why),
--                            with the customer's name and account owner
--   vip_exit                 the three ways of leaving VIP, one row per customer and reason
--   month_overview           per month and metric: customers, VIPs, A/B/C counts, alerts
--   troublesome_customers    with a [service] source: the current month's troublesome
--                            customers (class A by effort, revenue share below half their
--                            effort share), their shares, tier, top activity kinds and what
--                            to do; strategic customers are kept, never moved away from
--   tier_cost_to_serve       per month and tier: what serving the tier costs (cost to
--                            serve, effort, loaded margin) and the kinds of activity it
--                            goes into

drop view if exists tier_cost_to_serve;
drop view if exists troublesome_customers;
drop view if exists month_overview;
drop view if exists vip_exit;
drop view if exists vip_call_list;
drop view if exists current_vip;
drop view if exists latest_customer_tier;
drop view if exists latest_customer_class;
drop view if exists latest_customer_segment;
drop view if exists customer_class_migration;
drop view if exists customer_tier_named;
drop view if exists tier_name;
drop view if exists current_month;
drop view if exists month_load;

create view month_load as
with attempts as (
    select
        run_id,
        month,
        attempt,
        status,
        recorded_at,
        rows_loaded,
        source_fingerprint,
        error,
        row_number() over (
            partition by month order by recorded_at desc, attempt desc
        ) as newest_first
    from pipeline_run
),
loads as (
    select
        attempts.*,
        row_number() over (
            partition by month order by recorded_at desc, attempt desc
        ) as newest_load_first
    from attempts
    where status in ('loaded', 'provisional')
),
final as (
    select
        loads.month,
        loads.run_id,
        loads.attempt,
        loads.recorded_at as loaded_at,
        loads.status as load_status,
        loads.rows_loaded,
        loads.source_fingerprint,
        last_attempt.status as last_attempt_status,
        last_attempt.recorded_at as last_attempt_at,
        last_attempt.error as last_attempt_error,
        loads.month = (select max(month) from loads) as is_current
    from loads
    join attempts as last_attempt
        on last_attempt.month = loads.month and last_attempt.newest_first = 1
    where loads.newest_load_first = 1
)
select * from final;

create view current_month as
select max(month) as month from month_load;

create view tier_name as
select 1 as tier, 'ideal' as tier_name
union all select 2, 'good earner'
union all select 3, 'break-even'
union all select 4, 'money loser';

create view customer_tier_named as
select
    tiers.month,
    tiers.window_months,
    tiers.customer_id,
    tiers.tier,
    names.tier_name,
    tiers.revenue,
    tiers.margin,
    tiers.margin_pct
from customer_tier as tiers
join tier_name as names on names.tier = tiers.tier;

create view customer_class_migration as
with classes as (
    select month, metric, window_months, customer_id, abc_class, xyz_class, rank, value, share
    from customer_abc
),
final as (
    select
        cur.month,
        cur.metric,
        cur.window_months,
        cur.customer_id,
        cur.abc_class,
        prev.abc_class as previous_abc_class,
        case
            when prev.abc_class is null then 'new'
            when cur.abc_class < prev.abc_class then 'up'
            when cur.abc_class > prev.abc_class then 'down'
            else 'same'
        end as migration,
        cur.xyz_class,
        cur.rank,
        prev.rank as previous_rank,
        cur.value,
        prev.value as previous_value,
        cur.share
    from classes as cur
    left join classes as prev
        on prev.metric = cur.metric
        and prev.window_months = cur.window_months
        and prev.customer_id = cur.customer_id
        and prev.month = cast(cur.month - interval '1 month' as date)
)
select * from final;

create view latest_customer_segment as
select
    segments.customer_id,
    segments.metric,
    segments.month,
    segments.segment,
    segments.movement,
    segments.rank,
    segments.value
from customer_segment as segments
join current_month on current_month.month = segments.month;

create view latest_customer_class as
select
    classes.customer_id,
    classes.metric,
    classes.window_months,
    classes.month,
    classes.abc_class,
    classes.previous_abc_class,
    classes.migration,
    classes.xyz_class,
    classes.rank,
    classes.value,
    classes.share
from customer_class_migration as classes
join current_month on current_month.month = classes.month;

create view latest_customer_tier as
select
    tiers.customer_id,
    tiers.window_months,
    tiers.month,
    tiers.tier,
    tiers.tier_name,
    tiers.revenue,
    tiers.margin,
    tiers.margin_pct
from customer_tier_named as tiers
join current_month on current_month.month = tiers.month;

create view current_vip as
with vips as (
    select * from latest_customer_segment where segment = 'vip'
),
previous_segments as (
    select month, metric, customer_id, rank, value, segment from customer_segment
),
roster as (
    select month, metric, customer_id, months_as_vip, first_vip_month from vip_roster
),
customers as (
    select customer_id, name, owner_email from customer
),
final as (
    select
        vips.month,
        vips.metric,
        vips.customer_id,
        customers.name,
        customers.owner_email,
        vips.rank,
        vips.value,
        vips.movement,
        prev.segment as previous_segment,
        prev.rank as previous_rank,
        prev.value as previous_value,
        roster.months_as_vip,
        roster.first_vip_month
    from vips
    left join previous_segments as prev
        on prev.metric = vips.metric
        and prev.customer_id = vips.customer_id
        and prev.month = cast(vips.month - interval '1 month' as date)
    left join roster
        on roster.month = vips.month
        and roster.metric = vips.metric
        and roster.customer_id = vips.customer_id
    left join customers on customers.customer_id = vips.customer_id
)
select * from final;

create view vip_call_list as
with alerts as (
    select month, metric, customer_id, alert, detail from customer_alert
),
segments as (
    select month, metric, customer_id, rank, value, segment from customer_segment
),
roster as (
    select month, metric, customer_id, months_as_vip from vip_roster
),
paid_months as (
    select customer_id, month from customer_month where payments > 0
),
customers as (
    select customer_id, name, owner_email from customer
),
final as (
    select
        alerts.month,
        alerts.metric,
        alerts.customer_id,
        customers.name,
        customers.owner_email,
        alerts.alert,
        prev.rank as previous_rank,
        prev.value as previous_value,
        cur.rank as current_rank,
        cur.value as current_value,
        cur.segment as current_segment,
        roster.months_as_vip,
        (
            select max(paid.month)
            from paid_months as paid
            where paid.customer_id = alerts.customer_id and paid.month <= alerts.month
        ) as last_paid_month,
        cast(prev.value - coalesce(cur.value, 0) as decimal(18, 2)) as value_at_stake,
        alerts.month = (select month from current_month) as is_current,
        alerts.detail,
        calls.call_rank,
        calls.priority,
        calls.p_alive,
        calls.expected_value,
        calls.value_at_risk,
        calls.call_reason
    from alerts
    left join segments as prev
        on prev.metric = alerts.metric
        and prev.customer_id = alerts.customer_id
        and prev.month = cast(alerts.month - interval '1 month' as date)
    left join segments as cur
        on cur.metric = alerts.metric
        and cur.customer_id = alerts.customer_id
        and cur.month = alerts.month
    left join roster
        on roster.month = alerts.month
        and roster.metric = alerts.metric
        and roster.customer_id = alerts.customer_id
    left join customers on customers.customer_id = alerts.customer_id
    left join customer_call as calls
        on calls.month = alerts.month
        and calls.metric = alerts.metric
        and calls.customer_id = alerts.customer_id
        and calls.alert = alerts.alert
)
select * from final;

create view vip_exit as
with dropped as (
    select month, metric, customer_id, 'dropped_vip' as reason
    from customer_segment
    where movement = 'dropped_vip'
),
stopped as (
    select month, metric, customer_id, 'stopped_paying' as reason
    from customer_alert
    where alert = 'vip_stopped_paying'
),
removed as (
    select month, metric, customer_id, 'removed_from_roster' as reason
    from vip_roster_change
    where change = 'removed'
),
exits as (
    select * from dropped
    union all
    select * from stopped
    union all
    select * from removed
)
select
    exits.month,
    exits.metric,
    exits.customer_id,
    exits.reason,
    exits.month = (select month from current_month) as is_current
from exits;

create view month_overview as
with segments as (
    select
        month,
        metric,
        count(*) as n_customers,
        sum(case when segment = 'vip' then 1 else 0 end) as n_vip,
        sum(case when segment = 'good' then 1 else 0 end) as n_good,
        sum(case when segment = 'regular' then 1 else 0 end) as n_regular
    from customer_segment
    group by month, metric
),
alerts as (
    select month, metric, count(*) as n_alerts
    from customer_alert
    group by month, metric
)
select
    summary.month,
    summary.metric,
    segments.n_customers,
    segments.n_vip,
    segments.n_good,
    segments.n_regular,
    summary.n_class_a,
    summary.n_class_b,
    summary.n_class_c,
    summary.total_value,
    summary.top20_share,
    summary.gini,
    coalesce(alerts.n_alerts, 0) as n_alerts
from pareto_summary as summary
left join segments on segments.month = summary.month and segments.metric = summary.metric
left join alerts on alerts.month = summary.month and alerts.metric = summary.metric
where summary.window_months = 1;

create view troublesome_customers as
with profiles as (
    select profiles.*
    from customer_service_profile as profiles
    join current_month on current_month.month = profiles.month
    where profiles.profile = 'troublesome'
),
top_kinds as (
    select
        month,
        window_months,
        customer_id,
        string_agg(kind || ' (' || cast(effort as varchar(40)) || ')', ', ' order by kind_rank)
            as top_kinds
    from customer_service_kind
    where kind_rank <= 3
    group by month, window_months, customer_id
),
customers as (
    select
        customer_id,
        name,
        owner_email,
        coalesce(lower(attributes ->> 'strategic') in ('true', 't', 'yes', 'y', '1'), false)
            as strategic
    from customer
)
select
    profiles.month,
    profiles.window_months,
    profiles.customer_id,
    customers.name,
    customers.owner_email,
    coalesce(customers.strategic, false) as strategic,
    profiles.revenue,
    profiles.effort,
    profiles.revenue_share,
    profiles.effort_share,
    tiers.tier,
    tiers.cost_to_serve,
    tiers.loaded_margin,
    top_kinds.top_kinds,
    case
        when coalesce(customers.strategic, false) then 'strategic: keep, serve deliberately'
        when tiers.tier = 4 then 'move away'
        when tiers.tier = 3 then 'take no more like them; cut what eats their margin'
        else 'serve them for less'
    end as action
from profiles
left join customer_tier as tiers
    on tiers.month = profiles.month
    and tiers.window_months = profiles.window_months
    and tiers.customer_id = profiles.customer_id
left join top_kinds
    on top_kinds.month = profiles.month
    and top_kinds.window_months = profiles.window_months
    and top_kinds.customer_id = profiles.customer_id
left join customers on customers.customer_id = profiles.customer_id;

create view tier_cost_to_serve as
with customers as (
    select
        customer_id,
        coalesce(lower(attributes ->> 'strategic') in ('true', 't', 'yes', 'y', '1'), false)
            as strategic
    from customer
),
tiered as (
    select
        tiers.*,
        coalesce(profiles.effort, 0) as effort,
        coalesce(customers.strategic, false) as strategic
    from customer_tier as tiers
    left join customer_service_profile as profiles
        on profiles.month = tiers.month
        and profiles.window_months = tiers.window_months
        and profiles.customer_id = tiers.customer_id
    left join customers on customers.customer_id = tiers.customer_id
),
per_tier as (
    select
        month,
        window_months,
        tier,
        count(*) as n_customers,
        sum(case when strategic then 1 else 0 end) as n_strategic,
        sum(revenue) as revenue,
        sum(margin) as margin,
        sum(cost_to_serve) as cost_to_serve,
        sum(loaded_margin) as loaded_margin,
        sum(effort) as effort
    from tiered
    group by month, window_months, tier
),
kinds_per_tier as (
    select
        tiered.month,
        tiered.window_months,
        tiered.tier,
        kinds.kind,
        sum(kinds.effort) as effort,
        sum(kinds.cost_to_serve) as cost_to_serve
    from tiered
    join customer_service_kind as kinds
        on kinds.month = tiered.month
        and kinds.window_months = tiered.window_months
        and kinds.customer_id = tiered.customer_id
    group by tiered.month, tiered.window_months, tiered.tier, kinds.kind
),
ranked_kinds as (
    select
        *,
        row_number() over (
            partition by month, window_months, tier
            order by effort desc, kind
        ) as kind_rank
    from kinds_per_tier
),
top_kinds as (
    select
        month,
        window_months,
        tier,
        string_agg(kind || ' (' || cast(effort as varchar(40)) || ')', ', ' order by kind_rank)
            as top_kinds
    from ranked_kinds
    where kind_rank <= 3
    group by month, window_months, tier
)
select
    per_tier.month,
    per_tier.window_months,
    per_tier.tier,
    names.tier_name,
    per_tier.n_customers,
    per_tier.n_strategic,
    per_tier.revenue,
    per_tier.margin,
    per_tier.cost_to_serve,
    per_tier.loaded_margin,
    per_tier.effort,
    top_kinds.top_kinds,
    per_tier.month = (select month from current_month) as is_current
from per_tier
join tier_name as names on names.tier = per_tier.tier
left join top_kinds
    on top_kinds.month = per_tier.month
    and top_kinds.window_months = per_tier.window_months
    and top_kinds.tier = per_tier.tier;
