//! `params/dev_setup/k{k}`: development SRS generation (halo2's own setup is timed by the params
//! crate's test, which compares the two in one run).

use criterion::{criterion_group, criterion_main, Criterion};

fn dev_setup(c: &mut Criterion) {
    let mut group = c.benchmark_group("params");
    group.sample_size(10);
    for k in [12u32, 16] {
        group.bench_function(format!("dev_setup/k{k}"), |b| {
            b.iter(|| params::dev_setup(k, 0, false).expect("setup"))
        });
    }
    group.finish();
}

criterion_group!(benches, dev_setup);
criterion_main!(benches);
