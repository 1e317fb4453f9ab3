//! The per-tenant snapshot cache: requests that miss together share one load.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use access_service::snapshot::SnapshotCache;
use latchkey::testkit::TestDb;

#[tokio::test]
async fn concurrent_misses_share_one_load_of_the_tenant() {
    let db = TestDb::migrated(vec![(
        access_service::db::SCHEMA,
        access_service::db::MIGRATIONS,
    )])
    .await;
    let pool = db.pool(access_service::db::SCHEMA);
    let cache = SnapshotCache::new(pool);
    let listener = tokio::spawn(cache.clone().listen(db.secret_url()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cache.is_listening() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gets: Vec<_> = (0..32)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get("acme").await.map(|_| ()) })
        })
        .collect();
    for get in gets {
        get.await.unwrap().unwrap();
    }
    assert_eq!(cache.loads(), 1, "32 requests, one load");
    cache.get("acme").await.unwrap();
    assert_eq!(cache.loads(), 1, "then served from the cache");
    cache.get("other").await.unwrap();
    assert_eq!(cache.loads(), 2, "another tenant loads on its own");
    listener.abort();
}
