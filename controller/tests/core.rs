//! Pure tests of the reconcile core: from claims, allocator state and observed objects to
//! the exact desired objects and status, in both modes; and a restart rebuilt from what
//! the cluster records.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service, ServiceStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use sharedlb_allocator::{
    Allocator, Config, Decision, Event, LbId, LbState, PendingReason, PolicyKind, PoolKey, Reports,
    Shell, Time,
};
use sharedlb_controller::core::{self, Mode, Outcome, SharedIpImpl};
use sharedlb_controller::crd::{ClaimPort, PortProtocol, SharedLB, SharedLBSpec, SharingMode};
use sharedlb_controller::startup::snapshot_from;

fn port(name: &str, protocol: PortProtocol, port: u32, target: Option<u32>) -> ClaimPort {
    ClaimPort {
        name: name.into(),
        protocol,
        port: Some(port),
        target_port: target,
    }
}

fn slb(ns: &str, name: &str, ports: Vec<ClaimPort>) -> SharedLB {
    let mut s = SharedLB::new(
        name,
        SharedLBSpec {
            ports,
            selector: BTreeMap::from([("app".to_owned(), name.to_owned())]),
            sharing: SharingMode::Shared,
            sharing_key: None,
            cross_namespace: false,
            profile: None,
            allow_migration: false,
        },
    );
    s.metadata.namespace = Some(ns.into());
    s.metadata.uid = Some(format!("uid-{name}"));
    s.metadata.generation = Some(3);
    s
}

fn best_fit() -> PolicyKind {
    "best-fit".parse().unwrap()
}

fn alloc() -> Allocator {
    Allocator::new(Config::with_builtin("aws-nlb", best_fit()).unwrap()).unwrap()
}

/// Records decisions; LB outcomes are up to the test.
#[derive(Default)]
struct Log(Vec<Decision>);

impl Shell for Log {
    fn carry_out(&mut self, _now: Time, d: Decision, _r: &mut Reports<'_>) {
        self.0.push(d);
    }
}

fn drive(a: &mut Allocator, now: u64, e: Event) -> Vec<Decision> {
    let mut log = Log::default();
    a.drive(Time(now), e, &mut log).unwrap();
    log.0
}

fn add(a: &mut Allocator, s: &SharedLB, mode: Mode) -> Vec<Decision> {
    let c = core::claim_from_spec(&s.namespace().unwrap(), &s.name_any(), &s.spec, mode).unwrap();
    drive(a, 0, Event::ClaimAdded(c))
}

#[test]
fn invalid_specs_are_explained_not_crashed_on() {
    let ok = slb(
        "shop",
        "web",
        vec![port("https", PortProtocol::Tcp, 443, None)],
    );
    assert!(core::claim_from_spec("shop", "web", &ok.spec, Mode::Service).is_ok());
    let odd_but_valid = SharedLBSpec {
        selector: BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "web_1.x".to_owned()),
            ("tier".to_owned(), String::new()),
            ("k".to_owned(), "x".repeat(63)),
        ]),
        ..ok.spec.clone()
    };
    assert!(core::claim_from_spec("shop", "web", &odd_but_valid, Mode::Service).is_ok());
    let cases: Vec<(SharedLBSpec, &str)> = vec![
        (
            SharedLBSpec {
                ports: vec![],
                ..ok.spec.clone()
            },
            "at least one port",
        ),
        (
            SharedLBSpec {
                ports: vec![
                    port("a", PortProtocol::Tcp, 1, None),
                    port("a", PortProtocol::Tcp, 2, None),
                ],
                ..ok.spec.clone()
            },
            "not unique",
        ),
        (
            SharedLBSpec {
                ports: vec![port("a", PortProtocol::Tcp, 70000, None)],
                ..ok.spec.clone()
            },
            "out of range",
        ),
        (
            SharedLBSpec {
                ports: vec![port("a", PortProtocol::Tcp, 0, None)],
                ..ok.spec.clone()
            },
            "needs a targetPort",
        ),
        (
            SharedLBSpec {
                selector: BTreeMap::new(),
                ..ok.spec.clone()
            },
            "selector",
        ),
        (
            SharedLBSpec {
                sharing: SharingMode::Group,
                ..ok.spec.clone()
            },
            "sharingKey",
        ),
        (
            SharedLBSpec {
                selector: BTreeMap::from([("app".to_owned(), "x".repeat(64))]),
                ..ok.spec.clone()
            },
            "not a valid label value",
        ),
        (
            SharedLBSpec {
                selector: BTreeMap::from([("app".to_owned(), "-web".to_owned())]),
                ..ok.spec.clone()
            },
            "not a valid label value",
        ),
        (
            SharedLBSpec {
                selector: BTreeMap::from([("bad key".to_owned(), "web".to_owned())]),
                ..ok.spec.clone()
            },
            "not a valid label key",
        ),
        (
            SharedLBSpec {
                selector: BTreeMap::from([("Example.com/app".to_owned(), "web".to_owned())]),
                ..ok.spec.clone()
            },
            "not a valid label key",
        ),
        (
            SharedLBSpec {
                ports: vec![
                    port("a", PortProtocol::Tcp, 80, None),
                    port("b", PortProtocol::Tcp, 80, None),
                ],
                ..ok.spec.clone()
            },
            "twice",
        ),
    ];
    for (spec, needle) in cases {
        let err = core::claim_from_spec("shop", "web", &spec, Mode::Service).unwrap_err();
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        let s = SharedLB { spec, ..ok.clone() };
        let st = core::status(
            &s,
            &Outcome::Invalid(err.clone()),
            "2026-01-01T00:00:00Z",
            Mode::Service,
        );
        assert_eq!(st.conditions[0].type_, "Ready");
        assert_eq!(st.conditions[0].status, "False");
        assert_eq!(st.conditions[0].reason, "InvalidSpec");
        assert!(st.load_balancer.is_none());
    }
    // Selector-less claims are fine in shared-IP mode? No: the claim Service needs one too,
    // but the allocator does not; only service mode insists on it up front.
    let no_sel = SharedLBSpec {
        selector: BTreeMap::new(),
        ..ok.spec
    };
    assert!(core::claim_from_spec("shop", "web", &no_sel, Mode::SharedIp).is_ok());
}

#[test]
fn two_claims_share_one_lb_service_with_mirrored_slices() {
    let mut a = alloc();
    let web = slb(
        "shop",
        "web",
        vec![port("https", PortProtocol::Tcp, 443, Some(8443))],
    );
    let dns = slb(
        "shop",
        "dns",
        vec![
            port("dns-udp", PortProtocol::Udp, 53, None),
            port("dns-tcp", PortProtocol::Tcp, 53, None),
        ],
    );
    let d1 = add(&mut a, &web, Mode::Service);
    assert!(matches!(d1[0], Decision::CreateLb { .. }));
    let d2 = add(&mut a, &dns, Mode::Service);
    assert!(
        matches!(&d2[..], [Decision::Assign { lb: LbId(1), .. }]),
        "{d2:?}"
    );
    let info = a.lb(LbId(1)).unwrap();
    let svc = core::desired_lb_service(&info, "sharedlb-system");
    assert_eq!(svc.name_any(), "sharedlb-lb-1");
    assert_eq!(svc.namespace().as_deref(), Some("sharedlb-system"));
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert!(
        spec.selector.is_none(),
        "endpoints come from mirrored slices"
    );
    let ports: Vec<(String, i32, String)> = spec
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.clone().unwrap(), p.port, p.protocol.clone().unwrap()))
        .collect();
    assert_eq!(
        ports,
        vec![
            ("tcp-53".into(), 53, "TCP".into()),
            ("tcp-443".into(), 443, "TCP".into()),
            ("udp-53".into(), 53, "UDP".into()),
        ]
    );
    assert_eq!(svc.annotations()[core::PROFILE_ANNOTATION], "aws-nlb");
    let pool: PoolKey = serde_json::from_str(&svc.annotations()[core::POOL_ANNOTATION]).unwrap();
    assert_eq!(pool, info.pool);

    // The backing Service selects web's pods and targets 8443.
    let (lb, ls) = a.placement(&core::claim_key(&web).unwrap()).unwrap();
    let backing = core::desired_backing_service(&web, &ls);
    assert_eq!(backing.name_any(), "web-sharedlb");
    assert_eq!(backing.namespace().as_deref(), Some("shop"));
    assert_eq!(backing.owner_references()[0].uid, "uid-web");
    let bspec = backing.spec.unwrap();
    assert_eq!(bspec.selector.unwrap()["app"], "web");
    assert_eq!(
        bspec.ports.as_ref().unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8443))
    );

    // Its EndpointSlice is mirrored under the LB Service's port name.
    let source = EndpointSlice {
        metadata: ObjectMeta {
            name: Some("web-sharedlb-abcde".into()),
            namespace: Some("shop".into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(vec![
            Endpoint {
                addresses: vec!["10.0.0.9".into()],
                ..Endpoint::default()
            },
            Endpoint {
                addresses: vec!["10.0.0.7".into()],
                ..Endpoint::default()
            },
        ]),
        ports: Some(vec![EndpointPort {
            name: Some("https".into()),
            port: Some(8443),
            protocol: Some("TCP".into()),
            app_protocol: None,
        }]),
    };
    let mirrored = core::mirrored_slices(&web, lb, &ls, &[source], "sharedlb-system");
    assert_eq!(mirrored.len(), 1);
    let m = &mirrored[0];
    assert_eq!(m.namespace().as_deref(), Some("sharedlb-system"));
    assert_eq!(m.labels()["kubernetes.io/service-name"], "sharedlb-lb-1");
    assert_eq!(
        m.labels()["endpointslice.kubernetes.io/managed-by"],
        core::MANAGER
    );
    assert_eq!(m.labels()[core::CLAIM_LABEL], "uid-web");
    let mp = &m.ports.as_ref().unwrap()[0];
    assert_eq!((mp.name.as_deref(), mp.port), (Some("tcp-443"), Some(8443)));
    let addrs: Vec<&str> = m
        .endpoints
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.addresses[0].as_str())
        .collect();
    assert_eq!(
        addrs,
        vec!["10.0.0.7", "10.0.0.9"],
        "sorted, so re-applying is a no-op"
    );

    // Status: waiting for the address, then Ready with it; conditions keep their time.
    let waiting = core::status(
        &web,
        &Outcome::Placed {
            lb,
            listeners: &ls,
            address: None,
        },
        "2026-01-01T00:00:00Z",
        Mode::Service,
    );
    assert_eq!(waiting.conditions[0].reason, "WaitingForLoadBalancer");
    assert_eq!(waiting.load_balancer.as_deref(), Some("sharedlb-lb-1"));
    assert_eq!(waiting.port_summary.as_deref(), Some("443/TCP"));
    let mut svc_seen = svc.clone();
    svc_seen.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                hostname: Some("abc.elb.amazonaws.com".into()),
                ..LoadBalancerIngress::default()
            }]),
        }),
        ..ServiceStatus::default()
    });
    let address = core::service_address(&svc_seen);
    assert_eq!(address.as_deref(), Some("abc.elb.amazonaws.com"));
    let ready = core::status(
        &web,
        &Outcome::Placed {
            lb,
            listeners: &ls,
            address: address.clone(),
        },
        "2026-01-01T00:01:00Z",
        Mode::Service,
    );
    assert_eq!(ready.conditions[0].status, "True");
    assert_eq!(ready.address, address);
    assert_eq!(ready.observed_generation, Some(3));
    let again = core::status(
        &SharedLB {
            status: Some(ready.clone()),
            ..web.clone()
        },
        &Outcome::Placed {
            lb,
            listeners: &ls,
            address,
        },
        "2026-01-01T00:05:00Z",
        Mode::Service,
    );
    assert_eq!(
        again, ready,
        "an unchanged outcome gives an identical status: nothing to write"
    );
}

#[test]
fn conflicting_fixed_port_goes_elsewhere_or_waits_with_reason() {
    let mut a = alloc();
    let a1 = slb(
        "shop",
        "a",
        vec![port("https", PortProtocol::Tcp, 443, None)],
    );
    let a2 = slb(
        "shop",
        "b",
        vec![port("https", PortProtocol::Tcp, 443, None)],
    );
    add(&mut a, &a1, Mode::Service);
    let d = add(&mut a, &a2, Mode::Service);
    assert!(
        matches!(d[0], Decision::CreateLb { lb: LbId(2), .. }),
        "443 is taken on lb-1: {d:?}"
    );
    let mut cfg = Config::with_builtin("aws-nlb", best_fit()).unwrap();
    cfg.budget.max_lbs = Some(1);
    let mut b = Allocator::new(cfg).unwrap();
    add(&mut b, &a1, Mode::Service);
    add(&mut b, &a2, Mode::Service);
    let reason = b.pending_reason(&core::claim_key(&a2).unwrap()).unwrap();
    assert_eq!(reason, PendingReason::PortConflict);
    let st = core::status(
        &a2,
        &Outcome::Pending(reason, "443/TCP is taken".into()),
        "t",
        Mode::Service,
    );
    assert_eq!(st.conditions[1].type_, "Pending");
    assert_eq!(st.conditions[1].status, "True");
    assert_eq!(st.conditions[1].reason, "PortConflict");
}

#[test]
fn shared_ip_mode_annotates_per_claim_services() {
    let mut a = alloc();
    let mut game = slb(
        "games",
        "arena",
        vec![port("game", PortProtocol::Udp, 0, Some(7777))],
    );
    game.spec.sharing = SharingMode::Group;
    game.spec.sharing_key = Some("edge".into());
    game.spec.cross_namespace = true;
    add(&mut a, &game, Mode::SharedIp);
    let (lb, ls) = a.placement(&core::claim_key(&game).unwrap()).unwrap();
    assert_eq!(
        ls[0].port.get(),
        30000,
        "port 0: the lowest free automatic port"
    );
    let pool = a.lb(lb).unwrap().pool;
    let m = core::desired_shared_ip_service(&game, lb, &pool, &ls, SharedIpImpl::Metallb);
    assert_eq!(m.namespace().as_deref(), Some("games"));
    assert_eq!(
        m.annotations()["metallb.universe.tf/allow-shared-ip"],
        "sharedlb-lb-1"
    );
    let spec = m.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.ports.unwrap()[0].port, 30000);
    let c = core::desired_shared_ip_service(&game, lb, &pool, &ls, SharedIpImpl::Cilium);
    assert_eq!(
        c.annotations()["lbipam.cilium.io/sharing-key"],
        "sharedlb-lb-1"
    );
    assert_eq!(
        c.annotations()["lbipam.cilium.io/sharing-cross-namespace"],
        "*"
    );
    let tenant_only = core::desired_shared_ip_service(
        &game,
        lb,
        &PoolKey::Tenant("games".parse().unwrap()),
        &ls,
        SharedIpImpl::Cilium,
    );
    assert!(
        !tenant_only
            .annotations()
            .contains_key("lbipam.cilium.io/sharing-cross-namespace")
    );
    let st = core::status(
        &game,
        &Outcome::Placed {
            lb,
            listeners: &ls,
            address: Some("192.0.2.7".into()),
        },
        "t",
        Mode::SharedIp,
    );
    assert_eq!(st.ports[0].port, 30000);
    assert_eq!(st.address.as_deref(), Some("192.0.2.7"));
}

/// Places each claim and records its placement in its status, as the controller would,
/// with the address `address` gives by claim name.
fn place_and_record(
    a: &mut Allocator,
    claims: &[SharedLB],
    mode: Mode,
    address: impl Fn(&str) -> Option<String>,
) -> Vec<SharedLB> {
    claims
        .iter()
        .map(|c| {
            add(a, c, mode);
            let (lb, ls) = a.placement(&core::claim_key(c).unwrap()).unwrap();
            let mut c = c.clone();
            c.status = Some(core::status(
                &c,
                &Outcome::Placed {
                    lb,
                    listeners: &ls,
                    address: address(&c.name_any()),
                },
                "t",
                mode,
            ));
            c
        })
        .collect()
}

#[test]
fn restart_rebuilds_the_same_placements_and_decides_nothing_new() {
    let config = Config::with_builtin("aws-nlb", best_fit()).unwrap();
    let mut a = Allocator::new(config.clone()).unwrap();
    let claims = vec![
        slb(
            "shop",
            "web",
            vec![port("https", PortProtocol::Tcp, 443, None)],
        ),
        slb(
            "shop",
            "web2",
            vec![port("https", PortProtocol::Tcp, 443, None)],
        ),
        slb(
            "shop",
            "game",
            vec![port("g", PortProtocol::Udp, 0, Some(7777))],
        ),
    ];
    let recorded = place_and_record(&mut a, &claims, Mode::Service, |_| None);
    let services: Vec<Service> = a
        .lbs()
        .iter()
        .map(|l| core::desired_lb_service(l, "sharedlb-system"))
        .collect();
    let snap = snapshot_from(&config, Mode::Service, &recorded, &services, Time(10));
    let r = Allocator::restore(snap).unwrap();
    assert!(r.dropped.is_empty(), "{:?}", r.dropped);
    let mut b = r.allocator;
    for c in &claims {
        let id = core::claim_key(c).unwrap();
        assert_eq!(a.placement(&id), b.placement(&id), "{id}");
    }
    assert!(
        drive(&mut b, 11, Event::Tick).is_empty(),
        "no change written after a restart"
    );
    b.check_invariants().unwrap();

    // A recorded double booking (two claims on one listener) is not restored twice.
    let mut bad = recorded.clone();
    bad[1].status = bad[0].status.clone();
    let snap = snapshot_from(&config, Mode::Service, &bad, &services, Time(10));
    let r = Allocator::restore(snap).unwrap();
    assert_eq!(r.dropped.len(), 1, "{:?}", r.dropped);
    let c = r.allocator;
    assert!(c.placement(&core::claim_key(&bad[1]).unwrap()).is_none());
    c.check_invariants().unwrap();
}

#[test]
fn checked_in_crd_is_current() {
    let generated = sharedlb_controller::crd::crd_yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/crd.yaml");
    let checked_in = std::fs::read_to_string(path).unwrap();
    assert!(
        generated == checked_in,
        "deploy/crd.yaml is stale: run `cargo run -p sharedlb-controller -- crd > controller/deploy/crd.yaml`"
    );
}

#[test]
fn derived_service_names_are_always_valid_and_distinct() {
    // Valid claim names (DNS-1123 subdomains) that are not valid Service names.
    let long = "a".repeat(60);
    let longer = format!("{long}b");
    let names = [
        "web",
        "web.v2",
        "2fa",
        long.as_str(),
        longer.as_str(),
        "x.y.z.very-long-name-with-many-parts-and-dots.example.com",
    ];
    let derived: Vec<String> = names.iter().map(|n| core::service_name_for(n)).collect();
    for (n, d) in names.iter().zip(&derived) {
        assert!(core::is_dns1035_label(d), "{n} → {d}");
    }
    assert_eq!(derived[0], "web-sharedlb", "readable when it can be");
    let distinct: std::collections::BTreeSet<&String> = derived.iter().collect();
    assert_eq!(distinct.len(), derived.len(), "{derived:?}");
    assert_eq!(
        core::service_name_for("web.v2"),
        core::service_name_for("web.v2"),
        "stable"
    );
    assert!(!core::is_dns1035_label("9lives"));
    assert!(!core::is_dns1035_label("ends-"));
    assert!(!core::is_dns1035_label(&"a".repeat(64)));
}

#[test]
fn only_objects_made_for_the_claim_are_ours() {
    let web = slb(
        "shop",
        "web",
        vec![port("https", PortProtocol::Tcp, 443, None)],
    );
    let mine =
        core::desired_backing_service(&web, &[sharedlb_allocator::Listener::tcp(443).unwrap()]);
    assert_eq!(core::owner_of(&mine, &web), core::Owner::ThisClaim);
    let mut users = mine.clone();
    users.metadata.owner_references = None;
    assert_eq!(
        core::owner_of(&users, &web),
        core::Owner::Foreign,
        "no owner"
    );
    let mut other = mine.clone();
    other.metadata.labels = None;
    assert_eq!(
        core::owner_of(&other, &web),
        core::Owner::Foreign,
        "not labelled"
    );
    let mut twin = web.clone();
    twin.metadata.uid = Some("another-uid".into());
    assert_eq!(
        core::owner_of(&mine, &twin),
        core::Owner::Foreign,
        "another claim of that name"
    );
}

/// Only the names the controller gives are its LBs: another spelling of the same number,
/// or a number past the last LB id, is no LB of ours (so never adopted or deleted).
#[test]
fn only_the_names_the_controller_gives_name_its_lbs() {
    assert_eq!(core::lb_service_name(LbId(5)), "sharedlb-lb-5");
    assert_eq!(core::lb_from_name("sharedlb-lb-5"), Some(LbId(5)));
    assert_eq!(
        core::lb_from_name("sharedlb-lb-4294967295"),
        Some(LbId(u32::MAX))
    );
    for other in [
        "sharedlb-5",
        "sharedlb-lb-05",
        "sharedlb-lb-+5",
        "sharedlb-lb-4294967296",
        "sharedlb-lb-",
        "other-lb-5",
    ] {
        assert_eq!(core::lb_from_name(other), None, "{other}");
    }
}

#[test]
fn a_shared_ip_is_restored_ready_only_where_a_claim_recorded_its_address() {
    let config = Config::with_builtin("aws-nlb", best_fit()).unwrap();
    let mut a = Allocator::new(config.clone()).unwrap();
    // a-web and b-web2 clash on 443 (two LBs); c-dns joins a-web's LB. Restored in
    // creation order, then by id (none has a creation time): a-web, b-web2, c-dns.
    let claims = vec![
        slb(
            "shop",
            "a-web",
            vec![port("https", PortProtocol::Tcp, 443, None)],
        ),
        slb(
            "shop",
            "b-web2",
            vec![port("https", PortProtocol::Tcp, 443, None)],
        ),
        slb(
            "shop",
            "c-dns",
            vec![port("dns", PortProtocol::Udp, 53, None)],
        ),
    ];
    let recorded = place_and_record(&mut a, &claims, Mode::SharedIp, |name| {
        (name == "c-dns").then(|| "192.0.2.7".to_owned())
    });
    let lb_of = |name: &str| {
        a.placement(&format!("shop/{name}").parse().unwrap())
            .unwrap()
            .0
    };
    assert_eq!(lb_of("a-web"), lb_of("c-dns"));
    assert_ne!(lb_of("a-web"), lb_of("b-web2"));
    let snap = snapshot_from(&config, Mode::SharedIp, &recorded, &[], Time(10));
    let b = Allocator::restore(snap).unwrap().allocator;
    // a-web, restored first without the address, does not decide its LB's state alone.
    assert_eq!(b.lb(lb_of("a-web")).unwrap().state, LbState::Ready);
    assert_eq!(
        b.lb(lb_of("b-web2")).unwrap().state,
        LbState::Provisioning,
        "no claim on it ever saw an address"
    );
}
