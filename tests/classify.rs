//! `Shoal::owner` accepts exactly the objects we handed out: see
//! `pointer_checks`. Its teeth: `teeth/tests/classify.rs`.

mod pointer_checks;

#[test]
fn owner_accepts_object_starts_and_nothing_else() {
    pointer_checks::check_classification().unwrap();
}
