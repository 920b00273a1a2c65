//! Fleet mode: `sentry watch` over work sentry did not start (cgroups, systemd units, CI jobs
//! found on the host), and what CI jobs look like from their environment.

pub mod ci;
