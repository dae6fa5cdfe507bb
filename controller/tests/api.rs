//! Integration tests of the kube client paths, the kube-rs way: the real `reconcile`
//! talks to a mocked API service (tower-test) that answers like the API server from an
//! in-memory store, records every request, and can fail on demand.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use sharedlb_allocator::{Allocator, LbId, LbState};
use sharedlb_controller::config::ControllerConfig;
use sharedlb_controller::core::{self, Mode};
use sharedlb_controller::crd::SharedLB;
use sharedlb_controller::fence::Fence;
use sharedlb_controller::reconcile::{self, Ctx, Role, reconcile};

type Key = (String, String, String); // (resource path prefix, namespace, name)

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    trace: Vec<String>,
    /// Fail the next request whose "METHOD path" contains the key, with this code.
    fail_next: Vec<(String, u16)>,
    /// Writes (anything but GET) seen so far, and the index of one to fail with a 500.
    total_writes: usize,
    fail_write: Option<usize>,
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
    if method != Method::GET {
        let n = s.total_writes;
        s.total_writes += 1;
        if s.fail_write == Some(n) {
            return (500, status_body(500, "InjectedFailure"));
        }
    }
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
            if obj.is_null() && !content_type.contains("apply-patch") {
                return (404, status_body(404, "NotFound"));
            }
            if content_type.contains("json-patch") {
                let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
                if json_patch::patch(&mut obj, &patch).is_err() {
                    return (422, status_body(422, "Invalid"));
                }
            } else if content_type.contains("merge-patch") {
                let want = body["metadata"]["resourceVersion"].clone();
                if !want.is_null() && want != obj["metadata"]["resourceVersion"] {
                    return (409, status_body(409, "Conflict"));
                }
                let mut body = body;
                if let Some(m) = body["metadata"].as_object_mut() {
                    m.remove("resourceVersion");
                }
                json_patch::merge(&mut obj, &body);
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
    harness_with(mode, |_| {})
}

fn harness_with(mode: Mode, tweak: impl FnOnce(&mut ControllerConfig)) -> Harness {
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
    let mut config = ControllerConfig {
        mode,
        leader_election: false,
        ..ControllerConfig::default()
    };
    tweak(&mut config);
    let (requeue, requeued) = futures::channel::mpsc::unbounded();
    // Requeues of other claims are not driven here; keep the receiver alive.
    std::mem::forget(requeued);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test".into(),
            instance: None,
        },
    );
    let ctx = Ctx::new(
        client,
        config,
        requeue,
        recorder,
        Arc::new(Fence::unelected()),
    )
    .unwrap();
    ctx.set_role(Role::Leader);
    Harness {
        ctx: Arc::new(ctx),
        store,
    }
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

    fn with_alloc<T>(&self, f: impl FnOnce(&mut Allocator) -> T) -> T {
        f(&mut self.ctx.alloc.lock().unwrap())
    }

    /// Marks a claim deleted (the API server sets deletionTimestamp; finalizers hold it).
    fn delete_claim(&self, ns: &str, name: &str) {
        let mut c = self.get(CLAIMS, ns, name).unwrap();
        c["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        self.put(CLAIMS, ns, name, c);
    }

    /// Plays the cloud: gives an LB Service an address.
    fn give_address(&self, lb: &str, host: &str) {
        let mut svc = self.get(SERVICES, "sharedlb-system", lb).unwrap();
        svc["status"] = json!({"loadBalancer": {"ingress": [{"hostname": host}]}});
        self.put(SERVICES, "sharedlb-system", lb, svc);
    }

    /// Reconciles every claim, the LBs and the clock until a round changes nothing and
    /// fails nothing (level-triggered: unchanged objects are applied again, changing
    /// nothing); returns the rounds it took.
    async fn converge(&self) -> usize {
        for round in 1..=12 {
            let before = self.state();
            let claims: Vec<(String, String)> = self
                .store
                .lock()
                .unwrap()
                .objects
                .keys()
                .filter(|(r, _, _)| r == CLAIMS)
                .map(|(_, ns, n)| (ns.clone(), n.clone()))
                .collect();
            let mut failed = false;
            for (ns, n) in claims {
                if self.get(CLAIMS, &ns, &n).is_some() {
                    failed |= self.reconcile(&ns, &n).await.is_err();
                }
            }
            failed |= reconcile::resync_claims(&self.ctx).await.is_err();
            failed |= reconcile::resync_lbs(&self.ctx).await.is_err();
            failed |= reconcile::tick(&self.ctx, None).await.is_err();
            let trace = self.trace();
            if !failed && self.state() == before {
                return round;
            }
            if round == 12 {
                println!("last round:\n  {}", trace.join("\n  "));
            }
        }
        panic!("no convergence in 12 rounds");
    }

    /// The objects, without events and condition timestamps.
    fn state(&self) -> BTreeMap<Key, Value> {
        let mut out = self.store.lock().unwrap().objects.clone();
        out.retain(|(r, _, _), _| !r.contains("events"));
        for v in out.values_mut() {
            if let Some(cs) = v["status"]["conditions"].as_array_mut() {
                for c in cs {
                    c["lastTransitionTime"] = Value::Null;
                }
            }
        }
        out
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
                     "resourceVersion": "1"},
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

fn reason(status: &Value) -> &str {
    status["conditions"][0]["reason"].as_str().unwrap_or("")
}

fn web_slice(h: &Harness) {
    h.put(SLICES, "shop", "web-sharedlb-x1", json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-sharedlb-x1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web-sharedlb"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"]}],
        "ports": [{"name": "https", "port": 8443, "protocol": "TCP"}],
    }));
}

#[tokio::test]
async fn a_claim_gone_without_a_reconcile_is_freed_by_the_claim_resync() {
    // Its finalizer stripped and the object gone while no reconcile ran: only the resync
    // can see it go. Another claim, and the one LB they share, stay.
    let h = harness_with(Mode::Service, |c| c.idle_timeout_seconds = 0);
    let port = |p: u16| json!([{"name": "x", "protocol": "TCP", "port": p, "targetPort": 8443}]);
    h.put(CLAIMS, "shop", "web", claim_json("shop", "web", port(443)));
    h.put(CLAIMS, "shop", "api", claim_json("shop", "api", port(8080)));
    web_slice(&h);
    h.converge().await;
    assert_eq!(h.with_alloc(|a| a.claim_count()), 2);
    let mirror = "sharedlb-lb-1-shop-web-ipv4";
    assert!(h.get(SLICES, "sharedlb-system", mirror).is_some());
    h.store.lock().unwrap().objects.remove(&(
        CLAIMS.to_owned(),
        "shop".to_owned(),
        "web".to_owned(),
    ));
    // A failed list changes nothing; the next pass frees the claim.
    h.store
        .lock()
        .unwrap()
        .fail_next
        .push(("GET /apis/sharedlb.io/v1alpha1/sharedlbs".to_owned(), 500));
    assert!(reconcile::resync_claims(&h.ctx).await.is_err());
    assert_eq!(h.with_alloc(|a| a.claim_count()), 2);
    reconcile::resync_claims(&h.ctx).await.unwrap();
    let live: Vec<String> =
        h.with_alloc(|a| a.claims().iter().map(|(c, _)| c.id().to_string()).collect());
    assert_eq!(live, ["shop/api"]);
    // Its mirrored endpoints went first: left behind, they would serve whoever gets 443
    // on lb-1 next.
    assert!(h.get(SLICES, "sharedlb-system", mirror).is_none());
    h.converge().await;
    let lb = h
        .get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
        .expect("the LB stays for api");
    let ports: Vec<&Value> = lb["spec"]["ports"].as_array().unwrap().iter().collect();
    assert_eq!(ports.len(), 1, "only api's listener: {lb}");
    assert_eq!(ports[0]["port"], 8080);
}

#[tokio::test]
async fn two_claims_share_an_lb_then_cleanup_deletes_it() {
    let h = harness_with(Mode::Service, |c| c.idle_timeout_seconds = 0);
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
    web_slice(&h);
    h.reconcile("shop", "web").await.unwrap();
    let trace = h.trace();
    println!("reconcile shop/web:\n  {}", trace.join("\n  "));
    let lb_svc = h
        .get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
        .expect("LB Service created");
    assert_eq!(lb_svc["spec"]["type"], "LoadBalancer");
    assert_eq!(lb_svc["spec"]["ports"][0]["name"], "tcp-443");
    let backing = h
        .get(SERVICES, "shop", "web-sharedlb")
        .expect("backing Service");
    assert_eq!(backing["metadata"]["ownerReferences"][0]["uid"], "uid-web");
    let mirror = h
        .get(SLICES, "sharedlb-system", "sharedlb-lb-1-shop-web-ipv4")
        .expect("mirrored slice");
    assert_eq!(mirror["ports"][0]["name"], "tcp-443");
    assert_eq!(mirror["ports"][0]["port"], 8443);
    assert_eq!(mirror["endpoints"][0]["addresses"][0], "10.1.0.5");
    let c = h.get(CLAIMS, "shop", "web").unwrap();
    assert_eq!(c["metadata"]["finalizers"], json!([core::FINALIZER]));
    let st = &c["status"];
    assert_eq!(ready(st), "False", "the LB has no address yet: {st}");
    assert_eq!(reason(st), "WaitingForLoadBalancer");
    assert_eq!(st["loadBalancer"], "sharedlb-lb-1");

    // The cloud gives the LB an address; the next reconcile marks the claim Ready.
    h.give_address("sharedlb-lb-1", "lb-1.example.net");
    h.reconcile("shop", "web").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(ready(st), "True", "{st}");
    assert_eq!(st["address"], "lb-1.example.net");
    assert!(
        h.trace()
            .iter()
            .any(|t| t.starts_with("POST") && t.contains("events")),
        "an event is recorded"
    );

    // A second claim shares the LB: the LB Service now holds both claims' listeners.
    h.put(CLAIMS, "shop", "dns", claim_json("shop", "dns", json!([{"name": "dns", "protocol": "UDP", "port": 53}, {"name": "dns-tcp", "protocol": "TCP", "port": 53}])));
    h.reconcile("shop", "dns").await.unwrap();
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
    // slices and the finalizer; the empty LB goes at its idle timeout (0 here), on the
    // allocator's clock.
    for name in ["web", "dns"] {
        h.delete_claim("shop", name);
        h.reconcile("shop", name).await.unwrap();
        let c = h.get(CLAIMS, "shop", name).unwrap();
        assert_eq!(
            c["metadata"]["finalizers"],
            json!([]),
            "finalizer removed from {name}"
        );
    }
    assert!(
        h.get(SLICES, "sharedlb-system", "sharedlb-lb-1-shop-web-ipv4")
            .is_none()
    );
    reconcile::tick(&h.ctx, None).await.unwrap();
    println!("cleanup:\n  {}", h.trace().join("\n  "));
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_none(),
        "idle LB deleted"
    );
    h.with_alloc(|a| {
        assert!(a.lb(LbId(1)).is_none());
        a.check_invariants().unwrap();
    });
}

#[tokio::test]
async fn an_empty_lb_is_deleted_at_its_idle_timeout_by_the_clock_alone() {
    let h = harness_with(Mode::Service, |c| c.idle_timeout_seconds = 1);
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    h.reconcile("shop", "web").await.unwrap();
    h.delete_claim("shop", "web");
    h.reconcile("shop", "web").await.unwrap();
    let wake = reconcile::next_wakeup(&h.ctx).expect("the allocator asks to be woken");
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_some(),
        "kept while idle"
    );
    // No claim is reconciled again: only the clock ticks, at the wake-up.
    while reconcile::now_ms() < wake.0 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    reconcile::tick(&h.ctx, None).await.unwrap();
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_none()
    );
}

#[tokio::test]
async fn bad_spec_gets_a_condition_not_a_panic() {
    let h = harness(Mode::Service);
    let mut c = claim_json("shop", "bad", json!([{"name": "a", "port": 0}]));
    c["spec"]["selector"] = json!({"app": "x"});
    h.put(CLAIMS, "shop", "bad", c);
    h.reconcile("shop", "bad").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "bad").unwrap()["status"];
    assert_eq!(reason(st), "InvalidSpec");
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
async fn a_spec_turning_invalid_releases_its_listeners_and_objects() {
    let h = harness(Mode::SharedIp);
    let ports = json!([{"name": "https", "port": 443}]);
    h.put(CLAIMS, "shop", "a", claim_json("shop", "a", ports.clone()));
    h.reconcile("shop", "a").await.unwrap();
    assert!(h.get(SERVICES, "shop", "a-sharedlb").is_some());
    // Its spec turns invalid: port 0 without a targetPort.
    let mut c = h.get(CLAIMS, "shop", "a").unwrap();
    c["spec"]["ports"] = json!([{"name": "https", "port": 0}]);
    h.put(CLAIMS, "shop", "a", c);
    h.reconcile("shop", "a").await.unwrap();
    assert_eq!(
        reason(&h.get(CLAIMS, "shop", "a").unwrap()["status"]),
        "InvalidSpec"
    );
    assert!(
        h.get(SERVICES, "shop", "a-sharedlb").is_none(),
        "its Service is gone"
    );
    // Another claim now gets 443 on the same shared IP, and only one Service holds it.
    h.put(CLAIMS, "shop", "b", claim_json("shop", "b", ports));
    h.reconcile("shop", "b").await.unwrap();
    let holders = h
        .store
        .lock()
        .unwrap()
        .objects
        .iter()
        .filter(|((r, _, _), o)| r == SERVICES && o["spec"]["ports"][0]["port"] == 443)
        .count();
    assert_eq!(holders, 1);
}

#[tokio::test]
async fn a_users_service_with_the_derived_name_is_never_taken_over() {
    let h = harness(Mode::SharedIp);
    let users = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web-sharedlb", "namespace": "shop", "labels": {"team": "web"}},
        "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    });
    h.put(SERVICES, "shop", "web-sharedlb", users.clone());
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    h.reconcile("shop", "web").await.unwrap();
    assert_eq!(
        h.get(SERVICES, "shop", "web-sharedlb").unwrap(),
        users,
        "left as it was"
    );
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(reason(st), "ServiceNameTaken", "{st}");
    h.with_alloc(|a| assert_eq!(a.claim_count(), 0, "it holds no listeners"));
    assert!(
        h.trace()
            .iter()
            .any(|t| t.starts_with("POST") && t.contains("events"))
    );
    // Deleting the claim leaves the user's Service alone too.
    h.delete_claim("shop", "web");
    h.reconcile("shop", "web").await.unwrap();
    assert_eq!(h.get(SERVICES, "shop", "web-sharedlb").unwrap(), users);
    // Once the user's Service is gone, the claim is placed.
    h.store.lock().unwrap().objects.remove(&(
        SERVICES.into(),
        "shop".into(),
        "web-sharedlb".into(),
    ));
    let mut c = h.get(CLAIMS, "shop", "web").unwrap();
    c["metadata"]["deletionTimestamp"] = Value::Null;
    h.put(CLAIMS, "shop", "web", c);
    h.reconcile("shop", "web").await.unwrap();
    assert_eq!(
        reason(&h.get(CLAIMS, "shop", "web").unwrap()["status"]),
        "WaitingForLoadBalancer"
    );
}

#[tokio::test]
async fn claim_names_that_are_no_service_names_get_valid_derived_names() {
    let h = harness(Mode::SharedIp);
    let long = "n".repeat(70);
    for name in ["web.v2", "2fa", long.as_str()] {
        let mut c = claim_json(
            "shop",
            name,
            json!([{"name": "p", "port": 0, "targetPort": 80}]),
        );
        // The selector stays a valid label value (a real API server refuses one of 70
        // characters in the Service; the controller says InvalidSpec for it).
        c["spec"]["selector"] = json!({"app": "web"});
        h.put(CLAIMS, "shop", name, c);
        h.reconcile("shop", name).await.unwrap();
        let st = &h.get(CLAIMS, "shop", name).unwrap()["status"];
        assert_eq!(reason(st), "WaitingForLoadBalancer", "{name}: {st}");
        let svc = core::service_name_for(name);
        assert!(core::is_dns1035_label(&svc), "{svc}");
        assert!(h.get(SERVICES, "shop", &svc).is_some(), "{name} → {svc}");
    }
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
    h.store.lock().unwrap().fail_next = vec![("POST /api/v1/namespaces/shop/services".into(), 500)];
    let err = h.reconcile("shop", "web").await.unwrap_err();
    assert!(
        err.contains("500") || err.contains("InjectedFailure"),
        "{err}"
    );
    assert_eq!(h.ctx.metrics.errors.lock().unwrap().get("api"), Some(&1));
    h.store.lock().unwrap().fail_next = vec![("/status".into(), 409)];
    assert!(
        h.reconcile("shop", "web").await.is_err(),
        "a 409 on status is retried too"
    );
    assert_eq!(
        h.ctx.metrics.errors.lock().unwrap().get("conflict"),
        Some(&1)
    );
    // The controller requeues with back-off; the retry converges on the same LB.
    h.reconcile("shop", "web").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(st["loadBalancer"], "sharedlb-lb-1", "{st}");
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-2")
            .is_none(),
        "no LB leaked"
    );
    assert!(h.get(SERVICES, "shop", "web-sharedlb").is_some());
}

/// The events recorded with `reason`, with their types (a repeat folded into one event's
/// series counts again).
fn events(h: &Harness, reason: &str) -> Vec<String> {
    let objects = h.store.lock().unwrap().objects.clone();
    let mut out = Vec::new();
    for ((r, _, _), e) in &objects {
        if r.contains("events") && e["reason"] == reason {
            let n = e["series"]["count"].as_u64().unwrap_or(1);
            for _ in 0..n {
                out.push(e["type"].as_str().unwrap_or("-").to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn a_claim_whose_objects_fail_to_go_stops_saying_ready_and_is_released_once() {
    let h = harness(Mode::Service);
    shop(&h).await;
    assert_eq!(
        ready(&h.get(CLAIMS, "shop", "web").unwrap()["status"]),
        "True"
    );
    assert_eq!(
        events(&h, "WaitingForLoadBalancer"),
        ["Normal", "Normal", "Normal"],
        "waiting for an LB on its way is progress, not a warning"
    );
    assert_eq!(events(&h, "Assigned"), ["Normal", "Normal", "Normal"]);
    h.delete_claim("shop", "web");
    h.store.lock().unwrap().fail_next = vec![(
        "DELETE /api/v1/namespaces/shop/services/web-sharedlb".into(),
        500,
    )];
    assert!(h.reconcile("shop", "web").await.is_err());
    let c = h.get(CLAIMS, "shop", "web").unwrap();
    assert_eq!(ready(&c["status"]), "False", "{c}");
    assert_eq!(reason(&c["status"]), "Releasing");
    assert_eq!(
        c["metadata"]["finalizers"],
        json!([core::FINALIZER]),
        "kept for the retry"
    );
    assert!(c["status"]["loadBalancer"].is_null(), "freed: {c}");
    assert_eq!(events(&h, "Released"), ["Normal"]);
    assert_eq!(events(&h, "Releasing"), ["Warning"]);
    // The retry deletes the Service and lets the claim go, saying Released no second time.
    h.reconcile("shop", "web").await.unwrap();
    assert_eq!(
        h.get(CLAIMS, "shop", "web").unwrap()["metadata"]["finalizers"],
        json!([])
    );
    assert!(h.get(SERVICES, "shop", "web-sharedlb").is_none());
    assert_eq!(events(&h, "Released"), ["Normal"]);

    // dns's objects go but its finalizer's removal fails: not Ready either meanwhile.
    h.delete_claim("shop", "dns");
    h.store.lock().unwrap().fail_next = vec![(
        "PATCH /apis/sharedlb.io/v1alpha1/namespaces/shop/sharedlbs/dns".into(),
        409,
    )];
    assert!(h.reconcile("shop", "dns").await.is_err());
    let c = h.get(CLAIMS, "shop", "dns").unwrap();
    assert_eq!(reason(&c["status"]), "Releasing", "{c}");
    assert_eq!(ready(&c["status"]), "False");
    h.reconcile("shop", "dns").await.unwrap();
    assert_eq!(
        h.get(CLAIMS, "shop", "dns").unwrap()["metadata"]["finalizers"],
        json!([])
    );
    assert_eq!(
        events(&h, "Released"),
        ["Normal", "Normal"],
        "web once, dns once"
    );

    // A claim that held nothing (more listeners than an LB has) has nothing to release.
    let ports: Vec<Value> = (0..60)
        .map(|i| json!({"name": format!("p{i}"), "port": 1000 + i}))
        .collect();
    h.put(
        CLAIMS,
        "shop",
        "big",
        claim_json("shop", "big", json!(ports)),
    );
    h.reconcile("shop", "big").await.unwrap();
    assert_eq!(
        reason(&h.get(CLAIMS, "shop", "big").unwrap()["status"]),
        "TooLarge"
    );
    assert_eq!(events(&h, "TooLarge"), ["Warning"]);
    h.delete_claim("shop", "big");
    h.reconcile("shop", "big").await.unwrap();
    assert_eq!(
        events(&h, "Released"),
        ["Normal", "Normal"],
        "big held nothing"
    );
}

/// Sets up two claims sharing an LB and a third on another, with the cloud playing along.
async fn shop(h: &Harness) {
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json(
            "shop",
            "web",
            json!([{"name": "https", "port": 443, "targetPort": 8443}]),
        ),
    );
    web_slice(h);
    h.put(
        CLAIMS,
        "shop",
        "dns",
        claim_json(
            "shop",
            "dns",
            json!([{"name": "dns", "protocol": "UDP", "port": 53}]),
        ),
    );
    h.put(
        CLAIMS,
        "shop",
        "web2",
        claim_json("shop", "web2", json!([{"name": "https", "port": 443}])),
    );
    h.converge().await;
    for lb in ["sharedlb-lb-1", "sharedlb-lb-2"] {
        if h.get(SERVICES, "sharedlb-system", lb).is_some() {
            h.give_address(lb, &format!("{lb}.example.net"));
        }
    }
    h.converge().await;
}

/// Checks that the cluster is consistent with itself and the allocator: every claim Ready
/// on an LB whose Service carries exactly the listeners of the claims on it, each claim's
/// Service ours, mirrored slices only on the claim's own LB, no other LB Service. Returns
/// the number of LB Services.
fn consistent(h: &Harness) -> usize {
    let objects = h.store.lock().unwrap().objects.clone();
    let mut per_lb: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((r, ns, name), o) in &objects {
        if r != CLAIMS {
            continue;
        }
        let st = &o["status"];
        assert_eq!(ready(st), "True", "{ns}/{name}: {st}");
        let lb = st["loadBalancer"].as_str().unwrap().to_owned();
        for p in st["ports"].as_array().unwrap() {
            let proto = p["protocol"].as_str().unwrap().to_ascii_lowercase();
            per_lb
                .entry(lb.clone())
                .or_default()
                .push(format!("{proto}-{}", p["port"]));
        }
        let svc = &objects[&(SERVICES.to_owned(), ns.clone(), format!("{name}-sharedlb"))];
        assert_eq!(
            svc["metadata"]["ownerReferences"][0]["uid"],
            o["metadata"]["uid"]
        );
        let mirrors: Vec<&String> = objects
            .iter()
            .filter(|((r, ns, _), m)| {
                r == SLICES
                    && ns == "sharedlb-system"
                    && m["metadata"]["labels"][core::CLAIM_LABEL] == o["metadata"]["uid"]
            })
            .map(|((_, _, n), _)| n)
            .collect();
        if name == "web" {
            assert_eq!(
                mirrors,
                vec![&format!("{lb}-shop-web-ipv4")],
                "web's mirror follows its LB"
            );
        } else {
            assert!(mirrors.is_empty(), "{name}: {mirrors:?}");
        }
    }
    let lb_services: BTreeMap<&String, &Value> = objects
        .iter()
        .filter(|((r, ns, _), _)| r == SERVICES && ns == "sharedlb-system")
        .map(|((_, _, n), o)| (n, o))
        .collect();
    assert_eq!(
        lb_services.keys().map(|n| (*n).clone()).collect::<Vec<_>>(),
        per_lb.keys().cloned().collect::<Vec<_>>()
    );
    for (lb, mut want) in per_lb {
        want.sort();
        let mut got: Vec<String> = lb_services[&lb]["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect();
        got.sort();
        assert_eq!(got, want, "{lb}");
    }
    h.with_alloc(|a| a.check_invariants().unwrap());
    lb_services.len()
}

#[tokio::test]
async fn a_failure_at_any_write_converges() {
    let clean = harness(Mode::Service);
    shop(&clean).await;
    let lbs = consistent(&clean);
    assert_eq!(lbs, 2);
    let writes = clean.store.lock().unwrap().total_writes;
    assert!(writes >= 10, "{writes} writes");
    // Each write of the clean run fails in turn (a 500). Retries may order placements
    // differently, but must end in a consistent cluster with as many LBs and nothing leaked.
    for i in 0..writes {
        let h = harness(Mode::Service);
        h.store.lock().unwrap().fail_write = Some(i);
        shop(&h).await;
        assert_eq!(consistent(&h), lbs, "write {i} of {writes} failed");
    }
}

#[tokio::test]
async fn drift_is_repaired() {
    let h = harness(Mode::Service);
    shop(&h).await;
    let want = h.state();
    let address = |h: &Harness, lb: u32| h.ctx.addresses.lock().unwrap().get(&LbId(lb)).cloned();
    assert_eq!(address(&h, 2).as_deref(), Some("sharedlb-lb-2.example.net"));
    // Someone edits an LB Service's ports, deletes another, and leaves an orphan.
    let mut lb1 = h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1").unwrap();
    lb1["spec"]["ports"] = json!([{"name": "tcp-1", "port": 1, "protocol": "TCP"}]);
    h.put(SERVICES, "sharedlb-system", "sharedlb-lb-1", lb1);
    h.store.lock().unwrap().objects.remove(&(
        SERVICES.into(),
        "sharedlb-system".into(),
        "sharedlb-lb-2".into(),
    ));
    h.put(SERVICES, "sharedlb-system", "sharedlb-lb-9", json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "sharedlb-lb-9", "namespace": "sharedlb-system",
                     "labels": {core::LB_LABEL: "9", core::MANAGED_BY_LABEL: core::MANAGED_BY}},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "tcp-1", "port": 1, "protocol": "TCP"}]},
    }));
    reconcile::resync_lbs(&h.ctx).await.unwrap();
    let lb1 = h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1").unwrap();
    assert_eq!(lb1["spec"]["ports"].as_array().unwrap().len(), 2, "{lb1}");
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-2")
            .is_some(),
        "put back"
    );
    // The Service put back is a new LB in the cloud: the old address is gone with it,
    // and the state API says so until the new one comes.
    assert_eq!(address(&h, 2), None);
    assert_eq!(address(&h, 1).as_deref(), Some("sharedlb-lb-1.example.net"));
    h.give_address("sharedlb-lb-2", "new.example.net");
    reconcile::resync_lbs(&h.ctx).await.unwrap();
    assert_eq!(address(&h, 2).as_deref(), Some("new.example.net"));
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-9")
            .is_none(),
        "orphan deleted"
    );
    // A user's Service without our labels is never touched.
    assert!(
        want.keys()
            .all(|(r, ns, _)| r != SERVICES || ns != "default")
    );
}

/// A second replica beside the harness's, on the same API server, writing only while
/// `fence` holds.
fn elected(h: &Harness, fence: Arc<Fence>) -> Arc<Ctx> {
    let ctx = Ctx::new(
        h.ctx.client.clone(),
        h.ctx.config.clone(),
        futures::channel::mpsc::unbounded().0,
        Recorder::new(
            h.ctx.client.clone(),
            Reporter {
                controller: "t".into(),
                instance: None,
            },
        ),
        fence,
    )
    .unwrap();
    Arc::new(ctx)
}

#[tokio::test]
async fn a_fenced_replica_writes_nothing() {
    let h = harness(Mode::Service);
    let fenced = elected(&h, Arc::new(Fence::elected()));
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    let err = reconcile(h.claim("shop", "web"), fenced.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, reconcile::Error::Fenced), "{err}");
    let _ = reconcile::tick(&fenced, None).await;
    let _ = reconcile::resync_lbs(&fenced).await;
    let _ = reconcile::resync_claims(&fenced).await;
    let trace = h.trace();
    assert!(
        trace.iter().all(|t| t.starts_with("GET")),
        "only reads: {trace:?}"
    );
    // Leader by role, its lease not renewed: not ready, and not counted as the leader
    // (its allocator figures would sit beside the new leader's).
    fenced.set_role(Role::Leader);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sharedlb_controller::http::router(&fenced);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (code, body) = http_get(addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("not renewed"), "{body}");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(metrics.contains("sharedlb_leader 0"), "{metrics}");
    assert!(!metrics.contains("sharedlb_lbs{"), "{metrics}");
}

/// A pass stopped by the lease running out (no write allowed) did as it must: it is not
/// counted among the background failures, which are for passes that should have worked.
#[tokio::test]
#[allow(clippy::disallowed_methods)] // the fence reads the monotonic clock
async fn a_pass_stopped_by_the_lease_is_not_a_background_failure() {
    let h = harness(Mode::Service);
    let fence = Arc::new(Fence::elected());
    fence.renewed(std::time::Instant::now());
    let ctx = elected(&h, fence.clone());
    ctx.set_role(Role::Leader);
    h.put(
        CLAIMS,
        "shop",
        "web",
        claim_json("shop", "web", json!([{"name": "https", "port": 443}])),
    );
    reconcile(h.claim("shop", "web"), ctx.clone())
        .await
        .unwrap();
    // The lease is lost: the LB resync would apply the LB's Service, and may not.
    fence.close();
    let err = reconcile::resync_lbs(&ctx).await.unwrap_err();
    assert!(matches!(err, reconcile::Error::Fenced), "{err}");
    let failures = ctx.metrics.background_failures.lock().unwrap().clone();
    assert_eq!(
        failures.get(&reconcile::Background::LbResync),
        None,
        "{failures:?}"
    );
}

#[tokio::test]
async fn restart_rebuilds_state_and_writes_nothing_new() {
    let h = harness(Mode::Service);
    shop(&h).await;
    let before = h.state();
    h.trace();
    // A claim created while the controller was down.
    h.put(
        CLAIMS,
        "shop",
        "late",
        claim_json("shop", "late", json!([{"name": "p", "port": 8080}])),
    );
    let rebuilt = sharedlb_controller::startup::rebuild(
        &h.ctx.client,
        &h.ctx.config,
        sharedlb_allocator::Time(reconcile::now_ms()),
    )
    .await
    .unwrap();
    assert_eq!(
        rebuilt.placement(&"shop/web".parse().unwrap()).map(|p| p.0),
        Some(LbId(1))
    );
    h.ctx.set_allocator(rebuilt);
    // The first tick (the wake-up is now) places the late claim on lb-1, which has room.
    assert!(reconcile::next_wakeup(&h.ctx).is_some_and(|w| w.0 <= reconcile::now_ms()));
    reconcile::tick(&h.ctx, None).await.unwrap();
    h.with_alloc(|a| {
        assert_eq!(
            a.placement(&"shop/late".parse().unwrap()).map(|p| p.0),
            Some(LbId(1))
        );
    });
    // It goes again (through its finalizer); what the restart had is unchanged.
    h.converge().await;
    h.delete_claim("shop", "late");
    h.reconcile("shop", "late").await.unwrap();
    h.store
        .lock()
        .unwrap()
        .objects
        .remove(&(CLAIMS.into(), "shop".into(), "late".into()));
    h.converge().await;
    assert_eq!(h.state(), before, "a restart changes nothing it had");
}

#[tokio::test]
async fn degraded_service_mode_explains_and_lets_deletions_through() {
    let h = harness(Mode::Service);
    *h.ctx.degraded.lock().unwrap() = Some("service mode needs discovery.k8s.io/v1".into());
    h.ctx.set_role(Role::Degraded);
    let mut c = claim_json("shop", "web", json!([{"name": "https", "port": 443}]));
    c["metadata"]["finalizers"] = json!([core::FINALIZER]);
    h.put(CLAIMS, "shop", "web", c);
    h.reconcile("shop", "web").await.unwrap();
    let st = &h.get(CLAIMS, "shop", "web").unwrap()["status"];
    assert_eq!(reason(st), "Unsupported", "{st}");
    assert!(
        st["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("discovery.k8s.io/v1")
    );
    assert!(
        h.get(SERVICES, "sharedlb-system", "sharedlb-lb-1")
            .is_none(),
        "no orphan made"
    );
    h.delete_claim("shop", "web");
    h.reconcile("shop", "web").await.unwrap();
    assert_eq!(
        h.get(CLAIMS, "shop", "web").unwrap()["metadata"]["finalizers"],
        json!([])
    );
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

fn json_of(body: &str) -> Value {
    let start = body.find('{').unwrap_or(0);
    let end = body.rfind('}').map_or(body.len(), |i| i + 1);
    serde_json::from_str(&body[start..end]).unwrap()
}

#[tokio::test]
async fn http_serves_health_metrics_and_state_and_a_follower_says_so() {
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
    // The LB resync fails once (its list of LB Services), then the claim resync (its list
    // of claims); the tick passes.
    for fail in [
        "GET /api/v1/namespaces/sharedlb-system/services",
        "sharedlbs",
    ] {
        h.store.lock().unwrap().fail_next = vec![(fail.into(), 500)];
        let _ = reconcile::resync_claims(&h.ctx).await;
        let _ = reconcile::resync_lbs(&h.ctx).await;
    }
    reconcile::tick(&h.ctx, None).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = sharedlb_controller::http::router(&h.ctx);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    let (code, metrics) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for want in [
        "sharedlb_leader 1",
        "sharedlb_lbs{state=\"provisioning\"} 1",
        "sharedlb_listeners_used{lb=\"lb-1\",profile=\"aws-nlb\"} 1",
        "sharedlb_pending_claims{reason=\"TooLarge\"} 1",
        "sharedlb_reconciles_total 2",
        "sharedlb_reconcile_errors_total{kind=\"api\"} 0",
        "sharedlb_background_failures_total{task=\"tick\"} 0",
        "sharedlb_background_failures_total{task=\"claim_resync\"} 1",
        "sharedlb_background_failures_total{task=\"lb_resync\"} 1",
    ] {
        assert!(metrics.contains(want), "{want} missing: {metrics}");
    }
    let (code, body) = http_get(addr, "/api/v1/state").await;
    assert_eq!(code, 200);
    let state: sharedlb_allocator::view::StateView =
        serde_json::from_value(json_of(&body)).unwrap();
    assert_eq!(state.lbs.len(), 1);
    assert_eq!(state.lbs[0].listeners[0].claim, "shop/web");
    assert_eq!(state.pending[0].reason, "TooLarge");
    // A follower says it follows: no empty state, no zero gauges.
    h.ctx.set_role(Role::Follower);
    *h.ctx.leader.lock().unwrap() = Some("replica-a".into());
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    let (code, body) = http_get(addr, "/api/v1/state").await;
    assert_eq!(code, 503);
    let v = json_of(&body);
    assert_eq!(v["role"], "follower");
    assert!(v["message"].as_str().unwrap().contains("replica-a"), "{v}");
    let (_, metrics) = http_get(addr, "/metrics").await;
    assert!(metrics.contains("sharedlb_leader 0"), "{metrics}");
    assert!(
        !metrics.contains("sharedlb_lbs{"),
        "no allocator figures: {metrics}"
    );
}

#[tokio::test]
async fn a_claim_moved_to_a_new_shared_ip_does_not_lend_it_the_old_one() {
    let h = harness(Mode::SharedIp);
    let give_ip = |h: &Harness, name: &str, ip: &str| {
        let mut svc = h
            .get(SERVICES, "games", &format!("{name}-sharedlb"))
            .unwrap();
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
        h.put(SERVICES, "games", &format!("{name}-sharedlb"), svc);
    };
    for name in ["a", "b"] {
        let ports = json!([{"name": "game", "protocol": "UDP", "port": 0, "targetPort": 7777}]);
        h.put(CLAIMS, "games", name, claim_json("games", name, ports));
        h.reconcile("games", name).await.unwrap();
        give_ip(&h, name, "192.0.2.9");
        h.reconcile("games", name).await.unwrap();
    }
    let lb_state = |h: &Harness, lb: u32| h.with_alloc(|a| a.lb(LbId(lb)).map(|l| l.state));
    assert_eq!(lb_state(&h, 1), Some(LbState::Ready));
    // a asks for an LB of its own: its Service, relabelled, still shows lb-1's IP.
    let mut a = h.get(CLAIMS, "games", "a").unwrap();
    a["spec"]["sharing"] = json!("Dedicated");
    a["metadata"]["generation"] = json!(2);
    h.put(CLAIMS, "games", "a", a);
    for _ in 0..2 {
        h.reconcile("games", "a").await.unwrap();
        let st = &h.get(CLAIMS, "games", "a").unwrap()["status"];
        assert_eq!(st["loadBalancer"], "sharedlb-lb-2 (shared IP)", "{st}");
        assert_eq!(
            reason(st),
            "WaitingForLoadBalancer",
            "not at lb-1's IP: {st}"
        );
        assert_eq!(lb_state(&h, 2), Some(LbState::Provisioning));
    }
    // Its own IP comes.
    give_ip(&h, "a", "192.0.2.10");
    h.reconcile("games", "a").await.unwrap();
    let st = &h.get(CLAIMS, "games", "a").unwrap()["status"];
    assert_eq!(st["address"], "192.0.2.10", "{st}");
    assert_eq!(lb_state(&h, 2), Some(LbState::Ready));
    let addresses = h.ctx.addresses.lock().unwrap().clone();
    assert_eq!(addresses[&LbId(1)], "192.0.2.9");
    assert_eq!(addresses[&LbId(2)], "192.0.2.10");
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
    assert_eq!(reason(st), "WaitingForLoadBalancer", "no IP yet: {st}");
    // No address, no ready LB: the state API and the cost gauge would otherwise count an
    // LB whose IP never came as serving.
    let state = |h: &Harness| h.with_alloc(|a| a.lb(LbId(1)).unwrap().state);
    assert_eq!(state(&h), LbState::Provisioning);

    // The implementation gives b's Service the shared IP: b's reconcile (its Service is
    // watched) finds it and the LB is ready; a gets the address on its next reconcile.
    let mut svc = b;
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}});
    h.put(SERVICES, "games", "b-sharedlb", svc);
    h.reconcile("games", "b").await.unwrap();
    assert_eq!(state(&h), LbState::Ready);
    let st = &h.get(CLAIMS, "games", "b").unwrap()["status"];
    assert_eq!(ready(st), "True", "{st}");
    assert_eq!(st["address"], "192.0.2.9");
}
