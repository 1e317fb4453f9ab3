//! One trace crosses access-service into lock-gateway: the W3C `traceparent` injected
//! by access-service's client is extracted by lock-gateway's server.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use latchkey::pb::access::v1::ListLockAccountsRequest;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::testkit::{authorized, token};
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

fn find<'a>(spans: &'a [SpanData], name: &str, kind: SpanKind) -> Option<&'a SpanData> {
    spans.iter().find(|s| s.name == name && s.span_kind == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_access_service_and_lock_gateway() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(latchkey::telemetry::otel_layer(&provider, "latchkey-test"));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let pair = common::start().await;
    let mut directory = DirectoryServiceClient::new(pair.access.channel().await);
    directory
        .list_lock_accounts(authorized(
            ListLockAccountsRequest {},
            &token("t1", "u1", &["ADMIN"]),
        ))
        .await
        .unwrap();

    // Server spans close just after their responses are written: wait until all three
    // have been exported.
    let access_server = "latchkey.access.v1.DirectoryService/ListLockAccounts";
    let gateway_call = "latchkey.gateway.v1.LockGateway/ListAccounts";
    let mut spans = Vec::new();
    for _ in 0..500 {
        spans = exporter.get_finished_spans().unwrap();
        if find(&spans, access_server, SpanKind::Server).is_some()
            && find(&spans, gateway_call, SpanKind::Client).is_some()
            && find(&spans, gateway_call, SpanKind::Server).is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let names: Vec<_> = spans
        .iter()
        .map(|s| (s.name.to_string(), s.span_kind.clone()))
        .collect();
    let access =
        find(&spans, access_server, SpanKind::Server).unwrap_or_else(|| panic!("{names:?}"));
    let client =
        find(&spans, gateway_call, SpanKind::Client).unwrap_or_else(|| panic!("{names:?}"));
    let gateway =
        find(&spans, gateway_call, SpanKind::Server).unwrap_or_else(|| panic!("{names:?}"));

    let trace_id = access.span_context.trace_id();
    assert_eq!(client.span_context.trace_id(), trace_id);
    assert_eq!(gateway.span_context.trace_id(), trace_id);
    assert_eq!(client.parent_span_id, access.span_context.span_id());
    assert_eq!(gateway.parent_span_id, client.span_context.span_id());
    assert!(
        gateway.parent_span_is_remote,
        "the gateway's parent came over the wire"
    );
    let has = |span: &SpanData, key: &str, value: &str| {
        span.attributes
            .iter()
            .any(|kv| kv.key.as_str() == key && kv.value.as_str() == value)
    };
    assert!(has(gateway, "rpc.system", "grpc"));
    assert!(has(
        gateway,
        "rpc.service",
        "latchkey.gateway.v1.LockGateway"
    ));
    assert!(has(gateway, "rpc.method", "ListAccounts"));
}
