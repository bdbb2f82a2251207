//! Property tests for the escaping boundary. A small reference reader, written
//! from systemd.service(5) "Command lines" and systemd.syntax(7) rather than
//! from our escaper, splits rendered lines the way systemd does: specifiers
//! (`%%`), quoting, C escapes, `\;`, then `$$` at execution. Whatever a spec
//! value holds, the reader must get back exactly the argv we meant, and no
//! value may change the number of lines or arguments of a unit.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use nixarr_units::render::escape::{exec_line, exec_word, plain_value};
use nixarr_units::render::{self, Entry, Options};
use nixarr_units::resolve::resolve;
use nixarr_units::spec;
use proptest::prelude::*;

/// systemd's reading of an `Exec*=` value into argv.
fn systemd_argv(value: &str) -> Result<Vec<String>, String> {
    // 1. Specifiers are expanded on the whole value first.
    let mut expanded = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => expanded.push('%'),
                other => return Err(format!("specifier %{other:?} would be expanded")),
            }
        } else {
            expanded.push(c);
        }
    }
    // 2. Words: separated by ASCII whitespace, quotes group, backslash
    //    escapes (C style) inside and outside quotes.
    let mut words = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut it = expanded.chars().peekable();
    let mut lone_semicolon_escaped = Vec::new();
    let mut escaped_semicolon_word = false;
    while let Some(c) = it.next() {
        match (quote, c) {
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(
                        String::from_utf8(std::mem::take(&mut bytes)).map_err(|e| e.to_string())?,
                    );
                    lone_semicolon_escaped.push(escaped_semicolon_word);
                    escaped_semicolon_word = false;
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                in_word = true;
                let e = it.next().ok_or("dangling backslash")?;
                match e {
                    '\\' => bytes.push(b'\\'),
                    '"' => bytes.push(b'"'),
                    '\'' => bytes.push(b'\''),
                    'n' => bytes.push(b'\n'),
                    't' => bytes.push(b'\t'),
                    'r' => bytes.push(b'\r'),
                    ';' if quote.is_none() => {
                        bytes.push(b';');
                        escaped_semicolon_word = true;
                    }
                    'x' => {
                        let h: String = [it.next().ok_or("bad \\x")?, it.next().ok_or("bad \\x")?]
                            .iter()
                            .collect();
                        let b = u8::from_str_radix(&h, 16).map_err(|e| e.to_string())?;
                        if b == 0 {
                            return Err("\\x00 is refused by systemd".into());
                        }
                        bytes.push(b);
                    }
                    other => return Err(format!("unexpected escape \\{other}")),
                }
            }
            (_, c) => {
                in_word = true;
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(String::from_utf8(bytes).map_err(|e| e.to_string())?);
        lone_semicolon_escaped.push(escaped_semicolon_word);
    }
    // A bare `;` word would separate commands.
    for (w, escaped) in words.iter().zip(&lone_semicolon_escaped) {
        if w == ";" && !escaped {
            return Err("a bare ; separates commands".into());
        }
    }
    // 3. At execution, `$$` is `$` and `$NAME`/`${NAME}` would substitute.
    words
        .into_iter()
        .map(|w| {
            let mut out = String::new();
            let mut cs = w.chars().peekable();
            while let Some(c) = cs.next() {
                if c == '$' {
                    match cs.next() {
                        Some('$') => out.push('$'),
                        other => return Err(format!("${other:?} would be substituted")),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Any string but the characters a unit file cannot carry.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Characters that matter to systemd, weighted up.
        proptest::collection::vec(
            prop_oneof![
                Just('%'),
                Just('$'),
                Just('{'),
                Just('}'),
                Just('"'),
                Just('\''),
                Just('\\'),
                Just(';'),
                Just('#'),
                Just(' '),
                Just('\t'),
                Just('-'),
                Just('='),
                Just('é'),
                Just('☃'),
                Just('\u{85}'),
                Just('\u{1}'),
                Just('\u{7f}'),
                Just('a'),
                Just('Z'),
                Just('0'),
            ],
            0..24,
        )
        .prop_map(|v| v.into_iter().collect()),
        "[^\u{0}\n\r]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn every_word_round_trips_through_systemd(words in proptest::collection::vec(value(), 1..6)) {
        let line = exec_line(&words).unwrap();
        prop_assert!(!line.contains('\n'));
        prop_assert_eq!(systemd_argv(&line).unwrap(), words);
    }

    #[test]
    fn unrepresentable_values_are_refused(a in value(), b in value(), bad in prop_oneof![Just('\n'), Just('\0'), Just('\r')]) {
        let v = format!("{a}{bad}{b}");
        prop_assert!(exec_word(&v).is_err());
        prop_assert!(plain_value(&v).is_err());
    }

    #[test]
    fn plain_values_keep_to_one_line(v in value()) {
        match plain_value(&v) {
            Ok(out) => {
                prop_assert!(!out.contains('\n'));
                prop_assert!(!out.ends_with('\\'));
                prop_assert_eq!(out.replace("%%", "%"), v);
            }
            Err(_) => prop_assert!(v.ends_with('\\')),
        }
    }

    /// A whole service with hostile values everywhere a spec allows free
    /// text: the unit has the same directives as with harmless values, and
    /// ExecStart carries each value as exactly one argument.
    #[test]
    fn no_value_adds_a_directive_or_an_argument(
        env in value(), label in value(), cmd in proptest::collection::vec(value(), 0..4),
        health in value().prop_filter("non-blank", |s| !s.trim().is_empty()),
    ) {
        let render_with = |env: &str, label: &str, cmd: &[String], health: &str| {
            let spec_json = serde_json::json!({
                "version": 1,
                "services": { "app": {
                    "image": "localhost/app:test",
                    "environment": { "HOSTILE": env },
                    "labels": { "org.example.hostile": label },
                    "cmd": cmd,
                    "health": { "cmd": health },
                }}
            })
            .to_string();
            let spec = spec::parse(&spec_json, "p.json").unwrap();
            let stack = resolve(&spec, "p.json").unwrap();
            let r = render::render(&stack, &Options { self_exe: "/usr/bin/nixarr-units".into(), source_path: None }).unwrap();
            match &r.units["nixarr-app.service"] {
                Entry::File(t) => t.clone(),
                Entry::Symlink(_) => unreachable!(),
            }
        };
        let hostile = render_with(&env, &label, &cmd, &health);
        let benign_cmd: Vec<String> = cmd.iter().map(|_| "x".to_owned()).collect();
        let benign = render_with("x", "x", &benign_cmd, "x");
        let keys = |t: &str| t.lines().map(|l| l.split('=').next().unwrap_or("").to_owned()).collect::<Vec<_>>();
        prop_assert_eq!(keys(&hostile), keys(&benign));

        let exec_start = hostile.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
        let argv = systemd_argv(exec_start).unwrap();
        let benign_argv = systemd_argv(benign.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap()).unwrap();
        prop_assert_eq!(argv.len(), benign_argv.len());
        let env_arg = format!("--env=HOSTILE={env}");
        let label_arg = format!("--label=org.example.hostile={label}");
        let health_arg = format!("--health-cmd={health}");
        prop_assert!(argv.contains(&env_arg));
        prop_assert!(argv.contains(&label_arg));
        prop_assert!(argv.contains(&health_arg));
        prop_assert_eq!(&argv[argv.len() - cmd.len()..], &cmd[..]);
    }
}

#[test]
fn the_reference_reader_rejects_what_systemd_would_misread() {
    assert!(systemd_argv("echo 100%").is_err());
    assert!(systemd_argv("echo $HOME").is_err());
    assert!(systemd_argv("echo ; rm").is_err());
    assert_eq!(systemd_argv("echo \\;").unwrap(), ["echo", ";"]);
    assert_eq!(
        systemd_argv("a \"b c\" 'd e'").unwrap(),
        ["a", "b c", "d e"]
    );
}
