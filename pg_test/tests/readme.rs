//! The README's first example runs as pasted, and its stream table catches up by itself; every setting
//! the extension registers is documented.

use pg_trickle_e2e::{wait_until, TestDb};
use std::time::Duration;

#[test]
fn the_readme_example_runs_as_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("```sql\n").expect("a SQL example") + "```sql\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let mut db = TestDb::without_extension("readme_example");
    db.exec(example);
    let caught_up = wait_until(Duration::from_secs(30), || {
        db.multiset_diff(
            "revenue_by_region",
            "SELECT region, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY region",
        )
        .is_empty()
    });
    assert!(caught_up, "revenue_by_region did not catch up with orders");
}

/// Every `pg_trickle.*` setting the server knows is in the README's table and has a section in
/// docs/CONFIGURATION.md, and no documented setting is missing from the server.
#[test]
fn every_setting_is_documented_and_every_documented_one_exists() {
    let read = |path: &str| {
        std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    };
    let (readme, configuration) = (read("README.md"), read("docs/CONFIGURATION.md"));
    let mut db = TestDb::new("readme_settings");
    let registered: Vec<String> = db
        .rows(
            "SELECT name FROM pg_settings WHERE name LIKE 'pg\\_trickle.%' ORDER BY name",
            &[],
        )
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(registered.len() >= 10, "{registered:?}");
    for name in &registered {
        assert!(
            readme.contains(&format!("| `{name}` |")),
            "{name} is not in the README's table"
        );
        assert!(
            configuration.contains(&format!("### `{name}`")),
            "{name} has no section in docs/CONFIGURATION.md"
        );
    }
    let documented: Vec<&str> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `pg_trickle."))
        .filter_map(|l| l.split('`').next())
        .collect();
    for name in documented {
        assert!(
            registered.contains(&format!("pg_trickle.{name}")),
            "the README documents pg_trickle.{name}, which the server does not know"
        );
    }
}
