//! What the postgres source and sink share: the events table they default to, and how
//! a configured name becomes a quoted SQL identifier.

use crate::error::BuildError;

/// The schema of the events table unless configured.
pub(crate) fn default_schema() -> String {
    "public".into()
}

/// The events table unless configured.
pub(crate) fn default_table() -> String {
    "events".into()
}

/// Wraps DDL for the objects of `schema` in a transaction holding the lock every
/// sluice component takes for DDL in that schema: `CREATE ... IF NOT EXISTS` of two
/// components (or processes) at once can otherwise fail on PostgreSQL's catalog unique
/// indexes. The lock is per schema, so a stuck schema does not hold up the others.
pub(crate) fn serialized_ddl(schema: &str, ddl: &str) -> String {
    let scope = format!("sluice ddl {schema}").replace('\'', "");
    format!("BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{scope}', 0)); {ddl}; COMMIT;")
}

/// `name` double-quoted for SQL. Only letters, digits and `_` are allowed: names come
/// from the pipeline file and end up in statements, where no escaping is trusted.
pub(crate) fn ident(name: &str) -> Result<String, BuildError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(BuildError(format!(
            "`{name}` is not a plain SQL identifier (letters, digits, `_`)"
        )));
    }
    Ok(format!("\"{name}\""))
}

/// A connection string (`postgres://…` or key=value), checked; `option` names it in
/// the error.
pub(crate) fn parse_url(url: &str, option: &str) -> Result<tokio_postgres::Config, BuildError> {
    url.parse()
        .map_err(|e| BuildError(format!("`{option}`: {e}")))
}

/// Connects without TLS and drives the connection on its own task, which logs how it
/// ended for component `component`.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    component: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    let component = component.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(component_id = %component, error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// A quoted index name for `table` (a quoted, qualified name) and `suffix`.
pub(crate) fn index_name(table: &str, suffix: &str) -> String {
    let base: String = table
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    format!("\"{}_{suffix}\"", base.replace('.', "_"))
}

/// `schema.table`, each part quoted by [`ident`].
pub(crate) fn qualified_table(schema: &str, table: &str) -> Result<String, BuildError> {
    Ok(format!("{}.{}", ident(schema)?, ident(table)?))
}

/// `validate --check-sinks`: connects as the sink would (which checks the address, the
/// credentials and the database), then checks the privileges the sink will need: INSERT
/// on `table` (a quoted, qualified name) when it exists, else CREATE on `schema` (or on
/// the database when the schema is missing too) if `create_table` may create it.
pub(crate) async fn probe(
    config: &tokio_postgres::Config,
    schema: &str,
    table: &str,
    create_table: bool,
) -> Result<String, String> {
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect: {}", crate::net::error_chain(&e)))?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, \
             to_regclass($1) IS NOT NULL, \
             CASE WHEN to_regclass($1) IS NULL THEN NULL \
                  ELSE has_table_privilege($1, 'INSERT') END, \
             to_regnamespace($2) IS NOT NULL, \
             CASE WHEN to_regnamespace($2) IS NULL \
                  THEN has_database_privilege(current_database(), 'CREATE') \
                  ELSE has_schema_privilege(to_regnamespace($2), 'CREATE') END",
            &[&table, &schema],
        )
        .await
        .map_err(|e| {
            format!(
                "connected, but a query failed: {}",
                crate::net::error_chain(&e)
            )
        });
    drop(client);
    let _ = connection.await;
    let row = row?;
    let (user, database): (String, String) = (row.get(0), row.get(1));
    let (table_exists, may_insert): (bool, Option<bool>) = (row.get(2), row.get(3));
    let (schema_exists, may_create): (bool, bool) = (row.get(4), row.get(5));
    let connected = format!("connected to `{database}` as `{user}`");
    let create_in = if schema_exists {
        format!("schema {schema}")
    } else {
        format!("database `{database}` (schema {schema} is missing too)")
    };
    match (table_exists, may_insert) {
        (true, Some(true)) => Ok(format!("{connected}, may INSERT into {table}")),
        (true, _) => Err(format!("{connected}, but may not INSERT into {table}")),
        (false, _) if !create_table => Err(format!(
            "{connected}, but {table} does not exist and create_table is false"
        )),
        (false, _) if may_create => Ok(format!("{connected}, {table} will be created")),
        (false, _) => Err(format!(
            "{connected}, but {table} does not exist and `{user}` may not CREATE in {create_in}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_anything_else_is_refused() {
        assert_eq!(ident("events_2").expect("plain"), "\"events_2\"");
        assert_eq!(
            qualified_table("public", "events").expect("plain"),
            "\"public\".\"events\""
        );
        for bad in ["", "a b", "x\"; drop table y; --", "naïve", "a.b"] {
            let e = ident(bad).expect_err(bad);
            assert!(e.0.contains("not a plain SQL identifier"), "{e}");
        }
    }
}
