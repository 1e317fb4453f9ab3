//! The pair, started in-process on one database holding both services' schemas.

#![allow(dead_code, clippy::unwrap_used)]

pub mod fuzz;
pub mod world;

use latchkey::testkit::{RunningServer, TEST_JWT_SECRET, TestDb};

pub struct Pair {
    pub db: TestDb,
    pub gateway: RunningServer<lock_gateway::RunError>,
    pub access: RunningServer<access_service::RunError>,
}

pub async fn database() -> TestDb {
    TestDb::migrated(vec![
        (
            access_service::db::SCHEMA,
            access_service::db::MIGRATIONS,
            access_service::db::MIGRATIONS_DIR,
        ),
        (
            lock_gateway::db::SCHEMA,
            lock_gateway::db::MIGRATIONS,
            lock_gateway::db::MIGRATIONS_DIR,
        ),
    ])
    .await
}

pub async fn start_gateway(db: &TestDb) -> RunningServer<lock_gateway::RunError> {
    let config = lock_gateway::Config::new(db.url(), TEST_JWT_SECRET);
    RunningServer::spawn(|listener, shutdown| lock_gateway::run(listener, config, shutdown)).await
}

pub fn access_config(db: &TestDb, gateway_url: String) -> access_service::Config {
    let mut config = access_service::Config::new(db.url(), TEST_JWT_SECRET);
    config.lock_gateway_url = gateway_url;
    config
}

pub async fn start_access(
    config: access_service::Config,
) -> RunningServer<access_service::RunError> {
    RunningServer::spawn(|listener, shutdown| access_service::run(listener, config, shutdown)).await
}

pub async fn start() -> Pair {
    let db = database().await;
    let gateway = start_gateway(&db).await;
    let access = start_access(access_config(&db, gateway.url())).await;
    Pair {
        db,
        gateway,
        access,
    }
}

/// Registers a TTLock account row for `tenant` directly in lock-gateway's schema.
pub async fn insert_account(db: &TestDb, tenant: &str, username: &str) {
    db.client()
        .await
        .execute(
            "INSERT INTO gateway.ttlock_accounts \
             (id, tenant_id, name, base_url, client_id, username, key_id, client_secret_enc, password_md5_enc) \
             VALUES (gen_random_uuid(), $1, $2, 'https://euapi.ttlock.com', 'client', $2, 'k1', '\\x00', '\\x00')",
            &[&tenant, &username],
        )
        .await
        .unwrap();
}

/// The callback secret of [`CallbackGateway`]s.
pub const CALLBACK_SECRET: &str = "cb-7f3e9a1c5d2b8e4f6a0c9d1e";

/// lock-gateway with its TTLock callback receiver, restartable on the same two addresses
/// so access-service and the simulator find it again.
pub struct CallbackGateway {
    pub grpc: std::net::SocketAddr,
    pub callbacks: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), lock_gateway::RunError>>,
}

impl CallbackGateway {
    pub async fn start(db: &TestDb) -> Self {
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(db, any, any).await
    }

    pub async fn start_on(
        db: &TestDb,
        grpc: std::net::SocketAddr,
        callbacks: std::net::SocketAddr,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(grpc).await.unwrap();
        let callback_listener = tokio::net::TcpListener::bind(callbacks).await.unwrap();
        let (grpc, callbacks) = (
            listener.local_addr().unwrap(),
            callback_listener.local_addr().unwrap(),
        );
        let mut config = lock_gateway::Config::new(db.url(), TEST_JWT_SECRET);
        config.callback_secret = Some(secrecy::SecretString::from(CALLBACK_SECRET.to_owned()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(lock_gateway::run_with_callbacks(
            listener,
            Some(callback_listener),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            grpc,
            callbacks,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn callback_url(&self) -> String {
        format!(
            "http://{}/ttlock/callback/{CALLBACK_SECRET}",
            self.callbacks
        )
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Shuts down (ending every event stream) and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    /// Stops (ending every event stream) and starts again on the same addresses and
    /// database.
    pub async fn restart(&mut self, db: &TestDb) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
        *self = Self::start_on(db, self.grpc, self.callbacks).await;
    }
}

impl Drop for CallbackGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
