//! The naming authority: the service names the stack keeps for its own
//! units, derived from [`Names`] (the one place unit names are spelt), and
//! the nearest known name offered for a typo, the same in every message.

use crate::render::Names;

/// How alike (Jaro-Winkler, 0 to 1) a known name must be to what the user
/// wrote to be offered as "did you mean".
const ALIKE: f64 = 0.7;

/// The known name nearest to `word`, when one is alike enough.
pub fn nearest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(word, k), k))
        .filter(|(score, _)| *score >= ALIKE)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// A stand-in prefix and service for reading the shapes of [`Names`].
const PREFIX: &str = "prefix";
const SERVICE: &str = "service";

/// Service names that would share a stem with a unit named after the prefix
/// alone: `<prefix>-network.service` reserves `network`.
pub fn reserved_service_names() -> Vec<String> {
    let names = Names::new(PREFIX);
    let mut out: Vec<String> = Vec::new();
    for unit in names.stack_units() {
        let Some(rest) = unit.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let stem = rest.split(['.', '@']).next().unwrap_or(rest);
        if !out.iter().any(|o| o == stem) {
            out.push(stem.to_owned());
        }
    }
    out
}

/// Endings a service name must not have: the service `x-secrets` would be
/// the unit of service `x`'s secret bridge.
pub fn reserved_suffixes() -> Vec<String> {
    let names = Names::new(PREFIX);
    let own = names.unit(SERVICE);
    let stem = own.strip_suffix(".service").unwrap_or(&own);
    names
        .service_units(SERVICE)
        .into_iter()
        .filter(|u| *u != own)
        .filter_map(|u| {
            u.strip_prefix(stem)?
                .strip_suffix(".service")
                .map(str::to_owned)
        })
        .collect()
}

/// Whether the service name `name` belongs to the stack's own units.
pub fn reserved(name: &str) -> bool {
    reserved_service_names().iter().any(|r| r == name)
        || reserved_suffixes()
            .iter()
            .any(|s| name.ends_with(s.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_come_from_the_unit_names() {
        assert_eq!(
            reserved_service_names(),
            [
                "network",
                "health",
                "backup",
                "reconcile",
                "migrate",
                "update",
                "api"
            ]
        );
        assert_eq!(reserved_suffixes(), ["-secrets"]);
        // A reserved name's unit would be one of the stack's own, or share
        // its stem (the migrate template `<prefix>-migrate@.service`).
        let names = Names::new(PREFIX);
        for r in reserved_service_names() {
            let unit = names.unit(&r);
            let stem = unit.trim_end_matches(".service");
            assert!(
                names.stack_units().iter().any(|u| u.starts_with(stem)),
                "{unit}"
            );
        }
        assert_eq!(names.unit("x-secrets"), names.secrets_unit("x"));
        assert!(reserved("health") && reserved("db-secrets") && !reserved("sonarr"));
    }

    #[test]
    fn nearest_offers_only_alike_names() {
        let known = ["sonarr", "radarr", "prowlarr"];
        assert_eq!(nearest("sonar", known), Some("sonarr"));
        assert_eq!(nearest("prowlar", known), Some("prowlarr"));
        assert_eq!(nearest("zzz", known), None);
    }
}
