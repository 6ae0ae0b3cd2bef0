//! The bound-object index (SPEC section 12): memory per watched object and the time to build
//! the index from a list, at 100k pods.
//!
//! What is measured, and how:
//! - `bytes/object`: the heap the index holds for 100k pods (`namespace/name` keys like a
//!   ReplicaSet's pods, canonical UUIDs), counted by a counting global allocator (stats_alloc
//!   over the system allocator): bytes requested and still held after the index is built and
//!   the list it came from dropped. glibc adds up to 16 bytes of chunk overhead per allocation
//!   on top: reported separately, as an upper bound.
//! - `list`: parsing a 100k-item `PartialObjectMetadataList` (JSON as the apiserver sends it,
//!   with managedFields, labels and annotations the index drops) with kube-rs's types, then
//!   building the index: the proxy's share of an initial list (no network, no apiserver).
//!
//! `cargo bench --bench bound_index` (100k objects); CI's `cargo test --benches` runs it with
//! 10k as a check (the 200-byte target must hold there too).

use std::alloc::System;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ObjectList, PartialObjectMeta};
use serde_json::json;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokenreview_proxy::bound::{state_of, Index, Kind, KindMap};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn list_json(n: usize) -> Vec<u8> {
    let items: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {
                    "name": format!("web-{:x}-{:05x}", i / 50, i),
                    "namespace": format!("team-{}", i % 200),
                    "uid": format!("{:08x}-1c2d-4e5f-8a9b-{:012x}", i, i * 7919),
                    "resourceVersion": (1000 + i).to_string(),
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                    "labels": {"app": "web", "pod-template-hash": format!("{:x}", i / 50)},
                    "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": format!("web-{:x}", i / 50), "uid": "0e7b7c2a-59a4-4d2c-9a52-3f1c2f8d7e10"}],
                    "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                        "apiVersion": "v1", "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
                }
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "999999"},
        "items": items,
    }))
    .expect("json")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 100_000 } else { 10_000 };
    let json = list_json(n);

    let started = Instant::now();
    let region = Region::new(GLOBAL);
    let index = Index::default();
    {
        let list: ObjectList<PartialObjectMeta<Pod>> =
            serde_json::from_slice(&json).expect("a PartialObjectMetadataList");
        let mut map = KindMap::new();
        for o in &list.items {
            if let Some((k, s)) = state_of(Kind::Pods, o) {
                map.insert(k, s);
            }
        }
        index.replace(Kind::Pods, map);
    }
    let elapsed = started.elapsed();
    let s = region.change();
    assert_eq!(index.len(Kind::Pods), n);
    // Reallocations are already in both byte counts (stats_alloc adds growth to `allocated`,
    // shrinkage to `deallocated`).
    let held = s.bytes_allocated as isize - s.bytes_deallocated as isize;
    let live_allocs = s.allocations as isize - s.deallocations as isize;
    let per = held as f64 / n as f64;
    let overhead = (live_allocs * 16) as f64 / n as f64;
    println!(
        "bound_index: {n} pods: {per:.1} bytes/object held (requested), +{overhead:.1} glibc chunk overhead at most ({live_allocs} live allocations); list parse + index build {:.1} ms ({:.2} µs/object, {} MB of JSON)",
        elapsed.as_secs_f64() * 1000.0,
        elapsed.as_secs_f64() * 1e6 / n as f64,
        json.len() / 1_000_000
    );
    assert!(per + overhead <= 200.0, "over 200 bytes an object");
}
