//! The in-test OTLP collector (`corral_testkit::otlp`) against the real `opentelemetry-otlp`
//! exporter, over both transports.

mod common;

use std::time::Duration;

use common::TIMEOUT;
use corral_testkit::otlp::{CollectedSpan, Collector, Kind, Transport, hex};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, Tracer, TracerProvider};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// Exports a `parent` span and its `child` (a client span with an attribute) through
/// `exporter`, for a resource named `service`; returns once the provider is shut down.
fn export_parent_and_child(exporter: SpanExporter, service: &str) {
    let resource = Resource::builder_empty()
        .with_service_name(service.to_owned())
        .with_attribute(KeyValue::new("service.instance.id", "selftest-1"))
        .build();
    let provider = SdkTracerProvider::builder().with_resource(resource).with_batch_exporter(exporter).build();
    let tracer = provider.tracer("otlp-selftest");
    tracer.in_span("parent", |_| {
        let _child = tracer
            .span_builder("child")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("answer", 42), KeyValue::new("word", "hello")])
            .start(&tracer);
    });
    provider.force_flush().expect("force_flush");
    provider.shutdown().expect("shutdown");
}

/// Waits for both spans of `service` and checks their ids, resource and transport.
fn check(collector: &Collector, service: &str, transport: Transport) {
    let of_service = |spans: &[CollectedSpan], name: &str| {
        spans
            .iter()
            .find(|s| s.name == name && s.resource.get("service.name").map(String::as_str) == Some(service))
            .cloned()
    };
    let spans = collector.wait_for(&format!("parent and child of {service}"), TIMEOUT, |spans| {
        of_service(spans, "parent").is_some() && of_service(spans, "child").is_some()
    });
    let parent = of_service(&spans, "parent").expect("parent");
    let child = of_service(&spans, "child").expect("child");

    assert_eq!(
        child.trace_id,
        parent.trace_id,
        "child trace {} != parent trace {}",
        hex(&child.trace_id),
        hex(&parent.trace_id)
    );
    assert_ne!(parent.trace_id, [0; 16], "parent has the invalid trace id");
    assert_eq!(parent.parent_span_id, None, "parent should be a root span: {parent:?}");
    assert_eq!(
        child.parent_span_id,
        Some(parent.span_id),
        "child's parent {:?} is not the parent span {}",
        child.parent_span_id.map(|p| hex(&p)),
        hex(&parent.span_id)
    );
    assert_eq!(child.kind, Kind::Client, "child: {child:?}");
    assert_eq!(parent.kind, Kind::Internal, "parent: {parent:?}");
    assert_eq!(child.attributes.get("answer").map(String::as_str), Some("42"), "child: {child:?}");
    assert_eq!(child.attributes.get("word").map(String::as_str), Some("hello"), "child: {child:?}");
    assert_eq!(child.resource.get("service.instance.id").map(String::as_str), Some("selftest-1"), "{child:?}");
    assert_eq!(child.scope, "otlp-selftest");
    for span in [&parent, &child] {
        assert_eq!(span.transport, transport, "{span:?}");
    }
}

#[test]
fn http_protobuf_spans_arrive() {
    let collector = Collector::start();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(collector.http_traces_endpoint())
        .with_timeout(Duration::from_secs(5))
        .build()
        .expect("build the HTTP span exporter");
    export_parent_and_child(exporter, "selftest-http");
    check(&collector, "selftest-http", Transport::Http);
}

#[test]
fn grpc_spans_arrive() {
    let collector = Collector::start();
    // The tonic channel spawns its connection tasks on the runtime it is built in, and that
    // runtime must keep running while the SDK's batch thread exports: a runtime of its own.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime");
    let exporter = {
        let _entered = runtime.enter();
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(collector.grpc_endpoint())
            .with_timeout(Duration::from_secs(5))
            .build()
            .expect("build the gRPC span exporter")
    };
    export_parent_and_child(exporter, "selftest-grpc");
    check(&collector, "selftest-grpc", Transport::Grpc);
    runtime.shutdown_timeout(Duration::from_secs(5));
}

/// The collector also serves when started from a current-thread tokio test (it has a thread
/// and a runtime of its own); the blocking exporter and waits run off the test's runtime.
#[tokio::test]
async fn collector_works_from_a_current_thread_runtime() {
    let collector = std::sync::Arc::new(Collector::start());
    let exporting = collector.clone();
    tokio::task::spawn_blocking(move || {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(exporting.http_traces_endpoint())
            .build()
            .expect("build the HTTP span exporter");
        export_parent_and_child(exporter, "selftest-async");
        check(&exporting, "selftest-async", Transport::Http);
    })
    .await
    .expect("the exporting task");
    assert!(collector.spans().iter().all(|s| s.transport == Transport::Http));
}
