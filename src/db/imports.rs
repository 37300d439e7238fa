//! Typed functions for the `imports` table: which one-time imports of data kept elsewhere by
//! an older onair (e.g. `chat.bans_file`) have been done, so each runs once. Record an import
//! in the same transaction as the rows it brings in.

use rusqlite::{Connection, OptionalExtension};

use super::DbError;

/// One recorded import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// What was imported, e.g. `chat.bans_file`.
    pub name: String,
    /// Where from (a path).
    pub source: String,
    pub items: i64,
    pub imported_at: String,
}

/// Whether the import `name` has been done.
pub fn done(conn: &Connection, name: &str) -> Result<bool, DbError> {
    Ok(get(conn, name)?.is_some())
}

/// The import `name`, if it has been done.
pub fn get(conn: &Connection, name: &str) -> Result<Option<Import>, DbError> {
    Ok(conn
        .query_row(
            "SELECT name, source, items, imported_at FROM imports WHERE name = ?1",
            [name],
            |r| {
                Ok(Import {
                    name: r.get(0)?,
                    source: r.get(1)?,
                    items: r.get(2)?,
                    imported_at: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// Records that `name` was imported from `source` with `items` items.
pub fn record(conn: &Connection, name: &str, source: &str, items: i64) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO imports (name, source, items, imported_at) VALUES (?1, ?2, ?3, ?4)",
        (name, source, items, super::now()),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_once() {
        let db = crate::db::Db::open_in_memory().await.unwrap();
        let got = db
            .write(|tx| {
                assert!(!done(tx, "chat.bans_file")?);
                record(tx, "chat.bans_file", "/x/bans.json", 3)?;
                // A second record of the same import is a bug: refused.
                assert!(record(tx, "chat.bans_file", "/x/bans.json", 3).is_err());
                get(tx, "chat.bans_file")
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got.source.as_str(), got.items), ("/x/bans.json", 3));
    }
}
