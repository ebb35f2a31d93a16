//! Pure mapping from libxenstat's raw values to the domain model: units, states, device names.

use crate::snapshot::{Collection, DomainState, DomainStats, HostStats, NetIf, Vbd, Vcpu};

use super::raw::{RawDomain, RawNode, RawVbd};

/// Bytes per block-I/O sector as blkback counts them.
const SECTOR_BYTES: u64 = 512;

/// Adds a node's host totals and per-domain stats to `out`.
pub fn map(raw: &RawNode, out: &mut Collection) {
    out.host = Some(HostStats {
        memory_total_bytes: raw.tot_mem,
        memory_free_bytes: raw.free_mem,
        cpus: raw.num_cpus,
        cpu_hz: raw.cpu_hz,
        xen_version: raw.xen_version.clone(),
    });
    for d in &raw.domains {
        out.stats.insert(d.id, domain(d));
    }
}

fn domain(d: &RawDomain) -> DomainStats {
    DomainStats {
        domid: d.id,
        name: d.name.clone(),
        state: Some(DomainState::from_flags(
            d.dying, d.crashed, d.shutdown, d.paused, d.running,
        )),
        cpu_seconds: ns_to_seconds(d.cpu_ns),
        vcpus: d
            .vcpus
            .iter()
            .map(|v| Vcpu {
                id: v.id,
                online: v.online,
                cpu_seconds: ns_to_seconds(v.ns),
            })
            .collect(),
        vcpu_count: d.num_vcpus,
        memory_bytes: d.cur_mem,
        // libxenstat reports an unlimited max_pages as (unsigned long long)-1.
        memory_max_bytes: (d.max_mem != u64::MAX).then_some(d.max_mem),
        ssid: Some(d.ssid),
        networks: d
            .networks
            .iter()
            .map(|n| NetIf {
                id: n.id,
                rx_bytes: n.rbytes,
                rx_packets: n.rpackets,
                rx_errors: n.rerrs,
                rx_drops: n.rdrop,
                tx_bytes: n.tbytes,
                tx_packets: n.tpackets,
                tx_errors: n.terrs,
                tx_drops: n.tdrop,
            })
            .collect(),
        // A vbd whose statistics libxenstat could not read carries garbage
        // counters: leave it out rather than render them.
        vbds: d.vbds.iter().filter(|b| !b.error).map(vbd).collect(),
    }
}

fn vbd(b: &RawVbd) -> Vbd {
    Vbd {
        device: device_name(b.dev),
        read_requests: b.rd_reqs,
        write_requests: b.wr_reqs,
        read_bytes: b.rd_sects.saturating_mul(SECTOR_BYTES),
        write_bytes: b.wr_sects.saturating_mul(SECTOR_BYTES),
        oo_requests: b.oo_reqs,
        // libxenstat has no count of failed requests.
    }
}

fn ns_to_seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The device name for a Xen virtual device number, as the domain's
/// configuration names it (`vdev` in xl), after Xen's
/// `docs/misc/vbd-interface.txt`:
///
/// | number                              | name                  |
/// |-------------------------------------|-----------------------|
/// | `1 << 28 \| disk << 8 \| partition` | xvd, disks 16 onwards |
/// | `202 << 8 \| disk << 4 \| partition`| xvd, disks 0..15      |
/// | `8 << 8 \| disk << 4 \| partition`  | sd, disks 0..15       |
/// | `3 << 8 \| disk << 6 \| partition`  | hd, disks 0..1        |
/// | `22 << 8 \| (disk-2) << 6 \| part.` | hd, disks 2..3        |
///
/// Partition 0 is the whole disk (`xvda`); others append their number
/// (`xvda1`). Any other number is rendered as itself.
pub fn device_name(dev: u32) -> String {
    const EXTENDED: u32 = 1 << 28;
    let (prefix, disk, partition) = if dev & !(EXTENDED - 1) == EXTENDED {
        ("xvd", (dev >> 8) & 0xf_ffff, dev & 0xff)
    } else if dev >> 16 != 0 {
        return dev.to_string();
    } else {
        let (major, minor) = (dev >> 8, dev & 0xff);
        match major {
            202 => ("xvd", minor >> 4, minor & 0xf),
            8 => ("sd", minor >> 4, minor & 0xf),
            3 => ("hd", minor >> 6, minor & 0x3f),
            22 => ("hd", 2 + (minor >> 6), minor & 0x3f),
            _ => return dev.to_string(),
        }
    };
    let mut name = format!("{prefix}{}", disk_letters(disk));
    if partition != 0 {
        name.push_str(&partition.to_string());
    }
    name
}

/// Disk index to letters: 0 → `a`, 25 → `z`, 26 → `aa`, 701 → `zz`, 702 → `aaa`.
fn disk_letters(mut disk: u32) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (disk % 26) as u8);
        if disk < 26 {
            break;
        }
        disk = disk / 26 - 1;
    }
    letters.reverse();
    String::from_utf8(letters).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> RawNode {
        let text = include_str!("../../../tests/fixtures/xenstat-node.json");
        serde_json::from_str(text).expect("tests/fixtures/xenstat-node.json is a RawNode")
    }

    #[test]
    fn host_totals_are_copied() {
        let mut c = Collection::default();
        map(&fixture(), &mut c);
        assert_eq!(
            c.host,
            Some(HostStats {
                memory_total_bytes: 137_406_857_216,
                memory_free_bytes: 94_012_604_416,
                cpus: 16,
                cpu_hz: 2_394_454_000,
                xen_version: Some("4.17.6-pre".into()),
            })
        );
        assert_eq!(c.stats.keys().copied().collect::<Vec<_>>(), [0, 7, 12]);
    }

    #[test]
    fn dom0_maps_exactly() {
        let mut c = Collection::default();
        map(&fixture(), &mut c);
        assert_eq!(
            c.stats[&0],
            DomainStats {
                domid: 0,
                name: Some("Domain-0".into()),
                state: Some(DomainState::Running),
                cpu_seconds: 18_734.512_839_41,
                vcpus: vec![
                    Vcpu {
                        id: 0,
                        online: true,
                        cpu_seconds: 9_512.004_113_288,
                    },
                    Vcpu {
                        id: 1,
                        online: true,
                        cpu_seconds: 9_222.508_726_122,
                    },
                ],
                vcpu_count: 2,
                memory_bytes: 4_294_967_296,
                memory_max_bytes: None,
                ssid: Some(0),
                networks: vec![],
                vbds: vec![],
            }
        );
    }

    #[test]
    fn running_domu_maps_exactly() {
        let mut c = Collection::default();
        map(&fixture(), &mut c);
        assert_eq!(
            c.stats[&7],
            DomainStats {
                domid: 7,
                name: Some("web01".into()),
                state: Some(DomainState::Blocked),
                cpu_seconds: 52_118.337_004_51,
                vcpus: vec![
                    Vcpu {
                        id: 0,
                        online: true,
                        cpu_seconds: 13_101.230_118_004,
                    },
                    Vcpu {
                        id: 1,
                        online: true,
                        cpu_seconds: 13_044.879_410_731,
                    },
                    Vcpu {
                        id: 2,
                        online: true,
                        cpu_seconds: 12_988.102_557_309,
                    },
                    Vcpu {
                        id: 3,
                        online: false,
                        cpu_seconds: 12_984.124_918_466,
                    },
                ],
                vcpu_count: 4,
                memory_bytes: 8_589_934_592,
                memory_max_bytes: Some(8_598_323_200),
                ssid: Some(0),
                networks: vec![NetIf {
                    id: 0,
                    rx_bytes: 918_273_645_511,
                    rx_packets: 702_115_448,
                    rx_errors: 0,
                    rx_drops: 17,
                    tx_bytes: 88_412_993_102,
                    tx_packets: 455_902_118,
                    tx_errors: 0,
                    tx_drops: 3,
                }],
                vbds: vec![
                    Vbd {
                        device: "xvda".into(),
                        read_requests: 4_822_119,
                        write_requests: 19_004_552,
                        read_bytes: 312_660_001 * 512,
                        write_bytes: 1_206_553_880 * 512,
                        oo_requests: 12,
                    },
                    Vbd {
                        device: "xvdb".into(),
                        read_requests: 90_113,
                        write_requests: 1_440,
                        read_bytes: 11_534_336 * 512,
                        write_bytes: 184_320 * 512,
                        oo_requests: 0,
                    },
                ],
            }
        );
    }

    #[test]
    fn paused_domu_maps_exactly_and_drops_unreadable_vbds() {
        let mut c = Collection::default();
        map(&fixture(), &mut c);
        let d = &c.stats[&12];
        assert_eq!(d.name.as_deref(), Some("db02"));
        // paused and blocked both set: paused wins.
        assert_eq!(d.state, Some(DomainState::Paused));
        assert_eq!(d.cpu_seconds, 3_605.911_027_733);
        assert_eq!(d.vcpu_count, 2);
        assert_eq!(d.memory_bytes, 17_179_869_184);
        assert_eq!(d.memory_max_bytes, Some(17_188_257_792));
        assert_eq!(d.ssid, Some(0));
        assert_eq!(d.networks.iter().map(|n| n.id).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(d.networks[1].rx_bytes, 5_120_443);
        assert_eq!(d.networks[1].tx_packets, 38_007);
        // the fixture's third vbd has error=true and garbage counters.
        assert_eq!(
            d.vbds,
            vec![
                Vbd {
                    device: "xvda".into(),
                    read_requests: 1_203_877,
                    write_requests: 2_994_015,
                    read_bytes: 73_300_775_936,
                    write_bytes: 160_394_264_576,
                    oo_requests: 0,
                },
                Vbd {
                    device: "xvdq1".into(),
                    read_requests: 5_002,
                    write_requests: 77,
                    read_bytes: 41_472_000,
                    write_bytes: 315_392,
                    oo_requests: 0,
                },
            ]
        );
    }

    #[test]
    fn device_numbers_follow_vbd_interface_txt() {
        let cases = [
            (202 << 8, "xvda"),
            ((202 << 8) | (1 << 4), "xvdb"),
            ((202 << 8) | (15 << 4) | 15, "xvdp15"),
            ((1 << 28) | (16 << 8), "xvdq"),
            ((1 << 28) | (16 << 8) | 1, "xvdq1"),
            ((1 << 28) | (26 << 8), "xvdaa"),
            ((1 << 28) | (701 << 8) | 255, "xvdzz255"),
            ((1 << 28) | (702 << 8), "xvdaaa"),
            ((1 << 28) | (2 << 8), "xvdc"),
            (8 << 8, "sda"),
            ((8 << 8) | (2 << 4) | 3, "sdc3"),
            (3 << 8, "hda"),
            ((3 << 8) | (1 << 6) | 63, "hdb63"),
            (22 << 8, "hdc"),
            ((22 << 8) | (1 << 6) | 2, "hdd2"),
            (51713, "xvda1"),
            (768, "hda"),
            (5632, "hdc"),
            (7 << 8, "1792"),
            (2 << 28, "536870912"),
            (0x0001_0000, "65536"),
            (0, "0"),
        ];
        for (dev, name) in cases {
            assert_eq!(device_name(dev), name, "device {dev:#x}");
        }
    }

    #[test]
    fn raw_node_round_trips_through_json() {
        let raw = fixture();
        let again: RawNode = serde_json::from_str(&serde_json::to_string(&raw).unwrap()).unwrap();
        assert_eq!(raw, again);
        assert_eq!(raw.domains[0].max_mem, u64::MAX);
    }
}
