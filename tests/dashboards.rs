//! Conventions every Grafana dashboard in `grafana/dashboards/` must follow, and the list of
//! their queries (`cargo test --test dashboards -- --nocapture list_queries`).

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use support::dashboards::{
    BUILTIN_VARIABLES, Dashboard, Origin, Substitution, is_counter, is_row, known_metric_names,
    load_dashboards, metric_names, parse_label_values, selectors, str_field, variable_query,
    variables_used,
};

/// Grafana 11.0-11.2 save dashboards with schema version 39 (docker-compose.yml pins 11.2);
/// later versions migrate it on load.
const SCHEMA_VERSION: u64 = 39;

/// The dashboards the stack ships, by uid.
const REQUIRED_UIDS: &[&str] = &["xentinel-cluster", "xentinel-domain", "xentinel-migrations"];

/// Variables every dashboard has.
const REQUIRED_VARIABLES: &[&str] = &["datasource", "job", "instance"];

/// Functions whose range must be `$__rate_interval` (`increase` in a stat panel: `$__range`).
const RANGE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];

/// The labels every query matches on with a template variable, and whose variables' "All"
/// value is `.+` (any value, but the label present) rather than Grafana's alternation of every
/// value it knows (a regex that grows with the fleet and misses new instances).
const SCOPE_LABELS: &[&str] = &["job", "instance"];

fn is_datasource_ref(value: Option<&Value>) -> bool {
    let uid = value.and_then(|ds| ds.get("uid")).and_then(Value::as_str);
    matches!(uid, Some("${datasource}") | Some("$datasource"))
}

/// Each call of `function(...)` in `expr` (as a whole word): its byte span and its argument.
fn calls<'a>(expr: &'a str, function: &str) -> Vec<(std::ops::Range<usize>, &'a str)> {
    let bytes = expr.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = expr[from..].find(function) {
        let start = from + pos;
        let end = start + function.len();
        from = end;
        if start > 0 && is_ident(bytes[start - 1]) || end < bytes.len() && is_ident(bytes[end]) {
            continue; // part of a longer identifier
        }
        let rest = expr[end..].trim_start();
        if !rest.starts_with('(') {
            continue;
        }
        let open = expr.len() - rest.len();
        let mut depth = 0;
        for (k, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((start..open + k + 1, &rest[1..k]));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The ranges (`[...]`) written in a call's argument.
fn ranges_of(argument: &str) -> Vec<&str> {
    argument
        .split('[')
        .skip(1)
        .map(|r| r.split(']').next().unwrap_or(r))
        .collect()
}

/// For every call of rate(), irate() or increase() in `expr`: its argument, if its range is not
/// exactly `[$__rate_interval]`, or for increase() `[<increase_range>]`.
fn ranges_without_rate_interval(expr: &str, increase_range: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for function in RANGE_FUNCTIONS {
        let want = if *function == "increase" {
            increase_range
        } else {
            "$__rate_interval"
        };
        for (_, argument) in calls(expr, function) {
            let ranges = ranges_of(argument);
            if ranges.is_empty() || ranges.iter().any(|r| *r != want) {
                bad.push(format!("{function}({argument})"));
            }
        }
    }
    bad
}

/// The counters a stat panel's query shows raw: counter selectors outside
/// `increase(...[$__range])`. A stat shows one number for the dashboard's time range; a raw
/// counter is a total since the process started, which resets with it.
fn raw_counters(expr: &str) -> Vec<String> {
    let mut rest = expr.to_owned();
    let mut spans: Vec<std::ops::Range<usize>> = calls(expr, "increase")
        .into_iter()
        .filter(|(_, arg)| {
            let r = ranges_of(arg);
            !r.is_empty() && r.iter().all(|r| *r == "$__range")
        })
        .map(|(span, _)| span)
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.start));
    for span in spans {
        rest.replace_range(span, " ");
    }
    selectors(&rest)
        .into_iter()
        .filter_map(|s| s.metric)
        .filter(|m| is_counter(m))
        .collect()
}

/// The scope labels (`job`, `instance`) a selector does not match with a template variable.
fn unscoped(selector: &support::dashboards::Selector, labels: &[&str]) -> Vec<String> {
    labels
        .iter()
        .filter(|l| !selector.matcher(l).is_some_and(|v| v.contains('$')))
        .map(|l| l.to_string())
        .collect()
}

/// Every convention a single dashboard breaks, one message per problem, naming dashboard and
/// panel.
fn check_dashboard(dashboard: &Dashboard, known_metrics: &BTreeSet<String>) -> Vec<String> {
    let name = dashboard.name();
    let mut problems = Vec::new();
    let mut problem = |what: String| problems.push(format!("{name}: {what}"));
    let json = &dashboard.json;

    if dashboard.uid().is_none_or(str::is_empty) {
        problem("no uid".into());
    }
    match json.get("schemaVersion").and_then(Value::as_u64) {
        Some(SCHEMA_VERSION) => {}
        other => problem(format!(
            "schemaVersion is {other:?}, expected {SCHEMA_VERSION}"
        )),
    }

    // Variables.
    let variables = dashboard.variables();
    let mut defined: BTreeSet<String> = BUILTIN_VARIABLES.iter().map(|s| s.to_string()).collect();
    for variable in variables {
        let var = str_field(variable, "name");
        defined.insert(var.to_owned());
        match str_field(variable, "type") {
            "datasource" => {}
            "query" => {
                if !is_datasource_ref(variable.get("datasource")) {
                    problem(format!(
                        "variable ${var}: datasource is not ${{datasource}}"
                    ));
                }
                match parse_label_values(variable_query(variable)) {
                    None => problem(format!(
                        "variable ${var}: query {:?} is not label_values(...)",
                        variable_query(variable)
                    )),
                    Some((_, label)) if SCOPE_LABELS.contains(&label) => {
                        let all = variable.get("allValue").and_then(Value::as_str);
                        if variable.get("includeAll").and_then(Value::as_bool) != Some(true)
                            || all != Some(".+")
                        {
                            problem(format!(
                                "variable ${var}: allValue is {all:?} (includeAll {:?}), expected \".+\" with includeAll",
                                variable.get("includeAll")
                            ));
                        }
                    }
                    Some(_) => {}
                }
            }
            other => problem(format!("variable ${var}: unexpected type {other:?}")),
        }
    }
    let datasource_variable = variables
        .iter()
        .find(|v| str_field(v, "name") == "datasource");
    match datasource_variable {
        None => problem("no `datasource` variable".into()),
        Some(v)
            if str_field(v, "type") != "datasource" || str_field(v, "query") != "prometheus" =>
        {
            problem("`datasource` variable is not of type datasource, query prometheus".into())
        }
        Some(_) => {}
    }
    for required in REQUIRED_VARIABLES {
        if !variables.iter().any(|v| str_field(v, "name") == *required) {
            problem(format!("no `{required}` variable"));
        }
    }

    // Annotations.
    for annotation in dashboard.annotations() {
        if !is_datasource_ref(annotation.get("datasource")) {
            problem(format!(
                "annotation {:?}: datasource is not ${{datasource}}",
                str_field(annotation, "name")
            ));
        }
    }

    // Panels.
    let mut ids = BTreeMap::new();
    for panel in dashboard.panels() {
        let id = panel.get("id").and_then(Value::as_u64);
        let title = str_field(panel, "title");
        let label = format!(
            "panel {} {title:?}",
            id.map_or("?".into(), |i| i.to_string())
        );
        match id {
            None => problem(format!("{label}: no id")),
            Some(id) => {
                if let Some(other) = ids.insert(id, title) {
                    problem(format!("{label}: id {id} also used by panel {other:?}"));
                }
            }
        }
        if is_row(panel) {
            continue;
        }
        if str_field(panel, "description").trim().is_empty() {
            problem(format!("{label}: no description"));
        }
        if panel
            .pointer("/fieldConfig/defaults/unit")
            .and_then(Value::as_str)
            .is_none_or(|unit| unit.trim().is_empty())
        {
            problem(format!("{label}: no unit (fieldConfig.defaults.unit)"));
        }
        if !is_datasource_ref(panel.get("datasource")) {
            problem(format!("{label}: datasource is not ${{datasource}}"));
        }
        let targets = panel.get("targets").and_then(Value::as_array);
        if targets.is_none_or(Vec::is_empty) {
            problem(format!("{label}: no queries"));
        }
        for target in targets.into_iter().flatten() {
            if target.get("datasource").is_some() && !is_datasource_ref(target.get("datasource")) {
                problem(format!(
                    "{label} query {}: datasource is not ${{datasource}}",
                    str_field(target, "refId")
                ));
            }
            if str_field(target, "expr").trim().is_empty() {
                problem(format!(
                    "{label} query {}: empty expr",
                    str_field(target, "refId")
                ));
            }
        }
    }

    // Queries, wherever they are.
    let panel_types: BTreeMap<u64, &str> = dashboard
        .panels()
        .into_iter()
        .filter_map(|p| Some((p.get("id")?.as_u64()?, str_field(p, "type"))))
        .collect();
    for query in dashboard.queries() {
        let origin = match &query.origin {
            Origin::Panel { id, title, ref_id } => format!("panel {id} {title:?} query {ref_id}"),
            Origin::Annotation { name } => format!("annotation {name:?}"),
            Origin::Variable { name } => format!("variable ${name}"),
        };
        let stat = matches!(&query.origin, Origin::Panel { id, .. } if panel_types.get(id) == Some(&"stat"));
        let increase_range = if stat { "$__range" } else { "$__rate_interval" };
        for call in ranges_without_rate_interval(&query.expr, increase_range) {
            let want = if call.starts_with("increase") {
                increase_range
            } else {
                "$__rate_interval"
            };
            problem(format!("{origin}: range of {call} is not [{want}]"));
        }
        if stat {
            for counter in raw_counters(&query.expr) {
                problem(format!(
                    "{origin}: counter {counter} in a stat panel is not inside increase(...[$__range])"
                ));
            }
        }
        // Every selector is scoped by the dashboard's job and instance variables; a variable's
        // own query needs only the scope labels listed before its own.
        let (selector_text, required): (String, Vec<&str>) = match &query.origin {
            Origin::Variable { .. } => match parse_label_values(&query.expr) {
                Some((sel, label)) => {
                    let upto = SCOPE_LABELS.iter().position(|l| *l == label);
                    let required = match upto {
                        Some(k) => SCOPE_LABELS[..k].to_vec(),
                        None => SCOPE_LABELS.to_vec(),
                    };
                    (sel.unwrap_or("").to_owned(), required)
                }
                None => (String::new(), vec![]),
            },
            _ => (query.expr.clone(), SCOPE_LABELS.to_vec()),
        };
        for selector in selectors(&selector_text) {
            for label in unscoped(&selector, &required) {
                problem(format!(
                    "{origin}: selector {} has no {label} matcher with a variable",
                    selector.metric.as_deref().unwrap_or("{...}")
                ));
            }
        }
        if matches!(query.origin, Origin::Variable { .. })
            && !required.is_empty()
            && selectors(&selector_text).is_empty()
        {
            problem(format!(
                "{origin}: label_values without a selector cannot be scoped by {required:?}"
            ));
        }
        for metric in metric_names(&query.expr) {
            if !known_metrics.contains(&metric) {
                problem(format!(
                    "{origin}: metric {metric} is neither in docs/metrics.md nor a recording rule"
                ));
            }
        }
        for variable in variables_used(&query.expr) {
            if !defined.contains(&variable) {
                problem(format!("{origin}: uses undefined variable ${variable}"));
            }
        }
    }
    problems
}

/// Every convention the set of dashboards breaks: per dashboard, plus missing and duplicate
/// uids.
fn check_dashboards(dashboards: &[Dashboard], known_metrics: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut uids: BTreeMap<&str, &str> = BTreeMap::new();
    for dashboard in dashboards {
        problems.extend(check_dashboard(dashboard, known_metrics));
        if let Some(uid) = dashboard.uid() {
            if let Some(other) = uids.insert(uid, &dashboard.file) {
                problems.push(format!(
                    "{}: uid {uid} is also used by {other}",
                    dashboard.name()
                ));
            }
        }
    }
    for uid in REQUIRED_UIDS {
        if !uids.contains_key(uid) {
            problems.push(format!("no dashboard has uid {uid}"));
        }
    }
    problems
}

#[test]
fn dashboards_follow_conventions() {
    let dashboards = load_dashboards();
    assert!(
        !dashboards.is_empty(),
        "no dashboards in grafana/dashboards"
    );
    let problems = check_dashboards(&dashboards, &known_metric_names());
    assert!(
        problems.is_empty(),
        "{} problem(s) in grafana/dashboards:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Prints every query, raw and substituted; fails if a query uses a variable the substitution
/// has no value for.
#[test]
fn list_queries() {
    let substitution = Substitution::default();
    let mut count = 0;
    for dashboard in load_dashboards() {
        for query in dashboard.queries() {
            let promql = substitution
                .apply(&query.expr)
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            println!("{query}\n    {}\n    => {promql}", query.expr);
            assert!(
                variables_used(&promql).is_empty(),
                "{query}: variables left after substitution: {promql}"
            );
            count += 1;
        }
    }
    assert!(count >= 30, "only {count} queries in all dashboards");
}

// ---------------------------------------------------------------------------------------------
// The checks themselves catch what they should.

/// A dashboard that follows every convention.
fn good_dashboard() -> Value {
    let ds = json!({"type": "prometheus", "uid": "${datasource}"});
    json!({
        "uid": "xentinel-cluster",
        "schemaVersion": SCHEMA_VERSION,
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus"},
            {"name": "job", "type": "query", "datasource": ds, "includeAll": true, "allValue": ".+",
             "query": {"query": "label_values(xen_host_info, job)"}},
            {"name": "instance", "type": "query", "datasource": ds, "includeAll": true, "allValue": ".+",
             "query": "label_values(xen_host_info{job=~\"$job\"}, instance)"},
        ]},
        "annotations": {"list": [
            {"builtIn": 1, "name": "Annotations & Alerts", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
        ]},
        "panels": [
            {"id": 1, "type": "row", "title": "Row", "panels": []},
            {"id": 2, "type": "timeseries", "title": "CPU", "description": "CPU.",
             "datasource": ds, "fieldConfig": {"defaults": {"unit": "percentunit"}},
             "targets": [{"refId": "A", "datasource": ds,
                          "expr": "sum by (instance) (rate(xen_domain_cpu_seconds_total{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval])) / on (instance) instance_domain:xen_domain_cpu_usage:ratio_rate2m{job=~\"$job\", instance=~\"$instance\"}"}]},
            {"id": 3, "type": "stat", "title": "Evacuations", "description": "Started.",
             "datasource": ds, "fieldConfig": {"defaults": {"unit": "none"}},
             "targets": [{"refId": "A", "datasource": ds, "instant": true,
                          "expr": "sum(increase(xentinel_evacuations_started_total{job=~\"$job\", instance=~\"$instance\"}[$__range])) + sum(xentinel_migrations_in_flight{job=~\"$job\", instance=~\"$instance\"})"}]},
        ],
    })
}

fn problems_of(json: Value) -> Vec<String> {
    let known = known_metric_names();
    let dashboard = Dashboard {
        file: "test.json".into(),
        json,
    };
    check_dashboard(&dashboard, &known)
}

#[test]
fn checker_accepts_a_good_dashboard() {
    assert_eq!(problems_of(good_dashboard()), Vec::<String>::new());
}

#[test]
fn checker_reports_each_broken_convention() {
    type Break = fn(&mut Value);
    let cases: &[(&str, Break)] = &[
        ("no uid", |d| d["uid"] = json!("")),
        ("schemaVersion is Some(38)", |d| {
            d["schemaVersion"] = json!(38)
        }),
        ("no `datasource` variable", |d| {
            d["templating"]["list"].as_array_mut().unwrap().remove(0);
        }),
        ("no `instance` variable", |d| {
            d["templating"]["list"].as_array_mut().unwrap().remove(2);
        }),
        ("variable $job: datasource is not", |d| {
            d["templating"]["list"][1]["datasource"] = json!({"uid": "xentinel-prometheus"})
        }),
        ("is not label_values", |d| {
            d["templating"]["list"][1]["query"] = json!("up")
        }),
        ("panel 2 \"CPU\": no unit", |d| {
            d["panels"][1]["fieldConfig"]["defaults"]["unit"] = json!("")
        }),
        ("panel 2 \"CPU\": no description", |d| {
            d["panels"][1]
                .as_object_mut()
                .unwrap()
                .remove("description");
        }),
        ("panel 2 \"CPU\": datasource is not", |d| {
            d["panels"][1]["datasource"] =
                json!({"type": "prometheus", "uid": "xentinel-prometheus"})
        }),
        ("panel 2 \"CPU\" query A: datasource is not", |d| {
            d["panels"][1]["targets"][0]["datasource"] = json!({"uid": "P1809F7CD0C75ACF3"})
        }),
        (
            "range of rate(xen_domain_cpu_seconds_total[5m]) is not",
            |d| {
                d["panels"][1]["targets"][0]["expr"] =
                    json!("rate(xen_domain_cpu_seconds_total[5m])")
            },
        ),
        (
            "range of increase(xentinel_evacuations_failed_total) is not",
            |d| {
                d["panels"][1]["targets"][0]["expr"] =
                    json!("increase(xentinel_evacuations_failed_total)")
            },
        ),
        (
            "range of irate(xen_domain_cpu_seconds_total[$__interval]) is not",
            |d| {
                d["panels"][1]["targets"][0]["expr"] =
                    json!("irate(xen_domain_cpu_seconds_total[$__interval])")
            },
        ),
        ("metric xen_domain_cpu_seconds is neither", |d| {
            d["panels"][1]["targets"][0]["expr"] = json!("xen_domain_cpu_seconds")
        }),
        ("metric instance:xen_nope:rate5m is neither", |d| {
            d["panels"][1]["targets"][0]["expr"] = json!("instance:xen_nope:rate5m")
        }),
        ("uses undefined variable $vm", |d| {
            d["panels"][1]["targets"][0]["expr"] = json!("xen_domain_vcpus{domain=~\"$vm\"}")
        }),
        ("id 1 also used by panel \"Row\"", |d| {
            d["panels"][1]["id"] = json!(1)
        }),
        ("no queries", |d| d["panels"][1]["targets"] = json!([])),
        (
            "variable $job: allValue is Some(\".*\") (includeAll Some(Bool(true))), expected",
            |d| d["templating"]["list"][1]["allValue"] = json!(".*"),
        ),
        ("variable $instance: allValue is None", |d| {
            d["templating"]["list"][2]
                .as_object_mut()
                .unwrap()
                .remove("allValue");
        }),
        (
            "panel 2 \"CPU\" query A: selector xen_domain_vcpus has no instance matcher",
            |d| {
                d["panels"][1]["targets"][0]["expr"] =
                    json!("xen_domain_vcpus{job=~\"$job\", instance=\"xen1:10025\"}")
            },
        ),
        (
            "panel 2 \"CPU\" query A: selector up has no job matcher",
            |d| d["panels"][1]["targets"][0]["expr"] = json!("count(up{instance=~\"$instance\"})"),
        ),
        (
            "annotation \"Evacuations\": selector ALERTS has no job matcher",
            |d| {
                d["annotations"]["list"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({
                        "name": "Evacuations", "datasource": {"uid": "${datasource}"},
                        "expr": "ALERTS{instance=~\"$instance\"}"
                    }))
            },
        ),
        (
            "variable $instance: selector xen_host_info has no job matcher",
            |d| {
                d["templating"]["list"][2]["query"] = json!("label_values(xen_host_info, instance)")
            },
        ),
        (
            "panel 3 \"Evacuations\" query A: counter xentinel_evacuations_started_total in a stat panel",
            |d| {
                d["panels"][2]["targets"][0]["expr"] = json!(
                    "sum(xentinel_evacuations_started_total{job=~\"$job\", instance=~\"$instance\"})"
                )
            },
        ),
        (
            "panel 3 \"Evacuations\" query A: range of increase(xentinel_evacuations_started_total{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval]) is not [$__range]",
            |d| {
                d["panels"][2]["targets"][0]["expr"] = json!(
                    "sum(increase(xentinel_evacuations_started_total{job=~\"$job\", instance=~\"$instance\"}[$__rate_interval]))"
                )
            },
        ),
        ("annotation \"Evacuations\": datasource is not", |d| {
            d["annotations"]["list"]
                .as_array_mut()
                .unwrap()
                .push(json!({
                    "name": "Evacuations", "datasource": {"uid": "prom"}, "expr": "ALERTS"
                }))
        }),
    ];
    for (expected, break_it) in cases {
        let mut dashboard = good_dashboard();
        break_it(&mut dashboard);
        let problems = problems_of(dashboard);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "expected a problem containing {expected:?}, got {problems:?}"
        );
    }
}

#[test]
fn checker_reports_missing_and_duplicate_uids() {
    let known = known_metric_names();
    let make = |file: &str| Dashboard {
        file: file.into(),
        json: good_dashboard(),
    };
    let problems = check_dashboards(&[make("a.json"), make("b.json")], &known);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("uid xentinel-cluster is also used by a.json")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p == "no dashboard has uid xentinel-domain"),
        "{problems:?}"
    );
}

#[test]
fn metric_names_skip_labels_strings_and_ranges() {
    let expr = r#"sum by (xentinel_action) (rate(xen_domain_cpu_seconds_total{uuid="xen_not_a_metric", host=~"$host"}[$__rate_interval]))
        / on (instance) group_left (xen_label) instance_domain:xen_domain_cpu_usage:ratio_rate2m
        + label_replace(xentinel_host_warning, "host", "$1", "instance", "(.+):[0-9]+")
        + max_over_time(xentinel_dom0_load1[5m:1m])"#;
    let names: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "instance_domain:xen_domain_cpu_usage:ratio_rate2m",
            "xen_domain_cpu_seconds_total",
            "xentinel_dom0_load1",
            "xentinel_host_warning",
        ]
    );
}

#[test]
fn contract_expands_shorthand_and_histograms() {
    let known = known_metric_names();
    for name in [
        "xen_domain_network_receive_packets_total",
        "xen_domain_network_transmit_drops_total",
        "xentinel_heartbeat_late_total",
        "xentinel_evacuations_succeeded_total",
        "xen_domain_probe_duration_seconds_bucket",
        "xentinel_migration_downtime_seconds_count",
        "xentinel_dom0_load15",
        "xentinel_build_info",
        "instance_peer:xentinel_heartbeat_loss:ratio_rate2m",
    ] {
        assert!(
            known.contains(name),
            "{name} missing from the known metrics"
        );
    }
    for name in [
        "xen_domain_network_receive_total",
        "xen_domain_info_bucket",
        "xentinel_heartbeat_sent",
    ] {
        assert!(!known.contains(name), "{name} should not be a known metric");
    }
}

#[test]
fn substitution_replaces_every_syntax() {
    let s = Substitution::default().set("host", "xen1");
    assert_eq!(
        s.apply(r#"rate(x{host=~"$host", job=~"${job}", instance=~"${instance:regex}", domain=~"[[domain]]"}[$__rate_interval])"#)
            .unwrap(),
        r#"rate(x{host=~"xen1", job=~".+", instance=~".+", domain=~".*"}[1m])"#
    );
    // Longer built-in names are not cut at a shorter one's end.
    assert_eq!(
        s.apply("$__range $__range_s $__range_ms $__interval_ms")
            .unwrap(),
        "1h 3600 3600000 15000"
    );
    // label_replace capture groups stay.
    assert_eq!(
        s.apply(r#"label_replace(up, "h", "$1", "instance", "(.*)")"#)
            .unwrap(),
        r#"label_replace(up, "h", "$1", "instance", "(.*)")"#
    );
    let err = s.apply("up{vm=~\"$vm\", x=\"${other}\"}").unwrap_err();
    assert!(err.contains("\"other\"") && err.contains("\"vm\""), "{err}");
}

#[test]
fn label_values_queries_split() {
    assert_eq!(
        parse_label_values(r#"label_values(xen_host_info{job=~"$job"}, instance)"#),
        Some((Some(r#"xen_host_info{job=~"$job"}"#), "instance"))
    );
    assert_eq!(parse_label_values("label_values(job)"), Some((None, "job")));
    assert_eq!(parse_label_values("query_result(up)"), None);
}

#[test]
fn selectors_find_every_series_selector() {
    let expr = r#"histogram_quantile(0.99, sum by (instance, le) (rate(xentinel_heartbeat_rtt_seconds_bucket{job=~"$job", instance=~"${instance}"}[$__rate_interval])))
        / on (instance) group_left (host) count without (peer) (up == 1) + ALERTS{alertname="X"} + {__name__="y"}
        + label_replace(xen_host_info, "host", "$1", "instance", "(.+)") offset 5m"#;
    let found: Vec<(Option<String>, usize)> = selectors(expr)
        .into_iter()
        .map(|s| (s.metric, s.matchers.len()))
        .collect();
    let name = |n: &str| Some(n.to_owned());
    assert_eq!(
        found,
        [
            (name("xentinel_heartbeat_rtt_seconds_bucket"), 2),
            (name("up"), 0),
            (name("ALERTS"), 1),
            (None, 1),
            (name("xen_host_info"), 0),
        ]
    );
    let first = &selectors(expr)[0];
    assert_eq!(first.matcher("instance"), Some("${instance}"));
    assert_eq!(first.matcher("job"), Some("$job"));
    assert!(is_counter("xentinel_evacuations_started_total") && !is_counter("xen_host_cpus"));
}
