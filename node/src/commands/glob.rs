//! Redis's glob patterns (`KEYS`, `SCAN … MATCH`, `HSCAN`/`SSCAN`/`ZSCAN … MATCH`): `*`, `?`,
//! `[abc]`, `[^a-z]`, `\` escapes, matched byte by byte, case-sensitive.
//!
//! Hand-written: the `glob` and `globset` crates match paths (separators, UTF-8), not Redis's
//! byte patterns.

/// Whether `s` matches `pattern`.
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    // Where to resume after the last `*`: (pattern position after it, text position).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p + 1, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = class(pattern, p, s[i])
                        && hit
                    {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() && pattern[p + 1] == s[i] => {
                    p += 2;
                    i += 1;
                    continue;
                }
                b'\\' if p + 1 < pattern.len() => {}
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[p] == b'['`: (hit, position after `]`).
fn class(pattern: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = pattern.get(j) == Some(&b'^');
    if negate {
        j += 1;
    }
    let mut hit = false;
    loop {
        let &b = pattern.get(j)?;
        match b {
            b']' => break,
            b'\\' => {
                j += 1;
                if *pattern.get(j)? == c {
                    hit = true;
                }
            }
            _ if pattern.get(j + 1) == Some(&b'-')
                && pattern.get(j + 2).is_some_and(|&e| e != b']') =>
            {
                let (lo, hi) = (b.min(pattern[j + 2]), b.max(pattern[j + 2]));
                if (lo..=hi).contains(&c) {
                    hit = true;
                }
                j += 2;
            }
            _ if b == c => hit = true,
            _ => {}
        }
        j += 1;
    }
    Some((hit != negate, j + 1))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns_match_as_redis_matches_them() {
        for (p, s, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("user:*:name", "user:42:name", true),
            ("user:*:name", "user:42:mail", false),
            ("*a*b", "xxaxxbxxb", true),
            ("a*", "ba", false),
            ("[", "[", false),
        ] {
            assert_eq!(matches(p.as_bytes(), s.as_bytes()), want, "{p} ~ {s}");
        }
    }
}
