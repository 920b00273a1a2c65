//! Secret redaction: replaces credentials in captured text, command lines and JSON with a
//! marker that names their kind (`[REDACTED:github-token]`), before anything is stored,
//! streamed, logged or reported (DESIGN.md section 5).
//!
//! What it catches, most specific first so that the marker names the kind: PEM private-key
//! blocks (a `BEGIN` without its `END`, as in a chunk cut mid-key, is redacted to the end of
//! the text; an `END` with the base64 lines before it, to the start of that run), provider
//! tokens by their documented prefixes (Anthropic, OpenAI, GitHub, GitLab, Slack, Discord
//! webhooks, Stripe secret and restricted keys, Google API keys and OAuth secrets and tokens,
//! Hugging Face, Groq, npm, PyPI), AWS access key ids, JWTs, then values named by their key:
//! AWS secret access keys, signatures in URL query strings, the password in
//! `scheme://user:password@host`, the credential of `Authorization:` headers (any scheme; the
//! scheme is kept), cookie values, and `password=` / `"token": "…"` / `DB_PASSWORD=…` /
//! `X-Api-Key: …` style pairs. Names are kept, only values are replaced, so evidence stays
//! readable. Values that are already masked or are placeholders (`********`, `$VAR`,
//! `<your-token>`, `null`, `YES`) are left alone, and so is what follows a name used in a
//! sentence (`could not fetch token: invalid_grant`, `using password: YES`) unless it looks
//! generated (a digit, mixed case, or 16 characters and more). [`redact`] is idempotent.
//!
//! It is a heuristic filter, not a guarantee. It does not find secrets that carry neither a
//! known shape nor a telling name (a bare 40-character AWS secret key looks like a git SHA-1,
//! so it is only caught next to its name); a word-like password written mid-sentence
//! (`login with password: letmein`) is taken for prose; it does not see a secret split
//! across two calls, except for private-key blocks as said above, so callers should redact
//! whole lines or larger pieces; in free text it does not take `--password VALUE` (a
//! space-separated flag) as a pair, [`redact_args`] does that for argument vectors. Source
//! code that assigns to a secret-named variable loses the right-hand side
//! (`let token = [REDACTED:token]`). Stripe publishable keys (`pk_live_…`) are kept: they
//! are public by design and ship in web pages.
//!
//! Cost: one [`RegexSet`] scan finds clean text (4 to 8 ms per MiB on one core here, by
//! `cargo bench -p sentry --bench redact_throughput`), which is returned borrowed without
//! allocating; text with secrets costs a scan per matching rule and a second pass (about
//! 150 ms for a MiB that is nothing but secrets).

use std::borrow::Cow;
use std::ops::{ControlFlow, Range};
use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};
use serde_json::Value;

/// How every marker starts; the kind and a closing bracket follow.
const MARKER_PREFIX: &str = "[REDACTED:";

/// Key names whose value is a secret, as a regex alternation (case-insensitive). A name
/// matches when it *ends* with one of these (`DB_PASSWORD`, `client_secret`, `X-Api-Key`), so
/// `tokens`, `max_tokens`, `token_count` and `--password-file` do not. `pass` and
/// `credentials` are left out on purpose: `pass: 12` is a test summary and `credentials` is
/// usually a file path or a provider name.
const SECRET_NAMES: &str = r"password|passwd|passphrase|pwd|secret(?:[_-]?key(?:[_-]?base)?)?|token|api[_-]?key|(?:shared[_-]?)?access[_-]?key|account[_-]?key|subscription[_-]?key|private[_-]?key";

/// Names of an AWS secret access key (`aws_secret_access_key`, `AWS_SECRET_ACCESS_KEY`,
/// `SecretAccessKey` in `aws sts` JSON output).
const AWS_SECRET_NAMES: &str = r"aws[_-]?secret[_-]?(?:access[_-]?)?key|secret[_-]?access[_-]?key";

/// Between a name and its value: an optional closing quote of the name (also JSON-escaped),
/// then `=`, `:`, `:=` or `=>`, with spaces or tabs (never a newline: `token:` ending a YAML
/// line introduces a nested map, not a value).
const SEPARATOR: &str = r#"(?:\\?["'])?[ \t]*(?::=|=>|==?|:)[ \t]*"#;

/// A value: double-quoted (JSON, with escapes), JSON-escaped inside a JSON string, single
/// quoted, an unterminated quote (a chunk cut mid-value: to the end of the line), an
/// authorization scheme followed by its credential (`X-Auth-Token: Bearer …`), or bare up to
/// whitespace, `&` (query strings), `;` (cookies, connection strings), `,` or a quote (and not
/// starting with `:`, so that the Rust path `token::Kind` is not `token: :Kind`).
const VALUE: &str = r#"(?:"(?P<secret1>(?:[^"\\\r\n]|\\.)*)"|\\"(?P<secret2>(?:[^"\\\r\n]|\\[^"\r\n])*)\\"|'(?P<secret3>[^'\r\n]*)'|"(?P<secret4>[^"\r\n]*)|'(?P<secret5>[^'\r\n]*)|(?:bearer|basic|token|bot)[ \t]+(?P<secret6>[^\s&;,"']+)|(?P<secret7>[^\s&;,"':][^\s&;,"']*))"#;

/// What a rule's match means and how to check it.
#[derive(Debug, Clone, Copy)]
enum Handling {
    /// The `secret*` group (or the whole match) is a secret of this kind, by its shape alone.
    Token(&'static str),
    /// The `secret*` group is a value of this kind; placeholders are kept.
    Value(&'static str),
    /// The `secret*` group is the value of the name in the `key` group, which gives the kind.
    /// In prose (`could not fetch token: invalid_grant`) only a value that looks random counts.
    NamedValue,
    /// The `secret` group is the credential of an `Authorization` header; `scheme` is kept.
    Credential,
    /// The `secret` group is a `Cookie` or `Set-Cookie` header value (`name` says which).
    Cookie,
}

/// One pattern with its handling. The order of [`rule_list`] is the order of precedence.
struct Rule {
    pattern: String,
    handling: Handling,
}

/// A compiled rule: the regex and the indices of its `secret*` groups.
struct Compiled {
    regex: Regex,
    handling: Handling,
    secret_groups: Vec<usize>,
}

/// Every rule, and a set of the same patterns to find out in one scan which can match.
struct Rules {
    rules: Vec<Compiled>,
    set: RegexSet,
    /// A name that ends like a secret name, for JSON keys, flags and `NAME=VALUE` arguments.
    secret_name: Regex,
    /// A name that ends like an AWS secret access key name.
    aws_secret_name: Regex,
}

fn rule(handling: Handling, pattern: &str) -> Rule {
    Rule {
        pattern: pattern.to_owned(),
        handling,
    }
}

/// The rules, most specific first. `(?-u:\b)` is an ASCII word boundary: a Unicode `\b`
/// would make the lazy DFA give up on the first non-ASCII byte.
fn rule_list() -> Vec<Rule> {
    use Handling::*;
    vec![
        // A BEGIN line counts when key material (base64, or a `Proc-Type:`-style header)
        // or the end of the text follows it, possibly after JSON-escaped newlines: a program
        // that merely mentions the line (`r"-----BEGIN PRIVATE KEY-----"`) is not a key.
        rule(
            Token("private-key"),
            r"(?s)-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:\s|\\[nr])*(?:[A-Za-z0-9+/=]{4}|[A-Za-z-]+:|\z).*?(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\z)",
        ),
        // The tail of a key whose BEGIN line was in an earlier chunk: the run of base64 lines
        // before the END line, the first of which may end a line that starts otherwise. (A
        // first piece shorter than 8 characters is left: at most 7 characters of key.)
        rule(
            Token("private-key"),
            r"(?m)(?:[A-Za-z0-9+/=]{8,}\r?\n)?(?:^[A-Za-z0-9+/=]{8,}\r?\n)*-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----",
        ),
        // Before OpenAI: both start with `sk-`.
        rule(
            Token("anthropic-key"),
            r"(?-u:\b)sk-ant-(?:api|admin|sid|oat|ort)[0-9]{2}-[A-Za-z0-9_-]{20,}",
        ),
        // Project, service-account and admin keys, and legacy keys (alphanumeric only, so
        // that `sk-` in kebab-case words is not taken).
        rule(
            Token("openai-key"),
            r"(?-u:\b)sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})",
        ),
        rule(
            Token("github-token"),
            r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
        ),
        rule(
            Token("gitlab-token"),
            r"(?-u:\b)(?:gl(?:pat|oas|dt|rt|cbt|ptt|ft|imt|agent|soat|ffct|wt)-[A-Za-z0-9_.-]{20,}|GR1348941[A-Za-z0-9_-]{20,})",
        ),
        // The last part of a real webhook path is long (24 characters); a placeholder such
        // as `T0/B0/redacted` is kept.
        rule(
            Token("slack-webhook"),
            r"https?://hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9/_+-]*[A-Za-z0-9_+-]{16,})",
        ),
        rule(
            Token("slack-token"),
            r"(?-u:\b)(?:xox(?:[abposr]|e\.xox[bp]|e)-[0-9A-Za-z-]{10,}|xapp-[0-9]+-[0-9A-Za-z-]{10,})",
        ),
        rule(
            Token("discord-webhook"),
            r"https://(?:(?:canary|ptb)\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/(?P<secret>[A-Za-z0-9_-]+)",
        ),
        // Secret and restricted keys, live and test (a test key still reads and writes the
        // account's test data). Publishable `pk_` keys are public by design.
        rule(
            Token("stripe-key"),
            r"(?-u:\b)(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}",
        ),
        rule(
            Token("stripe-webhook-secret"),
            r"(?-u:\b)whsec_[A-Za-z0-9+/=]{20,}",
        ),
        rule(Token("google-api-key"), r"AIza[0-9A-Za-z_-]{35}"),
        rule(Token("google-oauth-secret"), r"GOCSPX-[0-9A-Za-z_-]{10,}"),
        rule(
            Token("google-oauth-token"),
            r"(?-u:\b)ya29\.[0-9A-Za-z_-]{20,}",
        ),
        rule(Token("huggingface-token"), r"(?-u:\b)hf_[A-Za-z0-9]{30,}"),
        rule(Token("groq-key"), r"(?-u:\b)gsk_[A-Za-z0-9]{40,}"),
        rule(Token("npm-token"), r"(?-u:\b)npm_[A-Za-z0-9]{36,}"),
        rule(
            Token("pypi-token"),
            r"(?-u:\b)pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{20,}",
        ),
        rule(
            Token("aws-access-key-id"),
            r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
        ),
        rule(
            Token("jwt"),
            r"(?-u:\b)eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
        ),
        rule(
            Value("aws-secret-access-key"),
            &format!("(?i)(?:{AWS_SECRET_NAMES}){SEPARATOR}{VALUE}"),
        ),
        // Presigned URLs (S3, GCS) and Azure SAS tokens grant access until they expire.
        rule(
            Value("url-signature"),
            r#"(?i)[?&](?:sig|signature|x-amz-signature|x-goog-signature)=(?P<secret>[^&\s"'#]+)"#,
        ),
        // The password runs to the last `@` of the authority (`p@ss` written unencoded).
        // The user part excludes brackets so that a marker in it is not read as `user:pw`.
        rule(
            Value("url-password"),
            r#"[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@"'<>\[\]]*:(?P<secret>[^\s/?#"'<>]*)@"#,
        ),
        rule(
            Credential,
            r#"(?i)(?-u:\b)(?:proxy-)?authorization(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?(?:(?P<scheme>[A-Za-z][A-Za-z0-9._~+/-]*)[ \t]+)?(?P<secret>[^\s"',;\\:][^\s"',;\\]*)"#,
        ),
        rule(
            Cookie,
            r#"(?i)(?-u:\b)(?P<name>set-cookie|cookie)(?:\\?["'])?[ \t]*:[ \t]*(?:\\?["'])?(?P<secret>[^\r\n"'\\]+)"#,
        ),
        // The whole name is captured (`name` + `key`) so that what precedes it can be seen.
        rule(
            NamedValue,
            &format!(
                "(?i)(?P<name>[A-Za-z0-9_.-]*)(?P<key>{SECRET_NAMES})(?P<sep>{SEPARATOR}){VALUE}"
            ),
        ),
    ]
}

fn compile(pattern: &str) -> Regex {
    // The patterns are constants of this module; the unit tests compile every one.
    Regex::new(pattern).unwrap_or_else(|e| panic!("built-in redaction pattern {pattern:?}: {e}"))
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let list = rule_list();
    let set = RegexSet::new(list.iter().map(|r| r.pattern.as_str()))
        .unwrap_or_else(|e| panic!("built-in redaction patterns: {e}"));
    let rules = list
        .iter()
        .map(|r| {
            let regex = compile(&r.pattern);
            let secret_groups = regex
                .capture_names()
                .enumerate()
                .filter(|(_, name)| name.is_some_and(|n| n.starts_with("secret")))
                .map(|(i, _)| i)
                .collect();
            Compiled {
                regex,
                handling: r.handling,
                secret_groups,
            }
        })
        .collect();
    Rules {
        rules,
        set,
        secret_name: compile(&format!("(?i)(?P<key>{SECRET_NAMES})$")),
        aws_secret_name: compile(&format!("(?i)(?:{AWS_SECRET_NAMES})$")),
    }
});

/// Text with every secret replaced by a marker naming its kind, e.g. `[REDACTED:github-token]`.
/// Borrowed when nothing matched (the common case must not allocate).
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(mut out) = redact_pass(text) else {
        return Cow::Borrowed(text);
    };
    // A marker written by a later rule can change what an earlier rule sees
    // (`Authorization: password://x` is left by the header rule as prose, then the pair rule
    // makes it `Authorization: password:[REDACTED:password]`, which looks like a credential),
    // so passes repeat until one changes nothing: that is what makes `redact` idempotent.
    // Every changing pass replaces at least one character that is not part of a marker, and
    // in practice the second pass finds nothing; the bound is a guard.
    for _ in 1..MAX_PASSES {
        match redact_pass(&out) {
            Some(next) => out = next,
            None => break,
        }
    }
    Cow::Owned(out)
}

/// Passes of [`redact`] at most. Were it reached, `redact` would not be idempotent, which the
/// property tests check.
const MAX_PASSES: usize = 8;

/// Every rule once, in order; `None` when nothing was replaced.
fn redact_pass(text: &str) -> Option<String> {
    let rules = &*RULES;
    if !rules.set.is_match(text) {
        return None;
    }
    let hits = rules.set.matches(text);
    let mut owned: Option<String> = None;
    for (i, rule) in rules.rules.iter().enumerate() {
        // The set describes the text the pass started with; once a rule has changed it,
        // every later rule runs, so that what a marker borders on is looked at too.
        if owned.is_none() && !hits.matched(i) {
            continue;
        }
        let current = owned.as_deref().unwrap_or(text);
        if let Some(next) = rule.apply(current) {
            owned = Some(next);
        }
    }
    owned
}

/// True when `text` contains something `redact` would replace.
pub fn contains_secret(text: &str) -> bool {
    let rules = &*RULES;
    if !rules.set.is_match(text) {
        return false;
    }
    // A pass changes nothing before its first replacement, so the first rule that would
    // replace something in the original text decides.
    let hits = rules.set.matches(text);
    hits.iter().any(|i| rules.rules[i].finds(text))
}

impl Compiled {
    /// The text with this rule's secrets replaced, or `None` when it replaces nothing.
    fn apply(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        let mut last = 0;
        for caps in self.regex.captures_iter(text) {
            let _ = self.visit(text, &caps, &mut |span, kind| {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 32));
                o.push_str(&text[last..span.start]);
                push_marker(o, kind);
                last = span.end;
                ControlFlow::Continue(())
            });
        }
        out.map(|mut o| {
            o.push_str(&text[last..]);
            o
        })
    }

    /// True when this rule would replace something in `text`.
    fn finds(&self, text: &str) -> bool {
        self.regex.captures_iter(text).any(|caps| {
            self.visit(text, &caps, &mut |_, _| ControlFlow::Break(()))
                .is_break()
        })
    }

    /// Calls `f` with each span of one match that is a secret (in increasing order) and its kind.
    fn visit(
        &self,
        text: &str,
        caps: &Captures<'_>,
        f: &mut dyn FnMut(Range<usize>, &'static str) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let secret = self
            .secret_groups
            .iter()
            .find_map(|&i| caps.get(i))
            .or_else(|| caps.get(0));
        let Some(secret) = secret else {
            return ControlFlow::Continue(());
        };
        let value = secret.as_str();
        match self.handling {
            Handling::Token(kind) => f(secret.range(), kind),
            Handling::Value(kind) if is_secret_value(value) => f(secret.range(), kind),
            Handling::Value(_) => ControlFlow::Continue(()),
            Handling::NamedValue => {
                let Some(key) = caps.name("key") else {
                    return ControlFlow::Continue(());
                };
                let name = secret_name(key.as_str());
                let start = caps.name("name").map_or(key.start(), |m| m.start());
                let colon = caps
                    .name("sep")
                    .is_some_and(|m| m.as_str().trim().ends_with(':'));
                let before = &text[..start];
                // `/run/secrets/db_password: permission denied` names a file.
                let in_path = before.ends_with(['/', '\\']);
                let prose = colon && in_prose(before);
                // `token: Token`, `password = Password`: a type or a variable, not a value.
                let is_name = value
                    .trim_start_matches(['&', '*'])
                    .trim_end_matches([')', ']', '}', '>', ','])
                    .eq_ignore_ascii_case(key.as_str());
                if name.accepts(value) && !in_path && !is_name && (!prose || looks_random(value)) {
                    f(secret.range(), name.kind)
                } else {
                    ControlFlow::Continue(())
                }
            }
            Handling::Credential => {
                let with_scheme = caps.name("scheme").is_some();
                let start = caps.get(0).map_or(0, |m| m.start());
                // Without a scheme a single word is often prose ("authorization: denied"): a
                // credential then needs a digit or length. A header named in a sentence
                // ("handle Authorization: Basic from URI") needs more than a plain word.
                let looks_like_credential = if !with_scheme {
                    value.bytes().any(|b| b.is_ascii_digit()) || value.chars().count() >= 20
                } else {
                    !in_prose(&text[..start]) || !is_plain_word(value)
                };
                if looks_like_credential && is_secret_value(value) {
                    f(secret.range(), "authorization")
                } else {
                    ControlFlow::Continue(())
                }
            }
            Handling::Cookie => {
                let set_cookie = caps
                    .name("name")
                    .is_some_and(|m| m.as_str().len() > "cookie".len());
                let base = secret.start();
                cookie_values(value, set_cookie, &mut |r| {
                    f(base + r.start..base + r.end, "cookie")
                })
            }
        }
    }
}

/// Calls `f` with the range of each cookie value in a `Cookie` header value (`a=1; b=2`), or
/// of the first one only in a `Set-Cookie` value (the rest are attributes: `Path=/`).
fn cookie_values(
    header: &str,
    set_cookie: bool,
    f: &mut dyn FnMut(Range<usize>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let mut offset = 0;
    for pair in header.split(';') {
        if let Some(eq) = pair.find('=') {
            let raw = &pair[eq + 1..];
            let value = raw.trim();
            if is_secret_value(value) {
                let start = offset + eq + 1 + (raw.len() - raw.trim_start().len());
                f(start..start + value.len())?;
            }
        }
        if set_cookie {
            break;
        }
        offset += pair.len() + 1;
    }
    ControlFlow::Continue(())
}

fn push_marker(out: &mut String, kind: &str) {
    out.push_str(MARKER_PREFIX);
    out.push_str(kind);
    out.push(']');
}

fn marker(kind: &str) -> String {
    let mut s = String::with_capacity(MARKER_PREFIX.len() + kind.len() + 1);
    push_marker(&mut s, kind);
    s
}

/// True for exactly one marker, e.g. `[REDACTED:jwt]`.
fn is_marker(s: &str) -> bool {
    s.strip_prefix(MARKER_PREFIX)
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|kind| {
            !kind.is_empty()
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn starts_with_marker(s: &str) -> bool {
    s.starts_with(MARKER_PREFIX) && s.find(']').is_some_and(|end| is_marker(&s[..=end]))
}

/// False for values that hide nothing: empty, already masked (`********`, `xxxx`), without a
/// letter or digit (`{`),
/// placeholders (`<token>`, `$VAR`, `${VAR}`), `null`-like words, and values that start with
/// a marker (a more specific rule took the secret; what follows it is context, as `@host` in
/// `https://x-access-token:[REDACTED:github-token]@host`). Keeping them keeps the evidence
/// readable and makes redaction idempotent.
fn is_secret_value(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || starts_with_marker(v) {
        return false;
    }
    // Masked (`********`, `xxxx`), or code punctuation (`{`, `[]`): no secret in it.
    if v.chars()
        .all(|c| matches!(c, 'x' | 'X') || !c.is_alphanumeric())
    {
        return false;
    }
    if v.len() >= 2 && v.starts_with('<') && v.ends_with('>') {
        return false;
    }
    let var = v
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| v.strip_prefix('$'));
    if var.is_some_and(|name| {
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }) {
        return false;
    }
    const NOT_SECRETS: &[&str] = &[
        "null",
        "none",
        "yes",
        "no",
        "on",
        "off",
        "read",
        "write",
        "nil",
        "undefined",
        "true",
        "false",
        "redacted",
        "[redacted]",
        "hidden",
        "[hidden]",
        "masked",
        "[masked]",
        "[filtered]",
    ];
    !NOT_SECRETS.iter().any(|w| v.eq_ignore_ascii_case(w))
}

/// A name that holds a secret, and the kind its value is reported as.
#[derive(Debug, Clone, Copy)]
struct SecretName {
    kind: &'static str,
    /// `pwd`, which is also the working directory (`PWD=/home/me`): paths are kept.
    is_pwd: bool,
}

impl SecretName {
    fn accepts(self, value: &str) -> bool {
        is_secret_value(value) && !(self.is_pwd && looks_like_path(value.trim()))
    }
}

/// True when a `name:` that follows `before` sits in a sentence rather than at the start of a
/// field: after a word and a space (`could not fetch token:`, `using password:`). At the
/// start of a line, after indentation, `- `, `> `, `{`, `,`, `;` or a quote it is a field.
fn in_prose(before: &str) -> bool {
    let trimmed = before.trim_end_matches([' ', '\t']);
    trimmed.len() < before.len()
        && trimmed
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == ')')
}

/// True for a value that looks generated rather than a word: it has a digit (and is not a
/// lone small number), or mixes case past a capital initial, or is long. What follows
/// `token:` in messages ("invalid_grant", "couldn't", "expired", "0") does not.
fn looks_random(v: &str) -> bool {
    let len = v.chars().count();
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let inner_upper = v.chars().skip(1).any(|c| c.is_uppercase());
    let has_lower = v.chars().any(|c| c.is_lowercase());
    (has_digit && len >= 4) || (inner_upper && has_lower) || len >= 16
}

/// A word as prose has it: lowercase letters, perhaps with a capital initial.
fn is_plain_word(v: &str) -> bool {
    let mut chars = v.chars();
    chars.next().is_some_and(char::is_alphabetic) && chars.all(char::is_lowercase)
}

fn looks_like_path(v: &str) -> bool {
    let b = v.as_bytes();
    v.starts_with('/')
        || v.starts_with('~')
        || (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
}

/// The kind of a value named `word` (one of [`SECRET_NAMES`], matched at the end of a name).
fn secret_name(word: &str) -> SecretName {
    let w = word.to_ascii_lowercase();
    let kind = if w.starts_with("pass") || w == "pwd" {
        "password"
    } else if w.starts_with("secret") {
        "secret"
    } else if w == "token" {
        "token"
    } else if w.starts_with("api") {
        "api-key"
    } else if w.starts_with("private") {
        "private-key"
    } else {
        "access-key"
    };
    SecretName {
        kind,
        is_pwd: w == "pwd",
    }
}

/// The secret kind held by a whole name (`DB_PASSWORD`, `client_secret`), if any.
fn classify_secret_name(name: &str) -> Option<SecretName> {
    let rules = &*RULES;
    if rules.aws_secret_name.is_match(name) {
        return Some(SecretName {
            kind: "aws-secret-access-key",
            is_pwd: false,
        });
    }
    let caps = rules.secret_name.captures(name)?;
    Some(secret_name(caps.name("key")?.as_str()))
}

/// What a field, header or flag name says about its value.
#[derive(Debug, Clone, Copy)]
enum NameClass {
    Secret(SecretName),
    Authorization,
    Cookie { set_cookie: bool },
}

fn classify_name(name: &str) -> Option<NameClass> {
    let n = name.trim();
    if n.eq_ignore_ascii_case("authorization") || n.eq_ignore_ascii_case("proxy-authorization") {
        Some(NameClass::Authorization)
    } else if n.eq_ignore_ascii_case("cookie") {
        Some(NameClass::Cookie { set_cookie: false })
    } else if n.eq_ignore_ascii_case("set-cookie") {
        Some(NameClass::Cookie { set_cookie: true })
    } else {
        classify_secret_name(n).map(NameClass::Secret)
    }
}

/// The redacted form of `value` when it is the value of a field named by `class`, or `None`
/// when nothing in it changes. The text rules run first, so a value that is one known secret
/// keeps its specific marker (`"token": "ghp_…"` → `[REDACTED:github-token]`) and the
/// decision is taken on what a second call would see (which makes callers idempotent).
fn redact_named_value(class: NameClass, value: &str) -> Option<String> {
    let text = redact(value);
    let named = match class {
        NameClass::Secret(name) => name.accepts(&text).then(|| marker(name.kind)),
        NameClass::Authorization => {
            let v = text.trim();
            let (scheme, credential) = match v.split_once(char::is_whitespace) {
                Some((s, c)) => (Some(s), c.trim()),
                None => (None, v),
            };
            is_secret_value(credential).then(|| {
                let m = marker("authorization");
                scheme.map_or_else(|| m.clone(), |s| format!("{s} {m}"))
            })
        }
        NameClass::Cookie { set_cookie } => {
            let mut out: Option<String> = None;
            let mut last = 0;
            let _ = cookie_values(&text, set_cookie, &mut |r| {
                let o = out.get_or_insert_with(String::new);
                o.push_str(&text[last..r.start]);
                push_marker(o, "cookie");
                last = r.end;
                ControlFlow::Continue(())
            });
            out.map(|mut o| {
                o.push_str(&text[last..]);
                o
            })
        }
    };
    match (named, text) {
        // What is kept (a scheme, cookie names) may hold a secret too.
        (Some(n), _) => Some(redact(&n).into_owned()),
        (None, Cow::Owned(t)) => Some(t),
        (None, Cow::Borrowed(_)) => None,
    }
}

/// Redacts every string inside a JSON value in place.
///
/// Strings go through [`redact`]. A value under a key that names a secret (`"password"`,
/// `"apiKey"`, `"Authorization"`, `"Cookie"`) is redacted as a whole, numbers included (a
/// numeric PIN is still a secret); so is `value` in a `{"name": "DB_PASSWORD", "value": …}`
/// pair (Kubernetes env, HAR headers). Keys go through [`redact`] too: a map keyed by token
/// or by a header line would otherwise keep the secret in its keys. Two keys that become
/// equal are kept apart with a `#2`, `#3`… suffix rather than one value being dropped.
pub fn redact_json(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            let pair_class = match (map.get("name"), map.get("value")) {
                (Some(Value::String(name)), Some(Value::String(_))) => classify_name(name),
                _ => None,
            };
            for (key, v) in map.iter_mut() {
                let class = classify_name(key).or(if key == "value" { pair_class } else { None });
                match (class, &mut *v) {
                    (Some(NameClass::Secret(name)), Value::Number(_)) => {
                        *v = Value::String(marker(name.kind));
                    }
                    (Some(class), Value::String(s)) => {
                        if let Some(r) = redact_named_value(class, s) {
                            *s = r;
                        }
                    }
                    _ => redact_json(v),
                }
            }
            if map.keys().any(|k| contains_secret(k)) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    let base = redact(&k).into_owned();
                    let mut key = base.clone();
                    let mut n = 2;
                    while map.contains_key(&key) {
                        key = format!("{base}#{n}");
                        n += 1;
                    }
                    map.insert(key, v);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// What the next argument is, after a flag that takes a secret as a separate argument.
#[derive(Debug, Clone, Copy)]
enum Pending {
    /// The whole argument is a secret of this kind (`--password VALUE`).
    Secret(&'static str),
    /// `user:password`: the part after the first colon (`curl -u`).
    UserPassword,
    /// An OpenSSL pass phrase argument: `pass:SECRET` (`env:`, `file:`, `fd:` are references).
    OpensslPass,
}

impl Pending {
    /// `arg` with the secret replaced; [`redact`] has been applied to it already.
    fn redact(self, arg: &str) -> String {
        match self {
            Pending::Secret(kind) if is_secret_value(arg) => marker(kind),
            Pending::Secret(_) => arg.to_owned(),
            Pending::UserPassword => redact_user_password(arg),
            Pending::OpensslPass => match arg.strip_prefix("pass:") {
                Some(p) if is_secret_value(p) => format!("pass:{}", marker("password")),
                _ => arg.to_owned(),
            },
        }
    }
}

/// `user:password` with the password replaced (the colon of a marker is not the separator).
fn redact_user_password(arg: &str) -> String {
    let colon = arg
        .match_indices(':')
        .map(|(i, _)| i)
        .find(|&i| !arg[..i].ends_with(&MARKER_PREFIX[..MARKER_PREFIX.len() - 1]));
    match colon.map(|i| (&arg[..i], &arg[i + 1..])) {
        Some((user, pw)) if is_secret_value(pw) => format!("{user}:{}", marker("password")),
        _ => arg.to_owned(),
    }
}

/// Programs whose short `-p` (or `-u`) flag carries a secret. In general `-p` is a port
/// (`ssh`), "preserve" (`cp`), "parents" (`mkdir`) or a profile, so it is only taken as a
/// password for these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Other,
    /// mysql and its tools: `-pSECRET` (attached; a bare `-p` prompts).
    Mysql,
    /// `sshpass -p SECRET`, until its command starts.
    Sshpass,
    /// A container tool; after `login`, `-p SECRET` is `--password`.
    Registry {
        login: bool,
    },
    /// `curl -u user:password` (also `-U`, `--user`, `--proxy-user`).
    Curl,
}

impl Program {
    /// The context after the positional argument `arg`.
    fn after_positional(self, arg: &str) -> Program {
        let base = arg.rsplit('/').next().unwrap_or(arg);
        match base {
            "mysql" | "mysqldump" | "mysqladmin" | "mysqlimport" | "mysqlshow" | "mysqlcheck"
            | "mariadb" | "mariadb-dump" | "mariadb-admin" => Program::Mysql,
            "sshpass" => Program::Sshpass,
            "docker" | "podman" | "nerdctl" | "buildah" | "skopeo" | "helm" | "oras" => {
                Program::Registry { login: false }
            }
            "curl" => Program::Curl,
            "login" if matches!(self, Program::Registry { .. }) => {
                Program::Registry { login: true }
            }
            // sshpass's options end where its command begins.
            _ if self == Program::Sshpass => Program::Other,
            _ => self,
        }
    }
}

/// Flag names that end like a secret name but switch something on (`--no-password`,
/// `gh auth login --with-token`): the next argument is not their value.
fn is_switch_name(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "no", "ask", "prompt", "with", "show", "print", "generate", "require", "skip", "read",
    ];
    let lower = name.to_ascii_lowercase();
    PREFIXES.iter().any(|p| {
        lower
            .strip_prefix(p)
            .is_some_and(|rest| rest.starts_with(['-', '_']))
    })
}

/// Redacts the values of environment-like key/value pairs and arguments of a command line.
///
/// Each argument goes through [`redact`] (headers, URLs with credentials, tokens). On top:
/// `NAME=VALUE` and `--name=VALUE` where the name holds a secret (`DB_PASSWORD=…`,
/// `--token=…`, `-Djavax.net.ssl.keyStorePassword=…`) have the whole value replaced, spaces
/// included; a flag named like a secret (`--password`, `-token`, `--api-key`,
/// `--client-secret`) has its next argument replaced, unless that argument is a long option
/// (`psql --password --host db`: `--password` there is a switch). Names ending otherwise are not
/// secrets: `--password-file PATH`, `--token-env VAR`, `--max-tokens 512`. Switch-like names
/// (`--no-password`, `--with-token`, `--ask-password`) take no value.
///
/// A short `-p` is not a password in general (`ssh -p 22`, `mkdir -p`, `cp -p`); it is one
/// only for mysql tools (`-pSECRET`), `sshpass -p SECRET` and `docker|podman|helm … login
/// -p SECRET`. `curl -u|--user user:password` keeps the user, and OpenSSL's `-passin
/// pass:SECRET` keeps `pass:`. The result has one element per argument.
pub fn redact_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut pending: Option<Pending> = None;
    let mut program = Program::Other;
    for arg in args {
        if let Some(p) = pending.take() {
            let is_long_option = arg
                .strip_prefix("--")
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphabetic()));
            if !is_long_option {
                // Decided on the text-redacted argument, as a second call would see it.
                out.push(redact(&p.redact(&redact(arg))).into_owned());
                continue;
            }
        }
        let (redacted, next) = match arg.strip_prefix('-') {
            Some(flag) if !flag.is_empty() && flag != "-" => redact_flag(arg, program),
            _ => {
                program = program.after_positional(arg);
                (redact_assignment(arg), None)
            }
        };
        pending = next;
        // Also what a flag rule kept (its name) goes through the text rules.
        out.push(redact(redacted.as_deref().unwrap_or(arg)).into_owned());
    }
    out
}

/// `NAME=VALUE` with a secret name: the value replaced.
fn redact_assignment(arg: &str) -> Option<String> {
    let (name, value) = arg.split_once('=')?;
    let is_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !is_name {
        return None;
    }
    let v = redact_named_value(classify_name(name)?, value)?;
    Some(format!("{name}={v}"))
}

/// One argument that starts with `-`: its redacted form (`None`: only [`redact`] applies) and
/// what the next argument is.
fn redact_flag(arg: &str, program: Program) -> (Option<String>, Option<Pending>) {
    // An attached value (`-pVALUE`), text-redacted: decisions are taken on what a second call
    // would see.
    let short_value = |flag: char| -> Option<Cow<'_, str>> {
        let rest = arg.strip_prefix('-')?.strip_prefix(flag)?;
        (!arg.starts_with("--")).then(|| redact(rest))
    };
    match program {
        Program::Mysql => {
            if short_value('p').is_some_and(|pw| is_secret_value(&pw)) {
                return (Some(format!("-p{}", marker("password"))), None);
            }
        }
        Program::Sshpass | Program::Registry { login: true } => match short_value('p') {
            Some(pw) if pw.is_empty() => return (None, Some(Pending::Secret("password"))),
            Some(pw) if is_secret_value(&pw) => {
                return (Some(format!("-p{}", marker("password"))), None)
            }
            _ => {}
        },
        Program::Curl => {
            if arg == "--user" || arg == "--proxy-user" {
                return (None, Some(Pending::UserPassword));
            }
            if let Some(v) = arg
                .strip_prefix("--user=")
                .or_else(|| arg.strip_prefix("--proxy-user="))
            {
                let name = &arg[..arg.len() - v.len()];
                let v = redact_user_password(&redact(v));
                return (Some(format!("{name}{v}")), None);
            }
            for flag in ['u', 'U'] {
                match short_value(flag) {
                    Some(v) if v.is_empty() => return (None, Some(Pending::UserPassword)),
                    Some(v) => {
                        let v = redact_user_password(&v);
                        return (Some(format!("-{flag}{v}")), None);
                    }
                    None => {}
                }
            }
        }
        Program::Other | Program::Registry { login: false } => {}
    }
    let name = arg.trim_start_matches('-');
    if let Some((n, value)) = name.split_once('=') {
        let redacted = classify_name(n).and_then(|class| redact_named_value(class, value));
        let prefix = &arg[..arg.len() - value.len()];
        return (redacted.map(|v| format!("{prefix}{v}")), None);
    }
    if matches!(name, "passin" | "passout" | "pass") && !arg.starts_with("--") {
        return (None, Some(Pending::OpensslPass));
    }
    // A single letter is never a name (`-p`, `-t`): see the doc of `redact_args`.
    if name.chars().count() < 2 || is_switch_name(name) {
        return (None, None);
    }
    match classify_name(name) {
        Some(NameClass::Secret(n)) => (None, Some(Pending::Secret(n.kind))),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests;
