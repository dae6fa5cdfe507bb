//! sharedlb's Kubernetes controller: `SharedLB` claims placed on shared L4 load balancers
//! by the allocator. The pure reconcile core is in [`core`]; the kube glue in [`reconcile`].

pub mod config;
pub mod core;
pub mod crd;
pub mod fence;
pub mod http;
pub mod leader;
pub mod reconcile;
pub mod startup;
