//! The README's first example runs as pasted, and its stream table catches up by itself.

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
