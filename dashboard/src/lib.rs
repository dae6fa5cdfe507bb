//! sharedlb's dashboard: LB and port usage in the browser, live from the controller's
//! `/api/v1/state` or from the simulator running in the page.

pub mod app;
pub mod viewmodel;
