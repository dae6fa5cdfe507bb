//! Integration tests of the kube client paths, the kube-rs way: the real `reconcile`
//! talks to a mocked API service (tower-test) that answers like the API server from an
//! in-memory store, records every request, and can fail on demand.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use sharedlb_allocator::{Allocator, LbId};
use sharedlb_controller::config::ControllerConfig;
use sharedlb_controller::core::{self, Mode};
use sharedlb_controller::crd::SharedLB;
use sharedlb_controller::reconcile::{Ctx, Metrics, reconcile};

type Key = (String, String, String); // (resource path prefix, namespace, name)

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    trace: Vec<String>,
    /// Fail the next request whose "METHOD path" contains the key, with this code.
    fail_next: Vec<(String, u16)>,
}

/// Splits `/api/v1/namespaces/ns/services/name/status` into (prefix/resource, ns, name, sub).
fn parse(path: &str) -> (String, String, Option<String>, bool) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = if parts[0] == "api" {
        (parts[..2].join("/"), &parts[2..])
    } else {
        (parts[..3].join("/"), &parts[3..])
    };
    let (ns, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (rest[1].to_owned(), &rest[2..])
    } else {
        (String::new(), rest)
    };
    let resource = format!("{prefix}/{}", rest[0]);
    let name = rest.get(1).map(|s| (*s).to_owned());
    let status = rest.get(2) == Some(&"status");
    (resource, ns, name, status)
}

fn selector_matches(sel: &str, labels: &Value) -> bool {
    sel.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k).and_then(Value::as_str) != Some(v)
        } else if let Some((k, v)) = term.split_once('=') {
            labels.get(k).and_then(Value::as_str) == Some(v)
        } else {
            labels.get(term).is_some()
        }
    })
}

fn query(uri: &http::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_body(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": reason, "reason": reason, "code": code})
}

fn respond(
    store: &Mutex<Store>,
    method: &Method,
    uri: &http::Uri,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let mut s = store.lock().unwrap();
    let line = format!("{method} {}", uri.path());
    s.trace.push(line.clone());
    if let Some(i) = s
        .fail_next
        .iter()
        .position(|(k, _)| line.contains(k.as_str()))
    {
        let (_, code) = s.fail_next.remove(i);
        return (code, status_body(code, "InjectedFailure"));
    }
    let (resource, ns, name, sub_status) = parse(uri.path());
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    };
    match (method.as_str(), name) {
        ("GET", None) => {
            let sel = query(uri, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((r, n, _), o)| {
                    *r == resource
                        && (ns.is_empty() || *n == ns)
                        && selector_matches(&sel, &o["metadata"]["labels"])
                })
                .map(|(_, o)| o.clone())
                .collect();
            (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        ("GET", Some(name)) => match s.objects.get(&(resource, ns, name)) {
            Some(o) => (200, o.clone()),
            None => (404, status_body(404, "NotFound")),
        },
        ("POST", None) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or("generated")
                .to_owned();
            let key = (resource, ns, name);
            if s.objects.contains_key(&key) {
                return (409, status_body(409, "AlreadyExists"));
            }
            s.objects.insert(key, body.clone());
            (201, body)
        }
        ("PATCH", Some(name)) => {
            let key = (resource, ns, name);
            let mut obj = s.objects.get(&key).cloned().unwrap_or(Value::Null);
            if content_type.contains("json-patch") {
                let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
                if json_patch::patch(&mut obj, &patch).is_err() {
                    return (422, status_body(422, "Invalid"));
                }
            } else if sub_status {
                obj["status"] = body["status"].clone();
            } else {
                // Server-side apply: the applied fields replace ours; status is kept.
                let status = obj.get("status").cloned();
                obj = body;
                if let Some(st) = status {
                    obj["status"] = st;
                }
            }
            s.objects.insert(key, obj.clone());
            (200, obj)
        }
        ("DELETE", Some(name)) => match s.objects.remove(&(resource, ns, name)) {
            Some(o) => (200, o),
            None => (404, status_body(404, "NotFound")),
        },
        _ => (405, status_body(405, "MethodNotAllowed")),
    }
}

struct Harness {
    ctx: Arc<Ctx>,
    store: Arc<Mutex<Store>>,
}

fn harness(mode: Mode) -> Harness {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let store = Arc::new(Mutex::new(Store::default()));
    let served = store.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let ct = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let (code, value) = respond(&served, &parts.method, &parts.uri, &ct, &bytes);
            let resp = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap();
            send.send_response(resp);
        }
    });
    let client = Client::new(svc, "default");
    let config = ControllerConfig {
        mode,
        leader_election: false,
        ..ControllerConfig::default()
    };
    let (requeue, requeued) = futures::channel::mpsc::unbounded();
    // Requeues of other claims are not driven here; keep the receiver alive.
    std::mem::forget(requeued);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        alloc: tokio::sync::Mutex::new(Allocator::new(config.allocator_config().unwrap()).unwrap()),
        config,
        addresses: std::sync::Mutex::default(),
        claims_on: std::sync::Mutex::default(),
        requeue,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        metrics: Metrics::default(),
        ready: AtomicBool::new(true),
    });
    Harness { ctx, store }
}

impl Harness {
    fn put(&self, resource: &str, ns: &str, name: &str, obj: Value) {
        self.store
            .lock()
            .unwrap()
            .objects
            .insert((resource.to_owned(), ns.to_owned(), name.to_owned()), obj);
    }

    fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.store
            .lock()
            .unwrap()
            .objects
            .get(&(resource.to_owned(), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    fn trace(&self) -> Vec<String> {
        std::mem::take(&mut self.store.lock().unwrap().trace)
    }

    fn claim(&self, ns: &str, name: &str) -> Arc<SharedLB> {
        Arc::new(serde_json::from_value(self.get(CLAIMS, ns, name).unwrap()).unwrap())
    }

    async fn reconcile(&self, ns: &str, name: &str) -> Result<(), String> {
        reconcile(self.claim(ns, name), self.ctx.clone())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

const CLAIMS: &str = "apis/sharedlb.io/v1alpha1/sharedlbs";
const SERVICES: &str = "api/v1/services";
const SLICES: &str = "apis/discovery.k8s.io/v1/endpointslices";

#[allow(clippy::needless_pass_by_value)] // json! literals read better passed by value
fn claim_json(ns: &str, name: &str, ports: Value) -> Value {
    json!({
        "apiVersion": "sharedlb.io/v1alpha1",
        "kind": "SharedLB",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "generation": 1,
                     "finalizers": [core::FINALIZER]},
        "spec": {"ports": ports, "selector": {"app": name}},
    })
}

fn ready(status: &Value) -> &str {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
}

#[tokio::test]
async fn two_claims_share_an_lb_then_cleanup_deletes_it() {
    let h = harness(Mode::Service);
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json(
            "shop",
            "web",
            json!([{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443}]),
        ),
    );
    h.put(SLICES, "shop", "web-sharedlb-x1", json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-sharedlb-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web-sharedlb"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"]}],
        "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
    }));
    h.reconcile("shop", "web").await.unwrap();
    let trace = h.trace();
    println!("reconcile shop/web:\n  {}", trace.join("\n  "));
    let lb_svc = h
        .get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
        .expect("LB Service created");
    assert_eq!(lb_svc["spec"]["type"], "LoadBalancer");
    assert_eq!(lb_svc["spec"]["ports"][0]["name"], "tcp-443");
    assert!(
        h.get(SERVICES, "shop", "web-sharedlb").is_some(),
        "backing Service"
    );
    let mirror = h
        .get(SLICES, "sharedlb-system", "sharedlb-lb-1-shop-web-ipv4")
        .expect("mirrored slice");
    assert_eq!(mirror["ports"][0]["name"], "tcp-443");
    assert_eq!(mirror["ports"][0]["port"], 8443);
    assert_eq!(mirror["endpoints"][0]["addresses"][0], "10.1.0.5");
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(ready(st), "False", "the LB has no address yet: {st}");
    assert_eq!(st["conditions"][0]["reason"], "WaitingForLoadBalancer");
    assert_eq!(st["loadBalancer"], "sharedlb-lb-1");

    // The cloud gives the LB an address; the next reconcile marks the claim Ready.
    let mut svc = h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1").unwrap();
    svc["status"] = json!({"loadBalancer": {"ingress": [{"hostname": "lb-1.example.net"}]}});
    h.put(SERVICES, "sharedlb-system", "sharedlb-lb-1", svc);
    h.reconcile("shop", "web").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(ready(st), "True", "{st}");
    assert_eq!(st["address"], "lb-1.example.net");
    let trace = h.trace();
    assert!(
        trace
            .iter()
            .any(|t| t.starts_with("POST") && t.contains("events")),
        "an event is recorded: {trace:?}"
    );

    // A second claim shares the LB: the LB Service now holds both claims' listeners.
    h.put(CLAIMS, "shop", "dns", claim_json("shop", "dns", json!([{"name": "dns", "protocol": "UDP", "port": 53}, {"name": "dns-tcp", "protocol": "TCP", "port": 53}])));
    h.reconcile("shop", "dns").await.unwrap();
    println!("reconcile shop/dns:\n  {}", h.trace().join("\n  "));
    let lb_svc = h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1").unwrap();
    let names: Vec<&str> = lb_svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["tcp-53", "tcp-443", "udp-53"]);
    let st = &h.get(CLAIMS, "shop", "dns").unwrap()["status"];
    assert_eq!(ready(st), "True", "the LB already has its address: {st}");
    assert_eq!(st["portSummary"], "53/UDP,53/TCP");
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-2")
            .is_none(),
        "no second LB"
    );

    // A conflicting fixed port (443 again) gets another LB.
    h.put(
        CLAIMS,
        "shop",
        "web2",
        claim_json("shop", "web2", json!([{"name": "https", "port": 443}])),
    );
    h.reconcile("shop", "web2").await.unwrap();
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-2")
            .is_some()
    );
    h.trace();

    // Deleting both claims on lb-1: cleanup frees the listeners, removes the mirrored
    // slices and the finalizer, and the empty LB is deleted once idle (timeout 0 here).
    {
        let mut a = h.ctx.alloc.lock().await;
        let mut snap = a.snapshot();
        snap.config.idle_timeout_ms = 0;
        *a = Allocator::restore(snap).unwrap().allocator;
    }
    for name in ["web", "dns"] {
        let mut c = h.get(CLAIMS, "shop", name).unwrap();
        c["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        h.put(CLAIMS, "shop", name, c);
        h.reconcile("shop", name).await.unwrap();
        let c = h.get(CLAIMS, "shop", name).unwrap();
        assert_eq!(
            c["metadata"]["finalizers"],
            json!([]),
            "finalizer removed from {name}"
        );
    }
    println!("cleanup:\n  {}", h.trace().join("\n  "));
    assert!(
        h.get(SLICES, "sharedlb-system", "sharedlb-lb-1-shop-web-ipv4")
            .is_none(),
        "mirror deleted"
    );
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_none(),
        "idle LB deleted"
    );
    assert!(h.ctx.alloc.lock().await.lb(LbId(1)).is_none());
    h.ctx.alloc.lock().await.check_invariants().unwrap();
}

#[tokio::test]
async fn bad_spec_gets_a_condition_not_a_panic() {
    let h = harness(Mode::Service);
    let mut c = claim_json("shop", "bad", json!([{"name": "a", "port": 0}]));
    c["spec"]["selector"] = json!({"app": "x"});
    h.put(CLAIMS, "shop", "bad", c);
    h.reconcile("shop", "bad").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "bad").unwrap()["status"];
    assert_eq!(st["conditions"][0]["reason"], "InvalidSpec");
    assert!(
        st["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("targetPort"),
        "{st}"
    );
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_none(),
        "nothing allocated"
    );
}

#[tokio::test]
async fn api_errors_fail_the_reconcile_and_the_retry_converges() {
    let h = harness(Mode::Service);
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    h.store.lock().unwrap().fail_next = vec![(
        "PATCH /api/v1/namespaces/shop/services/web-sharedlb".into(),
        500,
    )];
    let err = h.reconcile("shop", "web").await.unwrap_err();
    assert!(
        err.contains("500") || err.contains("InjectedFailure"),
        "{err}"
    );
    assert_eq!(
        h.ctx
            .metrics
            .errors
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    h.store.lock().unwrap().fail_next = vec![("/status".into(), 409)];
    assert!(
        h.reconcile("shop", "web").await.is_err(),
        "a 409 on status is retried too"
    );
    // The controller requeues with backoff; the retry converges on the same LB.
    h.reconcile("shop", "web").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(st["loadBalancer"], "sharedlb-lb-1", "{st}");
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-2")
            .is_none(),
        "no LB leaked by the failures"
    );
}

#[tokio::test]
async fn restart_rebuilds_state_and_writes_nothing_new() {
    let h = harness(Mode::Service);
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    h.reconcile("shop", "web").await.unwrap();
    let before = h.store.lock().unwrap().objects.clone();
    h.trace();
    // A new controller process: rebuild from what the (fake) cluster records.
    let rebuilt = sharedlb_controller::startup::rebuild(
        &h.ctx.client,
        &h.ctx.config,
        sharedlb_allocator::Time(u64::MAX / 4),
    )
    .await
    .unwrap();
    assert_eq!(
        rebuilt.placement(&"shop/web".parse().unwrap()).map(|p| p.0),
        Some(LbId(1))
    );
    *h.ctx.alloc.lock().await = rebuilt;
    h.reconcile("shop", "web").await.unwrap();
    let trace = h.trace();
    assert!(
        !trace.iter().any(|t| t.contains("/status")),
        "status unchanged, not rewritten: {trace:?}"
    );
    let after = h.store.lock().unwrap().objects.clone();
    assert_eq!(before, after, "a reconcile after restart changes nothing");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn http_serves_health_metrics_and_state() {
    let h = harness(Mode::Service);
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    h.put(
        CLAIMS,
        "shop",
        "big",
        claim_json(
            "shop",
            "big",
            json!(
                (0..60)
                    .map(|i| json!({"name": format!("p{i}"), "port": 1000 + i}))
                    .collect::<Vec<_>>()
            ),
        ),
    );
    h.reconcile("shop", "web").await.unwrap();
    h.reconcile("shop", "big").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sharedlb_controller::http::router(&h.ctx);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    h.ctx
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("sharedlb_lbs{state=\"provisioning\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sharedlb_listeners_used{lb=\"lb-1\",profile=\"aws-nlb\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sharedlb_pending_claims{reason=\"TooLarge\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("sharedlb_reconciles_total 2"), "{metrics}");
    let (code, body) = http_get(addr, "/api/v1/state").await;
    assert_eq!(code, 200);
    let json_body = body.trim_start_matches(|c: char| c.is_ascii_hexdigit() || c.is_whitespace());
    let end = json_body.rfind('}').map_or(json_body.len(), |i| i + 1);
    let state: sharedlb_allocator::view::StateView =
        serde_json::from_str(&json_body[..end]).unwrap();
    assert_eq!(state.lbs.len(), 1);
    assert_eq!(state.lbs[0].listeners[0].claim, "shop/web");
    assert_eq!(state.pending[0].reason, "TooLarge");
}

#[tokio::test]
async fn shared_ip_mode_writes_one_annotated_service_per_claim() {
    let h = harness(Mode::SharedIp);
    for name in ["a", "b"] {
        h.put(
            CLAIMS,
            "games",
            name,
            claim_json(
                "games",
                name,
                json!([{"name": "game", "protocol": "UDP", "port": 0, "targetPort": 7777}]),
            ),
        );
        h.reconcile("games", name).await.unwrap();
    }
    let a = h.get(SERVICES, "games", "a-sharedlb").unwrap();
    let b = h.get(SERVICES, "games", "b-sharedlb").unwrap();
    assert_eq!(
        a["metadata"]["annotations"]["metallb.universe.tf/allow-shared-ip"],
        "sharedlb-lb-1"
    );
    assert_eq!(
        b["metadata"]["annotations"]["metallb.universe.tf/allow-shared-ip"],
        "sharedlb-lb-1"
    );
    assert_eq!(a["spec"]["ports"][0]["port"], 30000);
    assert_eq!(
        b["spec"]["ports"][0]["port"], 30001,
        "same IP, different automatic ports"
    );
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_none(),
        "no central LB Service in this mode"
    );
    let st = &h.get(CLAIMS, "games", "b").unwrap()["status"];
    assert_eq!(st["ports"][0]["port"], 30001);
    assert_eq!(
        st["conditions"][0]["reason"], "WaitingForLoadBalancer",
        "no IP yet: {st}"
    );
}
