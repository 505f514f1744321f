-- customer_call: the month's alerts in the order to call them, each with its risk and a
-- priority (README "The call list"). customer_alert is not changed: this orders it.
--
-- Reads:    customer_alert (month $month), call_features (as of $month: the alerted
--           customers' values and paying days, sql/call_features.sql), customer_risk (their
--           P(alive) and expected paying days over the next $horizon_months months, from
--           the BG/NBD model of pipeline/compute/call_score.py), customer_rank (window 1:
--           the VIPs of the months whose VIP lists are read), customer_owner (owner_email of
--           the [customers] source; empty without one)
-- Produces: one row per customer_alert row of $month:
--   expected_value   expected paying days x the value per paying day over the months read
--   share_kept       expected_value / recent_value: the share of its recent value it is
--                    expected to keep (NULL without a recent value)
--   recent_value     the value over the $horizon_months months before $month
--   value_at_risk    recent_value - expected_value, at least 0: what leaves if nothing is done
--   vip_dips, vip_returns  earlier falls out of / returns into the monthly VIPs (the VIP
--                    lists read before $month)
--   likely back      a VIP alert of a customer that came back after every earlier dip and
--                    is probably still buying (P(alive) >= 0.5): watch, not call
--   call_rank        per metric: likely-back last; then the smallest share kept first, the
--                    largest value at risk, customer_id, alert
--   priority         call for the first $max_calls_per_owner rows of each owner (of
--                    $max_calls for customers without owner) that are not likely back and
--                    have value at risk; watch for the others

with alerts as (
    select metric, customer_id, alert from customer_alert where month = $month
),

features as (
    select * from call_features where not in_fit_sample
),

vip_flags as (
    -- one row per (metric, customer, VIP list month before $month) of the alerted customers
    select
        alerts.metric,
        alerts.customer_id,
        lists.month,
        vips.customer_id is not null as is_vip
    from (select distinct metric, customer_id from alerts) as alerts
    cross join (
        select distinct month from customer_rank where window_months = 1 and month < $month
    ) as lists
    left join customer_rank as vips
        on vips.window_months = 1 and vips.is_vip
        and vips.month = lists.month
        and vips.metric = alerts.metric
        and vips.customer_id = alerts.customer_id
),

vip_steps as (
    select *, lag(is_vip) over (partition by metric, customer_id order by month) as was_vip
    from vip_flags
),

wobbles as (
    select
        metric,
        customer_id,
        count(*) filter (where was_vip and not is_vip) as vip_dips,
        -- back above the cut after a dip (a first rise into the VIPs is no return)
        least(
            count(*) filter (where not was_vip and is_vip),
            count(*) filter (where was_vip and not is_vip)
        ) as vip_returns
    from vip_steps
    group by metric, customer_id
),

scored as (
    select
        alerts.metric,
        alerts.customer_id,
        alerts.alert,
        risk.p_alive,
        risk.expected_payments,
        -- expected paying days x the value per paying day: what it is expected to bring
        cast(round(
            coalesce(risk.expected_payments, 0) * greatest(features.value_per_paying_day, 0), 2
        ) as money) as expected_value,
        cast(coalesce(features.recent_value, 0) as money) as recent_value,
        features.paying_days,
        case when features.paying_days > 1
            then features.recency / (features.paying_days - 1) end as days_between,
        features.quiet_days,
        coalesce(wobbles.vip_dips, 0) as vip_dips,
        coalesce(wobbles.vip_returns, 0) as vip_returns,
        owners.owner_email
    from alerts
    left join customer_risk as risk using (customer_id)
    left join features using (metric, customer_id, alert)
    left join wobbles using (metric, customer_id)
    left join customer_owner as owners using (customer_id)
),

judged as (
    select
        *,
        greatest(recent_value - expected_value, 0) as value_at_risk,
        case when recent_value > 0 then expected_value / recent_value end as share_kept,
        alert in ('vip_dropped', 'vip_stopped_paying')
            and vip_dips >= 1 and vip_returns >= vip_dips
            and coalesce(p_alive, 0) >= 0.5 as likely_back
    from scored
),

ranked as (
    select
        *,
        row_number() over (
            partition by metric
            order by likely_back, share_kept nulls last, value_at_risk desc, customer_id, alert
        ) as call_rank
    from judged
),

callable as (
    select
        *,
        case quiet_days when 0 then 'today' when 1 then 'yesterday'
            else printf('%d days ago', quiet_days) end as days_ago,
        -- how long the customer has been paying, in months of $days_per_month days
        greatest(round(days_between * (paying_days - 1) / $days_per_month), 1)::int
            as paying_months,
        row_number() over (
            partition by metric, owner_email,
                (not likely_back and value_at_risk > 0)
            order by call_rank
        ) as place_in_owner_list
    from ranked
),

final as (
    select
        $month::date as month,
        metric,
        customer_id,
        alert,
        call_rank,
        case
            when not likely_back and value_at_risk > 0
                and place_in_owner_list <= case when owner_email is null
                    then $max_calls else $max_calls_per_owner end
            then 'call'
            else 'watch'
        end as priority,
        round(share_kept, 6) as share_kept,
        p_alive,
        expected_payments,
        expected_value,
        recent_value,
        value_at_risk,
        paying_days,
        days_between,
        quiet_days,
        vip_dips,
        vip_returns,
        owner_email,
        case
            when likely_back then printf(
                'VIP again likely: back above the cut after %d of %d earlier dips, still buying (P(alive) %d %%)',
                vip_returns, vip_dips, round(p_alive * 100)::int)
            else concat_ws('; ',
                case
                    when paying_days is null or paying_days = 0 then 'no payment in 12 months'
                    when paying_days = 1 then
                        'one paying day in 12 months, ' || days_ago
                    when quiet_days > 1.5 * days_between then printf(
                        'paid every %d days for %d months, nothing for %d days',
                        round(days_between)::int, paying_months, quiet_days)
                    else printf('paid every %d days for %d months, last paid ',
                        round(days_between)::int, paying_months) || days_ago
                end,
                case when p_alive is not null then printf('P(alive) %d %%', round(p_alive * 100)::int) end,
                case
                    when share_kept is null then null
                    when value_at_risk = 0 then 'expected to keep its recent value'
                    else printf('expected to keep %d %% of its last %d months'' value',
                        round(least(share_kept, 1) * 100)::int, $horizon_months)
                end)
        end as call_reason
    from callable
)

select * from final
