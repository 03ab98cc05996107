//! Saved filters in SQLite (`console.database`): each user's own, shared
//! ones, and the built-ins of `console.saved_filters` (user `__system`,
//! shared), rewritten at every start so the file follows the config.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use weir_core::config::SavedFilterConfig;

/// The owner of the built-in filters.
pub const SYSTEM_USER: &str = "__system";
/// The most filters one user may keep.
pub const FILTERS_PER_USER_MAX: i64 = 1000;
/// The longest description, in characters.
pub const DESCRIPTION_MAX: usize = 256;

/// A saved filter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SavedFilter {
    pub id: i64,
    pub user: String,
    pub shared: bool,
    pub description: String,
    pub content: String,
}

pub struct SavedFilters {
    db: Mutex<Connection>,
}

fn sql_error(e: rusqlite::Error) -> String {
    format!("saved filters: {e}")
}

impl SavedFilters {
    /// Opens (or creates) the database at `path` and resyncs the built-ins.
    pub fn open(path: &Path, builtins: &[SavedFilterConfig]) -> Result<SavedFilters, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("console.database {}: {e}", dir.display()))?;
        }
        let db = Connection::open(path).map_err(|e| format!("console.database {}: {e}", path.display()))?;
        Self::init(db, builtins)
    }

    /// An in-memory database (tests).
    pub fn in_memory(builtins: &[SavedFilterConfig]) -> Result<SavedFilters, String> {
        Self::init(Connection::open_in_memory().map_err(sql_error)?, builtins)
    }

    fn init(mut db: Connection, builtins: &[SavedFilterConfig]) -> Result<SavedFilters, String> {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS saved_filters (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 user TEXT NOT NULL,
                 shared INTEGER NOT NULL,
                 description TEXT NOT NULL,
                 content TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS saved_filters_user ON saved_filters (user);",
        )
        .map_err(sql_error)?;
        let tx = db.transaction().map_err(sql_error)?;
        tx.execute("DELETE FROM saved_filters WHERE user = ?1", params![SYSTEM_USER]).map_err(sql_error)?;
        for b in builtins {
            tx.execute(
                "INSERT INTO saved_filters (user, shared, description, content) VALUES (?1, 1, ?2, ?3)",
                params![SYSTEM_USER, b.description, b.content],
            )
            .map_err(sql_error)?;
        }
        tx.commit().map_err(sql_error)?;
        Ok(SavedFilters { db: Mutex::new(db) })
    }

    /// `user`'s own filters and every shared one, built-ins first.
    pub fn list(&self, user: &str) -> Result<Vec<SavedFilter>, String> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut q = db
            .prepare(
                "SELECT id, user, shared, description, content FROM saved_filters
                 WHERE user = ?1 OR shared = 1 ORDER BY user != ?2, id",
            )
            .map_err(sql_error)?;
        let rows = q
            .query_map(params![user, SYSTEM_USER], |r| {
                Ok(SavedFilter {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    shared: r.get::<_, i64>(2)? != 0,
                    description: r.get(3)?,
                    content: r.get(4)?,
                })
            })
            .map_err(sql_error)?;
        rows.collect::<Result<_, _>>().map_err(sql_error)
    }

    /// Saves a filter for `user`; `Err(Ok(why))` for a bad request.
    pub fn add(
        &self,
        user: &str,
        shared: bool,
        description: &str,
        content: &str,
    ) -> Result<i64, Result<String, String>> {
        if user == SYSTEM_USER {
            return Err(Ok("the built-in filters come from console.saved_filters".into()));
        }
        let description = description.trim();
        if description.is_empty() || description.chars().count() > DESCRIPTION_MAX {
            return Err(Ok(format!("description must be 1..{DESCRIPTION_MAX} characters")));
        }
        if content.trim().is_empty() {
            return Err(Ok("content is empty".into()));
        }
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let count: i64 = db
            .query_row("SELECT count(*) FROM saved_filters WHERE user = ?1", params![user], |r| r.get(0))
            .map_err(|e| Err(sql_error(e)))?;
        if count >= FILTERS_PER_USER_MAX {
            return Err(Ok(format!("at most {FILTERS_PER_USER_MAX} saved filters per user")));
        }
        db.execute(
            "INSERT INTO saved_filters (user, shared, description, content) VALUES (?1, ?2, ?3, ?4)",
            params![user, shared as i64, description, content],
        )
        .map_err(|e| Err(sql_error(e)))?;
        Ok(db.last_insert_rowid())
    }

    /// Deletes `user`'s filter `id`; whether there was one.
    pub fn delete(&self, user: &str, id: i64) -> Result<bool, String> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let n = db
            .execute(
                "DELETE FROM saved_filters WHERE id = ?1 AND user = ?2 AND user != ?3",
                params![id, user, SYSTEM_USER],
            )
            .map_err(sql_error)?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_per_user_shared_or_built_in() {
        let builtin = SavedFilterConfig { description: "web".into(), content: "DstPort IN (80, 443)".into() };
        let s = SavedFilters::in_memory(std::slice::from_ref(&builtin)).unwrap();
        let mine = s.add("alice", false, "mine", "SrcAS = 1").unwrap();
        let ours = s.add("alice", true, " ours ", "SrcAS = 2").unwrap();
        s.add("bob", false, "bob's", "SrcAS = 3").unwrap();
        let alice: Vec<String> = s.list("alice").unwrap().into_iter().map(|f| f.description).collect();
        assert_eq!(alice, ["web", "mine", "ours"]);
        let bob: Vec<String> = s.list("bob").unwrap().into_iter().map(|f| f.description).collect();
        assert_eq!(bob, ["web", "ours", "bob's"]);
        assert!(!s.delete("bob", ours).unwrap(), "only one's own");
        assert!(s.delete("alice", mine).unwrap());
        assert!(!s.delete("alice", mine).unwrap(), "gone");
        let web = s.list("alice").unwrap()[0].id;
        assert!(!s.delete(SYSTEM_USER, web).unwrap(), "built-ins stay");
        assert!(s.add("alice", false, "", "x").unwrap_err().unwrap().contains("description"));
        assert!(s.add("alice", false, "x", " ").unwrap_err().unwrap().contains("empty"));
        assert!(s.add(SYSTEM_USER, true, "x", "y").is_err());
    }

    #[test]
    fn built_ins_follow_the_config_across_restarts() {
        let dir = std::env::temp_dir().join(format!("weir-saved-{}", std::process::id()));
        let path = dir.join("console.sqlite");
        let first = SavedFilterConfig { description: "a".into(), content: "SrcAS = 1".into() };
        let s = SavedFilters::open(&path, &[first]).unwrap();
        s.add("alice", false, "kept", "SrcAS = 9").unwrap();
        drop(s);
        let second = SavedFilterConfig { description: "b".into(), content: "SrcAS = 2".into() };
        let s = SavedFilters::open(&path, &[second]).unwrap();
        let all: Vec<String> = s.list("alice").unwrap().into_iter().map(|f| f.description).collect();
        assert_eq!(all, ["b", "kept"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
