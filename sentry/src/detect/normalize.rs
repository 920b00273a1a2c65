//! The normaliser: turns one line of text into a *template* in which the parts that change
//! from one occurrence of "the same" line to the next (numbers, ids, timestamps, addresses,
//! paths, quoted values…) are replaced by typed placeholders such as `<int>` or `<ts>`, and
//! extracts those values with their placeholder slot so the loop detector can tell a counter
//! that advances from one that does not.
//!
//! It is a hand-written single-pass tokenizer over the line's bytes (no regex engine): a line
//! costs a few hundred nanoseconds. Guarantees, checked by property tests: it never panics on
//! any input, it is deterministic, and it is idempotent (normalising a template yields the
//! same template), so templates can be stored and compared later.
//!
//! Recognised, in this order of precedence at a token boundary: quoted strings (`<str>`; a
//! quoted text containing spaces or a digit keeps its quotes and is normalised inside, so a
//! quoted timestamp or UUID is typed as one; a JSON key stays literal), URLs (`<url>`), syslog timestamps (`Nov 25 04:52:01` → `<ts>`), UUIDs (`<uuid>`),
//! ISO 8601 / RFC 3339 timestamps and dates (`<ts>`, `<date>`), access-log timestamps
//! (`10/Oct/2000:13:55:36 -0700` → `<ts>`), times of day (`12:01:02.345` → `<time>`), IPv4
//! and IPv6 addresses with optional port (`<ip>`), `0x` numbers (`<hex>`, or `<addr>` from
//! 8 digits on), bare hex strings of 6+ characters mixing digits and letters (`<hex>`), paths
//! (`<path>`), durations (`12ms`, `1.5s`, `3m20s` → `<dur>`), versions (`1.2.3` → `<ver>`),
//! floats (`<float>`), integers (`<int>`; epoch-like long integers are integers too), the
//! numeric tail of an identifier (`worker12` → `worker<int>`) and long random identifiers
//! mixing letters and digits (`<id>`).

use std::fmt;

/// The kind of a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    /// An integer (`42`, `1700000000`).
    Int,
    /// A decimal or exponent number (`0.25`, `1e-5`).
    Float,
    /// A hexadecimal value (`0x1f`, `deadbeef42`).
    Hex,
    /// A memory address (`0x7ffd5e8c1a20`).
    Addr,
    /// A UUID.
    Uuid,
    /// A date with a time of day.
    Timestamp,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// An IPv4 or IPv6 address, with its port if any.
    Ip,
    /// A file system path.
    Path,
    /// A URL.
    Url,
    /// A duration with its unit.
    Duration,
    /// A quoted single-token string.
    Quoted,
    /// A long random identifier mixing letters and digits.
    Id,
    /// A dotted version number.
    Version,
}

impl Placeholder {
    /// The text that stands for this placeholder in a template.
    pub fn token(self) -> &'static str {
        match self {
            Placeholder::Int => "<int>",
            Placeholder::Float => "<float>",
            Placeholder::Hex => "<hex>",
            Placeholder::Addr => "<addr>",
            Placeholder::Uuid => "<uuid>",
            Placeholder::Timestamp => "<ts>",
            Placeholder::Date => "<date>",
            Placeholder::Time => "<time>",
            Placeholder::Ip => "<ip>",
            Placeholder::Path => "<path>",
            Placeholder::Url => "<url>",
            Placeholder::Duration => "<dur>",
            Placeholder::Quoted => "<str>",
            Placeholder::Id => "<id>",
            Placeholder::Version => "<ver>",
        }
    }

    /// Values of this kind change on every line of a real loop (clocks, random ids,
    /// addresses, timings), so a new one is no sign of progress.
    pub fn is_volatile(self) -> bool {
        matches!(
            self,
            Placeholder::Hex
                | Placeholder::Addr
                | Placeholder::Uuid
                | Placeholder::Timestamp
                | Placeholder::Date
                | Placeholder::Time
                | Placeholder::Ip
                | Placeholder::Duration
                | Placeholder::Id
        )
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// What the word before a value says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Nothing known.
    Plain,
    /// A progress counter: after `epoch`, `step`, `page`…, the `n` of `n/m`, or a percentage.
    Counter,
    /// Changes by itself: after `pid`, `port`, `id`, `attempt`, `took`…
    Volatile,
}

/// One extracted value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value {
    /// Index of its placeholder among the template's placeholders.
    pub slot: u16,
    /// Its kind.
    pub kind: Placeholder,
    /// Byte range in the original line.
    pub start: u32,
    /// End of the byte range (exclusive).
    pub end: u32,
    /// Numeric reading: the number itself, seconds for durations, seconds since an
    /// arbitrary epoch for timestamps and times of day; `None` when it has none.
    pub num: Option<f64>,
    /// What the surrounding words say about it.
    pub role: Role,
}

impl Value {
    /// The value's text in `line` (the line it was extracted from).
    pub fn text<'a>(&self, line: &'a str) -> &'a str {
        line.get(self.start as usize..self.end as usize)
            .unwrap_or("")
    }
}

/// Keywords found in the line's literal words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals {
    /// An error word: error, exception, traceback, failed, fatal, panic, refused, denied,
    /// a crash signal (SIGSEGV)…
    pub error: bool,
    /// A retry word: retry, retrying, reconnecting, backoff, attempt…
    pub retry: bool,
    /// A progress word: epoch, step, progress, downloaded, processed, completed…
    pub progress: bool,
    /// A word announcing a deliberate pause: sleep, sleeping, waiting, backoff…
    pub sleep: bool,
}

/// A normalised line.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    /// The template text.
    pub template: String,
    /// A 64-bit hash of `template`, for fast comparison.
    pub hash: u64,
    /// The values replaced by placeholders, in order.
    pub values: Vec<Value>,
    /// Keywords found in the literal parts.
    pub signals: Signals,
    /// Scratch buffers, kept so that normalising into a reused value allocates nothing.
    scratch: Scratch,
}

/// Buffers of [`Normalized`] that are not part of the result.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// The comparison shape of the template (see `shape_hash`).
    shape: String,
    /// The template and values of a further pass over a template that kept a quote.
    template: String,
    values: Vec<Value>,
    /// Recent further-pass results, [`REPASS_SLOTS`] of them once used.
    repassed: Vec<Repassed>,
}

/// Slots of the cache of further passes, chosen by the first-pass template's hash.
const REPASS_SLOTS: usize = 64;

/// Longest first-pass template cached (longer ones are passed over every time), which bounds
/// the cache at a few tens of KiB.
const REPASS_MAX_BYTES: usize = 512;

/// The further passes over one first-pass template: a pure function of that text, and a log
/// repeats its templates (a JSON log keeps quoted keys on every line), so it is remembered.
#[derive(Debug, Clone, Default)]
struct Repassed {
    first: String,
    /// The template the passes end at, and its comparison hash.
    last: String,
    hash: u64,
}

/// Two normalisations are equal when their results are; scratch buffers do not count.
impl PartialEq for Normalized {
    fn eq(&self, other: &Self) -> bool {
        self.template == other.template
            && self.hash == other.hash
            && self.values == other.values
            && self.signals == other.signals
    }
}

/// Normalises one line into a fresh [`Normalized`].
pub fn normalize(line: &str) -> Normalized {
    let mut out = Normalized::default();
    normalize_into(line, &mut out);
    out
}

/// Normalises one line into `out`, reusing its buffers (no allocation once they are warm).
pub fn normalize_into(line: &str, out: &mut Normalized) {
    out.template.clear();
    out.values.clear();
    let mut t = Tokenizer::new(line, &mut out.template, &mut out.values);
    t.run();
    out.signals = t.signals;
    // What the template holds, from the pass that produced it: its literal parts are the
    // only source of quote characters, and of a `<` that is not one of our placeholders.
    let mut literals = t.literals;
    let mut id_tokens = t.id_tokens;
    let Scratch {
        shape,
        template: again_template,
        values: again_values,
        repassed,
    } = &mut out.scratch;
    if literals & QUOTE == 0 {
        out.hash = comparison_hash(&out.template, literals, id_tokens, shape);
        return;
    }
    // Quote pairing can depend on what was inside the quotes, so a template that kept a
    // quote character may pair differently once normalised. Each further pass only consumes
    // quotes, so iterating reaches a fixed point quickly; ordinary lines need no extra pass.
    // Values and signals stay those of the first pass (they index the original line).
    if repassed.is_empty() {
        repassed.resize_with(REPASS_SLOTS, Repassed::default);
    }
    let cached = &mut repassed[template_hash(out.template.as_bytes()) as usize % REPASS_SLOTS];
    if cached.first == out.template {
        out.template.clone_from(&cached.last);
        out.hash = cached.hash;
        return;
    }
    let cacheable = out.template.len() <= REPASS_MAX_BYTES;
    if cacheable {
        cached.first.clone_from(&out.template);
    }
    let mut passes = 0;
    while passes < 16 && literals & QUOTE != 0 {
        passes += 1;
        again_template.clear();
        again_values.clear();
        let mut t = Tokenizer::new(&out.template, again_template, again_values);
        t.run();
        literals = t.literals;
        id_tokens = t.id_tokens;
        if *again_template == out.template {
            break;
        }
        std::mem::swap(&mut out.template, again_template);
    }
    out.hash = comparison_hash(&out.template, literals, id_tokens, shape);
    if cacheable {
        cached.last.clone_from(&out.template);
        cached.hash = out.hash;
    }
}

/// The comparison hash of `template`, given the [`CLASS`] bits of its literal parts and
/// whether an id placeholder was emitted.
fn comparison_hash(template: &str, literals: u8, id_tokens: bool, shape: &mut String) -> u64 {
    if literals & LT == 0 && !id_tokens {
        // No `<hex>` or `<id>` anywhere: the shape is the template itself.
        shape.clear();
        template_hash(template.as_bytes())
    } else {
        shape_hash(template, shape)
    }
}

/// The comparison hash of a template. One id field is typed by the characters it happens to
/// have (`tid=8367` is `<int>`, `tid=d880` `<hex>`, a longer token `<id>`), so lines of one
/// loop would differ by type alone; the three are one class here, while the template text
/// keeps the precise type for display.
fn shape_hash(template: &str, shape: &mut String) -> u64 {
    const ID_TOKENS: [&str; 2] = ["<hex>", "<id>"];
    let mut last = 0;
    shape.clear();
    for (at, _) in template.match_indices('<') {
        if at < last {
            continue;
        }
        if let Some(token) = ID_TOKENS.iter().find(|t| template[at..].starts_with(**t)) {
            shape.push_str(&template[last..at]);
            shape.push_str("<int>");
            last = at + token.len();
        }
    }
    if last == 0 {
        return template_hash(template.as_bytes());
    }
    shape.push_str(&template[last..]);
    template_hash(shape.as_bytes())
}

/// The hash used for templates (stable across runs and platforms).
pub fn template_hash(bytes: &[u8]) -> u64 {
    /// One step per 8 bytes. The xor-shift folds high bits back down: a multiply alone
    /// only carries differences upwards, and paths differing in two adjacent words then
    /// collided (found by the loop detector's listing test).
    #[inline]
    fn mix(h: u64, w: u64) -> u64 {
        let h = (h ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
        h ^ (h >> 29)
    }
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // The last bytes, zero-padded, little-endian (assembled by hand: a copy of a
        // variable length would be a call to `memcpy`, and values are short).
        let w = rest
            .iter()
            .rev()
            .fold(0u64, |w, &c| (w << 8) | u64::from(c));
        h = mix(h, w);
    }
    // Final avalanche so that low bits are usable for bucketing.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Byte classes, one bit each in [`CLASS`]: the tokenizer asks these questions of nearly
/// every byte, and one table lookup answers any of them.
const WORD: u8 = 1;
const HEX: u8 = 2;
const PATH: u8 = 4;
const ALPHA: u8 = 8;
/// A quote character: `"`, `'` or a backquote.
const QUOTE: u8 = 16;
/// `<`, which starts every placeholder.
const LT: u8 = 32;
const DIGIT: u8 = 64;
/// A byte after which no token starts: a word byte, or the `>` closing a placeholder.
const NO_BOUNDARY: u8 = 128;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut f = 0;
        if c.is_ascii_alphanumeric() || c == b'_' {
            f |= WORD | PATH;
        }
        if c.is_ascii_hexdigit() {
            f |= HEX;
        }
        if matches!(c, b'.' | b'-' | b'/' | b'~' | b'+' | b'@' | b'%') {
            f |= PATH;
        }
        if c.is_ascii_alphabetic() {
            f |= ALPHA;
        }
        if matches!(c, b'"' | b'\'' | b'`') {
            f |= QUOTE;
        }
        if c == b'<' {
            f |= LT;
        }
        if c.is_ascii_digit() {
            f |= DIGIT;
        }
        if f & WORD != 0 || c == b'>' {
            f |= NO_BOUNDARY;
        }
        t[i] = f;
        i += 1;
    }
    t
};

#[inline]
fn class(c: u8) -> u8 {
    CLASS[usize::from(c)]
}

#[inline]
fn is_word(c: u8) -> bool {
    class(c) & WORD != 0
}

#[inline]
fn is_hex(c: u8) -> bool {
    class(c) & HEX != 0
}

#[inline]
fn is_path_char(c: u8) -> bool {
    class(c) & PATH != 0
}

/// End of the run of word bytes starting at `i`.
#[inline]
fn word_end(b: &[u8], i: usize) -> usize {
    i + b[i..].iter().take_while(|&&c| is_word(c)).count()
}

/// End of the run of word bytes starting at `i`, and how many of them are digits.
#[inline]
fn word_span(b: &[u8], i: usize) -> (usize, usize) {
    let mut e = i;
    let mut digits = 0;
    while e < b.len() {
        let c = class(b[e]);
        if c & WORD == 0 {
            break;
        }
        digits += usize::from(c & DIGIT != 0);
        e += 1;
    }
    (e, digits)
}

fn digits_at(b: &[u8], i: usize) -> usize {
    b.get(i..)
        .map(|r| r.iter().take_while(|c| c.is_ascii_digit()).count())
        .unwrap_or(0)
}

fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// True when the word at `i..we` is counted as zero: followed by `=0` or `: 0` that ends the
/// field (`failed=0 skipped=0`, `errors: 0,`), or preceded by a standalone `0 ` (`0
/// failed`). A `0` must stand alone (not `10`, `0.5`, `0x1f`), and `Error: 0 bytes written`
/// is a message, not a tally: after the zero comes the end, punctuation or the next key.
fn zero_tally(b: &[u8], i: usize, we: usize) -> bool {
    let lone_zero_at = |z: usize| {
        byte(b, z) == b'0'
            && !is_word(byte(b, z + 1))
            && byte(b, z + 1) != b'.'
            && (z == 0 || !(is_word(b[z - 1]) || b[z - 1] == b'.'))
    };
    let ends_field = |mut k: usize| {
        while byte(b, k) == b' ' || byte(b, k) == b'\t' {
            k += 1;
        }
        if !byte(b, k).is_ascii_alphabetic() {
            return true;
        }
        while is_word(byte(b, k)) {
            k += 1;
        }
        matches!(byte(b, k), b'=' | b':')
    };
    let mut j = we;
    if matches!(byte(b, j), b'=' | b':') {
        j += 1;
        while byte(b, j) == b' ' {
            j += 1;
        }
        if lone_zero_at(j) && ends_field(j + 1) {
            return true;
        }
    }
    // `0 failed`, but not `unreachable=0 failed=1`: there the zero belongs to the key before.
    j == we
        && i >= 2
        && b[i - 1] == b' '
        && lone_zero_at(i - 2)
        && (i == 2 || !matches!(b[i - 3], b'=' | b':'))
}

/// Parses exactly `n` digits at `i`.
fn fixed_num(b: &[u8], i: usize, n: usize) -> Option<u32> {
    let r = b.get(i..i + n)?;
    let mut v = 0u32;
    for &c in r {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn month_from_name(w: &[u8]) -> Option<u32> {
    if w.len() != 3 {
        return None;
    }
    let l = [
        w[0].to_ascii_lowercase(),
        w[1].to_ascii_lowercase(),
        w[2].to_ascii_lowercase(),
    ];
    let m = match &l {
        b"jan" => 1,
        b"feb" => 2,
        b"mar" => 3,
        b"apr" => 4,
        b"may" => 5,
        b"jun" => 6,
        b"jul" => 7,
        b"aug" => 8,
        b"sep" => 9,
        b"oct" => 10,
        b"nov" => 11,
        b"dec" => 12,
        _ => return None,
    };
    Some(m)
}

/// `HH:MM:SS` with optional `.fff`/`,fff` at `i`: (end, seconds of day).
fn time_of_day(b: &[u8], i: usize) -> Option<(usize, f64)> {
    // `9:21:36` (12-hour clocks) as well as `09:21:36`.
    let hd = if byte(b, i + 1) == b':' { 1 } else { 2 };
    let h = fixed_num(b, i, hd)?;
    let c = i + hd;
    if byte(b, c) != b':' {
        return None;
    }
    let m = fixed_num(b, c + 1, 2)?;
    if byte(b, c + 3) != b':' {
        return None;
    }
    let s = fixed_num(b, c + 4, 2)?;
    if h > 24 || m > 59 || s > 60 {
        return None;
    }
    let mut end = c + 6;
    let mut secs = f64::from(h * 3600 + m * 60 + s);
    if matches!(byte(b, end), b'.' | b',') {
        let n = digits_at(b, end + 1);
        if n > 0 {
            let frac = &b[end + 1..end + 1 + n.min(9)];
            let mut f = 0.0;
            let mut scale = 0.1;
            for &c in frac {
                f += f64::from(c - b'0') * scale;
                scale /= 10.0;
            }
            secs += f;
            end += 1 + n;
        }
    }
    Some((end, secs))
}

/// Timezone suffix `Z`, `+HH:MM`, `+HHMM`, `+HH` at `i`: end.
fn timezone(b: &[u8], i: usize) -> usize {
    match byte(b, i) {
        b'Z' | b'z' => i + 1,
        b'+' | b'-' => {
            if fixed_num(b, i + 1, 2).is_none() {
                return i;
            }
            if byte(b, i + 3) == b':' && fixed_num(b, i + 4, 2).is_some() {
                i + 6
            } else if fixed_num(b, i + 3, 2).is_some() {
                i + 5
            } else {
                i + 3
            }
        }
        _ => i,
    }
}

fn is_duration_unit(u: &[u8]) -> Option<f64> {
    Some(match u {
        b"ns" => 1e-9,
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1e-6,
        b"ms" => 1e-3,
        b"s" | b"sec" | b"secs" => 1.0,
        b"m" | b"min" | b"mins" => 60.0,
        b"h" | b"hr" | b"hrs" => 3600.0,
        b"d" => 86400.0,
        _ => return None,
    })
}

/// Seconds per unit for a duration unit written as a separate word (`376 ms`). (`number`
/// looks here only after a word starting with the first letter of one of them.)
fn spelled_duration_unit(u: &[u8]) -> Option<f64> {
    Some(match u {
        b"ns" => 1e-9,
        b"us" => 1e-6,
        b"ms" => 1e-3,
        b"sec" | b"secs" | b"second" | b"seconds" => 1.0,
        b"min" | b"mins" | b"minute" | b"minutes" => 60.0,
        b"hour" | b"hours" => 3600.0,
        _ => return None,
    })
}

/// True when `text` (a quoted value, path or URL) contains an id-like token: a hex run of
/// 6+ characters mixing digits and letters (hashes, UUID parts, build ids) or a token of
/// 6+ characters alternating letters and digits at least three times (`tmpa8f3k2x9`,
/// random names). Such values are new on every line of a real loop (a fresh temp dir, a
/// content hash in a file name), so they are volatile, not signs of new work; a name with a
/// number at its end (`report2024`, `part-00037`) is not id-like.
pub fn is_id_like(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // One alphanumeric segment per turn, measured in a single pass.
        let mut len = 0;
        let mut digits = 0;
        let mut hex = true;
        let mut switches = 0;
        let mut prev_digit = false;
        while i < b.len() {
            let c = class(b[i]);
            if c & (ALPHA | DIGIT) == 0 {
                break;
            }
            let digit = c & DIGIT != 0;
            switches += usize::from(len > 0 && digit != prev_digit);
            prev_digit = digit;
            digits += usize::from(digit);
            hex &= c & HEX != 0;
            len += 1;
            i += 1;
        }
        if len >= 6 && digits > 0 && digits < len && (hex || switches >= 3) {
            return true;
        }
        i += 1;
    }
    false
}

/// True when `text` (a file name, path or quoted value) embeds a date *and* a time of day:
/// `2025-11-20T09_15_23_164Z-debug.log`, `core.20251120-091523`, `"run 2025-11-20 09:15"`.
/// A name stamped to the minute is minted by the clock on every run (a debug log, a crash
/// dump, a report), so its novelty says nothing about work. A bare date
/// (`app-2025-11-20.log`) is not matched: a listing of daily files is a listing of new files.
pub fn embeds_clock_time(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| (i == 0 || !b[i - 1].is_ascii_digit()) && clock_time_at(&b[i..]))
}

/// Matches `YYYY[sep]MM[sep]DD{T|sep}hh[sep]mm` at the start of `b`, where a separator is
/// one of `-_.:` or nothing, and the fields are in calendar and clock range.
fn clock_time_at(b: &[u8]) -> bool {
    let mut i = 0;
    let mut field = |width: usize, lo: u32, hi: u32, sep_before: bool, t_ok: bool| -> bool {
        if sep_before
            && i < b.len()
            && (matches!(b[i], b'-' | b'_' | b'.' | b':')
                || (t_ok && matches!(b[i], b'T' | b't' | b' ')))
        {
            i += 1;
        }
        let digits = b.get(i..i + width);
        let Some(d) = digits.filter(|d| d.iter().all(u8::is_ascii_digit)) else {
            return false;
        };
        let n = d
            .iter()
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
        i += width;
        (lo..=hi).contains(&n)
    };
    field(4, 1970, 2099, false, false)
        && field(2, 1, 12, true, false)
        && field(2, 1, 31, true, false)
        && field(2, 0, 23, true, true)
        && field(2, 0, 59, true, false)
}

/// What a keyword among a line's literal words says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    /// Something failed ([`Signals::error`]).
    Error,
    /// A retry ([`Signals::retry`]); the value after it changes by itself.
    Retry,
    /// A deliberate pause ([`Signals::sleep`]); the value after it changes by itself.
    Sleep,
    /// Work advancing ([`Signals::progress`]); the value after it is a counter.
    Progress,
    /// Names a value that changes by itself.
    Volatile,
}

/// The keywords, lower case, by what they say.
const KEYWORDS: [(&[&str], Keyword); 5] = [
    (
        &[
            "error",
            "errors",
            "err",
            "exception",
            "traceback",
            "fatal",
            "panic",
            "panicked",
            "failed",
            "failure",
            "fail",
            "fails",
            "refused",
            "denied",
            "timeout",
            "crash",
            "crashed",
            "abort",
            "aborted",
            "aborting",
            "unreachable",
            "econnrefused",
            "enoent",
            "critical",
            "stacktrace",
            "unhandled",
            "unavailable",
            "exceeded",
            "segfault",
            "killed",
            // The signals a crash ends a process with (a bad memory access, an illegal
            // instruction, `abort()`): `exited on signal 11 (SIGSEGV - core dumped)` and
            // `Segmentation fault` report a crash whatever the log level says, unlike
            // SIGTERM or SIGHUP, which are how a process is asked to stop or reload.
            "sigsegv",
            "sigbus",
            "sigill",
            "sigfpe",
            "sigabrt",
            "segmentation",
        ],
        Keyword::Error,
    ),
    (
        &[
            "retry",
            "retrying",
            "retries",
            "reconnect",
            "reconnecting",
            "attempt",
            "attempts",
            "restarting",
            "respawning",
        ],
        Keyword::Retry,
    ),
    (
        &[
            "sleep", "sleeping", "sleeps", "waiting", "wait", "backoff", "pausing",
        ],
        Keyword::Sleep,
    ),
    (
        &[
            "epoch",
            "step",
            "steps",
            "iter",
            "iteration",
            "batch",
            "page",
            "chunk",
            "part",
            "progress",
            "processed",
            "downloaded",
            "uploaded",
            "completed",
            "complete",
            "done",
            "row",
            "rows",
            "record",
            "records",
            "item",
            "items",
            "shard",
            "block",
            "frame",
            "episode",
            "sample",
            "samples",
            "offset",
            "building",
            "compiling",
            "test",
            "tests",
            "file",
            "files",
        ],
        Keyword::Progress,
    ),
    (
        &[
            "pid",
            "ppid",
            "tid",
            "thread",
            "port",
            "id",
            "req",
            "request",
            "ts",
            "time",
            "timestamp",
            "seq",
            "elapsed",
            "took",
            "latency",
            "duration",
            "try",
            "uptime",
            "worker",
            "conn",
            "session",
        ],
        Keyword::Volatile,
    ),
];

/// Words outside this length range are never keywords.
const KEYWORD_LEN: std::ops::RangeInclusive<usize> = 2..=12;

/// Slots of [`KEYWORD_TABLE`]: a power of two, well above the number of keywords, so that a
/// lookup nearly always ends at its first slot.
const KEYWORD_SLOTS: usize = 256;

/// A word of at most 15 bytes, lower-cased, as two numbers: its first eight bytes, then the
/// others with its length in the top byte.
const fn keyword_key(w: &[u8]) -> (u64, u64) {
    let mut lo = 0;
    let mut hi = (w.len() as u64) << 56;
    let mut i = 0;
    while i < w.len() {
        let c = w[i].to_ascii_lowercase() as u64;
        if i < 8 {
            lo |= c << (8 * i);
        } else {
            hi |= c << (8 * (i - 8));
        }
        i += 1;
    }
    (lo, hi)
}

const fn keyword_slot((lo, hi): (u64, u64)) -> usize {
    ((lo ^ hi.rotate_left(31)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % KEYWORD_SLOTS
}

/// [`KEYWORDS`] as an open-addressing hash table, built at compile time: one lookup per
/// literal word instead of a cascade of string comparisons.
static KEYWORD_TABLE: [((u64, u64), Option<Keyword>); KEYWORD_SLOTS] = {
    let mut table = [((0, 0), None); KEYWORD_SLOTS];
    let mut g = 0;
    while g < KEYWORDS.len() {
        let (words, kind) = KEYWORDS[g];
        let mut w = 0;
        while w < words.len() {
            let word = words[w].as_bytes();
            assert!(
                word.len() >= *KEYWORD_LEN.start() && word.len() <= *KEYWORD_LEN.end(),
                "a keyword is outside KEYWORD_LEN"
            );
            let key = keyword_key(word);
            let mut slot = keyword_slot(key);
            while let (k, Some(_)) = table[slot] {
                assert!(k.0 != key.0 || k.1 != key.1, "a keyword is listed twice");
                slot = (slot + 1) % KEYWORD_SLOTS;
            }
            table[slot] = (key, Some(kind));
            w += 1;
        }
        g += 1;
    }
    table
};

/// The keyword `w` is, in any letter case.
fn keyword(w: &[u8]) -> Option<Keyword> {
    if !KEYWORD_LEN.contains(&w.len()) {
        return None;
    }
    let key = keyword_key(w);
    let mut slot = keyword_slot(key);
    loop {
        match KEYWORD_TABLE[slot] {
            (_, None) => return None,
            (k, Some(kind)) if k == key => return Some(kind),
            _ => slot = (slot + 1) % KEYWORD_SLOTS,
        }
    }
}

/// Classifies a literal word: sets the signal it carries, returns the role it gives the
/// value after it.
fn keyword_signals(w: &[u8], sig: &mut Signals) -> Role {
    match keyword(w) {
        Some(Keyword::Error) => {
            sig.error = true;
            Role::Plain
        }
        Some(Keyword::Retry) => {
            sig.retry = true;
            Role::Volatile
        }
        Some(Keyword::Sleep) => {
            sig.sleep = true;
            Role::Volatile
        }
        Some(Keyword::Progress) => {
            sig.progress = true;
            Role::Counter
        }
        Some(Keyword::Volatile) => Role::Volatile,
        None => Role::Plain,
    }
}

struct Tokenizer<'a, 'o> {
    s: &'a str,
    b: &'a [u8],
    template: &'o mut String,
    values: &'o mut Vec<Value>,
    signals: Signals,
    /// Start of the literal text not yet copied to the template.
    lit_start: usize,
    /// Role suggested by the latest literal word, for the value that follows it.
    ctx: Role,
    /// Position of the closing quote of a quoted text kept literal.
    literal_quote_close: Option<usize>,
    /// The [`CLASS`] bits of every byte copied to the template as literal text.
    literals: u8,
    /// A `<hex>` or `<id>` placeholder was emitted.
    id_tokens: bool,
}

impl<'a, 'o> Tokenizer<'a, 'o> {
    fn new(s: &'a str, template: &'o mut String, values: &'o mut Vec<Value>) -> Self {
        Tokenizer {
            s,
            b: s.as_bytes(),
            template,
            values,
            signals: Signals::default(),
            lit_start: 0,
            ctx: Role::Plain,
            literal_quote_close: None,
            literals: 0,
            id_tokens: false,
        }
    }

    fn run(&mut self) {
        let b = self.b;
        let n = b.len();
        let mut i = 0;
        while i < n {
            let c = b[i];
            // `>` counts as part of a word: a template's placeholder (`<int>`) must stop
            // what follows exactly as the word it replaced did, or normalising a template
            // would change it.
            let boundary = i == 0 || class(b[i - 1]) & NO_BOUNDARY == 0;
            if !boundary || c == b' ' {
                i += 1;
                continue;
            }
            i = self.token_at(i);
        }
        self.flush_literal(n);
    }

    /// Handles whatever starts at the boundary `i`; returns where scanning resumes.
    fn token_at(&mut self, i: usize) -> usize {
        let b = self.b;
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            return self.quoted(i);
        }
        if c == b'[' {
            if let Some(end) = ipv6(b, i + 1).filter(|&e| byte(b, e) == b']') {
                let mut end = end + 1;
                end = port(b, end);
                return self.emit(i, end, Placeholder::Ip, None);
            }
            return i + 1;
        }
        if c == b'/' || c == b'.' || c == b'~' {
            if let Some(end) = path(b, i) {
                return self.emit(i, end, Placeholder::Path, None);
            }
            return i + 1;
        }
        if c.is_ascii_digit() {
            return self.digit_token(i);
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            return self.letter_token(i);
        }
        i + 1
    }

    fn quoted(&mut self, i: usize) -> usize {
        let b = self.b;
        let q = b[i];
        if self.literal_quote_close == Some(i) {
            self.literal_quote_close = None;
            return i + 1;
        }
        // An apostrophe inside a word ("don't") or an escaped quote is not a string.
        if i > 0 && (b[i - 1] == b'\\' || (q != b'"' && is_word(b[i - 1]))) {
            return i + 1;
        }
        let mut j = i + 1;
        let mut space = false;
        let close = loop {
            match b.get(j) {
                None => return i + 1,
                Some(&c) if c == q => break j,
                Some(b'\\') => j += 2,
                Some(&c) => {
                    if c == b' ' || c == b'\t' {
                        space = true;
                    }
                    j += 1;
                }
            }
        };
        // `'` followed by a word is an apostrophe (`'tis`); `<` may be a placeholder that
        // replaced a word.
        if q == b'\'' && matches!(byte(self.b, close + 1), c if is_word(c) || c == b'<') {
            return i + 1;
        }
        if space {
            // Prose in quotes: keep the quotes, normalise what is inside.
            self.literal_quote_close = Some(close);
            return i + 1;
        }
        let mut k = close + 1;
        while byte(b, k) == b' ' {
            k += 1;
        }
        if byte(b, k) == b':' && q == b'"' {
            // A JSON key names a field; it is structure, not a value.
            self.note_word(&b[i + 1..close]);
            return close + 1;
        }
        // A value with a digit in it is typed by its content (`"2024-05-01T10:00:00Z"` is a
        // timestamp, `"f47ac10b-…"` a UUID, `"42"` an int): structured logs quote every
        // value, and one opaque `<str>` would hide clocks and ids behind "a new value".
        // Quotes around a placeholder (a template being normalised again) stay too.
        let inner = &b[i + 1..close];
        if inner.iter().any(|&c| c.is_ascii_digit() || c == b'<') {
            self.literal_quote_close = Some(close);
            return i + 1;
        }
        self.emit(i, close + 1, Placeholder::Quoted, None)
    }

    fn letter_token(&mut self, i: usize) -> usize {
        let b = self.b;
        let (we, digits) = word_span(b, i);
        let word = &b[i..we];
        // URL: scheme://…
        if b.get(we..we + 3) == Some(b"://") && word.iter().all(|c| c.is_ascii_alphanumeric()) {
            let mut e = we + 3;
            while e < b.len() && !matches!(b[e], b' ' | b'\t' | b'"' | b'\'' | b'<' | b'>' | b'`') {
                e += 1;
            }
            while e > we + 3 && matches!(b[e - 1], b'.' | b',' | b')' | b';' | b':' | b']') {
                e -= 1;
            }
            return self.emit(i, e, Placeholder::Url, None);
        }
        // Syslog: `Nov 25 04:52:01` (day padded with a space when < 10).
        if let Some(month) = month_from_name(word) {
            let mut k = we;
            if byte(b, k) == b' ' {
                k += 1;
                if byte(b, k) == b' ' {
                    k += 1;
                }
                let dn = digits_at(b, k);
                if (1..=2).contains(&dn) && byte(b, k + dn) == b' ' {
                    if let Some((end, secs)) = time_of_day(b, k + dn + 1) {
                        if !is_word(byte(b, end)) {
                            let day = fixed_num(b, k, dn).unwrap_or(1);
                            let t = days_from_civil(2000, month, day) as f64 * 86400.0 + secs;
                            return self.emit(i, end, Placeholder::Timestamp, Some(t));
                        }
                    }
                }
            }
        }
        if let Some(end) = uuid(b, i) {
            return self.emit(i, end, Placeholder::Uuid, None);
        }
        if may_be_ipv6(b, i, we) {
            if let Some(end) = ipv6(b, i) {
                let end = port(b, end);
                return self.emit(i, end, Placeholder::Ip, None);
            }
        }
        // Windows drive path `C:\…`.
        if word.len() == 1 && byte(b, we) == b':' && byte(b, we + 1) == b'\\' {
            let mut e = we + 2;
            while e < b.len() && (is_path_char(b[e]) || b[e] == b'\\') {
                e += 1;
            }
            return self.emit(i, e, Placeholder::Path, None);
        }
        if may_be_path(b, we) {
            if let Some(end) = path(b, i) {
                return self.emit(i, end, Placeholder::Path, None);
            }
        }
        self.word(i, we, digits)
    }

    /// A word of `[A-Za-z0-9_]` at `i..we`, `digits` of them digits, that is nothing more
    /// specific.
    fn word(&mut self, i: usize, we: usize, digits: usize) -> usize {
        let b = self.b;
        let word = &b[i..we];
        if digits == 0 {
            let had_error = self.signals.error;
            self.note_word(word);
            // An error word counting zero (`failed=0`, `errors: 0`, `0 failed`) is a tally
            // reporting that nothing failed: a summary table or a test report, not a
            // failure. Checked only when the word is an error word, so it costs nothing on
            // other words.
            if !had_error && self.signals.error && zero_tally(b, i, we) {
                self.signals.error = false;
            }
            return we;
        }
        let letters = word.len() - digits;
        // Short hex tokens too (`tid=d880`, `e51b`): thread and span ids are hex of a few
        // digits, and reading `d880` as the name `d` plus a number would split one id
        // field into several templates.
        if word.len() >= 3 && letters > 0 && word.iter().all(|&c| is_hex(c)) {
            return self.emit(i, we, Placeholder::Hex, None);
        }
        // `worker12`, `test_case_42`: a name followed by a number.
        let tail = word.iter().rev().take_while(|c| c.is_ascii_digit()).count();
        if tail == digits && letters > 0 && !word[0].is_ascii_digit() {
            let ds = we - tail;
            self.note_word(&word[..word.len() - tail]);
            // `v1.2.3` is a version, `node12` an int.
            return self.number(ds, tail);
        }
        if word.len() >= 8 && letters > 0 {
            return self.emit(i, we, Placeholder::Id, None);
        }
        we
    }

    fn digit_token(&mut self, i: usize) -> usize {
        let b = self.b;
        if let Some(end) = uuid(b, i) {
            return self.emit(i, end, Placeholder::Uuid, None);
        }
        let d = digits_at(b, i);
        // ISO 8601 / RFC 3339: 2024-01-31, 2024-01-31T12:00:00.123Z, 2024/01/31 12:00:00
        if d == 4 && matches!(byte(b, i + 4), b'-' | b'/') {
            let sep = b[i + 4];
            if let (Some(y), Some(mo), true, Some(dd)) = (
                fixed_num(b, i, 4),
                fixed_num(b, i + 5, 2),
                byte(b, i + 7) == sep,
                fixed_num(b, i + 8, 2),
            ) {
                if (1..=12).contains(&mo) && (1..=31).contains(&dd) && !b_is_digit(b, i + 10) {
                    let day = days_from_civil(i64::from(y), mo, dd) as f64 * 86400.0;
                    if matches!(byte(b, i + 10), b'T' | b' ' | b't' | b'_') {
                        if let Some((end, secs)) = time_of_day(b, i + 11) {
                            let end = timezone(b, end);
                            return self.emit(i, end, Placeholder::Timestamp, Some(day + secs));
                        }
                    }
                    return self.emit(i, i + 10, Placeholder::Date, Some(day));
                }
            }
        }
        // Access log: 10/Oct/2000:13:55:36 -0700
        if (1..=2).contains(&d) && byte(b, i + d) == b'/' {
            let m = i + d + 1;
            if let Some(month) = b.get(m..m + 3).and_then(month_from_name) {
                if byte(b, m + 3) == b'/' {
                    if let (Some(y), true) = (fixed_num(b, m + 4, 4), byte(b, m + 8) == b':') {
                        if let Some((end, secs)) = time_of_day(b, m + 9) {
                            let mut end = end;
                            if byte(b, end) == b' ' && matches!(byte(b, end + 1), b'+' | b'-') {
                                let tz = timezone(b, end + 1);
                                if tz > end + 1 {
                                    end = tz;
                                }
                            }
                            let day = fixed_num(b, i, d).unwrap_or(1);
                            let t =
                                days_from_civil(i64::from(y), month, day) as f64 * 86400.0 + secs;
                            return self.emit(i, end, Placeholder::Timestamp, Some(t));
                        }
                    }
                }
            }
        }
        // `time_of_day` needs a colon right after the hour.
        if d <= 2 && byte(b, i + d) == b':' {
            if let Some((end, secs)) = time_of_day(b, i) {
                if !b_is_digit(b, end) && byte(b, end) != b':' {
                    let end = timezone(b, end);
                    return self.emit(i, end, Placeholder::Time, Some(secs));
                }
            }
        }
        let we = word_end(b, i);
        // `ipv4` needs one to three digits and a dot.
        if let Some(end) = (d <= 3 && byte(b, i + d) == b'.')
            .then(|| ipv4(b, i))
            .flatten()
        {
            let end = port(b, end);
            let end = if byte(b, end) == b'/' && digits_at(b, end + 1) > 0 {
                end + 1 + digits_at(b, end + 1)
            } else {
                end
            };
            return self.emit(i, end, Placeholder::Ip, None);
        }
        if may_be_ipv6(b, i, we) {
            if let Some(end) = ipv6(b, i) {
                let end = port(b, end);
                return self.emit(i, end, Placeholder::Ip, None);
            }
        }
        if d == 1 && b[i] == b'0' && matches!(byte(b, i + 1), b'x' | b'X') {
            let h = b[i + 2..].iter().take_while(|&&c| is_hex(c)).count();
            if h > 0 && !is_word(byte(b, i + 2 + h)) {
                let kind = if h >= 8 {
                    Placeholder::Addr
                } else {
                    Placeholder::Hex
                };
                return self.emit(i, i + 2 + h, kind, None);
            }
        }
        // Hex ids that happen to start with a digit (`4e2a`, `9f3c01`), as in `word`; a
        // token that reads whole as a number in exponent form (`1e10`) stays a number.
        if we - i >= 3
            && b[i..we].iter().all(|&c| is_hex(c))
            && we - i > d
            && scan_number(self.s, i).0 < we
        {
            return self.emit(i, we, Placeholder::Hex, None);
        }
        if may_be_path(b, we) {
            if let Some(end) = path(b, i) {
                return self.emit(i, end, Placeholder::Path, None);
            }
        }
        self.number(i, d)
    }

    /// Number at `i`, which starts with `digits` digits: int, float, version, duration, or a
    /// number with a unit suffix (`12MB` → `<int>MB`).
    fn number(&mut self, i: usize, digits: usize) -> usize {
        let b = self.b;
        let scanned = scan_number_after(self.s, i, digits);
        let (end, kind, num) = scanned;
        if kind == Placeholder::Version {
            return self.emit(i, end, kind, None);
        }
        // Durations, possibly compound: 3m20s, 1h2m3.5s, 12ms.
        if let Some((dend, secs)) = duration(self.s, i, scanned) {
            return self.emit(i, dend, Placeholder::Duration, Some(secs));
        }
        // `376 ms`, `4.1 seconds`: a spelled-out unit after a space is a duration too (only
        // unambiguous units: `5 m` may be metres).
        // Every spelled-out unit starts with one of these letters.
        if byte(b, end) == b' '
            && matches!(kind, Placeholder::Int | Placeholder::Float)
            && matches!(byte(b, end + 1), b'n' | b'u' | b'm' | b's' | b'h')
        {
            let us = end + 1;
            let ue = us
                + b[us..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
            if let Some(scale) = spelled_duration_unit(&b[us..ue]) {
                if !is_word(byte(b, ue)) {
                    let secs = num.map(|n| n * scale);
                    return self.emit(i, ue, Placeholder::Duration, secs);
                }
            }
        }
        if is_word(byte(b, end)) {
            // A number glued to a word: `12MB` keeps its unit; `3d2f9` is an opaque token.
            let we = end + b[end..].iter().take_while(|&&c| is_word(c)).count();
            if b[end..we].iter().any(|c| c.is_ascii_digit()) {
                if we - i >= 8 {
                    return self.emit(i, we, Placeholder::Id, None);
                }
                return we;
            }
            let pos = self.emit(i, end, kind, num);
            self.note_word(&b[end..we]);
            return pos.max(we);
        }
        self.emit(i, end, kind, num)
    }

    fn note_word(&mut self, w: &[u8]) {
        let role = keyword_signals(w, &mut self.signals);
        if role != Role::Plain || w.len() > 2 {
            self.ctx = role;
        }
    }

    /// Replaces `start..end` by the placeholder `kind`; returns `end`.
    fn emit(&mut self, start: usize, end: usize, kind: Placeholder, num: Option<f64>) -> usize {
        let end = end.min(self.b.len()).max(start + 1);
        // A placeholder must never cut a multi-byte character.
        let end = (end..=self.b.len())
            .find(|&e| self.s.is_char_boundary(e))
            .unwrap_or(self.b.len());
        self.flush_literal(start);
        let mut role = self.ctx;
        if matches!(kind, Placeholder::Int | Placeholder::Float) {
            let next = byte(self.b, end);
            if next == b'%' || (next == b'/' && byte(self.b, end + 1).is_ascii_digit()) {
                role = Role::Counter;
            }
        }
        // A keyword names the one value after it (`pid 4242`, `worker-3`, `attempt 2`),
        // not every value up to the next word: in `worker-3: photos/017.png -> previews/…`
        // the paths are the work, and inheriting `worker`'s volatility hid a pool's new
        // files (every line looked like the same line again). Values that belong together
        // say so themselves (`n/m`, units) or have their own key (`pid=1 tid=2`).
        self.ctx = Role::Plain;
        let slot = u16::try_from(self.values.len()).unwrap_or(u16::MAX);
        self.values.push(Value {
            slot,
            kind,
            start: start as u32,
            end: end as u32,
            num,
            role,
        });
        self.id_tokens |= matches!(kind, Placeholder::Hex | Placeholder::Id);
        push_token(self.template, kind);
        self.lit_start = end;
        end
    }

    fn flush_literal(&mut self, upto: usize) {
        if upto > self.lit_start {
            if let Some(lit) = self.s.get(self.lit_start..upto) {
                self.literals |= lit.bytes().fold(0, |f, c| f | class(c));
                self.template.push_str(lit);
            }
        }
        self.lit_start = upto.max(self.lit_start);
    }
}

/// Appends the token of `kind` to `template`. One arm per kind, so that each copy has a
/// constant length and compiles to a few stores rather than a `memcpy` call: a line has a
/// placeholder every few words.
#[inline]
fn push_token(template: &mut String, kind: Placeholder) {
    macro_rules! arms {
        ($($k:ident),*) => {
            match kind {
                $(Placeholder::$k => template.push_str(Placeholder::$k.token()),)*
            }
        };
    }
    arms!(
        Int, Float, Hex, Addr, Uuid, Timestamp, Date, Time, Ip, Path, Url, Duration, Quoted, Id,
        Version
    );
}

fn b_is_digit(b: &[u8], i: usize) -> bool {
    byte(b, i).is_ascii_digit()
}

fn parse_int(d: &[u8]) -> f64 {
    // Nineteen digits stay below 10^19 < 2^64: no step can overflow.
    d.iter()
        .take(19)
        .fold(0u64, |v, &c| v * 10 + u64::from(c - b'0')) as f64
}

/// Scans an int, float (with exponent) or dotted version at `i`.
fn scan_number(s: &str, i: usize) -> (usize, Placeholder, Option<f64>) {
    scan_number_after(s, i, digits_at(s.as_bytes(), i))
}

/// [`scan_number`] when the caller already knows the `d` digits at `i`.
fn scan_number_after(s: &str, i: usize, d: usize) -> (usize, Placeholder, Option<f64>) {
    let b = s.as_bytes();
    let mut end = i + d;
    let mut kind = Placeholder::Int;
    if byte(b, end) == b'.' && b_is_digit(b, end + 1) {
        let f = digits_at(b, end + 1);
        end += 1 + f;
        kind = Placeholder::Float;
        while byte(b, end) == b'.' && b_is_digit(b, end + 1) {
            end += 1 + digits_at(b, end + 1);
            kind = Placeholder::Version;
        }
    }
    if kind != Placeholder::Version && matches!(byte(b, end), b'e' | b'E') {
        let mut k = end + 1;
        if matches!(byte(b, k), b'+' | b'-') {
            k += 1;
        }
        let x = digits_at(b, k);
        if x > 0 && !is_word(byte(b, k + x)) {
            end = k + x;
            kind = Placeholder::Float;
        }
    }
    let num = match kind {
        Placeholder::Int => Some(parse_int(&b[i..end])),
        Placeholder::Float => {
            parse_float(&b[i..end]).or_else(|| s.get(i..end).and_then(|t| t.parse::<f64>().ok()))
        }
        _ => None,
    };
    (end, kind, num)
}

/// Powers of ten that are exact in an `f64`.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The value of a plain decimal `digits.digits` when it can be had exactly in one division
/// (at most 2^53 as an integer, at most 22 decimals: both operands are exact and the
/// division rounds correctly, so the result is the one `str::parse` gives); `None` for
/// anything else, which is then parsed in full.
fn parse_float(text: &[u8]) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut decimals = None;
    for (k, &c) in text.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            }
            b'.' if decimals.is_none() => decimals = Some(text.len() - k - 1),
            _ => return None,
        }
    }
    if mantissa > 1 << 53 {
        return None;
    }
    let scale = EXACT_POWERS_OF_TEN.get(decimals?)?;
    Some(mantissa as f64 / scale)
}

/// A duration at `i`: one or more `<number><unit>` parts ending at a non-word byte;
/// `first` is [`scan_number`] at `i`, which the caller already has.
fn duration(s: &str, i: usize, first: (usize, Placeholder, Option<f64>)) -> Option<(usize, f64)> {
    let b = s.as_bytes();
    let mut k = i;
    let mut total = 0.0;
    let mut first = Some(first);
    loop {
        if !b_is_digit(b, k) {
            break;
        }
        let (nend, kind, num) = match first.take() {
            Some(scanned) => scanned,
            None => scan_number(s, k),
        };
        if kind == Placeholder::Version {
            break;
        }
        let ulen = b[nend..]
            .iter()
            .take_while(|&&c| c.is_ascii_alphabetic() || c >= 0x80)
            .count()
            .min(4);
        let mut matched = None;
        for l in (1..=ulen).rev() {
            if let Some(scale) = b.get(nend..nend + l).and_then(is_duration_unit) {
                matched = Some((l, scale));
                break;
            }
        }
        let (l, scale) = matched?;
        let uend = nend + l;
        let next = byte(b, uend);
        if next.is_ascii_digit() {
            total += num.unwrap_or(0.0) * scale;
            k = uend;
            continue;
        }
        if is_word(next) || next >= 0x80 {
            return None;
        }
        total += num.unwrap_or(0.0) * scale;
        return Some((uend, total));
    }
    None
}

fn uuid(b: &[u8], i: usize) -> Option<usize> {
    // The first dash rejects nearly every word at once.
    if byte(b, i + 8) != b'-' {
        return None;
    }
    let r = b.get(i..i + 36)?;
    for (k, &c) in r.iter().enumerate() {
        let ok = if matches!(k, 8 | 13 | 18 | 23) {
            c == b'-'
        } else {
            is_hex(c)
        };
        if !ok {
            return None;
        }
    }
    if is_word(byte(b, i + 36)) {
        return None;
    }
    Some(i + 36)
}

fn ipv4(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    for part in 0..4 {
        let d = digits_at(b, k);
        if !(1..=3).contains(&d) || parse_int(&b[k..k + d]) > 255.0 {
            return None;
        }
        k += d;
        if part < 3 {
            if byte(b, k) != b'.' {
                return None;
            }
            k += 1;
        }
    }
    if is_word(byte(b, k)) || (byte(b, k) == b'.' && b_is_digit(b, k + 1)) {
        return None;
    }
    Some(k)
}

/// IPv6 at `i`: hex groups of ≤4 separated by `:`, with `::` or seven colons, and a digit.
fn ipv6(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    let mut colons = 0;
    let mut double = false;
    let mut digit = false;
    let mut group = 0;
    while k < b.len() {
        let c = b[k];
        if is_hex(c) {
            group += 1;
            if group > 4 {
                return None;
            }
            digit |= c.is_ascii_digit();
        } else if c == b':' {
            if byte(b, k + 1) == b':' {
                if double {
                    break;
                }
                double = true;
                colons += 2;
                k += 2;
                group = 0;
                continue;
            }
            if group == 0 || !is_hex(byte(b, k + 1)) {
                break;
            }
            colons += 1;
            group = 0;
        } else {
            break;
        }
        k += 1;
    }
    // A trailing single colon belongs to the text (`addr fe80::1: refused`).
    if !(digit && (double || colons >= 7)) || colons > 8 || is_word(byte(b, k)) {
        return None;
    }
    if k == i || (colons < 3 && !double) {
        return None;
    }
    Some(k)
}

fn port(b: &[u8], k: usize) -> usize {
    if byte(b, k) == b':' {
        let p = digits_at(b, k + 1);
        if (1..=5).contains(&p) && !is_word(byte(b, k + 1 + p)) {
            return k + 1 + p;
        }
    }
    k
}

/// False when [`ipv6`] at `i`, a word ending at `we`, is sure to fail: its first group of at
/// most four hex digits must end at a colon, and the word's bytes other than hex digits
/// (letters g–z, `_`) cannot.
#[inline]
fn may_be_ipv6(b: &[u8], i: usize, we: usize) -> bool {
    we - i <= 4 && byte(b, we) == b':'
}

/// False when [`path`] at the start of a word ending at `we` is sure to fail: a word has no
/// slash, so the run of path characters must go on past it.
#[inline]
fn may_be_path(b: &[u8], we: usize) -> bool {
    is_path_char(byte(b, we))
}

/// A path at `i`: a run of path characters that starts like a path (`/`, `./`, `../`, `~/`)
/// or has two slashes, or one slash and a file extension; it must contain a letter.
fn path(b: &[u8], i: usize) -> Option<usize> {
    // Only a whole run is a path: `I/O` must not yield `I<path>`.
    if i > 0 && is_path_char(b[i - 1]) {
        return None;
    }
    let mut e = i;
    let mut slashes = 0;
    let mut letter = false;
    while e < b.len() {
        let c = class(b[e]);
        if c & PATH == 0 {
            break;
        }
        slashes += usize::from(b[e] == b'/');
        letter |= c & ALPHA != 0;
        e += 1;
    }
    // A run ending at `<` may continue into a placeholder that replaced part of it (found
    // by fuzzing: `RE/A.A..5` → `RE/A.A..<int>` must not become a path on a second pass).
    if slashes == 0 || !letter || byte(b, e) == b'<' {
        return None;
    }
    // Trailing punctuation ends the sentence, not the path.
    while e > i + 1 && matches!(b[e - 1], b'.' | b'-' | b'+' | b'@' | b'%') {
        e -= 1;
    }
    let run = &b[i..e];
    let rooted = run.starts_with(b"/")
        || run.starts_with(b"./")
        || run.starts_with(b"../")
        || run.starts_with(b"~/");
    let last = run.rsplit(|&c| c == b'/').next().unwrap_or(b"");
    let ext = last
        .iter()
        .rposition(|&c| c == b'.')
        // An extension starts with a letter: `1.90G` in `0.10G/1.90G` is a size.
        .is_some_and(|p| p > 0 && last.get(p + 1).is_some_and(|c| c.is_ascii_alphabetic()));
    let ok = (rooted && run.len() > 1) || slashes >= 2 || ext;
    // (The run has a letter, which trimming cannot remove, so it is never `/` or made of
    // slashes and dots only.)
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(line: &str) -> String {
        normalize(line).template
    }

    #[test]
    fn one_id_field_compares_equal_whatever_characters_the_id_has() {
        // Thread ids of a few hex digits: all digits, letter first, digit first, long.
        let lines = [
            "worker tid=8367 job=sync failed: timeout",
            "worker tid=d880 job=sync failed: timeout",
            "worker tid=4e2a job=sync failed: timeout",
            "worker tid=9c0ffee71a job=sync failed: timeout",
        ];
        let first = normalize(lines[0]).hash;
        for line in &lines[1..] {
            assert_eq!(normalize(line).hash, first, "{line} → {}", t(line));
        }
        // The displayed template keeps the precise type.
        assert_eq!(t(lines[1]), "worker tid=<hex> job=sync failed: timeout");
        // A number in exponent form stays a number, and real words are not ids.
        assert_eq!(t("scale 1e10 ok"), "scale <float> ok");
        assert_ne!(normalize("status ok").hash, normalize("status no").hash);
    }

    #[test]
    fn error_words_counting_zero_are_not_errors() {
        for line in [
            "db-7.internal : ok=12 changed=3 unreachable=0 failed=0 skipped=1",
            "suite finished: 48 passed, 0 failed, 2 skipped",
            "lint summary errors: 0, warnings: 5",
            "batch closed (failures=0)",
        ] {
            assert!(!normalize(line).signals.error, "{line} read as an error");
        }
        for line in [
            "db-7.internal : ok=12 changed=3 unreachable=0 failed=1 skipped=1",
            "suite finished: 48 passed, 10 failed",
            "Error: 0 bytes written to the socket",
            "failed=0 but FATAL: disk quota exceeded",
            "errors: 0.5 per second",
        ] {
            assert!(normalize(line).signals.error, "{line} not read as an error");
        }
    }

    #[test]
    fn names_stamped_with_date_and_time_are_recognised() {
        for name in [
            "/var/cache/tool/logs/2031-04-07T22_05_41_907Z-debug-0.log",
            "core.20310407-220541",
            "report_2031.04.07_22.05.csv",
            "snap-20310407T2205.tar",
            "\"trace 1999-12-31 23:59:58\"",
        ] {
            assert!(embeds_clock_time(name), "{name} has a clock stamp");
        }
        for name in [
            "app-2031-04-07.log",
            "build-1234567890123.log",
            "part-00037.parquet",
            "v2031.13.07_22.05",
            "x12031-04-07T22:05",
            "2031-04-07T25:05",
            "",
        ] {
            assert!(!embeds_clock_time(name), "{name} has no clock stamp");
        }
    }

    #[test]
    fn placeholder_table() {
        let cases: &[(&str, &str)] = &[
            ("count 42 done", "count <int> done"),
            ("epoch 1700000000", "epoch <int>"),
            ("loss=0.2531", "loss=<float>"),
            ("lr 1e-5 x 3.2E+10", "lr <float> x <float>"),
            ("at 0x7ffd5e8c1a20", "at <addr>"),
            ("flag 0x1f", "flag <hex>"),
            ("commit 3f2a9c1e7b", "commit <hex>"),
            ("id f47ac10b-58cc-4372-a567-0e02b2c3d479 ok", "id <uuid> ok"),
            ("2024-01-31T12:00:00.123Z start", "<ts> start"),
            ("2024-01-31T12:00:00+02:00 start", "<ts> start"),
            ("2024-01-31 12:00:00,123 INFO x", "<ts> INFO x"),
            ("on 2024-01-31 only", "on <date> only"),
            (
                "Nov 25 04:52:01 host sshd[123]: hi",
                "<ts> host sshd[<int>]: hi",
            ),
            ("Nov  5 04:52:01 host", "<ts> host"),
            ("[12:01:02.345] tick", "[<time>] tick"),
            ("9:21:36 AM [vite] hmr", "<time> AM [vite] hmr"),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET /a/b HTTP/1.1\" 200 512",
                "<ip> - - [<ts>] \"GET <path> HTTP/<float>\" <int> <int>",
            ),
            ("connect 10.0.0.1:5432 failed", "connect <ip> failed"),
            ("listen [::1]:8080", "listen <ip>"),
            ("peer fe80::1ff:fe23:4567:890a up", "peer <ip> up"),
            ("open /usr/lib/libc.so.6 ok", "open <path> ok"),
            ("see src/main.rs:12:5", "see <path>:<int>:<int>"),
            ("cd ./build", "cd <path>"),
            ("GET https://example.com/x?y=1 200", "GET <url> <int>"),
            ("took 12ms", "took <dur>"),
            ("took 1.5s and 3m20s", "took <dur> and <dur>"),
            ("v 1.2.3 installed", "v <ver> installed"),
            ("user \"bob\" not found", "user <str> not found"),
            ("said 'hello there 5'", "said 'hello there <int>'"),
            (r#"{"level":"info","n":5}"#, r#"{"level":<str>,"n":<int>}"#),
            ("worker12 started", "worker<int> started"),
            ("test_case_42 ok", "test_case_<int> ok"),
            ("req a8Fk2Lq9xZ done", "req <id> done"),
            ("size 12MB", "size <int>MB"),
            ("50% done 3/10", "<int>% done <int>/<int>"),
            ("don't stop", "don't stop"),
            ("x86_64 sha256", "x86_64 sha<int>"),
            ("crate v1.0.1 and v2", "crate v<ver> and v<int>"),
            ("I/O error", "I/O error"),
            ("C:\\Users\\me\\file.txt open", "<path> open"),
        ];
        for (input, want) in cases {
            assert_eq!(&t(input), want, "normalising {input:?}");
        }
    }

    #[test]
    fn quoted_values_with_digits_are_typed_by_content() {
        let cases = [
            (
                r#"{"ts": "2025-11-20T09:14:03.247Z", "msg": "x"}"#,
                r#"{"ts": "<ts>", "msg": <str>}"#,
            ),
            (
                r#"{"event_id": "f09890b3-00ea-4006-b14a-8a64cd9ea4a7"}"#,
                r#"{"event_id": "<uuid>"}"#,
            ),
            (
                r#"{"trace_id": "a0c7ca5e8103979bbca8b98b01468786"}"#,
                r#"{"trace_id": "<hex>"}"#,
            ),
            (
                "memberId='c-1-e5b6409c-3218-4040-9a14-83c7af1c8f16'",
                "memberId='c-<int>-<uuid>'",
            ),
            (r#"{"level": "info"}"#, r#"{"level": <str>}"#),
        ];
        for (input, want) in cases {
            assert_eq!(&t(input), want, "normalising {input:?}");
        }
        let n = normalize(r#"{"ts": "2025-11-20T09:14:03Z"}"#);
        assert_eq!(n.values[0].kind, Placeholder::Timestamp);
        assert!(
            n.values[0].num.is_some(),
            "a quoted timestamp still reads as a clock"
        );
    }

    #[test]
    fn spelled_out_units_are_durations() {
        assert_eq!(t("compiled in 376 ms"), "compiled in <dur>");
        assert_eq!(t("started in 4.113 seconds"), "started in <dur>");
        assert_eq!(t("5 m of cable"), "<int> m of cable");
        assert_eq!(t("312 bytes"), "<int> bytes");
        let n = normalize("retry in 2 minutes");
        let secs = n.values[0].num.unwrap_or(f64::NAN);
        assert!((secs - 120.0).abs() < 1e-9, "2 minutes read as {secs} s");
    }

    #[test]
    fn sizes_with_a_slash_are_not_paths() {
        assert_eq!(t("0.10G/1.90G 24.6MB/s"), "<float>G/<float>G <float>MB/s");
        assert_eq!(t("see docs/guide.md"), "see <path>");
    }

    #[test]
    fn id_like_tokens_are_recognised() {
        for id in [
            "main.87b5988a.js",
            "/tmp/tmpa8f3k2x9/out",
            "consumer-1-e5b6409c-3218",
            "build-3f2a9c",
        ] {
            assert!(is_id_like(id), "{id} should be id-like");
        }
        for word in [
            "src/main.rs",
            "part-00037.parquet",
            "report2024.csv",
            "decade",
            "x86_64",
            "orders",
        ] {
            assert!(!is_id_like(word), "{word} should be word-like");
        }
    }

    #[test]
    fn values_carry_slot_kind_text_and_number() {
        let line = "epoch 3/10 loss 0.25 took 12ms";
        let n = normalize(line);
        let kinds: Vec<(u16, Placeholder, &str)> = n
            .values
            .iter()
            .map(|v| (v.slot, v.kind, v.text(line)))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, Placeholder::Int, "3"),
                (1, Placeholder::Int, "10"),
                (2, Placeholder::Float, "0.25"),
                (3, Placeholder::Duration, "12ms"),
            ]
        );
        assert_eq!(n.values[0].num, Some(3.0));
        assert_eq!(n.values[0].role, Role::Counter);
        assert_eq!(n.values[2].num, Some(0.25));
        assert_eq!(n.values[3].role, Role::Volatile);
        let d = n.values[3].num.unwrap_or(f64::NAN);
        assert!((d - 0.012).abs() < 1e-12, "12ms is {d} s");
        assert!(n.signals.progress);
    }

    #[test]
    fn timestamps_have_increasing_numeric_readings() {
        let a = normalize("2024-01-31T23:59:59Z x").values[0].num;
        let b = normalize("2024-02-01T00:00:01Z x").values[0].num;
        match (a, b) {
            (Some(a), Some(b)) => assert!((b - a - 2.0).abs() < 1e-9, "{a} then {b}"),
            other => panic!("timestamps without readings: {other:?}"),
        }
    }

    #[test]
    fn signals_find_errors_and_retries() {
        let s = normalize("ERROR: connection refused, retrying in 5s").signals;
        assert!(s.error && s.retry);
        let s = normalize("Traceback (most recent call last):").signals;
        assert!(s.error);
        let s = normalize("all good here").signals;
        assert_eq!(s, Signals::default());
    }

    #[test]
    fn crash_signals_are_errors_and_stop_signals_are_not() {
        for line in [
            "supervisor: worker 812 terminated by signal 11 (SIGSEGV)",
            "Segmentation fault (core dumped)",
            "INFO child 77 exited on signal 7 (SIGBUS - core dumped)",
            "runner: job process got SIGABRT",
        ] {
            assert!(normalize(line).signals.error, "{line} not read as a crash");
        }
        for line in [
            "received SIGTERM, shutting down gracefully",
            "SIGHUP received: reloading configuration",
            "installed handlers for SIGINT and SIGTERM",
        ] {
            assert!(!normalize(line).signals.error, "{line} read as an error");
        }
    }

    #[test]
    fn a_keyword_names_only_the_value_after_it() {
        let line = "pool: worker-2: photos/oslo/017.png -> previews/oslo/017_320.jpg (5120 bytes)";
        let n = normalize(line);
        let roles: Vec<(&str, Role)> = n.values.iter().map(|v| (v.text(line), v.role)).collect();
        assert_eq!(
            roles,
            vec![
                ("2", Role::Volatile),
                ("photos/oslo/017.png", Role::Plain),
                ("previews/oslo/017_320.jpg", Role::Plain),
                ("5120", Role::Plain),
            ],
            "the worker id is volatile, the files it wrote are not"
        );
        // Each value with its own keyword keeps it.
        let line = "conn 17 pid 4242 port 8080 ready";
        let n = normalize(line);
        assert!(
            n.values.iter().all(|v| v.role == Role::Volatile),
            "{:?}",
            n.values
        );
    }

    #[test]
    fn lines_differing_only_in_values_share_a_template() {
        let a = normalize("2024-01-01T00:00:01Z req=f47ac10b-58cc-4372-a567-0e02b2c3d479 pid=12 GET /api/v1/items/7 took 12ms");
        let b = normalize("2024-01-01T00:00:09Z req=0e02b2c3-58cc-4372-a567-f47ac10bd479 pid=13 GET /api/v1/items/9 took 1.5s");
        assert_eq!(a.template, b.template);
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, normalize("something else").hash);
    }

    #[test]
    fn fuzz_found_inputs_are_idempotent() {
        for s in ["RE/A.A..5", "x/y.txt<b>", "a/b/c..<int>"] {
            let once = t(s);
            assert_eq!(t(&once), once, "normalising {s:?}");
        }
    }

    #[test]
    fn every_keyword_is_found_in_any_case_and_nothing_else_is() {
        for (words, kind) in KEYWORDS {
            for w in words {
                assert_eq!(keyword(w.as_bytes()), Some(kind), "{w}");
                assert_eq!(keyword(w.to_uppercase().as_bytes()), Some(kind), "{w}");
            }
        }
        for w in [
            "e", "errorx", "erro", "server", "GET", "sigsegvx", "", "ÉRROR", "err\0",
        ] {
            assert_eq!(keyword(w.as_bytes()), None, "{w:?}");
        }
    }

    /// The pre-table classifier, kept as the reference for `is_id_like`.
    fn is_id_like_reference(text: &str) -> bool {
        text.as_bytes()
            .split(|c| !c.is_ascii_alphanumeric())
            .any(|seg| {
                if seg.len() < 6 {
                    return false;
                }
                let digits = seg.iter().filter(|c| c.is_ascii_digit()).count();
                if digits == 0 || digits == seg.len() {
                    return false;
                }
                if seg.iter().all(|c| c.is_ascii_hexdigit()) {
                    return true;
                }
                let switches = seg
                    .windows(2)
                    .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
                    .count();
                switches >= 3
            })
    }

    proptest! {
        #[test]
        fn fast_float_parse_agrees_with_str_parse(int in 0u64..(1 << 54), decimals in 0usize..25) {
            let digits = int.to_string();
            let text = if decimals == 0 || decimals >= digits.len() {
                format!("0.{}{digits}", "0".repeat(decimals.saturating_sub(digits.len())))
            } else {
                format!("{}.{}", &digits[..digits.len() - decimals], &digits[digits.len() - decimals..])
            };
            if let Some(fast) = parse_float(text.as_bytes()) {
                prop_assert_eq!(Some(fast), text.parse::<f64>().ok(), "{}", text);
            }
        }

        #[test]
        fn id_like_agrees_with_its_reference(s in "[a-f0-9g-z_./-]{0,40}") {
            prop_assert_eq!(is_id_like(&s), is_id_like_reference(&s));
        }

        #[test]
        fn never_panics_and_is_idempotent(s in "\\PC{0,120}") {
            let once = normalize(&s);
            let twice = normalize(&once.template);
            prop_assert_eq!(&twice.template, &once.template);
            prop_assert_eq!(twice.hash, once.hash);
        }

        #[test]
        fn idempotent_on_log_like_lines(s in "[a-zA-Z0-9 :./\\-_\"'=\\[\\]{},%<>x]{0,100}") {
            let once = normalize(&s);
            let twice = normalize(&once.template);
            prop_assert_eq!(twice.template, once.template);
        }

        #[test]
        fn stable_across_calls(s in "\\PC{0,80}") {
            prop_assert_eq!(normalize(&s), normalize(&s));
        }

        #[test]
        fn numbers_never_change_the_template(a in 0u64..1_000_000_000, b in 0u64..1_000_000_000) {
            let x = normalize(&format!("step {a} of job {b} at 0x{a:x}0000000"));
            let y = normalize(&format!("step {b} of job {a} at 0x{b:x}0000000"));
            prop_assert_eq!(x.template, y.template);
        }

        #[test]
        fn arbitrary_bytes_lossy_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = String::from_utf8_lossy(&bytes);
            let n = normalize(&s);
            for v in &n.values {
                prop_assert!(s.get(v.start as usize..v.end as usize).is_some());
            }
        }
    }
}
