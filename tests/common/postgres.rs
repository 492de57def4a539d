//! The machine's PostgreSQL for the tests (127.0.0.1:5432, user postgres, database
//! test), one fresh schema per test. Under CI=true an unreachable server fails the
//! test; elsewhere it is skipped with a printed reason.

use tokio_postgres::NoTls;

pub const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A client and a fresh schema name, or `None` (skip) when no server is reachable
/// outside CI.
pub async fn database() -> Option<(tokio_postgres::Client, String)> {
    match tokio_postgres::connect(URL, NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some((client, format!("t_{}", uuid::Uuid::new_v4().simple())))
        }
        Err(e) => {
            sluice::testing::skip(&format!("PostgreSQL unreachable at {URL}: {e}"));
            None
        }
    }
}

pub async fn drop_schema(client: &tokio_postgres::Client, schema: &str) {
    let _ = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await;
}
