//! Test support: a fresh database per test made from a migrated template, a TCP proxy
//! that can cut a service off from PostgreSQL, a private PostgreSQL cluster a test can
//! stop and start, and bearer tokens.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use diesel_migrations::EmbeddedMigrations;
use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::JwtSigner;

/// The HS256 secret the tests' services are configured with.
pub const TEST_JWT_SECRET: &str = "latchkey-test-secret-0123456789abcdef";

/// The server to create test databases on: `TEST_DATABASE_URL`, else the local one.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn url_for(admin: &str, database: &str) -> String {
    let base = admin.split('?').next().unwrap_or(admin);
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{database}"),
        None => format!("{base}/{database}"),
    }
}

async fn admin_client(admin: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL at {admin}: {e}"));
    tokio::spawn(connection);
    client
}

/// A short, stable fingerprint of each schema's name and its migrations' files, names
/// and SQL, to name test templates after the schema they hold: a migration added or
/// edited builds a new template rather than reusing one made from the SQL before.
fn migrations_fingerprint<'a>(sets: impl IntoIterator<Item = (&'a str, &'a Path)>) -> String {
    fn files(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading migrations in {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("reading migrations in {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                files(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let mut hash = crate::db::FNV_OFFSET;
    // Each piece ends in a NUL, so that moving bytes from one piece to the next changes
    // the fingerprint.
    let mut add = |bytes: &[u8]| hash = crate::db::fnv1a(crate::db::fnv1a(hash, bytes), b"\0");
    for (schema, dir) in sets {
        add(schema.as_bytes());
        let mut found = Vec::new();
        files(dir, &mut found);
        found.sort();
        for path in found {
            let name = path.strip_prefix(dir).unwrap_or(&path);
            add(name.to_string_lossy().as_bytes());
            add(&std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading migration {}: {e}", path.display())));
        }
    }
    format!("{hash:016x}")
}

/// A database of its own for one test, dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    name: String,
    admin: String,
}

impl TestDb {
    /// Creates a database from the template `template`, building the template first
    /// with `migrate` (given the template's URL) if no test has built it yet. Name the
    /// template after the migrations it holds so a changed set builds a new one.
    pub async fn from_template<F, Fut>(template: &str, migrate: F) -> Self
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let admin = admin_url();
        let client = admin_client(&admin).await;
        let building = format!("{template}_building");
        client
            .execute(
                "SELECT pg_advisory_lock(hashtext($1)::bigint)",
                &[&template],
            )
            .await
            .expect("template lock");
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
            .await
            .expect("template lookup")
            .is_some();
        if !exists {
            // Each statement alone: CREATE and DROP DATABASE refuse transaction blocks.
            for sql in [
                format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
                format!("CREATE DATABASE \"{building}\""),
            ] {
                client.batch_execute(&sql).await.expect("create template");
            }
            migrate(url_for(&admin, &building)).await;
            for sql in [
                format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""),
                format!("ALTER DATABASE \"{template}\" WITH IS_TEMPLATE true"),
            ] {
                client.batch_execute(&sql).await.expect("finish template");
            }
        }
        client
            .execute(
                "SELECT pg_advisory_unlock(hashtext($1)::bigint)",
                &[&template],
            )
            .await
            .expect("template unlock");
        let name = format!("lk_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
            ))
            .await
            .expect("create test database");
        Self {
            url: url_for(&admin, &name),
            name,
            admin,
        }
    }

    /// A database holding the given schemas, each migrated with its migrations, which
    /// were embedded from the directory given beside them.
    pub async fn migrated(sets: Vec<(&'static str, EmbeddedMigrations, &'static str)>) -> Self {
        let fingerprint = migrations_fingerprint(
            sets.iter()
                .map(|(schema, _, dir)| (*schema, Path::new(*dir))),
        );
        Self::from_template(&format!("lk_tpl_{fingerprint}"), |url| async move {
            let url = SecretString::from(url);
            for (schema, migrations, _) in sets {
                crate::db::migrate(&url, schema, migrations)
                    .await
                    .unwrap_or_else(|e| panic!("migrating {schema}: {e}"));
            }
        })
        .await
    }

    /// An empty database, for tests of migrations themselves.
    pub async fn empty() -> Self {
        let admin = admin_url();
        let client = admin_client(&admin).await;
        let name = format!("lk_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        Self {
            url: url_for(&admin, &name),
            name,
            admin,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn secret_url(&self) -> SecretString {
        SecretString::from(self.url.clone())
    }

    /// A pool on the test database with `schema` first on the search path, connecting
    /// as the test user, for calling a service's queries directly.
    pub fn pool(&self, schema: &'static str) -> crate::db::DbPool {
        crate::db::build_pool(
            &crate::db::DbConfig::for_url(&self.url),
            schema,
            "latchkey-test",
            None,
        )
        .expect("pool on the test database")
    }

    /// A plain client on the test database, for looking at what was stored.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a thread with its own runtime can block.
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let client = admin_client(&admin).await;
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        });
        let _ = dropped.join();
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut (dropping every connection
/// and refusing new ones) and restore, to take the database away from a running service.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    /// Connections refused while cut, so far.
    refused: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (open, _) = watch::channel(true);
        let (refused, _) = watch::channel(0_u64);
        let state = open.clone();
        let counted = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    counted.send_modify(|n| *n += 1);
                    continue;
                }
                let mut closed = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self {
            addr,
            open,
            refused,
            task,
        }
    }

    /// Connections refused while cut, so far.
    pub fn refused(&self) -> u64 {
        *self.refused.borrow()
    }

    /// Resolves once at least `count` connections have been refused while cut.
    pub async fn refused_at_least(&self, count: u64) {
        let mut refused = self.refused.subscribe();
        let _ = refused.wait_for(|n| *n >= count).await;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}{}/{path}", self.addr)
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A PostgreSQL server of a test's own: a cluster made with the installed `initdb` in a
/// temporary directory, listening on a free port of 127.0.0.1, that the test may stop
/// and start again to take the database away from a running service the way an
/// operator's restart does. Never the shared test server. PostgreSQL refuses to run as
/// root, so a test running as root runs the tools as the `postgres` OS user (as
/// `deploy/local.sh` does). Stopped and removed when dropped.
#[derive(Debug)]
pub struct PostgresCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
}

impl PostgresCluster {
    /// Makes the cluster (trust authentication, user `postgres`, messages in English)
    /// and starts it.
    pub async fn start() -> Self {
        let bin = postgres_bin();
        let data = std::env::temp_dir().join(format!("lk_pg_{}", uuid::Uuid::new_v4().simple()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let cluster = Self { bin, data, port };
        let data = cluster.data.display().to_string();
        cluster
            .run(vec![
                "initdb".into(),
                "--pgdata".into(),
                data,
                "--username=postgres".into(),
                "--auth=trust".into(),
                "--encoding=UTF8".into(),
                "--no-locale".into(),
                "--no-sync".into(),
            ])
            .await;
        cluster.start_again().await;
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this cluster, as `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A plain client of `database`.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        admin_client(&self.url(database)).await
    }

    /// `pg_ctl stop -m <mode>` (`smart`, `fast` or `immediate`), returning once the
    /// server has stopped.
    pub async fn stop(&self, mode: &str) {
        let data = self.data.display().to_string();
        self.run(vec![
            "pg_ctl".into(),
            "stop".into(),
            "--pgdata".into(),
            data,
            "--mode".into(),
            mode.into(),
            "--wait".into(),
            "--timeout=60".into(),
        ])
        .await;
    }

    /// Starts the (stopped) cluster on its port, returning once it accepts connections.
    pub async fn start_again(&self) {
        let data = self.data.display().to_string();
        self.run(vec![
            "pg_ctl".into(),
            "start".into(),
            "--pgdata".into(),
            data.clone(),
            "--log".into(),
            format!("{data}/server.log"),
            "--wait".into(),
            "--timeout=60".into(),
            "-o".into(),
            format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200",
                self.port
            ),
        ])
        .await;
    }

    /// Runs one of PostgreSQL's tools, panicking with its output when it fails.
    async fn run(&self, args: Vec<String>) {
        let command = self.command(&args);
        let described = args.join(" ");
        let output = tokio::task::spawn_blocking(move || {
            let mut command = command;
            command.output()
        })
        .await
        .expect("PostgreSQL tool task")
        .unwrap_or_else(|e| panic!("running {described}: {e}"));
        assert!(
            output.status.success(),
            "{described} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, args: &[String]) -> std::process::Command {
        let (tool, args) = args.split_first().expect("a tool");
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        };
        command.args(args).current_dir(std::env::temp_dir());
        command
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let args: Vec<String> = [
            "pg_ctl",
            "stop",
            "--pgdata",
            &data,
            "--mode",
            "immediate",
            "--wait",
        ]
        .map(str::to_owned)
        .into();
        let _ = self.command(&args).output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// The newest installed PostgreSQL's programs (Debian's layout).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL's initdb and pg_ctl under /usr/lib/postgresql/<version>/bin")
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// Where the test PostgreSQL listens, from [`admin_url`].
pub fn postgres_addr() -> SocketAddr {
    let admin = admin_url();
    let rest = admin
        .split_once("://")
        .map_or(admin.as_str(), |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .expect("TEST_DATABASE_URL must name an IP address and port")
}

/// A bearer token signed with [`TEST_JWT_SECRET`].
pub fn token(tenant: &str, user: &str, roles: &[&str]) -> String {
    JwtSigner::hs256(&SecretString::from(TEST_JWT_SECRET.to_owned()))
        .sign(user, tenant, roles, Duration::from_secs(600))
        .expect("sign test token")
}

/// Metadata value `Bearer <token>`.
pub fn bearer(token: &str) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("Bearer {token}").parse().expect("ascii token")
}

/// A service started in-process on `127.0.0.1:0`, stopped through its shutdown seam.
#[derive(Debug)]
pub struct RunningServer<E> {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), E>>,
}

impl<E: Send + 'static> RunningServer<E> {
    /// Binds a listener and runs `start(listener, shutdown)` on it.
    pub async fn spawn<F, Fut>(start: F) -> Self
    where
        F: FnOnce(TcpListener, BoxFuture<'static, ()>) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind service");
        let addr = listener.local_addr().expect("service address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: BoxFuture<'static, ()> = Box::pin(async move {
            let _ = stopped.await;
        });
        let handle = tokio::spawn(start(listener, shutdown));
        Self {
            addr,
            stop: Some(stop),
            handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A channel to the service.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("service url")
            .connect()
            .await
            .expect("connect to service")
    }

    /// Signals shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), E> {
        self.begin_shutdown();
        (&mut self.handle).await.expect("service task")
    }

    /// Waits for `run` to return after [`Self::begin_shutdown`].
    pub async fn finished(mut self) -> Result<(), E> {
        (&mut self.handle).await.expect("service task")
    }
}

impl<E> Drop for RunningServer<E> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A token with arbitrary claims, for tests of refusals (expired, foreign audience...).
pub fn token_with_claims(claims: &crate::auth::Claims, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign test claims")
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer(token));
    request
}

/// A server run by `start(listener)` on a runtime of its own, for tests that stop it
/// dead: `shutdown_background` on the runtime drops its tasks and connections with no
/// graceful step, as a killed process would. Returns the runtime and the address.
pub fn doomed_server<F, Fut>(start: F) -> (tokio::runtime::Runtime, SocketAddr)
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the doomed server");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind service");
    let addr = listener.local_addr().expect("service address");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    {
        let _inside = doomed.enter();
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        doomed.spawn(start(listener));
    }
    (doomed, addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_named_after_its_migrations_sql() {
        let dir = std::env::temp_dir().join(format!("lk_migrations_{}", uuid::Uuid::new_v4()));
        let migration = dir.join("2026-01-01-000001_doors");
        std::fs::create_dir_all(&migration).expect("migration directory");
        let up = migration.join("up.sql");
        std::fs::write(&up, "CREATE TABLE doors (id UUID);").expect("up.sql");
        let first = migrations_fingerprint([("access", dir.as_path())]);

        assert_eq!(first, migrations_fingerprint([("access", dir.as_path())]));
        assert_ne!(first, migrations_fingerprint([("gateway", dir.as_path())]));

        std::fs::write(&up, "CREATE TABLE doors (id UUID PRIMARY KEY);").expect("up.sql");
        let edited = migrations_fingerprint([("access", dir.as_path())]);
        assert_ne!(first, edited, "an edited migration names a new template");

        std::fs::write(migration.join("down.sql"), "DROP TABLE doors;").expect("down.sql");
        assert_ne!(edited, migrations_fingerprint([("access", dir.as_path())]));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
