//! `#[repr(C)]` records, map key/value types and limits shared by the eBPF program
//! (`sentry-ebpf`) and user space (`sentry`). Nothing else lives here.
#![no_std]
