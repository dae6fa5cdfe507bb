//! Leader election with a coordination.k8s.io Lease, so two replicas never both allocate.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

const LEASE: &str = "sharedlb-controller";
const DURATION_S: i32 = 15;

#[allow(clippy::disallowed_methods)] // the shell reads the wall clock for lease times
fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Whether `lease` may be taken by `me` now: free, ours, or expired.
pub fn may_take(lease: &Lease, me: &str, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(spec) = &lease.spec else { return true };
    if spec
        .holder_identity
        .as_deref()
        .is_none_or(|h| h == me || h.is_empty())
    {
        return true;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(DURATION_S));
    match &spec.renew_time {
        Some(MicroTime(t)) => now.as_second() - t.as_second() > duration,
        None => true,
    }
}

fn spec_for(me: &str, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let same = previous.and_then(|s| s.holder_identity.as_deref()) == Some(me);
    let transitions = previous.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(DURATION_S),
        acquire_time: if same {
            previous.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(now()))
        },
        renew_time: Some(MicroTime(now())),
        lease_transitions: Some(if same { transitions } else { transitions + 1 }),
        ..LeaseSpec::default()
    }
}

/// Tries once to take or renew the lease; true when we hold it afterwards. Updates use the
/// lease's resourceVersion, so of two replicas racing only one wins.
pub async fn try_acquire(client: &Client, namespace: &str, me: &str) -> Result<bool, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(LEASE).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE.into()),
                    namespace: Some(namespace.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec_for(me, None)),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if !may_take(&lease, me, now()) {
                return Ok(false);
            }
            lease.spec = Some(spec_for(me, lease.spec.as_ref()));
            match api.replace(LEASE, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica leads, then keeps renewing in the background; if renewal
/// fails for a whole lease duration the process exits, so that no two replicas ever
/// allocate at once (Kubernetes restarts it as a follower).
pub async fn lead(client: Client, namespace: String, me: String) {
    loop {
        match try_acquire(&client, &namespace, &me).await {
            Ok(true) => break,
            Ok(false) => tracing::info!("another replica leads; waiting"),
            Err(e) => tracing::warn!("lease: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    tracing::info!(%me, "leading");
    tokio::spawn(async move {
        let mut failures = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            match try_acquire(&client, &namespace, &me).await {
                Ok(true) => failures = 0,
                other => {
                    failures += 1;
                    tracing::warn!(?other, "lease renewal failed");
                    if failures * 5 >= DURATION_S {
                        tracing::error!("lost the lease; exiting");
                        std::process::exit(1);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_rules() {
        let t = now();
        let held = |who: &str, age_s: i64| Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(who.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(
                    t - k8s_openapi::jiff::SignedDuration::from_secs(age_s),
                )),
                ..LeaseSpec::default()
            }),
        };
        assert!(may_take(&held("me", 1), "me", t), "ours");
        assert!(
            !may_take(&held("other", 1), "me", t),
            "fresh and someone else's"
        );
        assert!(may_take(&held("other", 60), "me", t), "expired");
        assert!(may_take(&Lease::default(), "me", t), "empty");
    }
}
