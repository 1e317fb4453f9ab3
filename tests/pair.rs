//! access-service and lock-gateway together: the SERVICE credential, tenant scoping
//! across the hop, and what a caller sees when lock-gateway cannot be reached.

#![allow(clippy::unwrap_used)]

mod common;

use latchkey::pb::access::v1::ListLockAccountsRequest;
use latchkey::pb::access::v1::directory_service_client::DirectoryServiceClient;
use latchkey::testkit::{TEST_JWT_SECRET, authorized, token};
use secrecy::SecretString;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn access_service_reaches_lock_gateway_as_the_callers_tenant() {
    let pair = common::start().await;
    common::insert_account(&pair.db, "t1", "one@example.com").await;
    common::insert_account(&pair.db, "t2", "two@example.com").await;
    let mut directory = DirectoryServiceClient::new(pair.access.channel().await);

    for roles in [&["ADMIN"][..], &["MANAGER"]] {
        let accounts = directory
            .list_lock_accounts(authorized(
                ListLockAccountsRequest {},
                &token("t1", "u1", roles),
            ))
            .await
            .unwrap()
            .into_inner()
            .accounts;
        let usernames: Vec<_> = accounts.iter().map(|a| a.username.as_str()).collect();
        assert_eq!(usernames, ["one@example.com"], "{roles:?}");
    }
    let status = directory
        .list_lock_accounts(authorized(
            ListLockAccountsRequest {},
            &token("t1", "u1", &["member"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_unreachable_gateway_is_unavailable_with_its_reason() {
    let db = common::database().await;
    let access =
        common::start_access(common::access_config(&db, "http://127.0.0.1:9".into())).await;
    let mut directory = DirectoryServiceClient::new(access.channel().await);
    let status = directory
        .list_lock_accounts(authorized(
            ListLockAccountsRequest {},
            &token("t1", "u1", &["ADMIN"]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "LOCK_GATEWAY_UNAVAILABLE"
    );
}

#[tokio::test]
async fn lock_gateway_refuses_a_service_credential_it_cannot_verify() {
    let db = common::database().await;
    let gateway = common::start_gateway(&db).await;
    let mut config = common::access_config(&db, gateway.url());
    config.lock_gateway_jwt_secret = Some(SecretString::from("not-the-gateway-secret".to_owned()));
    assert_ne!(TEST_JWT_SECRET, "not-the-gateway-secret");
    let access = common::start_access(config).await;
    let mut directory = DirectoryServiceClient::new(access.channel().await);
    let status = directory
        .list_lock_accounts(authorized(
            ListLockAccountsRequest {},
            &token("t1", "u1", &["ADMIN"]),
        ))
        .await
        .unwrap_err();
    // A misconfigured deployment, not the caller's fault: reported without detail.
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal error");
}
