//! Tests of the redaction stage. Every secret here is fake: the right shape and length, with
//! FAKE or EXAMPLE in it where the format allows.

use super::*;
use proptest::prelude::*;
use serde_json::json;

const GITHUB_PAT: &str = "ghp_FAKE0123456789abcdefghijABCDEFGHIJ01";
const AWS_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const PEM_BODY: &str = "MIIEowIBAAKCAQEAFAKEFAKEFAKEkeyMaterialNotRealAtAllFAKEFAKEFAKEFAKE";

/// The longest marker any rule writes (`aws-secret-access-key` and `stripe-webhook-secret`
/// are the longest kinds); `markers_are_short` checks it against the table.
const MAX_MARKER_LEN: usize = "[REDACTED:aws-secret-access-key]".len();

/// One positive row: the input, the kind its marker must name, the parts that must be gone
/// and the parts that must survive.
struct Row {
    input: String,
    kind: &'static str,
    gone: Vec<String>,
    kept: Vec<&'static str>,
}

fn row(input: impl Into<String>, kind: &'static str, gone: &[&str], kept: &[&'static str]) -> Row {
    Row {
        input: input.into(),
        kind,
        gone: gone.iter().map(|s| s.to_string()).collect(),
        kept: kept.to_vec(),
    }
}

fn pem(label: &str) -> String {
    format!("-----BEGIN {label}PRIVATE KEY-----\n{PEM_BODY}\n{PEM_BODY}\n-----END {label}PRIVATE KEY-----")
}

fn positive_rows() -> Vec<Row> {
    let gh_oauth = "gho_FAKE0123456789abcdefghijABCDEFGHIJ01";
    let gh_server = "ghs_FAKE0123456789abcdefghijABCDEFGHIJ01";
    let gh_user = "ghu_FAKE0123456789abcdefghijABCDEFGHIJ01";
    let gh_refresh = "ghr_FAKE0123456789abcdefghijABCDEFGHIJ01";
    let gh_fine = "github_pat_11FAKE0000000000000000_FAKEfake0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGH";
    let openai_legacy = "sk-FAKE0123456789abcdefT3BlbkFJFAKE0123456789abcdef";
    let openai_proj = "sk-proj-FAKE0123456789abcdefghij_klmnopqrst-UVWXYZ0123456789";
    let openai_svc = "sk-svcacct-FAKE0123456789abcdefghij_klmnopqrst";
    let anthropic = "sk-ant-api03-FAKE0123456789abcdefghij-klmnopqrstuv_wxyzFAKEAA";
    let anthropic_admin = "sk-ant-admin01-FAKE0123456789abcdefghij-klmnopqrstuvAA";
    vec![
        // Cloud keys.
        row(format!("export AWS_ACCESS_KEY_ID={AWS_ID}"), "aws-access-key-id", &[AWS_ID], &["export AWS_ACCESS_KEY_ID="]),
        row("creds ASIAY34FZKBOKMUTVV7A expire soon", "aws-access-key-id", &["ASIAY34FZKBOKMUTVV7A"], &["creds ", " expire soon"]),
        row(format!("aws_secret_access_key = {AWS_SECRET}"), "aws-secret-access-key", &[AWS_SECRET], &["aws_secret_access_key = "]),
        row(format!("AWS_SECRET_ACCESS_KEY={AWS_SECRET} make deploy"), "aws-secret-access-key", &[AWS_SECRET], &["AWS_SECRET_ACCESS_KEY=", " make deploy"]),
        row(format!(r#"{{"AccessKeyId": "x", "SecretAccessKey": "{AWS_SECRET}", "Expiration": "2024"}}"#), "aws-secret-access-key", &[AWS_SECRET], &[r#""SecretAccessKey": ""#, r#""Expiration": "2024""#]),
        row("key AIzaSyFAKE-0123456789_abcdefghijklmnopq used", "google-api-key", &["SyFAKE-0123456789_abcdefghijklmnopq"], &["key ", " used"]),
        row("client GOCSPX-FAKE0123456789abcdefghijkl ok", "google-oauth-secret", &["GOCSPX-FAKE0123456789abcdefghijkl"], &["client ", " ok"]),
        row("access ya29.FAKE0123456789abcdefghijklmnop-qrs", "google-oauth-token", &["ya29.FAKE0123456789abcdefghijklmnop-qrs"], &["access "]),
        // VCS tokens.
        row(format!("GITHUB_TOKEN={GITHUB_PAT}"), "github-token", &[GITHUB_PAT], &["GITHUB_TOKEN="]),
        row(format!("token {gh_oauth}."), "github-token", &[gh_oauth], &["token ", "."]),
        row(format!("git push https://x-access-token:{gh_server}@github.com/o/r.git"), "github-token", &[gh_server], &["git push https://x-access-token:", "@github.com/o/r.git"]),
        row(format!("u={gh_user}"), "github-token", &[gh_user], &["u="]),
        row(format!("refresh: {gh_refresh}"), "github-token", &[gh_refresh], &["refresh: "]),
        row(format!("pat {gh_fine} end"), "github-token", &[gh_fine], &["pat ", " end"]),
        row("PRIVATE-TOKEN: glpat-FAKEfake0123456789ab", "gitlab-token", &["FAKEfake0123456789ab"], &["PRIVATE-TOKEN: "]),
        row("runner glrt-FAKEfake0123456789abcd registered", "gitlab-token", &["FAKEfake0123456789abcd"], &["runner ", " registered"]),
        row("deploy gldt-FAKEfake0123456789abcd", "gitlab-token", &["FAKEfake0123456789abcd"], &["deploy "]),
        // Chat.
        row("SLACK_BOT=xoxb-123456789012-1234567890123-FAKEfakeFAKEfakeFAKEfake", "slack-token", &["FAKEfakeFAKEfakeFAKEfake"], &["SLACK_BOT="]),
        row("user xoxp-123456789012-123456789012-FAKEfake0123", "slack-token", &["FAKEfake0123"], &["user "]),
        row("app xapp-1-A0FAKE-1234567890-FAKEfakeFAKE", "slack-token", &["FAKEfakeFAKE"], &["app "]),
        row("POST https://hooks.slack.com/services/T0FAKE000/B0FAKE000/FAKEfakeFAKEfake01234567 200", "slack-webhook", &["T0FAKE000/B0FAKE000/FAKEfakeFAKEfake01234567"], &["POST https://hooks.slack.com/services/", " 200"]),
        row("hook https://discord.com/api/webhooks/123456789/FAKEfake-token_0123", "discord-webhook", &["FAKEfake-token_0123"], &["https://discord.com/api/webhooks/123456789/"]),
        // Payments.
        row("stripe sk_live_FAKE0123456789abcdefFAKE", "stripe-key", &["FAKE0123456789abcdefFAKE"], &["stripe "]),
        row("stripe sk_test_FAKE0123456789abcdefFAKE", "stripe-key", &["FAKE0123456789abcdefFAKE"], &["stripe "]),
        row("restricted rk_live_FAKE0123456789abcdefFAKE", "stripe-key", &["FAKE0123456789abcdefFAKE"], &["restricted "]),
        row("signing whsec_FAKE0123456789abcdefFAKE0123", "stripe-webhook-secret", &["FAKE0123456789abcdefFAKE0123"], &["signing "]),
        // LLM providers.
        row(format!("OPENAI_API_KEY={openai_legacy}"), "openai-key", &[openai_legacy], &["OPENAI_API_KEY="]),
        row(format!("key: {openai_proj}"), "openai-key", &[openai_proj], &["key: "]),
        row(format!("{openai_svc} rejected"), "openai-key", &[openai_svc], &[" rejected"]),
        row(format!("x-api-key: {anthropic}"), "anthropic-key", &[anthropic], &["x-api-key: "]),
        row(format!("admin {anthropic_admin}"), "anthropic-key", &[anthropic_admin], &["admin "]),
        row("HF_TOKEN=hf_FAKEfake0123456789abcdefghijklmn", "huggingface-token", &["FAKEfake0123456789abcdefghijklmn"], &["HF_TOKEN="]),
        row("groq gsk_FAKEfake0123456789abcdefghijklmnopqrstuvwxyzAB", "groq-key", &["FAKEfake0123456789abcdefghijklmnopqrstuvwxyzAB"], &["groq "]),
        // Package registries.
        row("//registry.npmjs.org/:_authToken=npm_FAKEfake0123456789abcdefghijklmnopqr", "npm-token", &["FAKEfake0123456789abcdefghijklmnopqr"], &["//registry.npmjs.org/:_authToken="]),
        row("twine upload -p pypi-AgEIcHlwaS5vcmcFAKEfake0123456789abcdef", "pypi-token", &["FAKEfake0123456789abcdef"], &["twine upload -p "]),
        // JWTs and private keys.
        row(format!("id_token {JWT} issued"), "jwt", &[JWT, "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"], &["id_token ", " issued"]),
        row(format!("Authorization: Bearer {JWT}"), "jwt", &[JWT], &["Authorization: Bearer "]),
        row(format!("before\n{}\nafter", pem("RSA ")), "private-key", &[PEM_BODY], &["before\n", "\nafter"]),
        row(format!("k={}", pem("")), "private-key", &[PEM_BODY], &["k="]),
        row(format!("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FAKE\n\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"), "private-key", &[PEM_BODY, "00FAKE"], &[]),
        row("a chunk that ends with -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "private-key", &["b3BlbnNzaC1rZXktdjEAAAAA"], &["a chunk that ends with "]),
        row("a chunk that ends with -----BEGIN OPENSSH PRIVATE KEY-----", "private-key", &["-----BEGIN"], &["a chunk that ends with "]),
        row(format!("{}\nnext line", pem("OPENSSH ")), "private-key", &[PEM_BODY], &["next line"]),
        row(format!("{} ok", pem("EC ")), "private-key", &[PEM_BODY], &[" ok"]),
        row(format!("{} ok", pem("ENCRYPTED ")), "private-key", &[PEM_BODY], &[" ok"]),
        row("-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBFAKE\n-----END PGP PRIVATE KEY BLOCK-----", "private-key", &["lQOYBFAKE"], &[]),
        // A chunk cut mid-key: from BEGIN to the end of the text.
        row(format!("log: loading key\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\nMIIEow"), "private-key", &[PEM_BODY, "MIIEow"], &["log: loading key\n"]),
        // The next chunk: the base64 run before END.
        row(format!("{PEM_BODY}\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----\nserver started"), "private-key", &[PEM_BODY], &["\nserver started"]),
        // Escaped inside JSON (a service-account file).
        row(format!(r#"{{"private_key": "-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n", "client_email": "a@b"}}"#), "private-key", &[PEM_BODY], &[r#""private_key": ""#, r#""client_email": "a@b""#]),
        // Credentials in URLs: scheme, user and host kept.
        row("connecting to postgres://app:s3cr3t-pw@db.internal:5432/app", "url-password", &["s3cr3t-pw"], &["connecting to postgres://app:", "@db.internal:5432/app"]),
        row("redis://:hunter2hunter2@cache:6379/0", "url-password", &["hunter2hunter2"], &["redis://:", "@cache:6379/0"]),
        row("https://bob:p@ss:w0rd@example.com/x", "url-password", &["p@ss:w0rd"], &["https://bob:", "@example.com/x"]),
        row("GET https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AK%2F2024&X-Amz-Signature=fakefake0123456789abcdef HTTP/1.1", "url-signature", &["fakefake0123456789abcdef"], &["X-Amz-Signature=", " HTTP/1.1"]),
        row("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&sig=FAKEfake%2Bsig%3D", "url-signature", &["FAKEfake%2Bsig%3D"], &["sv=2022-11-02&sp=r&sig="]),
        // Name/value pairs: the name kept.
        row("password=hunter2 user=bob", "password", &["hunter2"], &["password=", " user=bob"]),
        row("passwd: hunter2", "password", &["hunter2"], &["passwd: "]),
        row("Server=db;Uid=sa;Pwd=hunter2;Database=app", "password", &["hunter2"], &["Server=db;Uid=sa;Pwd=", ";Database=app"]),
        row(r#"{"user": "bob", "password": "hunter2", "port": 5432}"#, "password", &["hunter2"], &[r#""password": ""#, r#""port": 5432"#]),
        row(r#"{\"password\":\"hunter2\"}"#, "password", &["hunter2"], &[r#"{\"password\":\""#]),
        row("'password': 'hunter 2'", "password", &["hunter 2"], &["'password': '"]),
        row("DB_PASSWORD=hunter2 ./migrate", "password", &["hunter2"], &["DB_PASSWORD=", " ./migrate"]),
        row("MYSQL_ROOT_PASSWORD: hunter2", "password", &["hunter2"], &["MYSQL_ROOT_PASSWORD: "]),
        row("PassWord = \"hunter2\"", "password", &["hunter2"], &["PassWord = \""]),
        row("keystore passphrase=correct-horse", "password", &["correct-horse"], &["keystore passphrase="]),
        row("secret: s3cr3tvalue", "secret", &["s3cr3tvalue"], &["secret: "]),
        // At the start of a field any value counts; in a sentence, one that looks generated.
        row("db:\n  password: letmein\n  host: db", "password", &["letmein"], &["db:\n  password: ", "\n  host: db"]),
        row("- password: letmein", "password", &["letmein"], &["- password: "]),
        row("user: bob, password: letmein", "password", &["letmein"], &["user: bob, password: "]),
        row("> X-Api-Key: letmein", "api-key", &["letmein"], &["> X-Api-Key: "]),
        row("INFO using token: a1b2c3d4 for upload", "token", &["a1b2c3d4"], &["INFO using token: ", " for upload"]),
        row("login failed for token: \"Zq8vLw3xT\" (expired)", "token", &["Zq8vLw3xT"], &["login failed for token: \"", "\" (expired)"]),
        row("login with password=letmein", "password", &["letmein"], &["login with password="]),
        row("client_secret=abc123def456&grant_type=x", "secret", &["abc123def456"], &["client_secret=", "&grant_type=x"]),
        row("SECRET_KEY_BASE=abcdef0123456789", "secret", &["abcdef0123456789"], &["SECRET_KEY_BASE="]),
        row("GET /cb?code=1&access_token=abcDEF123&state=2", "token", &["abcDEF123"], &["access_token=", "&state=2"]),
        row("token=opaque-value-42", "token", &["opaque-value-42"], &["token="]),
        row("X-Auth-Token: Bearer opaque-value-42", "token", &["opaque-value-42"], &["X-Auth-Token: Bearer "]),
        row("api_key=abc123", "api-key", &["abc123"], &["api_key="]),
        row("apikey: abc123", "api-key", &["abc123"], &["apikey: "]),
        row("curl -H 'X-Api-Key: abc123' https://api", "api-key", &["abc123"], &["-H 'X-Api-Key: ", "' https://api"]),
        row("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=FAKEfake+base64==;EndpointSuffix=core", "access-key", &["FAKEfake+base64=="], &["AccountName=acct;AccountKey=", ";EndpointSuffix=core"]),
        row("PRIVATE_KEY: 0xFAKEfake", "private-key", &["0xFAKEfake"], &["PRIVATE_KEY: "]),
        // A cut-off quoted value (the chunk ends mid-string).
        row(r#"{"password": "hunter2"#, "password", &["hunter2"], &[r#"{"password": ""#]),
        // Authorization headers: the scheme kept, the credential gone.
        row("Authorization: Bearer opaque.token-42 next", "authorization", &["opaque.token-42"], &["Authorization: Bearer ", " next"]),
        row("authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization", &["dXNlcjpwYXNzd29yZA=="], &["authorization: Basic "]),
        row("Authorization: token 0123456789abcdef0123456789abcdef01234567", "authorization", &["0123456789abcdef0123456789abcdef01234567"], &["Authorization: token "]),
        row("Proxy-Authorization: Negotiate YIIFAKE", "authorization", &["YIIFAKE"], &["Proxy-Authorization: Negotiate "]),
        row(r#"{"Authorization": "Bearer abc…"}"#, "authorization", &["abc…"], &[r#"{"Authorization": "Bearer "#, r#""}"#]),
        row("Authorization: abcdef0123456789", "authorization", &["abcdef0123456789"], &["Authorization: "]),
        // Cookies: names and attributes kept.
        row("Cookie: session=abc123; theme=dark", "cookie", &["abc123", "dark"], &["Cookie: session=", "; theme="]),
        row("Set-Cookie: sid=abc123; Path=/; HttpOnly", "cookie", &["abc123"], &["Set-Cookie: sid=", "; Path=/; HttpOnly"]),
    ]
}

fn check_positive(r: &Row) {
    let out = redact(&r.input);
    let marker = format!("[REDACTED:{}]", r.kind);
    assert!(
        out.contains(&marker),
        "{:?}\n  expected a {marker} marker, got {out:?}",
        r.input
    );
    for g in &r.gone {
        assert!(
            !out.contains(g.as_str()),
            "{:?}\n  {g:?} should be gone, got {out:?}",
            r.input
        );
    }
    for k in &r.kept {
        assert!(
            out.contains(k),
            "{:?}\n  {k:?} should survive, got {out:?}",
            r.input
        );
    }
    assert!(
        contains_secret(&r.input),
        "{:?}: contains_secret says no",
        r.input
    );
    let again = redact(&out);
    assert!(
        matches!(again, Cow::Borrowed(_)),
        "{:?}: not idempotent: {out:?} became {again:?}",
        r.input
    );
    assert!(
        !contains_secret(&out),
        "{:?}: redacted text {out:?} still reported as containing a secret",
        r.input
    );
}

#[test]
fn every_kind_is_redacted_with_its_marker_and_context_kept() {
    for r in positive_rows() {
        check_positive(&r);
    }
}

#[test]
fn markers_are_short() {
    for r in positive_rows() {
        let out = redact(&r.input);
        for (i, _) in out.match_indices(MARKER_PREFIX) {
            let end = out[i..].find(']').map(|e| i + e + 1);
            let len = end.map(|e| e - i);
            assert!(
                len.is_some_and(|l| l <= MAX_MARKER_LEN),
                "{out:?}: marker at {i} is longer than {MAX_MARKER_LEN}"
            );
        }
    }
}

/// Text that must come out unchanged (and borrowed).
const NEGATIVES: &[&str] = &[
    "",
    "2024-05-01T10:00:00.123Z INFO server: GET /api/v1/items/42 200 12ms",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "request 123e4567-e89b-12d3-a456-426614174000 failed: timeout",
    "password: ********",
    "password=***",
    "\"password\": \"\"",
    "token: <your-token-here>",
    "export DB_PASSWORD=$DB_PASSWORD",
    "password: ${SECRET_FROM_VAULT}",
    "\"token\": null",
    "the token expired, refreshing",
    "tokens: 512",
    "max_tokens=4096 input_tokens: 10 output_tokens: 20",
    "token_count=3 token_type=bearer",
    "Password for 'https://github.com':",
    "[sudo] password for bob:",
    "Enter password:",
    "--password-file /run/secrets/db",
    "--password-file=/run/secrets/db",
    "PWD=/home/dev/src/sentry OLDPWD=/home/dev",
    "pass: 12, fail: 0",
    "authorization: denied",
    "Authorization: Bearer",
    "cookies: 3",
    "kind: Secret",
    "secretName: db-creds",
    "the secret sauce",
    "stripe pk_live_FAKE0123456789abcdefFAKE loaded",
    "ssh git@github.com:org/repo.git",
    "ssh://git@host:22/repo",
    "http://[::1]:8080/healthz",
    "https://example.com/path?q=1&page=2",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANFAKE\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIFAKE\n-----END CERTIFICATE-----",
    "/home/dev/.ssh/id_ed25519.pub /var/lib/docker/overlay2/abc",
    "epoch 3 step 1200 loss 0.1234 lr 0.0003 tokens/s 91234",
    "1700000000 42 3.14159 0xdeadbeef",
    "task-management-service-module-for-risk-assessment started",
    "Élan vital — naïve café, 東京 🚀",
    "[REDACTED:password] [REDACTED:github-token]",
    // Seen in the corpus under fixtures/: secret names in messages and paths.
    "Access denied for user 'repl'@'10.20.3.12' (using password: YES), Error_code: MY-001045",
    "Failed to get StartPageToken: couldn't fetch token: invalid_grant: maybe token expired?",
    "polling Google Drive every minute with a revoked OAuth token: same error forever",
    "api[1740]: fatal: open /run/secrets/db_password: permission denied",
    "\"endpoint\":\"https://hooks.slack.com/services/T0/B0/redacted\"",
    // Seen in crate sources: code and prose around secret names.
    "use crate::token::{Brace, Bracket, Paren};",
    "PrivateKey::from_pem(bytes)",
    "rustls_pki_types::pem::SectionKind::PrivateKey => {",
    "fn register(&self, fd: RawFd, token: Token) {",
    "consistent!(click_1, r\"-----BEGIN PRIVATE KEY-----\");",
    "  * Handle Authorization: Basic from URI #923",
    "write!(w, \"Proxy-Authorization: Basic {}\\r\\n\", creds)?;",
    "error: unexpected token: 0",
    "error: unexpected token: \"bad string\"",
    "permissions:\n  contents: read\n  id-token: write",
];

#[test]
fn clean_text_is_left_alone_and_borrowed() {
    for text in NEGATIVES {
        let out = redact(text);
        assert!(
            matches!(out, Cow::Borrowed(_)),
            "{text:?} should be left alone, got {out:?}"
        );
        assert!(!contains_secret(text), "{text:?}: contains_secret says yes");
    }
}

#[test]
fn every_pattern_compiles() {
    assert_eq!(RULES.rules.len(), RULES.set.len());
}

#[test]
fn a_long_chunk_of_secrets_is_redacted_throughout() {
    let line = format!("GITHUB_TOKEN={GITHUB_PAT} password=hunter2 {JWT}\n");
    let text = line.repeat(2000);
    let out = redact(&text);
    assert!(!out.contains(GITHUB_PAT) && !out.contains("hunter2") && !out.contains(JWT));
    assert_eq!(out.matches("[REDACTED:").count(), 3 * 2000);
}

#[test]
fn hostile_shapes_do_not_panic() {
    let inputs = [
        "=".repeat(100_000),
        "password".repeat(10_000),
        "password=".repeat(10_000),
        "\"password\": \"".repeat(5_000),
        "Cookie: ;;;==;=;".repeat(1_000),
        "https://a:b@".repeat(5_000),
        "-----BEGIN RSA PRIVATE KEY-----".repeat(1_000),
        "\u{FFFD}".repeat(10_000) + "token=\u{FFFD}\u{FFFD}",
        "eyJ".repeat(10_000),
    ];
    for input in &inputs {
        let once = redact(input).into_owned();
        assert_eq!(redact(&once), once, "not idempotent on a hostile input");
    }
}

#[test]
fn a_marker_that_changes_an_earlier_rule_is_settled_by_another_pass() {
    // The header rule takes `password://Bearer` for prose; the pair rule then writes a marker
    // after `password:`, and the result looks like a credential to the header rule.
    let once = redact("Authorization: password://Bearer ");
    assert_eq!(once, "Authorization: [REDACTED:authorization] ");
    assert_eq!(redact(&once), once);
}

#[test]
fn json_values_are_redacted_in_place() {
    let mut v = json!({
        "user": "bob",
        "password": "hunter2",
        "pin_password": 123456,
        "db": {"url": "postgres://app:s3cr3t@db/app", "apiKey": "abc123"},
        "headers": {"Authorization": "Bearer opaque-42", "Cookie": "sid=abc; theme=dark", "Accept": "*/*"},
        "env": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "LOG_LEVEL", "value": "debug"}],
        "argv": ["deploy", format!("--token={GITHUB_PAT}")],
        "tokens": 512,
        "max_tokens": 4096,
        "note": "the token expired",
        "masked": {"password": "********"},
        "enabled": true
    });
    redact_json(&mut v);
    assert_eq!(
        v,
        json!({
            "user": "bob",
            "password": "[REDACTED:password]",
            "pin_password": "[REDACTED:password]",
            "db": {"url": "postgres://app:[REDACTED:url-password]@db/app", "apiKey": "[REDACTED:api-key]"},
            "headers": {"Authorization": "Bearer [REDACTED:authorization]", "Cookie": "sid=[REDACTED:cookie]; theme=[REDACTED:cookie]", "Accept": "*/*"},
            "env": [{"name": "DB_PASSWORD", "value": "[REDACTED:password]"}, {"name": "LOG_LEVEL", "value": "debug"}],
            "argv": ["deploy", "--token=[REDACTED:github-token]"],
            "tokens": 512,
            "max_tokens": 4096,
            "note": "the token expired",
            "masked": {"password": "********"},
            "enabled": true
        })
    );
}

#[test]
fn json_keys_holding_secrets_are_redacted_without_losing_values() {
    let other = "ghp_FAKE9999999999abcdefghijABCDEFGHIJ99";
    let mut map = serde_json::Map::new();
    map.insert(GITHUB_PAT.to_string(), json!(1));
    map.insert(other.to_string(), json!(2));
    map.insert("plain".to_string(), json!(3));
    let mut v = Value::Object(map);
    redact_json(&mut v);
    let map = v.as_object().expect("still an object");
    assert_eq!(map.len(), 3, "{v}");
    assert_eq!(map.get("plain"), Some(&json!(3)));
    assert!(
        map.contains_key("[REDACTED:github-token]")
            && map.contains_key("[REDACTED:github-token]#2"),
        "{v}"
    );
    assert!(!v.to_string().contains("ghp_"), "{v}");
}

#[test]
fn json_with_a_secret_named_value_uses_the_specific_kind() {
    let mut v = json!({"token": GITHUB_PAT, "Authorization": format!("Bearer {JWT}")});
    redact_json(&mut v);
    assert_eq!(
        v,
        json!({"token": "[REDACTED:github-token]", "Authorization": "Bearer [REDACTED:jwt]"})
    );
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_curl_command_line_of_the_brief() {
    let out = redact_args(&args(&[
        "curl",
        "-H",
        "Authorization: Bearer abc…",
        "https://user:pw@host/…",
        "--password",
        "hunter2",
    ]));
    assert_eq!(
        out,
        args(&[
            "curl",
            "-H",
            "Authorization: Bearer [REDACTED:authorization]",
            "https://user:[REDACTED:url-password]@host/…",
            "--password",
            "[REDACTED:password]",
        ])
    );
}

#[test]
fn argument_vectors_are_redacted() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "tool",
                "--token=abc123",
                "--api-key",
                "k-1",
                "--client-secret",
                "s",
            ],
            &[
                "tool",
                "--token=[REDACTED:token]",
                "--api-key",
                "[REDACTED:api-key]",
                "--client-secret",
                "[REDACTED:secret]",
            ],
        ),
        (
            &["tool", "--token", GITHUB_PAT],
            &["tool", "--token", "[REDACTED:github-token]"],
        ),
        (
            &["go-tool", "-token", "abc", "-v"],
            &["go-tool", "-token", "[REDACTED:token]", "-v"],
        ),
        (
            &["env", "DB_PASSWORD=a b c", "PATH=/usr/bin", "app"],
            &[
                "env",
                "DB_PASSWORD=[REDACTED:password]",
                "PATH=/usr/bin",
                "app",
            ],
        ),
        (
            &[
                "java",
                "-Djavax.net.ssl.keyStorePassword=changeit",
                "-jar",
                "a.jar",
            ],
            &[
                "java",
                "-Djavax.net.ssl.keyStorePassword=[REDACTED:password]",
                "-jar",
                "a.jar",
            ],
        ),
        (
            &["wget", "--http-password=pw1", "--ftp-password", "pw2"],
            &[
                "wget",
                "--http-password=[REDACTED:password]",
                "--ftp-password",
                "[REDACTED:password]",
            ],
        ),
        // Files, variables and counts are not secrets.
        (
            &[
                "tool",
                "--password-file",
                "/run/secrets/db",
                "--token-env",
                "GH_TOKEN",
                "--max-tokens",
                "512",
            ],
            &[
                "tool",
                "--password-file",
                "/run/secrets/db",
                "--token-env",
                "GH_TOKEN",
                "--max-tokens",
                "512",
            ],
        ),
        // Switches take no value.
        (
            &["gh", "auth", "login", "--with-token", "--hostname", "h"],
            &["gh", "auth", "login", "--with-token", "--hostname", "h"],
        ),
        (
            &["tool", "--no-password", "target"],
            &["tool", "--no-password", "target"],
        ),
        (
            &["psql", "--password", "--host", "db"],
            &["psql", "--password", "--host", "db"],
        ),
        (
            &["tool", "--password", "********"],
            &["tool", "--password", "********"],
        ),
        // -p is not a password in general.
        (
            &["ssh", "-p", "2222", "host"],
            &["ssh", "-p", "2222", "host"],
        ),
        (&["mkdir", "-p", "/tmp/a"], &["mkdir", "-p", "/tmp/a"]),
        (&["cp", "-p", "a", "b"], &["cp", "-p", "a", "b"]),
        // ... except for these programs.
        (
            &["mysql", "-u", "root", "-phunter2", "app"],
            &["mysql", "-u", "root", "-p[REDACTED:password]", "app"],
        ),
        (
            &["sudo", "/usr/bin/mysqldump", "-p", "app"],
            &["sudo", "/usr/bin/mysqldump", "-p", "app"],
        ),
        (
            &["sshpass", "-p", "hunter2", "ssh", "-p", "22", "host"],
            &[
                "sshpass",
                "-p",
                "[REDACTED:password]",
                "ssh",
                "-p",
                "22",
                "host",
            ],
        ),
        (
            &["docker", "login", "-u", "bob", "-p", "hunter2", "reg.io"],
            &[
                "docker",
                "login",
                "-u",
                "bob",
                "-p",
                "[REDACTED:password]",
                "reg.io",
            ],
        ),
        (
            &["docker", "run", "-p", "8080:80", "img"],
            &["docker", "run", "-p", "8080:80", "img"],
        ),
        (
            &["curl", "-u", "bob:hunter2", "https://h"],
            &["curl", "-u", "bob:[REDACTED:password]", "https://h"],
        ),
        (
            &["curl", "--user=bob:hunter2", "-ubob:pw2", "https://h"],
            &[
                "curl",
                "--user=bob:[REDACTED:password]",
                "-ubob:[REDACTED:password]",
                "https://h",
            ],
        ),
        (
            &[
                "openssl",
                "rsa",
                "-passin",
                "pass:hunter2",
                "-passout",
                "env:PW",
            ],
            &[
                "openssl",
                "rsa",
                "-passin",
                "pass:[REDACTED:password]",
                "-passout",
                "env:PW",
            ],
        ),
        // Headers, URLs and tokens inside any argument.
        (
            &[
                "git",
                "-c",
                "http.extraHeader=Authorization: Basic dXNlcjpwYXNz",
                "clone",
                "https://bob:pw@git/r",
            ],
            &[
                "git",
                "-c",
                "http.extraHeader=Authorization: Basic [REDACTED:authorization]",
                "clone",
                "https://bob:[REDACTED:url-password]@git/r",
            ],
        ),
        (&["--", "-", "--password"], &["--", "-", "--password"]),
    ];
    for (input, expected) in cases {
        let out = redact_args(&args(input));
        assert_eq!(out, args(expected), "input {input:?}");
    }
}

/// Fake secrets of every kind inside a carrier, with the part that must disappear.
fn embedded_secrets() -> Vec<(String, String)> {
    positive_rows()
        .into_iter()
        // A BEGIN line with nothing after it is a key only at the very end of the text.
        .filter(|r| r.gone[0] != "-----BEGIN")
        .map(|r| (r.input, r.gone[0].clone()))
        .collect()
}

/// Text that looks like the stuff secrets live in: names, separators, quotes, markers.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,6}",
        Just("password".to_string()),
        Just("token".to_string()),
        Just("=".to_string()),
        Just(": ".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\\\"".to_string()),
        Just("\n".to_string()),
        Just(";".to_string()),
        Just("@".to_string()),
        Just("://".to_string()),
        Just("Authorization: ".to_string()),
        Just("Bearer ".to_string()),
        Just("Cookie: ".to_string()),
        Just("[REDACTED:token]".to_string()),
        Just("[REDACTED:".to_string()),
        Just("-----BEGIN RSA PRIVATE KEY-----".to_string()),
        Just("-----END RSA PRIVATE KEY-----".to_string()),
        Just(GITHUB_PAT.to_string()),
        Just(AWS_ID.to_string()),
        Just("eyJhbGciOiJIUzI1NiJ9".to_string()),
        Just(".".to_string()),
        Just("https://u:p@h".to_string()),
        Just("********".to_string()),
        Just("$X".to_string()),
    ]
}

fn tricky_text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..16).prop_map(|parts| parts.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        tricky_text().prop_map(Value::String),
    ];
    let key = prop_oneof![
        tricky_text(),
        Just("password".to_string()),
        Just("name".to_string()),
        Just("value".to_string()),
        Just("Authorization".to_string()),
        Just("Set-Cookie".to_string()),
    ];
    leaf.prop_recursive(3, 32, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn redaction_never_panics_and_is_idempotent(text in prop_oneof![tricky_text(), "\\PC{0,200}", any::<String>()]) {
        let once = redact(&text);
        let twice = redact(&once);
        prop_assert_eq!(&*twice, &*once, "not idempotent on {:?}", text);
    }

    #[test]
    fn contains_secret_agrees_with_redact(text in tricky_text()) {
        let changed = matches!(redact(&text), Cow::Owned(_));
        prop_assert_eq!(contains_secret(&text), changed, "on {:?}", text);
    }

    /// Output grows by at most one marker per marker it contains: a replacement drops at
    /// least the secret and adds one bounded marker.
    #[test]
    fn output_grows_by_at_most_one_marker_per_marker(text in tricky_text()) {
        let out = redact(&text);
        let markers = out.matches(MARKER_PREFIX).count();
        prop_assert!(out.len() <= text.len() + markers * MAX_MARKER_LEN, "{:?} -> {:?}", text, out);
    }

    #[test]
    fn an_embedded_secret_is_always_removed(
        index in 0usize..1000,
        left in prop_oneof!["[ -~]{0,40}", "\\PC{0,20}"],
        right in prop_oneof!["[ -~]{0,40}", "\\PC{0,20}"],
    ) {
        let secrets = embedded_secrets();
        let (carrier, secret) = &secrets[index % secrets.len()];
        let text = format!("{left} {carrier}\n{right}");
        let out = redact(&text);
        prop_assert!(!out.contains(secret.as_str()), "{:?} survived in {:?}", secret, out);
    }

    #[test]
    fn json_redaction_never_panics_and_is_idempotent(mut v in json_value()) {
        redact_json(&mut v);
        let once = v.clone();
        redact_json(&mut v);
        prop_assert_eq!(v, once);
    }

    #[test]
    fn argument_redaction_keeps_the_count_and_is_idempotent(argv in prop::collection::vec(prop_oneof![
        tricky_text(),
        Just("-p".to_string()),
        Just("-phunter2".to_string()),
        Just("--password".to_string()),
        Just("--token=".to_string()),
        Just("DB_PASSWORD=a b".to_string()),
        Just("mysql".to_string()),
        Just("sshpass".to_string()),
        Just("docker".to_string()),
        Just("login".to_string()),
        Just("curl".to_string()),
        Just("-u".to_string()),
        Just("bob:pw".to_string()),
        Just("-passin".to_string()),
        Just("pass:pw".to_string()),
    ], 0..8)) {
        let once = redact_args(&argv);
        prop_assert_eq!(once.len(), argv.len());
        prop_assert_eq!(redact_args(&once), once);
    }
}
