//! Located errors, all at once; values; defaults.

use std::time::Duration;

use super::*;

/// (line, column, field) of each error, for comparing locations.
fn located(errs: &[ConfigError]) -> Vec<(usize, usize, &str)> {
    errs.iter()
        .map(|e| (e.line, e.column, e.field.as_str()))
        .collect()
}

#[test]
fn durations_parse_like_prometheus() {
    assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
    assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("ten s").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn empty_and_missing_files_are_defaults() {
    let c = load_str("", "x.yml").unwrap();
    assert_eq!(*c.exporter.source_timeout, Dur(Duration::from_secs(5)));
    assert_eq!(*c.exporter.xenstore_resync, Dur(Duration::from_secs(60)));
    assert!(load(None).is_ok());
}

#[test]
fn every_error_is_reported_at_once_with_file_line_column_and_field() {
    let text = "\
exporter:
  source: xenn
  source_timeout: 5 parsecs
  xenstore: true
warnings:
  temperature_celsius: hot
  tempreature: 80
bogus: 1
";
    let errs = load_str(text, "/etc/xentinel.yml").unwrap_err().0;
    let got = located(&errs);
    assert_eq!(
        got,
        [
            (2, 11, "exporter.source"),
            (3, 19, "exporter.source_timeout"),
            (6, 24, "warnings.temperature_celsius"),
            (7, 3, "warnings.tempreature"),
            (8, 1, "bogus"),
        ],
        "{errs:#?}"
    );
    assert!(
        errs[0]
            .to_string()
            .starts_with("/etc/xentinel.yml:2:11: exporter.source: unknown variant `xenn`")
    );
    assert!(errs[1].message.contains("invalid duration"));
    assert_eq!(errs[3].message, "unknown field");
}

#[test]
fn webhook_section_reports_located_errors() {
    let text =
        "webhook:\n  headroom_bytes: lots\n  executor:\n    timeout: forever\n    comand: [x]\n";
    let errs = load_str(text, "w.yml").unwrap_err().0;
    let got: Vec<_> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "webhook.headroom_bytes"),
            (4, "webhook.executor.timeout"),
            (5, "webhook.executor.comand"),
        ],
        "{errs:#?}"
    );
    let ok = load_str("webhook:\n  executor:\n    command: [sh, -c, x]\n", "w").unwrap();
    assert_eq!(ok.webhook.executor.command.0, ["sh", "-c", "x"]);
    let errs = load_str(
        "webhook:\n  executor:\n    retry_backoff: 2s\n    retries: 11\n",
        "w",
    )
    .unwrap_err()
    .0;
    let got: Vec<_> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(got, [(4, "webhook.executor.retries")], "{errs:#?}");
    let ok = load_str(
        "webhook:\n  executor:\n    retries: 0\n    retry_backoff: 2s\n",
        "w",
    )
    .unwrap();
    assert_eq!(
        (
            *ok.webhook.executor.retries,
            ok.webhook.executor.retry_backoff.0.0
        ),
        (0, Duration::from_secs(2))
    );
    assert_eq!(
        Config::default().webhook.executor.state_command.0,
        ["xl", "list", "{domain}"]
    );
    let text = "webhook:\n  exporters:\n    - host: a\n      url: http://a:1/metrics\n    - host: b\n    - host: a\n      url: http://x:1/metrics\n    - host: c\n      url: http://c:1/metrics\n      uri: x\n";
    let errs = load_str(text, "w.yml").unwrap_err().0;
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                5,
                "webhook.exporters[1]",
                "missing host or url: an exporter needs both"
            ),
            (6, "webhook.exporters[2]", "duplicate exporter host \"a\""),
            (10, "webhook.exporters[3].uri", "unknown field"),
        ],
        "{errs:#?}"
    );
    let text = "webhook:\n  exporters:\n    - host: a\n      url: http://a:1/metrics\n";
    let ok = load_str(text, "w.yml").unwrap();
    let got: Vec<(&str, &str)> = ok
        .webhook
        .exporters
        .iter()
        .map(|e| (e.host.as_str(), e.url.as_str()))
        .collect();
    assert_eq!(got, [("a", "http://a:1/metrics")]);
    assert_eq!(*ok.webhook.headroom_bytes, 512 << 20);
}

#[test]
fn a_sequence_where_a_scalar_belongs_is_an_error_not_a_panic() {
    let errs = load_str(
        "warnings:\n  maintenance_xenstore_key: [x, y]\n  temperature_celsius: hot\n",
        "c.yml",
    )
    .unwrap_err()
    .0;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        (errs[0].line, errs[0].field.as_str()),
        (2, "warnings.maintenance_xenstore_key")
    );
    assert!(errs[0].message.contains("sequence"), "{}", errs[0]);
    // The lenient pass works again afterwards.
    let errs = load_str(
        "warnings:\n  temperature_celsius: hot\n  tempreature: 1\n",
        "c.yml",
    )
    .unwrap_err()
    .0;
    assert_eq!(errs.len(), 2);
}

#[test]
fn syntax_errors_are_located() {
    let errs = load_str("exporter:\n  source: [xen\n", "c.yml")
        .unwrap_err()
        .0;
    assert_eq!(errs.len(), 1);
    assert!(errs[0].line >= 2, "{:?}", errs[0]);
}

#[test]
fn heartbeat_and_probe_errors_are_located_all_at_once() {
    let text = "\
heartbeat:
  listen: nowhere
  interval: 1ms
  down_after: 0
  peers:
    - name: h2
      address: 10.0.0.2
    - name: h3
    - name: h2
      address: 10.0.0.9:10026
    - name: \"has space\"
      address: h4:1
  gap_window: soon
probes:
  - domain: web
    target: ftp://x
  - domain: db
exporter:
  probe_timeout: 2 parsecs
";
    let errs = load_str(text, "c.yml").unwrap_err().0;
    let got = located(&errs);
    assert_eq!(
        got,
        [
            (2, 11, "heartbeat.listen"),
            (3, 13, "heartbeat.interval"),
            (4, 15, "heartbeat.down_after"),
            (7, 16, "heartbeat.peers[0].address"),
            (8, 5, "heartbeat.peers[1]"),
            (9, 5, "heartbeat.peers[2]"),
            (11, 13, "heartbeat.peers[3].name"),
            (13, 15, "heartbeat.gap_window"),
            (16, 13, "probes[0].target"),
            (17, 3, "probes[1]"),
            (19, 18, "exporter.probe_timeout"),
        ],
        "{errs:#?}"
    );
    assert!(errs[1].message.contains("out of range 10ms..60s"));
    assert!(errs[2].message.contains("0 out of range 1..1000"));
    assert!(errs[4].message.contains("missing name or address"));
    assert!(errs[5].message.contains("duplicate peer name \"h2\""));
    assert!(errs[8].message.contains("invalid probe target"));
}

#[test]
fn heartbeat_and_probe_values_are_taken() {
    let c = load_str(
        "heartbeat:\n  listen: \":10026\"\n  interval: 10ms\n  name: h1\n  peers:\n    - {name: h2, address: \"[::1]:10026\"}\nprobes:\n  - domain: web\n    target: http://10.0.0.5\n",
        "c",
    )
    .unwrap();
    let hb = &c.heartbeat;
    assert!(hb.enabled());
    assert_eq!(hb.listen.unwrap().0, "0.0.0.0:10026".parse().unwrap());
    assert_eq!(hb.interval.0.0, Duration::from_millis(10));
    assert_eq!(hb.peers[0].address.0.0, "[::1]:10026");
    assert_eq!(*hb.down_after, Bounded(3));
    assert_eq!(c.probes[0].target.to_string(), "http://10.0.0.5:80/");
    assert!(!Config::default().heartbeat.enabled());
}

#[test]
fn probe_targets_parse_strictly() {
    assert!(matches!(
        ProbeTarget::parse("tcp://h:80"),
        Ok(ProbeTarget::Tcp(_))
    ));
    assert!(ProbeTarget::parse("tcp://h").is_err());
    assert!(ProbeTarget::parse("tcp://h:0").is_err());
    assert!(ProbeTarget::parse("http://h:99999/").is_err());
    assert!(ProbeTarget::parse("http://h/a b").is_err());
    assert!(ProbeTarget::parse("gopher://h:70").is_err());
    assert_eq!(
        ProbeTarget::parse("http://[::1]:8080/x")
            .unwrap()
            .to_string(),
        "http://[::1]:8080/x"
    );
}

#[test]
fn good_values_are_taken() {
    let c = load_str(
        "exporter:\n  source: xen\n  source_timeout: 2s\n  xenstore_resync: 90s\nwarnings:\n  temperature_celsius: 75.5\n",
        "c",
    )
    .unwrap();
    assert_eq!(*c.exporter.source, Some(SourceKind::Xen));
    assert_eq!(c.exporter.source_timeout.0, Dur(Duration::from_secs(2)));
    assert_eq!(c.exporter.xenstore_resync.0, Dur(Duration::from_secs(90)));
    assert_eq!(*c.warnings.temperature_celsius, 75.5);
}

/// A list that fails on one item keeps the stream in step: the item's
/// error and the file's other errors come together; a mapping where a list
/// or a scalar belongs is one located error, not stray "unknown fields".
#[test]
fn bad_list_items_and_misplaced_mappings_are_located() {
    let errs = load_str("heartbeat:\n  peers: [x, y]\n  interval: 1ms\n", "c.yml")
        .unwrap_err()
        .0;
    assert_eq!(
        located(&errs),
        [(2, 11, "heartbeat.peers[0]"), (3, 13, "heartbeat.interval")],
        "{errs:#?}"
    );
    for (text, at) in [
        (
            "warnings:\n  ups_command: {a: 1}\n  temperature_celsius: hot\n",
            (2, 16, "warnings.ups_command"),
        ),
        (
            "warnings:\n  maintenance_xenstore_key: {a: 1}\n  tempreature: 1\n",
            (2, 29, "warnings.maintenance_xenstore_key"),
        ),
        (
            "webhook:\n  exporters: [{host: [a], url: x}]\n  headroom_bytes: x\n",
            (2, 22, "webhook.exporters[0].host"),
        ),
    ] {
        let errs = load_str(text, "c.yml").unwrap_err().0;
        assert_eq!(located(&errs), [at], "{text:?}: {errs:#?}");
    }
}
