//! Leader election with a coordination.k8s.io Lease, as client-go's leader election does:
//! a lease of 15 s, renewed every 2 s; a replica that cannot renew within the 10 s renew
//! deadline stops writing at once (the [`Fence`]) and exits, so two replicas never both
//! write; on shutdown the lease is released so the next replica takes over at once.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::fence::Fence;

/// The Lease's name.
pub const LEASE: &str = "sharedlb-controller";
/// How long a lease is valid without renewal.
pub const DURATION_S: i32 = 15;
/// How often the leader renews (and a follower retries).
pub const RETRY: Duration = Duration::from_secs(2);

#[allow(clippy::disallowed_methods)] // the shell reads the wall clock for lease times
fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

#[allow(clippy::disallowed_methods)] // the shell reads the monotonic clock for the fence
fn instant() -> std::time::Instant {
    std::time::Instant::now()
}

/// Whether `lease` may be taken by `me` now: free (released), ours, or expired.
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

/// Who holds the lease, if anyone.
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
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

/// What one attempt at the lease found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it now.
    Held,
    /// Someone else holds it (their identity, if known).
    Other(Option<String>),
}

/// Tries once to take or renew the lease. Updates carry the lease's resourceVersion, so of
/// two replicas racing only one wins.
pub async fn try_acquire(
    client: &Client,
    namespace: &str,
    me: &str,
) -> Result<Attempt, kube::Error> {
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
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Other(None)),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if !may_take(&lease, me, now()) {
                return Ok(Attempt::Other(holder(&lease).map(str::to_owned)));
            }
            lease.spec = Some(spec_for(me, lease.spec.as_ref()));
            match api.replace(LEASE, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Other(None)),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease; `on_other` hears who leads meanwhile. The
/// fence opens when it is taken.
pub async fn acquire(
    client: &Client,
    namespace: &str,
    me: &str,
    fence: &Fence,
    on_other: impl Fn(Option<String>),
) {
    loop {
        let sent = instant();
        match try_acquire(client, namespace, me).await {
            Ok(Attempt::Held) => {
                fence.renewed(sent);
                tracing::info!(%me, "leading");
                return;
            }
            Ok(Attempt::Other(h)) => {
                tracing::debug!(holder = ?h, "another replica leads; waiting");
                on_other(h);
            }
            Err(e) => tracing::warn!("lease: {e}"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Renews the lease in the background. A renewal that finds the lease taken by someone
/// else, or no renewal within the deadline, closes the fence and ends the process (the
/// Deployment starts it again as a follower).
pub fn keep(client: Client, namespace: String, me: String, fence: Arc<Fence>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RETRY).await;
            let sent = instant();
            match try_acquire(&client, &namespace, &me).await {
                Ok(Attempt::Held) => fence.renewed(sent),
                Ok(Attempt::Other(h)) => {
                    fence.close();
                    tracing::error!(holder = ?h, "lost the lease to another replica; exiting");
                    std::process::exit(1);
                }
                Err(e) => {
                    tracing::warn!("lease renewal failed: {e}");
                    if !fence.holds() {
                        tracing::error!("could not renew the lease within the deadline; exiting");
                        std::process::exit(1);
                    }
                }
            }
        }
    });
}

/// Gives the lease up (on shutdown): the next replica need not wait for it to expire.
pub async fn release(client: &Client, namespace: &str, me: &str) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let Some(mut lease) = api.get_opt(LEASE).await? else {
        return Ok(());
    };
    if holder(&lease) != Some(me) {
        return Ok(());
    }
    if let Some(spec) = lease.spec.as_mut() {
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(now()));
    }
    api.replace(LEASE, &PostParams::default(), &lease).await?;
    tracing::info!("released the lease");
    Ok(())
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
        assert!(may_take(&held("", 1), "me", t), "released");
        assert_eq!(holder(&held("other", 1)), Some("other"));
        assert_eq!(holder(&held("", 1)), None);
    }
}
