//! BGP routes over BMP from real routers.
//!
//! - Debian's `gobgpd` streams its local RIB (RFC 9069) to `weir run`;
//!   routes added and deleted with the `gobgp` CLI become the flows'
//!   destination AS and mask (the `routing` providers) and their AS path
//!   and communities (DstASPath, DstCommunities), a withdrawn route stops
//!   answering, garbage on a BMP connection is counted without killing
//!   it, and the routes of a session that closed go after `bmp.keep_s`.
//! - Debian's FRR `bgpd -M bmp` monitors its iBGP peer, a `gobgpd`: the
//!   peer's routes come with their communities and large communities
//!   (DstLargeCommunities, the optional Src ones) and next hop (NextHop,
//!   from the `routing` net provider), a withdrawn one goes,
//!   and when the peer goes down (a BMP Peer Down, the BMP session staying
//!   up) its routes go after `bmp.keep_s`.
//! - A `gobgpd` monitoring its iBGP peer, another `gobgpd` that sends two
//!   ADD-PATH paths of one prefix, reports both (pre-policy): they are
//!   kept apart, and withdrawing one leaves the other.

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    free_tcp_port, free_udp_port, query, send_ipfix, temp_dir, two_shards, wait_rows_inserted, wait_until,
    wait_until_else, write_config, Collector,
};
use weir_core::flow::addr_from_ip;
use weir_core::FlowRecord;

/// From 127.0.0.1, one IPFIX datagram: 10 flows to `dst` with DstPort
/// `round`, the flow's own destination mask 8 and no AS.
fn send(port: u16, dst: &str, round: u16) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let flows: Vec<FlowRecord> = (0..10)
        .map(|i| {
            let mut f = FlowRecord::default();
            f.set_src_addr(addr_from_ip("10.1.2.3".parse().unwrap()));
            f.set_dst_addr(addr_from_ip(dst.parse().unwrap()));
            f.set_src_port(i);
            f.set_dst_port(round);
            f.set_dst_net_mask(8);
            f.set_proto(17);
            f.set_packets(1);
            f.set_bytes(100);
            f
        })
        .collect();
    send_ipfix(&socket, port, u32::from(round) * 100, &flows);
    10
}

/// gobgpd with its BMP client pointed at `bmp`, its API on `api`.
fn gobgpd(dir: &Path, bmp: u16, api: u16) -> Child {
    let config = dir.join("gobgpd.toml");
    std::fs::write(
        &config,
        format!(
            "[global.config]\n  as = 64500\n  router-id = \"192.0.2.1\"\n  port = -1\n\
             [[bmp-servers]]\n  [bmp-servers.config]\n    address = \"127.0.0.1\"\n    port = {bmp}\n    \
             route-monitoring-policy = \"local-rib\"\n"
        ),
    )
    .unwrap();
    Command::new("gobgpd")
        .arg("-f")
        .arg(&config)
        .arg("--api-hosts")
        .arg(format!("127.0.0.1:{api}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gobgpd (Debian package gobgpd: scripts/setup)")
}

fn gobgp(api: u16, args: &str) {
    let status = Command::new("gobgp")
        .args(["-u", "127.0.0.1", "-p", &api.to_string()])
        .args(args.split_whitespace())
        .status()
        .expect("gobgp");
    assert!(status.success(), "gobgp {args}");
}

#[test]
fn routes_from_gobgpd_give_flows_their_destination_as() {
    let dir = temp_dir("bmp");
    let (port, bmp, api) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let body = format!(
        "{shards}[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\nflush_interval_ms = 200\n\
         optional_columns = [\"DstASPath\", \"DstCommunities\"]\n\
         consolidation_interval_ms = 300\n[store.embedded]\npath = \"{chdb}\"\n\
         [bmp]\nlisten = \"127.0.0.1:{bmp}\"\nkeep_s = 1\npublish_interval_ms = 100\n\
         [enrichment]\nasn_providers = [\"routing\", \"flow\"]\nnet_providers = [\"routing\", \"flow\"]\n",
        shards = two_shards(port, "ebpf"),
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
    );
    let config = write_config(&dir, "weir.toml", &body);
    let c = Collector::start(&config);
    let mut router = gobgpd(&dir, bmp, api);
    let gauge = |name: &str| c.metric(name, "").first().copied().unwrap_or(0);
    wait_until("gobgpd's BMP session", Duration::from_secs(20), || gauge("weir_bmp_sessions") == 1);
    wait_until("gobgpd's API", Duration::from_secs(20), || {
        Command::new("gobgp")
            .args(["-u", "127.0.0.1", "-p", &api.to_string(), "global"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    gobgp(api, "global rib add 198.51.100.0/24 aspath 64501,15169 community 65000:7 nexthop 10.0.0.1 -a ipv4");
    gobgp(api, "global rib add 198.51.0.0/16 aspath 64501,3356 nexthop 10.0.0.1 -a ipv4");
    gobgp(api, "global rib add 2001:db8:100::/48 aspath 64501,13335 nexthop 2001:db8::1 -a ipv6");
    wait_until("three routes", Duration::from_secs(20), || gauge("weir_bmp_routes") == 3);
    assert_eq!(c.metric("weir_bmp_exporter_routes", "exporter=\"127.0.0.1\""), [3]);
    // Garbage on another connection: a well-framed message that does not
    // parse is skipped and the session stays; a stream that is not BMP is closed.
    let mut other = TcpStream::connect(("127.0.0.1", bmp)).unwrap();
    other.write_all(&[3, 0, 0, 0, 6, 4]).unwrap();
    other.write_all(&[3, 0, 0, 0, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).unwrap();
    let malformed = || c.metric("weir_bmp_errors_total", "reason=\"malformed\"").first().copied().unwrap_or(0);
    wait_until("the garbage counted", Duration::from_secs(10), || malformed() == 1);
    assert_eq!(gauge("weir_bmp_sessions"), 2, "the session survives garbage");
    let mut http = TcpStream::connect(("127.0.0.1", bmp)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let version = || c.metric("weir_bmp_errors_total", "reason=\"version\"").first().copied().unwrap_or(0);
    wait_until("a stream that is not BMP refused", Duration::from_secs(10), || version() == 1);
    drop(other);

    // Routes as they are: a /24 inside a /16, and an address without route.
    std::thread::sleep(Duration::from_millis(300));
    let mut sent = send(port, "198.51.100.7", 1) + send(port, "198.51.7.1", 1) + send(port, "203.0.113.1", 1);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    // The /24 withdrawn: the /16 answers.
    gobgp(api, "global rib del 198.51.100.0/24 -a ipv4");
    wait_until("the route withdrawn", Duration::from_secs(20), || gauge("weir_bmp_routes") == 2);
    std::thread::sleep(Duration::from_millis(300));
    sent += send(port, "198.51.100.7", 2);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    let routed = c.metric("weir_routing_lookups_total", "result=\"hit\"").iter().sum::<u64>();
    assert_eq!(routed, 30, "a route for three batches' destinations, none for their sources");
    // The router goes away: its routes stay for keep_s, then go.
    router.kill().unwrap();
    router.wait().unwrap();
    wait_until("the routes removed after keep_s", Duration::from_secs(20), || gauge("weir_bmp_routes") == 0);
    assert_eq!(c.metric("weir_bmp_removed_routes_total", "")[0], 2);
    assert!(c.metric("weir_bmp_messages_total", "type=\"route-monitoring\"")[0] >= 4);
    c.assert_promtool_is_silent();
    c.stop();

    let rows = query(
        &config,
        None,
        "SELECT DstPort, IPv6NumToString(DstAddr), DstAS, DstNetMask, DstASPath, Dst1stAS, Dst2ndAS, DstCommunities, \
         count() FROM weir.flows \
         GROUP BY ALL ORDER BY ALL",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(
        rows,
        [
            "1\t::ffff:198.51.100.7\t15169\t24\t[64501,15169]\t64501\t15169\t[4259840007]\t10",
            "1\t::ffff:198.51.7.1\t3356\t16\t[64501,3356]\t64501\t3356\t[]\t10",
            "1\t::ffff:203.0.113.1\t0\t8\t[]\t0\t0\t[]\t10",
            "2\t::ffff:198.51.100.7\t3356\t16\t[64501,3356]\t64501\t3356\t[]\t10",
        ],
        "{rows:#?}"
    );
}

/// FRR's bgpd (`/usr/lib/frr/bgpd`, Debian package frr) in AS 64500 on
/// 127.0.0.1:`port`, without zebra, with an iBGP session to 127.0.0.2:`peer`
/// and its BMP client monitoring it towards `bmp`: pre-policy, which needs
/// `soft-reconfiguration inbound` (FRR 8.4 reports withdrawals only
/// without it). FRR 8.4 negotiates ADD-PATH with the peer but sends its
/// routes without path ids, one path per prefix.
fn frr_bgpd(dir: &Path, port: u16, peer: u16, bmp: u16) -> Child {
    let config = dir.join("bgpd.conf");
    std::fs::write(
        &config,
        format!(
            "frr defaults traditional\nrouter bgp 64500\n bgp router-id 192.0.2.1\n\
             neighbor 127.0.0.2 remote-as 64500\n neighbor 127.0.0.2 port {peer}\n\
             neighbor 127.0.0.2 update-source 127.0.0.1\n\
             address-family ipv4 unicast\n  neighbor 127.0.0.2 soft-reconfiguration inbound\n exit-address-family\n\
             address-family ipv6 unicast\n  neighbor 127.0.0.2 activate\n  \
             neighbor 127.0.0.2 soft-reconfiguration inbound\n exit-address-family\n\
             bmp targets weir\n  bmp monitor ipv4 unicast pre-policy\n  bmp monitor ipv6 unicast pre-policy\n  \
             bmp connect 127.0.0.1 port {bmp} min-retry 100 max-retry 500\n exit\n"
        ),
    )
    .unwrap();
    Command::new("/usr/lib/frr/bgpd")
        .arg("-f")
        .arg(&config)
        .arg("-i")
        .arg(dir.join("bgpd.pid"))
        .arg("-z")
        .arg(dir.join("zserv.api"))
        .arg("--vty_socket")
        .arg(dir)
        .args(["-p", &port.to_string(), "-l", "127.0.0.1", "--no_zebra", "--skip_runas", "-M", "bmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("FRR's bgpd (Debian package frr: scripts/setup)")
}

/// gobgpd as an iBGP peer on 127.0.0.2:`port`, sending up to 8 IPv4 paths
/// per prefix (ADD-PATH) to 127.0.0.1:`remote`; its API on `api`.
fn gobgpd_peer(dir: &Path, port: u16, remote: u16, api: u16) -> Child {
    let config = dir.join("peer.toml");
    let ipv6 = "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n";
    std::fs::write(
        &config,
        ibgp_config(("192.0.2.2", "127.0.0.2", port), ("127.0.0.1", remote), false, "send-max = 8", ipv6),
    )
    .unwrap();
    spawn_gobgpd(&config, api)
}

/// A gobgpd config in AS 64500: router id, address and port of its own;
/// its iBGP neighbour's address and port; the IPv4 unicast ADD-PATH
/// setting; then `more` (other families, BMP servers). The `passive` side
/// only listens, so the two never collide; the other retries its
/// connection every second (gobgpd's default is 120 s: a first try lost to
/// the other side's start held the session down past the test's wait), and
/// both come back a second after a reset (default 30 s).
fn ibgp_config(own: (&str, &str, u16), neighbour: (&str, u16), passive: bool, add_paths: &str, more: &str) -> String {
    let ((id, address, port), (peer, remote)) = (own, neighbour);
    format!(
        "[global.config]\n  as = 64500\n  router-id = \"{id}\"\n  port = {port}\n  \
         local-address-list = [\"{address}\"]\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{peer}\"\n    peer-as = 64500\n  \
         [neighbors.transport.config]\n    remote-port = {remote}\n    local-address = \"{address}\"\n    \
         passive-mode = {passive}\n  \
         [neighbors.timers.config]\n    connect-retry = 1\n    idle-hold-time-after-reset = 1\n  \
         [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n    \
         [neighbors.afi-safis.add-paths.config]\n      {add_paths}\n{more}"
    )
}

/// gobgpd on `config`, its log beside it (`router.toml` → `router.log`).
fn spawn_gobgpd(config: &Path, api: u16) -> Child {
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    Command::new("gobgpd")
        .arg("-f")
        .arg(config)
        .arg("--api-hosts")
        .arg(format!("127.0.0.1:{api}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("gobgpd (Debian package gobgpd: scripts/setup)")
}

fn wait_api(api: u16) {
    wait_until("gobgpd's API", Duration::from_secs(20), || {
        Command::new("gobgp")
            .args(["-u", "127.0.0.1", "-p", &api.to_string(), "global"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
}

/// What the routers in `dir` say of themselves, for a failed wait: each
/// API's `gobgp neighbor` and the tail of each gobgpd log.
fn routers(dir: &Path, apis: &[u16]) -> String {
    let mut said = String::new();
    for api in apis {
        let out = Command::new("gobgp").args(["-u", "127.0.0.1", "-p", &api.to_string(), "neighbor"]).output();
        let out = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        said += &format!("gobgp -p {api} neighbor:\n{out}\n");
    }
    for log in ["router.log", "peer.log"] {
        let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        said += &format!("{log}:\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    said
}

/// Kills `child` when dropped (a failed assertion leaves no router behind).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A collector with the embedded store, BMP on `bmp` (`keep_s` 2) and
/// the routing providers; `optional`: optional columns.
fn collector_config(dir: &Path, port: u16, bmp: u16, optional: &str) -> std::path::PathBuf {
    let body = format!(
        "{shards}[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\nflush_interval_ms = 200\n\
         optional_columns = [{optional}]\n\
         consolidation_interval_ms = 300\n[store.embedded]\npath = \"{chdb}\"\n\
         [bmp]\nlisten = \"127.0.0.1:{bmp}\"\nkeep_s = 2\npublish_interval_ms = 100\n\
         [enrichment]\nasn_providers = [\"routing\", \"flow\"]\nnet_providers = [\"routing\", \"flow\"]\n",
        shards = two_shards(port, "ebpf"),
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
    );
    write_config(dir, "weir.toml", &body)
}

/// One IPFIX flow from 198.51.100.9 to `dst`, DstPort `round`.
fn send_one(port: u16, dst: &str, round: u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut f = FlowRecord::default();
    f.set_src_addr(addr_from_ip("198.51.100.9".parse().unwrap()));
    f.set_dst_addr(addr_from_ip(dst.parse().unwrap()));
    f.set_dst_port(round);
    f.set_proto(6);
    f.set_packets(1);
    f.set_bytes(100);
    send_ipfix(&socket, port, u32::from(round), &[f]);
}

#[test]
fn frr_reports_its_peer_routes_and_its_peer_down_removes_them_after_keep() {
    let dir = temp_dir("bmp-frr");
    let (port, bmp, api) = (free_udp_port(), free_tcp_port(), free_tcp_port());
    let (frr_port, peer_port) = (free_tcp_port(), free_tcp_port());
    let config = collector_config(&dir, port, bmp, "\"SrcCommunities\", \"SrcLargeCommunities\", \"NextHop\"");
    let c = Collector::start(&config);
    let gauge = |name: &str| c.metric(name, "").first().copied().unwrap_or(0);
    let peer = Killed(gobgpd_peer(&dir, peer_port, frr_port, api));
    wait_api(api);
    gobgp(
        api,
        "global rib add 198.51.100.0/24 aspath 64501,15169 community 65000:7 large-community 65000:1:2 \
         nexthop 10.0.0.1 -a ipv4",
    );
    gobgp(api, "global rib add 198.51.0.0/16 aspath 64502,3356 nexthop 10.0.0.2 -a ipv4");
    gobgp(api, "global rib add 2001:db8:100::/48 aspath 64501,13335 nexthop 2001:db8::1 -a ipv6");
    let _frr = Killed(frr_bgpd(&dir, frr_port, peer_port, bmp));
    wait_until("FRR's BMP session", Duration::from_secs(30), || gauge("weir_bmp_sessions") == 1);
    wait_until("the peer's three routes", Duration::from_secs(30), || gauge("weir_bmp_routes") == 3);
    std::thread::sleep(Duration::from_millis(300));
    // From 198.51.100.9 to 198.51.100.7: both in the /24.
    send_one(port, "198.51.100.7", 1);
    assert_eq!(wait_rows_inserted(&c, 1, Duration::from_secs(20)), 1);
    // The /24 withdrawn: the /16 answers.
    gobgp(api, "global rib del 198.51.100.0/24 -a ipv4");
    wait_until("the /24 withdrawn", Duration::from_secs(20), || gauge("weir_bmp_routes") == 2);
    std::thread::sleep(Duration::from_millis(300));
    send_one(port, "198.51.100.7", 2);
    assert_eq!(wait_rows_inserted(&c, 2, Duration::from_secs(20)), 2);
    // The peer goes down: FRR says so (Peer Down), its BMP session stays;
    // the routes stay for keep_s, then go.
    drop(peer);
    wait_until("the peer down", Duration::from_secs(20), || gauge("weir_bmp_peers_down") == 1);
    assert_eq!(gauge("weir_bmp_routes"), 2, "kept for keep_s");
    wait_until("the routes removed after keep_s", Duration::from_secs(20), || gauge("weir_bmp_routes") == 0);
    assert_eq!(gauge("weir_bmp_sessions"), 1, "the BMP session stays up");
    assert!(c.metric("weir_bmp_messages_total", "type=\"peer-down\"")[0] >= 1);
    assert_eq!(c.metric("weir_bmp_errors_total", "reason=\"malformed\""), [0]);
    c.assert_promtool_is_silent();
    c.stop();

    let rows = query(
        &config,
        None,
        "SELECT DstPort, DstAS, DstNetMask, DstASPath, DstCommunities, DstLargeCommunities, SrcAS, SrcCommunities, \
         SrcLargeCommunities, IPv6NumToString(NextHop) FROM weir.flows ORDER BY DstPort",
    );
    let large = 65000u128 << 64 | 1 << 32 | 2;
    assert_eq!(
        rows.lines().collect::<Vec<_>>(),
        [
            format!(
                "1\t15169\t24\t[64501,15169]\t[4259840007]\t[{large}]\t15169\t[4259840007]\t[{large}]\t\
                 ::ffff:10.0.0.1"
            ),
            "2\t3356\t16\t[64502,3356]\t[]\t[]\t3356\t[]\t[]\t::ffff:10.0.0.2".to_string(),
        ],
        "{rows}"
    );
}

#[test]
fn gobgpd_reporting_its_add_path_peer_keeps_the_paths_apart() {
    let dir = temp_dir("bmp-add-path");
    let (port, bmp, api, peer_api) = (free_udp_port(), free_tcp_port(), free_tcp_port(), free_tcp_port());
    let (router_port, peer_port) = (free_tcp_port(), free_tcp_port());
    let config = collector_config(&dir, port, bmp, "");
    let c = Collector::start(&config);
    let gauge = |name: &str| c.metric(name, "").first().copied().unwrap_or(0);
    // The monitored router: receives ADD-PATH from its peer, reports it pre-policy.
    let router_config = dir.join("router.toml");
    let bmp_server = format!(
        "[[bmp-servers]]\n  [bmp-servers.config]\n    address = \"127.0.0.1\"\n    port = {bmp}\n    \
         route-monitoring-policy = \"pre-policy\"\n"
    );
    let router = ibgp_config(
        ("192.0.2.1", "127.0.0.1", router_port),
        ("127.0.0.2", peer_port),
        true,
        "receive = true",
        &bmp_server,
    );
    std::fs::write(&router_config, router).unwrap();
    let _router = Killed(spawn_gobgpd(&router_config, api));
    let _peer = Killed(gobgpd_peer(&dir, peer_port, router_port, peer_api));
    wait_api(peer_api);
    gobgp(peer_api, "global rib add 192.0.2.0/24 identifier 1 aspath 64501,64496 nexthop 10.0.0.1 -a ipv4");
    gobgp(peer_api, "global rib add 192.0.2.0/24 identifier 2 aspath 64502 nexthop 10.0.0.2 -a ipv4");
    // The session came up 5-7 s after gobgpd's start here, connect-retry
    // of 1 s or not; a lost first try costs as much again.
    wait_until_else(
        Duration::from_secs(60),
        || gauge("weir_bmp_routes") == 2,
        || format!("both paths: routes {}\n{}", gauge("weir_bmp_routes"), routers(&dir, &[api, peer_api])),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gauge("weir_bmp_prefixes"), 1, "two paths of one prefix");
    // The best: the shorter AS path.
    send_one(port, "192.0.2.7", 1);
    assert_eq!(wait_rows_inserted(&c, 1, Duration::from_secs(20)), 1);
    gobgp(peer_api, "global rib del 192.0.2.0/24 identifier 2 -a ipv4");
    wait_until("one path withdrawn", Duration::from_secs(20), || gauge("weir_bmp_routes") == 1);
    std::thread::sleep(Duration::from_millis(300));
    send_one(port, "192.0.2.7", 2);
    assert_eq!(wait_rows_inserted(&c, 2, Duration::from_secs(20)), 2);
    assert_eq!(c.metric("weir_bmp_add_path_mismatches_total", ""), [0], "sent as negotiated");
    c.stop();
    let rows = query(&config, None, "SELECT DstPort, DstAS, DstASPath FROM weir.flows ORDER BY DstPort");
    assert_eq!(rows.lines().collect::<Vec<_>>(), ["1\t64502\t[64502]", "2\t64496\t[64501,64496]"], "{rows}");
}
