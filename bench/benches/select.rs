//! Criterion: rule selection at 10, 1,000 and 10,000 rules (hitting the last rule), a whole
//! pipeline decision, and template rendering — natively.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis_bench::{last_url, request, rule_set};
use portcullis_shared::pipeline::begin;
use portcullis_shared::template::{Context, Template};
use std::hint::black_box;

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    for n in [10usize, 1_000, 10_000] {
        let set = rule_set(n);
        let url = last_url(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(set.select("GET", black_box(&url))))
        });
    }
    group.finish();
}

fn decision(c: &mut Criterion) {
    let set = rule_set(1_000);
    let url = last_url(1_000);
    let headers = vec![("accept", "*/*")];
    c.bench_function("decide/anonymous+header/1000-rules", |b| {
        b.iter(|| black_box(begin(&set, &request(black_box(&url), &headers), 0)))
    });
}

fn template(c: &mut Criterion) {
    let t = Template::compile(r#"{{ .Extra.identity.traits.email | default "none" }}/{{ print .Subject }}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let extra = serde_json::json!({"identity": {"traits": {"email": "a@example.com"}}});
    let extra = extra.as_object().cloned().unwrap_or_default();
    let ctx = Context { subject: "user-1", extra: &extra, captures: &[], headers: &[] };
    c.bench_function("template/render", |b| b.iter(|| black_box(t.render(black_box(&ctx)))));
}

criterion_group!(benches, selection, decision, template);
criterion_main!(benches);
