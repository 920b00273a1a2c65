//! Harness for the end-to-end tests in `tests/tests/`: locating the built `sentry` binary and
//! running it in a temporary directory.
