//! Every RPC is authenticated and each method's roles are enforced.

#![allow(clippy::unwrap_used)]

mod common;

use latchkey::auth::Claims;
use latchkey::pb::access::v1::{CreatePropertyRequest, ListPropertiesRequest, Property};
use latchkey::testkit::{TEST_JWT_SECRET, authorized, token, token_with_claims};
use tonic::Code;
use tonic_types::StatusExt;

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

fn claims(exp_offset: i64, aud: Option<&str>) -> Claims {
    Claims {
        sub: "u1".into(),
        tenant_id: "t1".into(),
        roles: vec!["ADMIN".into()],
        exp: chrono::Utc::now().timestamp() + exp_offset,
        iat: None,
        iss: None,
        aud: aud.map(str::to_owned),
    }
}

#[tokio::test]
async fn refuses_missing_malformed_expired_and_forged_tokens() {
    let db = common::database().await;
    let mut config = common::config(db.url());
    config.jwt.jwt_audience = Some("latchkey".into());
    let server = common::start(config).await;
    let mut client = common::directory(&server).await;

    let missing = client
        .list_properties(ListPropertiesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert_eq!(reason(&missing), "TOKEN_MISSING");

    let cases = [
        ("not-a-jwt".to_owned(), "TOKEN_MALFORMED"),
        (
            token_with_claims(&claims(-300, Some("latchkey")), TEST_JWT_SECRET),
            "TOKEN_EXPIRED",
        ),
        (
            token_with_claims(&claims(300, Some("latchkey")), "another-secret"),
            "TOKEN_SIGNATURE_INVALID",
        ),
        (
            token_with_claims(&claims(300, Some("elsewhere")), TEST_JWT_SECRET),
            "TOKEN_AUDIENCE_INVALID",
        ),
    ];
    for (token, expected) in cases {
        let status = client
            .list_properties(authorized(ListPropertiesRequest::default(), &token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{expected}");
        assert_eq!(reason(&status), expected);
    }

    let good = token_with_claims(&claims(300, Some("latchkey")), TEST_JWT_SECRET);
    let listed = client
        .list_properties(authorized(ListPropertiesRequest::default(), &good))
        .await;
    assert!(listed.is_ok(), "{listed:?}");
}

#[tokio::test]
async fn enforces_roles_per_method() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let create = || CreatePropertyRequest {
        property: Some(Property {
            name: "Gym Centro".into(),
            time_zone: "Europe/Madrid".into(),
            ..Property::default()
        }),
        request_id: String::new(),
    };

    let member = token("t1", "m1", &["member"]);
    let status = client
        .list_properties(authorized(ListPropertiesRequest::default(), &member))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason(&status), "ROLE_NOT_ALLOWED");

    let manager = token("t1", "mgr", &["MANAGER"]);
    assert!(
        client
            .list_properties(authorized(ListPropertiesRequest::default(), &manager))
            .await
            .is_ok()
    );
    let status = client
        .create_property(authorized(create(), &manager))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let admin = token("t1", "adm", &["ADMIN"]);
    assert!(
        client
            .create_property(authorized(create(), &admin))
            .await
            .is_ok()
    );
    let listed = client
        .list_properties(authorized(ListPropertiesRequest::default(), &manager))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.properties.len(),
        1,
        "the refused create stored nothing"
    );
}
