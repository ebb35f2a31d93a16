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
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !firing.contains(*n) || !quiet.contains(*n))
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

/// The real Alertmanager (upstream or Debian name) loads the configuration and serves it.
#[test]
fn alertmanager_loads_the_config() {
    let binary = tool(
        &["alertmanager", "prometheus-alertmanager"],
        "prometheus-alertmanager",
    );
    let storage = env::temp_dir().join(format!("xentinel-am-{}", std::process::id()));
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
    drop(child);
    let _ = fs::remove_dir_all(&storage);
    // The served configuration is ours: the webhook receiver and its URL.
    assert!(
        status.contains("xentinel-webhook") && status.contains("demo:10027/alerts"),
        "Alertmanager serves another configuration:\n{status}"
    );
}

#[test]
fn evacuations_route_to_the_webhook_and_nothing_else_does() {
    let amtool = amtool();
    let config = "--config.file=prometheus/alertmanager.yml";
    run(
        &amtool,
        &[
            "config",
            "routes",
            "test",
            config,
            "--verify.receivers=xentinel-webhook",
            "alertname=XentinelHostWarningFailure",
            "xentinel_action=evacuate",
            "host=xen1",
        ],
    );
    run(
        &amtool,
        &[
            "config",
            "routes",
            "test",
            config,
            "--verify.receivers=default",
            "alertname=XentinelExporterDown",
            "host=xen1",
        ],
    );
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

/// The host side of each `ports` entry of a service, as `docker-compose config` prints them.
fn published_ports(compose: &Value, service: &str) -> Vec<u64> {
    compose["services"][service]["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["published"].as_u64())
        .collect()
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
    assert!(count >= 6, "only {count} bind mounts");
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

#[test]
fn token_file_is_mounted_where_alertmanager_reads_it() {
    let compose = compose_config();
    for service in ["alertmanager", "demo"] {
        assert!(
            bind_mounts(&compose, service)
                .iter()
                .any(|(_, target)| target == "/etc/xentinel/webhook.token"),
            "{service} does not mount /etc/xentinel/webhook.token"
        );
    }
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
