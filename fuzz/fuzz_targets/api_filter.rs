//! The console's flow filter expression (`q=`), as any logged-in user may type it: never a
//! panic; an accepted expression is SQL text from the parser's own templates only (no
//! quote, semicolon or comment from the input) with one bound value per placeholder; a
//! refusal names a column inside the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tidegate_collector::api::filter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match filter::parse(text) {
        Ok(f) => {
            let sql = f.sql();
            assert_eq!(sql.matches('?').count(), f.args().len(), "{sql}");
            assert!(
                !sql.contains(['\'', '"', ';', '\\', '#', '`']) && !sql.contains("--") && !sql.contains("/*"),
                "input reached the SQL text: {sql}"
            );
            assert!(sql.len() <= 64 * 1024, "SQL of {} bytes", sql.len());
        }
        Err(e) => assert!(
            (1..=text.chars().count() + 1).contains(&e.column),
            "column {} outside the input: {e}",
            e.column
        ),
    }
});
