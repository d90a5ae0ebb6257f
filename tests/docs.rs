//! The documentation agrees with the program: every subcommand's `--help` is complete,
//! the README's command table names exactly the options clap defines (optional ones in
//! brackets), `config/avscene.toml` documents every key of the configuration schema, each
//! uncommented value being the default, and the README's configuration table names every
//! key of its section. Both were once out of step; these tests
//! keep them in step.

use std::collections::BTreeSet;

use avscene::config::Config;
use clap::Subcommand;

const README: &str = include_str!("../README.md");
const SHIPPED_CONFIG: &str = include_str!("../config/avscene.toml");

/// Every subcommand, by its path (`model info`), with its clap definition.
fn subcommands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, command: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        for sub in command.get_subcommands() {
            let path = format!("{prefix}{}", sub.get_name());
            if sub.has_subcommands() {
                walk(&format!("{path} "), sub, out);
            } else {
                out.push((path, sub.clone()));
            }
        }
    }
    let cli = avscene::commands::Command::augment_subcommands(clap::Command::new("avscene"));
    let mut out = Vec::new();
    walk("", &cli, &mut out);
    out
}

fn is_builtin(arg: &clap::Arg) -> bool {
    matches!(arg.get_id().as_str(), "help" | "version")
}

#[test]
fn every_subcommand_and_argument_has_help_text() {
    let mut missing = Vec::new();
    for (path, command) in subcommands() {
        if command.get_about().is_none() {
            missing.push(format!("avscene {path}: no description"));
        }
        for arg in command.get_arguments().filter(|a| !is_builtin(a)) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("avscene {path}: {} has no help", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The usage cell of the README's row for `avscene <path>`.
fn readme_usage(path: &str) -> Option<&'static str> {
    let start = format!("| `avscene {path}");
    README.lines().find_map(|line| {
        let rest = line.strip_prefix(&start)?;
        // `avscene model info` must not match `avscene model`'s row, nor `run` `run-x`.
        if !(rest.starts_with(' ') || rest.starts_with('`')) {
            return None;
        }
        let cell = &line[2..];
        let end = cell[1..].find('`')? + 1;
        Some(&cell[1..end])
    })
}

/// The long options a usage cell names, each with whether it stands inside brackets.
fn named_options(usage: &str) -> Vec<(String, bool)> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    let bytes = usage.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b'-' if usage[i..].starts_with("--") => {
                let name: String = usage[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                i += 2 + name.len();
                out.push((name, depth > 0));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[test]
fn the_readme_command_table_names_exactly_the_options_of_each_subcommand() {
    let mut wrong = Vec::new();
    for (path, command) in subcommands() {
        let Some(usage) = readme_usage(&path) else {
            wrong.push(format!(
                "avscene {path}: no row in the README's command table"
            ));
            continue;
        };
        let named = named_options(usage);
        let args: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|a| !is_builtin(a) && a.get_long().is_some())
            .collect();
        for arg in &args {
            let long = arg.get_long().unwrap();
            let required = arg.is_required_set();
            match named.iter().find(|(n, _)| n == long) {
                None => wrong.push(format!("avscene {path}: --{long} is not in the README")),
                Some((_, bracketed)) if *bracketed == required => wrong.push(format!(
                    "avscene {path}: --{long} is {} but the README shows it {}",
                    if required { "required" } else { "optional" },
                    if required {
                        "in brackets"
                    } else {
                        "without brackets"
                    },
                )),
                Some(_) => {}
            }
        }
        for (name, _) in &named {
            let known = args.iter().any(|a| a.get_long() == Some(name.as_str()))
                || command.get_arguments().any(|a| {
                    a.get_all_aliases()
                        .is_some_and(|al| al.contains(&name.as_str()))
                });
            if !known {
                wrong.push(format!(
                    "avscene {path}: the README names --{name}, which it does not have"
                ));
            }
        }
        let positionals = command.get_positionals().count();
        let shown = usage
            .split_whitespace()
            .skip(1 + path.split(' ').count())
            .take_while(|w| !w.starts_with('-') && !w.starts_with('['))
            .count();
        if shown != positionals {
            wrong.push(format!(
                "avscene {path}: {positionals} positional argument(s), the README shows {shown}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The field names a struct deserialises (what serde asks the deserializer for).
fn fields<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
    use serde::de::{self, Visitor};
    struct Catch(Option<&'static [&'static str]>);
    impl<'de> de::Deserializer<'de> for &mut Catch {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(de::Error::custom("caught"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut catch = Catch(None);
    let _ = T::deserialize(&mut catch);
    catch.0.expect("a struct").to_vec()
}

/// Every key of the configuration schema, as `section.key`.
fn schema_keys() -> BTreeSet<String> {
    use avscene::{capture, infer, metrics, model, publish, record, window};
    let sections: Vec<(&str, Vec<&str>)> = vec![
        ("mqtt", fields::<publish::MqttConfig>()),
        ("mqtt.tls", fields::<publish::TlsConfig>()),
        ("model", fields::<model::ModelConfig>()),
        ("inference", fields::<infer::InferenceConfig>()),
        ("window", fields::<window::WindowConfig>()),
        ("capture", fields::<capture::CaptureConfig>()),
        ("metrics", fields::<metrics::MetricsConfig>()),
        ("record", fields::<record::RecordConfig>()),
        ("stream", fields::<capture::StreamConfig>()),
    ];
    // A new section of Config must be added above.
    let top: BTreeSet<&str> = fields::<Config>().into_iter().collect();
    let listed: BTreeSet<&str> = sections
        .iter()
        .map(|(s, _)| s.split('.').next().unwrap())
        .collect();
    assert_eq!(top, listed, "the sections of Config");
    let nested: BTreeSet<&str> = sections.iter().map(|(s, _)| *s).collect();
    sections
        .iter()
        .flat_map(|(section, keys)| keys.iter().map(move |k| format!("{section}.{k}")))
        .filter(|key| !nested.contains(key.as_str()))
        .collect()
}

/// The shipped file with its commented-out keys and sections restored.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest.split_once(" = ").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn keys_of(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                // A section or a nested table: its keys; a stream's params are its own.
                if value.is_table() && key != "params" || value.is_array() && key == "stream" {
                    keys_of(value, &path, out);
                } else {
                    out.insert(path);
                }
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|item| keys_of(item, prefix, out)),
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn the_shipped_configuration_documents_every_key_with_its_default() {
    let all = uncommented(SHIPPED_CONFIG);
    // Nothing documented that the program would refuse.
    let parsed: Result<Config, _> = toml::from_str(&all);
    assert!(
        parsed.is_ok(),
        "config/avscene.toml, uncommented: {parsed:?}"
    );
    let value: toml::Value = toml::from_str(&all).unwrap();
    let mut documented = BTreeSet::new();
    keys_of(&value, "", &mut documented);
    let schema = schema_keys();
    let missing: Vec<&String> = schema.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "config/avscene.toml does not document {missing:?}"
    );
    let extra: Vec<&String> = documented.difference(&schema).collect();
    assert!(
        extra.is_empty(),
        "config/avscene.toml documents unknown {extra:?}"
    );

    // The values given (not commented out) are the defaults, streams aside.
    let mut shipped: toml::Value = toml::from_str(SHIPPED_CONFIG).unwrap();
    let mut defaults = toml::Value::try_from(Config::default()).unwrap();
    for table in [&mut shipped, &mut defaults] {
        table.as_table_mut().unwrap().remove("stream");
    }
    for (section, values) in shipped.as_table().unwrap() {
        for (key, value) in values.as_table().unwrap() {
            assert_eq!(
                Some(value),
                defaults.get(section).and_then(|s| s.get(key)),
                "config/avscene.toml: {section}.{key} is not the default"
            );
        }
    }
}

#[test]
fn the_readme_configuration_table_names_every_key_of_its_section() {
    let mut missing = Vec::new();
    for key in schema_keys() {
        let (section, name) = key.rsplit_once('.').unwrap();
        let top = section.split('.').next().unwrap();
        let row = if top == "stream" {
            "| `[[stream]]` |".to_string()
        } else {
            format!("| `[{top}]` |")
        };
        let Some(line) = README.lines().find(|l| l.starts_with(&row)) else {
            missing.push(format!("no row for [{top}]"));
            continue;
        };
        if !line.contains(&format!("`{name}`")) {
            missing.push(format!("{key} is not in the [{top}] row"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
