//! Splitting a migration file into statements (ClickHouse's HTTP interface runs one
//! statement per request).

/// Splits `sql` at the `;` that end statements, ignoring `;` inside quotes ('…', "…",
/// `…`) and comments (-- … and /* … */). Returns the statements without their `;`,
/// trimmed; pieces holding only comments and whitespace are dropped.
pub fn statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut code = false; // the current piece has something besides comments
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n + 1);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                continue;
            }
            q @ (b'\'' | b'"' | b'`') => {
                code = true;
                i += 1;
                while i < b.len() && b[i] != q {
                    // Backslash escapes the next character; a doubled quote is read as two
                    // adjacent quoted pieces, which splits the same way.
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b';' => {
                if code {
                    out.push(sql[start..i].trim());
                }
                start = i + 1;
                code = false;
            }
            c if !c.is_ascii_whitespace() => code = true,
            _ => {}
        }
        i += 1;
    }
    if code {
        out.push(sql[start..].trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_statement_ends_only() {
        let sql = "-- header; with a semicolon\n\
                   CREATE TABLE t (a String DEFAULT ';', b String COMMENT 'it''s; ok') ENGINE = Log;\n\
                   /* block; comment */\n\
                   SELECT `we;ird`, \"x;y\", 'a\\';b' FROM t;\n\
                   -- trailing comment only\n";
        let st = statements(sql);
        assert_eq!(st.len(), 2, "{st:#?}");
        assert!(
            st[0].starts_with("-- header; with a semicolon\nCREATE TABLE t"),
            "{}",
            st[0]
        );
        assert!(st[0].ends_with("ENGINE = Log"));
        assert!(
            st[1].starts_with("/* block; comment */\nSELECT `we;ird`"),
            "{}",
            st[1]
        );
        assert!(st[1].ends_with("FROM t"));
    }

    #[test]
    fn last_statement_without_semicolon_and_empty_input() {
        assert_eq!(
            statements("SELECT 1; SELECT 2"),
            vec!["SELECT 1", "SELECT 2"]
        );
        assert!(statements("  -- nothing\n /* here */ ;; ").is_empty());
    }
}
