//! Nothing but a carrier: the tests in `tests/` run shoalloc with its
//! test-only fault switches compiled in (see `Cargo.toml`).
