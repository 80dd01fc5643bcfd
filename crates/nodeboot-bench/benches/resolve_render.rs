//! Resolution and rendering cost from 1k to 100k nodes, and the per-request lookup.
//! `cargo bench --bench resolve_render`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nodeboot_bench::synthetic;
use nodeboot_core::compile::ConfigCompiler;
use nodeboot_core::mac::Mac;
use nodeboot_core::render::RenderSettings;
use nodeboot_core::resolve::resolve_namespace;
use nodeboot_core::snapshot::{Identity, Query, build};

fn settings() -> RenderSettings {
    RenderSettings {
        server_url: "http://10.1.0.1:8080".into(),
        retry_max_delay: 60,
    }
}

fn resolution(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    group.sample_size(10);
    for nodes in [1_000, 10_000, 100_000] {
        let site = synthetic::site(nodes);
        let states = ConfigCompiler::default().compile_all(&site.boot_configs, &site.secrets);
        let configs: Vec<_> = states.iter().filter_map(|s| s.served.clone()).collect();
        let groups = site.node_groups.clone();
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| black_box(resolve_namespace(synthetic::NAMESPACE, &groups, &configs)))
        });
    }
    group.finish();
}

fn full_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    for nodes in [1_000, 10_000, 100_000] {
        let site = synthetic::site(nodes);
        let settings = settings();
        // A warm compiler: BootConfigs did not change, the inventory did.
        let mut compiler = ConfigCompiler::default();
        let _ = build(&site, &mut compiler, &settings);
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &nodes, |b, _| {
            b.iter(|| black_box(build(&site, &mut compiler, &settings)))
        });
    }
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let site = synthetic::site(100_000);
    let (snapshot, _) = build(&site, &mut ConfigCompiler::default(), &settings());
    let macs: Vec<Mac> = (0..100_000)
        .step_by(997)
        .map(|i| synthetic::node_mac(i).parse().unwrap())
        .collect();
    // What a bootscript request costs the core: find the node, decide, assemble the script.
    c.bench_function("answer_by_mac_100k", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % macs.len();
            black_box(
                snapshot
                    .answer(&Query::new(Identity::Mac(macs[i])))
                    .script(),
            )
        })
    });
}

criterion_group!(benches, resolution, full_build, lookup);
criterion_main!(benches);
