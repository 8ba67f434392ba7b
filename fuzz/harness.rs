//! The shared driver of the fuzz targets (`<crate>/tests/fuzz.rs` include this file with
//! `#[path = "../../fuzz/harness.rs"] mod harness;`). Stable Rust only: each target replays its
//! checked-in corpus (`fuzz/corpus/<target>/`), then runs proptest for a bounded time.
//!
//! - Default (CI): `default_cases` cases per target, in rounds of fresh random seeds, stopping
//!   early after [`DEFAULT_CAP`] so a slow machine cannot blow up the suite.
//! - `RINGCACHE_FUZZ_SECS=N`: rounds of fresh random seeds until N seconds have passed (per
//!   target), with no case limit.
//! - `PROPTEST_RNG_SEED=S`: deterministic rounds (seed S, S+1, …) to reproduce a run.
//! - Corpus files named `crash-*` are known, reported, unfixed bugs: skipped unless
//!   `RINGCACHE_FUZZ_CRASHES=1`, which also turns on the checks of known bugs in the properties
//!   ([`known_bugs_enforced`]).
#![allow(dead_code)]

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Hard stop of a default run per target, whatever its case count.
pub const DEFAULT_CAP: Duration = Duration::from_secs(15);

/// Cases per proptest round (a fresh seed each round).
const ROUND: u32 = 64;

/// `fuzz/corpus/<target>` of the workspace.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target)
}

/// Whether properties also assert the behaviour of known, reported bugs (and `crash-*` corpus
/// files are replayed).
pub fn known_bugs_enforced() -> bool {
    std::env::var("RINGCACHE_FUZZ_CRASHES").is_ok_and(|v| v == "1")
}

fn budget() -> Option<Duration> {
    let raw = std::env::var("RINGCACHE_FUZZ_SECS").ok()?;
    let secs: u64 = raw
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("RINGCACHE_FUZZ_SECS={raw:?} is not a number of seconds"));
    Some(Duration::from_secs(secs))
}

/// Replays every file of the target's corpus through `check` (which panics on a violated
/// property). A failure names the file; `crash-*` files are skipped unless
/// `RINGCACHE_FUZZ_CRASHES=1`.
pub fn replay(target: &str, check: impl Fn(&[u8])) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let known_crash = name.starts_with("crash-");
        if known_crash && !known_bugs_enforced() {
            skipped.push(name);
            continue;
        }
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let kind = if known_crash {
                "KNOWN BUG (reported, not fixed yet)"
            } else {
                "REGRESSION"
            };
            failures.push(format!(
                "{kind}: fuzz/corpus/{target}/{name} ({} bytes): {msg}",
                bytes.len()
            ));
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "{target}: skipped {} known-crash corpus file(s) {skipped:?}; set RINGCACHE_FUZZ_CRASHES=1 to replay them",
            skipped.len()
        );
    }
    assert!(
        failures.is_empty(),
        "{target}: {} corpus file(s) fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs `test` over `strategy`: `default_cases` cases (capped at [`DEFAULT_CAP`]), or for
/// `RINGCACHE_FUZZ_SECS` seconds. Panics with proptest's minimal failing input.
pub fn fuzz<S: Strategy>(
    target: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) where
    S::Value: std::fmt::Debug,
{
    let budget = budget();
    let start = Instant::now();
    let base = Config::default();
    let mut done: u64 = 0;
    let mut round: u64 = 0;
    loop {
        let cases = match budget {
            Some(_) => ROUND,
            None => ROUND.min(default_cases.saturating_sub(done as u32)).max(1),
        };
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2048,
            // Milliseconds: a shrink that runs longer reports the smallest input found so far.
            max_shrink_time: 60_000,
            rng_seed: match base.rng_seed {
                RngSeed::Fixed(s) => RngSeed::Fixed(s.wrapping_add(round)),
                RngSeed::Random => RngSeed::Random,
            },
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            // `target` is `<corpus>[/<variant>]`, or several corpora joined by `+`.
            let dirs: Vec<String> = target
                .split('/')
                .next()
                .unwrap_or(target)
                .split('+')
                .map(|t| format!("fuzz/corpus/{t}/"))
                .collect();
            panic!(
                "fuzz target {target} failed after {done} passing cases: {e}\n\
                 (save the input under {} to replay it on every run; name it crash-<what> while \
                 the bug is open)",
                dirs.join(" or ")
            );
        }
        done += u64::from(cases);
        round += 1;
        let elapsed = start.elapsed();
        let more = match budget {
            Some(b) => elapsed < b,
            None => done < u64::from(default_cases) && elapsed < DEFAULT_CAP,
        };
        if !more {
            break;
        }
    }
    eprintln!(
        "{target}: {done} cases in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

/// The duration grammar every part shares (`ringcache_common::quantity::parse_duration`),
/// stated independently: trimmed; ASCII digits alone are seconds; otherwise `<digits><unit>`
/// parts, units ms, s, m, h, d. `None`: not a duration; `Some(None)`: more than u64::MAX
/// milliseconds; `Some(Some(ms))`: exactly that.
pub fn exact_duration_ms(s: &str) -> Option<Option<u64>> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    let number = |d: &str| -> Option<u128> {
        let d = d.trim_start_matches('0');
        if d.len() > 39 {
            return Some(u128::MAX);
        }
        Some(if d.is_empty() { 0 } else { d.parse().ok()? })
    };
    let fits = |ms: u128| u64::try_from(ms).ok();
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Some(fits(number(t)?.saturating_mul(1000)));
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let d = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if d == 0 {
            return None;
        }
        let n = number(&rest[..d])?;
        rest = &rest[d..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per: u128 = match &rest[..u] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        rest = &rest[u..];
        total = total.saturating_add(n.saturating_mul(per));
    }
    Some(fits(total))
}
