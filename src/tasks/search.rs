//! Case-insensitive search that behaves the same on SQLite and PostgreSQL.
//!
//! SQLite's `lower()` folds ASCII only, so the folding happens here: every write stores
//! the folded title and description beside the originals, and a search folds its text the
//! same way and matches with `LIKE` on the folded columns.

use unicode_normalization::UnicodeNormalization;

use crate::db::{on_pool, AppPool};

/// The form text is stored and searched in: compatibility-normalised (NFKC), so "é" typed
/// as one or two code points is the same letter, then lower-cased, with the final sigma
/// (which lower-casing picks by position in the word) folded to σ, so a search for "Σ"
/// finds "ΑΣ" too.
pub fn fold(text: &str) -> String {
    let mut folded = fold_once(text);
    // Lower-casing can leave text that normalises further (a letter whose lower case
    // composes with the mark after it), so folding again would change it: repeat until it
    // does not (one more pass for almost any text).
    for _ in 0..4 {
        let again = fold_once(&folded);
        if again == folded {
            break;
        }
        folded = again;
    }
    folded
}

fn fold_once(text: &str) -> String {
    text.nfkc()
        .collect::<String>()
        .to_lowercase()
        .replace('ς', "σ")
}

/// A `LIKE` pattern matching any text that contains `needle` (already folded).
pub fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

const BATCH: i64 = 500;

/// The next rows to fill (public for the plan test: it must use the partial index).
pub const UNFOLDED: &str =
    "SELECT id, title, description FROM tasks WHERE search_title IS NULL ORDER BY id LIMIT $1";

const SET_FOLDED: &str =
    "UPDATE tasks SET search_title = $2, search_description = $3 WHERE id = $1";

/// Fills the search columns of rows written before they existed. Idempotent, in batches,
/// so several instances starting at once only repeat each other's work.
pub async fn backfill(db: &AppPool) -> Result<u64, sqlx::Error> {
    let mut filled = 0;
    loop {
        let rows: Vec<(i64, String, Option<String>)> = on_pool!(db, |p| sqlx::query_as(UNFOLDED)
            .bind(BATCH)
            .fetch_all(p)
            .await)?;
        if rows.is_empty() {
            return Ok(filled);
        }
        on_pool!(db, |p| async {
            let mut tx = p.begin().await?;
            for (id, title, description) in &rows {
                sqlx::query(SET_FOLDED)
                    .bind(id)
                    .bind(fold(title))
                    .bind(description.as_deref().map(fold))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
        .await)?;
        filled += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_ignores_case_and_code_point_form() {
        assert_eq!(fold("ÉCOLE"), "école");
        assert_eq!(fold("E\u{301}cole"), "école");
        assert_eq!(fold("ΣΊΣΥΦΟΣ Straße"), "σίσυφοσ straße");
        assert_eq!(fold("Σ"), fold("ς"));
        assert_eq!(fold("ＡＢＣ"), "abc");
        // Found by the property below: the lower case of U+1CCE9 composes with U+0344.
        assert_eq!(fold("\u{1CCE9}\u{344}"), fold(&fold("\u{1CCE9}\u{344}")));
    }

    proptest::proptest! {
        #[test]
        fn folding_is_idempotent(text in "\\PC{0,40}") {
            let once = fold(&text);
            proptest::prop_assert_eq!(fold(&once), once);
        }

        #[test]
        fn patterns_escape_every_wildcard(needle in "[%_\\\\a-zé]{0,20}") {
            let pattern = contains_pattern(&needle);
            let inner = &pattern[1..pattern.len() - 1];
            // Unescaping gives the needle back: no wildcard is left bare.
            let mut unescaped = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => unescaped.push(chars.next().unwrap_or_default()),
                    '%' | '_' => proptest::prop_assert!(false, "bare wildcard in {}", pattern),
                    c => unescaped.push(c),
                }
            }
            proptest::prop_assert_eq!(unescaped, needle);
        }
    }

    #[test]
    fn like_wildcards_in_the_needle_match_themselves() {
        assert_eq!(contains_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
        assert_eq!(contains_pattern(""), "%%");
    }
}
