//! The stack's configuration checked with the real tools (promtool, amtool, docker-compose) and
//! against each other: alert conventions, a test for every alert, ports and paths that agree
//! between files. A missing tool fails the test, naming the Debian package to install.

mod support;

use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::dashboards::{known_metric_names, metric_names, repo_root, rule_files, rules};

/// The first of `names` found on PATH; panics naming `package` when none is.
fn tool(names: &[&str], package: &str) -> PathBuf {
    let path = env::var_os("PATH").unwrap_or_default();
    for dir in env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "none of {names:?} is on PATH; install it: apt-get install -y --no-install-recommends {package}"
    );
}

/// Runs `program args...` in the repository root; panics with its output unless it succeeds.
fn run(program: &Path, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "`{} {}` failed ({}):\n{}{}",
        program.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn promtool() -> PathBuf {
    tool(&["promtool"], "prometheus")
}

fn amtool() -> PathBuf {
    tool(&["amtool"], "prometheus-alertmanager")
}

fn docker_compose() -> PathBuf {
    tool(&["docker-compose"], "docker-compose")
}

/// `dir/*.yml` relative to the repository root, sorted.
fn yml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("cannot read {dir}: {e}"))
        .map(|entry| entry.expect("directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.yml in {dir}");
    files
}

fn yaml(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
}

/// A Prometheus duration made of one number and one unit: `30s`, `1m`, `1h`, `500ms`.
fn duration(text: &str) -> std::time::Duration {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or_else(|| panic!("no unit in duration {text:?}"));
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {text:?}"));
    let ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => panic!("unit {unit:?} of {text:?} is not ms, s, m, h or d"),
    };
    std::time::Duration::from_millis(n * ms)
}

fn alerts() -> Vec<Value> {
    rules()
        .into_iter()
        .filter(|rule| rule["alert"].is_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn promtool_check_config() {
    let output = run(
        &promtool(),
        &["check", "config", "prometheus/prometheus.yml"],
    );
    let out = text(&output);
    // The rule_files glob found both rule files.
    for file in ["xentinel-alerts.yml", "xentinel-recording.yml"] {
        assert!(out.contains(file), "{file} not checked:\n{out}");
    }
}

#[test]
fn promtool_check_rules() {
    let files = yml_files("prometheus/rules");
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = text(&run(&promtool(), &args));
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_test_rules() {
    let files = yml_files("prometheus/tests");
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    let out = text(&run(&promtool(), &args));
    assert_eq!(
        out.matches("SUCCESS").count(),
        files.len(),
        "not every test file succeeded:\n{out}"
    );
}

#[test]
fn alerts_follow_conventions() {
    let runbooks =
        fs::read_to_string(repo_root().join("docs/runbooks.md")).expect("docs/runbooks.md");
    let headings: BTreeSet<&str> = runbooks
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect();
    let alerts = alerts();
    assert!(alerts.len() >= 12, "only {} alerts", alerts.len());
    let mut problems = Vec::new();
    for alert in &alerts {
        let name = alert["alert"].as_str().unwrap();
        let mut problem = |what: &str| problems.push(format!("{name}: {what}"));
        let camel = name.strip_prefix("Xentinel").is_some_and(|rest| {
            rest.starts_with(|c: char| c.is_ascii_uppercase())
                && rest.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !camel {
            problem("not CamelCase with the prefix Xentinel");
        }
        match alert["labels"]["severity"].as_str() {
            Some("critical" | "warning" | "info") => {}
            other => problem(&format!("severity {other:?}")),
        }
        for annotation in ["summary", "description", "runbook_url"] {
            if alert["annotations"][annotation]
                .as_str()
                .is_none_or(|s| s.trim().is_empty())
            {
                problem(&format!("no {annotation} annotation"));
            }
        }
        let expected_url = format!(
            "https://github.com/xentinel/xentinel/blob/main/docs/runbooks.md#{}",
            name.to_lowercase()
        );
        if alert["annotations"]["runbook_url"].as_str() != Some(expected_url.as_str()) {
            problem(&format!("runbook_url is not {expected_url}"));
        }
        if !headings.contains(name) {
            problem("no `## <alert name>` section in docs/runbooks.md");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn host_warning_failure_alert_triggers_evacuation() {
    let alerts = alerts();
    let alert = alerts
        .iter()
        .find(|a| a["alert"].as_str() == Some("XentinelHostWarningFailure"))
        .expect("XentinelHostWarningFailure");
    assert_eq!(alert["labels"]["severity"].as_str(), Some("warning"));
    assert_eq!(
        alert["labels"]["xentinel_action"].as_str(),
        Some("evacuate")
    );
    assert!(
        alert["for"].is_null(),
        "XentinelHostWarningFailure must not have `for`"
    );
    // A clear must hold for two scrapes and two evaluations before the alert resolves (one
    // flapping 0 cancels nothing), and a missed scrape is no clear at all: the expression reads
    // the last value reported, over a window far longer than keep_firing_for.
    let prometheus = yaml("prometheus/prometheus.yml");
    let keep = duration(alert["keep_firing_for"].as_str().expect("keep_firing_for"));
    for interval in ["scrape_interval", "evaluation_interval"] {
        let iv = duration(prometheus["global"][interval].as_str().unwrap());
        assert!(
            keep >= 2 * iv,
            "keep_firing_for {keep:?} is shorter than two {interval}s ({iv:?})"
        );
    }
    let expr = alert["expr"].as_str().unwrap();
    let windows: Vec<std::time::Duration> = expr
        .match_indices("last_over_time(")
        .map(|(at, _)| {
            let rest = &expr[at..];
            let range = &rest[rest.find('[').unwrap() + 1..rest.find(']').unwrap()];
            duration(range)
        })
        .collect();
    assert_eq!(
        windows.len(),
        2,
        "both branches (with and without a host label) read the last value reported: {expr}"
    );
    assert!(
        windows
            .iter()
            .all(|w| *w >= std::time::Duration::from_secs(30 * 60)),
        "a host silent for less than 30 minutes must stay evacuated: {expr}"
    );
    // Only this alert may trigger migrations.
    for other in &alerts {
        if other["alert"] != alert["alert"] {
            assert!(
                other["labels"]["xentinel_action"].is_null(),
                "{:?} has xentinel_action",
                other["alert"]
            );
        }
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in yml_files("prometheus/tests") {
        let doc = yaml(&file);
        for case in doc["tests"].as_sequence().into_iter().flatten() {
            for check in case["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = check["alertname"].as_str().unwrap_or_default().to_owned();
                match check["exp_alerts"].as_sequence() {
                    Some(expected) if !expected.is_empty() => {
                        // A firing case asserts labels and every annotation.
                        for alert in expected {
                            for annotation in ["summary", "description", "runbook_url"] {
                                assert!(
                                    alert["exp_annotations"][annotation].is_string(),
                                    "{file}: firing case of {name} does not assert {annotation}"
                                );
                            }
                            assert!(
                                alert["exp_labels"]["severity"].is_string(),
                                "{file}: firing case of {name} does not assert severity"
                            );
                        }
                        firing.insert(name);
                    }
                    _ => {
                        quiet.insert(name);
                    }
                }
            }
        }
    }
    let names: Vec<String> = alerts()
        .iter()
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .collect();
    // An always-firing alert (the watchdog, `expr: vector(1)`) cannot have a quiet case.
    let always_firing: BTreeSet<String> = alerts()
        .iter()
        .filter(|a| a["expr"].as_str().map(str::trim) == Some("vector(1)"))
        .map(|a| a["alert"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        always_firing.iter().map(String::as_str).collect::<Vec<_>>(),
        ["XentinelWatchdog"],
        "exactly one always-firing alert, the watchdog"
    );
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !firing.contains(*n) || !(quiet.contains(*n) || always_firing.contains(*n)))
        .map(|n| {
            format!(
                "{n} (firing case: {}, quiet case: {})",
                firing.contains(n),
                quiet.contains(n)
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "alerts without both kinds of test case: {missing:?}"
    );
}

#[test]
fn rules_use_only_contract_metrics() {
    let known = known_metric_names();
    assert!(
        rule_files()
            .iter()
            .any(|f| f.ends_with("xentinel-recording.yml")),
        "no recording rules file"
    );
    let mut unknown = Vec::new();
    for rule in rules() {
        let name = rule["alert"]
            .as_str()
            .or(rule["record"].as_str())
            .unwrap_or("?");
        for metric in metric_names(rule["expr"].as_str().unwrap_or_default()) {
            if !known.contains(&metric) {
                unknown.push(format!("{name}: {metric}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics in rules that are neither in docs/metrics.md nor recording rules: {unknown:?}"
    );
}

#[test]
fn recording_rules_are_colon_named() {
    for rule in rules() {
        if let Some(record) = rule["record"].as_str() {
            let parts: Vec<&str> = record.split(':').collect();
            assert!(
                parts.len() == 3 && parts.iter().all(|p| !p.is_empty()),
                "{record} is not level:metric:operations"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

#[test]
fn amtool_check_config() {
    let out = text(&run(
        &amtool(),
        &["check-config", "prometheus/alertmanager.yml"],
    ));
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Kills and reaps the child process when dropped, so a failing test leaves nothing behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on 127.0.0.1:port with a plain HTTP/1.0 request; the status line and body.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The real Alertmanager (upstream or Debian name) on a free port with the shipped
/// configuration, answering `/api/v2/status`; killed on drop.
struct ShippedAlertmanager {
    child: Reaped,
    port: u16,
    storage: PathBuf,
    /// The `/api/v2/status` response.
    status: String,
}

impl Drop for ShippedAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = fs::remove_dir_all(&self.storage);
    }
}

impl ShippedAlertmanager {
    fn start(name: &str) -> Self {
        let binary = tool(
            &["alertmanager", "prometheus-alertmanager"],
            "prometheus-alertmanager",
        );
        let storage = env::temp_dir().join(format!("xentinel-am-{name}-{}", std::process::id()));
        fs::create_dir_all(&storage).unwrap();
        // A free port: bind, read it, release it for Alertmanager.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .current_dir(repo_root())
            .args([
                "--config.file=prometheus/alertmanager.yml".to_owned(),
                format!("--storage.path={}", storage.display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".to_owned(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut child = Reaped(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let status = loop {
            if let Some(exit) = child.0.try_wait().unwrap() {
                let mut stderr = String::new();
                std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).ok();
                panic!("{} exited ({exit}):\n{stderr}", binary.display());
            }
            if let Ok(response) = http_get(port, "/api/v2/status") {
                if response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200") {
                    break response;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Alertmanager did not answer on port {port} within 15s"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        ShippedAlertmanager {
            child,
            port,
            storage,
            status,
        }
    }
}

/// The real Alertmanager (upstream or Debian name) loads the configuration and serves it.
#[test]
fn alertmanager_loads_the_config() {
    let am = ShippedAlertmanager::start("load");
    // The served configuration is ours: the webhook receiver and its URL.
    assert!(
        am.status.contains("xentinel-webhook") && am.status.contains("demo:10027/alerts"),
        "Alertmanager serves another configuration:\n{}",
        am.status
    );
}

/// The receivers `amtool` routes `labels` to, in routing order.
fn routed_to(labels: &[String]) -> Vec<String> {
    let mut args = vec![
        "config".to_owned(),
        "routes".to_owned(),
        "test".to_owned(),
        "--config.file=prometheus/alertmanager.yml".to_owned(),
    ];
    args.extend(labels.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run(&amtool(), &args);
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Every alert of the rules, with its own labels and a host, routed by the shipped
/// configuration: the evacuation alert to the webhook AND to people (`continue`), the watchdog
/// to its own receiver only, everything else to people only.
#[test]
fn every_alert_routes_to_its_receivers() {
    let mut checked = 0;
    for alert in alerts() {
        let name = alert["alert"].as_str().unwrap();
        let mut labels = vec![format!("alertname={name}"), "host=xen1".to_owned()];
        for (k, v) in alert["labels"].as_mapping().into_iter().flatten() {
            labels.push(format!("{}={}", k.as_str().unwrap(), v.as_str().unwrap()));
        }
        let expected: &[&str] = match name {
            "XentinelHostWarningFailure" => &["xentinel-webhook", "people"],
            "XentinelWatchdog" => &["watchdog"],
            _ => &["people"],
        };
        assert_eq!(routed_to(&labels), expected, "{name} ({labels:?})");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} alerts routed");
    // amtool's own verification, on the two routes that matter most.
    for (receivers, labels) in [
        (
            "xentinel-webhook,people",
            &[
                "alertname=XentinelHostWarningFailure",
                "xentinel_action=evacuate",
                "host=xen1",
            ][..],
        ),
        (
            "watchdog",
            &["alertname=XentinelWatchdog", "severity=info"][..],
        ),
    ] {
        let verify = format!("--verify.receivers={receivers}");
        let mut args = vec![
            "config",
            "routes",
            "test",
            "--config.file=prometheus/alertmanager.yml",
            &verify,
        ];
        args.extend_from_slice(labels);
        run(&amtool(), &args);
    }
}

/// `POST` a JSON body to 127.0.0.1:port; the status line and body.
fn http_post_json(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// A real Alertmanager with the shipped inhibit rules: an exporter down on xen1 silences xen1's
/// other alerts, never the evacuation of xen1 and nothing of xen2.
#[test]
fn exporter_down_inhibits_its_hosts_derived_alerts_but_not_the_evacuation() {
    let am = ShippedAlertmanager::start("inhibit");
    let alert = |name: &str, host: &str, extra: &[(&str, &str)]| {
        let mut labels = serde_json::json!({"alertname": name, "host": host, "job": "xentinel",
            "instance": format!("{host}:10025")});
        for (k, v) in extra {
            labels[*k] = serde_json::json!(v);
        }
        serde_json::json!({ "labels": labels })
    };
    let evacuate = [
        ("kind", "ups_on_battery"),
        ("xentinel_action", "evacuate"),
        ("severity", "warning"),
    ];
    let alerts = serde_json::json!([
        alert("XentinelExporterDown", "xen1", &[("severity", "critical")]),
        alert("XentinelSourceDown", "xen1", &[("source", "xenstore")]),
        alert("XentinelDomainCrashed", "xen1", &[("domain", "web")]),
        alert("XentinelGuestAgentStale", "xen1", &[("domain", "db")]),
        alert("XentinelHostWarningFailure", "xen1", &evacuate),
        alert("XentinelSourceDown", "xen2", &[("source", "xenstore")]),
    ]);
    let response = http_post_json(am.port, "/api/v2/alerts", &alerts.to_string()).unwrap();
    assert!(response.contains(" 200 "), "alerts refused: {response}");
    // alertname@host -> inhibited?
    let mut inhibited = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while inhibited.len() < 6 || !inhibited.values().any(|&i| i) {
        assert!(
            std::time::Instant::now() < deadline,
            "Alertmanager inhibited nothing within 15s: {inhibited:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        let response = http_get(am.port, "/api/v2/alerts").unwrap();
        let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
        let listed: serde_json::Value = serde_json::from_str(body).unwrap();
        inhibited.clear();
        for a in listed.as_array().unwrap() {
            let key = format!(
                "{}@{}",
                a["labels"]["alertname"].as_str().unwrap(),
                a["labels"]["host"].as_str().unwrap()
            );
            let by = a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len);
            inhibited.insert(key, by > 0);
        }
    }
    let expected: std::collections::BTreeMap<String, bool> = [
        ("XentinelExporterDown@xen1", false),
        ("XentinelSourceDown@xen1", true),
        ("XentinelDomainCrashed@xen1", true),
        ("XentinelGuestAgentStale@xen1", true),
        ("XentinelHostWarningFailure@xen1", false),
        ("XentinelSourceDown@xen2", false),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(inhibited, expected);
}

#[test]
fn webhook_receiver_settings() {
    let config = yaml("prometheus/alertmanager.yml");
    let receiver = config["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["name"].as_str() == Some("xentinel-webhook"))
        .expect("receiver xentinel-webhook");
    let webhook = &receiver["webhook_configs"][0];
    assert_eq!(webhook["send_resolved"].as_bool(), Some(true));
    assert_eq!(webhook["max_alerts"].as_u64(), Some(0));
    assert_eq!(
        webhook["http_config"]["authorization"]["credentials_file"].as_str(),
        Some("/etc/xentinel/webhook.token")
    );
    let route = config["route"]["routes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| r["receiver"].as_str() == Some("xentinel-webhook"))
        .expect("route to xentinel-webhook");
    let group_by: Vec<&str> = route["group_by"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(group_by, ["alertname", "host"]);
    let group_wait = route["group_wait"].as_str().unwrap();
    assert!(
        ["0s", "1s", "2s", "3s", "4s", "5s"].contains(&group_wait),
        "group_wait {group_wait} is longer than 5s"
    );
}

// ---------------------------------------------------------------------------------------------
// docker-compose and the files it ties together

/// `docker-compose config`: the compose file validated, resolved and normalised.
fn compose_config() -> Value {
    let output = run(&docker_compose(), &["-f", "docker-compose.yml", "config"]);
    serde_yaml_ng::from_slice(&output.stdout).expect("docker-compose config prints YAML")
}

#[test]
fn docker_compose_config_is_valid() {
    run(
        &docker_compose(),
        &["-f", "docker-compose.yml", "config", "-q"],
    );
    let compose = compose_config();
    for service in ["demo", "prometheus", "alertmanager", "grafana"] {
        assert!(
            compose["services"][service].is_mapping(),
            "no service {service}"
        );
    }
    let grafana = &compose["services"]["grafana"];
    assert_eq!(
        grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"].as_str(),
        Some("true")
    );
    assert_eq!(
        grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"].as_str(),
        Some("Viewer")
    );
    assert_eq!(published_ports(&compose, "grafana"), [3000]);
    for service in ["prometheus", "alertmanager", "grafana"] {
        let image = compose["services"][service]["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{service}: image {image} is not pinned"
        );
    }
}

/// `(host address, host port)` of each `ports` entry of a service, as `docker-compose config`
/// prints them: the long form (`published`, `host_ip`) or a string `[ip:]host:container[/proto]`
/// (docker-compose 1.29 prints entries with an address that way), port ranges expanded.
fn published(compose: &Value, service: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for p in compose["services"][service]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        if let Some(port) = p["published"].as_u64() {
            let ip = p["host_ip"].as_str().unwrap_or("0.0.0.0").to_owned();
            out.push((ip, port));
            continue;
        }
        let text = p
            .as_str()
            .unwrap_or_else(|| panic!("{service}: port {p:?}"));
        let parts: Vec<&str> = text.split('/').next().unwrap().split(':').collect();
        let (ip, host) = match parts[..] {
            [ip, host, _] => (ip, host),
            [host, _] => ("0.0.0.0", host),
            _ => panic!("{service}: port {text:?} publishes nothing"),
        };
        let (from, to) = host.split_once('-').unwrap_or((host, host));
        for port in from.parse::<u64>().unwrap()..=to.parse::<u64>().unwrap() {
            out.push((ip.to_owned(), port));
        }
    }
    out
}

/// The host side of each `ports` entry of a service.
fn published_ports(compose: &Value, service: &str) -> Vec<u64> {
    published(compose, service)
        .into_iter()
        .map(|(_, port)| port)
        .collect()
}

/// Every published port listens on 127.0.0.1 only: Alertmanager takes alerts from anyone who
/// reaches it, and an alert moves domains; the webhook holds a token. Every service has a
/// healthcheck, and what waits for one waits for a service that has it.
#[test]
fn compose_publishes_on_loopback_and_checks_health() {
    let compose = compose_config();
    let services = compose["services"].as_mapping().unwrap();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for (ip, port) in published(&compose, name) {
            assert_eq!(ip, "127.0.0.1", "{name} publishes port {port} on {ip}");
        }
        let one_shot = service["restart"].as_str() == Some("no");
        let test = &service["healthcheck"]["test"];
        assert!(
            one_shot || test.as_sequence().is_some_and(|t| t.len() >= 2),
            "{name} has no healthcheck test: {:?}",
            service["healthcheck"]
        );
        for (dep, how) in service["depends_on"].as_mapping().into_iter().flatten() {
            let dep = dep.as_str().unwrap();
            match how["condition"].as_str() {
                Some("service_healthy") => assert!(
                    services[dep]["healthcheck"]["test"].is_sequence(),
                    "{name} waits for {dep} to be healthy, which has no healthcheck"
                ),
                Some("service_completed_successfully") => assert_eq!(
                    services[dep]["restart"].as_str(),
                    Some("no"),
                    "{name} waits for {dep} to complete, which restarts"
                ),
                Some("service_started") => {}
                other => panic!("{name} depends on {dep} with condition {other:?}"),
            }
        }
    }
    assert!(published_ports(&compose, "demo").len() >= 5);
}

/// `(source, target)` of each bind mount of a service.
fn bind_mounts(compose: &Value, service: &str) -> Vec<(String, String)> {
    compose["services"][service]["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|v| v.starts_with('/'))
        .map(|v| {
            let mut parts = v.split(':');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn compose_bind_mounts_exist() {
    let compose = compose_config();
    let mut count = 0;
    for (service, _) in compose["services"].as_mapping().unwrap() {
        let service = service.as_str().unwrap();
        for (source, _) in bind_mounts(&compose, service) {
            assert!(
                Path::new(&source).exists(),
                "{service} mounts {source}, which does not exist"
            );
            count += 1;
        }
    }
    // prometheus/ (twice), grafana/ (twice): the token is in a volume, not the repository.
    assert!(count >= 4, "only {count} bind mounts");
}

/// The port of a `host:port` address.
fn port_of(address: &str) -> u64 {
    let port = address
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    port.parse()
        .unwrap_or_else(|_| panic!("no port in {address}"))
}

#[test]
fn ports_agree_across_files() {
    let compose = compose_config();
    let prometheus = yaml("prometheus/prometheus.yml");
    let alertmanager = yaml("prometheus/alertmanager.yml");
    let targets = yaml("prometheus/targets/xentinel.yml");

    // Webhook: Prometheus scrapes it, Alertmanager posts to it, compose publishes it.
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("xentinel-webhook"))
        .expect("job xentinel-webhook");
    let scraped = job["static_configs"][0]["targets"][0].as_str().unwrap();
    let url = alertmanager["receivers"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|r| {
            r["webhook_configs"][0]["url"]
                .as_str()
                .filter(|_| r["name"] == "xentinel-webhook")
        })
        .expect("xentinel-webhook url");
    let url_address = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap();
    assert_eq!(
        scraped, url_address,
        "Prometheus scrapes the webhook where Alertmanager does not post"
    );
    // The webhook runs inside the demo service (its sim executor moves the model's domains).
    assert!(
        published_ports(&compose, "demo").contains(&port_of(scraped)),
        "the demo service does not publish the webhook's port {scraped}"
    );

    // Exporters: every target is on the demo service, on a port it publishes.
    let demo_ports = published_ports(&compose, "demo");
    let mut hosts = BTreeSet::new();
    for group in targets.as_sequence().unwrap() {
        for target in group["targets"].as_sequence().unwrap() {
            let target = target.as_str().unwrap();
            assert!(
                demo_ports.contains(&port_of(target)),
                "target {target} is not published by the demo service ({demo_ports:?})"
            );
        }
        let host = group["labels"]["host"].as_str().expect("host label");
        assert!(hosts.insert(host.to_owned()), "host {host} listed twice");
    }
    assert_eq!(hosts.len(), 4, "the demo has four hosts");

    // Alertmanager: where Prometheus sends alerts.
    let am = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert_eq!(published_ports(&compose, "alertmanager"), [port_of(am)]);
}

/// The webhook's token is made at the first start (the `token` service, into the
/// `webhook-token` volume) and read from there by the webhook and Alertmanager; no token file is
/// committed or mounted from the repository.
#[test]
fn token_is_generated_into_a_volume_both_sides_read() {
    let compose = compose_config();
    let mounts = |service: &str| -> Vec<String> {
        compose["services"][service]["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    assert!(
        mounts("token")
            .iter()
            .any(|v| v.starts_with("webhook-token:/etc/xentinel")),
        "the token service does not write the webhook-token volume: {:?}",
        mounts("token")
    );
    let script = compose["services"]["token"]["command"][0].as_str().unwrap();
    assert!(
        script.contains("/dev/urandom") && script.contains("/etc/xentinel/webhook.token"),
        "{script}"
    );
    for service in ["alertmanager", "demo"] {
        assert!(
            mounts(service).contains(&"webhook-token:/etc/xentinel:ro".to_owned()),
            "{service} does not mount the webhook-token volume read-only at /etc/xentinel: {:?}",
            mounts(service)
        );
        assert_eq!(
            compose["services"][service]["depends_on"]["token"]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{service} may start before the token exists"
        );
    }
    let command: Vec<&str> = compose["services"]["demo"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(command.contains(&"--webhook.token-file=/etc/xentinel/webhook.token"));
    for (service, _) in compose["services"].as_mapping().unwrap() {
        for (source, _) in bind_mounts(&compose, service.as_str().unwrap()) {
            assert!(
                !source.ends_with(".token"),
                "{service:?} mounts a token file from the repository: {source}"
            );
        }
    }
    let committed = run(Path::new("git"), &["ls-files"]);
    let committed = String::from_utf8_lossy(&committed.stdout);
    assert!(
        !committed.lines().any(|f| f.ends_with(".token")),
        "a token file is committed"
    );
}

#[test]
fn grafana_provisioning_matches_prometheus_and_compose() {
    let prometheus = yaml("prometheus/prometheus.yml");
    let datasources = yaml("grafana/provisioning/datasources/prometheus.yml");
    let providers = yaml("grafana/provisioning/dashboards/xentinel.yml");
    let compose = compose_config();

    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["uid"].as_str(), Some("xentinel-prometheus"));
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    assert_eq!(
        datasource["jsonData"]["timeInterval"].as_str(),
        prometheus["global"]["scrape_interval"].as_str(),
        "Grafana's timeInterval differs from Prometheus' scrape_interval"
    );
    let url = datasource["url"].as_str().unwrap();
    assert_eq!(published_ports(&compose, "prometheus"), [port_of(url)]);

    // The provider reads the directory compose mounts grafana/dashboards at.
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let dashboards = repo_root().join("grafana/dashboards");
    let mounts = bind_mounts(&compose, "grafana");
    assert!(
        mounts
            .iter()
            .any(|(source, target)| Path::new(source) == dashboards && target == path),
        "grafana/dashboards is not mounted at {path}: {mounts:?}"
    );
    let home =
        compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
            .as_str()
            .unwrap();
    let home_file = home
        .strip_prefix(path)
        .expect("home dashboard is a provisioned one");
    assert!(
        dashboards.join(home_file.trim_start_matches('/')).is_file(),
        "home dashboard {home} does not exist"
    );
}
