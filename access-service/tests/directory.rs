//! Properties and tenant settings: validation, idempotency, pagination and tenant
//! isolation.

#![allow(clippy::unwrap_used)]

mod common;

use latchkey::pb::access::v1::{
    CreatePropertyRequest, DeletePropertyRequest, GetPropertyRequest, GetTenantSettingsRequest,
    ListPropertiesRequest, Property, TenantSettings, UpdatePropertyRequest,
    UpdateTenantSettingsRequest,
};
use latchkey::testkit::{authorized, token};
use prost_types::FieldMask;
use tonic::Code;
use tonic_types::StatusExt;

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

fn property(name: &str, zone: &str) -> Property {
    Property {
        name: name.into(),
        time_zone: zone.into(),
        address: "Calle Mayor 1".into(),
        ..Property::default()
    }
}

fn create(name: &str, zone: &str, request_id: &str) -> CreatePropertyRequest {
    CreatePropertyRequest {
        property: Some(property(name, zone)),
        request_id: request_id.into(),
    }
}

#[tokio::test]
async fn invalid_input_names_every_field_and_stores_nothing() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);

    let status = client
        .create_property(authorized(create("  ", "Mars/Olympus", "r1"), &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["property.name", "property.time_zone"]);

    let status = client
        .create_property(authorized(CreatePropertyRequest::default(), &admin))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["property"]);

    let status = client
        .get_property(authorized(GetPropertyRequest { id: "42".into() }, &admin))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["id"]);

    let status = client
        .list_properties(authorized(
            ListPropertiesRequest {
                page_size: -1,
                page_token: "forged".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["page_size", "page_token"]);

    let created = client
        .create_property(authorized(create("Casa Azul", "Europe/Madrid", ""), &admin))
        .await
        .unwrap()
        .into_inner();
    let status = client
        .update_property(authorized(
            UpdatePropertyRequest {
                property: Some(Property {
                    id: created.id.clone(),
                    ..property("", "UTC")
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into(), "colour".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["update_mask"]);

    let status = client
        .update_property(authorized(
            UpdatePropertyRequest {
                property: Some(Property {
                    id: created.id.clone(),
                    ..property("", "UTC")
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["property.name"]);

    let status = client
        .update_tenant_settings(authorized(
            UpdateTenantSettingsRequest {
                settings: Some(TenantSettings {
                    default_time_zone: "Nowhere".into(),
                    ..Default::default()
                }),
                update_mask: None,
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(fields(&status), ["settings.default_time_zone"]);

    let listed = client
        .list_properties(authorized(ListPropertiesRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.properties.len(), 1);
    assert_eq!(
        listed.properties[0].name, "Casa Azul",
        "the refused update changed nothing"
    );
    assert_eq!(listed.properties[0].version, 1);
}

#[tokio::test]
async fn create_is_idempotent_update_follows_the_mask_and_pages_are_complete() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);

    let first = client
        .create_property(authorized(
            create("Casa Azul", "Europe/Madrid", "req-1"),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let retried = client
        .create_property(authorized(
            create("Casa Azul", "Europe/Madrid", "req-1"),
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retried);

    let updated = client
        .update_property(authorized(
            UpdatePropertyRequest {
                property: Some(Property {
                    id: first.id.clone(),
                    ..property("Casa Roja", "Asia/Tokyo")
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Casa Roja");
    assert_eq!(
        updated.time_zone, "Europe/Madrid",
        "fields outside the mask are kept"
    );
    assert_eq!(updated.version, 2);

    for i in 0..4 {
        client
            .create_property(authorized(create(&format!("Flat {i}"), "UTC", ""), &admin))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_properties(authorized(
                ListPropertiesRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.properties.len() <= 2);
        seen.extend(page.properties.into_iter().map(|p| p.name));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, ["Casa Roja", "Flat 0", "Flat 1", "Flat 2", "Flat 3"]);

    let filtered = client
        .list_properties(authorized(
            ListPropertiesRequest {
                name_contains: "flat 2".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.properties.len(), 1);

    client
        .delete_property(authorized(
            DeletePropertyRequest {
                id: first.id.clone(),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap();
    let gone = client
        .get_property(authorized(GetPropertyRequest { id: first.id }, &admin))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn tenant_settings_default_then_change_with_a_version() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let admin = token("t1", "adm", &["ADMIN"]);

    let settings = client
        .get_tenant_settings(authorized(GetTenantSettingsRequest {}, &admin))
        .await
        .unwrap()
        .into_inner();
    assert!(settings.door_access_enabled);
    assert_eq!(settings.version, 0);

    let changed = client
        .update_tenant_settings(authorized(
            UpdateTenantSettingsRequest {
                settings: Some(TenantSettings {
                    door_access_enabled: false,
                    default_time_zone: "Europe/Madrid".into(),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["door_access_enabled".into()],
                }),
                request_id: String::new(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!changed.door_access_enabled);
    assert_eq!(changed.default_time_zone, "UTC", "outside the mask");
    assert_eq!(changed.version, 1);
    assert_eq!(changed.tenant_id, "t1");
}

#[tokio::test]
async fn a_tenant_never_sees_or_changes_another_tenants_properties() {
    let db = common::database().await;
    let server = common::start(common::config(db.url())).await;
    let mut client = common::directory(&server).await;
    let alice = token("tenant-a", "adm-a", &["ADMIN"]);
    let bob = token("tenant-b", "adm-b", &["ADMIN"]);

    let theirs = client
        .create_property(authorized(
            create("A's house", "UTC", "same-request"),
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    // The same request id in another tenant is another request.
    let mine = client
        .create_property(authorized(create("B's house", "UTC", "same-request"), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(theirs.id, mine.id);

    let get = client
        .get_property(authorized(
            GetPropertyRequest {
                id: theirs.id.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);
    let update = client
        .update_property(authorized(
            UpdatePropertyRequest {
                property: Some(Property {
                    id: theirs.id.clone(),
                    ..property("Taken", "UTC")
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into()],
                }),
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::NotFound);
    let delete = client
        .delete_property(authorized(
            DeletePropertyRequest {
                id: theirs.id.clone(),
                request_id: String::new(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::NotFound);
    let listed = client
        .list_properties(authorized(ListPropertiesRequest::default(), &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .properties
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["B's house"]
    );

    let still = client
        .get_property(authorized(GetPropertyRequest { id: theirs.id }, &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(still.name, "A's house");
    assert_eq!(still.version, 1);
}
