//! Every metric name xentinel's exporter writes (docs/metrics.md describes
//! them), as constants: the renderer writes them and the planner reads them
//! back from Prometheus or from an exporter's `/metrics`.

// Per domain (labels `domain`, `uuid`, and the family's own).
pub const DOMAIN_INFO: &str = "xen_domain_info";
pub const DOMAIN_STATE: &str = "xen_domain_state";
pub const DOMAIN_CPU_SECONDS: &str = "xen_domain_cpu_seconds_total";
pub const DOMAIN_VCPU_SECONDS: &str = "xen_domain_vcpu_seconds_total";
pub const DOMAIN_VCPU_ONLINE: &str = "xen_domain_vcpu_online";
pub const DOMAIN_VCPUS: &str = "xen_domain_vcpus";
pub const DOMAIN_MEMORY_BYTES: &str = "xen_domain_memory_bytes";
pub const DOMAIN_MEMORY_MAX_BYTES: &str = "xen_domain_memory_max_bytes";
pub const DOMAIN_MEMORY_TARGET_BYTES: &str = "xen_domain_memory_target_bytes";
pub const DOMAIN_NET_RECEIVE_BYTES: &str = "xen_domain_network_receive_bytes_total";
pub const DOMAIN_NET_RECEIVE_PACKETS: &str = "xen_domain_network_receive_packets_total";
pub const DOMAIN_NET_RECEIVE_ERRORS: &str = "xen_domain_network_receive_errors_total";
pub const DOMAIN_NET_RECEIVE_DROPS: &str = "xen_domain_network_receive_drops_total";
pub const DOMAIN_NET_TRANSMIT_BYTES: &str = "xen_domain_network_transmit_bytes_total";
pub const DOMAIN_NET_TRANSMIT_PACKETS: &str = "xen_domain_network_transmit_packets_total";
pub const DOMAIN_NET_TRANSMIT_ERRORS: &str = "xen_domain_network_transmit_errors_total";
pub const DOMAIN_NET_TRANSMIT_DROPS: &str = "xen_domain_network_transmit_drops_total";
pub const DOMAIN_BLOCK_READ_BYTES: &str = "xen_domain_block_read_bytes_total";
pub const DOMAIN_BLOCK_WRITE_BYTES: &str = "xen_domain_block_write_bytes_total";
pub const DOMAIN_BLOCK_READ_REQUESTS: &str = "xen_domain_block_read_requests_total";
pub const DOMAIN_BLOCK_WRITE_REQUESTS: &str = "xen_domain_block_write_requests_total";
pub const DOMAIN_BLOCK_OO_REQUESTS: &str = "xen_domain_block_oo_requests_total";
pub const DOMAIN_GUEST_PAGE_FAULTS: &str = "xen_domain_guest_page_faults_total";
pub const DOMAIN_GUEST_MEMORY_AVAILABLE_BYTES: &str = "xen_domain_guest_memory_available_bytes";
pub const DOMAIN_GUEST_SWAP_USED_BYTES: &str = "xen_domain_guest_swap_used_bytes";
pub const DOMAIN_GUEST_REPORT_AGE_SECONDS: &str = "xen_domain_guest_report_age_seconds";
pub const DOMAIN_PROBE_DURATION_SECONDS: &str = "xen_domain_probe_duration_seconds";
pub const DOMAIN_PROBE_SUCCESS: &str = "xen_domain_probe_success";

// Host.
pub const HOST_INFO: &str = "xen_host_info";
pub const HOST_MEMORY_TOTAL_BYTES: &str = "xen_host_memory_total_bytes";
pub const HOST_MEMORY_FREE_BYTES: &str = "xen_host_memory_free_bytes";
pub const HOST_CPUS: &str = "xen_host_cpus";
pub const HOST_CPU_HZ: &str = "xen_host_cpu_hz";
pub const HOST_DOMAINS: &str = "xen_host_domains";
pub const DOMAIN_MIGRATION_DURATION_SECONDS: &str = "xen_domain_migration_duration_seconds";
/// `xentinel_dom0_load1`, `…5`, `…15`.
pub const DOM0_LOAD: [&str; 3] = [
    "xentinel_dom0_load1",
    "xentinel_dom0_load5",
    "xentinel_dom0_load15",
];
pub const DOM0_MEMORY_AVAILABLE_BYTES: &str = "xentinel_dom0_memory_available_bytes";
pub const DOM0_MEMORY_TOTAL_BYTES: &str = "xentinel_dom0_memory_total_bytes";
pub const DOM0_TEMPERATURE_CELSIUS: &str = "xentinel_dom0_temperature_celsius";
pub const HOST_WARNING: &str = "xentinel_host_warning";
pub const HOST_HARDWARE_ERRORS: &str = "xentinel_host_hardware_errors_total";

// xentinel itself.
pub const BUILD_INFO: &str = "xentinel_build_info";
pub const SOURCE_UP: &str = "xentinel_source_up";
pub const SOURCE_DURATION_SECONDS: &str = "xentinel_source_duration_seconds";
pub const GUEST_REPORTS_REJECTED: &str = "xentinel_guest_reports_rejected_total";

// The heartbeat mesh (label `peer`).
pub const HEARTBEAT_RTT_SECONDS: &str = "xentinel_heartbeat_rtt_seconds";
pub const HEARTBEAT_SENT: &str = "xentinel_heartbeat_sent_total";
pub const HEARTBEAT_RECEIVED: &str = "xentinel_heartbeat_received_total";
pub const HEARTBEAT_LOST: &str = "xentinel_heartbeat_lost_total";
pub const HEARTBEAT_LATE: &str = "xentinel_heartbeat_late_total";
pub const HEARTBEAT_PEER_UP: &str = "xentinel_heartbeat_peer_up";
pub const HEARTBEAT_LONGEST_GAP_SECONDS: &str = "xentinel_heartbeat_longest_gap_seconds";
pub const HEARTBEAT_REJECTED: &str = "xentinel_heartbeat_rejected_total";
